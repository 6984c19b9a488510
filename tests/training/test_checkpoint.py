"""Checkpoint content (weights-only loadable), file handling, resume resolution and init_from."""

from __future__ import annotations

import io
import os

import pytest
import torch
from training_helpers import reals, tiny_module

from sg3.io import load_generator, save_generator
from sg3.training.checkpoint import (
    AtomicCheckpointIO,
    latest_checkpoint,
    list_checkpoints,
    load_init_weights,
    prune_checkpoints,
    resolve_resume,
)
from sg3.training.module import StyleGAN3Module


def test_checkpoint_state_is_plain_data_and_restores_counters():
    module = tiny_module()
    module.cur_nimg, module.cur_tick, module.batch_idx = 123456, 7, 3858
    module.augment_pipe.p.fill_(0.25)
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)  # no OmegaConf objects, no pickled classes
    sg3 = loaded["sg3"]
    assert sg3["format"] == "sg3-checkpoint" and sg3["networks"]["D"]["kind"] == "discriminator"
    assert sg3["networks"]["G"]["init_kwargs"]["img_resolution"] == 16
    assert sg3["config"]["derived"]["batch"] == 4
    fresh = tiny_module(seed=1)
    fresh.load_state_dict(loaded["state_dict"])
    fresh.on_load_checkpoint(loaded)
    assert (fresh.cur_nimg, fresh.cur_tick, fresh.batch_idx) == (123456, 7, 3858)
    assert float(fresh.augment_pipe.p) == 0.25 and "rng" in sg3 and "ada._extra_state" in loaded["state_dict"]
    with pytest.raises(ValueError, match="no 'sg3' section"):
        fresh.on_load_checkpoint({"state_dict": {}})


def test_atomic_io_and_latest_ignore_partial_files(tmp_path):
    folder = tmp_path / "checkpoints"
    for nimg in (8, 16, 24):
        AtomicCheckpointIO().save_checkpoint({"n": nimg}, folder / f"ckpt-{nimg:09d}.ckpt")
    (folder / "ckpt-000000032.ckpt.tmp-999").write_bytes(b"half")  # an interrupted write
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"ckpt-{n:09d}.ckpt" for n in (8, 16, 24)]
    assert AtomicCheckpointIO().load_checkpoint(latest_checkpoint(tmp_path)) == {"n": 24}
    (folder / f"ckpt-000000040.ckpt.tmp-{os.getpid()}").write_bytes(b"this process writing")
    assert [p.name for p in prune_checkpoints(tmp_path, keep=2)] == ["ckpt-000000008.ckpt"]
    # an earlier process's interrupted write is removed with the pruning; this process's own is not touched
    assert sorted(p.name for p in folder.iterdir()) == [
        "ckpt-000000016.ckpt", "ckpt-000000024.ckpt", f"ckpt-000000040.ckpt.tmp-{os.getpid()}"]  # fmt: skip
    assert resolve_resume("auto", tmp_path).name == "ckpt-000000024.ckpt"
    assert resolve_resume("auto", tmp_path / "elsewhere") is None
    with pytest.raises(ValueError, match="already holds checkpoints"):
        resolve_resume(None, tmp_path)
    with pytest.raises(ValueError, match="no such checkpoint file"):
        resolve_resume(str(tmp_path / "missing.ckpt"), tmp_path)


def test_exported_generator_loads_and_initialises_a_new_run(tmp_path):
    src = tiny_module()
    src.training_step(reals(), 0)
    path = tmp_path / "network-snapshot-000000.pt"
    save_generator(str(path), src.G_ema)
    z = torch.randn(2, 32)
    G = load_generator(str(path))
    assert torch.allclose(G(z, torch.zeros(2, 0)), src.G_ema(z, torch.zeros(2, 0)), atol=1e-6)
    dst = tiny_module(seed=5)
    copied = load_init_weights({"G": dst.G, "D": dst.D, "G_ema": dst.G_ema}, path)
    assert copied["G"] == copied["G_ema"] > 0 and "D" not in copied
    for k, v in src.G_ema.state_dict().items():
        assert torch.equal(dst.G.state_dict()[k], v) and torch.equal(dst.G_ema.state_dict()[k], v)


def test_init_from_logs_the_file_and_the_tensors_copied(tmp_path):
    """An exported generator fills G and G_ema; D keeps all its initial tensors, and the log line says so."""
    from sg3.training.checkpoint import init_weights_summary

    path = tmp_path / "g.pt"
    save_generator(str(path), tiny_module().G_ema)
    dst = tiny_module(seed=5)
    targets = {"G": dst.G, "D": dst.D, "G_ema": dst.G_ema}
    copied = load_init_weights(targets, path)
    n_g, n_d = len(dst.G.state_dict()), len(dst.D.state_dict())
    line = init_weights_summary(path, copied, targets)
    assert line == (
        f"init_from {path}: copied {2 * n_g} tensors (G {n_g}/{n_g}, D 0/{n_d}, G_ema {n_g}/{n_g}); "
        f"{n_d} left at their initial values"
    )


