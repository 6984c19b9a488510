"""Scale-out configuration without a cluster: sweep directory names, CPUs per SLURM task."""

from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir

from sg3.data.datamodule import auto_num_workers

REPO = Path(__file__).resolve().parents[2]


def _compose(overrides: list[str]):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_process_plumbing_stays_out_of_sweep_directory_names():
    cfg = _compose(
        ["model=tiny", "batch=4", "trainer=ddp_sim", "+trainer.strategy.start_method=spawn",
         "trainer.profiler=simple", "loss.r1_gamma=2"]
    )  # fmt: skip
    assert cfg.hydra.job.override_dirname == "batch=4,loss.r1_gamma=2,model=tiny"


def test_result_changing_settings_stay_in_sweep_directory_names():
    cfg = _compose(["model=tiny", "batch=4", "trainer.devices=2", "data.num_workers=2", "tf32=true"])
    expected = "batch=4,data.num_workers=2,model=tiny,tf32=true,trainer.devices=2"
    assert cfg.hydra.job.override_dirname == expected


def _sbatch_cpus_per_task() -> int:
    text = (REPO / "scripts" / "slurm" / "train.sbatch").read_text()
    (value,) = re.findall(r"^#SBATCH --cpus-per-task=(\d+)", text, flags=re.M)
    return int(value)


def test_launcher_and_sbatch_ask_for_the_default_workers_plus_one_cpu(monkeypatch):
    cfg = _compose(["launcher=slurm", "model=tiny", "batch=4"])
    cpus = cfg.hydra.launcher.cpus_per_task
    assert cpus == _sbatch_cpus_per_task()
    # SLURM binds the task to its CPUs: data.num_workers=auto then picks 3 workers + the training process.
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert cfg.data.num_workers == "auto" and auto_num_workers() + 1 == cpus == 4


def test_requeue_checkpoint_write_failure_on_rank_0_raises_on_every_rank(tmp_path):
    """SlurmRequeue saves through save_on_all_ranks: a failed write on rank 0 is broadcast (every rank raises
    CheckpointWriteError) instead of escaping rank 0 alone and leaving the others at the barrier."""
    from types import SimpleNamespace

    import pytest

    from sg3.training.checkpoint import AtomicCheckpointIO, CheckpointWriteError
    from sg3.training.slurm import SlurmRequeue

    (tmp_path / "blocker").write_text("a file where the checkpoint folder should be")
    io, broadcasts = AtomicCheckpointIO(), []

    def broadcast(obj, src=0):
        broadcasts.append(obj)
        return obj

    strategy = SimpleNamespace(
        checkpoint_io=io, broadcast=broadcast, reduce_boolean_decision=lambda decision, all=True: decision
    )
    trainer = SimpleNamespace(
        strategy=strategy, world_size=2, global_rank=0, is_global_zero=True, should_stop=False,
        default_root_dir=str(tmp_path / "blocker"),
        save_checkpoint=lambda path, weights_only=False: io.save_checkpoint({}, path),
    )  # fmt: skip
    cb = SlurmRequeue()
    cb._active, cb.received = True, True
    with pytest.raises(CheckpointWriteError, match="the checkpoint write failed on rank 0"):
        cb.on_train_batch_end(trainer, None, None, None, 0)
    assert broadcasts[-1] is not None and not cb.requeued and not trainer.should_stop
