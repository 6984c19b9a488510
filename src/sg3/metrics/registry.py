"""Metric names and the single entry point `compute(name, G, ...)`.

Names follow the official families with any sample count `N` (in thousands; fid, kid, is and the
eq metrics also take a plain count without `k`, e.g. `eqt64_int` for 64 samples):

| pattern | metric | result keys |
|---|---|---|
| `fid{N}k_full` / `fid{N}k` | FID vs all reals / vs N reals | `{name}` |
| `kid{N}k_full` / `kid{N}k` | KID vs up to 1M reals / N reals | `{name}` |
| `pr{N}k{K}_full` / `pr{N}k{K}` | precision, recall (K neighbours) | `{name}_precision/_recall` |
| `is{N}k` | Inception score | `{name}_mean`, `{name}_std` |
| `ppl2_{z,w}{end,full}` (50k) / `ppl{N}k_{z,w}{end,full}` | perceptual path length | `{name}` |
| `eqt{N}k_int`, `eqt{N}k_frac`, `eqr{N}k` | equivariance PSNR (dB) | `{name}` |
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any

import torch

from sg3.metrics.equivariance import compute_equivariance
from sg3.metrics.feature_metrics import compute_fid, compute_is, compute_kid, compute_pr
from sg3.metrics.options import MetricOptions
from sg3.metrics.ppl import compute_ppl

__all__ = ["MetricSpec", "parse_metric", "compute", "EXAMPLES"]

EXAMPLES = (
    "fid50k_full",
    "kid50k_full",
    "pr50k3_full",
    "is50k",
    "ppl2_wend",
    "eqt50k_int",
    "eqt50k_frac",
    "eqr50k",
)

_PATTERNS = [
    ("fid", re.compile(r"fid(?P<n>\d+)(?P<unit>k?)(?P<full>_full)?")),
    ("kid", re.compile(r"kid(?P<n>\d+)(?P<unit>k?)(?P<full>_full)?")),
    ("pr", re.compile(r"pr(?P<n>\d+)(?P<unit>k)(?P<k>\d+)(?P<full>_full)?")),
    ("is", re.compile(r"is(?P<n>\d+)(?P<unit>k?)")),
    ("ppl", re.compile(r"ppl(?:2|(?P<n>\d+)(?P<unit>k))_(?P<space>[zw])(?P<sampling>end|full)")),
    ("eqt_int", re.compile(r"eqt(?P<n>\d+)(?P<unit>k?)_int")),
    ("eqt_frac", re.compile(r"eqt(?P<n>\d+)(?P<unit>k?)_frac")),
    ("eqr", re.compile(r"eqr(?P<n>\d+)(?P<unit>k?)")),
]


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name.

    Attributes:
        name: The name as given.
        family: 'fid', 'kid', 'pr', 'is', 'ppl', 'eqt_int', 'eqt_frac' or 'eqr'.
        num: Number of generated samples.
        full: Compare against all reals (capped as officially) instead of `num` reals.
        k: Neighbourhood size (pr only; 0 otherwise).
        space: 'z' or 'w' (ppl only).
        sampling: 'end' or 'full' (ppl only).
    """

    name: str
    family: str
    num: int
    full: bool = False
    k: int = 0
    space: str = ""
    sampling: str = ""

    @property
    def needs_data(self) -> bool:
        """Whether the metric compares with real images."""
        return self.family in ("fid", "kid", "pr")

    @property
    def detectors(self) -> tuple[str, ...]:
        """Detector kinds the metric runs (`sg3.metrics.features.load_detector`); empty for the EQ metrics."""
        kinds = {
            "fid": "inception",
            "kid": "inception",
            "is": "inception_probs",
            "pr": "vgg16",
            "ppl": "lpips",
        }
        return (kinds[self.family],) if self.family in kinds else ()


def parse_metric(name: str) -> MetricSpec:
    """Parse a metric name such as 'fid10k_full' or 'eqt1k_int'.

    Raises:
        ValueError: unknown name, listing the accepted patterns.
    """
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a string, got {type(name).__name__}")
    for family, pat in _PATTERNS:
        m = pat.fullmatch(name.strip())
        if m is None:
            continue
        g = m.groupdict()
        num = int(g["n"]) * (1000 if g.get("unit") else 1) if g.get("n") else 50000
        if num < 1:
            raise ValueError(f"metric {name!r}: the sample count must be at least 1")
        return MetricSpec(
            name=name.strip(),
            family=family,
            num=num,
            full=bool(g.get("full")),
            k=int(g.get("k") or 0),
            space=g.get("space") or "",
            sampling=g.get("sampling") or "",
        )
    raise ValueError(
        f"unknown metric {name!r}; accepted: {', '.join(EXAMPLES)} and the same families with any count "
        f"in thousands (fid10k_full, kid1k_full, pr10k3_full, is10k, ppl10k_wend, eqt1k_int, eqt2k_frac, "
        f"eqr1k; fid/kid/is/eq* also take plain counts: eqt64_int; fid/kid/pr without _full use as many "
        f"reals as generated images)"
    )


