"""Resuming when a checkpoint cannot be read (truncated by a copy, a full disk, an empty file).

resume=auto falls back to the newest readable checkpoint with a warning naming the unreadable one (which is
kept); a named resume=<path> that cannot be read, or a run folder with no readable checkpoint, stops with one
ConfigError line naming the file and the reason. Before, both ended in torch's bare RuntimeError traceback.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
import torch
from training_helpers import build_in_process

from sg3.training.checkpoint import checkpoint_path, resolve_resume
from sg3.training.derive import ConfigError


def fake_checkpoint(run_dir: Path, nimg: int, mtime: int) -> Path:
    """A minimal sg3 training checkpoint (what resolve_resume reads) after `nimg` images."""
    path = checkpoint_path(run_dir, nimg)
    path.parent.mkdir(parents=True, exist_ok=True)
    sg3 = {"format": "sg3-checkpoint", "counters": {"cur_nimg": nimg}, "wandb_run_id": f"id{nimg}"}
    torch.save({"state_dict": {"w": torch.arange(1000.0)}, "sg3": sg3}, path)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


def truncate(path: Path, size: int | None = None) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2 if size is None else size)


def test_auto_falls_back_to_the_newest_readable_checkpoint_and_keeps_the_bad_one(tmp_path, caplog):
    a, b, c = (fake_checkpoint(tmp_path, n, 1000 + n) for n in (8, 16, 24))
    truncate(c)
    with caplog.at_level(logging.WARNING, logger="sg3.training.checkpoint"):
        assert resolve_resume("auto", tmp_path) == b
    assert c.is_file() and c.stat().st_size > 0  # nothing deleted
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert c.name in warning and b.name in warning
    truncate(b, 0)  # an empty file too
    assert resolve_resume("auto", tmp_path) == a


def test_auto_refuses_when_no_checkpoint_can_be_read(tmp_path):
    paths = [fake_checkpoint(tmp_path, n, 1000 + n) for n in (8, 16)]
    for p in paths:
        truncate(p)
    with pytest.raises(
        ValueError, match=r"resume=auto: no readable checkpoint in .*ckpt-000000016\.ckpt"
    ) as e:
        resolve_resume("auto", tmp_path)
    assert "ckpt-000000008.ckpt" in str(e.value) and "\n" not in str(e.value)
    assert all(p.is_file() for p in paths)


def test_a_named_unreadable_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    good = fake_checkpoint(tmp_path, 8, 1000)
    truncate(good)
    with pytest.raises(ValueError, match=re.escape(f"resume={str(good)!r}: cannot read the checkpoint (")):
        resolve_resume(str(good), tmp_path / "other")
    foreign = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match=re.escape(f"resume={str(foreign)!r}: ") + ".*not an sg3 training"):
        resolve_resume(str(foreign), tmp_path / "other")


def test_sg3_train_reports_an_unreadable_named_checkpoint_as_a_configuration_error(tmp_path):
    bad = fake_checkpoint(tmp_path, 8, 1000)
    truncate(bad)
    args = ["model=tiny", "data.urls=demo:16:8", "data.num_workers=0", "batch=4", "loss.r1_gamma=1"]
    with pytest.raises(ConfigError, match="cannot read the checkpoint"):
        build_in_process([*args, f"resume={bad}"], tmp_path)
