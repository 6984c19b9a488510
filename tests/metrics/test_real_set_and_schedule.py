"""Spec §6 real-image set (x-flip of the legacy metrics) and §5.3 metric schedule (tick-0 snapshot)."""

from __future__ import annotations

import json

import numpy as np
import torch
from metrics_testkit import FakeData, tiny_generator

from sg3.metrics.feature_metrics import compute_pr
from sg3.metrics.options import MetricOptions
from sg3.metrics.registry import compute
from sg3.metrics.stats import feature_moments


def _moments(det, images):
    with torch.no_grad():
        return feature_moments(det(images).double().numpy())


def test_legacy_metrics_use_the_xflip_doubled_dataset_and_full_ones_do_not(tmp_path, detectors):
    det = detectors["inception"]
    G, data = tiny_generator(), FakeData(count=12)
    data.mirror = True  # training with x-flips (data.mirror=true / official --mirror)
    kw = dict(data=data, detectors=detectors, cache_dir=tmp_path, progress=False, batch_size=8)
    compute("fid24", G, **kw)  # legacy: 24 reals from the doubled set of 2 x 12 = all of them
    (legacy,) = tmp_path.glob("*.npz")
    doubled = torch.cat([data.images, data.images.flip(3)])  # second half mirrored horizontally
    with np.load(legacy) as f:
        mu, sigma = _moments(det, doubled)
        np.testing.assert_allclose(f["mu"], mu, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(f["sigma"], sigma, rtol=1e-4, atol=1e-6)
    compute("fid24_full", G, **kw)  # *_full: xflip=False, a different cache entry
    (full,) = set(tmp_path.glob("*.npz")) - {legacy}
    with np.load(full) as f:
        np.testing.assert_allclose(f["mu"], _moments(det, data.images)[0], rtol=1e-5, atol=1e-6)
    assert _real_rows(tmp_path, "kid24", G, kw) == 24  # kid/pr legacy variants respect xflip too
    opts = MetricOptions(G=G, **{k: v for k, v in kw.items() if k != "detectors"}, detectors=detectors)
    before = set(tmp_path.glob("*.npz"))
    compute_pr(8, 20, 3, opts, xflip=True)  # pr{N}k{K}: N reals drawn from the doubled set
    (new,) = set(tmp_path.glob("*.npz")) - before
    with np.load(new) as f:
        assert f["features"].shape[0] == 20
    assert _real_rows(tmp_path, "kid24_full", G, kw) == 12
    # Without x-flips the legacy metric's cache entry is the unflipped set (the key changes with xflip).
    data.mirror = False
    before = set(tmp_path.glob("*.npz"))
    compute("fid24", G, **kw)
    (plain,) = set(tmp_path.glob("*.npz")) - before
    with np.load(plain) as f:
        np.testing.assert_allclose(f["mu"], _moments(det, data.images)[0], rtol=1e-5, atol=1e-6)


def _real_rows(tmp_path, name, G, kw):
    before = set(tmp_path.glob("*.npz"))
    compute(name, G, **kw)
    (new,) = set(tmp_path.glob("*.npz")) - before
    with np.load(new) as f:
        return f["features"].shape[0]


def test_cli_mirror_reaches_the_legacy_metrics_and_is_looked_up_in_the_run_config(tmp_path, monkeypatch):
    import sg3.metrics.cli as cli
    from sg3.data.demo import ensure_demo_dataset
    from sg3.io import save_generator

    net = tmp_path / "run" / "network-snapshot-000000.pt"
    net.parent.mkdir()
    save_generator(net, tiny_generator())
    data = ensure_demo_dataset(root=str(tmp_path / "demo"), resolution=16, count=8)
    seen = []

    def fake_compute(name, G, *, data, **kw):
        seen.append((name, data.mirror))
        return {name: 1.0}

    monkeypatch.setattr(cli, "compute", fake_compute)
    monkeypatch.setattr(cli, "get_detector", lambda kind, opts: None)  # no detector weights here
    base = [f"network={net}", f"data={data}", "progress=false", f"out_dir={tmp_path / 'out'}"]
    assert cli.main([*base, "metrics=[fid50k]", "mirror=true"]) == 0
    assert cli.main([*base, "metrics=[fid50k]"]) == 0  # no run config: not mirrored
    (net.parent / "config.yaml").write_text("data:\n  mirror: true\n")  # the run's config (sg3-train)
    assert cli.main([*base, "metrics=[kid50k]"]) == 0
    assert cli.main([*base, "metrics=[kid50k]", "mirror=false"]) == 0
    assert seen == [("fid50k", True), ("fid50k", False), ("kid50k", True), ("kid50k", False)]


class _Logger:
    def __init__(self):
        self.calls = []

    def log_metrics(self, metrics, step):
        self.calls.append((step, metrics))


def test_metrics_run_at_the_tick_0_snapshot_and_once_across_a_resume(tmp_path):
    """Spec §5.3: maintenance runs on the first iteration (tick 0): a network snapshot, then its metrics."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
    from training_helpers import reals, tiny_module

    from sg3.metrics.callback import MetricsCallback

    module = tiny_module(["kimg_per_tick=0.008", "snap=2"])  # batch 4; snapshots at ticks 0, 2, 4, ...
    logger = _Logger()
    trainer = SimpleNamespace(global_rank=0, world_size=1, loggers=[logger], default_root_dir=str(tmp_path),
                              datamodule=None)  # fmt: skip

    def make():
        return MetricsCallback(["eqt4_int"], every_kimg=module.derived["snapshot_kimg"], progress=False)

    cb = make()
    module.training_step(reals(), module.batch_idx)
    assert module.tick_info["tick"] == 0 and module.tick_info["snapshot"]
    saved = cb.state_dict()  # the tick-0 checkpoint is written before the metrics of that step run
    cb.on_train_batch_end(trainer, module, None, None, 0)
    path = tmp_path / "metric-eqt4_int.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    assert len(lines) == 1 and json.loads(lines[0])["kimg"] == 0.004
    assert [s for s, _ in logger.calls] == [1]
    # A run resumed from the tick-0 checkpoint finds the result recorded and does not repeat it; without the
    # record it computes it at its first step.
    for recorded in (True, False):
        if not recorded:
            path.unlink()
        resumed = make()
        resumed.load_state_dict(saved)
        module.cur_nimg = 8  # the resumed run's first step
        resumed.on_train_batch_end(trainer, module, None, None, 1)
        assert len(path.read_text().splitlines()) == 1
        assert resumed.state_dict() == {"done": 0}
