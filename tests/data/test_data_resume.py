"""Exact data-stream resume: a resumed run sees, per rank, the samples an uninterrupted run would see."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sg3.data.datamodule import ShardDataModule

WORLD = 2


def _dm(urls, rank: int, workers: int, **kw) -> ShardDataModule:
    opts = dict(batch_size=3, num_workers=workers, shuffle_buffer=5, seed=7, mirror=True) | kw
    dm = ShardDataModule(urls, **opts)
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=WORLD)  # as Lightning attaches it
    return dm


def _take(dm: ShardDataModule, n: int, prefetch: int = 0) -> list[torch.Tensor]:
    """n batches handed to the training step (on_before_batch_transfer), `prefetch` more fetched unused."""
    it = iter(dm.train_dataloader())
    fetched = [next(it) for _ in range(n + prefetch)]
    out = []
    for img, c in fetched[:n]:
        out.append(dm.on_before_batch_transfer((img, c), 0)[0].clone())
    return out


def _gathered(states: list[dict]) -> dict:
    """What DDP's all-gather inside state_dict() builds: every rank's entry in one state (rank 0 saves it)."""
    merged = dict(states[0], stream=dict(states[0]["stream"], ranks=list(states[0]["stream"]["ranks"])))
    for rank, st in enumerate(states):
        merged["stream"]["ranks"][rank] = st["stream"]["ranks"][rank]
    return merged


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("with_index", [True, False])
def test_resumed_stream_continues_the_uninterrupted_one_per_rank(make_shards, tmp_path, workers, with_index):
    urls = make_shards(26, shard_size=4)  # 7 shards: several epochs per consumer within the batches below
    if not with_index:  # no counts: consumers read whole shards and step over samples by tar header
        urls = shutil.copytree(urls, tmp_path / "noindex", ignore=shutil.ignore_patterns("*.json"))
        urls = str(urls)
    consumed, more = 7, 6  # 7 % 2 workers != 0: the resumed loader starts with the other worker's stream
    states, reference = [], []
    for rank in range(WORLD):
        reference.append(_take(_dm(urls, rank, workers), consumed + more))
        interrupted = _dm(urls, rank, workers)
        _take(interrupted, consumed, prefetch=2)  # prefetched batches never reached the step: not counted
        states.append(interrupted.state_dict())
    state = _gathered(states)
    for rank in range(WORLD):
        resumed = _dm(urls, rank, workers)
        resumed.load_state_dict(state)
        got = _take(resumed, more)
        want = reference[rank][consumed:]
        keys = [b[:, 0, 4, 4].tolist() for b in got]
        assert keys == [b[:, 0, 4, 4].tolist() for b in want], f"rank {rank}"
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert reference[0][0][:, 0, 4, 4].tolist() != reference[1][0][:, 0, 4, 4].tolist()


def test_resume_replays_flips_and_resumes_twice(tmp_path):
    from sg3.data.dataset_tool import ConvertOptions, convert
    from sg3.data.sources import SourceItem

    def image(i: int) -> Image.Image:
        arr = np.full((8, 8, 3), 10 + 5 * i, np.uint8)
        arr[:, 0] = 255  # bright left column: a flip moves it to the right
        return Image.fromarray(arr)

    items = [SourceItem(f"{i}.png", lambda i=i: image(i)) for i in range(20)]
    convert(items, str(tmp_path / "m"), ConvertOptions(progress=False, shard_size=3))
    urls = str(tmp_path / "m")
    want = _take(_dm(urls, 1, 2), 12)
    flips = torch.cat(want)[:, 0, 0, 7] == 255
    assert 0 < flips.float().mean() < 1
    first = _dm(urls, 1, 2)
    _take(first, 3, prefetch=1)
    second = _dm(urls, 1, 2)
    second.load_state_dict(first.state_dict())  # rank 1's own entry (no DDP here: no gather)
    got = _take(second, 4, prefetch=3)
    third = _dm(urls, 1, 2)
    third.load_state_dict(second.state_dict())
    got += _take(third, 5)
    assert all(torch.equal(a, b) for a, b in zip(got, want[3:]))


def test_changed_layout_draws_a_fresh_stream_and_old_states_load(make_shards, caplog):
    urls = make_shards(12, shard_size=4)
    a = _dm(urls, 0, 0)
    _take(a, 2)
    state = a.state_dict()
    other = _dm(urls, 0, 1)  # another worker count: another split of the stream
    other.load_state_dict(state)
    other.train_dataloader()
    assert other.state_dict()["generation"] == state["generation"] + 1
    assert "num_workers" in caplog.text
    old = _dm(urls, 0, 0)
    old.load_state_dict({"format": "sg3-stream", "version": 1, "seed": 7, "generation": 0})
    assert old.state_dict()["generation"] == 1  # checkpoints of older sg3 versions: a fresh stream
    with pytest.raises(ValueError, match="not a ShardDataModule state"):
        old.load_state_dict({"epoch": 3})


def test_without_a_trainer_yielded_batches_count(make_shards):
    urls = make_shards(12, shard_size=4)

    def plain() -> ShardDataModule:
        return ShardDataModule(urls, batch_size=2, num_workers=0, shuffle_buffer=3)

    it = iter(plain().train_dataloader())
    want = [next(it)[0] for _ in range(8)]
    first = plain()
    it = iter(first.train_dataloader())
    for _ in range(5):
        next(it)
    resumed = plain()
    resumed.load_state_dict(first.state_dict())
    it = iter(resumed.train_dataloader())
    assert all(torch.equal(next(it)[0], w) for w in want[5:])


def _rank_state(rank: int, urls: str, port: int, queue) -> None:
    url = f"tcp://127.0.0.1:{port}"
    torch.distributed.init_process_group("gloo", init_method=url, rank=rank, world_size=WORLD)
    try:
        dm = _dm(urls, rank, 0)
        _take(dm, 2 + rank)  # uneven on purpose: every rank's own position is gathered
        queue.put((rank, dm.state_dict()))
    finally:
        torch.distributed.destroy_process_group()


def test_state_dict_gathers_every_ranks_position_under_ddp(make_shards):
    import multiprocessing
    import socket

    urls = make_shards(12, shard_size=4)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_state, args=(r, urls, port, queue)) for r in range(WORLD)]
    for p in procs:
        p.start()
    states = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert states[0] == states[1]  # the file rank 0 writes holds every rank's position
    assert [r["batches"] for r in states[0]["stream"]["ranks"]] == [2, 3]
