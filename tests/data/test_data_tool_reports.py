"""What sg3-dataset and the data module tell the user: warnings above the bar, file names, upscaling."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from sg3.data.dataset_tool import ConvertOptions, convert, main
from sg3.data.sources import open_source


def _png(value: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _sample_jsons(dest: str) -> list[bytes]:
    with tarfile.open(os.path.join(dest, "shard-000000.tar")) as tar:
        return [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".json")]


def test_warnings_are_whole_lines_above_the_progress_bar(tmp_path, capsys):
    """A skipped file's warning was written after the bar's text on the bar's own line (garbled)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"{i}.png").write_bytes(_png(10 * i))
    (src / "1broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    handler = logging.StreamHandler(sys.stderr)  # what basicConfig installs outside pytest
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        code = main(["--source", str(src), "--dest", str(tmp_path / "d"), "--resolution", "16"])
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert code == 0 and "img/s" in err  # the bar was drawn
    warned = [line for line in err.split("\n") if "skipped 1broken.png" in line]
    assert len(warned) == 1
    assert warned[0].rsplit("\r", 1)[-1].startswith("WARNING skipped 1broken.png: unreadable")


def test_file_names_that_are_not_utf8_are_escaped(tmp_path, capsys, caplog):
    """b'\\xff.png' became the lone surrogate '\\udcff' in the sample json (not UTF-8) and crashed the
    summary print when such a file was skipped."""
    if sys.platform != "linux":
        pytest.skip("file names of arbitrary bytes need a Linux file system")
    src = os.path.join(os.fsencode(tmp_path), b"src")
    os.makedirs(os.path.join(src, b"cl\xe9"))
    open(os.path.join(src, b"cl\xe9", b"\xff.png"), "wb").write(_png(50))
    open(os.path.join(src, b"cl\xe9", b"ok.png"), "wb").write(_png(60))
    open(os.path.join(src, b"cl\xe9", b"\xfe.png"), "wb").write(b"\x89PNG\r\n\x1a\nnot really")
    with caplog.at_level(logging.WARNING, logger="sg3.data"):
        items = open_source(os.fsdecode(src), "folders")
    assert [it.name for it in items] == ["cl\\xe9/\\xfe.png", "cl\\xe9/\\xff.png", "cl\\xe9/ok.png"]
    assert [it.label for it in items] == ["cl\\xe9"] * 3
    notes = [r.getMessage() for r in caplog.records if "not valid UTF-8" in r.getMessage()]
    assert len(notes) == 1 and "3 file name(s)" in notes[0] and "(first: cl\\xe9/\\xfe.png)" in notes[0]
    dest = str(tmp_path / "d")
    summary = convert(items, dest, ConvertOptions(progress=False))
    sources = sorted(json.loads(raw.decode("utf-8", "strict"))["source"] for raw in _sample_jsons(dest))
    assert summary.written == 2 and sources == ["cl\\xe9/\\xff.png", "cl\\xe9/ok.png"]
    assert summary.index["class_names"] == ["cl\\xe9"]
    open(os.path.join(dest, "dataset.json"), "rb").read().decode("utf-8", "strict")
    code = main(["--source", os.fsdecode(src), "--dest", str(tmp_path / "e"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "skipped 1 (unreadable), e.g. cl\\xe9/\\xfe.png" in out


def test_images_smaller_than_the_resolution_are_upscaled_with_a_warning(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png(10, size=4))
    (src / "b.png").write_bytes(_png(20, size=8))  # the target size: not upscaled
    (src / "c.png").write_bytes(_png(30, size=16))
    Image.fromarray(np.full((4, 12, 3), 40, np.uint8)).save(src / "d.png")  # crop 4x4: upscaled
    opts = ConvertOptions(resolution=8, transform="center-crop", progress=False)
    with caplog.at_level(logging.WARNING, logger="sg3.data"):
        summary = convert(open_source(str(src)), str(tmp_path / "d"), opts)
    assert summary.written == 4 and summary.upscaled == 2
    notes = [r.getMessage() for r in caplog.records if "upscaled" in r.getMessage()]
    assert notes == [
        "upscaled 2 image(s) smaller than 8x8 (first: a.png, 4x4): their detail is interpolated, not real; "
        "pass a smaller --resolution or leave them out"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sg3.data"):
        opts.resolution = 4
        assert convert(open_source(str(src)), str(tmp_path / "e"), opts).upscaled == 0
    assert not [r for r in caplog.records if "upscaled" in r.getMessage()]


def test_a_single_shard_with_the_wrong_resolution_is_named(make_shards):
    """The message said 'shard (dataset.json) has ...' for data.urls=.../shard-000000.tar."""
    from sg3.data.datamodule import ShardDataModule

    dest = make_shards(4, shard_size=10)
    shard = os.path.join(dest, "shard-000000.tar")
    with pytest.raises(ValueError) as info:
        ShardDataModule(shard, batch_size=2, num_workers=0, resolution=64)
    msg = str(info.value)
    assert msg.startswith(f"{shard} (index {os.path.join(dest, 'dataset.json')}) has 8x8 images"), msg
    with pytest.raises(ValueError, match=r"^\S+/dataset.json has 8x8 images .* expects 64x64"):
        ShardDataModule(os.path.join(dest, "dataset.json"), batch_size=2, num_workers=0, resolution=64)
