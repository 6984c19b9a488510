"""True resume in process: a run stopped at an awkward step and resumed ends bit-identical to an
uninterrupted one.

The data module here is resumable by construction (batch i is a function of i), so every difference
comes from the training state: networks, G_ema, optimisers, ADA p and its running sums, the path-length
mean, counters, the global RNGs, the label generator and the tick bookkeeping.
"""

from __future__ import annotations

import io
import random
import time

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset
from training_helpers import compose_plain

from sg3.data.datamodule import ShardDataModule
from sg3.training import callbacks as cb
from sg3.training.checkpoint import AtomicCheckpointIO, checkpoint_path, latest_checkpoint
from sg3.training.module import StyleGAN3Module

BATCH, RES, C_DIM = 4, 16, 3


class _Batches(IterableDataset):
    def __init__(self, start: int, c_dim: int) -> None:
        self.start, self.c_dim = start, c_dim

    def __iter__(self):
        i = self.start
        while True:
            g = torch.Generator().manual_seed(1000 + i)
            img = torch.randint(0, 256, [BATCH, 3, RES, RES], dtype=torch.uint8, generator=g)
            c = torch.nn.functional.one_hot(torch.arange(i, i + BATCH) % self.c_dim, self.c_dim).float()
            yield img, c
            i += 1


class CountingData(L.LightningDataModule):
    """Batch i is fixed by i; the checkpoint holds the number of batches consumed (exact resume)."""

    def __init__(self, c_dim: int) -> None:
        super().__init__()
        self.c_dim, self.start = c_dim, 0
        self.index = {"class_counts": [1, 2, 3][:c_dim]}

    def train_dataloader(self):
        return DataLoader(_Batches(self.start, self.c_dim), batch_size=None, num_workers=0)

    def state_dict(self):
        return {"next": self.trainer.lightning_module.batch_idx}

    def load_state_dict(self, state):
        self.start = int(state["next"])

    sample_labels = ShardDataModule.sample_labels


class StopAt(L.Callback):
    """Asks Snapshots to save and stop after `steps` steps, as SIGTERM does."""

    def __init__(self, snaps: cb.Snapshots, steps: int) -> None:
        self.snaps, self.steps = snaps, steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.batch_idx == self.steps:
            self.snaps._signal = "SIGTERM"


class Record(L.Callback):
    """Keeps every tick's summary and when each step ended."""

    def __init__(self) -> None:
        self.ticks: dict[int, dict] = {}
        self.ends: dict[int, float] = {}
        self.fit_start = 0.0

    def on_fit_start(self, trainer, pl_module):
        self.fit_start = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends[pl_module.batch_idx] = time.time()
        info = pl_module.tick_info
        if info and "scalars" in info:
            self.ticks[pl_module.batch_idx] = info


def overrides(steps: int) -> list[str]:
    return [
        "model=tiny", f"batch={BATCH}", "loss.r1_gamma=1", "data.urls=unused", "logger=none",
        f"total_kimg={steps * BATCH / 1000}", "kimg_per_tick=0.012", "optim.D_reg_interval=3",
        "snap=1000", "checkpoint_kimg=1000",
        # ADA reacting fast, target near the real r_t: whether p moves depends on the accumulated signs.
        "augment.kimg=0.1", "augment.target=0.1",
    ]  # fmt: skip


