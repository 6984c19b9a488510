"""Image-space reference transforms for the equivariance metrics (spec §6).

The equivariance metrics compare a generator's output under a transformed input grid against the
untransformed output moved by the same transform in pixel space. This module holds that pixel-space
side: integer shifts, Lanczos-3 fractional shifts, the oriented band-limit filter and the
"fractional" and "pseudo" rotations built on it. Everything works on float images `[N, C, H, W]` and
returns `(reference, mask)` pairs of the same shape; the mask is 1 where the reference is valid.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from sg3.ops import filter2d, upsample2d

__all__ = [
    "bandlimit_filter",
    "integer_translation",
    "fractional_translation",
    "fractional_rotation",
    "pseudo_rotation",
    "rotation_matrix",
]


def _check_image(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float tensor [N, C, H, W], got {shape}")


def rotation_matrix(angle: float | torch.Tensor) -> torch.Tensor:
    """The 3x3 matrix `Rm(angle) = [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]` of spec §6.

    Args:
        angle: Rotation angle in radians (float or 0-d tensor).

    Returns:
        float32 tensor `[3, 3]`.
    """
    a = torch.as_tensor(angle, dtype=torch.float64)
    c, s = torch.cos(a), torch.sin(a)
    m = torch.eye(3, dtype=torch.float64)
    m[0, 0], m[0, 1], m[1, 0], m[1, 1] = c, s, -s, c
    return m.to(torch.float32)


def integer_translation(x: torch.Tensor, tx: float, ty: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift images by a whole number of pixels, zero-filled (content moves toward +x/+y).

    Args:
        x: Images `[N, C, H, W]`.
        tx: Translation along x as a fraction of the image width (rounded to whole pixels).
        ty: Translation along y as a fraction of the image height (rounded to whole pixels).

    Returns:
        `(shifted, mask)`, both `[N, C, H, W]`; mask is 1 on pixels that received image content.
    """
    _check_image(x)
    _n, _c, h, w = x.shape
    ix = int(torch.tensor(float(tx) * w, dtype=torch.float32).round().item())
    iy = int(torch.tensor(float(ty) * h, dtype=torch.float32).round().item())
    z = torch.zeros_like(x)
    m = torch.zeros_like(x)
    if abs(ix) < w and abs(iy) < h:
        src = x[:, :, max(-iy, 0) : h + min(-iy, 0), max(-ix, 0) : w + min(-ix, 0)]
        z[:, :, max(iy, 0) : h + min(iy, 0), max(ix, 0) : w + min(ix, 0)] = src
        m[:, :, max(iy, 0) : h + min(iy, 0), max(ix, 0) : w + min(ix, 0)] = 1
    return z, m


def _lanczos_taps(frac: float, a: int) -> torch.Tensor:
    """Normalized Lanczos-a weights for offsets u = -(a-1) .. a at sub-pixel position `frac`."""
    u = np.arange(-(a - 1), a + 1, dtype=np.float64) - frac  # [2a]
    w = np.sinc(u) * np.sinc(u / a)
    return torch.from_numpy(w / w.sum())


