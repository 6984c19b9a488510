"""CPU threads per training process: one rule, one place (`threads` in conf/train.yaml).

torch's intra-op threads spin in OpenMP barriers between the many small operations of a training step. When
the threads of all processes on a node exceed its CPUs (several processes, data loader workers, other jobs),
a descheduled thread holds every other one up: measured on the shared 2-core machine under load ~5, one
process ran the tiny config at 2.5 img/s with 2 threads and at 21-37 img/s with 1 (docs/training.md).
So each process gets its share of the CPUs it may run on: the CPUs of its affinity mask (SLURM's
--cpus-per-task binding, taskset, containers) divided by the processes of this node when they share one mask.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger("sg3.train")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(setting: int | str | None, local_processes: int) -> tuple[int | None, str]:
    """Threads for this process and why.

    Args:
        setting: `threads` from the config: 'auto', a positive int, or None (leave torch's default).
        local_processes: Training processes on this node (trainer.devices).

    Returns:
        (threads or None for torch's default, a short reason for the log).

    Raises:
        ValueError: for a setting that is not 'auto', None or a positive int.
    """
    if setting is None:
        return None, "threads=null: torch's default"
    if isinstance(setting, bool) or not (setting == "auto" or (isinstance(setting, int) and setting > 0)):
        raise ValueError(f"threads={setting!r} is not valid: auto, null or a positive number")
    if setting != "auto":
        return setting, f"threads={setting}"
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), f"OMP_NUM_THREADS={env}"
    cpus, total = available_cpus(), os.cpu_count() or 1
    if cpus < total:  # a mask of its own (e.g. SLURM binds each task to its --cpus-per-task CPUs)
        return cpus, f"auto: {cpus} CPUs in this process's affinity mask"
    share = max(1, cpus // max(local_processes, 1))
    return share, f"auto: {cpus} CPUs / {local_processes} process(es) on this node"


def apply_threads(setting: int | str | None, local_processes: int) -> int:
    """Set torch's intra-op threads (and OMP_NUM_THREADS for child processes); returns the thread count."""
    threads, reason = choose_threads(setting, local_processes)
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # Lightning's DDP launcher keeps it; ranks inherit it
    log.info("CPU threads per process: %d (%s)", torch.get_num_threads(), reason)
    return torch.get_num_threads()
