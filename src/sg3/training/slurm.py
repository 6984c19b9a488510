"""SLURM preemption and time limits: checkpoint at a step boundary on every rank, then requeue the job.

Lightning's SLURM environment (detected under `srun`) supplies the ranks and, with auto-requeue, a SIGUSR1
handler that saves `hpc_ckpt_<N>.ckpt` and runs `scontrol requeue`. Lightning 2.6 does that work *inside*
the signal handler, i.e. at whatever point each rank happens to be: a rank blocked in a gradient all-reduce
cannot run its handler while the other rank waits in the checkpoint's barrier, and the job hangs (seen
with two gloo ranks). `SlurmRequeue` keeps Lightning's contract (same signal, same `hpc_ckpt_<N>.ckpt` in
the run directory, same `scontrol requeue` of the job or array task) but only records the signal in the
handler; at the end of the current training step all ranks agree on it, save the checkpoint together, and
rank 0 requeues. The requeued job resumes from that checkpoint (`sg3.training.checkpoint.resolve_resume`).

Outside SLURM (Lightning's `SLURMEnvironment.detect()` is False) the callback does nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback
from lightning.pytorch.plugins.environments import SLURMEnvironment

from sg3.training.checkpoint import latest_hpc_checkpoint, save_on_all_ranks

log = logging.getLogger("sg3.train")


def slurm_job_id() -> str:
    """The id `scontrol requeue` needs: `<array job>_<task>` for array jobs, else SLURM_JOB_ID.

    Raises:
        RuntimeError: when not inside a SLURM job.
    """
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    job = os.environ.get("SLURM_JOB_ID")
    if job is None:
        raise RuntimeError("SLURM_JOB_ID is not set: not running inside a SLURM job")
    return job


def next_hpc_checkpoint(run_dir: str | os.PathLike) -> Path:
    """`<run_dir>/hpc_ckpt_<N+1>.ckpt` after the newest existing one (Lightning's naming), N starting at 1."""
    latest = latest_hpc_checkpoint(run_dir)
    number = int(latest.stem.rsplit("_", 1)[1]) + 1 if latest is not None else 1
    return Path(run_dir) / f"hpc_ckpt_{number}.ckpt"


class SlurmRequeue(Callback):
    """On the requeue signal: checkpoint on all ranks at the next step boundary, then `scontrol requeue`.

    Args:
        signum: The signal SLURM sends before the time limit or on preemption (`#SBATCH --signal=USR1@180`).
    """

    def __init__(self, signum: int = signal.SIGUSR1) -> None:
        self.signum = signal.Signals(signum)
        self.received = False
        self.requeued = False
        self.checkpoint: Path | None = None
        self._previous: Any = None
        self._active = False

    def _on_signal(self, signum, frame) -> None:
        self.received = True  # acted upon at the end of the current step, on every rank together

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not SLURMEnvironment.detect() or threading.current_thread() is not threading.main_thread():
            return
        # Replaces Lightning's own handler for this signal (installed when the trainer starts fitting).
        self._previous = signal.signal(self.signum, self._on_signal)
        self._active = True

    def on_train_start(self, trainer, pl_module) -> None:
        if self._active:  # Lightning registers its handlers after `setup`: take the signal back
            signal.signal(self.signum, self._on_signal)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._active or self.requeued:
            return
        if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        path = next_hpc_checkpoint(trainer.default_root_dir)
        path = Path(trainer.strategy.broadcast(str(path)))  # one name for all ranks
        # Every rank; rank 0 writes, all pass the barrier, and a failed write raises on every rank together.
        save_on_all_ranks(trainer, path)
        self.checkpoint, self.requeued = path, True
        if trainer.is_global_zero:
            job = slurm_job_id()
            res = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
            if res.returncode == 0:
                log.warning("%s: saved %s and requeued SLURM job %s", self.signum.name, path, job)
            else:
                log.error(
                    "%s: saved %s; `scontrol requeue %s` failed: %s", self.signum.name, path, job, res.stderr
                )
        trainer.should_stop = True

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._active and threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._previous if self._previous is not None else signal.SIG_DFL)
        self._active = False
