"""Defects found walking docs/data.md on awkward real-world sources (session 10): each test failed before."""

from __future__ import annotations

import io
import json
import logging
import zipfile

import numpy as np
import pytest
from PIL import Image

from sg3.data.dataset_tool import ConvertOptions, convert, main
from sg3.data.sources import open_source
from sg3.data.transforms import convert_channels


def _png(value: int, size: int = 8, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), value if mode != "RGB" else (value,) * 3).save(buf, format="PNG")
    return buf.getvalue()


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main([*args, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_16_bit_images_are_scaled_by_their_bit_depth_not_by_their_content():
    """A dark 16-bit image (max 204 of 65535) came out with max 204 of 255: the /257 scale was applied only
    when some pixel exceeded 255, so images of one dataset were scaled differently."""
    dark = Image.fromarray(np.full((4, 4), 204 * 257, np.uint16))  # 16-bit gray, mode I;16
    darker = Image.fromarray(np.full((4, 4), 204, np.uint16))
    assert dark.mode.startswith("I;16") and darker.mode.startswith("I;16")
    assert np.asarray(convert_channels(dark, "gray")).max() == 204
    assert np.asarray(convert_channels(darker, "gray")).max() == 1  # 204 / 257 rounds to 1


def _zip_with_legacy_utf8_names(path, names: list[str]) -> None:
    """A zip as Info-ZIP writes it on Linux: UTF-8 name bytes without the zip's UTF-8 flag."""
    placeholders = {}
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(names):
            raw = name.encode("utf-8")
            ph = f"{i:0{len(raw) - 4}d}.png".encode("ascii")  # ASCII name of the same byte length
            placeholders[ph] = raw
            zf.writestr(ph.decode("ascii"), _png(10 + 10 * i))
    data = open(path, "rb").read()
    for ph, raw in placeholders.items():
        data = data.replace(ph, raw)
    open(path, "wb").write(data)


def test_zip_names_written_without_the_utf8_flag_are_read_as_utf8(tmp_path):
    """Such names were decoded as cp437 ('with space ├╝.png'): wrong names in the shards' json and labels
    in dataset.json that no longer matched."""
    src = tmp_path / "src.zip"
    _zip_with_legacy_utf8_names(src, ["日本.png", "with space ü.png"])
    assert zipfile.ZipFile(src).infolist()[0].flag_bits & 0x800 == 0
    items = open_source(str(src), "none")
    assert [it.name for it in items] == ["with space ü.png", "日本.png"]
    assert np.asarray(items[1].open())[0, 0, 0] == 10


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (5, r'"labels" must be a list of \[file name, integer\] pairs or null, got int'),
        ({"a.png": 1}, r'"labels" must be a list .* got dict'),
        ([["a.png", -1], ["b.png", 0]], r"label of 'a.png' is -1; class labels must be integers >= 0"),
        ([["a.png", 0], ["b.png", 1], ["a.png", 1]], r"'a.png' is labelled twice, 0 and 1"),
    ],
)
def test_bad_label_tables_are_refused_naming_the_entry(tmp_path, capsys, labels, message):
    """{"labels": 5} raised a TypeError traceback; a dict was read key by key; -1 became class 0 (shifting
    every official id by one); a file listed twice took its last label silently."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png(10))
    (src / "b.png").write_bytes(_png(20))
    (src / "dataset.json").write_text(json.dumps({"labels": labels}))
    code, out = _run(capsys, "--source", str(src), "--dest", str(tmp_path / "d"))
    assert code == 2 and "Traceback" not in out
    assert "dataset.json" in out
    import re

    assert re.search(message, out), out


def test_the_same_label_listed_twice_is_accepted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png(10))
    (src / "dataset.json").write_text(json.dumps({"labels": [["a.png", 1], ["a.png", 1]]}))
    assert [it.label for it in open_source(str(src))] == ["1"]


def test_labels_for_files_not_in_the_source_are_reported(tmp_path, caplog):
    """Labels for images that are missing from the source were dropped without a word."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png(10))
    (src / "dataset.json").write_text(json.dumps({"labels": [["a.png", 0], ["gone.png", 1], ["x.png", 1]]}))
    with caplog.at_level(logging.WARNING, logger="sg3.data.sources"):
        items = open_source(str(src))
    assert [it.label for it in items] == ["0"]
    assert "2 file(s) that are not images of the source (first: 'gone.png')" in caplog.text


