"""The training step never waits for the device: no operation that makes CUDA synchronise with the host.

On CUDA these operations copy a device value to the host (`.item()`, `float(t)`, `bool(t)`, `if t:`) or
need a data-dependent output size (`nonzero`, boolean masks, `unique`, ...), so the CPU stalls until the GPU
has caught up and kernel launches stop overlapping the GPU's work. A TorchDispatchMode sees every aten
operation of the step on the CPU too, so this tier checks the rule without a GPU (the gpu tier checks it
again with `torch.cuda.set_sync_debug_mode`). Steps that close a tick may read values for the log.
"""

from __future__ import annotations

import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from training_helpers import reals, tiny_module

from sg3.training.stats import StatCollector

aten = torch.ops.aten
SYNCING = {
    aten._local_scalar_dense.default,  # .item(), float(t), int(t), bool(t), `if t:`
    aten.nonzero.default,
    aten.nonzero_static.default,
    aten.masked_select.default,
    aten.unique_dim.default,
    aten._unique2.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
    aten.is_nonzero.default,
    aten.equal.default,
    aten.allclose.default,
}


def _caller() -> str:
    """The innermost frame of sg3's own code (file:line function) that led to the current operation."""
    frames = [f for f in traceback.extract_stack() if "/sg3/" in f.filename.replace("\\", "/")]
    return (
        f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} {frames[-1].name}" if frames else "?"
    )


def _in_optimizer() -> bool:
    return any("/torch/optim/" in f.filename.replace("\\", "/") for f in traceback.extract_stack())


