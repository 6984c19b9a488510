"""End to end through sg3-train: SIGKILL -> resume=auto -> SIGTERM -> resume=auto, W&B offline files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from wandb_reader import read_run

from sg3.training.checkpoint import latest_checkpoint, list_checkpoints

BATCH = 8
ARGS = [
    "model=tiny", "data.urls=demo:16:64", "data.num_workers=0", f"batch={BATCH}", "loss.r1_gamma=1",
    "kimg_per_tick=0.016", "checkpoint_kimg=0.016", "snap=2", "grid.gw=2", "grid.gh=2", "name=run",
    # ADA with target -1 always sees r_t > target: p rises by one step every 4 iterations.
    "augment.target=-1", "augment.kimg=0.5", "logger=wandb",
]  # fmt: skip
ADJUST = BATCH * 4 / 500


def launch(tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "SG3_DEMO_CACHE": str(tmp_path / "demo"),
    }
    cmd = [sys.executable, "-m", "sg3.train", *ARGS, f"runs_dir={tmp_path}", *extra]
    log = open(tmp_path / f"log-{time.time():.0f}.txt", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, min_nimg: int, timeout: float = 900) -> Path:
    end = time.time() + timeout
    while time.time() < end:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is not None and int(ckpt.stem.split("-")[1]) >= min_nimg:
            return ckpt
        assert proc.poll() is None, "training exited before writing the checkpoint"
        time.sleep(0.5)
    raise TimeoutError(f"no checkpoint with >= {min_nimg} images in {run_dir}")


def sg3(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_kill_resume_sigterm_resume_continues_counters_p_and_wandb_run(tmp_path):
    run_dir = tmp_path / "run"
    # 1. SIGKILL after the checkpoint at 32 images (4 steps: one ADA adjustment).
    proc = launch(tmp_path, "total_kimg=1")
    wait_for_checkpoint(run_dir, proc, 32)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    killed = sg3(latest_checkpoint(run_dir))
    nimg = killed["sg3"]["counters"]["cur_nimg"]
    steps = killed["sg3"]["counters"]["batch_idx"]
    assert nimg == steps * BATCH and steps >= 4
    assert float(killed["state_dict"]["augment_pipe.p"]) == pytest.approx(ADJUST * (steps // 4))
    # 2. resume=auto continues; SIGTERM saves and exits cleanly at a step boundary.
    proc = launch(tmp_path, "total_kimg=1", "resume=auto")
    wait_for_checkpoint(run_dir, proc, nimg + BATCH)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(300) == 0
    stopped = sg3(latest_checkpoint(run_dir))["sg3"]["counters"]
    assert stopped["cur_nimg"] > nimg and stopped["batch_idx"] == stopped["cur_nimg"] // BATCH
    # 3. resume=auto again, to the end.
    total = stopped["cur_nimg"] + 2 * BATCH
    proc = launch(tmp_path, f"total_kimg={total / 1000}", "resume=auto")
    assert proc.wait(900) == 0
    final = sg3(latest_checkpoint(run_dir))
    counters = final["sg3"]["counters"]
    assert counters["cur_nimg"] == total and counters["batch_idx"] == total // BATCH
    assert float(final["state_dict"]["augment_pipe.p"]) == pytest.approx(
        ADJUST * (counters["batch_idx"] // 4)
    )
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("log-*.txt")))
    assert "stopped by SIGTERM" in logs and "sg3-train finished" in logs
    # Never a half-written checkpoint: every complete name loads weights-only.
    for path in list_checkpoints(run_dir):
        assert sg3(path)["sg3"]["format"] == "sg3-checkpoint"
    # kimg never goes back in stats.jsonl across the three processes.
    kimg = [
        json.loads(line)["Progress/kimg"]["mean"]
        for line in (run_dir / "stats.jsonl").read_text().splitlines()
    ]
    assert kimg == sorted(kimg) and kimg[-1] == pytest.approx(total / 1000)
    # W&B: three offline runs with the same run id, holding the scalars and the image grids.
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 3
    # The run id from the run record, or from the folder name (offline-run-<time>-<id>) when a SIGKILLed
    # process did not get to flush its run record.
    ids = {read_run(r)[2] or r.name.rsplit("-", 1)[1] for r in runs}
    assert ids == {final["sg3"]["wandb_run_id"]}
    # SIGKILL can cut the first process's buffered W&B records, so the scalars are read from all three runs.
    history = [row for r in runs for row in read_run(r)[0]]
    config = read_run(runs[-1])[1]
    keys = set().union(*history)
    for name in ("Loss/G/loss", "Loss/D/loss", "Progress/kimg", "Progress/augment",
                 "Timing/sec_per_kimg", "Timing/img_per_sec", "fakes/_type"):  # fmt: skip
        assert name in keys, name
    # R1 runs every 16 steps, i.e. only in the first (SIGKILLed) process here; the run's own stats keep it.
    stat_lines = (run_dir / "stats.jsonl").read_text().splitlines()
    assert any("Loss/r1_penalty" in json.loads(line) for line in stat_lines)
    assert config["batch"] == BATCH and config["derived"]["G_kind"] == "stylegan3"
    assert [png for r in runs for png in (r / "files" / "media" / "images").glob("fakes_*.png")]
    assert (run_dir / "images" / "fakes_init.png").is_file() and list(run_dir.glob("network-snapshot-*.pt"))
