"""The local cluster itself: two nodes, a 2-node srun, a 2-node sbatch job."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slurm


def test_two_node_srun_runs_one_task_per_node(slurm_cluster):
    res = slurm_cluster.run("srun", "-N2", "-n2", "-l", "bash", "-c", "echo $SLURMD_NODENAME $SLURM_PROCID")
    lines = sorted(line.split(": ", 1)[1] for line in res.stdout.strip().splitlines())
    assert lines == ["n1 0", "n2 1"]


def test_sbatch_job_completes_on_both_nodes(slurm_cluster, tmp_path):
    script = tmp_path / "job.sbatch"
    out = tmp_path / "job.out"
    script.write_text(
        "#!/bin/bash\n#SBATCH -J sg3-sanity\n#SBATCH -N2\n#SBATCH --ntasks-per-node=1\n"
        f"#SBATCH -o {out}\nsrun bash -c 'echo task=$SLURM_PROCID node=$SLURMD_NODENAME'\n"
    )
    job_id = slurm_cluster.run("sbatch", "--parsable", str(script)).stdout.strip()
    info = slurm_cluster.wait_job(job_id, timeout=30)
    assert info["NumNodes"] == "2"
    assert sorted(out.read_text().split("\n")[:2]) == ["task=0 node=n1", "task=1 node=n2"]
