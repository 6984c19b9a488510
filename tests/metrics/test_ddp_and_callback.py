"""Sharded metric sampling on 2 gloo processes equals a single-process run; the training callback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from metrics_testkit import FakeData, TinyDetector, tiny_generator

from sg3.metrics.callback import MetricsCallback

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world_size: int, out: Path, cache: Path) -> list:
    """Run ddp_worker.py on `world_size` gloo processes; returns the per-rank results."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "MASTER_PORT")
    }
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE=str(world_size),
        OMP_NUM_THREADS="1",
    )
    procs = [
        subprocess.Popen([sys.executable, str(HERE / "ddp_worker.py"), str(out), str(cache)],
                         env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stderr=subprocess.PIPE, text=True)
        for r in range(world_size)
    ]  # fmt: skip
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    return json.loads(out.read_text())


def test_two_gloo_ranks_match_a_single_process(tmp_path):
    two = _launch(2, tmp_path / "two.json", tmp_path / "cache2")
    assert two[0] == two[1]  # every rank ends with the same numbers
    (one,) = _launch(1, tmp_path / "one.json", tmp_path / "cache1")
    assert two[0] == one  # exact equality: same batches, same order, same sums
    assert one["eqt8_int"] > 40 and one["fid16_full"] > 0


class _Logger:
    def __init__(self):
        self.calls = []

    def log_metrics(self, metrics, step):
        self.calls.append((step, metrics))


def test_callback_computes_every_n_kimg_logs_and_appends_jsonl(tmp_path):
    G = tiny_generator()
    logger = _Logger()
    trainer = SimpleNamespace(global_rank=0, world_size=1, loggers=[logger], default_root_dir=str(tmp_path),
                              datamodule=FakeData(count=16))  # fmt: skip
    module = SimpleNamespace(G_ema=G, cur_nimg=0, batch_idx=0, global_step=0)
    cb = MetricsCallback(["eqt4_int", "fid16_full"], every_kimg=0.008, progress=False, cache_dir=tmp_path,
                         detectors={"inception": TinyDetector()})  # fmt: skip
    for nimg, step in [(4, 1), (8, 2), (12, 3), (16, 4)]:
        # Lightning's global_step counts optimizer steps (G and D: twice the training steps)
        module.cur_nimg, module.batch_idx, module.global_step = nimg, step, 2 * step
        cb.on_train_batch_end(trainer, module, None, None, step)
    # The first step (the tick-0 snapshot), then every interval; at the training step, where the tick
    # statistics are.
    assert [s for s, _ in logger.calls] == [1, 2, 4]
    assert set(logger.calls[0][1]) == {"Metrics/eqt4_int", "Metrics/fid16_full"}
    lines = [json.loads(x) for x in (tmp_path / "metric-eqt4_int.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["metric"] == "eqt4_int" and lines[2]["kimg"] == pytest.approx(0.016)
    assert lines[0]["results"]["eqt4_int"] == logger.calls[0][1]["Metrics/eqt4_int"] > 40
    assert cb.state_dict()["done"] == 2
    # A resume from a checkpoint of the interval-only schedule written in the step that made interval 2 due
    # (before the metrics ran, state done=1) finds both results recorded and appends nothing; with one
    # record missing, computes only that metric.
    for missing in ([], ["fid16_full"]):
        for name in missing:
            path = tmp_path / f"metric-{name}.jsonl"
            path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
        resumed = MetricsCallback(["eqt4_int", "fid16_full"], every_kimg=0.008, progress=False,
                                  cache_dir=tmp_path, detectors={"inception": TinyDetector()})  # fmt: skip
        resumed.load_state_dict({"done": 1})
        logger.calls.clear()
        module.cur_nimg, module.batch_idx = 16, 4  # restored
        resumed.on_train_start(trainer, module)
        module.cur_nimg, module.batch_idx = 20, 5
        resumed.on_train_batch_end(trainer, module, None, None, 5)
        assert [set(c) for _, c in logger.calls] == ([{f"Metrics/{m}" for m in missing}] if missing else [])
        assert resumed.state_dict()["done"] == 2
    counts = {
        m: len((tmp_path / f"metric-{m}.jsonl").read_text().splitlines()) for m in ("eqt4_int", "fid16_full")
    }
    assert counts == {"eqt4_int": 3, "fid16_full": 3}
    with pytest.raises(ValueError, match="unknown metric 'fid'"):
        MetricsCallback(["fid"], every_kimg=1)
    with pytest.raises(ValueError, match="every_kimg must be a positive"):
        MetricsCallback(["eqr1k"], every_kimg=None)
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))
