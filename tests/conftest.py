"""Session-wide test setup: hermetic environment and the tier rules.

Tiers are pytest markers (see pyproject). Every tier this machine can run is selected by default.
`gpu` tests are deselected, with the reason printed in the summary, when no CUDA device is present;
`cuda_build` tests likewise when nvcc is missing. Nothing is silently skipped.
"""

from __future__ import annotations

import os
import shutil

import pytest

# Hermetic settings, fixed before any test imports wandb or torch-fidelity.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")

_DESELECTED: dict[str, tuple[str, int]] = {}


@pytest.fixture(autouse=True)
def _end_in_process_wandb_services():
    """A test that runs W&B in the pytest process leaves its service running and WANDB_SERVICE exported, so
    later tests' child processes would share it (and the runs a test killed would stay open there)."""
    yield
    if "WANDB_SERVICE" in os.environ:
        import wandb

        wandb.teardown()
        os.environ.pop("WANDB_SERVICE", None)


def _nvcc_available() -> bool:
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    return shutil.which("nvcc") is not None or os.path.exists(os.path.join(cuda_home, "bin", "nvcc"))


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    rules = {
        "gpu": (_gpu_available, "no CUDA device on this machine (run on a GPU host: scripts/gpu_check.py)"),
        "cuda_build": (_nvcc_available, "nvcc not found (set CUDA_HOME or install the CUDA toolkit)"),
    }
    keep, drop = [], []
    for item in items:
        reason = None
        for marker, (available, why) in rules.items():
            if item.get_closest_marker(marker) is not None and not available():
                reason = (marker, why)
                break
        if reason is None:
            keep.append(item)
        else:
            drop.append(item)
            marker, why = reason
            count = _DESELECTED.get(marker, (why, 0))[1]
            _DESELECTED[marker] = (why, count + 1)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter):
    for marker, (why, count) in _DESELECTED.items():
        terminalreporter.write_line(f"tier '{marker}': {count} test(s) deselected: {why}", yellow=True)


@pytest.fixture
def ref_ops_one_thread():
    """Pure-PyTorch ops (no extension build) on one torch thread (the 2 cores are shared)."""
    import torch

    import sg3.ops

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with sg3.ops.use_impl("ref"):
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _sg3_environment_unchanged():
    """Fail a test that leaves an SG3_* environment variable changed: it would leak into every later test
    of the process (e.g. a moved SG3_OPS_CACHE makes the next extension load rebuild from scratch)."""
    before = {k: v for k, v in os.environ.items() if k.startswith("SG3_")}
    yield
    after = {k: v for k, v in os.environ.items() if k.startswith("SG3_")}
    if after != before:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        os.environ.update(before)
        for k in after.keys() - before.keys():
            del os.environ[k]
        pytest.fail(f"the test changed the environment variables {changed} (use monkeypatch.setenv)")