class SyncProbe(TorchDispatchMode):
    """Records the syncing aten operations (and indexing with boolean masks) run inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []
        self.calls = 0  # aten operations seen

    def __enter__(self):
        # Tensor.tolist() reads the data directly, without an aten operation: watch it by hand.
        self._tolist = torch.Tensor.tolist
        probe = self

        def tolist(t):
            probe.hits.append(f"tolist at {_caller()}")
            return probe._tolist(t)

        torch.Tensor.tolist = tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls += 1
        if func in (aten.lift_fresh.default, aten.lift_fresh_copy.default):
            self.hits.append(f"tensor from host data at {_caller()}")
        if func in SYNCING and not _in_optimizer():
            # (Adam, not capturable, keeps its step counters on the host on CUDA too: reading them is free.)
            self.hits.append(f"{func} at {_caller()}")
        elif func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", [])
            if any(i is not None and i.dtype == torch.bool for i in indices):
                self.hits.append(f"{func} with a boolean mask at {_caller()}")
        return func(*args, **kwargs)


def test_probe_sees_item_and_masks():
    """The probe is not blind: the usual culprits are reported."""
    x = torch.randn(8)
    with SyncProbe() as probe:
        float(x.sum())
        x[x > 0].sum()
        torch.nonzero(x)
        if x.max() > 10:
            pass
    assert len(probe.hits) == 4, probe.hits


def test_stat_collector_report_is_sync_free():
    stats = StatCollector()
    with SyncProbe() as probe:
        for _ in range(3):
            stats.report("Loss/G/loss", torch.randn(4, 1))
            stats.report("Grad/G/nonfinite", torch.zeros([]))
    assert probe.hits == []
    assert stats.summarize()["Loss/G/loss"]["num"] == 12


@pytest.mark.parametrize(
    "extra",
    [
        ["augment=ada", "augment.p=0.5", "augment.interval=2"],  # ADA with every augmentation group active
        ["model=stylegan3-r", "model.cbase=256", "model.cmax=16", "model.z_dim=16", "model.w_dim=16",
         "model.map_depth=1", "augment=none", "loss.blur_init_sigma=2", "loss.blur_fade_kimg=100"],
    ],
    ids=["t-ada", "r-blur"],
)  # fmt: skip
def test_training_steps_between_ticks_do_not_sync(extra):
    """Steps 1..5 (Gmain, Dmain, lazy R1 every 2nd step, G_ema, ADA's update) run no syncing operation.

    The one exception is deliberate: the geometric augmentation reads its padding (the reach of this batch's
    transforms) once per call, as the official pipeline does; a fixed worst-case padding would cost more.
    """
    module = tiny_module(["kimg_per_tick=1000", "optim.D_reg_interval=2", *extra])
    augment_calls = []
    if module.augment_pipe is not None:
        module.augment_pipe.register_forward_hook(lambda *args: augment_calls.append(1))
    module.training_step(reals(), 0)  # closes tick 0 (reads the statistics for the log)
    assert module.tick_info is not None
    for step in range(1, 6):
        augment_calls.clear()
        with SyncProbe() as probe:
            module.training_step(reals(seed=step), step)
        assert module.tick_info is None
        padding_reads = [h for h in probe.hits if h.startswith("tolist at augment.py") and "_resample" in h]
        assert [h for h in probe.hits if h not in padding_reads] == [], f"step {step}: {probe.hits}"
        assert len(padding_reads) == len(augment_calls)
        assert augment_calls or module.augment_pipe is None
    assert [p for p, _ in module.derived["phases"]] == ["Gmain", "Dmain", "Dreg"]


@pytest.mark.gpu
@pytest.mark.parametrize("augment", ["none", "ada"])
def test_training_steps_between_ticks_do_not_sync_on_cuda(augment):
    """On CUDA (gpu tier), with torch's own sync detector: no synchronisation between ticks, except the
    geometric augmentation's padding read (one per augmentation call)."""
    import warnings

    extra = ["augment.p=0.5", "augment.interval=2"] if augment == "ada" else []
    module = tiny_module(["kimg_per_tick=1000", "optim.D_reg_interval=2", f"augment={augment}", *extra])
    device = torch.device("cuda", torch.cuda.current_device())
    module = module.to(device)
    augment_calls = []
    if module.augment_pipe is not None:
        module.augment_pipe.register_forward_hook(lambda *args: augment_calls.append(1))
    module.training_step(reals(), 0)
    torch.cuda.synchronize()
    for step in range(1, 5):
        augment_calls.clear()
        batch = [t.to(device) for t in reals(seed=step)]  # Lightning moves the batch before the step
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                module.training_step(batch, step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
        assert len(syncs) == len(augment_calls), f"step {step}: {syncs}"
        assert module.tick_info is None


def test_lightning_steps_between_ticks_do_not_sync(tmp_path, monkeypatch):
    """Whole Lightning steps (batch hooks, manual optimisation, sg3's callbacks) between ticks: no sync."""
    from lightning.pytorch import Callback
    from training_helpers import build_in_process

    monkeypatch.setenv("SG3_DEMO_CACHE", str(tmp_path / "demo"))
    steps, batch = 6, 4
    parts = build_in_process(
        ["model=tiny", "data.urls=demo:16:32", "data.num_workers=0", f"batch={batch}", "loss.r1_gamma=1",
         "optim.D_reg_interval=2", "augment=none", f"total_kimg={steps * batch / 1000}", "kimg_per_tick=1000",
         "grid.gw=2", "grid.gh=2"],
        tmp_path,
    )  # fmt: skip
    model, trainer = parts["model"], parts["trainer"]
    state = {"probe": None, "hits": {}}

    class Enter(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx > 0:
                state["probe"] = SyncProbe().__enter__()

    class Leave(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            probe, state["probe"] = state["probe"], None
            if probe is not None:
                probe.__exit__(None, None, None)
                if pl_module.tick_info is None:
                    assert probe.calls > 1000, probe.calls  # the probe saw the step's operations
                    state["hits"][batch_idx] = probe.hits

    trainer.callbacks.insert(0, Enter())
    trainer.callbacks.append(Leave())
    trainer.fit(model, datamodule=parts["datamodule"])
    assert model.batch_idx == steps
    assert sorted(state["hits"]) == [1, 2, 3, 4]  # step 0 and the last step close ticks
    assert all(hits == [] for hits in state["hits"].values()), state["hits"]