def fit(
    tmp_path,
    steps: int,
    stop_at: int | None = None,
    resume: bool = False,
    extra: tuple[str, ...] = (),
    more=(),
):
    plain = compose_plain(overrides(steps) + list(extra), resolution=RES, c_dim=C_DIM)
    torch.manual_seed(0)
    module = StyleGAN3Module(plain)
    snaps = cb.Snapshots(str(tmp_path), keep=0)
    record = Record()
    grids = cb.ImageGrids(str(tmp_path), gw=2, gh=3)
    callbacks = ([StopAt(snaps, stop_at)] if stop_at else []) + [snaps, record, grids, *more]
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, callbacks=callbacks, default_root_dir=str(tmp_path),
        plugins=[AtomicCheckpointIO()], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, max_epochs=-1, max_steps=-1, num_sanity_val_steps=0,
    )  # fmt: skip
    ckpt = str(latest_checkpoint(tmp_path)) if resume else None
    trainer.fit(module, datamodule=CountingData(C_DIM), ckpt_path=ckpt, weights_only=True)
    rngs = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    return module, trainer, record, rngs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    # Stopped after 6 steps: mid-tick (ticks end after steps 1, 4, 7), mid ADA interval (p moves after
    # steps 4 and 8) and right before a lazy R1 step (the 7th step: batch_idx 6 % 3 == 0).
    steps, stop = 8, 6
    full = fit(tmp_path_factory.mktemp("full"), steps)
    split_dir = tmp_path_factory.mktemp("split")
    first = fit(split_dir, steps, stop_at=stop)
    assert first[0].batch_idx == stop
    resumed = fit(split_dir, steps, resume=True)
    return full, first, resumed, split_dir


def test_networks_optimisers_ada_and_counters_continue_bit_exactly(runs):
    (full, full_tr, _, _), _, (res, res_tr, _, _), _ = runs
    assert (res.cur_nimg, res.batch_idx, res.cur_tick, res.tick_start_nimg) == (
        full.cur_nimg, full.batch_idx, full.cur_tick, full.tick_start_nimg,
    )  # fmt: skip
    a, b = full.state_dict(), res.state_dict()
    assert a.keys() == b.keys()
    assert float(a["augment_pipe.p"]) > 0  # ADA moved
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
    assert a["ada._extra_state"]["last_rt"] == b["ada._extra_state"]["last_rt"]
    assert torch.equal(a["ada._extra_state"]["stats"], b["ada._extra_state"]["stats"])
    for oa, ob in zip(full_tr.optimizers, res_tr.optimizers):
        sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            for name in sa[i]:
                assert torch.equal(sa[i][name], sb[i][name]), (i, name)


def test_rngs_and_label_generator_continue(runs):
    (full, _, _, rng_a), _, (res, _, _, rng_b), _ = runs
    assert torch.equal(rng_a[0], rng_b[0])
    assert (
        rng_a[1][0] == rng_b[1][0]
        and np.array_equal(rng_a[1][1], rng_b[1][1])
        and rng_a[1][2:] == rng_b[1][2:]
    )
    assert rng_a[2] == rng_b[2]
    assert torch.equal(full._label_gen.get_state(), res._label_gen.get_state())


def test_the_tick_across_the_stop_reports_the_whole_tick(runs):
    (_, _, full_rec, _), _, (_, _, res_rec, _), split_dir = runs
    # Ticks end after steps 1, 4, 7 and 8 (done): the one at 7 spans the stop after step 6.
    assert sorted(full_rec.ticks) == [1, 4, 7, 8] and sorted(res_rec.ticks) == [7, 8]
    a, b = full_rec.ticks[7], res_rec.ticks[7]
    assert a["tick"] == b["tick"] == 2
    assert a["stats"].keys() == b["stats"].keys()
    for name in a["stats"]:
        assert a["stats"][name]["num"] == b["stats"][name]["num"], name
        assert a["stats"][name]["mean"] == pytest.approx(b["stats"][name]["mean"], rel=1e-9, abs=1e-12), name
    # Timing continues the tick's seconds before the stop (saved in the checkpoint) and Timing/total_sec the
    # run's, instead of restarting at the resume.
    saved = torch.load(checkpoint_path(split_dir, 6 * BATCH), weights_only=True)["sg3"]["tick"]
    assert saved["tick_sec"] > 0 and saved["total_sec"] > saved["tick_sec"]
    since_resume = res_rec.ends[7] - res_rec.fit_start
    s = b["scalars"]
    assert s["Timing/sec_per_tick"] == pytest.approx(saved["tick_sec"] + since_resume, abs=0.3)
    assert s["Timing/sec_per_kimg"] == pytest.approx(s["Timing/sec_per_tick"] / (3 * BATCH / 1000))
    assert s["Timing/total_sec"] == pytest.approx(saved["total_sec"] + since_resume, abs=0.3)
    assert s["Timing/maintenance_sec"] >= saved["maintenance_sec"]


