"""A checkpoint that rank 0 cannot write stops every rank at once, each with rank 0's reason."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ddp_helpers import launch_env, run_ranks

from sg3.data.demo import ensure_demo_dataset

PROBE = Path(__file__).with_name("ddp_probe.py")


def test_a_checkpoint_write_failing_on_rank_0_stops_every_rank_with_its_reason(tmp_path):
    """Lightning's save is rank 0's write followed by a barrier: rank 1 used to wait there until the
    process group's timeout (30 min) after rank 0 had died."""
    dataset = ensure_demo_dataset(str(tmp_path / "data"), resolution=16, count=16)
    run_dir = tmp_path / "runs" / "fail"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoints").write_text("a file where the checkpoint folder should be")
    env = launch_env(
        os.environ, SG3_PROBE_DIR=str(tmp_path / "probe"), WANDB_MODE="offline", HYDRA_FULL_ERROR="1"
    )
    overrides = [
        "trainer=ddp_sim", "model=tiny", f"data.urls={dataset}", "data.num_workers=0", "batch=8",
        "total_kimg=0.032", "grid.gw=2", "grid.gh=2", "loss.r1_gamma=1", "logger=none",
        f"runs_dir={tmp_path / 'runs'}", "name=fail",
    ]  # fmt: skip
    returncode, out = run_ranks([sys.executable, str(PROBE), *overrides], env, tmp_path, 240)
    assert returncode != 0
    reasons = [line for line in out.splitlines() if "checkpoint write failed on rank 0" in line]
    assert any("rank 1" in line for line in reasons), out[-4000:]
    assert all("FileExistsError" in line for line in reasons), reasons
