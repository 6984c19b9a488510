"""`sg3-train`: validate the config -> derive -> instantiate -> trainer.fit (see docs/training.md).

Examples:
    sg3-train experiment=demo
    sg3-train experiment=stylegan3-t-256-1gpu data.urls=/data/ffhq256/dataset.json
    sg3-train experiment=stylegan3-t-256-1gpu data.urls=... resume=auto
    sg3-train --multirun experiment=demo loss.r1_gamma=0.5,1,2
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sg3.training.derive import ConfigError
from sg3.training.rundir import made_by_this_process, remove_if_made_here

# The repository's conf/ (editable installs), else the copy a wheel installs under <prefix>/share/sg3/conf.
_CONF_CANDIDATES = (Path(__file__).resolve().parents[2] / "conf", Path(sys.prefix) / "share" / "sg3" / "conf")
CONF_DIR = str(next((p for p in _CONF_CANDIDATES if (p / "train.yaml").is_file()), _CONF_CANDIDATES[0]))

# Which configuration keys feed each network kind's constructor (for build errors).
_KWARGS_KEYS = {
    "stylegan3": "model.G_kwargs",
    "stylegan2": "model.G_kwargs",
    "discriminator": "model.D_kwargs",
    "augment_pipe": "augment.kwargs",
}

# How to set each required (???) value.
REQUIRED_HELP = {
    "data.urls": "the dataset: data.urls=/path/to/dataset.json (made by sg3-dataset), or data=demo",
    "loss.r1_gamma": "the R1 weight: loss.r1_gamma=2 (docs/configs.md lists values per resolution), "
    "or pick an experiment=... that sets it",
    "batch": "the total batch size over all GPUs: batch=32",
    "init_from": "the pretrained weights to fine-tune: init_from=/path/to/network.pkl|.pt|.ckpt",
}


def check_required(cfg: DictConfig) -> None:
    """Raise ConfigError listing every `???` value still missing, with how to set it."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        lines = [f"  {k}: {REQUIRED_HELP.get(k, f'set it on the command line: {k}=...')}" for k in missing]
        raise ConfigError("missing required value(s):\n" + "\n".join(lines))


def num_processes(trainer_cfg: dict) -> int:
    """devices x num_nodes from the trainer config (devices may be an int, a list or 'auto'/-1)."""
    devices, nodes = trainer_cfg.get("devices", 1), int(trainer_cfg.get("num_nodes", 1) or 1)
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, str) and devices.isdigit():
        count = int(devices)
    elif isinstance(devices, int) and devices > 0:
        count = devices
    else:  # 'auto' / -1: every visible GPU, else one process
        import torch

        gpu = trainer_cfg.get("accelerator") in ("gpu", "cuda", "auto") and torch.cuda.is_available()
        count = torch.cuda.device_count() if gpu else 1
    return count * nodes


def processes_text(trainer_cfg: dict, count: int) -> str:
    """`count` processes named by their keys: '3 processes (trainer.devices=3 x trainer.num_nodes=1)'."""
    devices, nodes = trainer_cfg.get("devices", 1), trainer_cfg.get("num_nodes", 1)
    explicit = isinstance(devices, (list, tuple)) or (isinstance(devices, int) and devices > 0)
    if not (explicit or (isinstance(devices, str) and devices.isdigit())):  # 'auto' / -1: what it came to
        devices = f"{devices} -> {count // int(nodes or 1)}"
    return (
        f"{count} process{'es' if count != 1 else ''} (trainer.devices={devices} x trainer.num_nodes={nodes})"
    )


def gpu_missing(trainer_cfg: dict) -> str | None:
    """Why the trainer's GPUs are not available here (a message naming the fix), or None when they are."""
    accelerator = trainer_cfg.get("accelerator")
    if accelerator not in ("gpu", "cuda"):
        return None
    import torch

    if torch.cuda.is_available():
        return None
    why = (
        f"this torch build ({torch.__version__}) has no CUDA support"
        if torch.version.cuda is None
        else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU (CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r})"
    )
    return (
        f"trainer.accelerator={accelerator} needs a CUDA GPU, but {why}. Run on a GPU machine, or train on "
        "the CPU with trainer=cpu (after experiment=..., e.g. `sg3-train experiment=... trainer=cpu`)"
    )


def short_value(value: str) -> str:
    """An override value for a run name: paths shortened to their last two parts (`ffhq256/dataset.json`)."""
    parts = [p for p in value.split("/") if p]
    return "/".join(parts[-2:]) if len(parts) > 2 else value


def sweep_subdir(num: int, override_dirname: str) -> str:
    """`hydra.sweep.subdir`: the job number, then `override_dirname` (without a dangling '-' when empty)."""
    return f"{num}-{override_dirname}" if override_dirname else str(num)


