"""Benchmark of the compiled CPU ops against the pure-PyTorch reference (writes a `## ops` Markdown section).

- filtered_lrelu forward+backward at the layer shapes of the 256x256 config T (`--cbase=16384`) and config R
  generators (batch 2), compiled ('cpp') vs reference ('ref' = zero-insertion upfirdn2d via depthwise
  conv2d + bias_act, as spec §2.3 describes), with effective GFLOP/s (the multiply-adds a polyphase
  algorithm needs, counted per layer) next to this machine's fp32 matmul GFLOP/s measured in the same run.
- upfirdn2d and bias_act forward+backward at the shapes of the 256x256 discriminator (batch 2).
- Peak memory of forward+backward (RSS high-water mark of the step, fresh subprocess per measurement)
  for the quick filtered_lrelu layer set and the discriminator shapes of 3 blocks.

Usage: python scripts/bench_ops.py [--out docs/bench/ops.md] [--threads 2] [--quick] [--part d]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sg3 import ops
from sg3.modules.filters import design_lowpass_filter, synthesis_schedule
from sg3.ops import _build

ROOT = Path(__file__).resolve().parent.parent
GENERATORS = {
    "T": dict(channel_base=16384, channel_max=512, conv_kernel=3, use_radial_filters=False),
    "R": dict(channel_base=32768, channel_max=1024, conv_kernel=1, use_radial_filters=True),
}


def layer_cases(cfg: str, batch: int) -> list[dict]:
    """filtered_lrelu arguments of every layer of the 256x256 generator `cfg` ('T' or 'R')."""
    sched = synthesis_schedule(256, 3, **GENERATORS[cfg])
    k = GENERATORS[cfg]["conv_kernel"]
    cases = []
    for spec in sched["layers"]:
        fu = design_lowpass_filter(
            spec.up_taps, spec.in_cutoff, 2 * spec.in_half_width, spec.tmp_sampling_rate
        )
        fd = design_lowpass_filter(
            spec.down_taps,
            spec.out_cutoff,
            2 * spec.out_half_width,
            spec.tmp_sampling_rate,
            radial=spec.down_radial,
        )
        size = spec.in_size + (1 if spec.is_torgb else k) - 1
        cases.append(
            dict(
                name=f"{cfg} {spec.name}",
                shape=(batch, spec.out_channels, size, size),
                fu=None if fu is None else torch.as_tensor(fu),
                fd=None if fd is None else torch.as_tensor(fd),
                up=spec.up_factor,
                down=spec.down_factor,
                padding=list(spec.padding),
                gain=1.0 if spec.is_torgb else math.sqrt(2),
                slope=1.0 if spec.is_torgb else 0.2,
                clamp=256.0,
            )
        )
    return cases


def polyphase_flops(case: dict, out_hw: tuple[int, int]) -> float:
    """Flops (2 x multiply-adds) of forward + backward for a polyphase algorithm, separable where possible."""
    n, c, h, w = case["shape"]
    up, down = case["up"], case["down"]
    tu = 1 if case["fu"] is None else case["fu"].shape[-1]
    td = 1 if case["fd"] is None else case["fd"].shape[-1]
    radial = case["fd"] is not None and case["fd"].ndim == 2
    oh, ow = out_hw
    hz, wz = (oh - 1) * down + td, (ow - 1) * down + td
    fwd = (
        h * wz * tu / up + hz * wz * tu / up + (oh * ow * td * td if radial else oh * wz * td + oh * ow * td)
    )
    bwd = (
        (hz * wz * td * td / down**2 if radial else oh * wz * td / down + hz * wz * td / down)
        + h * wz * tu
        + h * w * tu
    )
    return 2.0 * n * c * (fwd + bwd)


def time_call(fn, min_reps: int, budget: float) -> float:
    """Best (minimum) seconds of `fn()` after one warm-up; at least `min_reps` runs, more within `budget` s.

    The minimum, not the median: on a shared machine the other processes only ever add time, and with
    several of them the median of a few-millisecond call measures the scheduler's time slices.

    With min_reps == 1, a warm-up longer than 4 x budget (multi-second reference calls) is the measurement.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if min_reps == 1 and first > 4 * budget:
        return first
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(min(times))


