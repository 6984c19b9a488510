"""Perceptual path length (spec §6, `ppl2_wend` and its z/full variants) with LPIPS (VGG16)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from sg3.metrics.options import MetricOptions, get_detector
from sg3.metrics.sampling import batch_generator, run_sharded, sample_labels

__all__ = ["slerp", "compute_ppl"]

EPSILON = 1e-4


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of `a` and `b` `[N, D]` at `t` `[N, 1]`."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True).clamp(-1, 1)
    p = t * torch.acos(d)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def _to_lpips_range(img: torch.Tensor) -> torch.Tensor:
    res = img.shape[-1]
    if res > 256:
        f = res // 256
        img = F.avg_pool2d(img, f)  # box downsample to 256
    img = (img + 1) * 127.5
    return img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img


@torch.no_grad()
def compute_ppl(num: int, space: str, sampling: str, opts: MetricOptions, batch_size: int = 2) -> float:
    """Perceptual path length with epsilon 1e-4, trimmed to the 1st..99th percentile.

    Args:
        num: Number of path samples.
        space: 'w' (interpolate mapped latents linearly) or 'z' (slerp in z).
        sampling: 'end' (t = 0) or 'full' (t ~ U[0, 1]).
        opts: Run settings; the detector of kind 'lpips' measures the distances.
        batch_size: Paths per batch (2 officially).

    Returns:
        The mean of `lpips(a, b) / eps^2` over the kept samples.
    """
    if space not in ("w", "z") or sampling not in ("end", "full"):
        raise ValueError(f"space must be 'w'|'z' and sampling 'end'|'full', got {space!r}, {sampling!r}")
    G, dev = opts.G, opts.device
    lpips = get_detector("lpips", opts)
    num_batches = math.ceil(num / batch_size)
    # StyleGAN2 layers keep their 'const' noise in buffers; the metric redraws them for every batch (a no-op
    # for StyleGAN3, which has none) and puts the network's own ones back afterwards.
    noise_bufs = [buf for name, buf in G.named_buffers() if name.endswith("noise_const")]
    saved = [buf.clone() for buf in noise_bufs]

    def one(b: int) -> torch.Tensor:
        g = batch_generator(opts.seed, f"ppl-{space}{sampling}", b)
        z = torch.randn(2 * batch_size, G.z_dim, generator=g)
        c = sample_labels(G, batch_size, g, opts.data)  # like the dataset's labels
        t = torch.rand(batch_size, 1, generator=g) * (1 if sampling == "full" else 0)
        for buf in noise_bufs:
            buf.copy_(torch.randn(buf.shape, generator=g, dtype=buf.dtype))
        z0, z1 = z.chunk(2)
        c2 = torch.cat([c, c]).to(dev)
        if space == "w":
            w0, w1 = G.mapping(z.to(dev), c2).chunk(2)  # [B, num_ws, w_dim] each
            tt = t.to(dev).unsqueeze(2)
            ws = torch.cat([torch.lerp(w0, w1, tt), torch.lerp(w0, w1, tt + EPSILON)])
        else:
            za, zb = slerp(z0, z1, t), slerp(z0, z1, t + EPSILON)
            ws = G.mapping(torch.cat([za, zb]).to(dev), c2)
        img = G.synthesis(ws, noise_mode="const", force_fp32=True)
        a, bb = _to_lpips_range(img).chunk(2)
        return (lpips(a, bb) / EPSILON**2).double().cpu()  # [B]

    try:
        dist = torch.cat(run_sharded(one, num_batches, opts.rank, opts.world_size, "ppl", opts.progress))
    finally:
        for buf, old in zip(noise_bufs, saved, strict=True):
            buf.copy_(old)
    dist = dist[:num].numpy()
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(np.extract(np.logical_and(dist >= lo, dist <= hi), dist).mean())
