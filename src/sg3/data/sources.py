"""Image sources for the dataset tool: folders, zips (including official StyleGAN dataset zips) and labels.

A source is a sorted list of :class:`SourceItem`; each item knows its relative name, how to open the
image and (optionally) its label. Label names are strings; :func:`assign_class_ids` maps them to
contiguous class ids.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "LABEL_MODES",
    "SourceItem",
    "assign_class_ids",
    "display_name",
    "open_source",
]


def _pil_extensions() -> tuple[str, ...]:
    """Extensions of every format PIL can open (the official tool's rule), common ones first."""
    Image.init()
    common = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
    known = sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)
    return common + tuple(ext for ext in known if ext not in common)


log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = _pil_extensions()
LABEL_MODES = ("auto", "dataset.json", "folders", "none")


@dataclass
class SourceItem:
    """One image of a source.

    Attributes:
        name: Path relative to the source root, with forward slashes (e.g. ``cats/001.png``).
        open: Callable returning the image as a PIL image (may raise on unreadable files).
        label: Label name (string) or None when unlabelled.
        size_hint: File size in bytes when known, else 0.
    """

    name: str
    open: Callable[[], Image.Image]
    label: str | None = None
    size_hint: int = 0


def display_name(name: str) -> str:
    """The name as valid UTF-8 text: bytes of a file name that are not UTF-8 become ``\\xNN`` escapes.

    On Linux such bytes reach Python as lone surrogates (``b'\\xff.png'`` -> ``'\\udcff.png'``), which
    cannot be written as UTF-8 (JSON readers, terminals); ``'\\xff.png'`` names the same bytes readably.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    if base.startswith(".") or "__MACOSX/" in name:
        return False
    return base.lower().endswith(IMAGE_EXTENSIONS)


def _open_file(path: str) -> Callable[[], Image.Image]:
    return lambda: Image.open(path)


def _file_size(path: str) -> int:
    """Size in bytes, or 0 for a file that cannot be stat'ed (a dangling link: reported when opened)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class _LazyZip:
    """Opens a zip once per process and reads members from it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._zf: zipfile.ZipFile | None = None

    def opener(self, member: str) -> Callable[[], Image.Image]:
        def _open() -> Image.Image:
            if self._zf is None:
                self._zf = zipfile.ZipFile(self.path)
            return Image.open(io.BytesIO(self._zf.read(member)))

        return _open


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The member's name with '/' separators; UTF-8 also where the zip lacks the UTF-8 flag.

    Zips from Info-ZIP on Linux and from macOS store UTF-8 names without flag bit 11, which Python
    decodes as cp437 ('日本.png' -> 'µùÑµ£¼.png'); names that are valid UTF-8 are read as such.
    """
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass  # really cp437 (or another legacy code page): keep Python's reading
    return name.replace("\\", "/")