def _shift_axis(x: torch.Tensor, shift: float, a: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lanczos-resample along one axis: `out[X] = sum_u w_u * x[X - i - u]`, zero outside."""
    size = x.shape[dim]
    i = math.floor(shift)
    taps = _lanczos_taps(shift - i, a).to(dtype=x.dtype)
    out = torch.zeros_like(x)
    for k, u in enumerate(range(-(a - 1), a + 1)):
        d = i + u  # out[X] takes x[X - d]
        if abs(d) >= size:
            continue
        dst = out.narrow(dim, max(d, 0), size - abs(d))
        dst += taps[k] * x.narrow(dim, max(-d, 0), size - abs(d))
    keep = torch.zeros(size, dtype=x.dtype, device=x.device)
    keep[max(i - (a - 1), 0) : size + min(i + a, 0)] = 1
    valid = torch.zeros(size, dtype=x.dtype, device=x.device)
    valid[max(i + a, 0) : size + min(i - (a - 1), 0)] = 1
    shape = [1] * x.ndim
    shape[dim] = size
    return out * keep.reshape(shape), valid.reshape(shape)


def fractional_translation(
    x: torch.Tensor, tx: float, ty: float, a: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift images by a sub-pixel amount with a separable Lanczos-a kernel (spec §6, EQ-T_frac).

    Args:
        x: Images `[N, C, H, W]`.
        tx: Translation along x as a fraction of the image width (any real value).
        ty: Translation along y as a fraction of the image height.
        a: Lanczos lobes (3 in the official metric); the kernel has 2a taps.

    Returns:
        `(shifted, mask)`, both `[N, C, H, W]`; the mask excludes the `a`-pixel band next to the
        zero-filled border where the kernel saw missing pixels.
    """
    _check_image(x)
    _n, _c, h, w = x.shape
    y, mx = _shift_axis(x, float(tx) * w, a, dim=3)
    y, my = _shift_axis(y, float(ty) * h, a, dim=2)
    mask = (my * mx).expand_as(x).contiguous()
    return y, mask


def bandlimit_filter(
    mat: torch.Tensor | np.ndarray, a: int = 3, amax: int = 6, aflt: int = 64, up: int = 4
) -> torch.Tensor:
    """The oriented band-limit filter of the rotation metric (spec §6 EQ-R, test vectors §11.3).

    Product of an isotropic and an affinely transformed sinc, convolved circularly over a
    `(2*aflt*up - 1)`-tap grid, Lanczos-windowed the same way, re-centred, cropped to `amax` lobes and
    normalized per polyphase component.

    Args:
        mat: 3x3 (or 2x2) transform; only the upper-left 2x2 block is used.
        a: Lanczos window lobes.
        amax: Lobes kept after cropping (filter size `2*amax*up - 1`).
        aflt: Lobes of the FFT grid used for the circular convolution.
        up: Upsampling factor the filter is designed for (1: same-rate filtering).

    Returns:
        float32 filter `[2*amax*up - 1, 2*amax*up - 1]`.
    """
    m = mat.detach().cpu().double().numpy() if isinstance(mat, torch.Tensor) else np.asarray(mat, np.float64)
    if m.shape not in ((3, 3), (2, 2)):
        raise ValueError(f"mat must be 3x3 or 2x2, got shape {m.shape}")
    if not (isinstance(up, int) and up >= 1 and amax <= aflt):
        raise ValueError(f"need an int up >= 1 and amax <= aflt, got up={up!r}, amax={amax}, aflt={aflt}")
    n = aflt * up
    taps = np.roll(np.arange(1 - n, n, dtype=np.float64) / up, 1 - n)  # [2n-1], zero at index 0
    yi, xi = np.meshgrid(taps, taps, indexing="ij")  # [2n-1, 2n-1] each
    xo = m[0, 0] * xi + m[0, 1] * yi
    yo = m[1, 0] * xi + m[1, 1] * yi

    def lanczos(u: np.ndarray) -> np.ndarray:
        return np.where(np.abs(u) < a, np.sinc(u / a), 0.0)

    def cconv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.real(np.fft.ifft2(np.fft.fft2(p) * np.fft.fft2(q)))

    f = cconv(np.sinc(xi) * np.sinc(yi), np.sinc(xo) * np.sinc(yo))
    f = f * cconv(lanczos(xi) * lanczos(yi), lanczos(xo) * lanczos(yo))
    f = np.roll(f, (n - 1, n - 1), axis=(0, 1))
    crop = (aflt - amax) * up
    f = f[crop : f.shape[0] - crop, crop : f.shape[1] - crop]  # [2*amax*up - 1]^2
    s = 2 * amax * up
    g = np.zeros((s, s), dtype=np.float64)
    g[: s - 1, : s - 1] = f
    phases = g.reshape(2 * amax, up, 2 * amax, up)  # [row_block, row_phase, col_block, col_phase]
    phases = phases / (phases.sum(axis=(0, 2), keepdims=True) * up * up)
    return torch.from_numpy(phases.reshape(s, s)[: s - 1, : s - 1].astype(np.float32))


def fractional_rotation(
    x: torch.Tensor, mat: torch.Tensor, a: int = 3, amax: int = 6, aflt: int = 64, up: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample images under an affine map with the band-limit filter (the EQ-R reference).

    Args:
        x: Images `[N, C, H, W]`.
        mat: 3x3 forward transform (e.g. `rotation_matrix(alpha)`).
        a: Lanczos window lobes of the filter.
        amax: Lobes kept in the filter.
        aflt: Lobes of the design grid.
        up: Upsampling factor before the bilinear resampling.

    Returns:
        `(resampled, mask)`, both `[N, C, H, W]`.
    """
    _check_image(x)
    n, c, h, w = x.shape
    f = bandlimit_filter(mat, a=a, amax=amax, aflt=aflt, up=up).to(x.device)
    p = f.shape[0] // 2
    y = upsample2d(x, f, up=up, padding=p)  # [N, C, up*H + 2p, up*W + 2p]
    border = 2 * p + 1
    m = torch.zeros_like(y)
    m[:, :, border:-border, border:-border] = 1
    theta = torch.linalg.inv(torch.as_tensor(mat, dtype=torch.float64).cpu())[:2].clone()  # [2, 3]
    theta[0, 2] = 2 * theta[0, 2] + 1 / (up * w)
    theta[1, 2] = 2 * theta[1, 2] + 1 / (up * h)
    theta[0, :] *= w / (w + 2 * p / up)
    theta[1, :] *= h / (h + 2 * p / up)
    theta = theta.to(dtype=x.dtype, device=x.device).unsqueeze(0).repeat(n, 1, 1)  # [N, 2, 3]
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return y, m


def pseudo_rotation(
    x: torch.Tensor, mat: torch.Tensor, a: int = 3, amax: int = 6, aflt: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Filter images with the same-rate oriented band-limit filter (the EQ-R "pseudo rotation").

    Args:
        x: Images `[N, C, H, W]`.
        mat: 3x3 transform the filter is oriented by.
        a: Lanczos window lobes of the filter.
        amax: Lobes kept in the filter (filter size `2*amax - 1`).
        aflt: Lobes of the design grid.

    Returns:
        `(filtered, mask)`, both `[N, C, H, W]`; the mask drops a border of `amax - 1` pixels.
    """
    _check_image(x)
    f = bandlimit_filter(mat, a=a, amax=amax, aflt=aflt, up=1).to(x.device)
    y = filter2d(x, f)
    c = f.shape[0] // 2
    m = torch.zeros_like(y)
    m[:, :, c:-c, c:-c] = 1
    return y, m
