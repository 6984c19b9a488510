"""conv2d_resample: 2-D convolution with optional FIR up/downsampling (spec §2.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sg3.ops._params import (
    as_int,
    check_filter,
    check_tensor,
    pad_or_crop,
    parse_padding,
    parse_scaling,
)
from sg3.ops.upfirdn2d import _centred_padding, upfirdn2d


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int | list[int] = 1,
    down: int | list[int] = 1,
    padding: int | list[int] = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Convolve with `w`, upsampling and/or downsampling with the FIR filter `f` (padding applied once).

    The padding (the user's plus the centring pads of each resampling step) is applied at the start; with
    both up and down: upsample (zero insertion, pad, FIR), convolve, then FIR and decimate without padding.

    Args:
        x: Input `[N, C_in, H, W]`.
        w: Weight `[C_out, C_in // groups, kh, kw]` of x's dtype.
        f: Resampling filter (None, 1-D or 2-D, e.g. `setup_filter([1, 3, 3, 1])`); None = identity.
        up: Integer upsampling factor (>= 1) or `[x, y]`; zero insertion + FIR (gain up**2) before the conv.
        down: Integer downsampling factor (>= 1) or `[x, y]`; FIR before a strided conv, or, together with
            up > 1, FIR + decimation after the conv.
        padding: Padding of the input: int, `[px, py]` or `[x0, x1, y0, y1]`.
        groups: Number of convolution groups.
        flip_weight: True = PyTorch cross-correlation, False = true convolution (kernel flipped).
        flip_filter: False = true convolution with f, True = correlation.

    Returns:
        `[N, C_out, H', W']`.
    """
    check_tensor(x, "x", ndim=4)
    check_tensor(w, "w", ndim=4)
    check_filter(f, "f")
    if w.dtype != x.dtype:
        raise TypeError(f"w must have the same dtype as x ({x.dtype}), got {w.dtype}")
    if w.device != x.device:
        raise ValueError(f"w must be on the same device as x ({x.device}), got {w.device}")
    n_groups = as_int(groups)
    if n_groups is None or n_groups < 1 or x.shape[1] != w.shape[1] * n_groups:
        raise ValueError(
            f"groups must be an int >= 1 with x.shape[1] ({x.shape[1]}) == "
            f"w.shape[1] ({w.shape[1]}) * groups, "
            f"got {groups!r}"
        )
    groups = n_groups
    upx, upy = parse_scaling(up, "up")
    downx, downy = parse_scaling(down, "down")
    pads = list(parse_padding(padding))
    kh, kw = w.shape[2], w.shape[3]
    if not flip_weight:
        w = w.flip([2, 3])  # true convolution == cross-correlation with the flipped kernel
    upsample, downsample = max(upx, upy) > 1, max(downx, downy) > 1

    # Padding is applied once, at the start: the user's plus what centres each resampling FIR.
    if upsample:
        pads = _centred_padding(f, pads, (upx, upy), up=True)
    if downsample:
        pads = _centred_padding(f, pads, (downx, downy), up=False)
    px0, px1, py0, py1 = pads

    if upsample:  # zero insertion + FIR (gain up^2), the conv, then (with down) FIR + decimation
        x = upfirdn2d(x, f, up=[upx, upy], padding=pads, gain=upx * upy, flip_filter=flip_filter)
        x = F.conv2d(x, w, groups=groups)
        if downsample:
            x = upfirdn2d(x, f, down=[downx, downy], flip_filter=flip_filter)
        return x

    if downsample:
        if kw == 1 and kh == 1:
            x = upfirdn2d(x, f, down=[downx, downy], padding=pads, flip_filter=flip_filter)
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, padding=pads, flip_filter=flip_filter)
        return F.conv2d(x, w, stride=(downy, downx), groups=groups)

    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return F.conv2d(x, w, padding=(py0, px0), groups=groups)
    x = pad_or_crop(x, (px0, px1, py0, py1))
    return F.conv2d(x, w, groups=groups)
