"""sg3-dataset: conversion, labels, formats, determinism, refusals and atomic shards."""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from sg3.data.dataset_tool import ConvertOptions, convert, main, parse_size
from sg3.data.sources import SourceItem, open_source
from sg3.data.transforms import parse_resolution, transform_image


def _opts(**kw) -> ConvertOptions:
    kw.setdefault("progress", False)
    return ConvertOptions(**kw)


def _samples(dest: str) -> list[dict]:
    """All samples of all shards, in shard order: {'key', ext: bytes}."""
    out = []
    for path in sorted(glob.glob(os.path.join(dest, "*.tar"))):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                if not out or out[-1]["key"] != key:
                    out.append({"key": key})
                out[-1][ext] = tar.extractfile(m).read()
    return out


def test_folder_to_shards_index_and_content(make_folder, tmp_path, capsys):
    src = make_folder(10, classes=["cat", "dog"])
    dest = str(tmp_path / "out")
    assert main(["--source", src, "--dest", dest, "--resolution", "8", "--transform", "center-crop",
                 "--labels", "folders", "--shard-size", "4", "--no-progress"]) == 0  # fmt: skip
    assert "wrote 10 images (8x8, 3 channel(s)) into 3 shard(s)" in capsys.readouterr().out
    index = json.load(open(os.path.join(dest, "dataset.json")))
    assert index["format"] == "sg3-shards" and index["version"] == 1
    assert (index["resolution"], index["channels"], index["count"]) == (8, 3, 10)
    assert index["labels"] is True and index["num_classes"] == 2 and index["class_names"] == ["cat", "dog"]
    assert index["class_counts"] == [5, 5]
    assert [s["count"] for s in index["shards"]] == [4, 4, 2]
    assert [s["name"] for s in index["shards"]] == [f"shard-{i:06d}.tar" for i in range(3)]
    for s in index["shards"]:
        data = open(os.path.join(dest, s["name"]), "rb").read()
        assert len(data) == s["bytes"] and hashlib.sha256(data).hexdigest() == s["sha256"]
    samples = _samples(dest)
    assert [s["key"] for s in samples] == [f"{i:08d}" for i in range(10)]
    values = set()
    for s in samples:
        meta = json.loads(s["json"])
        img = np.asarray(Image.open(io.BytesIO(s["png"])))
        assert img.shape == (8, 8, 3) and meta["size"] == [20, 16]
        value = int(img[0, 0, 0])
        assert (img == value).all()
        i = (value - 10) // 5
        assert meta["source"] == f"{['cat', 'dog'][i % 2]}/img{i:03d}.png"
        assert int(s["cls"]) == i % 2 and meta["class_name"] == ["cat", "dog"][i % 2]
        values.add(value)
    assert values == {10 + 5 * i for i in range(10)}
    assert [json.loads(s["json"])["source"] for s in samples] != sorted(
        json.loads(s["json"])["source"] for s in samples
    )


def test_official_zip_with_dataset_json_labels(tmp_path):
    zpath = str(tmp_path / "official.zip")
    labels = []
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(6):
            name = f"00000/img{i:08d}.png"
            buf = io.BytesIO()
            Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(buf, format="PNG", compress_level=0)
            zf.writestr(name, buf.getvalue())
            labels.append([name, [0, 2, 5][i % 3]])
        zf.writestr("dataset.json", json.dumps({"labels": labels}))
    summary = convert(open_source(zpath), str(tmp_path / "out"), _opts())
    assert summary.index["class_names"] == ["0", "2", "5"] and summary.index["class_counts"] == [2, 2, 2]
    for s in _samples(str(tmp_path / "out")):
        i = int(np.asarray(Image.open(io.BytesIO(s["png"])))[0, 0, 0]) // 10
        assert int(s["cls"]) == i % 3
        assert json.loads(s["json"])["class_name"] == str([0, 2, 5][i % 3])


def test_dataset_json_missing_labels_and_flat_folders_refused(make_folder):
    src = make_folder(3)
    json.dump(
        {"labels": [["img000.png", 0], ["img001.png", 1]]}, open(os.path.join(src, "dataset.json"), "w")
    )
    with pytest.raises(ValueError, match=r"no label for 1 image\(s\) \(first: 'img002.png'\)"):
        open_source(src, "dataset.json")
    with pytest.raises(ValueError, match="not inside a class sub-folder"):
        open_source(src, "folders")
    assert [it.label for it in open_source(src, "none")] == [None] * 3


def test_corrupt_image_skipped_counted_and_strict(make_folder, tmp_path, capsys):
    src = make_folder(4)
    open(os.path.join(src, "broken.png"), "wb").write(b"\x89PNG\r\n\x1a\nnot really")
    summary = convert(open_source(src), str(tmp_path / "a"), _opts(resolution=8, transform="center-crop"))
    assert summary.written == 4 and summary.skipped == {"unreadable": 1}
    assert summary.skipped_examples["unreadable"] == ["broken.png"] and summary.index["skipped"] == {
        "unreadable": 1
    }
    code = main(["--source", src, "--dest", str(tmp_path / "b"), "--resolution", "8",
                 "--transform", "center-crop", "--strict", "--no-progress"])  # fmt: skip
    assert code == 2 and "broken.png: unreadable" in capsys.readouterr().err
    assert not glob.glob(str(tmp_path / "b" / "*.tar")) and not os.path.exists(
        tmp_path / "b" / "dataset.json"
    )


