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

Two executions of a kernel larger than 1x1 (`set_modconv_impl`, or the environment variable
SG3_MODCONV): 'grouped' (the default) convolves each sample with its own weight in one grouped
convolution; 'dense' runs `d * conv(u * x, weight)`, one ordinary convolution over the batch, whose
backward pass needs one more ordinary convolution (the gradient of `d` reads the undemodulated output,
recomputed rather than kept). Which one is faster depends on the device's convolution kernels
(docs/gpu.md); the results agree to rounding. A 1x1 kernel without padding is always a batched matrix
product.
"""

from __future__ import annotations

import math

import torch

from sg3.ops._dispatch import ProcessChoice

MODCONV_IMPLS = ("grouped", "dense")
IMPL_ENV = "SG3_MODCONV"
_impl = ProcessChoice(IMPL_ENV, MODCONV_IMPLS, "set_modconv_impl(name)")


def set_modconv_impl(name: str | None) -> None:
    """Choose how modulated convolutions with a kernel larger than 1x1 run in this process.

    Args:
        name: 'grouped' (the default: one grouped convolution with per-sample weights) or 'dense' (one
            ordinary convolution of the modulated input, then demodulation); None = back to the
            environment variable SG3_MODCONV (unset: 'grouped').
    """
    _impl.set(name)


def get_modconv_impl() -> str:
    """The execution in effect: set_modconv_impl's, else $SG3_MODCONV, else 'grouped'."""
    return _impl.get()


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


def _channel(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`[N, C]` factors -> `[N, C, 1, 1]` in `dtype`, to scale the channels of an `[N, C, H, W]` tensor."""
    return t.to(dtype).unsqueeze(2).unsqueeze(3)


class _DenseModulatedConv(torch.autograd.Function):
    """`d * conv(u * x, weight)`: the result of `_ModulatedConv` from one ordinary (batch-wide) convolution.

    Saves the same tensors (x and the factors). The backward pass recomputes `u * x` and the undemodulated
    output `conv(u * x, weight)`, whose product with the output gradient gives the gradient of `d`.
    """

    @staticmethod
    def forward(ctx, x, weight, u, d, padding: int):  # noqa: D102 - see the class docstring
        ctx.padding = padding
        ctx.save_for_backward(x, weight, u, d)
        y = torch.nn.functional.conv2d(x * _channel(u, x.dtype), weight.to(x.dtype), padding=padding)
        return y * _channel(d, x.dtype)

    @staticmethod
    def backward(ctx, gy):  # noqa: D102 - see the class docstring
        x, weight, u, d = ctx.saved_tensors
        need_x, need_weight, need_u, need_d = ctx.needs_input_grad[:4]
        p = ctx.padding
        gy = gy.to(x.dtype)
        w = weight.to(x.dtype)
        xs = x * _channel(u, x.dtype)  # [NIHW]
        acc = torch.promote_types(x.dtype, torch.float32)  # per-sample sums accumulate in >= float32
        # Temporaries of the activations' size are freed (or overwritten) as soon as they are used, so at
        # most two live at once; in-place only without create_graph (double backward keeps plain ops).
        inplace = not torch.is_grad_enabled()
        g_x = g_weight = g_u = g_d = None
        if need_d:
            y_plain = torch.nn.functional.conv2d(xs, w, padding=p)  # [NOHW], not demodulated
            y_plain = y_plain.mul_(gy) if inplace else y_plain * gy
            g_d = y_plain.sum([2, 3], dtype=acc).to(d.dtype)  # [N, O]
            del y_plain
        if need_x or need_u or need_weight:
            gxs, gw, _ = torch.ops.aten.convolution_backward(
                gy * _channel(d, x.dtype),
                xs,
                w,
                None,
                [1, 1],
                [p, p],
                [1, 1],
                False,
                [0, 0],
                1,
                [need_x or need_u, need_weight, False],
            )  # gxs: [NIHW], gw: [OIkk]
            del xs
            if need_weight:
                g_weight = gw.to(weight.dtype)
            if need_u:
                g_u = (gxs * x).sum([2, 3], dtype=acc).to(u.dtype)  # [N, I]
            if need_x:
                g_x = gxs.mul_(_channel(u, x.dtype)) if inplace else gxs * _channel(u, x.dtype)
        return g_x, g_weight, g_u, g_d, None


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
    kh, kw = weight.shape[2:]
    with torch.autocast(device, enabled=False):
        if get_modconv_impl() == "dense" and (kh * kw > 1 or padding > 0):
            # The factor c = 1/sqrt(I k k) keeps the undemodulated output near the output's scale (d is
            # about c for normalised weights and styles), so float16 does not overflow before the
            # demodulation; weight * c and d / c give the same product.
            c = 1 / math.sqrt(weight.shape[1] * kh * kw)
            return _DenseModulatedConv.apply(x, weight * c, u, d / c, padding)
        return _ModulatedConv.apply(x, weight, u, d, padding)
