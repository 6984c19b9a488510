"""Batched homogeneous transform matrices and a twice-differentiable bilinear sampler for AugmentPipe.

The geometric augmentations of ADA (spec section 5.5) are accumulated as per-sample 3x3 homogeneous
matrices that map output pixels to input pixels, and the colour augmentations as per-sample 4x4 matrices
acting on (r, g, b, 1). This module builds those matrices and executes an affine resampling with
`affine_grid` + `grid_sample_bilinear`, which follow the conventions of `torch.nn.functional.affine_grid`
and `grid_sample` (`align_corners=False`, zero padding) but let autograd differentiate the sampled image
twice with respect to the input image (R1 through the augmentation needs the double backward that
PyTorch's own grid_sample does not provide).
"""

from __future__ import annotations

import math

import torch

Entry = torch.Tensor | float


def matrix(rows: list[list[Entry]], batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Builds a batch of matrices from rows of scalars and per-sample tensors.

    Args:
        rows: Matrix entries, row by row; each entry is a Python number (same for all samples) or a tensor
            of shape [batch] (one value per sample).
        batch: Number of samples N.
        device: Device of the result.
        dtype: Floating point dtype of the result.

    Returns:
        Tensor of shape [N, len(rows), len(rows[0])].
    """
    entries = []
    for row in rows:
        for value in row:
            if isinstance(value, torch.Tensor):
                entries.append(value.to(device=device, dtype=dtype).reshape(batch))
            else:
                entries.append(torch.full([batch], float(value), device=device, dtype=dtype))
    return torch.stack(entries, dim=1).reshape(batch, len(rows), len(rows[0]))  # [N, R, C]


def translate2d(tx: Entry, ty: Entry, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Homogeneous 2-D translation by (tx, ty) pixels, shape [N, 3, 3]."""
    return matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], batch, device, dtype)


def scale2d(sx: Entry, sy: Entry, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Homogeneous 2-D scaling by (sx, sy), shape [N, 3, 3]."""
    return matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], batch, device, dtype)


def rotate2d(theta: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Homogeneous 2-D rotation by theta radians (counter-clockwise in x-right/y-up terms), [N, 3, 3].

    Args:
        theta: Angles in radians, shape [N].
        device: Device of the result.
        dtype: Floating point dtype of the result.
    """
    c, s = torch.cos(theta), torch.sin(theta)
    return matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta.shape[0], device, dtype)


def translate3d(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Homogeneous 3-D translation adding t to each of the three colour axes, shape [N, 4, 4].

    Args:
        t: Per-sample offset, shape [N] (the same offset for x, y and z).
        device: Device of the result.
        dtype: Floating point dtype of the result.
    """
    return matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t.shape[0], device, dtype)


def scale3d(s: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Homogeneous isotropic 3-D scaling by s (shape [N]), shape [N, 4, 4]."""
    return matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s.shape[0], device, dtype)


def rotate3d(axis: tuple[float, float, float], theta: torch.Tensor, device: torch.device, dtype: torch.dtype):
    """Homogeneous 3-D rotation by theta radians about a unit axis (Rodrigues' formula), shape [N, 4, 4].

    Args:
        axis: Unit rotation axis (vx, vy, vz).
        theta: Angles in radians, shape [N].
        device: Device of the result.
        dtype: Floating point dtype of the result.
    """
    vx, vy, vz = axis
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1 - c
    rows = [
        [vx * vx * k + c, vx * vy * k - vz * s, vx * vz * k + vy * s, 0],
        [vy * vx * k + vz * s, vy * vy * k + c, vy * vz * k - vx * s, 0],
        [vz * vx * k - vy * s, vz * vy * k + vx * s, vz * vz * k + c, 0],
        [0, 0, 0, 1],
    ]
    return matrix(rows, theta.shape[0], device, dtype)


def project_luma(axis: tuple[float, float, float], batch: int, device: torch.device, dtype: torch.dtype):
    """The 4x4 outer product v v^T of the homogeneous direction v = (vx, vy, vz, 0), shape [N, 4, 4]."""
    v = torch.zeros(4, device=device, dtype=dtype)
    for i, component in enumerate(axis):
        v[i].fill_(component)  # filled from Python numbers: no host-to-device copy
    return torch.outer(v, v).expand(batch, 4, 4)


def affine_grid(theta: torch.Tensor, size: tuple[int, int, int, int]) -> torch.Tensor:
    """Sampling grid of an affine map, like `torch.nn.functional.affine_grid(..., align_corners=False)`.

    Args:
        theta: Affine matrices mapping normalized output coordinates to normalized input coordinates,
            shape [N, 2, 3]; coordinates are in [-1, 1] with -1/+1 at the outer pixel edges.
        size: Output size (N, C, H, W).

    Returns:
        Grid of shape [N, H, W, 2] holding (x, y) normalized input coordinates per output pixel.
    """
    n, _, h, w = size
    if theta.ndim != 3 or tuple(theta.shape) != (n, 2, 3):
        raise ValueError(
            f"theta must have shape [{n}, 2, 3] to match size {tuple(size)}, got {list(theta.shape)}"
        )
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1  # [W] pixel centres
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1  # [H]
    base = torch.stack(
        [
            xs.reshape(1, w).expand(h, w),
            ys.reshape(h, 1).expand(h, w),
            torch.ones(h, w, device=theta.device, dtype=theta.dtype),
        ],
        dim=-1,
    )  # [H, W, 3]
    return torch.einsum("hwk,njk->nhwj", base, theta)  # [N, H, W, 2]


