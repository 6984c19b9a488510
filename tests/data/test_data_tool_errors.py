"""sg3-dataset and the data module on damaged input: failures name the file, or are counted and skipped."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from sg3.data.dataset_tool import main


def _png(value: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip_with_bad_crc(path: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, value in (("a.png", 10), ("b.png", 20), ("c.png", 30)):
            zf.writestr(name, _png(value))
    data = bytearray(open(path, "rb").read())
    at = data.find(b"IDAT", data.find(b"b.png"))
    data[at + 10] ^= 0xFF  # damage b.png's stored bytes: its CRC-32 no longer matches
    open(path, "wb").write(bytes(data))


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main([*args, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_zip_member_with_bad_crc_is_skipped_or_named_with_strict(tmp_path, capsys):
    src = str(tmp_path / "src.zip")
    _zip_with_bad_crc(src)
    code, out = _run(capsys, "--source", src, "--dest", str(tmp_path / "a"))
    assert code == 0 and "skipped 1 (unreadable), e.g. b.png" in out
    code, out = _run(capsys, "--source", src, "--dest", str(tmp_path / "b"), "--strict")
    assert code == 2 and "b.png: unreadable" in out and "Traceback" not in out


def test_dangling_link_in_the_source_folder_is_skipped(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png(10))
    os.symlink(str(tmp_path / "missing.png"), str(src / "dead.png"))
    code, out = _run(capsys, "--source", str(src), "--dest", str(tmp_path / "a"))
    assert code == 0 and "skipped 1 (unreadable), e.g. dead.png" in out
    code, out = _run(capsys, "--source", str(src), "--dest", str(tmp_path / "b"), "--strict")
    assert code == 2 and "dead.png: unreadable" in out


def test_undecodable_dataset_json_is_named(tmp_path, capsys):
    src = str(tmp_path / "src.zip")
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("a.png", _png(10))
        zf.writestr("dataset.json", b"\xff\xfe{")
    code, out = _run(capsys, "--source", src, "--dest", str(tmp_path / "a"))
    assert code == 2 and "dataset.json" in out and "UTF-8" in out


def test_images_smaller_than_4_pixels_are_refused_with_the_right_reason(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (2, 2)).save(src / "a.png")
    code, out = _run(capsys, "--source", str(src), "--dest", str(tmp_path / "a"))
    assert code == 2 and "a.png: size 2x2" in out and "at least 4" in out


def test_shard_caps_are_named_by_their_flags(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png(10))
    code, out = _run(capsys, "--source", str(src), "--dest", str(tmp_path / "a"), "--shard-bytes", "10")
    assert code == 2 and "--shard-bytes" in out
    code, out = _run(capsys, "--source", str(src), "--dest", str(tmp_path / "b"), "--shard-size", "0")
    assert code == 2 and "--shard-size" in out


def test_data_module_names_a_file_that_is_not_a_shard(tmp_path):
    from sg3.data.datamodule import ShardDataModule

    (tmp_path / "a.tar").write_bytes(_png(10))  # an image renamed to .tar: no tar header
    with pytest.raises(ValueError, match=r"a\.tar"):
        ShardDataModule(str(tmp_path / "a.tar"), batch_size=2, num_workers=0).setup()
    (tmp_path / "official.zip").write_bytes(_png(10))  # an official dataset zip given to training
    with pytest.raises(ValueError, match=r"official\.zip: .*convert .* with sg3-dataset"):
        ShardDataModule(str(tmp_path / "official.zip"), batch_size=2, num_workers=0).setup()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(_png(10))
    with pytest.raises(ValueError, match=r"folder of images\? convert it with sg3-dataset"):
        ShardDataModule(str(tmp_path / "images"), batch_size=2, num_workers=0)
    with tarfile.open(tmp_path / "b.tar", "w") as tar:  # a tar whose first image is damaged
        info = tarfile.TarInfo("00000000.png")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"garbage"))
    with pytest.raises(ValueError, match=r"cannot read the first sample of .*b\.tar: cannot decode png"):
        ShardDataModule(str(tmp_path / "b.tar"), batch_size=2, num_workers=0).setup()


def test_destination_under_a_file_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png(10))
    (tmp_path / "file").write_bytes(b"x")
    code, out = _run(capsys, "--source", str(src), "--dest", str(tmp_path / "file" / "out"))
    assert code == 2 and "sg3-dataset: error:" in out and "file/out" in out and "Traceback" not in out


def test_every_extension_pil_opens_is_an_image(tmp_path):
    # Spec 5.6 / 7: image files are the names with a PIL-known extension (e.g. .ppm, .gif, .tga).
    from sg3.data.sources import open_source

    src = tmp_path / "src"
    src.mkdir()
    for name, value in (("a.ppm", 10), ("b.GIF", 20), ("c.tga", 30), ("d.png", 40)):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(src / name)
    (src / "notes.txt").write_text("not an image")
    assert [it.name for it in open_source(str(src))] == ["a.ppm", "b.GIF", "c.tga", "d.png"]


def test_zip_member_names_with_backslashes_match_their_labels(tmp_path):
    # A zip written on Windows may store '00000\\img.png'; dataset.json names use '/' (as the official
    # loader, which looks labels up with backslashes replaced).
    from sg3.data.sources import open_source

    src = str(tmp_path / "win.zip")
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("00000\\img0.png", _png(10))
        zf.writestr("00000\\img1.png", _png(20))
        zf.writestr("dataset.json", json.dumps({"labels": [["00000/img0.png", 1], ["00000/img1.png", 0]]}))
    items = open_source(src)
    assert [(it.name, it.label) for it in items] == [("00000/img0.png", "1"), ("00000/img1.png", "0")]
    assert np.asarray(items[0].open())[0, 0, 0] == 10


def test_mixed_channels_with_channels_keep_suggests_the_channels_flag_only(tmp_path, capsys):
    """`--resolution 32 --channels keep` on RGB + RGBA images said 'pass --resolution and --channels': the
    user had passed both; the fix is --channels rgb|gray|rgba."""
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (40, 40), (10, 20, 30)).save(src / "a.png")
    Image.new("RGBA", (40, 40), (10, 20, 30, 40)).save(src / "b.png")
    code, err = _run(capsys, "--source", str(src), "--dest", str(tmp_path / "d"), "--resolution", "32",
                     "--channels", "keep")  # fmt: skip
    assert code != 0 and "mixed channel count" in err and "--channels rgb" in err
    assert "--resolution" not in err


def test_help_shows_the_shard_names_without_a_doubled_percent():
    """argparse does not %-format a description: '%%06d' was printed as is."""
    from sg3.data.dataset_tool import build_parser

    assert "%%" not in build_parser().format_help()
