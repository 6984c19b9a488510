"""The embedded demo dataset: random crops of scikit-image's bundled sample photographs, as sg3 shards.

Nothing is downloaded: only photographs that ship inside the installed scikit-image package are used
(files in ``skimage/data``). Crops go through the same conversion engine as ``sg3-dataset``
(:func:`sg3.data.dataset_tool.convert`), so the demo has the user-data shard format. Labels are the
photograph names, so the demo also serves conditional runs (``use_labels=True``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from sg3.data.dataset_tool import ConvertOptions, convert
from sg3.data.sources import SourceItem

__all__ = ["DEMO_PHOTOS", "demo_cache_dir", "demo_crop_items", "ensure_demo_dataset"]

log = logging.getLogger(__name__)
# Colour photographs bundled with scikit-image (no download needed); those present are used.
DEMO_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "retina.jpg",
    "rocket.jpg",
)
_VERSION = 1


def demo_cache_dir() -> str:
    """Cache root of demo datasets: ``$SG3_DEMO_CACHE``, else ``~/.cache/sg3/demo``."""
    return os.environ.get("SG3_DEMO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sg3", "demo")


def _bundled_photos() -> list[tuple[str, Image.Image]]:
    import skimage.data

    folder = os.path.dirname(skimage.data.__file__)
    photos = []
    for name in DEMO_PHOTOS:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with Image.open(path) as img:
                photos.append((os.path.splitext(name)[0], img.convert("RGB")))
    if not photos:
        raise RuntimeError(
            f"none of the sample photographs {DEMO_PHOTOS} is bundled in {folder}; "
            "reinstall scikit-image or use your own data (sg3-dataset)"
        )
    return photos


def demo_crop_items(resolution: int, count: int, seed: int = 0) -> list[SourceItem]:
    """``count`` random square crops (side 2x resolution .. half the photo) named ``PHOTO/NNNNNN``."""
    photos = _bundled_photos()
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        label, photo = photos[i % len(photos)]
        w, h = photo.size
        hi = max(min(w, h) // 2, 1)
        lo = min(2 * resolution, hi)
        side = int(rng.integers(lo, hi + 1))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        box = (x, y, x + side, y + side)
        items.append(SourceItem(f"{label}/{i:06d}", lambda p=photo, b=box: p.crop(b), label=label))
    return items


def ensure_demo_dataset(root: str | None = None, resolution: int = 32, count: int = 2048) -> str:
    """Builds the demo dataset on first use and returns the path of its dataset.json.

    The build goes into a private temporary folder that is renamed into place at the end, so concurrent
    callers never see a partial dataset; the first rename wins and the others discard their copy.

    Args:
        root: Cache root; None uses :func:`demo_cache_dir` (``$SG3_DEMO_CACHE`` or ``~/.cache/sg3/demo``).
        resolution: Image side in pixels (power of two, 4..256).
        count: Number of images (>= 1).

    Returns:
        Path of the dataset's ``dataset.json``.
    """
    if not isinstance(resolution, int) or resolution < 4 or resolution > 256 or resolution & (resolution - 1):
        raise ValueError(f"resolution={resolution!r} must be a power of two in 4..256")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count={count!r} must be a positive int")
    root = os.path.expanduser(root or demo_cache_dir())
    final = os.path.join(root, f"skimage-r{resolution}-n{count}-v{_VERSION}")
    index = os.path.join(final, "dataset.json")
    if os.path.isfile(index):
        return index
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=root)
    os.chmod(tmp, 0o755)
    try:
        log.info("building the demo dataset (%d images, %dx%d) in %s", count, resolution, resolution, final)
        opts = ConvertOptions(resolution=resolution, transform="center-crop", shard_size=1024, progress=False)
        convert(demo_crop_items(resolution, count, seed=0), tmp, opts, source_name="skimage.data (bundled)")
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isfile(index):  # not another builder's win: a real failure
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return index
