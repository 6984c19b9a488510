"""Benchmark the equivariance metrics on CPU: EQ-T (int/frac) and EQ-R samples per second.

Two untrained StyleGAN3-T generators, a tiny one (16x16) and a 64x64 one, run the three EQ metrics
side by side in one process (one torch thread, pure-PyTorch ops and the default ops) and report
samples per second and per CPU-second (less sensitive to other jobs on a shared machine).

Usage: python scripts/bench_metrics.py --out docs/bench/metrics.md [--samples 16]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

import sg3.ops
from sg3.metrics.equivariance import compute_equivariance
from sg3.modules.generator import Generator

NETS = {
    "tiny 16x16 (cbase 128, cmax 16)": dict(img_resolution=16, channel_base=128, channel_max=16),
    "64x64 (cbase 2048, cmax 64)": dict(img_resolution=64, channel_base=2048, channel_max=64),
}
KINDS = {"eqt_int": "int", "eqt_frac": "frac", "eqr": "rot"}


def _measure(G: torch.nn.Module, kind: str, n: int) -> tuple[float, float]:
    compute_equivariance(G, kind, 4, progress=False)  # warm-up (filter design caches, allocator)
    w0, c0 = time.perf_counter(), time.process_time()
    compute_equivariance(G, kind, n, seed=1, progress=False)
    return n / (time.perf_counter() - w0), n / max(time.process_time() - c0, 1e-9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="Markdown file to write")
    p.add_argument("--samples", type=int, default=16, help="samples per measurement (multiple of 4)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for impl in ("ref", "auto"):
        for label, net in NETS.items():
            torch.manual_seed(0)
            G = Generator(z_dim=64, c_dim=0, w_dim=64, img_channels=3, **net).eval()
            n = args.samples if net["img_resolution"] <= 16 else max(4, args.samples // 2)
            with sg3.ops.use_impl(impl):
                for name, kind in KINDS.items():
                    wall, cpu = _measure(G, kind, n)
                    rows.append((impl, label, name, n, wall, cpu))
                    print(
                        f"{impl:4s} {label:34s} {name:8s} {wall:7.2f} samples/s  {cpu:7.2f} samples/CPU-s",
                        flush=True,
                    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## metrics",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.platform()}, {os.cpu_count()} CPU cores "
        f"shared with other jobs (load average {load:.1f} at the end), torch {torch.__version__}, "
        f"Python {platform.python_version()}, one torch thread.",
        "",
        "Equivariance metrics on untrained StyleGAN3-T generators (batch 4, force_fp32; each EQ sample runs "
        "the synthesis network twice plus the pixel-space reference: integer shift, Lanczos-3 shift, or "
        "band-limited rotation with a 47x47 filter at 4x upsampling). `ref` = pure-PyTorch ops, "
        "`auto` = the process default (compiled CPU kernels when available, else ref).",
        "",
        "| ops | network | metric | samples | samples/s | samples/CPU-s |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {i} | {lab} | {m} | {n} | {w:.2f} | {c:.2f} |" for i, lab, m, n, w, c in rows]
    ref = {(lab, m): c for i, lab, m, _n, _w, c in rows if i == "ref"}
    lines += ["", "Ratios (samples/CPU-s): " + "; ".join(
        f"{m} 64x64 vs tiny {ref[(list(NETS)[1], m)] / ref[(list(NETS)[0], m)]:.2f}x" for m in KINDS
    ) + f"; EQ-R vs EQ-T int on 64x64 {ref[(list(NETS)[1], 'eqr')] / ref[(list(NETS)[1], 'eqt_int')]:.2f}x.",
        "A 50k-sample EQ metric takes 50000 / (samples/s) seconds at these rates."]  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
