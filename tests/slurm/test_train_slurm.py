"""sg3 training on the local two-node SLURM cluster: sbatch, preemption + requeue, a Hydra sweep via submitit.

Every job runs 2 nodes x 1 process (Lightning DDP over gloo, SLURMEnvironment) on the tiny config, through the
user-facing pieces: scripts/slurm/train.sbatch (with the edits a CPU cluster needs passed on the sbatch
command line) and `sg3-train -m launcher=slurm`.
"""

from __future__ import annotations

import glob
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sg3.data.demo import ensure_demo_dataset

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "scripts" / "slurm" / "train.sbatch"
STEPS = 6  # batch 8 -> total_kimg 0.048, a tick every 2 steps
TOTAL_NIMG = STEPS * 8
# The sbatch lines of the template that a CPU-only test cluster must change (what a user edits).
SBATCH_EDITS = [
    "--partition=debug",
    "--ntasks-per-node=1",
    "--gpus-per-node=0",
    "--cpus-per-task=1",
    "--time=10",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, compiled_ops_warm) -> str:
    return ensure_demo_dataset(str(tmp_path_factory.mktemp("slurm-data")), resolution=16, count=64)


def tiny_overrides(dataset: str, runs_dir: Path, name: str) -> list[str]:
    """The tiny training every test here runs (2 nodes x 1 CPU process)."""
    return [
        "trainer.accelerator=cpu",
        "model=tiny",
        f"data.urls={dataset}",
        "data.num_workers=0",
        "batch=8",
        f"total_kimg={TOTAL_NIMG / 1000}",
        "kimg_per_tick=0.016",
        "keep_checkpoints=1",  # checkpoints at tick 0 and at the end; the last one is kept
        "grid.gw=4",
        "grid.gh=2",
        "loss.r1_gamma=1",
        "augment.p=0.2",
        "augment.kimg=1",
        "logger=wandb",
        f"runs_dir={runs_dir}",
        f"name={name}",
    ]


