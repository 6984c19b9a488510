"""Image codecs: the unfiltered stored-PNG writer, the fast decode path and its fallbacks, batch assembly."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image

import sg3.data.codec as codec
from sg3.data.datamodule import ShardDataModule
from sg3.data.dataset_tool import ConvertOptions, convert
from sg3.data.shards import iter_shard_samples
from sg3.data.sources import SourceItem
from sg3.data.stream import ShardStream


def _pil_png(arr: np.ndarray, level: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def _pixels(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(5, 7, 1), (6, 9, 3), (4, 4, 4), (16, 16, 3)])
def test_stored_png_round_trip_and_fast_path(shape):
    arr = _pixels(*shape)
    data = codec.encode_png_stored(arr)
    assert len(data) > arr.size  # stored, not compressed
    pil = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(pil.reshape(shape), arr)  # any PNG reader gets the same pixels
    fast = codec._decode_png_stored(data, None)
    assert fast is not None and np.array_equal(fast, arr)
    assert np.array_equal(codec.decode_array(data, "png", shape[2]), arr)
    if shape[2] == 1:  # [H, W] and [H, W, 1] are the same gray image
        assert codec.encode_png_stored(arr[..., 0]) == data
    with pytest.raises(ValueError, match=r"expected \[H, W\] or \[H, W, C\]"):
        codec.encode_png_stored(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        codec.encode_png_stored(arr.astype(np.float32))


def _with_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """Inserts an ancillary chunk right after IHDR (8 + 25 bytes)."""
    return data[:33] + codec._chunk(kind, body) + data[33:]


def test_fast_path_declines_other_pngs_and_general_decoders_agree(monkeypatch):
    arr = _pixels(12, 12, 3, seed=1)
    stored = codec.encode_png_stored(arr)
    others = {
        "filtered level 0": _pil_png(arr, 0),
        "level 6": _pil_png(arr, 6),
        "extra chunk": _with_chunk(stored, b"gAMA", struct.pack(">I", 45455)),
    }
    assert codec._decode_png_stored(stored, 4) is None  # channel conversion goes to the general path
    for name, data in others.items():
        assert codec._decode_png_stored(data, None) is None, name
        assert np.array_equal(codec.decode_array(data, "png"), arr), name
    buf = io.BytesIO()
    Image.fromarray(arr).quantize(16).save(buf, format="PNG")  # palette: RGB without a channel request
    pal = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.array_equal(codec.decode_array(buf.getvalue(), "png"), pal)
    rgba = codec.decode_sample({"png": stored}, 4)
    gray = codec.decode_sample({"png": stored}, 1)
    assert rgba.shape == (4, 12, 12) and torch.equal(rgba[:3], torch.from_numpy(arr).permute(2, 0, 1))
    assert (rgba[3] == 255).all()
    monkeypatch.setattr(codec, "decode_image", None)  # as with a torchvision without image codecs
    for data in others.values():
        assert np.array_equal(codec.decode_array(data, "png"), arr)
    assert torch.equal(codec.decode_sample({"png": stored}, 4), rgba)
    assert (codec.decode_sample({"png": stored}, 1).int() - gray.int()).abs().max() <= 1  # gray rounding


@pytest.mark.parametrize("tv", [True, False])
def test_damaged_images_are_errors_naming_the_format(monkeypatch, tv):
    data = bytearray(codec.encode_png_stored(_pixels(8, 8, 3)))
    data[60] ^= 0xFF  # a pixel byte inside the stored IDAT: the Adler-32 check fails
    filtered = bytearray(_pil_png(_pixels(8, 8, 3), 6))
    filtered[45] ^= 0xFF  # inside the deflated IDAT (torchvision's libpng would abort the process here)
    buf = io.BytesIO()
    Image.fromarray(_pixels(32, 32, 3)).save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    if not tv:
        monkeypatch.setattr(codec, "decode_image", None)
    for bad in (bytes(data), bytes(filtered), b"\x89PNG\r\n\x1a\nbroken", bytes(data[:50])):
        with pytest.raises(ValueError, match="cannot decode png"):
            codec.decode_array(bad, "png")
    with pytest.raises(ValueError, match="cannot decode jpg"):
        codec.decode_array(jpeg[: len(jpeg) // 3], "jpg")
    assert codec.decode_array(jpeg, "jpg").shape == (32, 32, 3)
    with pytest.raises(ValueError, match="has no image"):
        codec.decode_sample({"cls": b"1"})


@pytest.mark.parametrize("level", [0, 6])
def test_batches_hold_decoded_pixels_and_flips(tmp_path, level):
    images = [_pixels(8, 8, 3, seed=i) for i in range(10)]
    items = [SourceItem(f"{i}.png", lambda a=a: Image.fromarray(a)) for i, a in enumerate(images)]
    dest = str(tmp_path / "d")
    convert(items, dest, ConvertOptions(png_compression=level, shard_size=4, progress=False))
    raw = [s for u in sorted((tmp_path / "d").glob("*.tar")) for _, s in iter_shard_samples(str(u))]
    assert (codec._decode_png_stored(raw[0]["png"], 3) is not None) == (level == 0)
    known = {a.tobytes(): a for a in images}
    dm = ShardDataModule(dest, batch_size=8, num_workers=0, mirror=True, shuffle_buffer=3, seed=3)
    cfg = dm.train_dataloader().dataset.cfg
    batches = [b for _, b in zip(range(5), dm.train_dataloader())]
    flips = 0
    for img, c in batches:
        assert img.shape == (8, 3, 8, 8) and img.dtype == torch.uint8 and c.shape == (8, 0)
        for x in img.permute(0, 2, 3, 1).numpy():  # [N, H, W, C]
            if x.tobytes() not in known:
                flips += 1
                assert x[:, ::-1].tobytes() in known  # an exact x-flip of a dataset image
    assert 0 < flips < 40
    cfg.batch_size = 0  # the same stream one image at a time
    singles = [img for _, (img, _) in zip(range(40), ShardStream(cfg))]
    assert torch.equal(torch.stack(singles), torch.cat([img for img, _ in batches]))
    once = torch.cat([img for img, _ in dm.exactly_once_loader(4)])  # 4 + 4 + 2: a short last batch
    assert sorted(x.permute(1, 2, 0).numpy().tobytes() for x in once) == sorted(known)


def test_images_not_matching_the_batch_are_skipped_and_counted(tmp_path):
    from sg3.data.shards import ShardWriter
    from sg3.data.stream import StreamConfig

    writer = ShardWriter(str(tmp_path), max_count=100)
    for i, side in enumerate([8, 8, 4, 8, 6]):  # no index and no resolution: the first image sets the shape
        writer.write(f"{i:04d}", {"png": codec.encode_png_stored(np.full((side, side, 3), 10 * i, np.uint8))})
    urls = [e["name"] for e in writer.close()]
    cfg = StreamConfig(urls=[str(tmp_path / u) for u in urls], counts=None, mode="once", batch_size=2)
    stream = ShardStream(cfg)
    batches = [img for img, _ in stream]
    assert [b.shape[0] for b in batches] == [2, 1] and all(b.shape[1:] == (3, 8, 8) for b in batches)
    assert [int(x[0, 0, 0]) for b in batches for x in b] == [0, 10, 30]
    assert stream.counter.as_dict()["wrong_shape"] == 2
