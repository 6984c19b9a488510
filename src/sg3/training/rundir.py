"""The run folder of a job that stops with a configuration error: removed when this process made all of it.

Hydra creates the run folder (with `.hydra/` and the job's log file) before sg3-train sees the
configuration, so a typo used to leave a folder per attempt. `made_by_this_process` tells, when the job
starts, whether Hydra has just created the folder; `remove_if_made_here` then deletes it only if every file
and folder in it was written after this process started. An existing run folder, or one holding anything
older (a user's file, an earlier run's log), is never touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

# Imported by sg3.train, i.e. before Hydra creates the run folder. Timestamps are compared in whole
# nanoseconds of the same clock; a file system whose clock runs behind only ever keeps a folder.
PROCESS_START_NS = time.time_ns()
HYDRA_ENTRIES = {".hydra"}
# What a run that trained writes: a folder holding any of these is a result, never removed.
RESULT_PATTERNS = ("*.ckpt", "*.pt", "*.pkl", "stats.jsonl", "*.png")


def made_by_this_process(run_dir: str | os.PathLike, log_name: str, since_ns: int = PROCESS_START_NS) -> bool:
    """True when `run_dir` holds only what Hydra has just written for this job (`.hydra/`, `log_name`).

    The folder and its parent must have changed after `since_ns` (a folder that existed before, even an
    empty one, keeps its parent's time) and hold nothing but Hydra's entries.
    """
    folder = Path(run_dir)
    try:
        names = {p.name for p in folder.iterdir()}
        return (
            names <= HYDRA_ENTRIES | {log_name}
            and folder.stat().st_mtime_ns >= since_ns
            and folder.parent.stat().st_mtime_ns >= since_ns
        )
    except OSError:
        return False


def remove_if_made_here(run_dir: str | os.PathLike, since_ns: int = PROCESS_START_NS) -> bool:
    """Delete `run_dir` if everything in it was written after `since_ns`; returns whether it was deleted.

    A folder holding training results (checkpoints, network snapshots, stats.jsonl, image grids) is kept
    whatever their age. Call only for a folder that `made_by_this_process` accepted. The log handlers
    writing into it are closed first (a later record would otherwise fail to reopen the deleted file).
    """
    folder = Path(run_dir)
    try:
        paths = [folder, *folder.rglob("*")]
        if any(p.lstat().st_mtime_ns < since_ns for p in paths):
            return False
        if any(p.match(pattern) for p in paths for pattern in RESULT_PATTERNS):
            return False  # it trained (checkpoints, snapshots, stats, grids): a result, however new
    except OSError:
        return False
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder.resolve():
            root.removeHandler(handler)
            handler.close()
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()
