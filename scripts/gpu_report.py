"""Render GPU check reports (scripts/gpu_check.py's gpu_check.json) as the `## gpu` section of the benchmarks.

Usage: python scripts/gpu_report.py docs/gpu_runs/*.json --out docs/bench/gpu.md

Each report becomes one subsection: device, driver, versions, commit, the stages' status, the training
numbers against the issue's targets, and the filtered_lrelu kernel table. Nothing is measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_check_lib as lib  # noqa: E402


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def training_rows(report: dict[str, Any]) -> list[str]:
    """Markdown rows of the training stages: s/kimg, img/s, peak memory (steady and first tick), targets."""
    rows = []
    for key in ("train_t", "train_r"):
        res = report["stages"].get(key, {}).get("result")
        if not res:
            continue
        ticks = res.get("per_tick") or []
        first_mem = ticks[0].get("peak_gpu_mem_gb") if ticks else None
        steady_mem = [t["peak_gpu_mem_gb"] for t in ticks[1:] if t.get("peak_gpu_mem_gb") is not None]
        target = lib.TARGETS.get(res["cfg"], {})
        rows.append(
            f"| {res['cfg']} | {_num(res.get('sec_per_kimg'))} | {_num(res.get('img_per_sec'), '{:.1f}')} | "
            f"{res.get('steady_ticks', 0)} x {_num(res.get('kimg_done'), '{:.2f}')} kimg | "
            f"{_num(max(steady_mem) if steady_mem else None)} | {_num(first_mem)} | "
            f"{target.get('sec_per_kimg')} s/kimg, {target.get('peak_gpu_mem_gb')} GB | "
            f"{target.get('official_a100_sec_per_kimg')} |"
        )
    return rows


def kernel_rows(report: dict[str, Any]) -> list[str]:
    """Markdown rows of the filtered_lrelu kernel timings (CUDA, and the reference where it was timed)."""
    rows = []
    for gen, layers in lib.kernel_generators(report).items():
        for r in layers:
            if "error" in r:
                rows.append(f"| {gen} {r['layer']} | error: {r['error'][:80]} |||||||")
                continue
            fp16 = "yes" if r["fp16"] else "no"
            rows.append(
                f"| {gen} {r['layer']} | {r['x_shape']} | {r['up']}/{r['down']} | {fp16} | "
                f"{_num(r.get('cuda_fwd_ms'))} | {_num(r.get('cuda_fwd_bwd_ms'))} | "
                f"{_num(r.get('ref_fwd_bwd_ms'))} | {_num(r.get('speedup_fwd_bwd'), '{:.1f}x')} | "
                f"{_num(r.get('cuda_fwd_gflops'), '{:.0f}')} | {_num(r.get('rel_err_vs_ref'), '{:.1e}')} |"
            )
    return rows


def blocked_rows(report: dict[str, Any]) -> list[str]:
    """Markdown rows comparing the blocked CUDA kernel with the tiled one (layers where both were timed)."""
    rows = []
    for gen, layers in lib.kernel_generators(report).items():
        for r in layers:
            if "blocked_fwd_ms" not in r or "cuda_fwd_ms" not in r:
                continue
            e, x = "{:.1e}", "{:.2f}x"
            cells = [
                f"{gen} {r['layer']}",
                f"{r['up']}/{r['down']}",
                "yes" if r["fp16"] else "no",
                _num(r["cuda_fwd_ms"]),
                _num(r["blocked_fwd_ms"]),
                _num(r.get("blocked_speedup_fwd"), x),
                _num(r.get("cuda_fwd_bwd_ms")),
                _num(r.get("blocked_fwd_bwd_ms")),
                _num(r.get("blocked_speedup_fwd_bwd"), x),
                _num(r.get("blocked_fwd_gflops"), "{:.0f}"),
                f"{_num(r.get('blocked_fwd_max_abs_diff'), e)} / {_num(r.get('blocked_dx_max_abs_diff'), e)}",
                f"{_num(r.get('blocked_fwd_rel_diff'), e)} / {_num(r.get('blocked_dx_rel_diff'), e)}",
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def profile_rows(report: dict[str, Any]) -> list[str]:
    """Markdown rows of the profile stage: per-phase ms and s/kimg per configuration and variant."""
    rows = []
    for cfg, res in report["stages"].get("profile", {}).get("result", {}).items():
        if not isinstance(res, dict) or "variants" not in res:
            continue
        base = res["variants"].get(next(iter(res["variants"])), {}).get("step_ms")
        for name, timed in res["variants"].items():
            if "step_ms" not in timed:
                rows.append(f"| {cfg} | {name} | {timed.get('skipped', '?')} ||||")
                continue
            phases = ", ".join(f"{k} {v:.1f}" for k, v in timed["phase_ms"].items())
            ratio = base / timed["step_ms"] if base else None
            syncs = timed.get("syncs_per_phase")
            peaks = timed.get("phase_peak_gpu_mem_gb")
            if peaks:
                phases += " (peak GB: " + ", ".join(f"{k} {v:.2f}" for k, v in peaks.items()) + ")"
            rows.append(
                f"| {cfg} | {name} | {phases} | {_num(timed.get('sec_per_kimg_phases'))} | "
                f"{_num(ratio, '{:.2f}x')} | {_num(timed.get('peak_gpu_mem_gb'))} | "
                f"{'-' if syncs is None else sum(syncs.values())} |"
            )
    return rows


def peak_memory_lines(report: dict[str, Any]) -> list[str]:
    """Markdown of the profile stage's peak-memory breakdowns (scripts/gpu_memory.py): a table per config."""
    lines = []
    for cfg, res in report["stages"].get("profile", {}).get("result", {}).items():
        brk = res.get("peak_breakdown") if isinstance(res, dict) else None
        if not brk:
            continue
        if "error" in brk:
            lines += ["", f"{cfg}: memory at the {brk['phase']} peak not recorded ({brk['error'][:160]})."]
            continue
        lines += [
            "",
            f"{cfg}: what holds the memory at the peak of {brk['phase']} ({brk['peak_gib']:.2f} GiB: "
            f"{brk['baseline_gib']:.2f} allocated before the phase, the rest by it), by allocating code:",
            "",
            "| MiB | blocks | largest MiB | allocated at | layer code |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['mib']:.1f} | {s['blocks']} | {s['largest_mib']:.1f} | `{s['site']}` | `{s['layer']}` |"
            for s in brk.get("sites", [])
        ]
        if brk.get("other_mib"):
            lines.append(f"| {brk['other_mib']:.1f} | | | (other sites) | |")
    return lines


