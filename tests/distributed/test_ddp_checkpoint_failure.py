"""A checkpoint that rank 0 cannot write stops every rank at once, each with rank 0's reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sg3.data.demo import ensure_demo_dataset

PROBE = Path(__file__).with_name("ddp_probe.py")


def test_a_checkpoint_write_failing_on_rank_0_stops_every_rank_with_its_reason(tmp_path):
    """Lightning's save is rank 0's write followed by a barrier: rank 1 used to wait there until the
    process group's timeout (30 min) after rank 0 had died."""
    dataset = ensure_demo_dataset(str(tmp_path / "data"), resolution=16, count=16)
    run_dir = tmp_path / "runs" / "fail"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoints").write_text("a file where the checkpoint folder should be")
    env = dict(os.environ, SG3_PROBE_DIR=str(tmp_path / "probe"), WANDB_MODE="offline", HYDRA_FULL_ERROR="1")
    for leftover in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "RANK", "NODE_RANK"):
        env.pop(leftover, None)
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    overrides = [
        "trainer=ddp_sim", "model=tiny", f"data.urls={dataset}", "data.num_workers=0", "batch=8",
        "total_kimg=0.032", "grid.gw=2", "grid.gh=2", "loss.r1_gamma=1", "logger=none",
        f"runs_dir={tmp_path / 'runs'}", "name=fail",
    ]  # fmt: skip
    start = time.time()
    proc = subprocess.Popen(
        [sys.executable, str(PROBE), *overrides], env=env, cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=240)  # returns once both ranks closed the pipe, i.e. exited
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # rank 1 is in the same session
        out, _ = proc.communicate()
        raise AssertionError(
            f"a rank still waits after {time.time() - start:.0f} s:\n{out[-4000:]}"
        ) from None
    assert proc.returncode != 0
    reasons = [line for line in out.splitlines() if "checkpoint write failed on rank 0" in line]
    assert any("rank 1" in line for line in reasons), out[-4000:]
    assert all("FileExistsError" in line for line in reasons), reasons