class _GridSample(torch.autograd.Function):
    """Bilinear sampling whose gradient is `_GridSampleAdjoint`, so it can be differentiated again."""

    @staticmethod
    def forward(ctx, images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(images.detach(), grid)
        return torch.nn.functional.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        images, grid = ctx.saved_tensors
        grad_images = _GridSampleAdjoint.apply(grad_out, images, grid) if ctx.needs_input_grad[0] else None
        return grad_images, None


class _GridSampleAdjoint(torch.autograd.Function):
    """The transpose of bilinear sampling (scatters values back onto the image grid); linear in its input,
    so its own gradient is the sampling again."""

    @staticmethod
    def forward(ctx, grad_out: torch.Tensor, images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grid)
        # interpolation 0 = bilinear, padding 0 = zeros; `images` only supplies shape/dtype/device.
        grad_images, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_out, images, grid, 0, 0, False, [True, False]
        )
        return grad_images

    @staticmethod
    def backward(ctx, grad2: torch.Tensor):
        (grid,) = ctx.saved_tensors
        return (_GridSample.apply(grad2, grid) if ctx.needs_input_grad[0] else None), None, None


def _grid_sample_gather(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Reference bilinear sampling from gather/index arithmetic (autograd differentiates it repeatedly)."""
    n, c, h, w = images.shape
    ho, wo = grid.shape[1], grid.shape[2]
    # Unnormalize to continuous pixel coordinates, pixel centres at integers. Clamp far-away positions so
    # that the integer conversion stays well defined; anything clamped is outside and gets weight 0 anyway.
    ix = (((grid[..., 0] + 1) * w - 1) / 2).clamp(-2.0, w + 1.0)  # [N, Ho, Wo]
    iy = (((grid[..., 1] + 1) * h - 1) / 2).clamp(-2.0, h + 1.0)
    x0, y0 = ix.floor(), iy.floor()
    fx, fy = ix - x0, iy - y0
    flat = images.reshape(n, c, h * w)  # [N, C, H*W]
    out = None
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            index = (
                (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().reshape(n, 1, ho * wo)
            )  # [N, 1, Ho*Wo]
            weight = (wx * wy * inside).reshape(n, 1, ho * wo)
            term = flat.gather(2, index.expand(n, c, ho * wo)) * weight  # [N, C, Ho*Wo]
            out = term if out is None else out + term
    return out.reshape(n, c, ho, wo)


def grid_sample_bilinear(images: torch.Tensor, grid: torch.Tensor, impl: str = "native") -> torch.Tensor:
    """Bilinear sampling with zero padding and `align_corners=False`, differentiable twice w.r.t. images.

    Computes `torch.nn.functional.grid_sample(images, grid, mode='bilinear', padding_mode='zeros',
    align_corners=False)`, but unlike it supports `torch.autograd.grad(..., create_graph=True)` followed by
    a second backward (R1 through the augmentation). Sampling is linear in the images, so its gradient is
    its transpose and the transpose's gradient is the sampling again: 'native' wraps PyTorch's own forward
    and backward kernels as such a pair of autograd functions; 'ref' builds the sampling from `gather`
    (slower, for cross-checks). No gradient flows to `grid`.

    Args:
        images: Input images [N, C, H, W], floating point.
        grid: Normalized (x, y) sampling positions [N, Ho, Wo, 2], no gradient; -1/+1 are the outer
            pixel edges.
        impl: 'native' (PyTorch kernels, default) or 'ref' (gather arithmetic).

    Returns:
        Sampled images [N, C, Ho, Wo] with the dtype of `images`.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be a 4-D [N, C, H, W] tensor, got shape {list(images.shape)}")
    n = images.shape[0]
    if grid.ndim != 4 or grid.shape[0] != n or grid.shape[3] != 2:
        raise ValueError(
            f"grid must have shape [{n}, Ho, Wo, 2] for images of shape {list(images.shape)}, "
            f"got {list(grid.shape)}"
        )
    if grid.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "grid_sample_bilinear: gradients with respect to grid are not supported; detach the grid"
        )
    grid = grid.to(images.dtype)
    if impl == "native":
        return _GridSample.apply(images, grid)
    if impl == "ref":
        return _grid_sample_gather(images, grid)
    raise ValueError(f"grid_sample_bilinear: impl must be 'native' or 'ref', got {impl!r}")


def reflect_pad(images: torch.Tensor, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    """Mirror padding without edge repetition (like `mode='reflect'`) for any pad size, via index_select.

    Unlike `torch.nn.functional.pad`, pads may exceed the image size (the mirroring repeats), which the
    image filter needs on small images. Index selection is differentiable any number of times.

    Args:
        images: Images [N, C, H, W].
        x0: Columns added on the left.
        x1: Columns added on the right.
        y0: Rows added on top.
        y1: Rows added at the bottom.

    Returns:
        Padded images [N, C, H + y0 + y1, W + x0 + x1].
    """

    def index(n: int, lo: int, hi: int) -> torch.Tensor:
        k = torch.arange(-lo, n + hi, device=images.device)
        if n == 1:
            return torch.zeros_like(k)
        k = k.remainder(2 * (n - 1))
        return torch.where(k < n, k, 2 * (n - 1) - k)

    images = images.index_select(3, index(images.shape[3], x0, x1))
    return images.index_select(2, index(images.shape[2], y0, y1))


def luma_axis() -> tuple[float, float, float]:
    """Unit luma axis (1, 1, 1) / sqrt(3) used by lumaflip, hue and saturation."""
    v = 1 / math.sqrt(3)
    return (v, v, v)
