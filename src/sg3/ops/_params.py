"""Argument parsing and validation shared by the ops (spec §2).

Every public op funnels its arguments through these helpers so that bad input raises the same
kind of error everywhere: `TypeError` for wrong types/dtypes, `ValueError` for wrong values/shapes,
always naming the argument, the value received and what is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


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
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= 1 or a pair [x, y] of such ints, got {value!r}")
    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int >= 1 or a pair [x, y] of such ints, got {value!r}")
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
    if isinstance(padding, bool):
        raise TypeError(f"{name} must be {accepted}, got {padding!r}")
    if isinstance(padding, int):
        return (padding, padding, padding, padding)
    if isinstance(padding, Sequence) and all(isinstance(p, int) and not isinstance(p, bool) for p in padding):
        if len(padding) == 2:
            px, py = padding
            return (px, px, py, py)
        if len(padding) == 4:
            x0, x1, y0, y1 = padding
            return (x0, x1, y0, y1)
    raise TypeError(f"{name} must be {accepted}, got {padding!r}")


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
    """Check a real scalar argument.

    Args:
        value: The value.
        name: Argument name used in error messages.
        allow_none: Whether None is accepted (returned as None).
        minimum: Smallest accepted value (None = no bound).

    Returns:
        The value as float (or None).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        what = "a real number" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)


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
