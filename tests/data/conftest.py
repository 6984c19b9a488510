"""Tiny image folders for the data tests: each image has a distinct constant value that identifies it."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from sg3.data.dataset_tool import ConvertOptions, convert
from sg3.data.sources import open_source


def write_image(path: str, value: int, size: tuple[int, int] = (20, 16), mode: str = "RGB") -> None:
    """Writes a constant image (value in every channel, alpha 255)."""
    w, h = size
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = np.full((h, w, channels), value, dtype=np.uint8)
    if mode == "RGBA":
        arr[..., 3] = 255
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode).save(path)


@pytest.fixture
def image_writer():
    """The write_image helper (path, value, size=(20, 16), mode='RGB')."""
    return write_image


@pytest.fixture
def make_folder(tmp_path):
    """make_folder(n, classes=None, size=(20, 16)) -> folder of n images with values 10, 15, 20, ...

    With classes, image i goes into sub-folder classes[i % len(classes)].
    """

    def _make(n: int, classes: list[str] | None = None, size=(20, 16), name: str = "src") -> str:
        root = tmp_path / name
        for i in range(n):
            sub = classes[i % len(classes)] if classes else ""
            write_image(str(root / sub / f"img{i:03d}.png"), 10 + 5 * i, size)
        return str(root)

    return _make


@pytest.fixture
def make_shards(tmp_path, make_folder):
    """make_shards(n, shard_size, classes=None, **opts) -> folder of shards (resolution 8, center-crop)."""

    def _make(n: int, shard_size: int, classes: list[str] | None = None, **kw) -> str:
        src = make_folder(n, classes)
        dest = str(tmp_path / f"shards-{n}-{shard_size}")
        opts = ConvertOptions(
            resolution=8, transform="center-crop", shard_size=shard_size, progress=False, **kw
        )
        convert(open_source(src, "folders" if classes else "none"), dest, opts)
        return dest

    return _make


@pytest.fixture
def values_of():
    """values_of(loader) -> sorted list of the image values (centre pixel) of every image a loader yields."""

    def _values(loader) -> list[int]:
        out = []
        for img, _ in loader:
            out.extend(int(v) for v in img[:, 0, img.shape[2] // 2, img.shape[3] // 2])
        return sorted(out)

    return _values
