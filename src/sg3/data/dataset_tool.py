"""``sg3-dataset``: converts a folder or zip of images into sg3 webdataset shards plus a dataset.json index.

Example::

    sg3-dataset --source ~/photos --dest ~/data/photos-256 --resolution 256 --transform center-crop
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import logging
import multiprocessing
import os
import sys
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from sg3.data.codec import encode_png_stored
from sg3.data.shards import INDEX_FORMAT, INDEX_NAME, ShardWriter, write_index
from sg3.data.sources import LABEL_MODES, SourceItem, assign_class_ids, display_name, open_source
from sg3.data.transforms import (
    CHANNEL_MODES,
    TRANSFORMS,
    SkipImage,
    convert_channels,
    image_channels,
    parse_resolution,
    transform_image,
)

__all__ = ["ConvertOptions", "ConvertSummary", "convert", "main", "parse_size"]

log = logging.getLogger(__name__)
_SHARD_GLOB = "*-[0-9][0-9][0-9][0-9][0-9][0-9].tar"
_EXIF_ORIENTATION = 0x0112
_UNREADABLE = (  # a damaged file, or a zip member with a bad CRC, damaged or unsupported compression
    UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
    zipfile.BadZipFile, zlib.error, NotImplementedError,
)  # fmt: skip


@dataclass
class ConvertOptions:
    """Options of a conversion (the CLI flags).

    Attributes:
        resolution: Output side (``int``), ``'WxH'`` for center-crop-wide, or None to keep the (square,
            power-of-two, identical) input size.
        transform: ``'none'``, ``'center-crop'`` or ``'center-crop-wide'``.
        channels: ``'rgb'``, ``'gray'``, ``'rgba'`` or ``'keep'``.
        image_format: ``'png'`` (lossless) or ``'jpg'``.
        quality: JPEG quality 1..100 (only for jpg).
        png_compression: PNG zlib level 0..9 (0 = stored and unfiltered: largest files, fastest decode).
        shard_size: Most samples per shard.
        shard_bytes: Most bytes per shard.
        seed: Seed of the sample order (and of the ``max_images`` subset).
        max_images: Keep at most this many images (a seeded random subset); None keeps all.
        strict: Raise on the first unreadable image instead of skipping it.
        overwrite: Replace shards and index already in the destination.
        prefix: Shard name prefix.
        workers: Worker processes for decoding/encoding (1 = in process).
        progress: Show a tqdm progress bar.
    """

    resolution: int | str | None = None
    transform: str = "none"
    channels: str = "rgb"
    image_format: str = "png"
    quality: int = 95
    png_compression: int = 0
    shard_size: int = 10000
    shard_bytes: int = 1 << 30
    seed: int = 0
    max_images: int | None = None
    strict: bool = False
    overwrite: bool = False
    prefix: str = "shard"
    workers: int = 1
    progress: bool = True


@dataclass
class ConvertSummary:
    """What a conversion did: samples written, images skipped (reason -> count, first files), images
    upscaled (smaller than the resolution), the index."""

    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    upscaled: int = 0
    index: dict = field(default_factory=dict)
    index_path: str = ""

    def format(self) -> str:
        """Human-readable multi-line summary."""
        idx = self.index
        lines = [
            f"wrote {self.written} images ({idx.get('resolution')}x{idx.get('resolution')}, "
            f"{idx.get('channels')} channel(s)) into {len(idx.get('shards', []))} shard(s): {self.index_path}"
        ]
        if idx.get("labels"):
            lines.append(f"labels: {idx['num_classes']} classes {idx['class_names'][:8]}")
        if not self.skipped:
            lines.append("skipped: none")
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"skipped {count} ({reason}), e.g. {', '.join(self.skipped_examples[reason][:3])}")
        return "\n".join(lines)


def parse_size(text: str | int) -> int:
    """Parses a byte size such as ``1000000``, ``512M``, ``1G`` or ``1.5e9`` (K/M/G/T are powers of 1024)."""
    s = str(text).strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(s[-1:] if s else "", 1)
    try:
        value = int(float(s[:-1] if mult > 1 else s) * mult)
    except ValueError:
        raise ValueError(f"size {text!r} is not a number with an optional K/M/G/T suffix") from None
    if value <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return value


def _check_options(opts: ConvertOptions) -> tuple[int, int] | None:
    if opts.transform not in TRANSFORMS:
        raise ValueError(f"transform={opts.transform!r} is not one of {TRANSFORMS}")
    if opts.channels not in CHANNEL_MODES:
        raise ValueError(f"channels={opts.channels!r} is not one of {sorted(CHANNEL_MODES)}")
    if opts.image_format not in ("png", "jpg"):
        raise ValueError(f"format={opts.image_format!r} is not 'png' or 'jpg'")
    if opts.image_format == "jpg" and opts.channels == "rgba":
        raise ValueError("format 'jpg' cannot store an alpha channel; use --format png with --channels rgba")
    if not 1 <= opts.quality <= 100:
        raise ValueError(f"quality={opts.quality} must be in 1..100")
    if not 0 <= opts.png_compression <= 9:
        raise ValueError(f"png_compression={opts.png_compression} must be in 0..9")
    if opts.max_images is not None and opts.max_images < 1:
        raise ValueError(f"max_images={opts.max_images} must be >= 1 (or None for all)")
    if opts.shard_size < 1:
        raise ValueError(f"--shard-size {opts.shard_size} must be >= 1 (samples per shard)")
    if opts.shard_bytes < 1024:
        raise ValueError(f"--shard-bytes {opts.shard_bytes} must be >= 1024 (bytes per shard)")
    if opts.workers < 1:
        raise ValueError(f"workers={opts.workers} must be >= 1")
    resolution = parse_resolution(opts.resolution)
    if resolution is not None and resolution[1] != resolution[0] and opts.transform != "center-crop-wide":
        raise ValueError(f"resolution {opts.resolution!r} (W != H) is only valid with center-crop-wide")
    if opts.transform == "center-crop-wide" and resolution is None:
        raise ValueError("transform 'center-crop-wide' needs --resolution (e.g. 256x192)")
    return resolution


def _encode(img: Image.Image, opts: ConvertOptions) -> bytes:
    buf = io.BytesIO()
    if opts.image_format == "png" and opts.png_compression == 0:
        return encode_png_stored(np.asarray(img))  # no row filters: the stream's fast decode path
    if opts.image_format == "png":
        img.save(buf, format="PNG", compress_level=opts.png_compression)
    else:
        img.save(buf, format="JPEG", quality=opts.quality, subsampling=0 if opts.quality >= 90 else 2)
    return buf.getvalue()


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright; also for a damaged EXIF block: the pixels stay usable)."""
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - any EXIF parse failure: use the pixels as stored
        return 1


