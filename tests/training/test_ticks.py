"""Tick accounting and stats.jsonl contents (spec 5.3), driven without a Trainer and with a fake clock."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from training_helpers import reals, tiny_module

import sg3.training.module as module_mod
from sg3.training.callbacks import TickLogger


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def time(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(module_mod, "time", fake)
    return fake


def step(module, clock, train_sec: float, maintenance_sec: float = 0.0) -> dict:
    """One training step taking `train_sec`, then the callbacks' work taking `maintenance_sec`."""
    clock.t += train_sec  # the clock only moves where we say so
    module.training_step(reals(), module.batch_idx)
    info = module.tick_info
    clock.t += maintenance_sec
    module.on_train_batch_end(None, None, module.batch_idx)
    return info


def test_tick_timing_excludes_maintenance_like_the_official_loop(clock):
    """sec_per_tick/sec_per_kimg measure training only; the previous tick's snapshot/grid/metric work is
    reported as Timing/maintenance_sec (spec 5.3)."""
    module = tiny_module(["kimg_per_tick=0.008"])  # batch 4: a tick every 2 steps
    module._start_time = module._tick_start_time = clock.t
    first = step(module, clock, 1.0, maintenance_sec=30.0)  # tick 0, followed by 30 s of snapshots/metrics
    assert first["scalars"]["Timing/sec_per_tick"] == pytest.approx(1.0)
    assert step(module, clock, 2.0) is None  # not a tick
    second = step(module, clock, 3.0)
    s = second["scalars"]
    assert second["tick"] == 1
    assert s["Timing/sec_per_tick"] == pytest.approx(5.0)  # 2 + 3 s of training, not the 30 s of maintenance
    assert s["Timing/sec_per_kimg"] == pytest.approx(5.0 / 0.008)
    assert s["Timing/maintenance_sec"] == pytest.approx(30.0)
    assert s["Timing/total_sec"] == pytest.approx(36.0)
    assert s["Timing/total_hours"] == pytest.approx(36.0 / 3600)
    assert s["Timing/total_days"] == pytest.approx(36.0 / 86400)


def test_checkpoint_between_ticks_is_not_training_time(clock):
    module = tiny_module(["kimg_per_tick=0.012", "checkpoint_kimg=0.008"])
    module._start_time = module._tick_start_time = clock.t
    step(module, clock, 1.0)  # tick 0
    assert step(module, clock, 1.0, maintenance_sec=10.0)["tick"] is None  # 0.008 kimg: a checkpoint only
    assert step(module, clock, 1.0) is None
    info = step(module, clock, 1.0)  # 0.016 kimg = tick 0's 0.004 + 0.012: tick 1
    assert info["tick"] == 1
    assert info["scalars"]["Timing/sec_per_tick"] == pytest.approx(3.0)
    assert info["scalars"]["Timing/maintenance_sec"] == pytest.approx(10.0)


def test_stats_jsonl_has_every_official_progress_timing_and_resource_stat(tmp_path):
    module = tiny_module()
    module.training_step(reals(), 0)
    trainer = SimpleNamespace(is_global_zero=True, loggers=[])
    TickLogger(str(tmp_path)).on_train_batch_end(trainer, module, None, None, 0)
    (line,) = (tmp_path / "stats.jsonl").read_text().splitlines()
    record = json.loads(line)
    names = (
        "Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty", "Loss/D/reg", "Loss/scores/real", "Loss/signs/real",
        "Loss/scores/fake", "Loss/signs/fake", "Progress/tick", "Progress/kimg", "Progress/augment",
        "Timing/total_sec", "Timing/sec_per_tick", "Timing/sec_per_kimg", "Timing/maintenance_sec",
        "Timing/total_hours", "Timing/total_days", "Resources/cpu_mem_gb",
    )  # fmt: skip
    for name in names:
        assert set(record[name]) == {"num", "mean", "std"}, name
    assert record["Progress/kimg"]["mean"] == pytest.approx(0.004)
    assert record["Loss/G/loss"]["num"] == 4  # the per-sample statistics keep their counts
    assert isinstance(record["timestamp"], float)