def test_grids_keep_their_latents_and_labels(runs):
    (full, full_tr, _, _), _, (res, res_tr, _, _), split_dir = runs
    a, b = (next(c for c in t.callbacks if isinstance(c, cb.ImageGrids)) for t in (full_tr, res_tr))
    assert torch.equal(a.z, b.z) and torch.equal(a.c, b.c)
    assert a.c.argmax(1).tolist() == [0, 0, 1, 1, 2, 2]  # one class per row
    assert np.array_equal(a.fakes(full), b.fakes(res))
    assert (a.folder / "fakes000000.png").read_bytes() == (b.folder / "fakes000000.png").read_bytes()
    assert b.folder == split_dir / "images" and not any(p.name == "fakes_init.png" for p in b.files)


def test_optimiser_overrides_given_on_resume_take_effect(tmp_path):
    """docs/training.md: overrides given when resuming (e.g. a new learning rate) take effect; the
    optimiser moments continue."""
    fit(tmp_path, 2, stop_at=1)
    extra = ("optim.dlr=0.001", "optim.glr=0.003", "optim.betas=[0.5,0.9]", "optim.eps=1e-6")
    res, res_tr = fit(tmp_path, 2, resume=True, extra=extra)[:2]
    assert res.batch_idx == 2
    assert res.derived["D_opt"]["lr"] == pytest.approx(0.001 * 3 / 4)  # lazy R1 every 3 steps
    # Adam steps over the two iterations (moments continue): G 2 (Gboth), D 3 (Dmain twice, Dreg at step 0;
    # some D parameters get no R1 gradient).
    for opt, want, steps in zip(res_tr.optimizers, (res.derived["G_opt"], res.derived["D_opt"]), (2, 3)):
        group = opt.param_groups[0]
        assert group["lr"] == want["lr"] and tuple(group["betas"]) == tuple(want["betas"])
        assert group["eps"] == want["eps"] == 1e-6
        assert max(float(st["step"]) for st in opt.state_dict()["state"].values()) == steps


def test_resuming_a_finished_run_trains_no_further_step(tmp_path):
    fit(tmp_path, 2)
    res = fit(tmp_path, 2, resume=True)[0]
    assert res.batch_idx == 2 and res.cur_nimg == 2 * BATCH
    res = fit(tmp_path, 1, resume=True)[0]  # total_kimg lowered below the progress
    assert res.batch_idx == 2


class GridProbe(L.Callback):
    """At the first step: images/fakes000000.png's bytes (b'' if missing) and the restored G_ema's grid."""

    def __init__(self) -> None:
        self.found: bytes | None = None
        self.expected: np.ndarray | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.found is None:
            grids = next(c for c in trainer.callbacks if isinstance(c, cb.ImageGrids))
            path = grids.folder / "fakes000000.png"
            self.found = path.read_bytes() if path.is_file() else b""
            self.expected = grids.fakes(pl_module)


def test_a_grid_lost_after_its_checkpoint_is_redrawn_on_resume(tmp_path):
    """Spec 5.3: a killed process can leave the checkpoint of a grid step without that step's
    fakes{kimg:06d}.png (checkpoints are written first); the resume draws it from the restored G_ema."""
    from PIL import Image

    fakes = tmp_path / "images" / "fakes000000.png"
    fit(tmp_path, 3, stop_at=1)  # the checkpoint after step 1 = tick 0, a grid step
    fakes.unlink()
    probe = GridProbe()
    fit(tmp_path, 3, stop_at=2, resume=True, more=[probe])
    assert probe.found, "the grid of the checkpoint's step was not redrawn before training continued"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(probe.found))), probe.expected)
    fakes.unlink()  # the checkpoint after step 2 is not a grid step: nothing to redraw
    probe = GridProbe()
    fit(tmp_path, 3, resume=True, more=[probe])
    assert probe.found == b""