def _process(item: SourceItem, opts: ConvertOptions, resolution: tuple[int, int] | None) -> tuple:
    """Returns ('ok', bytes, orig_size, side, channels), ('skip', reason) or ('error', message)."""
    try:
        with item.open() as src:
            src.seek(0)
            src.load()
            upright = src  # photos stored rotated carry an EXIF orientation tag (1 = upright)
            if _orientation(src) != 1:
                upright = ImageOps.exif_transpose(src)
            orig_size = upright.size
            img = convert_channels(upright, opts.channels)
    except _UNREADABLE as exc:
        return ("skip", "unreadable", f"{type(exc).__name__}: {exc}")
    try:
        img = transform_image(img, opts.transform, resolution)
    except SkipImage as exc:
        return ("skip", "too small for center-crop-wide", str(exc))
    except ValueError as exc:
        return ("error", f"{item.name}: {exc}")
    channels = image_channels(img)
    if opts.image_format == "jpg" and channels == 4:
        return ("error", f"{item.name}: has an alpha channel, which jpg cannot store; pass --channels rgb")
    return ("ok", _encode(img, opts), orig_size, img.size[0], channels)


_POOL_STATE: tuple = ()


def _pool_process(i: int) -> tuple:
    items, opts, resolution = _POOL_STATE
    return _process(items[i], opts, resolution)


def _processed(items: Sequence[SourceItem], order: list[int], opts, resolution) -> Iterator[tuple]:
    if opts.workers == 1 or len(order) < 64 or "fork" not in multiprocessing.get_all_start_methods():
        for i in order:
            yield _process(items[i], opts, resolution)
        return
    global _POOL_STATE
    _POOL_STATE = (items, opts, resolution)
    try:
        with multiprocessing.get_context("fork").Pool(opts.workers) as pool:
            yield from pool.imap(_pool_process, order, chunksize=16)
    finally:
        _POOL_STATE = ()


