"""The sg3 shard format: deterministic atomic tar writing, dataset.json index, URL resolution, tar reading.

Shards are plain tar files ``PREFIX-%06d.tar`` in the webdataset layout: consecutive members
``KEY.png``/``KEY.jpg``, ``KEY.cls`` (ASCII integer, labelled datasets only) and ``KEY.json`` form one
sample. The index ``dataset.json`` next to them is described in docs/internals.md ("Data").
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from webdataset.gopen import gopen
from webdataset.shardlists import expand_urls

from sg3.data.tarstream import TarReader

__all__ = [
    "INDEX_FORMAT",
    "ShardList",
    "ShardWriter",
    "iter_shard_samples",
    "read_index",
    "resolve_urls",
    "write_index",
]

INDEX_FORMAT = "sg3-shards"
INDEX_NAME = "dataset.json"
_GLOB_CHARS = "*?["
_READ_BUFFER = 1 << 20  # bytes per read from a shard stream


class _HashingFile:
    """File wrapper that hashes and counts what is written through it."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self.f = f
        self.sha256 = hashlib.sha256()
        self.nbytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.nbytes += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.nbytes


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ShardWriter:
    """Writes samples into byte-identical, atomically renamed tar shards.

    Every member has mtime 0, uid/gid 0, empty owner names and mode 0644 (USTAR format), so the same
    samples always give the same bytes. A shard is written to ``.NAME.tmp-PID``, fsynced and renamed
    to ``NAME`` only when complete, so an interrupted run never leaves a partial shard under a shard name.

    Args:
        dest: Output folder (must exist).
        prefix: Shard name prefix; shards are ``PREFIX-000000.tar``, ``PREFIX-000001.tar``, ...
        max_count: Most samples per shard (>= 1).
        max_bytes: Most bytes per shard (a single larger sample still gets its own shard).
    """

    def __init__(self, dest: str, prefix: str = "shard", max_count: int = 10000, max_bytes: int = 1 << 30):
        if max_count < 1:
            raise ValueError(f"max_count={max_count} must be >= 1")
        if max_bytes < 1024:
            raise ValueError(f"max_bytes={max_bytes} must be >= 1024")
        self.dest, self.prefix = dest, prefix
        self.max_count, self.max_bytes = max_count, max_bytes
        self.shards: list[dict] = []
        self._tar: tarfile.TarFile | None = None
        self._file: io.BufferedWriter | None = None
        self._hash: _HashingFile | None = None
        self._tmp = ""
        self._count = 0
        self._bytes = 0

    @staticmethod
    def _sample_bytes(members: dict[str, bytes]) -> int:
        return sum(512 + (len(b) + 511) // 512 * 512 for b in members.values())

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Appends one sample.

        Args:
            key: Sample key (no dots or slashes).
            members: Extension (e.g. ``'png'``, ``'cls'``, ``'json'``) -> member bytes.
        """
        if not key or "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must be non-empty without '.' or '/'")
        size = self._sample_bytes(members)
        if self._tar is not None and (self._count >= self.max_count or self._bytes + size > self.max_bytes):
            self._finish()
        if self._tar is None:
            self._start()
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1
        self._bytes += size

    def _start(self) -> None:
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        self._tmp = os.path.join(self.dest, f".{name}.tmp-{os.getpid()}")
        self._file = open(self._tmp, "wb")
        self._hash = _HashingFile(self._file)
        self._tar = tarfile.open(fileobj=self._hash, mode="w", format=tarfile.USTAR_FORMAT)
        self._count = self._bytes = 0

    def _finish(self) -> None:
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, os.path.join(self.dest, name))
        _fsync_dir(self.dest)
        self.shards.append(
            {
                "name": name,
                "count": self._count,
                "bytes": self._hash.nbytes,
                "sha256": self._hash.sha256.hexdigest(),
            }
        )
        self._tar = self._file = self._hash = None

    def close(self) -> list[dict]:
        """Completes the open shard and returns the shard list (name, count, bytes, sha256)."""
        if self._tar is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        """Drops the open shard (its temporary file is deleted; completed shards stay)."""
        if self._file is not None:
            self._file.close()
            if os.path.exists(self._tmp):
                os.remove(self._tmp)
        self._tar = self._file = self._hash = None


def write_index(dest: str, index: dict) -> str:
    """Writes ``dataset.json`` atomically (sorted keys, stable bytes) and returns its path."""
    path = os.path.join(dest, INDEX_NAME)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_index(url: str) -> dict:
    """Reads and validates a ``dataset.json`` index (local path or any URL webdataset can open)."""
    with gopen(url) as stream:
        raw = stream.read()
    try:
        index = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{url}: not valid JSON ({exc})") from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        got = index.get("format") if isinstance(index, dict) else type(index).__name__
        hint = (
            " (an official StyleGAN dataset.json? convert the images with sg3-dataset)" if got is None else ""
        )
        raise ValueError(f"{url}: format is {got!r}, expected {INDEX_FORMAT!r}{hint}")
    for key in ("resolution", "channels", "count", "labels", "num_classes", "class_names", "shards"):
        if key not in index:
            raise ValueError(f"{url}: index lacks the key {key!r}")
    return index


@dataclass
class ShardList:
    """Resolved shard URLs.

    Attributes:
        urls: Shard URLs in canonical order.
        counts: Samples per shard (from the index) or None when unknown.
        index: The parsed dataset.json when the shards come from one, else None.
        name: A short dataset name (index folder name or URL stem).
        indexes: (location, parsed dataset.json) of every index the shards come from (several for a list
            of datasets or a glob over several folders), for shape checks.
    """

    urls: list[str]
    counts: list[int] | None
    index: dict | None
    name: str
    indexes: list[tuple[str, dict]] = field(default_factory=list)


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


def _from_index(index_url: str) -> ShardList:
    index = read_index(index_url)
    base = index_url.rsplit("/", 1)[0] if "/" in index_url else "."
    urls = [f"{base}/{s['name']}" for s in index["shards"]]
    if not _is_remote(index_url):
        missing = [u for u in urls if not os.path.isfile(u)]
        if missing:
            raise ValueError(
                f"{index_url} lists {len(missing)} shard(s) that do not exist (first: {missing[0]})"
            )
    name = (
        os.path.basename(os.path.dirname(os.path.abspath(index_url))) if not _is_remote(index_url) else base
    )
    counts = [int(s["count"]) for s in index["shards"]]
    return ShardList(urls, counts, index, name or "dataset", [(index_url, index)])


def _sibling_indexes(urls: list[str]) -> tuple[list[int] | None, list[tuple[str, dict]]]:
    """Counts and indexes for local shards listed by the dataset.json of their folder (one or several).

    Returns (None, []) unless every shard is local and listed by the dataset.json beside it.
    """
    if not urls or any(_is_remote(u) for u in urls):
        return None, []
    indexes: dict[str, dict] = {}  # folder -> its index, in the order the shards meet them
    for u in urls:
        folder = os.path.dirname(os.path.abspath(u))
        if folder not in indexes:
            path = os.path.join(folder, INDEX_NAME)
            try:
                indexes[folder] = read_index(path) if os.path.isfile(path) else None
            except ValueError:
                indexes[folder] = None
            if indexes[folder] is None:
                return None, []
    tables = {f: {s["name"]: int(s["count"]) for s in idx["shards"]} for f, idx in indexes.items()}
    counts = []
    for u in urls:
        count = tables[os.path.dirname(os.path.abspath(u))].get(os.path.basename(u))
        if count is None:
            return None, []
        counts.append(count)
    return counts, [(os.path.join(f, INDEX_NAME), idx) for f, idx in indexes.items()]


def _with_sibling_indexes(urls: list[str], name: str) -> ShardList:
    counts, indexes = _sibling_indexes(urls)
    return ShardList(urls, counts, indexes[0][1] if len(indexes) == 1 else None, name, indexes)


def resolve_urls(urls: str | list[str]) -> ShardList:
    """Turns a dataset location into shard URLs.

    Args:
        urls: A folder (its dataset.json, else its ``*.tar`` sorted), a dataset.json path or URL, a glob
            (``/data/ffhq/*.tar``), a brace pattern (``/data/shard-{000000..000009}.tar``, several joined
            with ``::``), any URL webdataset opens (``pipe:aws s3 cp s3://b/x.tar -``, ``https://...``),
            or a list of those.

    Returns:
        The :class:`ShardList`.
    """
    if not isinstance(urls, str) and isinstance(urls, Sequence):  # list, tuple, OmegaConf ListConfig
        urls = [str(u) for u in urls]
        if len(urls) == 1:
            return resolve_urls(urls[0])
        lists = [resolve_urls(u) for u in urls]
        flat = [u for sl in lists for u in sl.urls]
        counts = None if any(sl.counts is None for sl in lists) else [c for sl in lists for c in sl.counts]
        indexes = [x for sl in lists for x in sl.indexes]
        return ShardList(flat, counts, None, lists[0].name, indexes)
    if not isinstance(urls, str) or not urls:
        raise ValueError(f"urls={urls!r} must be a non-empty string or list of strings")
    if not _is_remote(urls):
        urls = os.path.expanduser(urls)
        if os.path.isdir(urls):
            if os.path.isfile(os.path.join(urls, INDEX_NAME)):
                return _from_index(os.path.join(urls, INDEX_NAME))
            found = sorted(glob.glob(os.path.join(urls, "*.tar")))
            if not found:
                raise ValueError(
                    f"folder {urls!r} holds neither {INDEX_NAME} nor *.tar shards "
                    "(a folder of images? convert it with sg3-dataset --source FOLDER --dest DIR)"
                )
            return _with_sibling_indexes(found, os.path.basename(os.path.abspath(urls)))
    if urls.endswith(".json"):
        return _from_index(urls)
    if not _is_remote(urls) and any(ch in urls for ch in _GLOB_CHARS):
        found = sorted(glob.glob(urls))
        if not found:
            raise ValueError(f"glob {urls!r} matches no files")
    else:
        found = expand_urls(urls)
        local_missing = [u for u in found if not _is_remote(u) and not os.path.isfile(u)]
        if found == [urls] and local_missing:
            raise ValueError(
                f"urls {urls!r} does not exist (expected a folder, a dataset.json, a shard .tar, a glob, "
                "a brace pattern or a URL)"
            )
        if local_missing:
            raise ValueError(f"shard {local_missing[0]!r} (from {urls!r}) does not exist")
    stem = os.path.basename(found[0]).split("-")[0].split(".")[0] or "dataset"
    return _with_sibling_indexes(found, stem)


def iter_shard_samples(
    url: str,
    keep: Callable[[int], bool] | None = None,
    stop: int | None = None,
    on_error: Callable[[str, str, Exception], None] | None = None,
    expect: int | None = None,
) -> Iterator[tuple[int, dict]]:
    """Streams the samples of one tar shard.

    Members are grouped into samples by key (name up to the first dot of the file name). Data of
    samples rejected by ``keep`` is skipped without being kept in memory.

    Args:
        url: Shard path or URL (anything webdataset's gopen opens).
        keep: Predicate on the sample position in the shard (0-based); None keeps all.
        stop: Stop before this sample position; None reads to the end.
        on_error: Called as ``on_error(kind, where, exc)`` with kind ``'unreadable_shard'`` or
            ``'truncated_shard'`` when the shard cannot be opened or ends early; it may raise. None raises.
        expect: Number of samples the shard should hold (from the index); a shard that ends cleanly but
            earlier (cut at a tar block boundary) is reported as truncated. None skips this check.

    Yields:
        (position, sample) where sample maps ``'__key__'``, ``'__url__'`` and each extension to bytes.
    """
    try:
        stream = gopen(url, bufsize=_READ_BUFFER)
    except Exception as exc:  # missing file, failing pipe command, HTTP error
        if on_error is None:
            raise
        on_error("unreadable_shard", url, exc)
        return
    pos, key, sample = -1, None, None
    try:
        tar = TarReader(stream, _seekable(stream))
        with stream:
            for name, _ in tar.members():
                dirname, _, base = name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not dot:
                    continue
                prefix = f"{dirname}/{stem}" if dirname else stem
                if prefix != key:
                    if sample is not None:
                        yield pos, sample
                    pos, key = pos + 1, prefix
                    if stop is not None and pos >= stop:
                        return
                    sample = {"__key__": prefix, "__url__": url} if keep is None or keep(pos) else None
                if sample is not None:
                    sample[ext] = tar.read()
            if sample is not None:
                yield pos, sample
        if expect is not None and pos + 1 < expect:
            raise EOFError(f"shard ended after {pos + 1} of {expect} samples")
    except (EOFError, OSError, ValueError) as exc:
        if on_error is None:
            raise
        on_error(
            "truncated_shard",
            f"{url} after sample {pos}" if pos >= 0 else f"{url} before its first sample",
            exc,
        )
