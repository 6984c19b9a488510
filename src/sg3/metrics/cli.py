"""`sg3-metrics`: compute metrics of a network file from the command line (Hydra).

Example: `sg3-metrics network=net.pt metrics=[eqt1k_int,eqr1k] seed=0` prints one line per result
(`name value`) and appends a JSON line per metric to `metric-<name>.jsonl` next to the network file
(or in `out_dir`). Config: `src/sg3/metrics/conf/metrics_cli.yaml`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from sg3.metrics.callback import append_jsonl
from sg3.metrics.options import MetricOptions, get_detector
from sg3.metrics.preflight import check_metrics
from sg3.metrics.registry import compute, parse_metric
from sg3.tools.cli_common import CliError, check_device, load_network, output_folder, run_cli

__all__ = ["main", "open_data", "training_mirror", "check_overrides"]


def open_data(path: str, G, batch_size: int = 64, num_workers: int = 2, mirror: bool = False):
    """A ShardDataModule for the real images, checked against the generator's resolution and labels.

    `mirror`: the network was trained with x-flips; the legacy fid/kid/pr then use the doubled dataset.
    """
    from sg3.data.datamodule import ShardDataModule

    return ShardDataModule(
        urls=str(path), batch_size=batch_size, num_workers=num_workers, use_labels=G.c_dim > 0,
        resolution=G.img_resolution, channels=None, shuffle_buffer=0, mirror=mirror,
    )  # fmt: skip


def training_mirror(network: str | Path, info: dict | None = None) -> bool | None:
    """Whether the network was trained with x-flips, from its training config; None = not recorded.

    Looks in the file itself (an sg3 checkpoint's config `data.mirror`, an official pickle's
    `training_set_kwargs.xflip`), then in the run's `config.yaml` next to the file (exported `.pt`
    snapshots) or one folder up (`checkpoints/`).

    Args:
        network: The network file.
        info: The file's 'meta' and 'training_set_kwargs' when already read (`load_network(..., info=)`);
            None = read the file here.
    """
    path = Path(network).expanduser()
    if info is None:
        from sg3.io import load_networks

        try:
            info = load_networks(path)
        except (OSError, ValueError):
            info = {}
    tsk = info.get("training_set_kwargs") or {}
    if "xflip" in tsk:
        return bool(tsk["xflip"])
    config = (info.get("meta") or {}).get("config") or {}
    if "mirror" in (config.get("data") or {}):
        return bool(config["data"]["mirror"])
    for folder in (path.resolve().parent, path.resolve().parent.parent):
        try:
            saved = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"))
        except Exception:  # no run config there (or not a readable one): keep looking
            continue
        data = saved.get("data") if isinstance(saved, dict) else None
        if isinstance(data, dict) and "mirror" in data:
            return bool(data["mirror"])
    return None


_NETWORKS = "an sg3 checkpoint .ckpt, an exported generator .pt or an official StyleGAN2/3 pickle .pkl"
_DATA = "a dataset.json written by sg3-dataset, a folder of its .tar shards, a shard pattern or URL, or demo"


def _int(cfg: DictConfig, key: str) -> int:
    try:
        return int(cfg[key])
    except (TypeError, ValueError):
        raise CliError(f"{key}={cfg[key]!r}: expected a whole number") from None


def _open_data(cfg: DictConfig, G, mirror: bool):
    text = str(cfg.data)
    plain_path = not any(c in text for c in "*?[{") and ":" not in text.split("/")[0]  # no pattern, URL, demo
    if plain_path and text != "demo" and not Path(text).expanduser().exists():
        raise CliError(f"data={text!r}: not found (expected {_DATA})")
    try:
        return open_data(cfg.data, G, num_workers=_int(cfg, "num_workers"), mirror=mirror)
    except FileNotFoundError:
        raise CliError(f"data={str(cfg.data)!r}: not found (expected {_DATA})") from None
    except (OSError, ValueError) as e:
        raise CliError(f"data={str(cfg.data)!r}: {e}") from None


def run(cfg: DictConfig) -> int:
    """Compute every configured metric; print and record the results."""
    if OmegaConf.is_missing(cfg, "network"):
        raise CliError(f"network=<file> is required: {_NETWORKS}")
    names = list(cfg.metrics) if OmegaConf.is_list(cfg.metrics) else [str(cfg.metrics)]
    if not names:
        raise CliError("metrics=[]: name at least one metric, e.g. metrics=[fid50k_full,eqt50k_int]")
    specs = [parse_metric(str(n)) for n in names]
    needs = [s.name for s in specs if s.needs_data]
    if needs and not cfg.data:
        raise CliError(f"metrics {needs} compare with real images: add data=<dataset.json or shards folder>")
    seed, batch_size = _int(cfg, "seed"), _int(cfg, "batch_size")
    device = check_device(None if cfg.device is None else str(cfg.device), "device=")
    info: dict = {}  # the file's training information, from the same read as G
    G = load_network(cfg.network, device, info=info, arg="network=")
    # sg3-train's preflight for what needs only G (the StyleGAN3 input transform of the EQ metrics): one
    # line naming the metric, before any folder, data or detector. Weights and data are checked below.
    check_metrics([s.name for s in specs if not s.detectors and not s.needs_data], G=G)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else Path(cfg.network).expanduser().resolve().parent
    with contextlib.ExitStack() as stack:
        try:  # before any metric runs: a bad out_dir must not waste an hour of FID
            out_dir = stack.enter_context(output_folder(out_dir))  # removed again if still empty on an error
        except OSError as e:
            raise CliError(
                f"out_dir={str(out_dir)!r}: cannot create the folder ({e.strerror or e})"
            ) from None
        _run_metrics(cfg, specs, G, info, device, seed, batch_size, out_dir)
    return 0


def _run_metrics(cfg: DictConfig, specs: list, G, info: dict, device: torch.device, seed: int,
                 batch_size: int, out_dir: Path) -> None:  # fmt: skip
    """The body of `run` once the settings are checked and `out_dir` exists."""
    mirror = cfg.mirror
    if mirror is None and any(s.needs_data and not s.full for s in specs):  # only the legacy ones use it
        mirror = training_mirror(cfg.network, info)
    mirror = bool(mirror)
    data = _open_data(cfg, G, mirror) if cfg.data else None
    # Every detector (and its weights file) before the first metric: a missing file fails now, not after
    # the metrics before it have run.
    opts = MetricOptions(G=G, device=device, weights_dir=cfg.weights_dir, download=cfg.download)
    for kind in dict.fromkeys(k for spec in specs for k in spec.detectors):
        get_detector(kind, opts)  # loaded once per process: compute() below reuses it
    for spec in specs:
        t0 = time.perf_counter()
        res = compute(
            spec.name, G, data=data, device=device, seed=seed, batch_size=batch_size,
            progress=bool(cfg.progress), cache_dir=cfg.cache_dir, weights_dir=cfg.weights_dir,
            download=cfg.download,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        for k, v in res.items():
            print(f"{k} {v:.6g}", flush=True)
        append_jsonl(out_dir, spec.name, res, seconds, network=str(cfg.network), seed=seed)


@hydra.main(version_base="1.3", config_path="conf", config_name="metrics_cli")
def _hydra_main(cfg: DictConfig) -> None:
    code = run_cli(lambda: run(cfg), "sg3-metrics")
    if code:
        sys.exit(code)


def check_overrides(args: list[str]) -> None:
    """Check the command line's `key=value` overrides before Hydra sees them.

    Hydra answers an unknown key with several lines, exit code 1 and the advice to write `+key=...`
    (which would then be ignored), and `metrics=a,b` with an 'Ambiguous value' block.

    Raises:
        CliError: an unknown key (listing the accepted ones), or a metric list without brackets.
    """
    conf = OmegaConf.load(Path(__file__).parent / "conf" / "metrics_cli.yaml")
    keys = [str(k) for k in conf if k not in ("defaults", "hydra")]
    sweep = any(a in ("-m", "--multirun") for a in args)
    for arg in args:
        if arg.startswith("-") or "=" not in arg:  # Hydra's own flags (--help, --cfg job, ...)
            continue
        key, value = arg.split("=", 1)
        root = key.lstrip("+~").split(".")[0].split("/")[0]
        if root == "hydra":
            continue
        if root not in keys:
            raise CliError(
                f"unknown key {root!r} in {arg!r}; accepted: {', '.join(keys)} (see sg3-metrics --help)"
            )
        if root == "metrics" and "," in value and not value.lstrip().startswith("[") and not sweep:
            raise CliError(f"{arg!r}: write the list of metrics in brackets: metrics=[{value}]")


def main(argv: list[str] | None = None) -> int:
    """Console entry point; `argv` are Hydra overrides (`network=... metrics=[...]`)."""
    code = run_cli(lambda: check_overrides(sys.argv[1:] if argv is None else list(argv)), "sg3-metrics")
    if code:
        return code
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    try:
        _hydra_main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
