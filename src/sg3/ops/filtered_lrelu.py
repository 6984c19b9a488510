"""filtered_lrelu: bias, upsample, leaky ReLU with gain, clamp, downsample in one op (spec §2.3).

The reference path composes `bias_act` and `upfirdn2d` exactly as the spec describes. The compiled
paths fuse everything: the upsampled intermediate never exists as a whole tensor, zeros inserted by
the upsampler are never multiplied and samples the downsampler discards are never computed. Their
forward stores one small code per upsampled-domain sample (sign / clamped) that the backward reads.
"""

from __future__ import annotations

import math

import torch

from sg3.ops import _dispatch
from sg3.ops._params import (
    as_int,
    check_filter,
    check_scalar,
    check_tensor,
    empty_input_output,
    filter_size,
    output_size,
    parse_padding,
)
from sg3.ops.bias_act import bias_act
from sg3.ops.upfirdn2d import compiled_filter, kernel_input, upfirdn2d

CUDA_KERNELS = ("tiled", "blocked")  # index = the extension's kernel code (FlreluKernel, cuda_launch.cuh)
KERNEL_ENV = "SG3_FLRELU_KERNEL"
_cuda_kernel = _dispatch.ProcessChoice(KERNEL_ENV, CUDA_KERNELS, "set_cuda_kernel(name)")


def set_cuda_kernel(name: str | None) -> None:
    """Choose the CUDA filtered_lrelu kernel variant for this process (docs/gpu.md).

    Args:
        name: 'tiled' (the default) or 'blocked' (register-blocked passes; calls it does not cover run
            the tiled kernel); None = back to the environment variable SG3_FLRELU_KERNEL (unset: 'tiled').
    """
    _cuda_kernel.set(name)


def get_cuda_kernel() -> str:
    """The CUDA filtered_lrelu kernel in effect: set_cuda_kernel's, else $SG3_FLRELU_KERNEL, else 'tiled'."""
    return _cuda_kernel.get()


def _check_factor(value: object, name: str) -> int:
    factor = as_int(value)
    if factor is None:
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if factor < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return factor


def _filtered_lrelu_ref(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """The spec's composition: bias_act -> upfirdn2d(up) -> lrelu*gain, clamp -> upfirdn2d(down)."""
    if b is not None:
        x = bias_act(x, b, impl="ref")
    x = upfirdn2d(x, fu, up=up, padding=list(padding), flip_filter=flip_filter, gain=up**2, impl="ref")
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp, impl="ref")
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter, impl="ref")


