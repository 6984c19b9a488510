"""Spec §6 real-image set (x-flip of the legacy metrics) and §5.3 metric schedule (tick-0 snapshot)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from metrics_testkit import FakeData, tiny_generator

from sg3.metrics.callback import MetricsCallback
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
    opts = MetricOptions(G=G, **{k: v for k, v in kw.items() if k != "detectors"}, detectors=detectors,
                         xflip=True)  # fmt: skip
    before = set(tmp_path.glob("*.npz"))
    compute_pr(8, 20, 3, opts)  # pr{N}k{K}: N reals drawn from the doubled set
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


def test_the_feature_metrics_take_xflip_from_their_options_only(tmp_path, detectors):
    """compute_fid/kid/pr took an `xflip` argument besides MetricOptions.xflip: two sources of one fact, and
    MetricOptions(xflip=True) given to them directly was ignored (the real set was not doubled)."""
    import inspect

    from sg3.metrics.feature_metrics import compute_fid, compute_kid

    for fn in (compute_fid, compute_kid, compute_pr):
        assert "xflip" not in inspect.signature(fn).parameters, fn.__name__
    G, data = tiny_generator(), FakeData(count=6)
    kw = dict(data=data, detectors=detectors, cache_dir=tmp_path, progress=False, batch_size=8)
    opts = MetricOptions(G=G, **kw, xflip=True)
    compute_fid(4, None, opts)
    (entry,) = tmp_path.glob("*.npz")
    doubled = torch.cat([data.images, data.images.flip(3)])
    with np.load(entry) as f:
        np.testing.assert_allclose(
            f["mu"], _moments(detectors["inception"], doubled)[0], rtol=1e-5, atol=1e-6
        )


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


def _tiny_training(tmp_path, extra):
    sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
    from training_helpers import reals, tiny_module

    module = tiny_module(extra)
    trainer = SimpleNamespace(global_rank=0, world_size=1, loggers=[_Logger()],
                              default_root_dir=str(tmp_path), datamodule=None)  # fmt: skip
    return module, trainer, lambda: module.training_step(reals(), module.batch_idx)


def _records(tmp_path, name="eqt4_int"):
    path = tmp_path / f"metric-{name}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_metrics_run_at_the_tick_0_snapshot_the_later_snapshots_and_the_end(tmp_path):
    """Spec §5.3: maintenance (snapshot, then metrics on its G_ema) at tick 0, every `snap` ticks, the end."""
    # batch 4, a tick every 8 images, snapshots every 2 ticks (16 images), training ends at 40 images:
    # ticks end at 4 (tick 0), 12, 20, 28, 36 and 40 (done); snapshots at 4, 20, 36 and 40.
    module, trainer, step = _tiny_training(tmp_path, ["kimg_per_tick=0.008", "snap=2", "total_kimg=0.04"])
    cb = MetricsCallback(["eqt4_int"], every_kimg=module.derived["snapshot_kimg"], progress=False)
    cb.setup(trainer, module)
    snapshots, evaluated = [], []
    while not module.done:
        step()
        if module.tick_info and module.tick_info["snapshot"]:
            snapshots.append(module.cur_nimg)
            if module.cur_nimg == 20:  # from here on, the snapshot exported at kimg 0 (int(cur_nimg / 1000))
                (tmp_path / "network-snapshot-000000.pt").write_bytes(b"")
        n = len(_records(tmp_path))
        cb.on_train_batch_end(trainer, module, None, None, module.batch_idx)
        evaluated += [module.cur_nimg] * (len(_records(tmp_path)) - n)
    assert snapshots == [4, 20, 36, 40]
    assert evaluated == snapshots  # not at 16 or 32, where the interval is crossed between snapshots
    records = _records(tmp_path)
    assert [r["kimg"] for r in records] == [0.004, 0.02, 0.036, 0.04]
    assert [r.get("snapshot_pkl") for r in records] == [None] + ["network-snapshot-000000.pt"] * 3
    assert [s for s, _ in trainer.loggers[0].calls] == [1, 5, 9, 10]  # the training step of each


def test_a_resume_from_a_snapshot_checkpoint_computes_its_owed_metrics_once(tmp_path):
    """The checkpoint of a snapshot step is written before that step's metrics run."""
    module, trainer, step = _tiny_training(tmp_path, ["kimg_per_tick=0.008", "snap=2"])

    def make():
        return MetricsCallback(["eqt4_int"], every_kimg=module.derived["snapshot_kimg"], progress=False)

    cb = make()
    cb.setup(trainer, module)
    step()
    assert module.tick_info["tick"] == 0 and module.tick_info["snapshot"]
    saved = cb.state_dict()  # the tick-0 checkpoint, written before the metrics of that step run
    cb.on_train_batch_end(trainer, module, None, None, 1)
    assert [r["kimg"] for r in _records(tmp_path)] == [0.004]
    assert cb.state_dict() == {"done": 0, "pending_nimg": None}  # a later save owes nothing
    for recorded in (True, False):  # resumed: the record is there, or was lost with the process
        if not recorded:
            (tmp_path / "metric-eqt4_int.jsonl").unlink()
        resumed = make()
        resumed.load_state_dict(saved)
        module.tick_info = None  # the restored module, before its first step
        resumed.on_train_start(trainer, module)
        assert [r["kimg"] for r in _records(tmp_path)] == [0.004]  # on the snapshot's G_ema, at its kimg
        step()  # the resumed run's first step (a tick end, not a snapshot) owes nothing more
        resumed.on_train_batch_end(trainer, module, None, None, 2)
        assert len(_records(tmp_path)) == 1
        module.cur_nimg, module.batch_idx = 4, 1


def test_metric_evaluation_leaves_the_training_random_streams_alone(tmp_path, detectors):
    from sg3.data.datamodule import ShardDataModule
    from sg3.data.demo import ensure_demo_dataset

    path = ensure_demo_dataset(root=str(tmp_path / "demo"), resolution=16, count=8)
    dm = ShardDataModule(urls=path, batch_size=4, num_workers=0, resolution=16)
    trainer = SimpleNamespace(global_rank=0, world_size=1, loggers=[], default_root_dir=str(tmp_path),
                              datamodule=dm)  # fmt: skip
    module = SimpleNamespace(G_ema=tiny_generator(), cur_nimg=4, batch_idx=1)
    cb = MetricsCallback(["fid8_full"], every_kimg=1, progress=False, cache_dir=tmp_path / "c",
                         detectors=detectors)  # fmt: skip
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    cb.evaluate(trainer, module)  # reads the dataset (a DataLoader draws its base seed from torch's RNG)
    assert torch.equal(torch.random.get_rng_state(), before)
