"""Benchmark: training img/s of `trainer=ddp_sim` (2 CPU processes, gloo) vs 1 process, same global batch.

Both runs train the same config (tiny model by default) for the same number of images through `sg3-train`,
side by side in one invocation. Throughput is read from the run's stats.jsonl (`Timing/img_per_sec` of every
tick after the first, i.e. steady state without start-up and warm-up); the end-to-end wall time of each
command (imports, process start, rendezvous included) is reported too.

    python scripts/bench_ddp.py --out docs/bench/ddp.md [--kimg 0.512] [--batch 16] [--model tiny]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# label -> (trainer config, `threads` setting). threads=auto gives each process its share of the CPUs
# (all of them for one process, half each for the 2 DDP processes); see docs/training.md, "CPU threads".
MODES = {
    "1 process, all cores (trainer=cpu, threads=auto)": ("cpu", "auto"),
    "1 process, 1 thread (trainer=cpu, threads=1)": ("cpu", "1"),
    "2 processes (trainer=ddp_sim, threads=auto)": ("ddp_sim", "auto"),
}


def sg3_train() -> str:
    """The sg3-train console script of this interpreter's environment."""
    path = Path(sys.executable).with_name("sg3-train")
    if not path.exists():
        raise SystemExit(f"{path} not found: install sg3 into this environment (make install)")
    return str(path)


def run(trainer: str, threads: str, dataset: str, root: Path, args: argparse.Namespace) -> dict[str, float]:
    """Trains once with `trainer=<trainer> threads=<threads>`; returns steady img/s, spread, wall time."""
    name = f"bench-{trainer}-{threads}"
    cmd = [
        sg3_train(),
        f"trainer={trainer}",
        f"threads={threads}",
        f"model={args.model}",
        f"data.urls={dataset}",
        "data.num_workers=0",
        f"batch={args.batch}",
        f"total_kimg={args.kimg}",
        f"kimg_per_tick={args.kimg / args.ticks}",
        "snap=100000",
        "grid.gw=4",  # small fixed-seed grids: the 32x32 default would dominate a short run
        "grid.gh=2",
        "loss.r1_gamma=1",
        "logger=none",
        f"runs_dir={root / 'runs'}",
        f"name={name}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    for key in (
        "MASTER_ADDR",
        "MASTER_PORT",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "RANK",
        "NODE_RANK",
        "OMP_NUM_THREADS",
    ):
        env.pop(key, None)
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed ({res.returncode}):\n{res.stderr[-4000:]}")
    lines = (root / "runs" / name / "stats.jsonl").read_text().splitlines()
    rates = [json.loads(line)["Timing/img_per_sec"]["mean"] for line in lines][1:]  # tick 0: warm-up
    if not rates:
        raise SystemExit(f"{name}: too few ticks to measure; raise --ticks")
    return {
        "img_per_sec": statistics.median(rates),
        "spread": (max(rates) - min(rates)) / 2,
        "ticks": len(rates),
        "wall": wall,
    }


def markdown(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    one, one_thread, two = (results[k] for k in MODES)
    lines = [
        "## ddp",
        "",
        f"Training throughput of `trainer=ddp_sim` (2 CPU processes, Lightning DDP over gloo) against one "
        f"process, same global batch ({args.batch}), model `{args.model}`, {args.kimg} kimg per run; "
        f"steady-state img/s is the median over {one['ticks']} ticks after the first "
        "(`Timing/img_per_sec` in stats.jsonl), wall time includes start-up. Measured by "
        "`scripts/bench_ddp.py`.",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}; {datetime.date.today().isoformat()}; load average "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine slows every mode).",
        "",
        "| mode | img/s (steady) | ± | wall time (s) |",
        "|---|---:|---:|---:|",
    ]
    for label, r in results.items():
        lines.append(f"| {label} | {r['img_per_sec']:.1f} | {r['spread']:.1f} | {r['wall']:.1f} |")
    lines += [
        "",
        f"2 processes vs 1 process on all cores: **{two['img_per_sec'] / one['img_per_sec']:.2f}x** "
        f"steady-state ({one['wall'] / two['wall']:.2f}x end to end); vs 1 single-threaded process: "
        f"{two['img_per_sec'] / one_thread['img_per_sec']:.2f}x.",
        "",
        "On CPUs the processes share the machine's cores and each step adds a gloo all-reduce of all "
        "gradients, so the ratio mostly reflects how well the tiny model's ops use threads (one process "
        "with several threads vs two single-threaded processes), not multi-GPU scaling; on a loaded shared "
        "machine it is noisy: there a process with more threads than free cores is many times slower (its "
        "OpenMP threads wait on each other in barriers; docs/training.md, 'CPU threads'). The point of "
        "`ddp_sim` is to exercise the multi-process code path. On GPUs "
        "each process has its own device: the per-GPU batch halves with every doubling of GPUs, and scaling "
        "is near-linear while the per-GPU batch keeps each GPU busy (see the GPU section for one-GPU "
        "numbers).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write (default: print only)")
    parser.add_argument("--model", default="tiny", help="model config (conf/model)")
    parser.add_argument("--batch", type=int, default=8, help="global batch (even)")
    parser.add_argument("--kimg", type=float, default=0.064, help="thousands of images per run")
    parser.add_argument("--ticks", type=int, default=4, help="ticks per run (the first is not measured)")
    parser.add_argument("--resolution", type=int, default=16, help="demo dataset resolution")
    args = parser.parse_args(argv)
    if args.batch % 2:
        parser.error(f"--batch={args.batch} must be even (it is split over 2 processes)")
    from sg3.data.demo import ensure_demo_dataset

    with tempfile.TemporaryDirectory(prefix="sg3-bench-ddp-") as tmp:
        root = Path(tmp)
        dataset = ensure_demo_dataset(str(root / "data"), resolution=args.resolution, count=256)
        results = {
            label: run(trainer, threads, dataset, root, args) for label, (trainer, threads) in MODES.items()
        }
    text = markdown(results, args)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