def test_init_from_architecture_mismatch_lists_the_shapes(tmp_path):
    path = tmp_path / "g.pt"
    save_generator(str(path), tiny_module().G_ema)
    other = tiny_module(["model.w_dim=16"])
    with pytest.raises(ValueError, match=r"does not fit the model \(22 tensors differ") as err:
        load_init_weights({"G": other.G, "G_ema": other.G_ema}, path)
    assert "\n  G.mapping.fc0.weight: file [32, 32] vs model [16, 32]" in str(err.value)
    with pytest.raises(ValueError, match="no such file"):
        load_init_weights({"G": other.G}, tmp_path / "nope.pkl")


def test_two_processes_save_their_summed_ada_signs_and_tick_statistics(monkeypatch):
    """Every process accumulates its own ADA signs and tick statistics; the checkpoint (written by rank 0)
    must hold their sums, which rank 0 continues after a resume while the other ranks start at zero, so the
    next all-reduced sums equal the uninterrupted run's. Simulated: the other process holds the same sums."""
    monkeypatch.setattr(StyleGAN3Module, "global_rank", property(lambda self: self.fake_rank))
    monkeypatch.setattr(StyleGAN3Module, "_world", lambda self: 2)
    monkeypatch.setattr(StyleGAN3Module, "_all_reduce_sum", lambda self, t: t * 2)
    monkeypatch.setattr(StyleGAN3Module, "all_gather", _gather_twice)
    module = tiny_module(["augment.target=0.5"])
    module.fake_rank = 0
    module.ada.stats = torch.tensor([3.0, 4.0], dtype=torch.float64)  # this process: 3 of 4 signs positive
    module.stats.report("Loss/D/loss", torch.tensor([1.0, 2.0]))
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    ckpt = torch.load(_round_trip(ckpt), weights_only=True)
    assert ckpt["state_dict"]["ada._extra_state"]["stats"].tolist() == [6.0, 8.0]
    assert ckpt["sg3"]["tick"]["stat_names"] == ["Loss/D/loss"]
    assert ckpt["sg3"]["tick"]["stat_sums"].tolist() == [[4.0, 6.0, 10.0]]
    for rank, share in ((0, 1.0), (1, 0.0)):
        resumed = tiny_module(["augment.target=0.5"], seed=rank + 1)
        resumed.fake_rank = rank
        loaded = torch.load(_round_trip(ckpt), weights_only=True)
        resumed.on_load_checkpoint(loaded)
        resumed.load_state_dict(loaded["state_dict"])
        resumed._restore_tick()
        assert resumed.ada.stats.tolist() == [6.0 * share, 8.0 * share]
        assert resumed.stats.names() == ["Loss/D/loss"]  # every process reports the same names
        assert resumed.stats.moments()["Loss/D/loss"].tolist() == [4.0 * share, 6.0 * share, 10.0 * share]


def _round_trip(obj) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_resuming_from_an_older_checkpoint_sets_the_newer_ones_aside(tmp_path):
    """resume=<older ckpt> branches the run: its checkpoints must not be pruned in favour of the abandoned
    continuation's (more images), and a later resume=auto must continue the resumed branch."""
    from types import SimpleNamespace

    from sg3.training.callbacks import Snapshots

    for nimg in (8, 16, 24):  # the first continuation
        AtomicCheckpointIO().save_checkpoint({"n": nimg}, tmp_path / "checkpoints" / f"ckpt-{nimg:09d}.ckpt")
    snaps = Snapshots(str(tmp_path), keep=2)
    trainer = SimpleNamespace(is_global_zero=True, received_sigterm=False)
    snaps.on_train_start(trainer, SimpleNamespace(cur_nimg=8))  # resumed from ckpt-000000008
    snaps.on_train_end(trainer, None)
    for nimg in (12, 16):  # the resumed branch writes its own
        AtomicCheckpointIO().save_checkpoint(
            {"n": nimg, "branch": 2}, tmp_path / "checkpoints" / f"ckpt-{nimg:09d}.ckpt"
        )
        prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000012.ckpt", "ckpt-000000016.ckpt"]
    assert AtomicCheckpointIO().load_checkpoint(resolve_resume("auto", tmp_path)) == {"n": 16, "branch": 2}
    aside = sorted(p.name for p in (tmp_path / "checkpoints" / "superseded").iterdir())
    assert aside == ["ckpt-000000016.ckpt", "ckpt-000000024.ckpt"]