def submit(cluster, env, workdir: Path, overrides: list[str]) -> str:
    res = subprocess.run(
        ["sbatch", "--parsable", *SBATCH_EDITS, f"--chdir={workdir}", str(TEMPLATE), *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def job_log(workdir: Path, job_id: str) -> str:
    path = workdir / f"sg3-train-{job_id}.out"
    return path.read_text(errors="replace") if path.exists() else "(no log)"


def wait_done(cluster, workdir: Path, job_id: str, timeout: float) -> dict[str, str]:
    try:
        return cluster.wait_job(job_id, timeout=timeout)
    except Exception as exc:
        pytest.fail(f"{exc}\n--- job log:\n{job_log(workdir, job_id)[-8000:]}", pytrace=False)


def final_checkpoint(run_dir: Path) -> dict:
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.ckpt"))
    assert ckpts, f"no checkpoint in {run_dir}/checkpoints"
    return torch.load(ckpts[-1], map_location="cpu", weights_only=True)


def wandb_run_ids(run_dir: Path) -> set[str]:
    dirs = glob.glob(str(run_dir / "wandb" / "offline-run-*"))
    return {d.rsplit("-", 1)[-1] for d in dirs}


@pytest.fixture(scope="module")
def uninterrupted(slurm_cluster, tmp_path_factory, dataset):
    """A 2-node sbatch training job that runs to the end (also the reference for the preemption test)."""
    env = _job_env(slurm_cluster, tmp_path_factory.mktemp("wandb-env"))
    workdir = tmp_path_factory.mktemp("sbatch")
    job_id = submit(slurm_cluster, env, workdir, tiny_overrides(dataset, workdir / "runs", "plain"))
    info = wait_done(slurm_cluster, workdir, job_id, timeout=600)
    return job_id, info, workdir, workdir / "runs" / "plain"


def _job_env(cluster, scratch: Path) -> dict[str, str]:
    env = cluster.env()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env["MASTER_ADDR"] = "127.0.0.1"  # the fake node names n1/n2 do not resolve
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true", HYDRA_FULL_ERROR="1")
    env.update(WANDB_CACHE_DIR=str(scratch / "cache"), WANDB_CONFIG_DIR=str(scratch / "config"))
    for leftover in ("MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "RANK", "NODE_RANK"):
        env.pop(leftover, None)
    return env


def test_two_node_sbatch_training_writes_one_checkpoint_and_one_wandb_run(uninterrupted):
    job_id, info, workdir, run_dir = uninterrupted
    log = job_log(workdir, job_id)
    assert info["NumNodes"] == "2" and info["NodeList"] == "n[1-2]"
    # Lightning ran one rank per node under its SLURM environment.
    assert len(set(re.findall(r"GLOBAL_RANK: (\d), MEMBER: \d/2", log))) == 2, log[-4000:]
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert ckpts == [f"ckpt-{TOTAL_NIMG:09d}.ckpt"]
    sg3 = final_checkpoint(run_dir)["sg3"]
    assert sg3["counters"]["cur_nimg"] == TOTAL_NIMG
    assert sg3["counters"]["batch_idx"] == STEPS
    assert sg3["config"]["derived"]["batch_per_gpu"] == 4  # global batch 8 over 2 processes
    assert len(glob.glob(str(run_dir / "wandb" / "offline-run-*"))) == 1
    assert len(wandb_run_ids(run_dir)) == 1


def test_preempted_job_requeues_and_resumes_to_the_same_counters(
    slurm_cluster, tmp_path, dataset, uninterrupted
):
    env = _job_env(slurm_cluster, tmp_path)
    workdir = tmp_path / "sbatch"
    workdir.mkdir()
    run_dir = workdir / "runs" / "preempted"
    job_id = submit(slurm_cluster, env, workdir, tiny_overrides(dataset, workdir / "runs", "preempted"))
    # Wait until training runs (the first tick is logged after step 1), then send the preemption signal.
    stats = run_dir / "stats.jsonl"
    deadline = time.monotonic() + 600
    while not (stats.exists() and stats.read_text().strip()):
        state = slurm_cluster.job_state(job_id).get("JobState")
        if time.monotonic() > deadline or state not in ("PENDING", "RUNNING"):
            pytest.fail(
                f"training did not start (state {state}):\n{job_log(workdir, job_id)[-6000:]}", pytrace=False
            )
        time.sleep(0.2)
    slurm_cluster.run("scancel", "--signal=USR1", job_id)
    # Lightning saves hpc_ckpt_1.ckpt and runs `scontrol requeue`; lift the requeue hold-off (BeginTime).
    deadline = time.monotonic() + 120
    final_since = None  # a requeue can pass through a final-looking state for a moment: fail only if it stays
    while True:
        fields = slurm_cluster.job_state(job_id)
        if int(fields.get("Restarts", "0")) >= 1 and fields.get("JobState") == "PENDING":
            # slurmd revoked the killed instance's credential with a time in whole seconds; a relaunch in that
            # same second is refused ("Job credential revoked") and the job ends FAILED. SLURM's own hold-off
            # avoids this; lifting it, wait past that second first.
            time.sleep(2)
            slurm_cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
            break
        if fields.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED"):
            final_since = final_since or time.monotonic()
        else:
            final_since = None
        if time.monotonic() > deadline or (final_since and time.monotonic() - final_since > 15):
            pytest.fail(f"job was not requeued: {fields}\n{job_log(workdir, job_id)[-6000:]}", pytrace=False)
        time.sleep(0.2)
    info = wait_done(slurm_cluster, workdir, job_id, timeout=600)
    log = job_log(workdir, job_id)
    assert info["Restarts"] == "1"
    assert "restart 1" in log
    assert re.search(r"Restoring states from the checkpoint path at .*hpc_ckpt_1\.ckpt", log), log[-6000:]
    assert (run_dir / "hpc_ckpt_1.ckpt").exists()
    resumed, reference = final_checkpoint(run_dir)["sg3"], final_checkpoint(uninterrupted[3])["sg3"]
    assert resumed["counters"] == reference["counters"]
    # The same W&B run continues after the requeue.
    assert len(wandb_run_ids(run_dir)) == 1
    assert resumed["wandb_run_id"] in wandb_run_ids(run_dir)


def test_hydra_sweep_on_slurm_collects_both_results(slurm_cluster, tmp_path, dataset):
    env = _job_env(slurm_cluster, tmp_path)
    sweep_dir = tmp_path / "sweep"
    overrides = [o for o in tiny_overrides(dataset, tmp_path / "runs", "sweep") if not o.startswith("loss.")]
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "sg3-train"),
        "--multirun",
        "launcher=slurm",
        "trainer=ddp",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        *overrides,
        "total_kimg=0.016",  # 2 steps per point
        "loss.r1_gamma=1,2",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.launcher.partition=debug",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
    ]
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    logs = "\n".join(
        Path(p).read_text(errors="replace")[-3000:] for p in glob.glob(f"{sweep_dir}/.submitit/*/*.err")
    )
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}\n--- job logs:\n{logs}"
    results = sorted(glob.glob(f"{sweep_dir}/.submitit/*/*_result.pkl"))
    assert len(results) == 4, results  # 2 sweep points x 2 ranks (one per node)
    by_gamma: dict[float, list] = {}
    for path in results:
        with open(path, "rb") as f:
            status, job_return = pickle.load(f)
        assert status == "success", job_return
        gamma = job_return.cfg["loss"]["r1_gamma"]
        by_gamma.setdefault(gamma, []).append(job_return.return_value)
    assert sorted(by_gamma) == [1, 2]
    for gamma, summaries in by_gamma.items():
        assert len(summaries) == 2
        for summary in summaries:
            assert summary["done"] and summary["kimg"] == pytest.approx(0.016), (gamma, summary)
        run_dir = Path(summaries[0]["run_dir"])
        # <job number>-<overrides>, one level below the sweep dir: data.urls and runs_dir stay out of it
        assert run_dir.parent == sweep_dir and run_dir.name.startswith(f"{[1, 2].index(gamma)}-"), run_dir
        assert f"loss.r1_gamma={gamma}" in run_dir.name.split(",") and "data.urls" not in run_dir.name
        sg3 = final_checkpoint(run_dir)["sg3"]
        assert sg3["config"]["loss"]["r1_gamma"] == gamma
        assert sg3["config"]["run"]["name"] == run_dir.name.split("-", 1)[1]  # W&B run name
        assert sg3["config"]["derived"]["batch_per_gpu"] == 4
