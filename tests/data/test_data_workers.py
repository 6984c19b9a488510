"""data.num_workers: 'auto' follows the CPUs this process may use (capped at the official --workers=3)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import yaml

from sg3.data.datamodule import ShardDataModule, auto_num_workers

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"


@pytest.fixture
def cpus(monkeypatch):
    """cpus(n): this process may run on n CPUs (its affinity mask; torch's DataLoader check reads it too)."""

    def _set(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return _set


@pytest.mark.parametrize(("n", "workers"), [(1, 0), (2, 1), (3, 2), (4, 3), (64, 3)])
def test_auto_leaves_a_cpu_to_training_and_caps_at_three(cpus, n, workers):
    cpus(n)
    assert auto_num_workers() == workers


def test_shards_config_default_does_not_overcommit_a_two_cpu_machine(cpus, make_shards):
    cpus(2)
    default = yaml.safe_load((CONF / "shards.yaml").read_text())["num_workers"]
    dm = ShardDataModule(make_shards(8, 4), batch_size=2, num_workers=default)
    assert dm.num_workers == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when workers exceed the CPUs of the affinity mask
        dm.train_dataloader()


def test_explicit_number_wins_and_bad_values_are_named(cpus, make_shards):
    cpus(2)
    urls = make_shards(8, 4)
    assert ShardDataModule(urls, batch_size=2, num_workers=5).num_workers == 5
    assert ShardDataModule(urls, batch_size=2).num_workers == 1  # the constructor default is auto too
    for bad in (-1, "three", 1.5, True):
        with pytest.raises(ValueError, match="num_workers"):
            ShardDataModule(urls, batch_size=2, num_workers=bad)
