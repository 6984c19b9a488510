"""Equivariance metrics EQ-T (integer), EQ-T_frac and EQ-R as PSNR in dB (spec §6).

For each batch: `ws = mapping(z, c)` (no truncation), `orig = synthesis(ws)` with the identity input
transform, then the same `ws` is synthesized with a translated or rotated input grid and compared
with `orig` moved the same way in pixel space (`eq_transforms`). Squared errors and mask sums are
accumulated in float64 over all batches and ranks; `PSNR = 20 log10(2) - 10 log10(sum err / sum mask)`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sg3.metrics.eq_transforms import (
    fractional_rotation,
    fractional_translation,
    integer_translation,
    pseudo_rotation,
    rotation_matrix,
)
from sg3.metrics.sampling import batch_generator, run_sharded, sample_latents

__all__ = ["EQ_KINDS", "input_transform", "compute_equivariance", "psnr_from_sums"]

EQ_KINDS = ("int", "frac", "rot")
TRANSLATE_MAX = 0.125  # fraction of the image
ROTATE_MAX = 1.0  # fraction of a half turn (1: full circle)


def input_transform(G: torch.nn.Module) -> torch.Tensor:
    """The generator's input transform buffer `G.synthesis.input.transform [3, 3]`.

    Raises:
        TypeError: the network has none (e.g. StyleGAN2), naming what was found.
    """
    inp = getattr(getattr(G, "synthesis", None), "input", None)
    t = getattr(inp, "transform", None)
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != (3, 3):
        raise TypeError(
            f"equivariance metrics and transforms need a StyleGAN3 generator with "
            f"G.synthesis.input.transform [3, 3]; {type(G).__name__} has none (StyleGAN2 networks "
            f"have no Fourier-feature input and cannot be translated or rotated this way)"
        )
    return t


def psnr_from_sums(err_sum: float, mask_sum: float) -> float:
    """PSNR (dB) for images in [-1, 1] (dynamic range 2) from summed squared error and mask."""
    if mask_sum <= 0:
        raise ValueError("no valid pixels in the equivariance masks (images too small for the filters?)")
    mse = err_sum / mask_sum
    return math.inf if mse == 0 else 20 * math.log10(2) - 10 * math.log10(mse)


def _batch_sums(G: torch.nn.Module, kind: str, z: torch.Tensor, c: torch.Tensor, g: torch.Generator):
    transform = input_transform(G)
    dev = transform.device
    ws = G.mapping(z.to(dev), c.to(dev))
    transform.copy_(torch.eye(3))
    orig = G.synthesis(ws, noise_mode="const", force_fp32=True)
    res = G.img_resolution
    t = (torch.rand(2, generator=g, dtype=torch.float64) * 2 - 1) * TRANSLATE_MAX
    angle = (torch.rand((), generator=g, dtype=torch.float64) * 2 - 1) * (ROTATE_MAX * math.pi)
    if kind in ("int", "frac"):
        if kind == "int":
            t = torch.round(t * res) / res
        transform[:2, 2] = -t.to(transform.dtype)
        img = G.synthesis(ws, noise_mode="const", force_fp32=True)
        move = integer_translation if kind == "int" else fractional_translation
        ref, mask = move(orig, float(t[0]), float(t[1]))
        err = (ref - img).square() * mask
    else:
        transform.copy_(rotation_matrix(-angle))
        img = G.synthesis(ws, noise_mode="const", force_fp32=True)
        ref, m1 = fractional_rotation(orig, rotation_matrix(angle).to(dev))
        pseudo, m2 = pseudo_rotation(img, rotation_matrix(-angle).to(dev))
        mask = m1 * m2
        err = (ref - pseudo).square() * mask
    return err.double().sum(), mask.double().sum()


@torch.no_grad()
def compute_equivariance(
    G: torch.nn.Module,
    kind: str,
    num_samples: int,
    *,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 4,
    data: Any = None,
    progress: bool = True,
) -> float:
    """Equivariance PSNR of a StyleGAN3 generator.

    Args:
        G: Generator with `mapping`, `synthesis`, `img_resolution` and an input transform.
        kind: 'int' (EQ-T), 'frac' (EQ-T_frac) or 'rot' (EQ-R).
        num_samples: Number of latents (all ranks together).
        seed: Seed of the latents, labels, translations and angles.
        rank: This process's rank.
        world_size: Number of processes sharing the batches.
        batch_size: Latents per batch; one translation/angle is drawn per batch (4 officially).
        data: Optional data module whose `sample_labels` gives class labels for conditional nets.
        progress: Show a progress bar on rank zero.

    Returns:
        PSNR in dB (higher = more equivariant).
    """
    if kind not in EQ_KINDS:
        raise ValueError(f"kind must be one of {EQ_KINDS}, got {kind!r}")
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}")
    transform = input_transform(G)
    saved = transform.detach().clone()
    num_batches = math.ceil(num_samples / batch_size)

    def one(b: int) -> torch.Tensor:
        g = batch_generator(seed, f"eq-{kind}", b)
        n = min(batch_size, num_samples - b * batch_size)
        z, c = sample_latents(G, n, g, data)
        return torch.stack(_batch_sums(G, kind, z, c, g)).cpu()  # [2] float64

    try:
        sums = run_sharded(one, num_batches, rank, world_size, f"eq-{kind}", progress)
    finally:
        transform.copy_(saved)
    total = torch.stack(sums).sum(0)  # [2], summed in batch order
    return psnr_from_sums(float(total[0]), float(total[1]))
