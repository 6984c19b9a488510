"""upfirdn2d: upsample, pad, FIR-filter and downsample a batch of 2-D images (spec §2.1).

Per channel and axis: insert `up - 1` zeros after each sample, pad with zeros (negative values crop),
filter with the FIR `f` in "valid" mode (a true convolution unless `flip_filter`), keep every
`down`-th sample. Also the filter helpers `setup_filter`, `filter2d`, `upsample2d`, `downsample2d`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sg3.ops import _dispatch
from sg3.ops._params import (
    check_filter,
    check_scalar,
    check_tensor,
    empty_input_output,
    filter_size,
    output_length,
    output_size,
    pad_or_crop,
    parse_padding,
    parse_scaling,
)


def setup_filter(
    f: object,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn a filter specification into the float32 tensor the ops expect.

    Args:
        f: None (identity, 1x1 of ones), a list/array/tensor of taps, 1-D or 2-D.
        device: Device of the returned tensor.
        normalize: Divide by the sum of the taps so the filter has unit DC gain.
        flip_filter: Flip the filter along every axis.
        gain: Overall gain; 1-D filters get `sqrt(gain)` (applied once per axis, so gain must be >= 0),
            2-D filters `gain`.
        separable: Keep a 1-D filter 1-D (True; a 2-D f then raises ValueError) or expand it to the 2-D
            outer product (False); None = keep 1-D only when it has at least 8 taps.

    Returns:
        A float32 tensor `[taps]` (separable) or `[fh, fw]`.

    Raises:
        ValueError: f has no taps, a rank other than 0-2, a NaN or infinite tap (also after normalize and
            gain), or sums to zero (normalize).
    """
    gain = check_scalar(gain, "gain")
    if f is None:
        f = 1
    f = torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[np.newaxis]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(
            f"f must be 1-D [taps] or 2-D [fh, fw] with at least one tap, got shape {list(f.shape)}"
        )
    _check_finite(f, "f has non-finite taps (NaN or inf)")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    elif separable and f.ndim == 2:
        raise ValueError(
            f"separable=True needs a 1-D filter [taps], got f of shape {list(f.shape)}; "
            "pass separable=None or False for a 2-D filter"
        )
    if f.ndim == 1 and not separable:
        f = f.ger(f)  # [taps] -> [taps, taps]
    if normalize:
        total = f.sum()
        if total == 0:
            raise ValueError("f sums to zero and cannot be normalized; pass normalize=False")
        f = f / total
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 1 and gain < 0:
        raise ValueError(
            f"a separable (1-D) filter cannot carry a negative gain ({gain}): it is applied once per "
            "axis, so its sign cancels; pass separable=False or apply the sign to the data"
        )
    f = f * (gain ** (f.ndim / 2))
    _check_finite(f, f"f has non-finite taps after normalization and gain {gain}")
    return f.to(device=device)


def _check_finite(f: torch.Tensor, what: str) -> None:
    """Raise a ValueError starting with `what` if the filter `f` has a NaN or infinite tap."""
    finite = torch.isfinite(f)
    if not finite.all():
        raise ValueError(f"{what}: {int((~finite).sum())} of the {f.numel()} taps of shape {list(f.shape)}")


def pass_gains(gain: float) -> tuple[float, float]:
    """Gains of the two passes of a separable filter: `sqrt(|gain|)` each, the sign on the first only.

    Their product is `gain` (spec 2.1: total gain `gain` whatever the filter's rank); for `gain >= 0`
    both are `gain ** 0.5`, bit for bit.
    """
    root = abs(gain) ** 0.5
    return (-root if gain < 0 else root), root