def ncu_rows(report: dict[str, Any]) -> list[str]:
    """One table row per filtered_lrelu kernel launch profiled by the ncu stage (gpu_ncu.py)."""
    rows = []
    for k in report["stages"].get("ncu", {}).get("result", {}).get("kernels", []):
        h, units = k.get("headline", {}), k.get("units", {})

        def cell(key: str, fmt: str, h=h) -> str:
            return "-" if h.get(key) is None else format(h[key], fmt)

        instance = k.get("kernel", "").split("(")[0].replace("void ", "").replace("sg3cuda::", "")
        smem = cell("smem_per_block", ".1f") + (
            f" {units['smem_per_block']}" if "smem_per_block" in units else ""
        )
        rows.append(
            f"| {k.get('label', k.get('id'))} | `{instance}` | {k.get('grid')} | {cell('duration', '.1f')} | "
            f"{cell('sm_pct', '.1f')} | {cell('mem_pct', '.1f')} | {cell('occupancy_pct', '.1f')} / "
            f"{cell('theoretical_occupancy_pct', '.1f')} | {cell('registers', '.0f')} | {smem} | "
            f"{cell('cycles_per_issue', '.1f')} | {cell('issue_busy_pct', '.1f')} |"
        )
    return rows


def render(report: dict[str, Any], name: str) -> str:
    """One report as a Markdown subsection."""
    env = report["stages"].get("env", {}).get("result", {})
    lines = [
        f"### {name}: {env.get('device_name', 'unknown device')}, {report.get('started')}",
        "",
        f"Driver {env.get('driver')}, torch {env.get('torch')} (CUDA {env.get('torch_cuda')}, cuDNN "
        f"{env.get('cudnn')}), {env.get('sm_count')} SMs, {env.get('memory_gb')} GiB; commit "
        f"{str(env.get('git_commit'))[:7]}; command `{' '.join(report.get('argv', []))}`"
        + "".join(f"; {k}={v}" for k, v in report.get("settings", {}).items() if k != "SG3_OPS_CACHE")
        + f"; {report.get('wall_s')} s.",
        "",
        "| stage | status | seconds | note |",
        "|---|---|---|---|",
    ]
    for stage, entry in report["stages"].items():
        note = entry.get("reason") or entry.get("error") or ""
        if stage == "gpu_tests" and "result" in entry:
            t = entry["result"]
            note = (
                f"{t.get('passed')} passed, {t.get('failures')} failed, {t.get('errors')} errors: "
                + ", ".join(t.get("failing") or [])
            )
        lines.append(
            f"| {stage} | {entry['status']} | {_num(entry.get('seconds'), '{:.1f}')} | {note[:160]} |"
        )
    train = training_rows(report)
    if train:
        lines += [
            "",
            "| config (256x256, batch 32) | s/kimg | img/s | measured | peak GB (steady ticks) | "
            "peak GB (first tick) | target | official A100 s/kimg |",
            "|---|---|---|---|---|---|---|---|",
            *train,
        ]
    profile = profile_rows(report)
    if profile:
        lines += [
            "",
            "Training step without Lightning (scripts/gpu_profile.py, random images on the device), median "
            "ms per phase, s/kimg of the phases (Dreg weighted by its interval), speed-up over the first "
            "variant, peak memory, host-device syncs in one run of every phase (first variant):",
            "",
            "| config | variant | phase ms | s/kimg (phases) | speed-up | peak GB | syncs |",
            "|---|---|---|---|---|---|---|",
            *profile,
        ]
    lines += peak_memory_lines(report)
    kernels = kernel_rows(report)
    if kernels:
        lines += [
            "",
            "filtered_lrelu per layer (batch as in training: 32 at 256, 4 at 1024), median ms:",
            "",
            "| layer | input | up/down | fp16 | CUDA fwd | CUDA fwd+bwd | ref fwd+bwd | speed-up "
            "| CUDA fwd GFLOP/s | rel. err |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *kernels,
        ]
        skipped = report["stages"]["kernels"]["result"].get("skipped_layers") or []
        if skipped:
            lines += ["", f"Not timed (stage budget spent): {len(skipped)} layers ({skipped[0]} ...)."]
    ncu = ncu_rows(report)
    if ncu:
        res = report["stages"]["ncu"]["result"]
        lines += [
            "",
            f"filtered_lrelu kernels under Nsight Compute ({res.get('ncu')}; --clock-control none; ncu "
            "flushes the caches before each replay pass, so durations are cold-cache ones):",
            "",
            "| call | instance | grid | duration us | SM % | memory % | occupancy % (achieved / theoretical) "
            "| registers | shared memory per block | warp cycles per issue | issue slots busy % |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *ncu,
        ]
        if res.get("labels_note"):
            lines += ["", res["labels_note"]]
    blocked = blocked_rows(report)
    if blocked:
        lines += [
            "",
            "filtered_lrelu, blocked vs tiled CUDA kernel (docs/gpu.md), median ms; differences blocked - "
            "tiled of the output y and of dx:",
            "",
            "| layer | up/down | fp16 | tiled fwd | blocked fwd | fwd speed-up | tiled fwd+bwd | "
            "blocked fwd+bwd | fwd+bwd speed-up | blocked fwd GFLOP/s | max abs diff (y / dx) | "
            "rel. diff (y / dx) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *blocked,
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("reports", nargs="+", help="gpu_check.json files, oldest first")
    p.add_argument("--out", required=True, help="Markdown file to write (docs/bench/gpu.md)")
    p.add_argument("--intro", default="", help="text placed under the section heading")
    args = p.parse_args(argv)
    parts = ["## gpu", ""]
    if args.intro:
        parts += [args.intro, ""]
    for path in args.reports:
        report = json.loads(Path(path).read_text())
        if report.get("format") != lib.REPORT_FORMAT:
            raise SystemExit(f"{path}: not a gpu_check report (format {report.get('format')!r})")
        parts += [render(report, Path(path).stem), ""]
    Path(args.out).write_text("\n".join(parts))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