def test_each_process_resumes_its_own_path_length_mean(monkeypatch):
    """pl_mean (StyleGAN2's path-length EMA) is updated from each process's own samples, so the processes
    hold different values: each must get its own back, not rank 0's."""
    monkeypatch.setattr(StyleGAN3Module, "global_rank", property(lambda self: self.fake_rank))
    monkeypatch.setattr(StyleGAN3Module, "_world", lambda self: 2)
    monkeypatch.setattr(StyleGAN3Module, "_all_reduce_sum", lambda self, t: t * 2)

    def gather(self, data):  # rank 1 holds every tensor + 1
        if isinstance(data, dict):
            return {k: torch.stack([v, v]) for k, v in data.items()}
        return torch.stack([data, data + 1])

    monkeypatch.setattr(StyleGAN3Module, "all_gather", gather)
    module = tiny_module()
    module.fake_rank = 0
    module.loss.pl_mean.fill_(0.25)
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    for rank, want in ((0, 0.25), (1, 1.25)):
        resumed = tiny_module(seed=rank + 1)
        resumed.fake_rank = rank
        loaded = torch.load(_round_trip(ckpt), weights_only=True)
        resumed.on_load_checkpoint(loaded)
        resumed.load_state_dict(loaded["state_dict"])
        assert float(resumed.loss.pl_mean) == want


def _gather_twice(self, data):
    """all_gather as if the other process held the same tensors."""
    if isinstance(data, dict):
        return {k: torch.stack([v, v]) for k, v in data.items()}
    return torch.stack([data, data])


def _saved(module) -> dict:
    """A checkpoint as Lightning writes it (state_dict, optimiser states, sg3 section), round-tripped."""
    ckpt = {
        "state_dict": module.state_dict(),
        "optimizer_states": [o.state_dict() for o in module.optimizers()],
    }
    module.on_save_checkpoint(ckpt)
    return torch.load(_round_trip(ckpt), weights_only=True)


def test_resuming_with_another_model_config_names_what_differs():
    """A checkpoint of another configuration: a ValueError naming the tensors (and settings) that differ,
    also where only the set of trained tensors differs (Freeze-D layers are buffers, the keys stay)."""
    ckpt = _saved(tiny_module())
    with pytest.raises(ValueError, match=r"freeze_layers: 0 in the checkpoint, 2 now") as err:
        tiny_module(["freeze_d=2"]).on_load_checkpoint(ckpt)
    assert "D optimiser" in str(err.value)
    with pytest.raises(ValueError, match=r"G\.mapping\.fc0\.weight: checkpoint \[32, 32\], model \[16, 32\]"):
        tiny_module(["model.w_dim=16"]).on_load_checkpoint(_saved(tiny_module()))
    with pytest.raises(ValueError, match=r"not in the checkpoint: augment_pipe\.p"):
        tiny_module().on_load_checkpoint(_saved(tiny_module(["augment.mode=none"])))
    tiny_module(["loss.r1_gamma=4", "model.fp32=true"]).on_load_checkpoint(_saved(tiny_module()))


def test_resume_mismatch_is_a_configuration_error():
    """Raised inside Lightning's on_load_checkpoint: a ConfigError, so sg3-train prints one line, exits 2."""
    from sg3.training.derive import ConfigError

    with pytest.raises(ConfigError, match=r"G\.channel_max: 32 in the checkpoint, 16 now"):
        tiny_module(["model.cmax=16"]).on_load_checkpoint(_saved(tiny_module()))


@pytest.mark.slow
def test_cli_resume_with_changed_model_settings_exits_2_without_a_traceback(tmp_path):
    """`resume=auto model.cmax=16` on a model=tiny run: the one-line configuration error (about 15 s)."""
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    import lightning

    ckpt = {**_saved(tiny_module()), "pytorch-lightning_version": lightning.__version__}
    torch.save(ckpt, run_dir / "checkpoints" / "ckpt-000000004.ckpt")
    args = ["model=tiny", "data=demo", "batch=4", "loss.r1_gamma=1", "logger=none", "threads=1"]
    args += [f"hydra.run.dir={run_dir}", "resume=auto", "model.cmax=16"]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    cmd = [sys.executable, "-m", "sg3.train", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = "sg3-train: configuration error: the checkpoint was written by another configuration"
    assert error in proc.stderr
    assert "G.channel_max: 32 in the checkpoint, 16 now" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
