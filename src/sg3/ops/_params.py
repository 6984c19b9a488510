"""Argument parsing and validation shared by the ops (spec §2).

Every public op funnels its arguments through these helpers so that bad input raises the same
kind of error everywhere: `TypeError` for wrong types/dtypes, `ValueError` for wrong values/shapes,
always naming the argument, the value received and what is accepted.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch


def as_int(value: object) -> int | None:
    """`value` as an int if it is an integer scalar (int, numpy integer, 0-d integer tensor), else None.

    Bools (Python, numpy or tensor) are not integers here: a bool factor or padding is a mistake.
    """
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
            return None
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    return None


def as_real(value: object) -> float | None:
    """`value` as a float if it is a real scalar (int, float, numpy scalar, 0-d real tensor), else None.

    Bools and complex numbers are refused (None), as is any other object that merely has `__float__`.
    """
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.dtype == torch.bool or value.is_complex():
            return None
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def check_tensor(x: object, name: str, ndim: int | None = None) -> torch.Tensor:
    """Check that `x` is a floating-point tensor, optionally of a given rank.

    Args:
        x: The object to check.
        name: Argument name used in error messages.
        ndim: Required number of dimensions (None = any rank).

    Returns:
        `x`, unchanged.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), got {x.dtype}"
        )
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim} ([N, C, H, W]), got shape {list(x.shape)}")
    return x


def parse_scaling(value: object, name: str) -> tuple[int, int]:
    """Parse an up/down factor given as an int or an `[x, y]` pair.

    Args:
        value: Factor (int >= 1) or pair of factors `[fx, fy]`.
        name: Argument name used in error messages.

    Returns:
        `(fx, fy)`.
    """
    accepted = "an int >= 1 or a pair [x, y] of such ints"
    if isinstance(value, Sequence) and not isinstance(value, str):
        pair = tuple(as_int(v) for v in value)
        if len(pair) != 2 or None in pair:
            raise TypeError(f"{name} must be {accepted}, got {value!r}")
    else:
        single = as_int(value)
        if single is None:
            raise TypeError(f"{name} must be {accepted}, got {value!r}")
        pair = (single, single)
    if min(pair) < 1:
        raise ValueError(f"{name} must be >= 1 (an int or a pair [x, y]), got {value!r}")
    return pair


def parse_padding(padding: object, name: str = "padding") -> tuple[int, int, int, int]:
    """Parse a padding given as int, `[px, py]` or `[x0, x1, y0, y1]` (negative values crop).

    Args:
        padding: The padding specification.
        name: Argument name used in error messages.

    Returns:
        `(x0, x1, y0, y1)`.
    """
    accepted = "an int, [px, py] or [x0, x1, y0, y1] of ints"
    if isinstance(padding, Sequence) and not isinstance(padding, str):
        pads = tuple(as_int(p) for p in padding)
        if None not in pads and len(pads) == 2:
            px, py = pads
            return (px, px, py, py)
        if None not in pads and len(pads) == 4:
            return pads  # type: ignore[return-value]
        raise TypeError(f"{name} must be {accepted}, got {padding!r}")
    single = as_int(padding)
    if single is None:
        raise TypeError(f"{name} must be {accepted}, got {padding!r}")
    return (single, single, single, single)


def check_filter(f: object, name: str) -> torch.Tensor | None:
    """Check an FIR filter: None (identity), 1-D `[taps]` (separable) or 2-D `[fh, fw]`.

    Args:
        f: The filter.
        name: Argument name used in error messages.

    Returns:
        `f`, unchanged.
    """
    if f is None:
        return None
    if not isinstance(f, torch.Tensor):
        raise TypeError(f"{name} must be None or a torch.Tensor, got {type(f).__name__}")
    if not f.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {f.dtype}")
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(
            f"{name} must be None, 1-D [taps] (separable) or 2-D [fh, fw] with at least one tap, "
            f"got shape {list(f.shape)}"
        )
    return f


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """Return `(fw, fh)` of a filter (None counts as 1x1; a 1-D filter is applied on both axes)."""
    if f is None:
        return 1, 1
    return f.shape[-1], f.shape[0]


def check_scalar(
    value: object, name: str, allow_none: bool = False, minimum: float | None = None
) -> float | None:
    """Check a real scalar argument: an int, float, numpy scalar or 0-d tensor (what float() takes exactly).

    Args:
        value: The value.
        name: Argument name used in error messages.
        allow_none: Whether None is accepted (returned as None).
        minimum: Smallest accepted value (None = no bound).

    Returns:
        The value as float (or None). Bools, strings, complex numbers and tensors with elements other than
        one raise TypeError; NaN raises ValueError.
    """
    if value is None and allow_none:
        return None
    number = as_real(value)
    if number is None:
        what = "a real number" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if math.isnan(number):
        raise ValueError(f"{name} must not be NaN")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return number


def output_length(n: int, up: int, down: int, pad0: int, pad1: int, taps: int) -> int:
    """Output length of upfirdn along one axis: `(n*up + p0 + p1 - (taps-1) + down - 1) // down`."""
    return (n * up + pad0 + pad1 - (taps - 1) + down - 1) // down


def output_size(
    op: str,
    shape: torch.Size | list[int],
    up: tuple[int, int],
    down: tuple[int, int],
    pads: tuple[int, int, int, int],
    taps: tuple[int, int],
    detail: str,
) -> tuple[int, int]:
    """Output `(height, width)` of an upfirdn-shaped op, raising ValueError if it would be empty.

    Args:
        op: Op name for the message.
        shape: Input shape `[N, C, H, W]`.
        up: Upsampling factors `(x, y)`.
        down: Downsampling factors `(x, y)`.
        pads: Padding `[x0, x1, y0, y1]`.
        taps: Effective filter taps `(x, y)`.
        detail: The op's arguments as text, appended to the message with what to change.
    """
    out_w = output_length(shape[3], up[0], down[0], pads[0], pads[1], taps[0])
    out_h = output_length(shape[2], up[1], down[1], pads[2], pads[3], taps[1])
    if out_w < 1 or out_h < 1:
        raise ValueError(f"{op} output would be empty ({out_h}x{out_w}) for input {list(shape)}, {detail}")
    return out_h, out_w


def empty_input_output(
    x: torch.Tensor, out_h: int, out_w: int, b: torch.Tensor | None = None
) -> torch.Tensor:
    """The output of an upfirdn-shaped op for an input without elements (no batch, channels, rows or cols).

    Such an input has no samples to filter: the output is zeros of shape `[N, C, out_h, out_w]` (padding
    alone can make samples), still attached to x (and b) for autograd, so gradients come back as
    empty/zero tensors. The compiled kernels are never called with it (they divide by the plane size).
    """
    link = x.sum() if b is None else x.sum() + b[:0].sum()  # both exactly 0, with a grad_fn
    return x.new_zeros([x.shape[0], x.shape[1], out_h, out_w]) + link


def pad_or_crop(x: torch.Tensor, padding: Sequence[int]) -> torch.Tensor:
    """`F.pad(x, [x0, x1, y0, y1])` where negative values crop, also a crop deeper than the image on one side.

    Pads first, then crops, so such a crop reaches into the other side's zeros (one `F.pad` with mixed signs
    would crop the unpadded tensor and fail).
    """
    x = torch.nn.functional.pad(x, [max(p, 0) for p in padding])
    return torch.nn.functional.pad(x, [min(p, 0) for p in padding])
