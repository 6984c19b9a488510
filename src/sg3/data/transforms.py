"""Image transforms of the dataset tool: channel handling, center crops and high-quality resizing."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = [
    "CHANNEL_MODES",
    "TRANSFORMS",
    "SkipImage",
    "convert_channels",
    "image_channels",
    "parse_resolution",
    "transform_image",
]

CHANNEL_MODES = {"rgb": "RGB", "gray": "L", "rgba": "RGBA", "keep": None}
TRANSFORMS = ("none", "center-crop", "center-crop-wide")
_MODE_CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}


class SkipImage(Exception):
    """Raised for an image that is dropped (not an error); the message is the reason."""


def parse_resolution(text: str | int | None) -> tuple[int, int] | None:
    """Parses ``'256'`` or ``'256x192'`` into (width, height); width must be a power of two >= 4.

    Args:
        text: Resolution as an int, ``'N'`` or ``'WxH'``; None means "keep the images' own size".

    Returns:
        (width, height) in pixels, or None.
    """
    if text is None:
        return None
    parts = str(text).lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"resolution={text!r} is not 'N' or 'WxH' with integers") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise ValueError(f"resolution={text!r} is not 'N' or 'WxH' with positive integers")
    width, height = dims
    if width < 4 or width & (width - 1):
        raise ValueError(f"resolution width {width} must be a power of two >= 4 (e.g. 64, 256, 1024)")
    if height > width:
        raise ValueError(f"resolution {width}x{height}: height must not exceed width")
    return width, height


def _to_8bit(img: Image.Image) -> Image.Image:
    """Maps 16/32-bit integer and float gray images to 8-bit gray.

    16-bit images (modes ``I;16*``) are scaled by their bit depth (65535 -> 255), whatever their content;
    32-bit integer images (mode ``I``, whose range PIL does not record) are taken as 16-bit when a value
    exceeds 255, else as 8-bit; float images as [0, 1] when no value exceeds 1, else as [0, 255].
    """
    arr = np.asarray(img)
    if img.mode == "F":
        arr = np.clip(arr, 0.0, 1.0) * 255.0 if arr.max(initial=0) <= 1.0 else np.clip(arr, 0, 255)
    elif img.mode.startswith("I;16") or arr.max(initial=0) > 255:
        arr = arr.astype(np.float64) / 257.0  # 16-bit full scale 65535 -> 255
    arr = np.clip(arr, 0, 255)  # 32-bit values beyond 16 bits, or negative ones, saturate (no wrap-around)
    return Image.fromarray(np.rint(arr).astype(np.uint8), mode="L")


def convert_channels(img: Image.Image, channels: str) -> Image.Image:
    """Converts an image to L, RGB or RGBA.

    Args:
        img: Any PIL image (palette, 16-bit, CMYK, with or without alpha).
        channels: ``'rgb'``, ``'gray'``, ``'rgba'`` or ``'keep'`` (gray stays 1 channel, images with
            transparency become RGBA, everything else RGB). Alpha dropped by ``'rgb'``/``'gray'`` is
            composited onto black.

    Returns:
        An image in mode L, RGB or RGBA.
    """
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels={channels!r} is not one of {sorted(CHANNEL_MODES)}")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_8bit(img)
    elif img.mode == "1":
        img = img.convert("L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        img = img.convert("RGBA")
    target = CHANNEL_MODES[channels]
    if target is None:
        target = "L" if img.mode == "L" else ("RGBA" if has_alpha else "RGB")
    if has_alpha and target != "RGBA":
        black = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, img)
    return img if img.mode == target else img.convert(target)


def transform_image(img: Image.Image, transform: str, resolution: tuple[int, int] | None) -> Image.Image:
    """Crops and resizes an image to the output resolution (LANCZOS).

    Args:
        img: Input image (mode L, RGB or RGBA).
        transform: ``'none'`` (image must be square), ``'center-crop'`` (central square of side min(w, h)),
            or ``'center-crop-wide'`` (central band with the aspect of ``resolution``, resized to W x H and
            pasted vertically centred on a black W x W canvas).
        resolution: (width, height) of the output content; None keeps the size (transform must not need it).

    Returns:
        A square image.

    Raises:
        SkipImage: center-crop-wide on an image narrower than W or too short for the band.
        ValueError: A non-square image with transform 'none', or unknown transform.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform={transform!r} is not one of {TRANSFORMS}")
    w, h = img.size
    if transform == "none":
        if w != h:
            raise ValueError(
                f"image is {w}x{h} (not square); pass --transform center-crop or center-crop-wide"
            )
    elif transform == "center-crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    else:
        if resolution is None:
            raise ValueError("transform 'center-crop-wide' needs --resolution WxH")
        out_w, out_h = resolution
        band = int(round(w * out_h / out_w))  # source rows with the output's aspect
        if w < out_w or band < out_h or band > h:
            raise SkipImage(f"{w}x{h} too small for center-crop-wide {out_w}x{out_h}")
        top = (h - band) // 2
        img = img.crop((0, top, w, top + band)).resize((out_w, out_h), Image.LANCZOS)
        canvas = Image.new(img.mode, (out_w, out_w))
        canvas.paste(img, (0, (out_w - out_h) // 2))
        return canvas
    if resolution is not None:
        side = resolution[0]
        if resolution[1] != side:
            raise ValueError(f"resolution {side}x{resolution[1]} is only valid with center-crop-wide")
        if img.size != (side, side):
            img = img.resize((side, side), Image.LANCZOS)
    return img


def image_channels(img: Image.Image) -> int:
    """Number of channels of an L/RGB/RGBA image."""
    return _MODE_CHANNELS[img.mode]
