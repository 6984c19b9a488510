"""A checkpoint that rank 0 fails to *build* (before any write) stops every rank at once, with rank 0's error.

Building a checkpoint runs collectives (the datamodule's all_gather_object, the module's RNG gather) between
the hooks. A hook raising on rank 0 only left the other ranks waiting in the next collective or in Lightning's
barrier until the process group's timeout (30 min), with an error naming neither the cause nor the file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from ddp_helpers import launch_env, run_ranks

PROBE = Path(__file__).with_name("ckpt_build_probe.py")


@pytest.mark.parametrize("failure", ["callback_state_dict", "on_save_checkpoint"])
def test_a_checkpoint_rank_0_fails_to_build_stops_every_rank_with_its_reason(tmp_path, failure):
    env = launch_env(os.environ)
    returncode, out = run_ranks([sys.executable, str(PROBE), str(tmp_path), failure], env, tmp_path, 180)
    assert returncode != 0
    assert "SAVED" not in out, out[-4000:]
    failed = {line.split(":")[0] for line in out.splitlines() if line.startswith("FAILED rank ")}
    assert failed == {"FAILED rank 0", "FAILED rank 1"}, out[-4000:]
    reasons = [line for line in out.splitlines() if line.startswith("FAILED rank ")]
    assert all(f"ValueError: injected {failure} failure on rank 0" in line for line in reasons), reasons
    assert all("step2.ckpt" in line for line in reasons), reasons  # names the checkpoint
    assert not (tmp_path / "step2.ckpt").exists()
