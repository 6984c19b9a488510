"""ADA augmentation pipe (spec sections 5.4 and 5.5): `AugmentPipe` and the official presets.

Every augmentation is decided independently per sample with probability `multiplier * p`, where `p` is a
buffer the training loop adjusts (adaptive discriminator augmentation). Order of execution:
geometric (pixel blitting and general geometric transforms, merged into one inverse matrix per sample and
executed by padding, 2x upsampling, bilinear resampling and 2x downsampling), colour (one 4x4 matrix per
sample), image-space filtering (4-band wavelet filter bank), additive Gaussian noise and cutout.

The pipe is differentiable twice with respect to the images (R1 runs through it), keeps the image dtype,
and is deterministic under `torch.manual_seed` or an explicit `torch.Generator`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from sg3.modules.augment_matrices import (
    affine_grid,
    grid_sample_bilinear,
    luma_axis,
    project_luma,
    reflect_pad,
    rotate2d,
    rotate3d,
    scale2d,
    scale3d,
    translate2d,
    translate3d,
)
from sg3.ops import downsample2d, upsample2d

_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)

#: Official augmentation presets (train.py `--augpipe`), as AugmentPipe constructor kwargs.
AUGPIPE_SPECS: dict[str, dict[str, float]] = {
    "blit": dict(_BLIT),
    "geom": dict(_GEOM),
    "color": dict(_COLOR),
    "filter": dict(imgfilter=1),
    "noise": dict(noise=1),
    "cutout": dict(cutout=1),
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1, "cutout": 1},
}

# Orthonormal scaling (low-pass) filters of the two Daubechies symlets used by the pipe. sym2 equals
# db2, whose taps have the closed form (1 -+ sqrt 3, 3 -+ sqrt 3) / (4 sqrt 2); sym6 has no closed form
# and is given by its 12 published taps. tests/modules/test_augment.py checks both against their defining
# conditions (sum sqrt 2, unit energy, orthogonality to even shifts, vanishing moments of the high-pass).
_SQRT3 = math.sqrt(3)
SYM2 = tuple(v / (4 * math.sqrt(2)) for v in (1 - _SQRT3, 3 - _SQRT3, 3 + _SQRT3, 1 + _SQRT3))
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip

#: Expected power of natural images in the four filter bank bands (roughly 1/f), lowest band first.
EXPECTED_BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)


def design_geom_filter() -> np.ndarray:
    """The resampling filter `Hz_geom`: sym6 low-pass normalized to unit DC gain, 12 taps, float64."""
    taps = np.asarray(SYM6, dtype=np.float64)
    return taps / taps.sum()


def design_filter_bank(num_bands: int = 4) -> np.ndarray:
    """The image-filter bank `Hz_fbank` built from sym2 half-band filters, shape [num_bands, 43] for 4 bands.

    Row 0 is the low-pass band [0, pi/8], rows 1..3 the octave bands up to Nyquist. The rows sum to a unit
    impulse, so equal gains leave an image unchanged.

    Args:
        num_bands: Number of octave bands (>= 2).
    """
    if num_bands < 2:
        raise ValueError(f"num_bands must be >= 2, got {num_bands}")
    lo = np.asarray(SYM2, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)  # quadrature mirror high-pass
    lo2 = np.convolve(lo, lo[::-1]) / 2  # half-band low-pass (autocorrelation), 7 taps
    hi2 = np.convolve(hi, hi[::-1]) / 2  # complementary half-band high-pass; lo2 + hi2 = impulse
    bank = np.zeros([num_bands, 1])
    bank[0, 0] = 1
    for band in range(1, num_bands):
        dilated = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        dilated[:, ::2] = bank  # halve every band's frequencies
        bank = np.stack([np.convolve(row, lo2) for row in dilated])  # split the remaining low band ...
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start : start + hi2.size] += hi2  # ... and give its upper half to the new band
    return bank


class _Draws:
    """Per-sample random draws with the probability gate and the debug_percentile override."""

    def __init__(self, images: torch.Tensor, dtype: torch.dtype, generator, debug_percentile):
        self.batch = images.shape[0]
        self.device = images.device
        self.dtype = dtype
        self.generator = generator
        self.rng_device = generator.device if generator is not None else images.device
        self.debug = debug_percentile

    def rand(self, *shape: int) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, device=self.rng_device, dtype=self.dtype)
        return u.to(self.device)

    def randn(self, *shape: int) -> torch.Tensor:
        z = torch.randn(shape, generator=self.generator, device=self.rng_device, dtype=self.dtype)
        return z.to(self.device)

    def normal_quantile(self) -> float:
        """Quantile of N(0, 1) at debug_percentile."""
        return math.sqrt(2) * float(torch.erfinv(torch.tensor(2 * self.debug - 1, dtype=torch.float64)))

    def half_normal_quantile(self) -> float:
        """Quantile of |N(0, 1)| at debug_percentile."""
        return math.sqrt(2) * float(torch.erfinv(torch.tensor(self.debug, dtype=torch.float64)))

    def gated(self, value: torch.Tensor, prob: torch.Tensor, identity: float, debug_value) -> torch.Tensor:
        """Keeps `value` ([N] or [N, k]) where U[0,1) < prob, else `identity`.

        In debug mode every entry becomes `debug_value` (None: the identity).
        """
        keep = (self.rand(self.batch) < prob).reshape(-1, *([1] * (value.ndim - 1)))
        value = torch.where(keep, value, torch.full_like(value, identity))
        if self.debug is not None:
            value = torch.full_like(value, identity if debug_value is None else debug_value)
        return value

    def integer(self, count: int, prob: torch.Tensor) -> torch.Tensor:
        """Uniform integer in {0, ..., count - 1} per sample (identity 0)."""
        value = torch.floor(self.rand(self.batch) * count)
        debug = None if self.debug is None else min(math.floor(self.debug * count), count - 1)
        return self.gated(value, prob, 0, debug)

    def uniform(self, prob: torch.Tensor, half_width: float, *shape: int) -> torch.Tensor:
        """Uniform in [-half_width, half_width) (identity 0)."""
        value = (self.rand(self.batch, *shape) * 2 - 1) * half_width
        debug = None if self.debug is None else (self.debug * 2 - 1) * half_width
        return self.gated(value, prob, 0, debug)

    def normal(self, prob: torch.Tensor, std: float, *shape: int) -> torch.Tensor:
        """Normal N(0, std^2) (identity 0)."""
        value = self.randn(self.batch, *shape) * std
        return self.gated(value, prob, 0, None if self.debug is None else self.normal_quantile() * std)

    def lognormal2(self, prob: torch.Tensor, std: float, enabled_in_debug: bool = True) -> torch.Tensor:
        """2^N(0, std^2) (identity 1)."""
        value = torch.exp2(self.randn(self.batch) * std)
        debug = 2 ** (self.normal_quantile() * std) if self.debug is not None and enabled_in_debug else 1.0
        return self.gated(value, prob, 1, debug)


def check_augment_kwargs(kwargs: dict, prefix: str = "augment.kwargs.") -> None:
    """Raise a one-line ValueError for a name that is not an `AugmentPipe` setting or a bad value.

    Args:
        kwargs: AugmentPipe keyword arguments (any subset).
        prefix: Put before the name in the message (`augment.kwargs.` names the training config's key).
    """
    import inspect

    known = [n for n in inspect.signature(AugmentPipe.__init__).parameters if n != "self"]
    for name, value in kwargs.items():
        if name not in known:
            raise ValueError(f"{prefix}{name} is not an AugmentPipe setting: one of {', '.join(known)}")
        if name == "imgfilter_bands":
            if (
                isinstance(value, str)
                or not isinstance(value, Sequence)
                or len(value) != 4
                or not all(_non_negative(b) for b in value)
            ):
                raise ValueError(f"{prefix}{name}={value!r} is not valid: a list of 4 finite numbers >= 0")
        elif not _non_negative(value):
            raise ValueError(f"{prefix}{name}={value!r} is not valid: a finite number >= 0")


def _non_negative(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and 0 <= value < math.inf


class AugmentPipe(torch.nn.Module):
    """Adaptive discriminator augmentation pipe with the official kwargs, buffers and behaviour.

    Multipliers scale the overall probability `p` per augmentation (0 disables it); strengths set the
    spread of its random parameter. Geometric transforms are executed whenever any geometric multiplier
    is non-zero, even at p = 0 (the image is then resampled, close to identity).

    Args:
        xflip: Probability multiplier for horizontal flips.
        rotate90: Probability multiplier for rotations by a multiple of 90 degrees.
        xint: Probability multiplier for integer translations.
        xint_max: Largest integer translation, as a fraction of the image size.
        scale: Probability multiplier for isotropic scaling.
        rotate: Probability multiplier for arbitrary rotations (split into a pre- and a post-rotation).
        aniso: Probability multiplier for anisotropic scaling.
        xfrac: Probability multiplier for fractional translations.
        scale_std: Log2 standard deviation of the isotropic scale factor.
        rotate_max: Largest rotation, as a fraction of a half turn (1 = uniform over all angles).
        aniso_std: Log2 standard deviation of the anisotropic scale factor.
        xfrac_std: Standard deviation of the fractional translation, as a fraction of the image size.
        brightness: Probability multiplier for brightness offsets.
        contrast: Probability multiplier for contrast scaling.
        lumaflip: Probability multiplier for inverting luma (mirroring colours along the grey axis).
        hue: Probability multiplier for hue rotations (RGB only).
        saturation: Probability multiplier for saturation scaling (RGB only).
        brightness_std: Standard deviation of the brightness offset, in image units (images span [-1, 1]).
        contrast_std: Log2 standard deviation of the contrast factor.
        hue_max: Largest hue rotation, as a fraction of a half turn.
        saturation_std: Log2 standard deviation of the saturation factor.
        imgfilter: Probability multiplier for image-space filtering (per-band amplification).
        imgfilter_bands: Per-band probability multipliers of the 4 filter bands, lowest band first.
        imgfilter_std: Log2 standard deviation of the band amplification.
        noise: Probability multiplier for additive Gaussian noise.
        cutout: Probability multiplier for cutout (zeroing a square).
        noise_std: Scale of the per-sample noise standard deviation (drawn from a half-normal).
        cutout_size: Side of the cutout square, as a fraction of the image size.
    """

    def __init__(
        self,
        xflip: float = 0, rotate90: float = 0, xint: float = 0, xint_max: float = 0.125,
        scale: float = 0, rotate: float = 0, aniso: float = 0, xfrac: float = 0,
        scale_std: float = 0.2, rotate_max: float = 1, aniso_std: float = 0.2, xfrac_std: float = 0.125,
        brightness: float = 0, contrast: float = 0, lumaflip: float = 0, hue: float = 0,
        saturation: float = 0, brightness_std: float = 0.2, contrast_std: float = 0.5, hue_max: float = 1,
        saturation_std: float = 1, imgfilter: float = 0,
        imgfilter_bands: Sequence[float] = (1, 1, 1, 1), imgfilter_std: float = 1,
        noise: float = 0, cutout: float = 0, noise_std: float = 0.1, cutout_size: float = 0.5,
    ):  # fmt: skip
        super().__init__()
        kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        check_augment_kwargs(kwargs, prefix="AugmentPipe: ")
        bands = kwargs.pop("imgfilter_bands")
        self.init_kwargs = {
            **{k: float(v) for k, v in kwargs.items()},
            "imgfilter_bands": [float(b) for b in bands],
        }
        for name, value in self.init_kwargs.items():
            setattr(self, name, value)
        self.register_buffer("p", torch.ones([]))  # overall probability; the training loop sets it
        self.register_buffer("Hz_geom", torch.as_tensor(design_geom_filter(), dtype=torch.float32))
        self.register_buffer("Hz_fbank", torch.as_tensor(design_filter_bank(4), dtype=torch.float32))

    @property
    def uses_geometric(self) -> bool:
        """Whether any geometric multiplier is non-zero (then images are resampled even at p = 0)."""
        return any(
            getattr(self, k) > 0 for k in ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
        )

    @property
    def uses_color(self) -> bool:
        """Whether any colour multiplier is non-zero (needs 1- or 3-channel images)."""
        return any(getattr(self, k) > 0 for k in ("brightness", "contrast", "lumaflip", "hue", "saturation"))

    def extra_repr(self) -> str:
        return ", ".join(
            f"{k}={v:g}" for k, v in self.init_kwargs.items() if not isinstance(v, list) and v > 0
        )

    def forward(
        self,
        images: torch.Tensor,
        debug_percentile: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Augments a batch of images.

        Args:
            images: Float images [N, C, H, W], nominally in [-1, 1]; colour augmentations need C = 1 or 3.
            debug_percentile: None for random augmentation; a number in [0, 1] applies every enabled
                augmentation to every sample with its parameter at that quantile (for visual checks).
            generator: Random generator for all draws (None: the global torch generator of the device).

        Returns:
            Augmented images with the shape and dtype of `images`.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"AugmentPipe: images must be a 4-D [N, C, H, W] tensor, got {shape}")
        if not images.is_floating_point():
            raise TypeError(f"AugmentPipe: images must be floating point, got dtype {images.dtype}")
        if self.uses_color and images.shape[1] not in (1, 3):
            raise ValueError(
                f"AugmentPipe: colour augmentations need 1 (L) or 3 (RGB) channels, got {images.shape[1]} "
                f"(disable brightness/contrast/lumaflip/hue/saturation for other channel counts)"
            )
        if debug_percentile is not None and not 0 <= debug_percentile <= 1:
            raise ValueError(
                f"AugmentPipe: debug_percentile must be None or in [0, 1], got {debug_percentile!r}"
            )
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        x = images.to(dtype)
        draws = _Draws(x, dtype, generator, debug_percentile)
        p = self.p.to(device=x.device, dtype=dtype)
        if self.uses_geometric:
            x = self._resample(x, self._geometric_matrix(draws, p, x.shape[2], x.shape[3]))
        if self.uses_color:
            x = self._apply_color(x, self._color_matrix(draws, p, x.shape[1]))
        if self.imgfilter > 0:
            x = self._filter(x, draws, p)
        if self.noise > 0:
            sigma = draws.randn(x.shape[0]).abs() * self.noise_std
            debug = None if debug_percentile is None else draws.half_normal_quantile() * self.noise_std
            sigma = draws.gated(sigma, self.noise * p, 0, debug)
            x = x + draws.randn(*x.shape) * sigma.reshape(-1, 1, 1, 1)
        if self.cutout > 0:
            x = x * self._cutout_mask(x, draws, p)
        return x.to(images.dtype)

    def _geometric_matrix(self, draws: _Draws, p: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Inverse geometric transform per sample (output pixel -> input pixel, centred), [N, 3, 3]."""
        n, dev, dt = draws.batch, draws.device, draws.dtype
        g_inv = torch.eye(3, device=dev, dtype=dt).expand(n, 3, 3)
        if self.xflip > 0:
            i = draws.integer(2, self.xflip * p)
            g_inv = g_inv @ scale2d(1 / (1 - 2 * i), 1, n, dev, dt)
        if self.rotate90 > 0:
            i = draws.integer(4, self.rotate90 * p)
            g_inv = g_inv @ rotate2d(math.pi / 2 * i, dev, dt)  # rotate_inv(-pi/2 i)
        if self.xint > 0:
            t = draws.uniform(self.xint * p, self.xint_max, 2)  # [N, 2]
            g_inv = g_inv @ translate2d(
                -torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height), n, dev, dt
            )
        if self.scale > 0:
            s = draws.lognormal2(self.scale * p, self.scale_std)
            g_inv = g_inv @ scale2d(1 / s, 1 / s, n, dev, dt)
        # The rotation is split into two halves so that the total rotation probability is rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))
        if self.rotate > 0:
            theta = draws.uniform(p_rot, math.pi * self.rotate_max)
            g_inv = g_inv @ rotate2d(theta, dev, dt)  # rotate_inv(-theta)
        if self.aniso > 0:
            s = draws.lognormal2(self.aniso * p, self.aniso_std)
            g_inv = g_inv @ scale2d(1 / s, s, n, dev, dt)
        if self.rotate > 0:
            theta = draws.uniform(p_rot, math.pi * self.rotate_max)
            g_inv = g_inv @ rotate2d(theta, dev, dt)
        if self.xfrac > 0:
            t = draws.normal(self.xfrac * p, self.xfrac_std, 2)  # [N, 2]
            g_inv = g_inv @ translate2d(-t[:, 0] * width, -t[:, 1] * height, n, dev, dt)
        return g_inv

    def _resample(self, images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        """Executes the inverse transforms: reflect-pad, upsample 2x, bilinear resample, downsample 2x."""
        n, c, h, w = images.shape
        dev, dt = images.device, images.dtype
        pad = self.Hz_geom.shape[0] // 4  # P = 3 for the 12-tap filter
        hz = self.Hz_geom.to(device=dev, dtype=dt)
        # One padding for the whole batch: enough to cover every sample's transformed corners plus the filter.
        # The corners (+-cx, +-cy, 1) reach g[:2, 2] +- (|g[:2, 0]| cx + |g[:2, 1]| cy) at the extremes, so
        # the margins need no constant tensors (a tensor made from host data is a synchronising copy on CUDA).
        cx, cy = (w - 1) / 2, (h - 1) / 2
        spread = g_inv[:, :2, 0].abs() * cx + g_inv[:, :2, 1].abs() * cy  # [N, 2] (x, y)
        low = (spread - g_inv[:, :2, 2]).amax(dim=0) + 2 * pad  # [2]: how far the corners reach left / up
        high = (spread + g_inv[:, :2, 2]).amax(dim=0) + 2 * pad  # [2]: right / down
        margin = torch.stack([
            (low[0] - cx).clamp(0, w - 1), (low[1] - cy).clamp(0, h - 1),
            (high[0] - cx).clamp(0, w - 1), (high[1] - cy).clamp(0, h - 1),
        ])  # fmt: skip
        # The one host read of the augmentation: the padded size depends on this batch's transforms (a fixed
        # worst-case padding would triple the image side in every resampling pass).
        x0, y0, x1, y1 = (int(v) for v in margin.ceil().tolist())
        images = reflect_pad(images, x0, x1, y0, y1)
        g_inv = translate2d((x0 - x1) / 2, (y0 - y1) / 2, n, dev, dt) @ g_inv
        # Upsample 2x and express the matrix in the upsampled pixel grid.
        images = upsample2d(images, hz, up=2)
        g_inv = scale2d(2, 2, n, dev, dt) @ g_inv @ scale2d(0.5, 0.5, n, dev, dt)
        g_inv = translate2d(-0.5, -0.5, n, dev, dt) @ g_inv @ translate2d(0.5, 0.5, n, dev, dt)
        # Resample into a 2(H + 2P) x 2(W + 2P) canvas in normalized coordinates.
        size = (n, c, 2 * (h + 2 * pad), 2 * (w + 2 * pad))
        hu, wu = images.shape[2], images.shape[3]
        g_inv = scale2d(2 / wu, 2 / hu, n, dev, dt) @ g_inv @ scale2d(size[3] / 2, size[2] / 2, n, dev, dt)
        grid = affine_grid(g_inv[:, :2, :], size)  # [N, Ho, Wo, 2]
        images = grid_sample_bilinear(images, grid)  # twice differentiable (R1)
        return downsample2d(images, hz, down=2, padding=-2 * pad, flip_filter=True)  # [N, C, H, W]

    def _color_matrix(self, draws: _Draws, p: torch.Tensor, channels: int) -> torch.Tensor:
        """Colour transform per sample acting on (r, g, b, 1), [N, 4, 4]."""
        n, dev, dt = draws.batch, draws.device, draws.dtype
        eye = torch.eye(4, device=dev, dtype=dt).expand(n, 4, 4)
        c_mat = eye
        if self.brightness > 0:
            b = draws.normal(self.brightness * p, self.brightness_std)
            c_mat = translate3d(b, dev, dt) @ c_mat
        if self.contrast > 0:
            s = draws.lognormal2(self.contrast * p, self.contrast_std)
            c_mat = scale3d(s, dev, dt) @ c_mat
        vvt = project_luma(luma_axis(), n, dev, dt)  # projection onto the grey axis, [N, 4, 4]
        if self.lumaflip > 0:
            i = draws.integer(2, self.lumaflip * p)
            c_mat = (eye - 2 * vvt * i.reshape(n, 1, 1)) @ c_mat  # Householder reflection of luma
        if self.hue > 0 and channels > 1:
            theta = draws.uniform(self.hue * p, math.pi * self.hue_max)
            c_mat = rotate3d(luma_axis(), theta, dev, dt) @ c_mat
        if self.saturation > 0 and channels > 1:
            s = draws.lognormal2(self.saturation * p, self.saturation_std).reshape(n, 1, 1)
            rgb = torch.eye(4, device=dev, dtype=dt)
            rgb[3].zero_()  # diag(1, 1, 1, 0)
            c_mat = (vvt + (rgb - vvt) * s + (eye - rgb)) @ c_mat  # scale the chroma, keep luma
        return c_mat

    @staticmethod
    def _apply_color(images: torch.Tensor, c_mat: torch.Tensor) -> torch.Tensor:
        """Applies the colour matrices; grey images use the matrix averaged over its three rows."""
        n, c, h, w = images.shape
        flat = images.reshape(n, c, h * w)  # [N, C, H*W]
        if c == 3:
            flat = c_mat[:, :3, :3] @ flat + c_mat[:, :3, 3:]
        else:
            mean = c_mat[:, :3, :].mean(dim=1, keepdim=True)  # [N, 1, 4]
            flat = flat * mean[:, :, :3].sum(dim=2, keepdim=True) + mean[:, :, 3:]
        return flat.reshape(n, c, h, w)

    def _filter(self, images: torch.Tensor, draws: _Draws, p: torch.Tensor) -> torch.Tensor:
        """Amplifies or attenuates the 4 frequency bands per sample, keeping the expected image power."""
        n, c, h, w = images.shape
        dev, dt = images.device, images.dtype
        fbank = self.Hz_fbank.to(device=dev, dtype=dt)  # [B, T]
        num_bands, taps = fbank.shape
        power = torch.tensor(EXPECTED_BAND_POWER, device=dev, dtype=dt)
        gains = torch.ones(n, num_bands, device=dev, dtype=dt)
        for band, strength in enumerate(self.imgfilter_bands):
            t_band = draws.lognormal2(
                self.imgfilter * p * strength, self.imgfilter_std, enabled_in_debug=strength > 0
            )
            t = torch.ones(n, num_bands, device=dev, dtype=dt)
            t[:, band] = t_band
            gains = gains * t / (power * t.square()).sum(dim=1, keepdim=True).sqrt()
        kernel = (gains @ fbank).repeat_interleave(c, dim=0)  # [N*C, T], one filter per sample and channel
        half = taps // 2
        x = reflect_pad(images.reshape(1, n * c, h, w), half, half, half, half)
        x = torch.nn.functional.conv2d(x, kernel.reshape(n * c, 1, 1, taps), groups=n * c)  # along x
        x = torch.nn.functional.conv2d(x, kernel.reshape(n * c, 1, taps, 1), groups=n * c)  # along y
        return x.reshape(n, c, h, w)

    def _cutout_mask(self, images: torch.Tensor, draws: _Draws, p: torch.Tensor) -> torch.Tensor:
        """Mask [N, 1, H, W] that zeroes a square of side cutout_size (fraction of the image) per sample."""
        n, _, h, w = images.shape
        dev, dt = images.device, images.dtype
        size = draws.gated(
            torch.full([n], self.cutout_size, device=dev, dtype=dt), self.cutout * p, 0, self.cutout_size
        )
        centre = draws.rand(n, 2)  # [N, 2] in fractions of the image size
        if draws.debug is not None:
            centre = torch.full_like(centre, draws.debug)
        xs = (torch.arange(w, device=dev, dtype=dt) + 0.5) / w  # [W]
        ys = (torch.arange(h, device=dev, dtype=dt) + 0.5) / h  # [H]
        outside_x = (xs.reshape(1, 1, 1, w) - centre[:, 0].reshape(n, 1, 1, 1)).abs() >= size.reshape(
            n, 1, 1, 1
        ) / 2
        outside_y = (ys.reshape(1, 1, h, 1) - centre[:, 1].reshape(n, 1, 1, 1)).abs() >= size.reshape(
            n, 1, 1, 1
        ) / 2
        return (outside_x | outside_y).to(dt)  # [N, 1, H, W]
