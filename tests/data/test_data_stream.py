"""ShardDataModule and the sample stream: splitting, exactly-once, labels, corruption, resume, URL forms."""

from __future__ import annotations

import glob
import io
import os
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from sg3.data.datamodule import ShardDataModule
from sg3.data.shards import resolve_urls
from sg3.data.stream import ShardStream, StreamConfig

ALL_12 = [10 + 5 * i for i in range(12)]


def _union_over_ranks(dm, values_of, world_size, batch_size=2):
    per_rank = [values_of(dm.exactly_once_loader(batch_size, r, world_size)) for r in range(world_size)]
    return per_rank, sorted(v for vals in per_rank for v in vals)


@pytest.mark.parametrize("with_index", [True, False])
def test_exactly_once_two_ranks_two_workers(make_shards, values_of, with_index):
    dest = make_shards(12, shard_size=5)  # 3 shards (5, 5, 2): not divisible by 2 ranks x 2 workers
    urls = dest if with_index else os.path.join(dest, "*.tar")
    if not with_index:
        os.remove(os.path.join(dest, "dataset.json"))
    dm = ShardDataModule(urls, batch_size=4, num_workers=2)
    assert (dm.index is not None) == with_index and len(dm.shards.urls) == 3
    per_rank, union = _union_over_ranks(dm, values_of, world_size=2)
    assert union == ALL_12
    if with_index:  # contiguous ranges: 3 per consumer, 6 per rank
        assert [len(v) for v in per_rank] == [6, 6]


def test_round_trip_labels_one_hot_and_pixels(make_shards):
    dest = make_shards(12, shard_size=4, classes=["a", "b", "c"])
    dm = ShardDataModule(dest, batch_size=5, num_workers=0, use_labels=True, resolution=8, channels=3)
    dm.setup("fit")
    assert (dm.resolution, dm.num_channels, dm.c_dim, dm.name) == (8, 3, 3, os.path.basename(dest))
    seen = []
    for img, c in dm.exactly_once_loader(5):
        assert img.dtype == torch.uint8 and img.shape[1:] == (3, 8, 8) and c.dtype == torch.float32
        assert torch.equal(c.sum(1), torch.ones(len(c)))
        for x, onehot in zip(img, c):
            value = int(x[0, 0, 0])
            assert (x == value).all()
            i = (value - 10) // 5
            assert int(onehot.argmax()) == i % 3
            seen.append(value)
    assert sorted(seen) == ALL_12
    img, c = next(iter(dm.train_dataloader()))
    assert img.shape == (5, 3, 8, 8) and c.shape == (5, 3)


def _train_values(cfg: StreamConfig, n: int) -> list[int]:
    out = []
    for img, _ in ShardStream(cfg):
        out.append(int(img[0, 4, 4]))
        if len(out) == n:
            return out
    raise AssertionError("stream ended")


def test_training_stream_splits_ranks_and_epochs(make_shards):
    dest = make_shards(12, shard_size=5)
    sl = resolve_urls(dest)
    base = dict(urls=sl.urls, counts=sl.counts, mode="train", world_size=2, shuffle_buffer=4, seed=7)
    r0 = _train_values(StreamConfig(rank=0, **base), 18)
    r1 = _train_values(StreamConfig(rank=1, **base), 18)
    assert sorted(set(r0) | set(r1)) == ALL_12 and r0 != r1
    assert r0 == _train_values(StreamConfig(rank=0, **base), 18)  # same seed, same stream
    assert r0 != _train_values(StreamConfig(rank=0, **{**base, "seed": 8}), 18)
    # unbuffered: exactly one full permutation per epoch across the ranks
    nb = {**base, "shuffle_buffer": 0}
    e0, e1 = _train_values(StreamConfig(rank=0, **nb), 12), _train_values(StreamConfig(rank=1, **nb), 12)
    assert sorted(e0[:6] + e1[:6]) == ALL_12 and sorted(e0[6:] + e1[6:]) == ALL_12


def test_mirror_flips_about_half(tmp_path):
    from sg3.data.dataset_tool import ConvertOptions, convert
    from sg3.data.sources import SourceItem

    arr = np.zeros((8, 8, 3), np.uint8)
    arr[:, 0] = 255  # bright left column: a flip moves it to the right
    items = [SourceItem(f"{i}.png", lambda: Image.fromarray(arr)) for i in range(8)]
    convert(items, str(tmp_path / "m"), ConvertOptions(progress=False))
    dm = ShardDataModule(str(tmp_path / "m"), batch_size=50, num_workers=0, mirror=True, shuffle_buffer=2)
    img, _ = next(iter(dm.train_dataloader()))
    flipped = (img[:, 0, 0, 7] == 255).float().mean().item()
    assert ((img[:, 0, 0, 0] == 255) ^ (img[:, 0, 0, 7] == 255)).all()
    assert 0.25 < flipped < 0.75
    once, _ = next(iter(dm.exactly_once_loader(8)))
    assert (once[:, 0, 0, 0] == 255).all()  # metrics see unflipped images


def _truncate(path: str, keep_fraction: float) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep_fraction)])