OmegaConf.register_new_resolver("sg3_sweep_subdir", sweep_subdir, replace=True)


def launcher_rank() -> int:
    """This process's global rank as the launcher that started it set it (torchrun: RANK, srun: SLURM_PROCID,
    jsrun: JSM_NAMESPACE_RANK), else 0. Under srun every task runs the whole Hydra job, in one run dir.
    (Lightning's own re-executed DDP ranks get `hydra.output_subdir=null` and a job name of their own.)"""
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value)
    return 0


# hydra.output_subdir (Hydra's .hydra/ record) only on rank 0.
OmegaConf.register_new_resolver(
    "sg3_rank_zero_only", lambda v: v if launcher_rank() == 0 else None, replace=True
)


def separate_rank_log() -> None:
    """On a rank > 0 (see `launcher_rank`), move Hydra's log file `<job>.log` to `<job>_rank<r>.log`.

    Every srun task runs the whole Hydra job in the same run dir; appends from several nodes to one file
    interleave (and can overwrite each other on NFS). Rank 0 keeps `<job>.log`.
    """
    rank = launcher_rank()
    if rank == 0:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if not isinstance(handler, logging.FileHandler) or handler.baseFilename.endswith(f"_rank{rank}.log"):
            continue
        path = Path(handler.baseFilename)
        moved = logging.FileHandler(path.with_name(f"{path.stem}_rank{rank}{path.suffix}"))
        moved.setFormatter(handler.formatter)
        moved.setLevel(handler.level)
        root.removeHandler(handler)
        handler.close()
        root.addHandler(moved)


def sweep_identity(hc) -> tuple[str | None, str]:
    """(W&B group, run name) of a run.

    Under --multirun the group is the sweep dir name and the run name is 'key=value,...' of the swept keys
    (paths shortened by `short_value`). Jobs started without our command line (submitit) are named after
    `hydra.job.override_dirname` (every override but paths and run plumbing), else the job number.
    """
    if hc.mode != RunMode.MULTIRUN:
        return None, Path(hc.runtime.output_dir).name
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept: set[str] = set()
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in sys.argv[1:] if not a.startswith("-")])
        swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
    except Exception:  # noqa: BLE001 - launched without our argv (e.g. submitit)
        swept = set()
    pairs = [o.lstrip("+~").split("=", 1) for o in hc.overrides.task]
    task = [f"{k}={short_value(v)}" for k, *rest in pairs if k in swept for v in rest or [""]]
    return Path(hc.sweep.dir).name, ",".join(task) or hc.job.override_dirname or str(hc.job.num)


def build_metrics_callback(cfg: DictConfig, plain: dict, model: Any, datamodule: Any) -> Any:
    """The `metrics` group's callback (None for `metrics=none`), its metrics' prerequisites checked now.

    A metric that would fail at the first snapshot for lack of a detector weights file (not on disk and not
    downloadable), real images or a StyleGAN3 generator stops the run here, dry runs included.
    """
    from hydra.utils import instantiate

    from sg3.metrics.preflight import MetricPrerequisiteError

    if not plain["metrics"].get("_target_"):
        return None
    every = plain["metrics"].get("every_kimg") or plain["derived"]["snapshot_kimg"]
    try:
        callback = instantiate(cfg.metrics, every_kimg=every)
    except Exception as e:  # noqa: BLE001 - Hydra wraps constructor errors (an unknown metric name)
        raise ConfigError(f"metrics: {e.__cause__ or e}") from e
    check = getattr(callback, "check_prerequisites", None)
    if check is not None:
        try:
            check(model.G_ema, datamodule)
        except MetricPrerequisiteError as e:
            raise ConfigError(str(e)) from e
    return callback