def _prepare_dest(dest: str, overwrite: bool) -> None:
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise ValueError(f"destination {dest!r} is a file, not a folder; pass a folder for the shards")
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as exc:  # a file on the way, no permission, a read-only file system
        raise ValueError(f"cannot create the destination folder {dest!r}: {exc.strerror or exc}") from exc
    existing = sorted(glob.glob(os.path.join(dest, _SHARD_GLOB)))
    if os.path.exists(os.path.join(dest, INDEX_NAME)):
        existing.insert(0, os.path.join(dest, INDEX_NAME))
    if existing and not overwrite:
        raise FileExistsError(
            f"destination {dest!r} already holds a dataset ({len(existing)} file(s), e.g. "
            f"{os.path.basename(existing[0])}); pass --overwrite to replace it"
        )
    for path in existing:  # index first, so an interrupted rewrite leaves no index over stale shards
        os.remove(path)


def convert(
    items: Sequence[SourceItem], dest: str, opts: ConvertOptions, source_name: str = ""
) -> ConvertSummary:
    """Converts images into shards + index (the engine behind ``sg3-dataset`` and the demo dataset).

    Args:
        items: The images (see :func:`sg3.data.sources.open_source`), sorted by name.
        dest: Output folder (created if missing).
        opts: Conversion options.
        source_name: Name recorded in the index (``source`` key).

    Returns:
        The :class:`ConvertSummary`.

    Raises:
        ValueError: Bad options, empty source, non-square images without a crop, mixed sizes or channels,
            missing labels, or (with ``strict``) an unreadable image.
        FileExistsError: ``dest`` already holds shards or an index and ``overwrite`` is False.
    """
    resolution = _check_options(opts)
    if not items:
        raise ValueError("the source holds no images")
    labelled = items[0].label is not None
    if any((it.label is not None) != labelled for it in items):
        raise ValueError("some images have labels and others do not")
    class_names = assign_class_ids([it.label for it in items]) if labelled else []
    class_id = {name: i for i, name in enumerate(class_names)}
    order = [int(i) for i in np.random.RandomState(opts.seed).permutation(len(items))]
    if opts.max_images is not None:
        order = order[: opts.max_images]
    _prepare_dest(dest, opts.overwrite)
    writer = ShardWriter(dest, opts.prefix, opts.shard_size, opts.shard_bytes)
    summary = ConvertSummary()
    class_counts = [0] * len(class_names)
    first: tuple[str, int, int] | None = None  # (file, side, channels) of the first written image
    first_upscaled: tuple[str, tuple[int, int]] | None = None  # (file, size) of the first by name
    upscale_below = resolution[0] if resolution and opts.transform != "center-crop-wide" else 0
    bar = tqdm(total=len(order), unit="img", disable=not opts.progress, desc="sg3-dataset")
    # log lines while the bar is drawn go through tqdm.write: whole lines above the bar, not into it
    above_bar = logging_redirect_tqdm() if opts.progress else contextlib.nullcontext()
    try:
        with above_bar:
            for i, result in zip(order, _processed(items, order, opts, resolution)):
                item = items[i]
                bar.update(1)
                if result[0] == "error":
                    raise ValueError(result[1])
                if result[0] == "skip":
                    if opts.strict:
                        raise ValueError(
                            f"{item.name}: {result[1]} ({result[2]}); drop --strict to skip such files"
                        )
                    summary.skipped[result[1]] += 1
                    summary.skipped_examples.setdefault(result[1], []).append(item.name)
                    log.warning("skipped %s: %s (%s)", item.name, result[1], result[2])
                    continue
                _, data, orig_size, side, channels = result
                if upscale_below and min(orig_size) < upscale_below:  # the (cropped) square was smaller
                    summary.upscaled += 1
                    first_upscaled = min(first_upscaled or (item.name, orig_size), (item.name, orig_size))
                if first is None:
                    first = (item.name, side, channels)
                    if side & (side - 1) or side < 4:
                        raise ValueError(
                            f"{item.name}: size {side}x{side} is not a power of two of at least 4 pixels; "
                            "pass --resolution"
                        )
                elif (side, channels) != first[1:]:
                    what, fix = (
                        ("resolution", "pass --resolution N to resize them all")
                        if side != first[1]
                        else ("channel count", "pass --channels rgb, gray or rgba to convert them all")
                    )
                    raise ValueError(
                        f"mixed {what}: {item.name} is {side}x{side} with {channels} channel(s), but "
                        f"{first[0]} is {first[1]}x{first[1]} with {first[2]}; {fix}"
                    )
                meta = {"source": item.name, "size": list(orig_size)}
                members = {opts.image_format: data}
                if labelled:
                    cid = class_id[item.label]
                    class_counts[cid] += 1
                    members["cls"] = str(cid).encode()
                    meta["class_name"] = item.label
                members["json"] = json.dumps(meta, sort_keys=True).encode()
                writer.write(f"{summary.written:08d}", members)
                summary.written += 1
        bar.close()
        if summary.written == 0:
            raise ValueError(f"no image could be converted (skipped: {dict(summary.skipped)})")
        shards = writer.close()
    except BaseException:
        bar.close()
        writer.abort()
        raise
    if summary.upscaled:
        (w, h), side = first_upscaled[1], resolution[0]
        log.warning(
            "upscaled %d image(s) smaller than %dx%d (first: %s, %dx%d): their detail is interpolated, "
            "not real; pass a smaller --resolution or leave them out",
            summary.upscaled, side, side, first_upscaled[0], w, h,
        )  # fmt: skip
    summary.index = {
        "format": INDEX_FORMAT,
        "version": 1,
        "resolution": first[1],
        "channels": first[2],
        "count": summary.written,
        "labels": labelled,
        "num_classes": len(class_names),
        "class_names": class_names,
        "class_counts": class_counts,
        "image_format": opts.image_format,
        "seed": opts.seed,
        "source": source_name,
        "skipped": dict(sorted(summary.skipped.items())),
        "shards": shards,
    }
    summary.index_path = write_index(dest, summary.index)
    return summary


