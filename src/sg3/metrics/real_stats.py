"""Detector features of the real images, computed once per dataset and cached.

The real images are read with the data module's exactly-once loader (each sample once across ranks
and workers), passed through the detector, gathered on every rank and put into a canonical order
(sorted by feature values), so the cached array does not depend on the number of processes or
workers that made it. The cache file is keyed by an md5 of the dataset index (`dataset.json`, which
holds the shards' sha256 sums), the detector name and the metric settings (subset size, x-flip).

With `xflip=True` the real set is the x-flip-doubled dataset of spec §5.6 (every image and its
horizontal mirror), as the legacy metrics (fid50k, kid50k, pr50k3) use it when training mirrors the
data; the `*_full` metrics always read the dataset without flips.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sg3.metrics.sampling import progress_bar
from sg3.metrics.stats import feature_moments

log = logging.getLogger(__name__)

__all__ = ["default_cache_dir", "stats_cache_path", "real_features"]


def default_cache_dir() -> Path:
    """Dataset-statistics cache: `$SG3_METRICS_CACHE`, else `~/.cache/sg3/gan-metrics`."""
    env = os.environ.get("SG3_METRICS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sg3" / "gan-metrics"


def stats_cache_path(
    data: Any, detector_name: str, settings: dict, cache_dir: str | os.PathLike | None
) -> Path:
    """Cache file for one (dataset, detector, settings) triple.

    Args:
        data: Data module with `index` (parsed dataset.json or None), `name` and `resolution`.
        detector_name: The detector's `name`.
        settings: Metric settings that change the features (e.g. `{'max_items': 50000}`).
        cache_dir: Cache folder; None = `default_cache_dir()`.

    Returns:
        Path of the `.npz` file (may not exist yet).
    """
    key = {
        "index": getattr(data, "index", None),
        "name": getattr(data, "name", None),
        "resolution": getattr(data, "resolution", None),
        "detector": detector_name,
        "settings": settings,
    }
    md5 = hashlib.md5(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = str(getattr(data, "name", None) or "dataset").replace(os.sep, "_")
    return root / f"{name}-{detector_name}-{md5}.npz"


def _all_gather_arrays(local: np.ndarray, world_size: int) -> list[np.ndarray]:
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        parts: list[Any] = [None] * world_size
        dist.all_gather_object(parts, local)
        return parts
    return [local]


def _canonical(features: np.ndarray) -> np.ndarray:
    """Rows sorted by (col0, col1, col2, row sum): independent of the order they were produced in."""
    keys = [features.sum(1)] + [features[:, i] for i in range(min(3, features.shape[1]) - 1, -1, -1)]
    return features[np.lexsort(keys)]


def _extract(
    data: Any, detector: torch.nn.Module, device, batch_size: int, rank: int, world_size: int, progress: bool,
    xflip: bool = False,
) -> np.ndarray:  # fmt: skip
    loader = data.exactly_once_loader(batch_size, rank=rank, world_size=world_size)
    out = []
    total = getattr(data, "index", None) or {}
    num = -(-int(total.get("count", 0)) // (batch_size * world_size)) or None
    for batch in progress_bar(loader, num, "dataset features", progress and rank == 0):
        img = batch[0] if isinstance(batch, (tuple, list)) else batch
        img = torch.as_tensor(img)
        if img.shape[1] == 1:
            img = img.repeat(1, 3, 1, 1)
        with torch.no_grad():
            out.append(detector(img.to(device)).float().cpu().numpy())
            if xflip:  # the doubled dataset's mirrored half
                out.append(detector(img.flip(3).to(device)).float().cpu().numpy())
    dim = getattr(detector, "num_features", None)
    return np.concatenate(out) if out else np.zeros((0, dim or 0), np.float32)


def real_features(
    data: Any,
    detector: torch.nn.Module,
    *,
    max_items: int | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    rank: int = 0,
    world_size: int = 1,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    moments: bool = False,
    xflip: bool = False,
) -> dict[str, np.ndarray]:
    """Features of the dataset's real images (or their moments), from the cache when present.

    Args:
        data: Data module with `exactly_once_loader(batch_size, rank, world_size)`, `index`, `name`.
        detector: Feature detector (`uint8 [N,3,H,W] -> [N, D]`, attribute `name`).
        max_items: Keep at most this many (a fixed random subset of the set, doubled or not); None = all.
        device: Device the detector runs on.
        batch_size: Images per detector batch.
        rank: This process's rank.
        world_size: Number of processes sharing the dataset pass.
        cache_dir: Cache folder; None = `default_cache_dir()`.
        progress: Progress bar on rank zero.
        moments: Return and cache only `{'mu', 'sigma'}` (FID) instead of `{'features'}`.
        xflip: Use the x-flip-doubled dataset (each image and its horizontal mirror).

    Returns:
        `{'features': [N, D] float32}` or `{'mu': [D], 'sigma': [D, D]}` (float64), identical on every rank.
    """
    settings = {"max_items": max_items, "moments": moments}
    if xflip:  # only then, so that the cache files written before this setting existed stay valid
        settings["xflip"] = True
    path = stats_cache_path(data, detector.name, settings, cache_dir)
    if path.is_file():
        log.info("dataset statistics from cache %s", path)
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    local = _extract(data, detector, device, batch_size, rank, world_size, progress, xflip)
    feats = _canonical(np.concatenate(_all_gather_arrays(local, world_size)))
    if feats.shape[0] == 0:
        raise ValueError(f"the dataset {getattr(data, 'name', data)!r} yielded no images")
    if max_items is not None and feats.shape[0] > max_items:
        keep = np.sort(np.random.RandomState(0).choice(feats.shape[0], max_items, replace=False))
        feats = feats[keep]
    if moments:
        mu, sigma = feature_moments(feats)
        out = {"mu": mu, "sigma": sigma}
    else:
        out = {"features": feats.astype(np.float32)}
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.npz")
        np.savez(tmp, **out)
        os.replace(tmp, path)
        log.info("dataset statistics cached at %s", path)
    return out