def _upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Pure-PyTorch upfirdn2d: zero insertion, F.pad, depthwise conv2d, strided slicing."""
    n, c, h, w = x.shape
    upx, upy = up
    downx, downy = down
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)  # [N, C, H, 1, W, 1]
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])  # zeros after each sample
        x = x.reshape(n, c, h * upy, w * upx)  # [N, C, H*upy, W*upx]
    x = pad_or_crop(x, padding)  # negative values crop
    if f is None:
        if gain != 1:
            x = x * gain
    else:
        f = f.to(device=x.device, dtype=x.dtype)  # as compiled_filter does for the compiled paths
        if not flip_filter:
            f = f.flip(list(range(f.ndim)))  # conv2d correlates; a true convolution needs the flip
        if f.ndim == 2:
            f = f * gain
            x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)  # weight [C, 1, fh, fw]
        else:
            fx, fy = (f * g for g in pass_gains(gain))  # sqrt(|gain|) per pass, the sign once
            x = F.conv2d(x, fx[None, None, None].expand(c, 1, 1, f.numel()), groups=c)  # [C, 1, 1, taps]
            x = F.conv2d(x, fy[None, None, :, None].expand(c, 1, f.numel(), 1), groups=c)  # [C, 1, taps, 1]
    return x[:, :, ::downy, ::downx]


def compiled_filter(f: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A filter as the compiled kernels take it (csrc/ops.h): contiguous, float64 for float64 x else float32.

    Args:
        f: Filter (None = identity, passed as `ones([1])`).
        x: The main input (its dtype and device decide the filter's).

    Returns:
        A contiguous 1-D or 2-D tensor on x's device.
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if f is None:
        return torch.ones([1], dtype=dtype, device=x.device)
    return f.to(device=x.device, dtype=dtype).contiguous()


def kernel_input(x: torch.Tensor) -> torch.Tensor:
    """x as the compiled kernels take it: contiguous; on CPU float16/bfloat16 are upcast to float32."""
    if not x.is_cuda and x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x.contiguous()


def _call_kernel(x, f2, ext, up, down, padding, flip_filter, gain) -> torch.Tensor:
    """One compiled upfirdn2d call with a 2-D filter, not recorded by autograd; returns x's dtype."""
    y = ext.upfirdn2d(kernel_input(x), f2, up[0], up[1], down[0], down[1], *padding, flip_filter, gain)
    return y if y.dtype == x.dtype else y.to(x.dtype)


class _Upfirdn2dCompiled(torch.autograd.Function):
    """One compiled upfirdn2d call with a 2-D filter; backward is again this op (any derivative order)."""

    @staticmethod
    def forward(ctx, x, f2, ext, up, down, padding, flip_filter, gain):  # noqa: D102
        ctx.save_for_backward(f2)
        ctx.args = (ext, up, down, padding, flip_filter, gain, x.shape)
        return _call_kernel(x, f2, ext, up, down, padding, flip_filter, gain)

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        (f2,) = ctx.saved_tensors
        ext, up, down, padding, flip_filter, gain, in_shape = ctx.args
        fh, fw = f2.shape
        px0, px1, py0, py1 = padding
        in_h, in_w = in_shape[2], in_shape[3]
        out_h, out_w = dy.shape[2], dy.shape[3]
        grad_padding = (
            fw - px0 - 1,
            in_w * up[0] - out_w * down[0] + px0 - up[0] + 1,
            fh - py0 - 1,
            in_h * up[1] - out_h * down[1] + py0 - up[1] + 1,
        )
        args = (f2, ext, down, up, grad_padding, not flip_filter, gain)
        if torch.is_grad_enabled():  # create_graph: a differentiable node for double backward
            dx = _Upfirdn2dCompiled.apply(dy, *args)
        else:  # plain backward: call the kernel directly (saves a node on small tensors)
            dx = _call_kernel(dy, *args)
        return dx, None, None, None, None, None, None, None


