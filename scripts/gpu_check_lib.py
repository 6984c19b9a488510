"""Pieces of scripts/gpu_check.py that need no GPU: stage bookkeeping, layer tables, log parsing, report.

Kept apart from the stages themselves so that the default (CPU) test tier can check them
(tests/gpu_check/). Nothing here imports CUDA-only code or touches a device.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPORT_FORMAT = "sg3-gpu-check"
REPORT_VERSION = 1

# Targets of issue 8 (one H100, 256x256, batch 32): s/kimg and peak memory (GB) per config.
TARGETS = {
    "stylegan3-t": {"sec_per_kimg": 20.0, "peak_gpu_mem_gb": 9.5, "official_a100_sec_per_kimg": 49.81},
    "stylegan3-r": {"sec_per_kimg": 24.0, "peak_gpu_mem_gb": 6.7, "official_a100_sec_per_kimg": 56.73},
}

# Generator configurations whose filtered_lrelu layers are timed: name -> synthesis kwargs and batch.
_CFG_KWARGS = {
    "stylegan3-t": dict(channel_base=32768, channel_max=512, conv_kernel=3, use_radial_filters=False),
    "stylegan3-r": dict(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
}
GENERATORS = {
    f"{cfg[-1].upper()}{res}": dict(cfg=cfg, img_resolution=res, **_CFG_KWARGS[cfg], batch=batch)
    for res, batch in ((256, 32), (1024, 4))
    for cfg in _CFG_KWARGS
}


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def child_env(*paths: str | Path, **extra: str) -> dict[str, str]:
    """The environment of a child Python process: this one's, with `paths` in front of PYTHONPATH (what is
    already there stays: on the device, the carried wheels in /tmp/site) and the `extra` variables set."""
    pythonpath = os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": pythonpath, **extra}


def new_report(argv: list[str]) -> dict[str, Any]:
    """An empty report: format header, start time, the command line, the SG3_* environment variables (they
    choose kernels and executions, e.g. SG3_FLRELU_KERNEL, SG3_MODCONV) and room for the stages."""
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "started": now_iso(),
        "argv": list(argv),
        "settings": {k: v for k, v in sorted(os.environ.items()) if k.startswith("SG3_")},
        "host": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count()},
        "stages": {},
    }


def run_stage(
    report: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]], *, skip: str | None = None
) -> bool:
    """Run one stage, recording status ('ok' | 'failed' | 'skipped'), seconds, result or error.

    Args:
        report: The report being assembled (modified in place).
        name: Stage name (key under `report['stages']`).
        fn: The stage; returns a JSON-able dict of results. A result with `"ok": False` marks the stage
            failed without an exception (e.g. failing tests).
        skip: If given, the stage is not run and this reason is recorded.

    Returns:
        True if the stage ran and succeeded.
    """
    entry: dict[str, Any] = {"status": "skipped", "started": now_iso()}
    report["stages"][name] = entry
    if skip is not None:
        entry["reason"] = skip
        return False
    start = time.monotonic()
    try:
        result = fn()
        entry["result"] = result
        entry["status"] = "failed" if isinstance(result, dict) and result.get("ok") is False else "ok"
    except Exception as exc:  # noqa: BLE001 - a stage's failure is data for the report, not a crash
        entry["status"] = "failed"
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc()[-4000:]
    entry["seconds"] = round(time.monotonic() - start, 3)
    return entry["status"] == "ok"


class Deadline:
    """Wall-clock budget of the whole check; stages ask how much time is left for them."""

    def __init__(self, total_s: float) -> None:
        self.total_s = float(total_s)
        self.start = time.monotonic()

    def left(self) -> float:
        """Seconds left (may be negative)."""
        return self.total_s - (time.monotonic() - self.start)

    def budget(self, cap: float, reserve: float = 0.0) -> float:
        """Seconds a stage may use: at most `cap`, leaving `reserve` seconds for later stages (>= 0)."""
        return max(0.0, min(cap, self.left() - reserve))


def filtered_lrelu_layers(gen: dict[str, Any]) -> list[dict[str, Any]]:
    """Arguments of every filtered_lrelu call of one synthesis network (spec 1.4/1.6), from sg3's schedule.

    Args:
        gen: One entry of `GENERATORS` (img_resolution, channel_base, channel_max, conv_kernel,
            use_radial_filters, batch).

    Returns:
        One dict per layer: name, x shape `[N, C, H, W]` (the modulated conv's output, i.e. in_size + k - 1),
        up, down, padding, filter design parameters, fp16 flag, gain, slope, clamp.
    """
    from sg3.modules.filters import synthesis_schedule

    sched = synthesis_schedule(
        gen["img_resolution"],
        3,
        channel_base=gen["channel_base"],
        channel_max=gen["channel_max"],
        conv_kernel=gen["conv_kernel"],
        use_radial_filters=gen["use_radial_filters"],
    )
    layers = []
    for spec in sched["layers"]:
        k = 1 if spec.is_torgb else gen["conv_kernel"]
        side = spec.in_size + k - 1
        layers.append(
            {
                "name": spec.name,
                "x_shape": [gen["batch"], spec.out_channels, side, side],
                "up": spec.up_factor,
                "down": spec.down_factor,
                "padding": list(spec.padding),
                "up_filter": {
                    "numtaps": spec.up_taps,
                    "cutoff": spec.in_cutoff,
                    "width": 2 * spec.in_half_width,
                    "fs": spec.tmp_sampling_rate,
                    "radial": False,
                },
                "down_filter": {
                    "numtaps": spec.down_taps,
                    "cutoff": spec.out_cutoff,
                    "width": 2 * spec.out_half_width,
                    "fs": spec.tmp_sampling_rate,
                    "radial": spec.down_radial,
                },
                "fp16": spec.use_fp16,
                "gain": 1.0 if spec.is_torgb else math.sqrt(2),
                "slope": 1.0 if spec.is_torgb else 0.2,
                "clamp": 256.0,
                "out_size": spec.out_size,
            }
        )
    return layers


def polyphase_flops(layer: dict[str, Any]) -> float:
    """Floating-point operations (2 per multiply-add) of one fused forward call, polyphase, kept samples only.

    Separable filters cost taps/up (up pass) or taps (down pass) per sample and axis; a radial down filter
    costs taps^2 per output sample.
    """
    n, c, h, _ = layer["x_shape"]
    up, down, out = layer["up"], layer["down"], layer["out_size"]
    tu, td = layer["up_filter"]["numtaps"], layer["down_filter"]["numtaps"]
    z = (out - 1) * down + td  # z-grid side the downsampler reads
    up_macs = (h * z + z * z) * tu / up
    if layer["down_filter"]["radial"]:
        down_macs = out * out * td * td
    else:
        down_macs = (z * out + out * out) * td
    return 2.0 * n * c * (up_macs + down_macs)


def gpu_test_files(tests_dir: str | Path) -> list[str]:
    """Test files under tests_dir that use the `gpu` marker (collecting only these keeps unrelated modules,
    whose imports may need packages the GPU machine lacks, out of the run)."""
    files = []
    for path in sorted(Path(tests_dir).rglob("test_*.py")):
        if "mark.gpu" in path.read_text(errors="replace"):
            files.append(str(path))
    return files


def parse_junit(path: str | Path) -> dict[str, Any]:
    """Counts and failing test ids from a pytest --junitxml file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing = []
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failing.append(f"{case.get('classname')}::{case.get('name')}")
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failing"] = failing[:50]
    return counts


def _mean(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key)
    return float(value["mean"]) if isinstance(value, dict) and "mean" in value else None


def read_ticks(run_dir: str | Path) -> list[dict[str, float]]:
    """Per-tick timing scalars from `<run_dir>/stats.jsonl` (kimg, sec_per_kimg, img_per_sec)."""
    path = Path(run_dir) / "stats.jsonl"
    ticks = []
    if not path.is_file():
        return ticks
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut off by a timeout
        ticks.append(
            {
                "kimg": _mean(rec, "Progress/kimg"),
                "sec_per_kimg": _mean(rec, "Timing/sec_per_kimg"),
                "img_per_sec": _mean(rec, "Timing/img_per_sec"),
                "peak_gpu_mem_gb": _mean(rec, "Resources/peak_gpu_mem_gb"),
            }
        )
    return ticks


def read_peak_memory_gb(run_dir: str | Path, ticks: list[dict[str, float]] | None = None) -> float | None:
    """Largest `Resources/peak_gpu_mem_gb` of the run: its stats.jsonl ticks (`ticks` if already read by
    `read_ticks`), and any metrics.csv under the run dir (CSV logger); None if neither has it."""
    ticks = read_ticks(run_dir) if ticks is None else ticks
    mems = [t["peak_gpu_mem_gb"] for t in ticks if t.get("peak_gpu_mem_gb") is not None]
    best = max(mems) if mems else None
    for csv_path in Path(run_dir).rglob("metrics.csv"):
        lines = csv_path.read_text().splitlines()
        if not lines:
            continue
        header = lines[0].split(",")
        if "Resources/peak_gpu_mem_gb" not in header:
            continue
        col = header.index("Resources/peak_gpu_mem_gb")
        for row in lines[1:]:
            cells = row.split(",")
            if col < len(cells) and cells[col]:
                try:
                    value = float(cells[col])
                except ValueError:
                    continue
                best = value if best is None else max(best, value)
    return best


def summarize_ticks(ticks: list[dict[str, float]], skip_first: int = 1) -> dict[str, Any]:
    """Median s/kimg and img/s over the ticks after the first `skip_first` (warm-up, cudnn autotune)."""
    steady = [t for t in ticks[skip_first:] if t.get("sec_per_kimg")]
    if not steady:
        steady = [t for t in ticks if t.get("sec_per_kimg")]
    if not steady:
        return {"ticks": len(ticks), "steady_ticks": 0}
    return {
        "ticks": len(ticks),
        "steady_ticks": len(steady),
        "kimg_done": ticks[-1].get("kimg"),
        "sec_per_kimg": statistics.median(t["sec_per_kimg"] for t in steady),
        "img_per_sec": statistics.median(t["img_per_sec"] for t in steady),
        "first_tick_sec_per_kimg": ticks[0].get("sec_per_kimg"),
    }


def judge_training(cfg: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Compare one config's measured numbers with the issue's targets (None where unmeasured)."""
    target = TARGETS.get(cfg, {})
    spk, mem = summary.get("sec_per_kimg"), summary.get("peak_gpu_mem_gb")
    return {
        "target_sec_per_kimg": target.get("sec_per_kimg"),
        "target_peak_gpu_mem_gb": target.get("peak_gpu_mem_gb"),
        "meets_speed": None if spk is None or not target else spk <= target["sec_per_kimg"],
        "meets_memory": None if mem is None or not target else mem <= target["peak_gpu_mem_gb"],
        "speedup_vs_official_a100": None
        if spk is None or not target
        else target["official_a100_sec_per_kimg"] / spk,
    }


def kernel_generators(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The kernels stage's layer results per generator ({} when the stage did not run or failed)."""
    return report["stages"].get("kernels", {}).get("result", {}).get("generators", {})


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A short plain-text table of the report (printed last, so the device tool's output tail shows it)."""
    lines = [
        f"sg3 gpu check  {report.get('started')} -> {report.get('finished')}  ({report.get('wall_s')} s)"
    ]
    env = report["stages"].get("env", {}).get("result", {})
    if env:
        lines.append(
            f"device {env.get('device_name')}  driver {env.get('driver')}  torch {env.get('torch')}  "
            f"CUDA {env.get('torch_cuda')}"
        )
    for name, entry in report["stages"].items():
        extra = entry.get("reason") or entry.get("error") or ""
        lines.append(f"  {name:<12} {entry['status']:<8} {entry.get('seconds', 0):>8.1f} s  {extra[:90]}")
    tests = report["stages"].get("gpu_tests", {}).get("result", {})
    if tests:
        lines.append(
            f"gpu tests: {tests.get('passed')} passed, {tests.get('failures')} failed, "
            f"{tests.get('errors')} errors, {tests.get('skipped')} skipped"
        )
    for key in ("train_t", "train_r"):
        res = report["stages"].get(key, {}).get("result", {})
        if res.get("sec_per_kimg") is not None:
            lines.append(
                f"{res['cfg']}: {res['sec_per_kimg']:.2f} s/kimg  {res['img_per_sec']:.1f} img/s  "
                f"peak {res.get('peak_gpu_mem_gb')} GB  targets: speed {res.get('meets_speed')} "
                f"memory {res.get('meets_memory')}"
            )
    for gen, rows in kernel_generators(report).items():
        total = sum(r.get("cuda_fwd_bwd_ms") or 0 for r in rows)
        ref = sum(r.get("ref_fwd_bwd_ms") or 0 for r in rows)
        blocked = sum(r.get("blocked_fwd_bwd_ms") or 0 for r in rows)
        lines.append(
            f"filtered_lrelu {gen}: fwd+bwd all layers {total:.2f} ms (blocked kernel {blocked:.2f} ms, "
            f"ref {ref:.2f} ms)"
        )
    return lines


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write `gpu_check.json` (atomically) and `gpu_check.txt` (the summary) under out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_check.json"
    tmp = out / f"gpu_check.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, path)
    (out / "gpu_check.txt").write_text("\n".join(summary_lines(report)) + "\n")
    return path
