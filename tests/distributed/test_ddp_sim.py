"""trainer=ddp_sim: two CPU processes (Lightning DDP over gloo) train the tiny config like one process would.

The run happens in a subprocess (tests/distributed/ddp_probe.py): Lightning re-executes that command for
rank 1, which must never be pytest itself. Each rank writes digests of its state; they must agree exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_helpers import launch_env

from sg3.data.demo import ensure_demo_dataset

PROBE = Path(__file__).with_name("ddp_probe.py")
COUNT = 32  # images in the dataset: 4 steps x batch 8 = one epoch over both ranks


@pytest.fixture(scope="module")
def ddp_sim_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_sim")
    dataset = ensure_demo_dataset(str(root / "data"), resolution=16, count=COUNT)
    env = launch_env(
        os.environ, SG3_PROBE_DIR=str(root / "probe"), WANDB_MODE="offline", HYDRA_FULL_ERROR="1"
    )
    overrides = [
        "trainer=ddp_sim",
        "model=tiny",
        f"data.urls={dataset}",
        "data.num_workers=0",
        "data.shuffle_buffer=0",  # stream order = epoch order, so rank 0 and rank 1 must not overlap
        "batch=8",
        "total_kimg=0.032",  # 4 steps
        "kimg_per_tick=0.016",
        "grid.gw=4",
        "grid.gh=2",
        "loss.r1_gamma=1",
        "augment.p=0.5",
        "augment.interval=2",
        "augment.kimg=0.1",  # p moves by 0.16 at steps 2 and 4, from statistics summed over both ranks
        "logger=csv",
        f"runs_dir={root / 'runs'}",
        "name=ddp_sim",
    ]
    res = subprocess.run(
        [sys.executable, str(PROBE), *overrides],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, (
        f"ddp_sim run failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    )
    records = [json.loads((root / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return records, root


def test_both_ranks_hold_identical_state(ddp_sim_run):
    (r0, r1), _ = ddp_sim_run
    assert (r0["rank"], r1["rank"]) == (0, 1)
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["pid"] != r1["pid"]
    for name in ("G", "D", "G_ema", "augment_pipe"):
        d0, d1 = r0["digests"][name], r1["digests"][name]
        assert d0 and d0.keys() == d1.keys()
        differ = sorted(k for k in d0 if d0[k] != d1[k])
        assert not differ, f"{name}: {differ} differ between the ranks"
    assert "synthesis.input.freqs" in r0["digests"]["G"]  # random buffers are covered too
    assert r0["counters"] == r1["counters"]
    assert r0["counters"]["cur_nimg"] == COUNT and r0["counters"]["batch_idx"] == 4
    assert r0["counters"]["cur_tick"] >= 3
    assert r0["augment_p"] == r1["augment_p"]
    assert r0["augment_p"] != 0.5, (
        "ADA never moved p: the test would not show that its statistics are reduced"
    )


def test_ranks_split_the_global_batch_and_see_different_samples(ddp_sim_run):
    (r0, r1), _ = ddp_sim_run
    assert r0["batch_per_gpu"] == r1["batch_per_gpu"] == 4
    assert len(r0["samples"]) == len(r1["samples"]) == 16  # 4 steps x 4 images per rank
    s0, s1 = set(r0["samples"]), set(r1["samples"])
    assert len(s0) == len(s1) == 16
    assert not s0 & s1, "the ranks received the same images"
    assert len(s0 | s1) == COUNT  # together: the whole dataset once


def test_only_rank_zero_writes_the_run(ddp_sim_run):
    _, root = ddp_sim_run
    run_dir = root / "runs" / "ddp_sim"
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["ckpt-000000008.ckpt", "ckpt-000000032.ckpt"]  # tick 0 and the end
    stats = (run_dir / "stats.jsonl").read_text().splitlines()
    ticks = [json.loads(line)["Progress/tick"]["mean"] for line in stats]
    assert ticks == sorted(set(ticks)), f"stats.jsonl has duplicated ticks (written by both ranks?): {ticks}"


def test_checkpoint_holds_every_ranks_rng_state(ddp_sim_run):
    (r0, r1), root = ddp_sim_run
    ckpt = torch.load(root / "runs" / "ddp_sim" / "checkpoints" / "ckpt-000000032.ckpt", weights_only=True)
    saved = ckpt["sg3"]["rng"]
    assert isinstance(saved, list) and len(saved) == 2
    digests = [hashlib.sha256(s["torch"].numpy().tobytes()).hexdigest() for s in saved]
    assert digests == [r0["torch_rng_at_last_save"], r1["torch_rng_at_last_save"]]
    assert digests[0] != digests[1]  # the ranks draw different noise