def _run(spec: MetricSpec, opts: MetricOptions) -> dict[str, float]:
    n = spec.num
    if spec.full and opts.xflip:  # spec §6: *_full force xflip=False, the legacy ones respect it
        opts = dataclasses.replace(opts, xflip=False)
    if spec.family == "fid":
        return {spec.name: compute_fid(n, None if spec.full else n, opts, spec.name)}
    if spec.family == "kid":
        return {spec.name: compute_kid(n, 1_000_000 if spec.full else n, opts, spec.name)}
    if spec.family == "pr":
        p, r = compute_pr(n, 200_000 if spec.full else n, spec.k, opts, spec.name)
        return {f"{spec.name}_precision": p, f"{spec.name}_recall": r}
    if spec.family == "is":
        mean, std = compute_is(n, opts)
        return {f"{spec.name}_mean": mean, f"{spec.name}_std": std}
    if spec.family == "ppl":
        return {spec.name: compute_ppl(n, spec.space, spec.sampling, opts)}
    kind = {"eqt_int": "int", "eqt_frac": "frac", "eqr": "rot"}[spec.family]
    value = compute_equivariance(
        opts.G, kind, n, seed=opts.seed, rank=opts.rank, world_size=opts.world_size,
        data=opts.data, progress=opts.progress,
    )  # fmt: skip
    return {spec.name: value}


def compute(
    name: str,
    G: torch.nn.Module,
    *,
    data: Any = None,
    device: torch.device | str | None = None,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    detectors: dict[str, torch.nn.Module] | None = None,
    xflip: bool | None = None,
) -> dict[str, float]:
    """Compute one metric.

    Args:
        name: Metric name (see the module docstring), e.g. 'fid50k_full' or 'eqt1k_int'.
        G: Generator (StyleGAN3 or StyleGAN2; EQ metrics need StyleGAN3); used in eval mode, unchanged.
        data: Data module (`sg3.data.datamodule.ShardDataModule`) for real images and labels; None for
            metrics that need no reals (is, ppl, eq*; labels are then uniform one-hot).
        device: Device for generation and detectors; None = the device of G's parameters.
        rank: This process's rank (sampling is sharded over ranks).
        world_size: Number of processes; every rank must call `compute` with the same arguments.
        seed: Seed of the generated samples (same seed = same result on any world size).
        batch_size: Generator batch for feature metrics.
        progress: Show progress bars on rank zero.
        cache_dir: Dataset-statistics cache folder; None = `$SG3_METRICS_CACHE` or `~/.cache/sg3/gan-metrics`.
        weights_dir: Detector weights folder; None = `$SG3_METRICS_WEIGHTS` or `~/.cache/sg3/metrics`.
        download: Allow downloading missing detector weights; None = unless `$SG3_METRICS_OFFLINE`.
        detectors: Detectors by kind to use instead of torch-fidelity's (see `sg3.metrics.features`).
        xflip: The training set is x-flipped, so the legacy fid/kid/pr (without `_full`) compare with the
            x-flip-doubled dataset; None = the data module's `mirror` (False without data).

    Returns:
        `{result_name: value}`; one entry for most metrics, two for pr (`_precision`, `_recall`) and is
        (`_mean`, `_std`).
    """
    spec = parse_metric(name)
    if spec.needs_data and data is None:
        raise ValueError(f"metric {name!r} compares with real images: pass data (dataset.json or shards)")
    if device is None:
        device = next(G.parameters()).device
    opts = MetricOptions(
        G=G, data=data, device=device, rank=rank, world_size=world_size, seed=seed,
        batch_size=batch_size, progress=progress, cache_dir=cache_dir, weights_dir=weights_dir,
        download=download, detectors=dict(detectors or {}),
        xflip=bool(getattr(data, "mirror", False)) if xflip is None else bool(xflip),
    )  # fmt: skip
    was_training = G.training
    G.eval()
    try:
        return _run(spec, opts)
    finally:
        G.train(was_training)
