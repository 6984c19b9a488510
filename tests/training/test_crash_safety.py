"""What a process killed at an unlucky moment leaves behind, and what the next run makes of it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from training_helpers import build_in_process, reals

from sg3.training.callbacks import Snapshots, TickLogger
from sg3.training.checkpoint import AtomicCheckpointIO, list_checkpoints, resolve_resume


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


def _fake_checkpoint(path, nimg: int) -> None:
    counters = {"cur_nimg": nimg, "cur_tick": 1, "batch_idx": nimg // 4, "tick_start_nimg": nimg}
    sg3 = {"format": "sg3-checkpoint", "counters": counters}
    AtomicCheckpointIO().save_checkpoint({"sg3": sg3, "w": torch.zeros(3)}, path)


def test_resuming_from_an_older_checkpoint_sets_newer_requeue_checkpoints_aside(tmp_path):
    """A SLURM requeue checkpoint (hpc_ckpt_<N>) of the abandoned continuation must not stay where
    resume=auto finds it: a resumed run killed before its first checkpoint would jump back onto that
    branch."""
    ckpts = tmp_path / "checkpoints"
    _fake_checkpoint(ckpts / "ckpt-000000008.ckpt", 8)
    _fake_checkpoint(tmp_path / "hpc_ckpt_1.ckpt", 8)  # requeued at 8 images: part of the resumed branch
    _fake_checkpoint(ckpts / "ckpt-000000024.ckpt", 24)
    _fake_checkpoint(tmp_path / "hpc_ckpt_2.ckpt", 32)  # the abandoned continuation, written last
    snaps = Snapshots(str(tmp_path), keep=3)
    trainer = SimpleNamespace(is_global_zero=True)
    snaps.on_train_start(trainer, SimpleNamespace(cur_nimg=8))  # resume=<ckpt-000000008>
    snaps.on_train_end(trainer, None)
    assert sorted(p.name for p in tmp_path.glob("hpc_ckpt_*")) == ["hpc_ckpt_1.ckpt"]
    assert sorted(p.name for p in (ckpts / "superseded").iterdir()) == [
        "ckpt-000000024.ckpt",
        "hpc_ckpt_2.ckpt",
    ]
    assert torch.load(resolve_resume("auto", tmp_path), weights_only=True)["sg3"]["counters"]["cur_nimg"] == 8


def test_the_end_of_run_summary_reports_the_ticks_training_speed_and_labels_the_wall_clock(
    tmp_path, monkeypatch
):
    """Tiny runs spend most of their wall clock starting up: the summary's img/s was 0.3-0.9 where every tick
    showed ~19 img/s. It reports the training throughput of the ticks and labels the wall-clock figure."""
    import sg3.training.callbacks as cb

    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(cb, "time", SimpleNamespace(time=lambda: clock.now))
    snaps = SimpleNamespace(stopped_by_signal=None, last_checkpoint=None, last_export=None)
    summary = cb.Summary(str(tmp_path), SimpleNamespace(files=[]), snaps)
    module = SimpleNamespace(cur_nimg=0, tick_start_nimg=0, kimg=0.0, done=False, augment_pipe=None)
    module.tick_info = None
    trainer = SimpleNamespace(is_global_zero=True)
    summary.on_train_start(trainer, module)
    for nimg, sec in ((40, 2.0), (80, 2.0), (120, 4.0)):  # three ticks: 120 images in 8 s of training
        clock.now += 30 + sec  # start-up, grids, snapshots ... and the tick itself
        module.cur_nimg, module.kimg = nimg, nimg / 1000
        scalars = {"Timing/sec_per_tick": sec, "Timing/img_per_sec": 40 / sec}
        module.tick_info = {"tick": nimg // 40 - 1, "scalars": scalars}
        summary.on_train_batch_end(trainer, module, None, None, 0)
    summary.on_train_end(trainer, module)
    assert summary.info["train_img_per_sec"] == pytest.approx(15.0)
    assert summary.info["wall_img_per_sec"] == pytest.approx(120 / 98)
    first = cb.format_summary(summary.info, []).splitlines()[0]
    assert "15.0 img/s training" in first and "1.2 img/s wall clock" in first, first


def test_the_summarys_training_speed_counts_the_ticks_images_exactly(tmp_path):
    """The summary rebuilt each tick's images as img/s x seconds: with img/s rounded as in the stats line
    (40 images in 3 s: 13.3) a run of 20 + 40 + 40 images in 9 s reported 11.1 img/s, not 100 / 9 = 11.11...
    The images are counted from the module's counter; the first tick after a resume counts from its start
    before the resume, like its seconds."""
    import sg3.training.callbacks as cb

    snaps = SimpleNamespace(stopped_by_signal=None, last_checkpoint=None, last_export=None)
    summary = cb.Summary(str(tmp_path), SimpleNamespace(files=[]), snaps)
    # Resumed at 28 images, inside a tick that started at 20 and had run 1 of its 3 s before the resume.
    module = SimpleNamespace(cur_nimg=28, tick_start_nimg=20, kimg=0.028, done=False, augment_pipe=None)
    trainer = SimpleNamespace(is_global_zero=True)
    module.tick_info = None
    summary.on_train_start(trainer, module)
    for nimg in (32, 36, 40, 60, 80, 100, 120):  # tick ends at 40, 80, 120 (20, 40, 40 images)
        module.cur_nimg, module.kimg = nimg, nimg / 1000
        module.tick_info = None
        if nimg in (40, 80, 120):
            images = {40: 20, 80: 40, 120: 40}[nimg]
            scalars = {"Timing/sec_per_tick": 3.0, "Timing/img_per_sec": round(images / 3.0, 1)}
            module.tick_info = {"tick": nimg // 40, "scalars": scalars}
        summary.on_train_batch_end(trainer, module, None, None, 0)
    summary.on_train_end(trainer, module)
    assert summary.info["train_img_per_sec"] == pytest.approx(100 / 9, rel=1e-12)


@pytest.mark.slow
def test_a_configuration_error_removes_the_run_folder_it_created_and_nothing_else(tmp_path):
    """Hydra makes the run folder (train.log, .hydra/) before sg3-train reads the configuration: a typo left
    a folder per attempt. Only a folder this process made and wrote entirely goes; the others stay."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "WORLD_SIZE", "SLURM_NTASKS"):
        env.pop(key, None)
    existing = tmp_path / "runs" / "old"
    existing.mkdir(parents=True)
    (existing / "notes.txt").write_text("mine")
    bad = ["data=demo", "batch=8", "logger=none", f"runs_dir={tmp_path / 'runs'}"]  # no loss.r1_gamma
    for name in ("new", "old"):
        proc = subprocess.run(
            [sys.executable, "-m", "sg3.train", *bad, f"name={name}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 2 and "configuration error" in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["old"]
    assert (existing / "notes.txt").read_text() == "mine" and (existing / "train.log").is_file()


def test_only_a_folder_made_and_written_after_the_start_counts_as_this_processs(tmp_path):
    import os

    from sg3.training.rundir import made_by_this_process, remove_if_made_here

    def folder(name: str, *files: str) -> os.PathLike:
        path = tmp_path / name
        (path / ".hydra").mkdir(parents=True)
        for f in files:
            (path / f).write_text("x")
        return path

    old = 1_000_000_000_000_000_000  # 2001
    start = os.stat(tmp_path).st_mtime_ns  # the folders below are made after it
    fresh = folder("fresh", "train.log")
    assert made_by_this_process(fresh, "train.log", start) and remove_if_made_here(fresh, start)
    assert not fresh.exists()
    user = folder("user", "train.log", "notes.txt")  # another file: not Hydra's
    assert not made_by_this_process(user, "train.log", start)
    late = folder("late", "train.log")  # accepted at the start, then it got an older file (copied in)
    (late / "stats.jsonl").write_text("{}")
    os.utime(late / "stats.jsonl", ns=(old, old))
    assert not remove_if_made_here(late, start) and (late / "stats.jsonl").is_file()
    trained = folder("trained", "train.log")  # accepted at the start, then training wrote results
    (trained / "checkpoints").mkdir()
    (trained / "checkpoints" / "ckpt-000000064.ckpt").write_bytes(b"x")
    assert not remove_if_made_here(trained, start) and (trained / "checkpoints").is_dir()
    # An empty folder that existed before (hydra.run.dir=...): Hydra's entries are new, its parent is not.
    parent = tmp_path / "parent"
    (parent / "empty").mkdir(parents=True)
    for path in (parent / "empty", parent):
        os.utime(path, ns=(old, old))
    start = old + 1
    (parent / "empty" / ".hydra").mkdir()
    (parent / "empty" / "train.log").write_text("")
    assert os.stat(parent / "empty").st_mtime_ns >= start  # so only the parent tells
    assert not made_by_this_process(parent / "empty", "train.log", start)