def fl_step(case: dict, impl: str, x: torch.Tensor, b: torch.Tensor, dy: torch.Tensor):
    kw = {k: case[k] for k in ("up", "down", "padding", "gain", "slope", "clamp")}

    def step():
        x.grad = b.grad = None
        y = ops.filtered_lrelu(x, case["fu"], case["fd"], b, impl=impl, **kw)
        y.backward(dy)

    return step


def bench_filtered_lrelu(cases: list[dict], budget: float) -> list[dict]:
    rows = []
    for case in cases:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(case["shape"], generator=g).requires_grad_(True)
        b = torch.randn(case["shape"][1], generator=g).requires_grad_(True)
        with torch.no_grad():
            y = ops.filtered_lrelu(x, case["fu"], case["fd"], b, impl="cpp", **_kw(case))
        dy = torch.randn_like(y)
        t_cpp = time_call(fl_step(case, "cpp", x, b, dy), 3, budget)
        t_ref = time_call(fl_step(case, "ref", x, b, dy), 1, budget)
        flops = polyphase_flops(case, tuple(y.shape[2:]))
        gflops = flops / t_cpp / 1e9
        rows.append(dict(name=case["name"], shape=case["shape"], out=tuple(y.shape), t_ref=t_ref, t_cpp=t_cpp,
                         gflops=gflops))  # fmt: skip
        msg = (
            f"ref {t_ref * 1e3:9.1f} ms cpp {t_cpp * 1e3:8.1f} ms x{t_ref / t_cpp:5.1f} {gflops:6.1f} GFLOP/s"
        )
        print(f"  {case['name']:<16} {msg}", flush=True)
    return rows


def _kw(case: dict) -> dict:
    return {k: case[k] for k in ("up", "down", "padding", "gain", "slope", "clamp")}