class _FilteredLreluCompiled(torch.autograd.Function):
    """Fused forward; fused backward for x and b (filters get no gradient). Differentiable once."""

    @staticmethod
    def forward(ctx, x, fu, fd, b, ext, kernel, up, down, padding, gain, slope, clamp, flip_filter):  # noqa: D102
        fu_k = compiled_filter(fu, x)
        fd_k = compiled_filter(fd, x)
        xk = kernel_input(x)
        bk = b.to(xk.dtype) if b is not None else torch.empty([0], dtype=xk.dtype, device=x.device)
        write_signs = bool(ctx.needs_input_grad[0] or ctx.needs_input_grad[3])  # codes only if needed
        args = (xk, fu_k, fd_k, bk, up, down, *padding, gain, slope, -1.0 if clamp is None else clamp)
        if kernel is None:  # the C++ CPU extension, or the default CUDA kernel
            y, signs = ext.filtered_lrelu_fwd(*args, flip_filter, write_signs)
        else:
            y, signs = ext.filtered_lrelu_fwd_variant(*args, flip_filter, write_signs, kernel)
        ctx.save_for_backward(fu_k, fd_k, signs)
        ctx.args = (ext, kernel, up, down, padding, gain, slope, flip_filter, x.shape, x.dtype, b is not None)
        return y.to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):  # noqa: D102
        fu_k, fd_k, signs = ctx.saved_tensors
        ext, kernel, up, down, padding, gain, slope, flip_filter, in_shape, in_dtype, has_bias = ctx.args
        if signs.numel() == 0:
            raise RuntimeError("filtered_lrelu: backward called but the forward ran without recording signs")
        dyk = kernel_input(dy)
        args = (dyk, fu_k, fd_k, signs, up, down, *padding, in_shape[2], in_shape[3], gain, slope)
        if kernel is None:
            dx = ext.filtered_lrelu_bwd(*args, flip_filter)
        else:
            dx = ext.filtered_lrelu_bwd_variant(*args, flip_filter, kernel)
        db = dx.sum([0, 2, 3]).to(in_dtype) if has_bias and ctx.needs_input_grad[3] else None
        return dx.to(in_dtype), None, None, db, *([None] * 9)


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | list[int] = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    impl: str = "auto",
) -> torch.Tensor:
    """Bias, upsample (fu), leaky ReLU times gain, clamp, downsample (fd).

    Args:
        x: Input `[N, C, H, W]`, float16/float32/float64.
        fu: Upsampling filter: None (identity), 1-D `[taps]` (separable) or 2-D `[fh, fw]`; gets gain `up**2`.
        fd: Downsampling filter: None (identity), 1-D or 2-D (e.g. the radial filters of config R).
        b: Bias `[C]` of x's dtype added before upsampling; None = no bias.
        up: Integer upsampling factor (>= 1).
        down: Integer downsampling factor (>= 1).
        padding: Padding of the upsampled image: int, `[px, py]` or `[x0, x1, y0, y1]` (negative crops).
        gain: Multiplier after the leaky ReLU.
        slope: Negative slope of the leaky ReLU (1 = identity).
        clamp: Clamp the activation to `[-clamp, clamp]` (None = no clamping; must be >= 0).
        flip_filter: False = true convolution with the filters, True = correlation.
        impl: 'auto', 'ref', 'cpp' or 'cuda' (CUDA kernel variant: see `set_cuda_kernel`).

    Returns:
        `[N, C, out_h, out_w]` of x's dtype, per axis
        `out = (n*up + p0 + p1 - (fu_taps-1) - (fd_taps-1) + down - 1) // down`.
    """
    check_tensor(x, "x", ndim=4)
    check_filter(fu, "fu")
    check_filter(fd, "fd")
    up = _check_factor(up, "up")
    down = _check_factor(down, "down")
    pads = parse_padding(padding)
    gain = check_scalar(gain, "gain")
    slope = check_scalar(slope, "slope")
    clamp = check_scalar(clamp, "clamp", allow_none=True, minimum=0)
    if b is not None:
        check_tensor(b, "b")
        if b.ndim != 1 or b.shape[0] != x.shape[1]:
            raise ValueError(f"b must be 1-D of length x.shape[1] = {x.shape[1]}, got shape {list(b.shape)}")
        if b.dtype != x.dtype:
            raise TypeError(f"b must have the same dtype as x ({x.dtype}), got {b.dtype}")
        if b.device != x.device:
            raise ValueError(f"b must be on the same device as x ({x.device}), got {b.device}")
    fuw, fuh = filter_size(fu)
    fdw, fdh = filter_size(fd)
    out_h, out_w = output_size(
        "filtered_lrelu", x.shape, (up, up), (down, down), pads, (fuw + fdw - 1, fuh + fdh - 1),
        f"up {up}, down {down}, padding {list(pads)}, fu {fuh}x{fuw}, fd {fdh}x{fdw}",
    )  # fmt: skip
    if x.numel() == 0:
        return empty_input_output(x, out_h, out_w, b)
    name, ext = _dispatch.within_cpu_taps(*_dispatch.resolve(impl, x), impl, {"fu": fu, "fd": fd})
    if name == "ref":
        return _filtered_lrelu_ref(x, fu, fd, b, up, down, pads, gain, slope, clamp, flip_filter)
    kernel = get_cuda_kernel() if name == "cuda" else "tiled"
    code = None if kernel == "tiled" else CUDA_KERNELS.index(kernel)
    return _FilteredLreluCompiled.apply(
        x, fu, fd, b, ext, code, up, down, pads, gain, slope, clamp, bool(flip_filter)
    )