def _parse_label_json(text: str, origin: str) -> dict[str, str] | None:
    """Parses an official ``dataset.json`` (``{"labels": [[name, int], ...]}`` or ``{"labels": null}``)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{origin}: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict) or "labels" not in obj:
        raise ValueError(f'{origin}: expected an object with a "labels" key, got {type(obj).__name__}')
    labels = obj["labels"]
    if labels is None:
        return None
    if not isinstance(labels, list):
        raise ValueError(
            f'{origin}: "labels" must be a list of [file name, integer] pairs or null, '
            f"got {type(labels).__name__}"
        )
    result: dict[str, str] = {}
    for entry in labels:
        if not (isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError(f"{origin}: each label entry must be [file name, integer], got {entry!r}")
        name, label = entry
        if isinstance(label, bool) or not isinstance(label, int):
            raise ValueError(
                f"{origin}: label of {name!r} is {label!r}; only integer class labels are supported"
            )
        if label < 0:
            raise ValueError(f"{origin}: label of {name!r} is {label}; class labels must be integers >= 0")
        name = name.replace("\\", "/")
        if result.get(name, str(label)) != str(label):
            raise ValueError(f"{origin}: {name!r} is labelled twice, {result[name]} and {label}")
        result[name] = str(label)
    return result


def _decode_label_file(raw: bytes, origin: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{origin}: not UTF-8 text ({exc})") from None


def open_source(source: str, labels: str = "auto") -> list[SourceItem]:
    """Lists the images of a folder or zip, sorted by name, with their labels.

    Args:
        source: Path of a folder (searched recursively) or a ``.zip`` file of images.
        labels: Where labels come from: ``'dataset.json'`` (the official file at the source root; required),
            ``'folders'`` (first sub-folder name), ``'none'``, or ``'auto'`` (dataset.json when present and
            not null, else none).

    Returns:
        The images as :class:`SourceItem`, sorted by name.

    Raises:
        ValueError: Unknown label mode, missing source, no images, or missing labels for some files.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"labels={labels!r} is not one of {LABEL_MODES}")
    label_text: str | None = None
    if os.path.isdir(source):
        items = []
        escaped = []  # names that are not valid UTF-8, as recorded
        seen = {os.path.realpath(source)}
        for root, dirs, files in os.walk(source, followlinks=True):  # linked class folders count too
            real = {d: os.path.realpath(os.path.join(root, d)) for d in dirs}
            dirs[:] = sorted(d for d in dirs if real[d] not in seen)  # each real folder once: no link loops
            seen.update(real[d] for d in dirs)
            for fname in files:
                path = os.path.join(root, fname)
                rel = os.path.relpath(path, source).replace(os.sep, "/")
                if _is_image_name(rel):
                    name = display_name(rel)
                    if name != rel:
                        escaped.append(name)
                    items.append(SourceItem(name, _open_file(path), size_hint=_file_size(path)))
        if escaped:
            log.warning(
                "%d file name(s) of %s are not valid UTF-8 (first: %s); their non-UTF-8 bytes are "
                "recorded as \\xNN escapes in the shards (file and class names)",
                len(escaped), display_name(source), min(escaped),
            )  # fmt: skip
        json_path = os.path.join(source, "dataset.json")
        if os.path.isfile(json_path):
            with open(json_path, "rb") as f:
                label_text = _decode_label_file(f.read(), json_path)
    elif os.path.isfile(source) and zipfile.is_zipfile(source):
        lazy = _LazyZip(source)
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
            items = [  # names with '/' also for zips written with Windows backslashes
                SourceItem(_zip_name(i), lazy.opener(i.filename), size_hint=i.file_size)
                for i in infos
                if not i.is_dir() and _is_image_name(_zip_name(i))
            ]
            if "dataset.json" in names:
                label_text = _decode_label_file(zf.read("dataset.json"), f"{source}/dataset.json")
    elif os.path.exists(source):
        raise ValueError(f"source {source!r} is neither a folder nor a zip file")
    else:
        raise ValueError(f"source {source!r} does not exist")
    items.sort(key=lambda it: it.name)
    if not items:
        raise ValueError(
            f"source {source!r} holds no images (looked for the extensions PIL opens: "
            f"{', '.join(IMAGE_EXTENSIONS[:7])}, ...)"
        )
    _attach_labels(items, source, labels, label_text)
    return items


def _attach_labels(items: list[SourceItem], source: str, mode: str, label_text: str | None) -> None:
    if mode == "none":
        return
    if mode == "folders":
        flat = [it.name for it in items if "/" not in it.name]
        if flat:
            raise ValueError(
                f"--labels=folders: {len(flat)} image(s) of {source!r} are not inside a class sub-folder "
                f"(first: {flat[0]!r}); move them into a folder named after their class"
            )
        for it in items:
            it.label = it.name.split("/", 1)[0]
        return
    origin = f"{source}/dataset.json"
    table = _parse_label_json(label_text, origin) if label_text is not None else None
    if table is None:
        if mode == "dataset.json":
            what = "has no labels (null)" if label_text is not None else "does not exist"
            raise ValueError(f"--labels=dataset.json: {origin} {what}")
        return
    missing = [it.name for it in items if it.name not in table]
    if missing:
        raise ValueError(
            f"{origin} has no label for {len(missing)} image(s) (first: {missing[0]!r}); "
            "label every image or pass --labels=none"
        )
    for it in items:
        it.label = table[it.name]
    extra = sorted(set(table) - {it.name for it in items})
    if extra:
        log.warning(
            "%s labels %d file(s) that are not images of the source (first: %r); their labels are unused",
            origin, len(extra), extra[0],
        )  # fmt: skip


def assign_class_ids(label_names: list[str]) -> list[str]:
    """Returns the sorted class names; integer-like names sort numerically, others alphabetically.

    Args:
        label_names: Label names of the images (repeats allowed).

    Returns:
        Distinct class names, index = contiguous class id.
    """
    distinct = set(label_names)
    if all(n.lstrip("-").isdigit() for n in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)