def discriminator_cases(batch: int, blocks: tuple[int, ...] = (256, 128, 64, 32, 16, 8)) -> list[dict]:
    """upfirdn2d and bias_act calls of the 256x256 discriminator (cbase 32768, cmax 512), per block."""
    channels = {r: min(32768 // r, 512) for r in (4, 8, 16, 32, 64, 128, 256)}
    f = ops.setup_filter([1, 3, 3, 1])
    cases = []
    for r in blocks:
        tmp, out = channels[r], channels[r // 2]
        cases.append(
            dict(op="upfirdn2d", name=f"b{r} conv1 FIR", shape=(batch, tmp, r, r), f=f, down=1, padding=2)
        )
        cases.append(
            dict(op="upfirdn2d", name=f"b{r} skip FIR+down", shape=(batch, tmp, r, r), f=f, down=2, padding=1)
        )
        cases.append(
            dict(op="bias_act", name=f"b{r} conv0 lrelu", shape=(batch, tmp, r, r), gain=None, clamp=256.0)
        )
        cases.append(dict(op="bias_act", name=f"b{r} conv1 lrelu", shape=(batch, out, r // 2, r // 2),
                          gain=1.0, clamp=256 * math.sqrt(0.5)))  # fmt: skip
    return cases


def d_step(case: dict, impl: str, x: torch.Tensor, b: torch.Tensor):
    dy: list[torch.Tensor] = []  # made once: a fresh large tensor per call would time its page faults

    def step():
        x.grad = b.grad = None
        if case["op"] == "upfirdn2d":
            y = ops.upfirdn2d(x, case["f"], down=case["down"], padding=case["padding"], impl=impl)
        else:
            y = ops.bias_act(x, b, act="lrelu", gain=case["gain"], clamp=case["clamp"], impl=impl)
        if not dy:
            dy.append(torch.ones_like(y))
        y.backward(dy[0])

    return step


def bench_discriminator(cases: list[dict], budget: float) -> list[dict]:
    rows = []
    for case in cases:
        x = torch.randn(case["shape"]).requires_grad_(True)
        b = torch.randn(case["shape"][1]).requires_grad_(True)
        t_cpp = time_call(d_step(case, "cpp", x, b), 3, budget)
        t_ref = time_call(d_step(case, "ref", x, b), 3, budget)
        rows.append(dict(op=case["op"], name=case["name"], shape=case["shape"], t_ref=t_ref, t_cpp=t_cpp))
        print(f"  {case['op']:<9} {case['name']:<20} ref {t_ref * 1e3:8.2f} ms  cpp {t_cpp * 1e3:8.2f} ms"
              f"  x{t_ref / t_cpp:5.1f}", flush=True)  # fmt: skip
    return rows


def matmul_gflops(threads: int) -> float:
    n = 1536
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = time_call(lambda: torch.mm(a, b), 5, 2.0)
    return 2 * n**3 / t / 1e9


def _proc_status_kib(key: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key} field")


def _memory_case(kind: str, name: str) -> dict:
    if kind == "fl":
        cfg = name.split()[0]
        return next(c for c in layer_cases(cfg, 2) if c["name"] == name)
    return next(c for c in discriminator_cases(2) if f"{c['op']} {c['name']}" == name)


def _peak_child(kind: str, name: str, impl: str, threads: int) -> None:
    """Subprocess body: set up, reset the RSS high-water mark, run one forward+backward, print its peak.

    Prints the peak RSS during the step minus the RSS just before it (bytes): the step's own memory.
    Writing "5" to /proc/self/clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    """
    torch.set_num_threads(threads)
    case = _memory_case(kind, name)
    x = torch.randn(case["shape"]).requires_grad_(True)
    b = torch.randn(case["shape"][1]).requires_grad_(True)
    _build.load_extension("cpp")
    torch.nn.functional.conv2d(torch.randn(1, 2, 8, 8), torch.randn(2, 1, 3, 3), groups=2).sum()  # init
    if kind == "fl":
        with torch.no_grad():
            dy = torch.randn_like(ops.filtered_lrelu(x, case["fu"], case["fd"], b, impl="cpp", **_kw(case)))
        step = fl_step(case, impl, x, b, dy)
    else:
        step = d_step(case, impl, x, b)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    base = _proc_status_kib("VmRSS")
    step()
    print(json.dumps({"peak": (_proc_status_kib("VmHWM") - base) * 1024}))


def peak_memory(kind: str, name: str, impl: str, threads: int) -> int:
    """Peak extra RSS (bytes) of one forward+backward of case `name` ('fl' or 'd' kind) in a fresh process."""
    cmd = [sys.executable, __file__, "--peak-child", f"{kind},{name},{impl}", "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return int(json.loads(out)["peak"])


def bench_memory(fl_cases: list[dict], d_cases: list[dict], threads: int) -> list[dict]:
    rows = []
    named = [("fl", c["name"]) for c in fl_cases] + [("d", f"{c['op']} {c['name']}") for c in d_cases]
    for kind, name in named:
        m = {"name": name, "ref": peak_memory(kind, name, "ref", threads),
             "cpp": peak_memory(kind, name, "cpp", threads)}  # fmt: skip
        print(f"  {name:<30} ref {m['ref'] / 2**20:7.1f} MiB  cpp {m['cpp'] / 2**20:7.1f} MiB", flush=True)
        rows.append(m)
    return rows


def geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


D_HEADING = "### upfirdn2d and bias_act, 256x256 discriminator (cbase 32768), batch 2"
MEM_HEADING = "### Peak memory of forward+backward"


def d_section(dis: list[dict], note: str = "") -> list[str]:
    """Markdown lines of the discriminator section (`note`: a line under the heading)."""
    lines = [D_HEADING, ""] + ([note, ""] if note else [])
    body = [
        [r["op"], r["name"], str(list(r["shape"])), f"{r['t_ref'] * 1e3:.2f}", f"{r['t_cpp'] * 1e3:.2f}",
         f"{r['t_ref'] / r['t_cpp']:.1f}x"]
        for r in dis
    ]  # fmt: skip
    lines += _table(["op", "call", "input", "ref ms", "cpp ms", "speed-up"], body)
    for op in ("upfirdn2d", "bias_act"):
        sp = [r["t_ref"] / r["t_cpp"] for r in dis if r["op"] == op]
        lines.append(
            f"\n- {op}: geometric-mean speed-up **{geomean(sp):.1f}x**, min {min(sp):.1f}x (target >= 3x)."
        )
    return lines


def memory_section(mem: list[dict]) -> list[str]:
    """Markdown lines of the peak-memory section."""
    lines = ["", MEM_HEADING, ""]
    body = [[m["name"], f"{m['ref'] / 2**20:.1f}", f"{m['cpp'] / 2**20:.1f}",
             f"{m['cpp'] / max(m['ref'], 1):.2f}"] for m in mem]  # fmt: skip
    lines += _table(["call", "ref MiB", "cpp MiB", "cpp / ref"], body)
    worst = max(mem, key=lambda m: m["cpp"] / max(m["ref"], 1))
    return lines + [
        "",
        "Each number is measured in a fresh process: build the inputs (and dy), reset the RSS",
        "high-water mark (`echo 5 > /proc/self/clear_refs`), run one forward+backward (gradients for x",
        "and the bias), report VmHWM minus the RSS before the step: the memory the step itself needed.",
        f"Largest cpp / ref ratio: {worst['cpp'] / max(worst['ref'], 1):.2f} ({worst['name']}; target <= 1).",
    ]


def update_d_part(path: Path, dis: list[dict], d_mem: list[dict], note: str) -> None:
    """Replace the discriminator section and its peak-memory rows of an existing report (`--part d`)."""
    text = path.read_text() if path.is_file() else ""
    if D_HEADING not in text or MEM_HEADING not in text:
        raise SystemExit(f"--part d updates an existing full report, but {path} has no {D_HEADING!r} section")
    head, rest = text.split(D_HEADING, 1)
    mem_text = rest.split(MEM_HEADING, 1)[1]
    kept = []
    for line in mem_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].replace(".", "", 1).isdigit():
            if not cells[0].startswith(("upfirdn2d ", "bias_act ")):
                kept.append(
                    {"name": cells[0], "ref": float(cells[1]) * 2**20, "cpp": float(cells[2]) * 2**20}
                )
    lines = d_section(dis, note) + memory_section(kept + d_mem)
    path.write_text(head + "\n".join(lines) + "\n")


def write_report(
    path: Path, threads: int, mm: float, fl: list[dict], dis: list[dict], mem: list[dict], run: str
) -> None:
    """Write the `## ops` Markdown section (`run`: a line on the mode, load average and wall time)."""
    speed = [r["t_ref"] / r["t_cpp"] for r in fl]
    largest = sorted(fl, key=lambda r: -np.prod(r["shape"]))[:2]
    machine = f"{platform.platform()} ({platform.processor() or 'cpu'}, {os.cpu_count()} CPUs)"
    lines = [
        "## ops",
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine},",
        f"{threads} threads, torch {torch.__version__}. {run}",
        "Written by `python scripts/bench_ops.py` (part of `make bench`). 'ref' is the pure-PyTorch",
        "reference (zero-insertion upfirdn2d via depthwise conv2d + bias_act, spec §2.3), 'cpp' the",
        "compiled C++ CPU extension. Times are the best of several runs of forward+backward (gradients",
        "for x and the bias); a reference call longer than 4x the timing budget is timed once.",
        "",
        f"fp32 matmul on this machine in the same run: **{mm:.1f} GFLOP/s**.",
        "",
        "### filtered_lrelu, 256x256 generators, batch 2",
        "",
    ]
    header = ["layer", "input", "output", "ref ms", "cpp ms", "speed-up", "cpp GFLOP/s", "% of matmul"]
    body = [
        [r["name"], str(list(r["shape"])), str(list(r["out"][2:])), f"{r['t_ref'] * 1e3:.1f}",
         f"{r['t_cpp'] * 1e3:.1f}", f"{r['t_ref'] / r['t_cpp']:.1f}x", f"{r['gflops']:.1f}",
         f"{100 * r['gflops'] / mm:.0f}%"]
        for r in fl
    ]  # fmt: skip
    lines += _table(header, body)
    big = ", ".join(
        f"{r['name']} {r['gflops']:.1f} GFLOP/s = {100 * r['gflops'] / mm:.0f}% of matmul" for r in largest
    )
    lines += [
        "",
        f"- Geometric-mean speed-up over all {len(fl)} layers: **{geomean(speed):.1f}x** (target >= 15x).",
        f"- Two largest shapes: {big} (target >= 20%).",
        "- Effective GFLOP/s counts the multiply-adds of a polyphase algorithm (no products with inserted",
        "  zeros, only kept samples; separable where the filters are 1-D), forward plus backward.",
        "",
    ]
    lines += d_section(dis) + (memory_section(mem) if mem else [])
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default=str(ROOT / "docs" / "bench" / "ops.md"), help="Markdown file to write"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="every third layer, 3 D blocks, shorter timing")
    parser.add_argument(
        "--part",
        choices=("all", "d"),
        default="all",
        help="'d': only the discriminator's upfirdn2d/bias_act calls (timing and peak memory), replacing"
        " that part of an existing full report at --out",
    )
    parser.add_argument(
        "--budget", type=float, default=1.0, help="seconds of repeated timing per measurement"
    )
    parser.add_argument("--peak-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.peak_child:
        kind, name, impl = args.peak_child.split(",")
        _peak_child(kind, name, impl, threads=args.threads)
        return 0
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    _build.load_extension("cpp")
    if args.part == "d":
        print("discriminator upfirdn2d / bias_act fwd+bwd:", flush=True)
        dis = bench_discriminator(discriminator_cases(2), args.budget)
        print("peak memory of forward+backward (fresh process each):", flush=True)
        d_mem = bench_memory([], discriminator_cases(2, (256, 64, 16)), args.threads)
        note = (
            f"Re-measured {datetime.date.today().isoformat()} with `--part d` ({args.threads} thread"
            f"{'s' if args.threads != 1 else ''},"
            f" {time.perf_counter() - t_start:.0f} s wall; 1-minute load average {load_start:.1f} at the"
            f" start, {os.getloadavg()[0]:.1f} at the end); the rest is from the full run."
        )
        update_d_part(Path(args.out), dis, d_mem, note)
        print(f"updated {args.out}")
        return 0
    mm = matmul_gflops(args.threads)
    print(f"fp32 matmul: {mm:.1f} GFLOP/s", flush=True)
    cases = layer_cases("T", 2) + layer_cases("R", 2)
    blocks = (256, 128, 64, 32, 16, 8)
    if args.quick:
        cases, blocks = cases[::3], (256, 64, 16)
    budget = 0.3 if args.quick else args.budget
    print("filtered_lrelu fwd+bwd:", flush=True)
    fl = bench_filtered_lrelu(cases, budget)
    print("discriminator upfirdn2d / bias_act fwd+bwd:", flush=True)
    dis = bench_discriminator(discriminator_cases(2, blocks), budget)
    print("peak memory of forward+backward (fresh process each):", flush=True)
    mem = bench_memory(
        cases[::3] if not args.quick else cases, discriminator_cases(2, (256, 64, 16)), args.threads
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    load_end = os.getloadavg()[0]
    run = (
        f"{'Quick' if args.quick else 'Full'} run, {time.perf_counter() - t_start:.0f} s wall; 1-minute load"
        f" average {load_start:.1f} at the start, {load_end:.1f} at the end (ratios are side by side;"
        " absolute times grow with the load)."
    )
    write_report(out, args.threads, mm, fl, dis, mem, run)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