@pytest.mark.parametrize("with_index", [True, False])
def test_truncated_shard_skipped_counted_and_strict(make_shards, values_of, with_index):
    dest = make_shards(12, shard_size=6)
    _truncate(os.path.join(dest, "shard-000001.tar"), 0.5)  # cut at a tar block boundary
    if not with_index:  # then the missing end-of-archive marker gives it away
        os.remove(os.path.join(dest, "dataset.json"))
    dm = ShardDataModule(dest, batch_size=4, num_workers=2)
    values = values_of(dm.exactly_once_loader(4))
    assert 6 <= len(values) < 12 and len(set(values)) == len(values)
    assert dm.skipped.as_dict()["truncated_shard"] >= 1  # counted across worker processes
    strict = ShardDataModule(dest, batch_size=4, num_workers=0, strict=True)
    with pytest.raises(RuntimeError, match=r"truncated shard: .*shard-000001.tar.*strict mode"):
        values_of(strict.exactly_once_loader(4))
    train = iter(ShardDataModule(dest, batch_size=4, num_workers=0, shuffle_buffer=2).train_dataloader())
    assert all(next(train)[0].shape == (4, 3, 8, 8) for _ in range(6))  # the stream goes on


def test_corrupt_sample_skipped_counted_and_strict(make_shards, values_of):
    dest = make_shards(4, shard_size=10)
    path = os.path.join(dest, "shard-000000.tar")
    with tarfile.open(path, "a") as tar:  # append a sample whose png is garbage
        for ext, data in (("png", b"\x89PNG\r\n\x1a\ngarbage"), ("json", b"{}")):
            info = tarfile.TarInfo(f"99999999.{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.remove(os.path.join(dest, "dataset.json"))  # counts changed: read without the index
    dm = ShardDataModule(dest, batch_size=8, num_workers=0)
    assert values_of(dm.exactly_once_loader(8)) == [10, 15, 20, 25]
    assert dm.skipped.as_dict() == {
        "corrupt_sample": 1,
        "wrong_shape": 0,
        "truncated_shard": 0,
        "unreadable_shard": 0,
    }
    strict = ShardDataModule(dest, batch_size=8, num_workers=0, strict=True)
    with pytest.raises(RuntimeError, match=r"corrupt sample: sample 99999999 of .*shard-000000.tar"):
        values_of(strict.exactly_once_loader(8))


def test_first_sample_and_index_checks(make_shards):
    dest = make_shards(4, shard_size=10)
    with pytest.raises(ValueError, match=r"has 8x8 images with 3 channel\(s\), but the model expects 64x64"):
        ShardDataModule(dest, batch_size=2, resolution=64)
    os.remove(os.path.join(dest, "dataset.json"))
    dm = ShardDataModule(os.path.join(dest, "*.tar"), batch_size=2, channels=1)
    with pytest.raises(
        ValueError, match=r"first sample 00000000 of .* 3 channel\(s\), but the model expects .* 1"
    ):
        dm.setup("fit")
    with pytest.raises(ValueError, match="needs the dataset.json index"):
        ShardDataModule(dest, batch_size=2, use_labels=True)
    with pytest.raises(ValueError, match="batch_size=0 must be a positive int"):
        ShardDataModule(dest, batch_size=0)


def test_rank_from_trainer_and_sample_labels(make_shards):
    dest = make_shards(12, shard_size=5, classes=["a", "b", "c", "c"])  # class counts 3, 3, 6
    dm = ShardDataModule(dest, batch_size=2, num_workers=0, use_labels=True)
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2)
    cfg = dm.train_dataloader().dataset.cfg
    assert (cfg.rank, cfg.world_size, cfg.c_dim) == (1, 2, 3)
    c = dm.sample_labels(3000, torch.Generator().manual_seed(0))
    assert c.shape == (3000, 3) and torch.equal(c.sum(1), torch.ones(3000))
    freq = c.mean(0)
    assert abs(freq[2].item() - 0.5) < 0.05 and abs(freq[0].item() - 0.25) < 0.05
    plain = ShardDataModule(dest, batch_size=2)
    assert plain.c_dim == 0 and plain.sample_labels(4).shape == (4, 0)


def test_url_forms(make_shards, values_of):
    dest = make_shards(12, shard_size=5)
    shards = sorted(glob.glob(os.path.join(dest, "*.tar")))
    forms = [
        dest,
        os.path.join(dest, "dataset.json"),
        os.path.join(dest, "shard-*.tar"),
        os.path.join(dest, "shard-{000000..000002}.tar"),
        shards,
        OmegaConf.create({"urls": shards}).urls,  # what Hydra passes for a YAML list
        [f"pipe:cat {s}" for s in shards],
    ]
    for urls in forms:
        dm = ShardDataModule(urls, batch_size=5, num_workers=0)
        assert values_of(dm.exactly_once_loader(5)) == ALL_12, urls
    assert resolve_urls(os.path.join(dest, "shard-*.tar")).counts == [
        5,
        5,
        2,
    ]  # counts from the sibling index
    with pytest.raises(ValueError, match="does not exist"):
        resolve_urls(os.path.join(dest, "shard-{000000..000004}.tar"))
    with pytest.raises(ValueError, match="matches no files"):
        resolve_urls(os.path.join(dest, "nothing-*.tar"))


def test_training_stream_without_index(make_shards):
    dest = make_shards(12, shard_size=5)
    os.remove(os.path.join(dest, "dataset.json"))
    sl = resolve_urls(os.path.join(dest, "*.tar"))
    assert sl.counts is None and len(sl.urls) == 3
    base = dict(urls=sl.urls, counts=None, mode="train", world_size=2, shuffle_buffer=0, seed=1)
    r0, r1 = (_train_values(StreamConfig(rank=r, **base), 24) for r in (0, 1))
    assert not set(r0[:2]) & set(r1[:2])  # epoch 0: disjoint whole shards per rank
    assert set(r0) | set(r1) == set(ALL_12)
    single = _train_values(StreamConfig(**{**base, "world_size": 1}), 36)  # 3 epochs of 12
    assert all(sorted(single[i : i + 12]) == ALL_12 for i in (0, 12, 24))
