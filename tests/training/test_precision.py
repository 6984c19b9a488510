"""bf16 autocast on the CPU (`trainer.precision=bf16-mixed`): a few real training steps with finite losses."""

from __future__ import annotations

import json
import math

import torch
from training_helpers import build_in_process

STEPS = 3
BATCH = 4


def test_bf16_mixed_on_cpu_trains_with_finite_losses(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3_DEMO_CACHE", str(tmp_path / "demo"))
    parts = build_in_process(
        ["model=tiny", "data.urls=demo:16:32", "data.num_workers=0", f"batch={BATCH}", "loss.r1_gamma=1",
         "trainer.precision=bf16-mixed", f"total_kimg={STEPS * BATCH / 1000}",
         f"kimg_per_tick={BATCH / 1000}", "grid.gw=2", "grid.gh=2", "augment.p=0.2"],
        tmp_path,
    )  # fmt: skip
    model, seen = parts["model"], []
    model.D.register_forward_hook(
        lambda mod, args, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
    )
    parts["trainer"].fit(model, datamodule=parts["datamodule"])
    assert model.batch_idx == STEPS and model.done
    assert seen and all(enabled for enabled, _ in seen), "D ran outside CPU autocast"
    assert torch.bfloat16 in {dtype for _, dtype in seen}  # autocast really computed in bf16
    ticks = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    names = ("Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty")
    losses = [t[k]["mean"] for t in ticks for k in names if k in t]
    assert len(losses) >= 2 * STEPS, ticks
    assert all(math.isfinite(v) for v in losses), losses
    assert all(t.get("Grad/G/nonfinite", {"mean": 0})["mean"] == 0 for t in ticks)
    assert all(p.dtype == torch.float32 for p in model.G.parameters())  # weights stay fp32
