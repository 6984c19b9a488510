"""The `slurm` tier: one real two-node SLURM cluster for the whole session.

The cluster (munged, slurmctld, slurmd n1/n2) runs under a session temp dir and is stopped, daemon by
daemon, by PID at the end. SLURM is installed with apt when it is missing. This machine is known to support
it, so when apt or SLURM is unavailable the tier FAILS with the reason; it is never skipped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from local_cluster import ClusterError, LocalCluster, ensure_installed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A started two-node cluster (:class:`local_cluster.LocalCluster`); nodes n1/n2 are idle on entry."""
    root = tmp_path_factory.mktemp("slurm")
    try:
        ensure_installed(root / "apt.log")
        cluster = LocalCluster(root / "cluster")
        cluster.start()
    except (ClusterError, OSError) as exc:
        pytest.fail(
            f"the slurm tier needs a local SLURM cluster and could not start one: {exc}", pytrace=False
        )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def job_env(slurm_cluster, tmp_path):
    """Environment for sbatch/srun: this cluster, the venv's programs first, hermetic W&B and op cache."""
    env = slurm_cluster.env()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    env["MASTER_ADDR"] = "127.0.0.1"  # the fake node names n1/n2 do not resolve
    env["WANDB_MODE"] = "offline"
    env["WANDB_SILENT"] = "true"
    env["WANDB_DISABLE_GIT"] = "true"
    env["WANDB_CACHE_DIR"] = str(tmp_path / "wandb-cache")
    env["WANDB_CONFIG_DIR"] = str(tmp_path / "wandb-config")
    env["HYDRA_FULL_ERROR"] = "1"
    for leftover in ("MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "RANK", "NODE_RANK"):
        env.pop(leftover, None)
    return env