def test_deterministic_for_seed_and_workers(make_folder, tmp_path):
    items = open_source(make_folder(40))

    def shard_bytes(name, seed, workers=1):
        opts = _opts(resolution=8, transform="center-crop", shard_size=16, seed=seed, workers=workers)
        convert(items * 2, str(tmp_path / name), opts)  # 80 images: enough for the worker pool
        return [open(p, "rb").read() for p in sorted(glob.glob(str(tmp_path / name / "*.tar")))] + [
            open(tmp_path / name / "dataset.json", "rb").read()
        ]

    first, again, other = shard_bytes("a", 3), shard_bytes("b", 3), shard_bytes("c", 4)
    assert first == again and len(first) == 6
    assert first[:5] != other[:5]
    assert shard_bytes("d", 3, workers=2) == first


def test_refusals(make_folder, tmp_path, image_writer):
    src = make_folder(2, size=(20, 16))
    with pytest.raises(
        ValueError, match=r"img00[01].png: image is 20x16 \(not square\); pass --transform center-crop"
    ):
        convert(open_source(src), str(tmp_path / "o1"), _opts(resolution=8))
    mixed = tmp_path / "mixed"
    image_writer(str(mixed / "a.png"), 50, (16, 16))
    image_writer(str(mixed / "b.png"), 60, (32, 32))
    with pytest.raises(ValueError, match=r"mixed resolution: .* is 32x32 .* but .* is 16x16"):
        convert(open_source(str(mixed)), str(tmp_path / "o2"), _opts(seed=1))
    with pytest.raises(ValueError, match="not a power of two"):
        convert([SourceItem("x.png", lambda: Image.new("RGB", (12, 12)))], str(tmp_path / "o3"), _opts())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="does not exist"):
        open_source(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="power of two"):
        parse_resolution("48")
    with pytest.raises(ValueError, match="cannot store an alpha channel"):
        convert(open_source(src), str(tmp_path / "o4"), _opts(channels="rgba", image_format="jpg"))


def test_existing_dataset_needs_overwrite(make_folder, tmp_path):
    items = open_source(make_folder(6))
    dest = str(tmp_path / "out")
    convert(items, dest, _opts(resolution=8, transform="center-crop", shard_size=2))
    assert len(glob.glob(os.path.join(dest, "*.tar"))) == 3
    with pytest.raises(FileExistsError, match="already holds a dataset .* pass --overwrite"):
        convert(items, dest, _opts(resolution=8, transform="center-crop"))
    convert(items, dest, _opts(resolution=8, transform="center-crop", overwrite=True))
    assert sorted(os.listdir(dest)) == ["dataset.json", "shard-000000.tar"]


def test_interrupted_run_leaves_only_complete_shards(make_folder, tmp_path):
    items = open_source(make_folder(8))

    def interrupt():
        raise KeyboardInterrupt

    order = np.random.RandomState(0).permutation(9)
    items.append(SourceItem("zzz.png", interrupt))  # index 8, reached at position order.tolist().index(8)
    dest = str(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        convert(items, dest, _opts(resolution=8, transform="center-crop", shard_size=2))
    reached = order.tolist().index(8)
    names = sorted(os.listdir(dest))
    # 4 samples written: shard 0 complete, shard 1 (samples 2-3) was still open and is gone (no temp file)
    assert reached == 4 and names == ["shard-000000.tar"]
    for name in names:
        with tarfile.open(os.path.join(dest, name)) as tar:
            assert len(tar.getmembers()) == 4  # 2 samples x (png, json)


def test_transforms_channels_and_jpeg(tmp_path, image_writer):
    wide = Image.fromarray(np.full((40, 64, 3), 200, np.uint8))
    out = np.asarray(transform_image(wide, "center-crop-wide", (32, 16)))
    assert out.shape == (32, 32, 3)
    assert (out[:8] == 0).all() and (out[24:] == 0).all() and (out[8:24] == 200).all()
    gray = tmp_path / "gray"
    image_writer(str(gray / "a.png"), 77, (8, 8), mode="L")
    image_writer(str(gray / "b.png"), 99, (8, 8), mode="RGBA")
    s = convert(open_source(str(gray)), str(tmp_path / "g"), _opts(channels="gray"))
    assert s.index["channels"] == 1
    s = convert(open_source(str(gray)), str(tmp_path / "j"), _opts(image_format="jpg", quality=90))
    assert s.index["channels"] == 3 and s.index["image_format"] == "jpg"
    for sample in _samples(str(tmp_path / "j")):
        img = np.asarray(Image.open(io.BytesIO(sample["jpg"])))
        assert img.shape == (8, 8, 3) and abs(int(img[4, 4, 0]) - int(img[4, 4, 1])) <= 2
    with pytest.raises(ValueError, match=r"mixed channel count"):
        convert(open_source(str(gray)), str(tmp_path / "k"), _opts(channels="keep"))


def test_parse_size():
    assert parse_size("512M") == 512 << 20 and parse_size("1G") == 1 << 30 and parse_size("1e6") == 10**6
    with pytest.raises(ValueError, match="not a number"):
        parse_size("lots")


def test_max_images_is_a_seeded_subset(make_folder, tmp_path):
    items = open_source(make_folder(10))
    a = convert(items, str(tmp_path / "a"), _opts(resolution=8, transform="center-crop", max_images=4))
    b = convert(
        items, str(tmp_path / "b"), _opts(resolution=8, transform="center-crop", max_images=4, seed=9)
    )
    assert a.index["count"] == 4 and b.index["count"] == 4
    names = [{json.loads(s["json"])["source"] for s in _samples(str(tmp_path / d))} for d in "ab"]
    assert len(names[0]) == 4 and names[0] != names[1]
