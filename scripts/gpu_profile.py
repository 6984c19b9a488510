"""Per-phase timing and kernel profile of sg3's training step, without Lightning (scripts/gpu_check.py stage).

Builds the training module from a run's `config.yaml` (written by `sg3-train`, the derived values included),
then runs the training phases (Gmain, Dmain, Dreg with R1, G_ema) exactly as `StyleGAN3Module.training_step`
does, on random images of the dataset's shape. Reports the median time of each phase (device events), the
s/kimg they add up to (Dreg weighted by its interval), peak device memory, the top kernels of one
profiled step, and what holds the memory at the peak of the phase with the highest one (gpu_memory.py).
The gap to the Lightning run's s/kimg is the framework's (data loading, logging) share.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_memory  # noqa: E402


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


# A/B variants of the step, timed side by side in one process (name -> what changes).
VARIANTS = {
    "default": "as configured",
    "blocked": "filtered_lrelu: the register-blocked CUDA kernel (sg3.ops.filtered_lrelu.set_cuda_kernel)",
    "tf32": "TF32 in matmuls and cuDNN convolutions (config key tf32=true)",
    "d_channels_last": "channels_last activations in D's fp16 blocks (D block_kwargs.fp16_channels_last)",
    "dense_modconv": "modulated convs as one ordinary conv over the batch (modconv.set_modconv_impl)",
    "one_chunk": "no gradient accumulation: batch_gpu = batch / processes (key batch_gpu; more memory)",
}


def unknown_variant_parts(name: str) -> list[str]:
    """The parts of a variant name that are not in `VARIANTS` (a name may join several with '+',
    e.g. 'blocked+tf32': both changes at once)."""
    return [part for part in name.split("+") if part not in VARIANTS]


def _variant_settings(name: str, plain: dict[str, Any]):
    """Apply variant `name`: returns the (possibly changed) config and a function that undoes the rest."""
    import copy
    import importlib

    import torch

    from sg3.modules import modconv

    # The module: the attribute sg3.ops.filtered_lrelu is the op. `name` is validated by profile_run.
    flrelu = importlib.import_module("sg3.ops.filtered_lrelu")
    plain = copy.deepcopy(plain)
    saved = (
        flrelu.get_cuda_kernel(),
        modconv.get_modconv_impl(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    parts = set(name.split("+"))
    tf32 = bool(plain.get("tf32", False)) or "tf32" in parts
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32  # as on_fit_start does
    if "blocked" in parts:
        flrelu.set_cuda_kernel("blocked")
    if "d_channels_last" in parts:
        plain["derived"]["D_kwargs"].setdefault("block_kwargs", {})["fp16_channels_last"] = True
    if "dense_modconv" in parts:
        modconv.set_modconv_impl("dense")
    if "one_chunk" in parts:  # what `batch_gpu=<batch / processes>` derives (derive.py)
        d = plain["derived"]
        d["batch_gpu"], d["num_accum"] = d["batch_per_gpu"], 1

    def restore() -> None:
        flrelu.set_cuda_kernel(saved[0])
        modconv.set_modconv_impl(saved[1])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[2:]

    return plain, restore


def _phase_peaks(phases: dict[str, Any]) -> dict[str, float]:
    """Peak device memory (GB) while each phase runs once (where the steady-state peak of the step is)."""
    import torch

    peaks = {}
    for name, fn in phases.items():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peaks[name] = round(torch.cuda.max_memory_allocated() / 2**30, 3)  # GiB, as training logs it
    return peaks


def _count_syncs(phases: dict[str, Any]) -> dict[str, int]:
    """Host-device synchronisations per phase (torch.cuda.set_sync_debug_mode warnings), one run each."""
    import warnings

    import torch

    counts = {}
    for name, fn in phases.items():
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts[name] = sum("synchroniz" in str(w.message) for w in caught)
    return counts


def _time_variant(plain: dict[str, Any], dev, steps: int, detail: bool, top: int) -> dict[str, Any]:
    """Build the module of config `plain` on `dev` and time its phases (detail: + syncs and kernel table)."""
    import torch

    from sg3.training.module import StyleGAN3Module

    d = plain["derived"]
    torch.backends.cudnn.benchmark = bool((plain.get("trainer") or {}).get("benchmark", False))  # as training
    torch.manual_seed(0)
    module = StyleGAN3Module(plain).to(dev)
    opt_G, opt_D = module.configure_optimizers()
    res = d["G_kwargs"]["img_resolution"]
    chans = d["G_kwargs"]["img_channels"]
    images = torch.randint(0, 256, [d["batch_per_gpu"], chans, res, res], dtype=torch.uint8, device=dev)
    labels = torch.zeros([d["batch_per_gpu"], d["c_dim"]], device=dev)
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
    out: dict[str, Any] = {
        "phase_ms": {k: round(v, 2) for k, v in ms.items()},
        "phase_intervals": intervals,
        "batch_gpu": d["batch_gpu"],
        "step_ms": round(step_ms, 2),
        "sec_per_kimg_phases": round(step_ms / d["batch"], 3),
    }
    if dev.type == "cuda":
        out["peak_gpu_mem_gb"] = round(
            torch.cuda.max_memory_allocated() / 2**30, 3
        )  # GiB, as training logs it
        if detail:
            out["phase_peak_gpu_mem_gb"] = peaks = _phase_peaks(phases)
            out["syncs_per_phase"] = _count_syncs(phases)
            worst = max(peaks, key=peaks.get)
            try:  # what holds the memory at the step's peak (a diagnosis: its failure is only recorded)
                out["peak_breakdown"] = {"phase": worst, **gpu_memory.peak_breakdown(phases[worst])}
            except Exception as e:  # noqa: BLE001 - allocator history is private torch API
                out["peak_breakdown"] = {"phase": worst, "error": f"{type(e).__name__}: {e}"}
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for fn in phases.values():
                    fn()
                torch.cuda.synchronize()
            out["profile_table"] = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=top)
    return out


def profile_run(
    config: str | Path,
    steps: int = 6,
    device: str = "cuda",
    top: int = 30,
    variants: tuple[str, ...] = ("default",),
    deadline: float | None = None,
) -> dict[str, Any]:
    """Time the phases of the training step described by a run's config.yaml, for each variant.

    Args:
        config: Path of a run's `config.yaml` (must contain the `derived` section).
        steps: Timed repetitions of each phase (after one warm-up step).
        device: Torch device to run on.
        top: Number of kernels listed in the profile table.
        variants: Names from `VARIANTS` (or several joined by '+': all of their changes at once), timed one
            after the other in this process; the first one also gets the host-device sync count and the
            kernel table, and fills the top-level keys.
        deadline: `time.monotonic()` value after which no further variant is started (None: no limit).

    Returns:
        Per-phase median ms, estimated s/kimg, peak memory (GB) and the profile table of the first variant;
        `variants`: the same numbers per variant (`skipped` for those the deadline cut).
    """
    import gc
    import time

    import torch
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(OmegaConf.load(config), resolve=False)
    d = plain["derived"]
    dev = torch.device(device)
    for name in variants:
        if unknown_variant_parts(name):
            raise ValueError(
                f"unknown profile variant {name!r}; accepted: {', '.join(VARIANTS)}, or several joined by '+'"
            )
    result: dict[str, Any] = {
        "config": str(config),
        "cfg": plain["model"]["cfg"],
        "batch": d["batch"],
        "batch_gpu": d["batch_gpu"],
        "variants": {},
    }
    for index, name in enumerate(variants):
        if index and deadline is not None and time.monotonic() > deadline:
            result["variants"][name] = {"skipped": "time budget spent"}
            continue
        cfg, restore = _variant_settings(name, plain)
        try:
            timed = _time_variant(cfg, dev, steps, detail=index == 0, top=top)
        finally:
            restore()
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        if index == 0:
            result.update(timed)
            timed = {
                k: v
                for k, v in timed.items()
                if k not in ("profile_table", "phase_intervals", "peak_breakdown")
            }
        result["variants"][name] = timed
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", help="a run's config.yaml")
    p.add_argument("--steps", type=int, default=6, help="timed repetitions per phase")
    p.add_argument("--device", default="cuda", help="torch device")
    p.add_argument(
        "--variants",
        default="default",
        help=f"comma list of variants to time side by side: {', '.join(VARIANTS)}",
    )
    args = p.parse_args(argv)
    res = profile_run(args.config, args.steps, args.device, variants=tuple(args.variants.split(",")))
    table = res.pop("profile_table", "")
    for key, value in res.items():
        print(f"{key}: {value}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