def build(cfg: DictConfig) -> dict[str, Any]:
    """Validate, derive and instantiate everything for one run (no training yet)."""
    from hydra.utils import instantiate
    from lightning.pytorch import seed_everything

    from sg3.modules.augment import AUGPIPE_SPECS
    from sg3.modules.registry import NetworkBuildError
    from sg3.training import callbacks as cb
    from sg3.training.checkpoint import (
        AtomicCheckpointIO,
        init_weights_summary,
        load_init_weights,
        read_sg3_section,
        resolve_resume,
    )
    from sg3.training.derive import derive
    from sg3.training.loggers import build_loggers, new_run_id
    from sg3.training.module import StyleGAN3Module
    from sg3.training.slurm import SlurmRequeue
    from sg3.training.threads import apply_threads

    check_required(cfg)
    no_gpu = gpu_missing(OmegaConf.to_container(cfg.trainer, resolve=True))
    if no_gpu and not cfg.dry_run:
        raise ConfigError(no_gpu)
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    plain = OmegaConf.to_container(cfg, resolve=True)
    gpus = num_processes(plain["trainer"])
    try:
        apply_threads(plain["threads"], gpus // int(plain["trainer"].get("num_nodes", 1) or 1))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if not isinstance(plain["batch"], int) or plain["batch"] < 1 or plain["batch"] % gpus:
        raise ConfigError(
            f"batch={plain['batch']!r} is not valid: a positive multiple of the "
            f"{processes_text(plain['trainer'], gpus)}"
        )
    try:
        dm = instantiate(
            cfg.data,
            batch_size=plain["batch"] // gpus,
            seed=plain["seed"],
            resolution=plain["model"]["resolution"],
        )
    except Exception as e:  # noqa: BLE001 - Hydra wraps constructor errors; report the cause plainly
        cause = e.__cause__ or e
        raise ConfigError(f"data: {cause}") from e
    plain["derived"] = derive(
        plain,
        resolution=dm.resolution,
        img_channels=dm.num_channels,
        c_dim=dm.c_dim,
        num_gpus=gpus,
        augment_specs=AUGPIPE_SPECS,
    )
    try:
        ckpt_path = resolve_resume(plain["resume"], run_dir)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    run_id = (read_sg3_section(ckpt_path).get("wandb_run_id") if ckpt_path else None) or new_run_id()
    group, run_name = sweep_identity(hc)
    group = plain["logger"].get("group") or group
    plain["run"] = {"dir": run_dir, "name": run_name, "group": group, "wandb_run_id": run_id}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    if _is_rank_zero():
        OmegaConf.save(OmegaConf.create(plain), Path(run_dir) / "config.yaml")
    # The same seed on every rank: the initial networks (also the random Fourier-feature buffers) are the
    # same on all ranks and in every run with this seed; each rank reseeds with seed * world + rank later.
    seed_everything(plain["seed"], verbose=False)
    try:
        model = StyleGAN3Module(plain)
    except NetworkBuildError as e:  # e.g. a StyleGAN3-only G_kwargs key left in place for model=stylegan2
        raise ConfigError(f"{_KWARGS_KEYS.get(e.kind, 'model')}: {e}") from e
    model.wandb_run_id = run_id
    metrics_callback = build_metrics_callback(cfg, plain, model, dm)
    if plain["init_from"] and ckpt_path is None:
        targets = {"G": model.G, "D": model.D, "G_ema": model.G_ema}
        try:
            copied = load_init_weights(targets, plain["init_from"])
        except ValueError as e:
            raise ConfigError(str(e)) from e
        logging.getLogger("sg3.train").info(init_weights_summary(plain["init_from"], copied, targets))
    try:
        loggers = build_loggers(
            plain["logger"], run_dir, name=run_name, run_id=run_id, group=group, config=plain
        )
    except ValueError as e:  # a bad logger.kind / mode / timeout
        raise ConfigError(str(e)) from e
    grids = cb.ImageGrids(run_dir, **plain["grid"])
    snaps = cb.Snapshots(
        run_dir, keep=plain["keep_checkpoints"], log_model=plain["logger"].get("log_model", False)
    )
    summary = cb.Summary(run_dir, grids, snaps)
    # The tick's stats.jsonl line before its checkpoint: a process killed in between loses nothing (the line
    # of a tick past the restored checkpoint is set aside on resume and written again).
    callbacks = [cb.TickLogger(run_dir), snaps, grids, cb.KimgProgress(sys.stderr.isatty()), summary]
    callbacks.append(SlurmRequeue())  # SLURM preemption/time limit: checkpoint + requeue (inert elsewhere)
    if metrics_callback is not None:
        callbacks.append(metrics_callback)
    # A dry run of a GPU experiment on a machine without one checks everything but the Trainer.
    trainer = (
        None
        if no_gpu
        else instantiate(
            cfg.trainer,
            logger=loggers or False,
            callbacks=callbacks,
            default_root_dir=run_dir,
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            max_epochs=-1,
            max_steps=-1,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            use_distributed_sampler=False,
        )
    )
    return dict(
        trainer=trainer,
        model=model,
        datamodule=dm,
        ckpt_path=ckpt_path,
        summary=summary,
        run_dir=run_dir,
        no_gpu=no_gpu,
    )


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


class _DropAdvertTips(logging.Filter):
    """Drops Lightning's product tips (a logger suggestion on every start), keeps everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\U0001f4a1 Tip")


def _silence_known_noise() -> None:
    """Messages of the libraries that say nothing about the run (each checked to be harmless here)."""
    # G_ema (and the AugmentPipe in some modes) stay in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # Lightning notices srun on PATH; sg3's SLURM jobs use srun (scripts/slurm), local runs need not.
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system")
    # A deprecation inside Lightning's own pytree helper, not in sg3.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropAdvertTips())
    # Lightning adds its own console handlers and the records also reach Hydra's: every line came twice.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def run(cfg: DictConfig) -> dict[str, Any]:
    """Build and train; returns the run summary (also the Hydra job's return value under --multirun)."""
    from sg3.training.callbacks import Summary, format_summary
    from sg3.training.loggers import finish_loggers

    _silence_known_noise()
    separate_rank_log()
    parts = build(cfg)
    if cfg.dry_run:
        if parts["no_gpu"]:
            print(f"sg3-train: the Trainer was not built: {parts['no_gpu']}", flush=True)
        print(f"sg3-train: dry run OK; resolved config in {parts['run_dir']}/config.yaml", flush=True)
        return {"run_dir": parts["run_dir"], "dry_run": True}
    ckpt = parts["ckpt_path"]
    started = time.time()
    failed = True
    try:
        parts["trainer"].fit(
            parts["model"],
            datamodule=parts["datamodule"],
            ckpt_path=str(ckpt) if ckpt else None,
            weights_only=True,
        )
        failed = False
    finally:  # the next run of this process (a local sweep's next point) starts its own W&B run
        finish_loggers(parts["trainer"].loggers, failed=failed)
    # Spawned DDP processes (start_method=spawn) keep the callbacks' state: read rank 0's summary back.
    info = parts["summary"].info or Summary.read(parts["run_dir"], since=started)
    if _is_rank_zero():
        hc = HydraConfig.get()
        by_dir = hc.mode == RunMode.MULTIRUN or any(
            o.startswith("hydra.run.dir=") for o in hc.overrides.hydra
        )
        print(format_summary(info, hc.overrides.task, by_dir=by_dir), flush=True)
    return info


class SweepPointError(CompactHydraException):
    """A --multirun point stopped with a configuration error (reported by Hydra once the sweep is done)."""


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> dict[str, Any] | None:
    """The Hydra job: build and train one run (configuration errors exit with code 2).

    Under --multirun a configuration error fails only its own point: Hydra runs the remaining points and
    then exits non-zero naming the first failed one (sys.exit here would end the whole sweep).
    """
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    # Several tasks of one job (srun, torchrun) share the run folder: none of them removes it.
    tasks = [os.environ.get(k, "").strip() for k in ("WORLD_SIZE", "SLURM_NTASKS")]
    single = launcher_rank() == 0 and all(t in ("", "0", "1") for t in tasks)
    fresh = single and made_by_this_process(run_dir, f"{hc.job.name}.log")
    try:
        return run(cfg)
    except ConfigError as e:
        print(f"sg3-train: configuration error: {e}", file=sys.stderr, flush=True)
        if fresh and remove_if_made_here(run_dir):
            print(
                f"sg3-train: removed the run folder {run_dir} (it held only this attempt's log)",
                file=sys.stderr,
            )
        if hc.mode == RunMode.MULTIRUN:
            point = f"sweep job #{hc.job.num} ({' '.join(hc.overrides.task)})"
            raise SweepPointError(f"sg3-train: {point} stopped with a configuration error: {e}") from None
        sys.exit(2)


def override_quoting_hint(args: list[str]) -> str | None:
    """How to write the first override the shell passed in a form Hydra's grammar rejects, else None."""
    for arg in args:
        key, eq, value = arg.partition("=")
        if arg.startswith("-") or not eq:
            continue
        if value.startswith("~"):
            return f"{arg}: the shell leaves '~' after '=' as it is; write {key}=$HOME{value[1:]}"
        if re.search(r"(?<!\$)\{", value) and not value.startswith(("{", "'", '"', "[")):
            return (
                f"{arg}: Hydra reads '{{' as the start of a dictionary; quote the value for Hydra inside the "
                f"shell's quotes: \"{key}='{value}'\""
            )
    return None


def main() -> dict[str, Any] | None:
    """Console entry point `sg3-train` (Hydra: `key=value` overrides, `--multirun`, `--cfg job`)."""
    # W&B exports its service's address to child processes (WANDB_SERVICE). Inherited from a parent that used
    # W&B, it makes this run share that service, where a killed earlier run with the same id stays open:
    # resuming it failed with "run ID ... is in use". sg3-train starts a service of its own.
    os.environ.pop("WANDB_SERVICE", None)
    try:
        return hydra_main()
    except (SystemExit, Exception) as e:  # a malformed override: Hydra exits 1 (raises with HYDRA_FULL_ERROR)
        hint = override_quoting_hint(sys.argv[1:]) if getattr(e, "code", 1) == 1 else None
        if getattr(e, "code", 1) == 1 and hint is None:  # a misspelt key: name the nearest known one
            from sg3.training.config_hints import unknown_key_hint

            hint = unknown_key_hint(sys.argv[1:], CONF_DIR)
        if hint:
            print(f"sg3-train: hint: {hint}", file=sys.stderr, flush=True)
        raise


if __name__ == "__main__":
    main()
