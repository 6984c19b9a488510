"""Execution of the modulated convolution (spec §1.7) without keeping the per-sample weights.

`modulated_conv2d` (sg3.modules.layers) reduces the weight math to three small factors,

    w[n, o, i, ky, kx] = weight[o, i, ky, kx] * u[n, i] * d[n, o]

(`weight` pre-normalised, `u` = styles * input gain, `d` = demodulation coefficients), and runs the
grouped convolution through `modulated_conv`. Plain autograd would keep the `[N, O, I, k, k]`
per-sample weight (and the modulated weight before demodulation) alive until the backward pass:
at batch 16 and 512 channels that is 150 MB per copy and layer, about 2.4 GB for a 256x256 config-T
generator. The autograd function here keeps only `x` and the three factors and rebuilds the
per-sample weight in the backward pass (one broadcast multiply). Double backward works: the backward
pass is made of differentiable operations.
"""

from __future__ import annotations

import torch


def _scale(u: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """`u [N, I]`, `d [N, O]` -> the per-sample factor `d[n, o] * u[n, i]` as `[N, O, I, 1, 1]`."""
    return (d.unsqueeze(2) * u.unsqueeze(1)).unsqueeze(3).unsqueeze(4)


def per_sample_weight(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`weight [O, I, k, k] * scale [N, O, I, 1, 1]` -> `[N, O, I, k, k]`, cast to `dtype`."""
    return (weight.unsqueeze(0) * scale).to(dtype)


def _conv(x: torch.Tensor, w: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-sample convolution of `x [N, I, H, W]` with `w [N, O, I, k, k]` -> `[N, O, H', W']`."""
    batch, out_channels, in_channels, kh, kw = w.shape
    if kh == 1 and kw == 1 and padding == 0:
        # A 1x1 conv is a per-sample matrix product; bmm avoids the slow grouped 1x1 conv path.
        height, width = x.shape[2:]
        y = torch.bmm(w.reshape(batch, out_channels, in_channels), x.reshape(batch, in_channels, -1))
        return y.reshape(batch, out_channels, height, width)  # [NOHW]
    y = torch.nn.functional.conv2d(
        x.reshape(1, -1, *x.shape[2:]),  # [1, N*I, H, W]
        w.reshape(-1, in_channels, kh, kw),  # [N*O, I, k, k]
        padding=padding,
        groups=batch,
    )
    return y.reshape(batch, out_channels, *y.shape[2:])  # [NOHW]


def _conv_grads(
    x: torch.Tensor, w: torch.Tensor, gy: torch.Tensor, padding: int, need_x: bool, need_w: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of `_conv` w.r.t. `x [N, I, H, W]` and `w [N, O, I, k, k]` for the output gradient `gy`."""
    batch, out_channels, in_channels, kh, kw = w.shape
    if kh == 1 and kw == 1 and padding == 0:
        w3 = w.reshape(batch, out_channels, in_channels)
        x3 = x.reshape(batch, in_channels, -1)  # [N, I, HW]
        g3 = gy.reshape(batch, out_channels, -1)  # [N, O, HW]
        gx = torch.bmm(w3.transpose(1, 2), g3).reshape(x.shape) if need_x else None
        gw = torch.bmm(g3, x3.transpose(1, 2)).reshape(w.shape) if need_w else None
        return gx, gw
    gx, gw, _ = torch.ops.aten.convolution_backward(
        gy.reshape(1, -1, *gy.shape[2:]),  # [1, N*O, H', W']
        x.reshape(1, -1, *x.shape[2:]),  # [1, N*I, H, W]
        w.reshape(-1, in_channels, kh, kw),  # [N*O, I, k, k]
        None,
        [1, 1],
        [padding, padding],
        [1, 1],
        False,
        [0, 0],
        batch,
        [need_x, need_w, False],
    )
    return (gx.reshape(x.shape) if need_x else None), (gw.reshape(w.shape) if need_w else None)


class _ModulatedConv(torch.autograd.Function):
    """`_conv(x, per_sample_weight(weight, u, d))`, saving only x and the factors for backward."""

    @staticmethod
    def forward(ctx, x, weight, u, d, padding: int):  # noqa: D102 - see the class docstring
        ctx.padding = padding
        ctx.save_for_backward(x, weight, u, d)
        return _conv(x, per_sample_weight(weight, _scale(u, d), x.dtype), padding)

    @staticmethod
    def backward(ctx, gy):  # noqa: D102 - see the class docstring
        x, weight, u, d = ctx.saved_tensors
        need_x, need_weight, need_u, need_d = ctx.needs_input_grad[:4]
        scale = _scale(u, d)  # [N, O, I, 1, 1]: once, for the rebuilt weight and for g_weight
        w = per_sample_weight(weight, scale, x.dtype)
        gx, gw = _conv_grads(x, w, gy.to(x.dtype), ctx.padding, need_x, need_weight or need_u or need_d)
        g_weight = g_u = g_d = None
        if gw is not None:
            gw = gw.to(weight.dtype)
            if need_weight:
                g_weight = (gw * scale).sum(0)  # [O, I, k, k]
            if need_u or need_d:
                gw_weight = (gw * weight.unsqueeze(0)).sum([3, 4])  # [N, O, I]
                g_u = (gw_weight * d.unsqueeze(2)).sum(1) if need_u else None  # [N, I]
                g_d = (gw_weight * u.unsqueeze(1)).sum(2) if need_d else None  # [N, O]
        return gx, g_weight, g_u, g_d, None


def modulated_conv(
    x: torch.Tensor, weight: torch.Tensor, u: torch.Tensor, d: torch.Tensor, padding: int
) -> torch.Tensor:
    """Convolve each sample `x[n]` with `weight * u[n] (input channels) * d[n] (output channels)`.

    Args:
        x: Input `[N, I, H, W]`; the convolution runs in its dtype (or in the autocast dtype when
            autocast is on for its device, as `torch.nn.functional.conv2d` would).
        weight: Weight `[O, I, k, k]` (float32; the factor math stays in its dtype).
        u: Per-sample input-channel factors `[N, I]`.
        d: Per-sample output-channel factors `[N, O]`.
        padding: Zero padding on every side, in pixels.

    Returns:
        `[N, O, H + 2*padding - k + 1, W + 2*padding - k + 1]` in the convolution's dtype.
    """
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype != torch.float64:
        x = x.to(torch.get_autocast_dtype(device))
    with torch.autocast(device, enabled=False):
        return _ModulatedConv.apply(x, weight, u, d, padding)