def build_parser() -> argparse.ArgumentParser:
    """The ``sg3-dataset`` argument parser."""
    p = argparse.ArgumentParser(
        prog="sg3-dataset",
        description="Convert a folder or zip of images into sg3 webdataset shards "
        "(PREFIX-000000.tar, PREFIX-000001.tar, ... + dataset.json).",
    )
    p.add_argument(
        "--source", required=True, help="folder of images (recursive) or zip (also official dataset zips)"
    )
    p.add_argument("--dest", required=True, help="output folder for the shards and dataset.json")
    p.add_argument("--resolution", help="output side, power of two (e.g. 256); WxH with center-crop-wide")
    p.add_argument("--transform", choices=TRANSFORMS, default="none", help="crop mode (default: none)")
    p.add_argument("--labels", choices=LABEL_MODES, default="auto", help="label source (default: auto)")
    p.add_argument(
        "--channels", choices=sorted(CHANNEL_MODES), default="rgb", help="output channels (default: rgb)"
    )
    p.add_argument(
        "--format", dest="image_format", choices=("png", "jpg"), default="png", help="image encoding"
    )
    p.add_argument("--quality", type=int, default=95, help="JPEG quality 1..100 (default: 95)")
    p.add_argument(
        "--png-compression", type=int, default=0, help="PNG zlib level 0..9 (default: 0, fastest decode)"
    )
    p.add_argument("--shard-size", type=int, default=10000, help="most samples per shard (default: 10000)")
    p.add_argument(
        "--shard-bytes", type=parse_size, default=1 << 30, help="most bytes per shard, e.g. 512M (1G)"
    )
    p.add_argument("--prefix", default="shard", help="shard name prefix (default: shard)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the sample order and of --max-images (default: 0)"
    )
    p.add_argument("--max-images", type=int, default=None, help="keep a seeded random subset of this size")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument(
        "--strict", action="store_true", help="fail on the first unreadable image instead of skipping"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --dest")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sg3-dataset``; returns the exit code (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    opts = ConvertOptions(
        resolution=args.resolution,
        transform=args.transform,
        channels=args.channels,
        image_format=args.image_format,
        quality=args.quality,
        png_compression=args.png_compression,
        shard_size=args.shard_size,
        shard_bytes=args.shard_bytes,
        seed=args.seed,
        max_images=args.max_images,
        strict=args.strict,
        overwrite=args.overwrite,
        prefix=args.prefix,
        workers=args.workers,
        progress=not args.no_progress,
    )
    try:
        items = open_source(os.path.expanduser(args.source), args.labels)
        summary = convert(
            items,
            os.path.expanduser(args.dest),
            opts,
            display_name(os.path.basename(args.source.rstrip("/"))),
        )
    except (ValueError, OSError) as exc:  # OSError: the destination (not a folder, no permission, disk full)
        print(f"sg3-dataset: error: {exc}", file=sys.stderr)
        return 2
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