def _upfirdn2d_compiled(x, f, ext, up, down, padding, flip_filter, gain):
    """Compiled upfirdn2d: one 2-D call, or two 1-D passes (smaller intermediate first) for a 1-D filter."""
    ff = compiled_filter(f, x)
    if ff.ndim == 2:
        return _Upfirdn2dCompiled.apply(x, ff, ext, up, down, padding, flip_filter, gain)
    px0, px1, py0, py1 = padding
    taps = ff.numel()
    gains = pass_gains(gain)  # sqrt(|gain|) per pass, the sign on the first one run
    x_pass = (ff.reshape(1, taps), (up[0], 1), (down[0], 1), (px0, px1, 0, 0))  # f [1, taps]
    y_pass = (ff.reshape(taps, 1), (1, up[1]), (1, down[1]), (0, 0, py0, py1))  # f [taps, 1]
    n, c, h, w = x.shape
    out_w = output_length(w, up[0], down[0], px0, px1, taps)
    out_h = output_length(h, up[1], down[1], py0, py1, taps)
    passes = (x_pass, y_pass) if h * out_w <= out_h * w else (y_pass, x_pass)
    for (f2, u, d, p), g in zip(passes, gains):
        x = _Upfirdn2dCompiled.apply(x, f2, ext, u, d, p, flip_filter, g)
    return x


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | list[int] = 1,
    down: int | list[int] = 1,
    padding: int | list[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Args:
        x: Input `[N, C, H, W]`, floating point.
        f: Filter: None (identity), 1-D `[taps]` (separable, applied along x then y) or 2-D `[fh, fw]`.
        up: Integer upsampling factor (>= 1), or `[upx, upy]`.
        down: Integer downsampling factor (>= 1), or `[downx, downy]`.
        padding: Zero padding of the upsampled image (negative crops): int, `[px, py]` or `[x0, x1, y0, y1]`.
        flip_filter: False = true convolution, True = correlation.
        gain: Overall signal gain (the filter is scaled by `gain ** (f.ndim / 2)`).
        impl: 'auto' (process default), 'ref', 'cpp' or 'cuda'.

    Returns:
        `[N, C, out_h, out_w]` with `out = (n*up + p0 + p1 - (taps-1) + down - 1) // down` per axis.
    """
    check_tensor(x, "x", ndim=4)
    check_filter(f, "f")
    upx, upy = parse_scaling(up, "up")
    downx, downy = parse_scaling(down, "down")
    pads = parse_padding(padding)
    gain = check_scalar(gain, "gain")
    fw, fh = filter_size(f)
    args = f"filter {fh}x{fw}, up {(upx, upy)}, down {(downx, downy)}, padding {list(pads)}"
    args += "; pad more or crop less"
    out_h, out_w = output_size("upfirdn2d", x.shape, (upx, upy), (downx, downy), pads, (fw, fh), args)
    if x.numel() == 0:
        return empty_input_output(x, out_h, out_w)
    name, ext = _dispatch.within_cpu_taps(*_dispatch.resolve(impl, x), impl, {"f": f})
    if name == "ref":
        return _upfirdn2d_ref(x, f, (upx, upy), (downx, downy), pads, flip_filter, gain)
    return _upfirdn2d_compiled(x, f, ext, (upx, upy), (downx, downy), pads, bool(flip_filter), gain)


def _centred_padding(f: torch.Tensor | None, padding: object, factor: tuple[int, int], up: bool) -> list[int]:
    """Padding `[x0, x1, y0, y1]` centring filter `f` for resampling by `factor`, plus the extra `padding`.

    Per axis with `t` taps and factor `s`: upsampling pads `[(t + s - 1) // 2, (t - s) // 2]`, downsampling
    `[(t - s + 1) // 2, (t - s) // 2]`; `s = 1` (either) keeps the size: `[t // 2, (t - 1) // 2]`.
    """
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(check_filter(f, "f"))
    sx, sy = factor
    lead_x, lead_y = (sx - 1, sy - 1) if up else (1 - sx, 1 - sy)
    return [px0 + (fw + lead_x) // 2, px1 + (fw - sx) // 2, py0 + (fh + lead_y) // 2, py1 + (fh - sy) // 2]


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: int | list[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Filter with `f` keeping the image size (pads `[fw // 2, (fw - 1) // 2]` per axis, plus `padding`).

    Args:
        x: Input `[N, C, H, W]`.
        f: Filter (None, 1-D or 2-D).
        padding: Extra padding on top of the size-preserving one: int, `[px, py]` or `[x0, x1, y0, y1]`.
        flip_filter: False = true convolution, True = correlation.
        gain: Overall signal gain.
        impl: 'auto', 'ref', 'cpp' or 'cuda'.

    Returns:
        `[N, C, H + extra, W + extra]`.
    """
    pads = _centred_padding(f, padding, (1, 1), up=False)
    return upfirdn2d(x, f, padding=pads, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | list[int] = 2,
    padding: int | list[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Upsample by `up` with filter `f` (gain `up**2` keeps the level; pads `[(fw+up-1)//2, (fw-up)//2]`).

    Args:
        x: Input `[N, C, H, W]`.
        f: Filter (None, 1-D or 2-D).
        up: Integer upsampling factor or `[upx, upy]`.
        padding: Extra padding: int, `[px, py]` or `[x0, x1, y0, y1]`.
        flip_filter: False = true convolution, True = correlation.
        gain: Overall signal gain on top of the `up**2` compensation.
        impl: 'auto', 'ref', 'cpp' or 'cuda'.

    Returns:
        `[N, C, H*upy, W*upx]` (plus extra padding).
    """
    upx, upy = parse_scaling(up, "up")
    pads = _centred_padding(f, padding, (upx, upy), up=True)
    gain = check_scalar(gain, "gain") * upx * upy
    return upfirdn2d(x, f, up=[upx, upy], padding=pads, flip_filter=flip_filter, gain=gain, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: int | list[int] = 2,
    padding: int | list[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Filter with `f` and keep every `down`-th sample (pads `[(fw-down+1)//2, (fw-down)//2]`).

    Args:
        x: Input `[N, C, H, W]`.
        f: Filter (None, 1-D or 2-D).
        down: Integer downsampling factor or `[downx, downy]`.
        padding: Extra padding: int, `[px, py]` or `[x0, x1, y0, y1]`.
        flip_filter: False = true convolution, True = correlation.
        gain: Overall signal gain.
        impl: 'auto', 'ref', 'cpp' or 'cuda'.

    Returns:
        `[N, C, H // downy, W // downx]` (plus extra padding).
    """
    downx, downy = parse_scaling(down, "down")
    pads = _centred_padding(f, padding, (downx, downy), up=False)
    return upfirdn2d(x, f, down=[downx, downy], padding=pads, flip_filter=flip_filter, gain=gain, impl=impl)
