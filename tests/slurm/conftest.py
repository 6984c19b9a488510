"""The `slurm` tier: one real two-node SLURM cluster for the whole session.

The cluster (munged, slurmctld, slurmd n1/n2) runs under a session temp dir and is stopped, daemon by
daemon, by PID at the end. SLURM is installed with apt when it is missing. This machine is known to support
it, so when apt or SLURM is unavailable the tier FAILS with the reason; it is never skipped.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from local_cluster import ClusterError, LocalCluster, ensure_installed


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


@pytest.fixture(scope="session")
def compiled_ops_warm() -> int:
    """Builds the compiled CPU ops into the cache once (or finds them there) before any job starts.

    Otherwise the first job's ranks begin with that build (one builds, the other waits on the build lock),
    which takes minutes on a busy 2-core machine. Returns the build's exit code: a failed build is not this
    tier's concern (the ops tiers test it), the jobs then fall back to the reference ops.
    """
    code = "from sg3.ops._dispatch import load_extension; load_extension('cpp')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=1800).returncode
