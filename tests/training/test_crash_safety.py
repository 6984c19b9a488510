"""What a process killed at an unlucky moment leaves behind, and what the next run makes of it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from training_helpers import build_in_process, reals

from sg3.training.callbacks import Snapshots, TickLogger
from sg3.training.checkpoint import AtomicCheckpointIO, list_checkpoints


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after the point where it is raised runs."""


def test_a_kill_right_after_a_tick_checkpoint_keeps_that_ticks_stats_line(tmp_path, monkeypatch):
    """The resumed run starts after the checkpoint, so it never writes the checkpoint tick's stats.jsonl line
    again: the line must already be on disk when the checkpoint is (the callbacks of sg3-train, in order)."""
    monkeypatch.setenv("SG3_DEMO_CACHE", str(tmp_path / "demo"))
    args = ["model=tiny", "data.urls=demo:16:8", "data.num_workers=0", "batch=4", "loss.r1_gamma=1"]
    parts = build_in_process(args, tmp_path)
    model, run_dir = parts["model"], tmp_path / "run"
    opts = model.configure_optimizers()
    model.optimizers = lambda: opts
    model.training_step(reals(), 0)  # tick 0: a snapshot, so a checkpoint
    assert model.tick_info["checkpoint"]

    def save_then_die(path, weights_only=False):
        AtomicCheckpointIO().save_checkpoint({"n": model.cur_nimg}, path)
        raise Killed

    trainer = SimpleNamespace(
        is_global_zero=True, world_size=1, loggers=[], received_sigterm=False, save_checkpoint=save_then_die,
        strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all: decision),
    )  # fmt: skip
    order = [cb for cb in parts["trainer"].callbacks if isinstance(cb, (Snapshots, TickLogger))]
    with pytest.raises(Killed):
        for cb in order:
            cb.on_train_batch_end(trainer, model, None, None, 0)
    assert [p.name for p in list_checkpoints(run_dir)] == ["ckpt-000000004.ckpt"]
    # resume=auto continues after that checkpoint: tick 0's line stays in stats.jsonl
    TickLogger(str(run_dir)).on_train_start(trainer, SimpleNamespace(cur_nimg=4, kimg=0.004))
    lines = (run_dir / "stats.jsonl").read_text().splitlines()
    assert [json.loads(line)["Progress/kimg"]["mean"] for line in lines] == [pytest.approx(0.004)]