def test_destination_that_is_a_file_is_named_as_such(tmp_path, capsys):
    """The error was '[Errno 17] File exists: ...', which does not say what is wrong."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png(10))
    (tmp_path / "out").write_bytes(b"x")
    code, out = _run(capsys, "--source", str(src), "--dest", str(tmp_path / "out"))
    assert code == 2 and f"destination {str(tmp_path / 'out')!r} is a file, not a folder" in out


def _dataset(tmp_path, name: str, resolution: int, channels: str = "rgb") -> str:
    src = tmp_path / f"src-{name}"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.png").write_bytes(_png(10 + i, size=16))
    dest = str(tmp_path / name)
    opts = ConvertOptions(resolution=resolution, channels=channels, shard_size=2, progress=False)
    convert(open_source(str(src), "none"), dest, opts)
    return dest


def test_a_list_of_datasets_with_different_shapes_is_refused_at_construction(tmp_path):
    """[32px index, 64px index] streamed the first and counted every sample of the second as wrong_shape
    (half the data silently gone); an RGB + gray list turned the gray images into RGB."""
    from sg3.data.datamodule import ShardDataModule

    a, b, g = _dataset(tmp_path, "a", 8), _dataset(tmp_path, "b", 16), _dataset(tmp_path, "g", 8, "gray")
    with pytest.raises(ValueError, match=r"b/dataset.json has 16x16 images with 3 channel\(s\), but .*a"):
        ShardDataModule([a, b], batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match=r"g/dataset.json has 8x8 images with 1 channel\(s\)"):
        ShardDataModule([f"{a}/dataset.json", g], batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match=r"b/dataset.json has 16x16 .* but the model expects 8x8"):
        ShardDataModule([a, b], batch_size=2, num_workers=0, resolution=8)
    dm = ShardDataModule([a, _dataset(tmp_path, "c", 8)], batch_size=2, num_workers=0, resolution=8)
    assert sum(int(x.shape[0]) for x, _ in dm.exactly_once_loader(2)) == 8
    assert dm.resolution == 8 and dm.num_channels == 3


def test_a_glob_over_several_folders_uses_each_folders_index(tmp_path):
    """A glob over two dataset folders had no counts and no shape check: the 16px shards were counted as
    wrong_shape sample by sample while training went on."""
    from sg3.data.datamodule import ShardDataModule
    from sg3.data.shards import resolve_urls

    _dataset(tmp_path, "a", 8), _dataset(tmp_path, "b", 16)
    sl = resolve_urls(str(tmp_path / "[ab]" / "shard-*.tar"))
    assert sl.counts == [2, 2, 2, 2]
    with pytest.raises(ValueError, match=r"b/dataset.json has 16x16"):
        ShardDataModule(str(tmp_path / "[ab]" / "shard-*.tar"), batch_size=2, num_workers=0)


def test_symlinked_folders_in_the_source_are_followed_once(tmp_path):
    """A class folder linked into the source (ln -s /data/cats src/cats) was silently left out; a link
    loop must not recurse forever."""
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    (src / "dogs").mkdir(parents=True)
    elsewhere.mkdir()
    (src / "dogs" / "a.png").write_bytes(_png(10))
    (elsewhere / "b.png").write_bytes(_png(20))
    (src / "cats").symlink_to(elsewhere, target_is_directory=True)
    (src / "dogs" / "loop").symlink_to(src, target_is_directory=True)
    items = open_source(str(src), "folders")
    assert [(it.name, it.label) for it in items] == [("cats/b.png", "cats"), ("dogs/a.png", "dogs")]
    assert np.asarray(items[0].open())[0, 0, 0] == 20


def test_exif_orientation_of_photos_is_applied(tmp_path):
    """A phone photo stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view) was
    converted as stored, i.e. lying on its side."""
    src = tmp_path / "src"
    src.mkdir()
    arr = np.zeros((16, 32, 3), np.uint8)  # stored 32 wide x 16 high, left half bright
    arr[:, :16] = 250
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(src / "photo.jpg", quality=95, exif=exif)
    dest = str(tmp_path / "d")
    opts = ConvertOptions(resolution=16, transform="center-crop", progress=False)
    summary = convert(open_source(str(src), "none"), dest, opts)
    assert summary.written == 1
    import tarfile

    with tarfile.open(f"{dest}/shard-000000.tar") as tar:
        img = np.asarray(Image.open(io.BytesIO(tar.extractfile("00000000.png").read())))
        meta = json.loads(tar.extractfile("00000000.json").read())
    # upright the image is 16 wide x 32 high with the bright half on top; the centre crop is rows 8..24
    assert meta["size"] == [16, 32]
    assert img[:6].mean() > 200 and img[-6:].mean() < 50


def test_a_missing_path_and_an_empty_shard_are_named_plainly(tmp_path):
    """'shard 'x' (from 'x') does not exist' for a plain missing path, and 'after sample -1' for a shard
    that broke before its first sample."""
    from sg3.data.shards import iter_shard_samples, resolve_urls

    with pytest.raises(
        ValueError, match=r"^urls '.*nope' does not exist \(expected a folder, a dataset.json"
    ):
        resolve_urls(str(tmp_path / "nope"))
    (tmp_path / "empty.tar").write_bytes(b"")
    errors = []
    list(iter_shard_samples(str(tmp_path / "empty.tar"), on_error=lambda *a: errors.append(a)))
    assert errors[0][1] == f"{tmp_path / 'empty.tar'} before its first sample"


def test_labels_over_a_list_of_datasets_say_why_they_are_refused(tmp_path):
    """The message said the urls had no dataset.json index, when both datasets had one."""
    from sg3.data.datamodule import ShardDataModule

    a, b = _dataset(tmp_path, "a", 8), _dataset(tmp_path, "b", 8)
    with pytest.raises(ValueError, match=r"use_labels=True needs a single dataset .* 2 datasets"):
        ShardDataModule([a, b], batch_size=2, num_workers=0, use_labels=True)
