"""The embedded demo dataset and the DataModule inside a Lightning Trainer (checkpoint/resume)."""

from __future__ import annotations

import json
import multiprocessing
import os

import lightning as L
import torch

from sg3.data.datamodule import ShardDataModule
from sg3.data.demo import DEMO_PHOTOS, ensure_demo_dataset


def _build(root: str, queue) -> None:
    queue.put(ensure_demo_dataset(root, resolution=16, count=40))


def test_demo_builds_once_cached_and_concurrently(tmp_path, monkeypatch):
    root = str(tmp_path / "cache")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build, args=(root, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    paths = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert paths[0] == paths[1] and os.path.isfile(paths[0])
    assert sorted(os.listdir(root)) == ["skimage-r16-n40-v1"]  # no leftover build folders
    index = json.load(open(paths[0]))
    assert (index["resolution"], index["channels"], index["count"]) == (16, 3, 40)
    assert (
        index["labels"] and 1 <= index["num_classes"] <= len(DEMO_PHOTOS) and sum(index["class_counts"]) == 40
    )
    mtime = os.path.getmtime(paths[0])
    assert (
        ensure_demo_dataset(root, resolution=16, count=40) == paths[0] and os.path.getmtime(paths[0]) == mtime
    )
    monkeypatch.setenv("SG3_DEMO_CACHE", root)
    dm = ShardDataModule("demo:16:40", batch_size=8, num_workers=0, mirror=True)
    img, c = next(iter(dm.train_dataloader()))
    assert img.shape == (8, 3, 16, 16) and c.shape == (8, 0) and img.float().std() > 10  # real photo content


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.seen: list[list[int]] = []  # per step: the images' values (each image is one constant value)

    def training_step(self, batch, batch_idx):
        img, _ = batch
        self.seen.append(img[:, 0, 4, 4].tolist())
        x = img.float().div(127.5).sub(1).mean(dim=(2, 3))  # uint8 -> [-1, 1], [N, 3]
        return self.lin(x).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _trainer(steps: int) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )


def test_lightning_fit_checkpoint_and_resume_continue_the_stream(make_shards, tmp_path):
    # Lightning fetches a batch ahead of the step, and with 2 workers their batches alternate: the saved
    # position counts the batches that reached training_step, and the resumed run continues from there.
    dest = make_shards(12, shard_size=5)

    def dm() -> ShardDataModule:
        return ShardDataModule(dest, batch_size=4, num_workers=2, seed=5, shuffle_buffer=3)

    straight = _Tiny()
    _trainer(6).fit(straight, datamodule=dm())
    first, trainer = _Tiny(), _trainer(3)
    trainer.fit(first, datamodule=dm())
    ckpt = str(tmp_path / "a.ckpt")
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["ShardDataModule"]
    assert (saved["version"], saved["seed"], saved["generation"]) == (2, 5, 0)
    assert saved["stream"]["ranks"][0]["batches"] == 3
    second = _Tiny()
    _trainer(6).fit(second, datamodule=dm(), ckpt_path=ckpt)
    assert first.seen + second.seen == straight.seen
