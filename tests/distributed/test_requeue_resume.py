"""Resuming a SLURM job that Lightning requeued: its hpc_ckpt_<N>.ckpt counts as a checkpoint of the run."""

from __future__ import annotations

import os

import pytest
import torch

from sg3.training.checkpoint import checkpoint_path, latest_hpc_checkpoint, resolve_resume
from sg3.training.slurm import next_hpc_checkpoint, slurm_job_id


def touch(path, mtime: int):
    """A minimal readable training checkpoint at `path` (resume=auto skips unreadable files) with `mtime`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"sg3": {"format": "sg3-checkpoint"}}, path)
    os.utime(path, ns=(mtime, mtime))
    return path


def test_latest_hpc_checkpoint_picks_the_highest_number(tmp_path):
    assert latest_hpc_checkpoint(tmp_path) is None
    assert latest_hpc_checkpoint(tmp_path / "missing") is None
    touch(tmp_path / "hpc_ckpt_2.ckpt", 1)
    touch(tmp_path / "hpc_ckpt_10.ckpt", 1)
    touch(tmp_path / "hpc_ckpt_3.ckpt.tmp-123", 9)  # an interrupted write
    assert latest_hpc_checkpoint(tmp_path).name == "hpc_ckpt_10.ckpt"


def test_requeued_run_resumes_from_the_newer_of_hpc_and_regular_checkpoints(tmp_path):
    tick0 = touch(checkpoint_path(tmp_path, 8), 1_000)
    with pytest.raises(ValueError, match="resume=auto"):
        resolve_resume(None, tmp_path)  # a fresh run must not silently continue an old one
    hpc = touch(tmp_path / "hpc_ckpt_1.ckpt", 2_000)
    assert resolve_resume(None, tmp_path) == hpc  # Lightning requeued this job
    assert resolve_resume("auto", tmp_path) == hpc
    final = touch(checkpoint_path(tmp_path, 64), 3_000)
    assert resolve_resume("auto", tmp_path) == final
    assert resolve_resume(None, tmp_path) == final
    assert resolve_resume(str(tick0), tmp_path) == tick0


def test_next_hpc_checkpoint_follows_lightnings_numbering(tmp_path):
    assert next_hpc_checkpoint(tmp_path).name == "hpc_ckpt_1.ckpt"
    touch(tmp_path / "hpc_ckpt_1.ckpt", 1)
    assert next_hpc_checkpoint(tmp_path).name == "hpc_ckpt_2.ckpt"


def test_slurm_job_id_names_the_array_task(monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="SLURM_JOB_ID"):
        slurm_job_id()
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert slurm_job_id() == "42"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert slurm_job_id() == "40_2"
