"""FID, KID, precision/recall and Inception score: generated vs real detector features (spec §6)."""

from __future__ import annotations

import math

import numpy as np
import torch

from sg3.metrics.options import MetricOptions, get_detector
from sg3.metrics.real_stats import real_features
from sg3.metrics.sampling import batch_generator, batch_seed, generate_images, run_sharded, sample_latents
from sg3.metrics.stats import (
    feature_moments,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)

__all__ = ["check_data", "generated_features", "compute_fid", "compute_kid", "compute_pr", "compute_is"]


def generated_features(detector: torch.nn.Module, num: int, opts: MetricOptions, tag: str) -> np.ndarray:
    """Detector features `[num, D]` of `num` generated images (sharded over ranks, same on every rank).

    Args:
        detector: Feature detector (`uint8 [N,3,H,W] -> [N, D]`).
        num: Number of generated images.
        opts: Run settings (generator, seed, ranks, batch size, ...).
        tag: Stream name mixed into the per-batch seeds (metric family).

    Returns:
        float32 features in sample order.
    """
    G = opts.G
    if num < 1:
        raise ValueError(f"number of generated samples must be >= 1, got {num}")
    bs = opts.batch_size
    num_batches = math.ceil(num / bs)

    def one(b: int) -> torch.Tensor:
        g = batch_generator(opts.seed, tag, b)
        z, c = sample_latents(G, bs, g, opts.data)
        img = generate_images(
            G, z.to(opts.device), c.to(opts.device), batch_seed(opts.seed, tag + "-noise", b)
        )
        with torch.no_grad():
            return detector(img).float().cpu()  # [bs, D]

    feats = run_sharded(one, num_batches, opts.rank, opts.world_size, f"{tag} samples", opts.progress)
    return torch.cat(feats)[:num].numpy()


def check_data(opts: MetricOptions, metric: str) -> None:
    data = opts.data
    if data is None:
        raise ValueError(f"metric {metric!r} compares with real images: pass data=<dataset.json or shards>")
    res = getattr(data, "resolution", None)
    if res is not None and res != opts.G.img_resolution:
        raise ValueError(
            f"metric {metric!r}: data resolution {res} does not match the generator's "
            f"img_resolution {opts.G.img_resolution}"
        )


def _reals(opts: MetricOptions, detector: torch.nn.Module, max_items: int | None, moments: bool) -> dict:
    return real_features(
        opts.data,
        detector,
        max_items=max_items,
        device=opts.device,
        batch_size=max(opts.batch_size, 16),
        rank=opts.rank,
        world_size=opts.world_size,
        cache_dir=opts.cache_dir,
        progress=opts.progress,
        moments=moments,
        xflip=opts.xflip,
    )


def compute_fid(num_gen: int, max_real: int | None, opts: MetricOptions, metric: str = "fid") -> float:
    """Frechet Inception distance of `num_gen` generated images vs (at most `max_real`) real images.

    The real set is the x-flip-doubled dataset when `opts.xflip` is set (as in `compute_kid`, `compute_pr`).
    """
    check_data(opts, metric)
    det = get_detector("inception", opts)
    real = _reals(opts, det, max_real, moments=True)
    mu, sigma = feature_moments(generated_features(det, num_gen, opts, "fid"))
    return frechet_distance(mu, sigma, real["mu"], real["sigma"])


def compute_kid(num_gen: int, max_real: int | None, opts: MetricOptions, metric: str = "kid") -> float:
    """Kernel Inception distance (100 subsets of up to 1000 samples)."""
    check_data(opts, metric)
    det = get_detector("inception", opts)
    real = _reals(opts, det, max_real, moments=False)["features"]
    gen = generated_features(det, num_gen, opts, "kid")
    return kernel_inception_distance(gen, real, seed=opts.seed)


def compute_pr(
    num_gen: int, max_real: int | None, k: int, opts: MetricOptions, metric: str = "pr"
) -> tuple[float, float]:
    """Precision and recall on VGG16 features with k-NN manifolds."""
    check_data(opts, metric)
    det = get_detector("vgg16", opts)
    real = _reals(opts, det, max_real, moments=False)["features"]
    gen = generated_features(det, num_gen, opts, "pr")
    return precision_recall(gen.astype(np.float16), real.astype(np.float16), k=k, device=opts.device)


def compute_is(num_gen: int, opts: MetricOptions) -> tuple[float, float]:
    """Inception score (mean, std over 10 splits) of generated images."""
    det = get_detector("inception_probs", opts)
    return inception_score(generated_features(det, num_gen, opts, "is"), num_splits=10)
