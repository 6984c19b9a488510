"""Settings shared by every metric run, and the detector lookup that honours injected detectors."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from sg3.metrics.features import load_detector

__all__ = ["MetricOptions", "get_detector"]


@dataclass
class MetricOptions:
    """Everything a metric needs besides its name.

    Attributes:
        G: The generator (our modules; eval mode).
        data: Data module for real images and labels (`exactly_once_loader`, `sample_labels`), or None.
        device: Device for generation and detectors.
        rank: This process's rank.
        world_size: Number of processes sharing the sampling (1: single process).
        seed: Seed of all generated samples; same seed = same numbers on any world size.
        batch_size: Latents drawn together and detector batch of the feature metrics; G itself runs on
            4 images at a time (spec §6). The numbers for a seed depend on it through which latents each
            batch's seed draws.
        progress: Progress bars on rank zero.
        cache_dir: Dataset-statistics cache folder; None = `$SG3_METRICS_CACHE` or `~/.cache/sg3/gan-metrics`.
        weights_dir: Detector weights folder; None = `$SG3_METRICS_WEIGHTS` or `~/.cache/sg3/metrics`.
        download: Allow downloading missing detector weights; None = unless `$SG3_METRICS_OFFLINE`.
        xflip: The real images of fid/kid/pr are the x-flip-doubled dataset. `registry.compute` sets it
            from the data's `mirror` (training with x-flips) and clears it for the `_full` metrics, which
            never use x-flips (spec §6); the legacy ones (without `_full`) respect it.
        detectors: Detectors by kind ('inception', 'inception_probs', 'vgg16', 'lpips') used instead of
            loading torch-fidelity's (tests inject tiny ones here).
    """

    G: torch.nn.Module
    data: Any = None
    device: torch.device | str = "cpu"
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    batch_size: int = 32
    progress: bool = True
    cache_dir: str | os.PathLike | None = None
    weights_dir: str | os.PathLike | None = None
    download: bool | None = None
    xflip: bool = False
    detectors: dict[str, torch.nn.Module] = field(default_factory=dict)


_LOADED: dict[tuple, torch.nn.Module] = {}


def get_detector(kind: str, opts: MetricOptions) -> torch.nn.Module:
    """The detector of a kind: injected if present, else torch-fidelity's (loaded once per process)."""
    if kind in opts.detectors:
        return opts.detectors[kind]
    key = (kind, str(opts.device), str(opts.weights_dir))
    if key not in _LOADED:
        _LOADED[key] = load_detector(kind, opts.device, opts.weights_dir, opts.download)
    return _LOADED[key]
