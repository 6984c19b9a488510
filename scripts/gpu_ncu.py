"""The `ncu` stage of scripts/gpu_check.py: hardware counters of the CUDA filtered_lrelu kernels.

Nsight Compute (`ncu`, with `--clock-control none` as the device notes ask) runs this file as its target
(`--target LAYER ...`): for each named layer of the 256x256 generators (default T256/L8, T256/L10,
R256/L7: the common up 2 / down 2 shape, the largest up 4 layer, and config R's radial up 4 layer), the
tiled and the blocked kernel, one forward call (writing the signs) and one backward call, at batch 8
(ncu replays each launch for every pass of its sections). Only kernels whose name contains
'filtered_lrelu' are profiled. The report is exported to CSV and condensed per kernel launch: its label
(layer, kernel, direction), instance name, grid and block, and every metric of the sections asked for
(speed of light, occupancy, launch statistics, warp states, scheduler, memory and compute workload),
with the headline ones (duration, SM and memory throughput, occupancy, registers, shared memory, warp
cycles per issued instruction) in `headline` for the report table.

Usage (on a GPU host, normally through gpu_check.py): python scripts/gpu_ncu.py --target T256/L8
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gpu_check_lib as lib

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LAYERS = ("T256/L8", "T256/L10", "R256/L7")
BATCH = 8  # images per call: thousands of blocks per launch already, and each replay pass stays short
SECTIONS = (
    "SpeedOfLight",
    "Occupancy",
    "LaunchStats",
    "WarpStateStats",
    "SchedulerStats",
    "MemoryWorkloadAnalysis",
    "ComputeWorkloadAnalysis",
)
# Report-table columns: (column, metric name as ncu names it).
HEADLINE = (
    ("duration", "Duration"),
    ("sm_pct", "Compute (SM) Throughput"),
    ("mem_pct", "Memory Throughput"),
    ("occupancy_pct", "Achieved Occupancy"),
    ("theoretical_occupancy_pct", "Theoretical Occupancy"),
    ("registers", "Registers Per Thread"),
    ("smem_per_block", "Dynamic Shared Memory Per Block"),
    ("cycles_per_issue", "Warp Cycles Per Issued Instruction"),
    ("issue_busy_pct", "Issue Slots Busy"),
)
LABELS_MARK = "SG3_NCU_LABELS "
_TIME_UNITS = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}


def find_layer(spec: str) -> tuple[str, dict[str, Any]]:
    """'T256/L8' -> (generator, layer dict of gpu_check_lib.filtered_lrelu_layers); ValueError if unknown."""
    gen, _, short = spec.partition("/")
    if gen not in lib.GENERATORS:
        raise ValueError(
            f"ncu layer {spec!r}: unknown generator {gen!r}; accepted: {', '.join(lib.GENERATORS)}"
        )
    layers = lib.filtered_lrelu_layers(lib.GENERATORS[gen])
    for layer in layers:
        if layer["name"].split("_")[0] == short:
            return gen, layer
    names = ", ".join(layer["name"].split("_")[0] for layer in layers)
    raise ValueError(f"ncu layer {spec!r}: {gen} has no layer {short!r}; accepted: {names}")


def run_target(specs: list[str]) -> list[str]:
    """The profiled program: fwd and bwd of each layer with each CUDA kernel; returns the launch labels."""
    import torch

    import sg3.ops as ops
    from gpu_check_kernels import _layer_case
    from sg3.ops.filtered_lrelu import set_cuda_kernel

    labels = []
    for spec in specs:
        gen, layer = find_layer(spec)
        x, b, fu, fd, kw = _layer_case({**layer, "x_shape": [BATCH, *layer["x_shape"][1:]]})
        for kernel in ("tiled", "blocked"):
            set_cuda_kernel(kernel)
            try:
                xg = x.detach().requires_grad_(True)
                y = ops.filtered_lrelu(xg, fu, fd, b, impl="cuda", **kw)
                torch.autograd.grad(y, [xg], torch.randn_like(y))
                torch.cuda.synchronize()
            finally:
                set_cuda_kernel(None)
            labels += [f"{gen}/{layer['name']} {kernel} {d}" for d in ("fwd", "bwd")]
        del x, b
        torch.cuda.empty_cache()
    return labels


def ncu_path() -> str | None:
    """The ncu executable: on PATH, else in $CUDA_HOME/bin (None if neither)."""
    found = shutil.which("ncu")
    if found:
        return found
    candidate = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "ncu"
    return str(candidate) if candidate.is_file() else None


def _number(value: str) -> float | str:
    try:
        return float(value.replace(",", ""))
    except ValueError:
        return value


def parse_details_csv(text: str, labels: list[str]) -> tuple[list[dict[str, Any]], str | None]:
    """ncu's `--csv --page details` output -> one dict per profiled kernel launch, in launch order.

    Returns:
        (kernels, note): each kernel has id, label (from `labels` when the counts agree), kernel, grid,
        block, metrics ('Section/Metric [unit]' -> value), headline (HEADLINE columns; duration in us) and
        their units; note says why labels are missing.
    """
    rows = list(csv.reader(line for line in text.splitlines() if line.startswith('"')))
    if not rows:
        return [], "no CSV rows in ncu's output"
    header, by_id = rows[0], {}
    for row in rows[1:]:
        rec = dict(zip(header, row))
        kid = rec.get("ID", "")
        k = by_id.setdefault(
            kid,
            {
                "id": int(kid) if kid.isdigit() else kid,
                "kernel": rec.get("Kernel Name", ""),
                "grid": rec.get("Grid Size", ""),
                "block": rec.get("Block Size", ""),
                "metrics": {},
                "headline": {},
                "units": {},
            },
        )
        name, unit = rec.get("Metric Name", ""), rec.get("Metric Unit", "")
        value = _number(rec.get("Metric Value", ""))
        k["metrics"][f"{rec.get('Section Name', '')}/{name}" + (f" [{unit}]" if unit else "")] = value
        for column, metric in HEADLINE:
            if name == metric and isinstance(value, float):
                if column == "duration":  # microseconds
                    value, unit = value * _TIME_UNITS.get(unit, float("nan")), "us"
                k["headline"][column] = value
                k["units"][column] = unit
    kernels = sorted(by_id.values(), key=lambda k: (isinstance(k["id"], str), k["id"]))
    note = None
    if len(kernels) == len(labels):
        for k, label in zip(kernels, labels):
            k["label"] = label
    else:
        note = f"{len(kernels)} kernels profiled for {len(labels)} labelled calls: labels left out"
    return kernels, note


def stage_ncu(work: Path, budget: float, specs: list[str]) -> dict[str, Any]:
    """Profile the target under ncu within `budget` seconds; the condensed kernels and ncu's versions."""
    ncu = ncu_path()
    if ncu is None:
        raise RuntimeError("ncu not found on PATH or in $CUDA_HOME/bin")
    for spec in specs:
        find_layer(spec)
    start = time.monotonic()
    env = lib.child_env(REPO / "src", Path(__file__).resolve().parent)
    listed = subprocess.run([ncu, "--list-sections"], capture_output=True, text=True, timeout=60, env=env)
    sections = [s for s in SECTIONS if s in listed.stdout]
    report = work / "ncu_report"
    cmd = [ncu, "--clock-control", "none", "--kernel-name", "regex:filtered_lrelu", "-f", "-o", str(report)]
    for s in sections:
        cmd += ["--section", s]
    cmd += [sys.executable, str(Path(__file__).resolve()), "--target", *specs]
    left = max(budget - (time.monotonic() - start), 10)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=env, cwd=REPO)
    out = proc.stdout + proc.stderr
    labels = next(
        (json.loads(line[len(LABELS_MARK) :]) for line in out.splitlines() if line.startswith(LABELS_MARK)),
        [],
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ncu exited with {proc.returncode}: {out[-2000:]}")
    exported = subprocess.run(
        [ncu, "--import", f"{report}.ncu-rep", "--csv", "--page", "details"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    kernels, note = parse_details_csv(exported.stdout, labels)
    version = subprocess.run([ncu, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return {
        "ok": bool(kernels),
        "ncu": version.splitlines()[-1] if version else "",
        "sections": sections,
        "layers": specs,
        "labels_note": note,
        "kernels": kernels,
        "output_tail": "" if kernels else (out + exported.stdout + exported.stderr)[-3000:],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", nargs="+", metavar="LAYER", required=True, help="layers, e.g. T256/L8")
    args = p.parse_args(argv)
    labels = run_target(args.target)
    print(LABELS_MARK + json.dumps(labels), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
