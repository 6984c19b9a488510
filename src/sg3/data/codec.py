"""Image codecs of the shards: an unfiltered stored-PNG writer and decoding to pixel arrays.

sg3-dataset's default PNG (zlib level 0) is written by :func:`encode_png_stored` with PNG filter type 0
(None) on every row: with stored (uncompressed) zlib blocks row filters cannot shrink the file, they only
cost decode time. :func:`decode_array` decodes such a PNG with one zlib pass (which verifies the Adler-32
checksum of the pixel data) and returns a view of the rows, with no further copy. Other PNGs (with
filters, other chunks, 16-bit, palette or interlace, or a channel conversion) go to PIL: torchvision's
libpng decoder aborts the whole process on some damaged files (a bad zlib checksum), which a stream that
must skip corrupt samples cannot afford. JPEG and WebP go to libjpeg-turbo/libwebp through torchvision
(PIL when torchvision has no image codecs).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import torch
from PIL import Image

try:  # libpng/libjpeg-turbo through torchvision: ~1.1x (PNG) to 2x (JPEG) faster than PIL
    from torchvision.io import ImageReadMode, decode_image

    warnings.filterwarnings(  # torchvision 0.29 deprecates its codecs (one warning per call otherwise)
        "ignore",
        message="The image decoding and encoding capabilities of TorchVision",
        category=DeprecationWarning,
    )
    _READ_MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB, 4: ImageReadMode.RGB_ALPHA}
except ImportError:  # a torchvision without image codecs: PIL
    decode_image = None

__all__ = ["IMAGE_KEYS", "decode_array", "decode_sample", "encode_png_stored", "image_key"]

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (gray, RGB, RGBA)
_TYPE_CHANNELS = {v: k for k, v in _COLOR_TYPES.items()}
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_png_stored(arr: np.ndarray) -> bytes:
    """Encodes 8-bit pixels as a PNG with stored zlib blocks (level 0) and no row filters.

    Args:
        arr: uint8 pixels ``[H, W]`` (gray), ``[H, W, 1]``, ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA).

    Returns:
        The PNG file bytes (signature, IHDR, one IDAT, IEND), readable by any PNG decoder.
    """
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
        raise TypeError(
            f"arr must be a uint8 numpy array, got {type(arr).__name__} {getattr(arr, 'dtype', '')}"
        )
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if arr.ndim != 3 or arr.shape[2] not in _COLOR_TYPES or min(arr.shape[:2]) < 1:
        raise ValueError(f"arr has shape {list(arr.shape)}; expected [H, W] or [H, W, C] with C in 1, 3, 4")
    h, w, c = arr.shape
    rows = np.zeros((h, 1 + w * c), np.uint8)  # [H, 1 + W*C]: filter byte 0, then the row's pixels
    rows[:, 1:] = arr.reshape(h, w * c)
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPES[c], 0, 0, 0)
    idat = zlib.compress(rows.tobytes(), 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _decode_png_stored(data: bytes, channels: int | None) -> np.ndarray | None:
    """Pixels ``[H, W, C]`` (a read-only view) of an unfiltered 8-bit PNG, or None when not applicable.

    Applies to PNGs made of IHDR, IDAT chunks and IEND only, 8-bit gray/RGB/RGBA, not interlaced,
    every row with filter type 0, and ``channels`` None or equal to the stored channels. Anything
    else, including a file cut short, returns None and is left to the general decoder.

    Raises:
        ValueError: The pixel data is damaged (zlib error or checksum mismatch, wrong length).
    """
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    w, h, depth, color, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    c = _TYPE_CHANNELS.get(color)
    if depth != 8 or c is None or interlace or (channels is not None and channels != c) or not w or not h:
        return None
    pos, idat = 33, []
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + size])
        elif kind == b"IEND":
            break
        else:
            return None
        pos += 12 + size
    else:
        return None  # no IEND: truncated
    try:
        raw = zlib.decompress(idat[0] if len(idat) == 1 else b"".join(idat), bufsize=h * (1 + w * c))
    except zlib.error as exc:
        raise ValueError(f"cannot decode png: pixel data: {exc}") from exc
    if len(raw) != h * (1 + w * c):
        raise ValueError(f"cannot decode png: {len(raw)} bytes of pixel data, expected {h * (1 + w * c)}")
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + w * c)  # [H, 1 + W*C]
    if rows[:, 0].any():
        return None
    return rows[:, 1:].reshape(h, w, c)  # [H, W, C], a view


def image_key(sample: dict) -> str:
    """The image extension of a raw sample (first of png/jpg/jpeg/webp present)."""
    ext = next((k for k in IMAGE_KEYS if k in sample), None)
    if ext is None:
        raise ValueError(f"sample has no image (keys {sorted(k for k in sample if not k.startswith('__'))})")
    return ext


def decode_array(data: bytes, ext: str, channels: int | None = None) -> np.ndarray:
    """Decodes image bytes into uint8 pixels ``[H, W, C]`` (possibly a read-only, strided view).

    Args:
        data: The encoded image.
        ext: Its extension (png/jpg/jpeg/webp), for error messages.
        channels: Convert to 1, 3 or 4 channels; None keeps the stored channels.

    Returns:
        The pixels; copy them before writing.

    Raises:
        ValueError: The image cannot be decoded.
    """
    if ext == "png":
        arr = _decode_png_stored(data, channels)
        return arr if arr is not None else _decode_pil(data, ext, channels)
    if decode_image is None:
        return _decode_pil(data, ext, channels)
    try:
        img = decode_image(
            torch.frombuffer(bytearray(data), dtype=torch.uint8),
            mode=_READ_MODES.get(channels, ImageReadMode.UNCHANGED),
        )  # [C, H, W]
    except RuntimeError as exc:
        raise ValueError(f"cannot decode {ext}: {exc}") from exc
    return img.numpy().transpose(1, 2, 0)  # [H, W, C] view


def _decode_pil(data: bytes, ext: str, channels: int | None) -> np.ndarray:
    """Decodes with PIL into ``[H, W, C]`` (the fallback of decode_array, same arguments)."""
    try:
        img = Image.open(io.BytesIO(data))
        if channels is not None and img.mode != _PIL_MODES[channels]:
            img = img.convert(_PIL_MODES[channels])
        elif channels is None and img.mode not in ("L", "RGB", "RGBA"):  # palette, 16-bit, LA, ...
            alpha = "A" in img.mode or "transparency" in img.info
            img = img.convert("RGBA" if alpha else "RGB")
        arr = np.asarray(img)  # [H, W] or [H, W, C]
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot decode {ext}: {exc}") from exc
    return arr[:, :, None] if arr.ndim == 2 else arr


def decode_sample(sample: dict, channels: int | None = None) -> torch.Tensor:
    """Decodes the image of a raw sample into a new uint8 tensor ``[C, H, W]``.

    Args:
        sample: Raw sample (extension -> bytes) with one of the keys png/jpg/jpeg/webp.
        channels: Convert to 1, 3 or 4 channels; None keeps the stored channels.

    Returns:
        The image tensor.
    """
    ext = image_key(sample)
    arr = decode_array(sample[ext], ext, channels)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())  # [C, H, W]
