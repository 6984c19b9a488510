"""Shared by the 2-process tests: a clean launch environment and a run that cannot hang the suite."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping

_LAUNCH_VARS = ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "RANK", "NODE_RANK")


def launch_env(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """`base` plus `extra` without SLURM_* and torch.distributed launch variables (a test under srun or
    torchrun must not join that job's process group)."""
    env = {k: v for k, v in {**base, **extra}.items() if not k.startswith("SLURM_")}
    for name in _LAUNCH_VARS:
        env.pop(name, None)
    return env


def run_ranks(cmd: list[str], env: Mapping[str, str], cwd: os.PathLike, timeout: float) -> tuple[int, str]:
    """Run `cmd` (which starts the ranks) to its end; (exit code, stdout + stderr).

    Raises:
        AssertionError: a rank still running after `timeout` seconds (the whole session is killed first).
    """
    start = time.time()
    proc = subprocess.Popen(
        cmd, env=dict(env), cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)  # returns once every rank closed the pipe, i.e. exited
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the other ranks are in the same session
        out, _ = proc.communicate()
        raise AssertionError(
            f"a rank still waits after {time.time() - start:.0f} s:\n{out[-4000:]}"
        ) from None
    return proc.returncode, out
