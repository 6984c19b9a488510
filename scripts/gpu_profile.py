"""Per-phase timing and kernel profile of sg3's training step, without Lightning (scripts/gpu_check.py stage).

Builds the training module from a run's `config.yaml` (written by `sg3-train`, the derived values included),
then runs the training phases (Gmain, Dmain, Dreg with R1, G_ema) exactly as `StyleGAN3Module.training_step`
does, on random images of the dataset's shape. Reports the median time of each phase (device events), the
s/kimg they add up to (Dreg weighted by its interval), peak device memory, and the top kernels of one
profiled step. The gap to the Lightning run's s/kimg is the framework's (data loading, logging) share.

Usage: python scripts/gpu_profile.py RUN_DIR/config.yaml [--steps 6] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


def median_ms(fn, device, reps: int, warmup: int = 0) -> float:
    """Median milliseconds of one call of fn over `reps` calls after `warmup` untimed ones.

    Each call is timed on `device` (CUDA events around it, then a wait for the end event; a host clock
    elsewhere).
    """
    import time

    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def profile_run(config: str | Path, steps: int = 6, device: str = "cuda", top: int = 30) -> dict[str, Any]:
    """Time the phases of the training step described by a run's config.yaml.

    Args:
        config: Path of a run's `config.yaml` (must contain the `derived` section).
        steps: Timed repetitions of each phase (after one warm-up step).
        device: Torch device to run on.
        top: Number of kernels listed in the profile table.

    Returns:
        Per-phase median ms, estimated s/kimg, peak memory (GB), and the profile table as text.
    """
    import torch
    from omegaconf import OmegaConf

    from sg3.training.module import StyleGAN3Module

    plain = OmegaConf.to_container(OmegaConf.load(config), resolve=False)
    d = plain["derived"]
    dev = torch.device(device)
    torch.manual_seed(0)
    module = StyleGAN3Module(plain).to(dev)
    opt_G, opt_D = module.configure_optimizers()
    res = d["G_kwargs"]["img_resolution"]
    chans = d["G_kwargs"]["img_channels"]
    images = torch.randint(0, 256, [d["batch_per_gpu"], chans, res, res], dtype=torch.uint8)
    labels = torch.zeros([d["batch_per_gpu"], d["c_dim"]])
    intervals = dict(d["phases"])
    g_phase = next(p for p in intervals if p.startswith("G"))
    d_phase = next(p for p in intervals if p in ("Dmain", "Dboth"))

    def run(phase: str, opt):
        return lambda: module._run_phase(phase, intervals[phase], module.split_reals((images, labels)), opt)

    phases = {g_phase: run(g_phase, opt_G), d_phase: run(d_phase, opt_D), "Gema": module.phase_ema}
    if "Dreg" in intervals:
        phases["Dreg"] = run("Dreg", opt_D)
    for fn in phases.values():  # warm-up: cudnn autotuning, first kernel launches, allocator growth
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    ms = {name: median_ms(fn, dev, steps) for name, fn in phases.items()}
    step_ms = sum(v / intervals.get(k, 1) for k, v in ms.items())
    result: dict[str, Any] = {
        "config": str(config),
        "cfg": plain["model"]["cfg"],
        "batch": d["batch"],
        "batch_gpu": d["batch_gpu"],
        "phase_ms": {k: round(v, 2) for k, v in ms.items()},
        "phase_intervals": intervals,
        "step_ms": round(step_ms, 2),
        "sec_per_kimg_phases": round(step_ms / d["batch"], 3),
    }
    if dev.type == "cuda":
        result["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for fn in phases.values():
                fn()
            torch.cuda.synchronize()
        result["profile_table"] = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=top)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", help="a run's config.yaml")
    p.add_argument("--steps", type=int, default=6, help="timed repetitions per phase")
    p.add_argument("--device", default="cuda", help="torch device")
    args = p.parse_args(argv)
    res = profile_run(args.config, args.steps, args.device)
    table = res.pop("profile_table", "")
    for key, value in res.items():
        print(f"{key}: {value}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
