"""CPU threads per process: the `threads` setting, OMP_NUM_THREADS, affinity masks and the process share."""

from __future__ import annotations

import os

import pytest
import torch

from sg3.training import threads as th


@pytest.fixture
def machine(monkeypatch):
    """A fake 8-CPU machine; returns a setter for this process's affinity mask size."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    mask = {"n": 8}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(mask["n"])))
    return lambda n: mask.update(n=n)


def test_auto_shares_the_cpus_between_the_processes_of_a_node(machine):
    assert th.choose_threads("auto", 1)[0] == 8
    assert th.choose_threads("auto", 2) == (4, "auto: 8 CPUs / 2 process(es) on this node")
    assert th.choose_threads("auto", 16)[0] == 1


def test_auto_uses_a_process_own_affinity_mask_whole(machine):
    machine(3)  # e.g. SLURM bound this task to its --cpus-per-task=3 CPUs
    assert th.choose_threads("auto", 2) == (3, "auto: 3 CPUs in this process's affinity mask")


def test_explicit_settings_and_environment(machine, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert th.choose_threads("auto", 1) == (3, "OMP_NUM_THREADS=3")
    assert th.choose_threads(1, 1) == (1, "threads=1")  # the config wins over the environment
    assert th.choose_threads(None, 2)[0] is None
    for bad in (0, -2, "many", True, 1.5):
        with pytest.raises(ValueError, match="threads="):
            th.choose_threads(bad, 1)


def test_apply_sets_torch_and_the_environment_for_child_processes(machine, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # so that monkeypatch restores the variable afterwards
    before = torch.get_num_threads()
    try:
        assert th.apply_threads("auto", 8) == 1
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
