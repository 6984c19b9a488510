"""Exponential moving average of the generator weights (G_ema, spec §5.1)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """Move G_ema towards G: parameters `p_ema <- lerp(p, p_ema, beta)`, buffers copied verbatim.

    Args:
        G_ema: The averaged copy (same architecture as `G`); modified in place.
        G: The generator being trained.
        beta: Decay in [0, 1]; 0 copies G, 1 keeps G_ema unchanged.

    Raises:
        ValueError: if `beta` is outside [0, 1] or the two networks' parameter names differ.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta={beta} is not valid: a decay in [0, 1]")
    src_params = dict(G.named_parameters())
    ema_params = dict(G_ema.named_parameters())
    if src_params.keys() != ema_params.keys():
        diff = sorted(set(src_params) ^ set(ema_params))
        raise ValueError(f"G and G_ema differ in their parameters: {diff[:8]}")
    # One multi-tensor kernel per dtype/device group instead of two launches per parameter (GPU step time).
    # p_ema + (1 - beta) (p - p_ema) = lerp(p, p_ema, beta).
    names = list(ema_params)
    torch._foreach_lerp_([ema_params[n] for n in names], [src_params[n].detach() for n in names], 1.0 - beta)
    src_buffers = dict(G.named_buffers())
    pairs = [(b_ema, src_buffers[name]) for name, b_ema in G_ema.named_buffers() if name in src_buffers]
    if pairs:
        torch._foreach_copy_([b for b, _ in pairs], [b for _, b in pairs])
