"""The lean tar reader: same members and bytes as tarfile for every tar dialect, errors on damage."""

from __future__ import annotations

import io
import tarfile

import pytest

from sg3.data.tarstream import TarReader


class _Unseekable(io.RawIOBase):
    """A pipe-like stream: read only."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self._buf.readinto(b)


def _tar(fmt: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    files = [
        ("a/000.png", b"\x89PNG" + bytes(range(256)) * 3),
        ("a/000.cls", b"7"),
        ("empty.json", b""),
        ("d" * 90 + "/" + "n" * 80 + ".png", b"long ustar prefix"),
        ("x" * 150 + ".jpg", b"long name beyond the prefix split"),
        ("ünïcode/001.png", bytes(1025)),
    ]
    if fmt == tarfile.USTAR_FORMAT:
        files = [f for f in files if len(f[0].split("/")[-1]) <= 100 and f[0].isascii()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        d = tarfile.TarInfo("dir")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "a/000.png"
        tar.addfile(link)
    return buf.getvalue(), files


def _read_all(data: bytes, seekable: bool, read_every: int = 1) -> list[tuple[str, bytes | None]]:
    stream = io.BytesIO(data) if seekable else io.BufferedReader(_Unseekable(data), 4096)
    reader, out = TarReader(stream, seekable), []
    for i, (name, size) in enumerate(reader.members()):
        out.append((name, reader.read() if i % read_every == 0 else size))
    return out


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("seekable", [True, False])
def test_same_members_as_tarfile(fmt, seekable):
    data, files = _tar(fmt)
    assert _read_all(data, seekable) == files
    skipped = _read_all(data, seekable, read_every=2)  # unread members are skipped, sizes still right
    assert skipped == [(n, d if i % 2 == 0 else len(d)) for i, (n, d) in enumerate(files)]


@pytest.mark.parametrize("seekable", [True, False])
def test_truncation_and_damage_raise(seekable):
    data, files = _tar(tarfile.GNU_FORMAT)
    end = len(data.rstrip(b"\0"))
    end += -end % 512  # the end of the last member's padded data, before the end-of-archive blocks
    for cut, match in ((end, "end-of-archive marker is missing"), (end - 1100, "inside member data"),
                       (end + 100, "inside a header")):  # fmt: skip
        with pytest.raises(EOFError, match=match):
            _read_all(data[:cut], seekable)
    assert _read_all(data[: end + 512], seekable) == files  # one zero block ends the archive
    bad = bytearray(data)
    bad[2048 + 10] ^= 0x01  # name of the a/000.cls header (after dir, a/000.png header and 1024 data)
    with pytest.raises(ValueError, match="checksum mismatch"):
        _read_all(bytes(bad), seekable)
    reader = TarReader(io.BytesIO(data), True)
    next(reader.members())
    reader.read()
    with pytest.raises(RuntimeError, match="twice"):
        reader.read()
