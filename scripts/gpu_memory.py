"""What holds the device memory at the peak of one training phase (scripts/gpu_profile.py's detail run).

`peak_breakdown(fn)` runs `fn` once with the CUDA caching allocator recording every allocation and free
with its Python stack (`torch.cuda.memory._record_memory_history`), replays that trace to find the moment
of the highest allocated total, and groups the blocks alive at that moment by the code that allocated
them: the innermost frame in sg3's source, and the innermost frame in `sg3/modules` (the layer). Memory
allocated before `fn` started (parameters, optimizer state, G_ema, cached buffers) is reported as one
baseline figure: the trace does not know its origin.

`analyze_trace` is the replay, separated so that it can be checked without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

MIB = 2**20


def _site(frames: list[dict[str, Any]], marker: str) -> str:
    """`file:line function` of the innermost frame whose file path contains `marker`, or '-'."""
    for fr in frames:  # innermost first, as the allocator records them
        name = str(fr.get("filename", ""))
        if marker in name:
            return f"{name.split(marker, 1)[1]}:{fr.get('line', '?')} {fr.get('name', '?')}"
    return "-"


def analyze_trace(
    entries: Iterable[dict[str, Any]], baseline_bytes: int = 0, top: int = 15, src_marker: str = "/sg3/"
) -> dict[str, Any]:
    """Replay allocator trace entries and describe the live blocks at the highest allocated total.

    Args:
        entries: Trace entries in order, each with `action` ('alloc', 'free_completed', others ignored),
            `addr`, `size` (bytes) and `frames` (innermost first: dicts with filename, line, name).
        baseline_bytes: Bytes allocated before the trace started (added to the totals).
        top: Number of allocation sites listed.
        src_marker: Path fragment that marks the project's own source files.

    Returns:
        `peak_gib` (baseline included), `baseline_gib`, `traced_peak_gib` (what the trace added at the
        peak, less the baseline blocks freed by then), `sites`: the `top` largest groups at the peak,
        each `{site, layer, mib, blocks, largest_mib}`,
        `other_mib` (the rest), `events` (entries replayed).
    """
    entries = list(entries)
    live: dict[int, int] = {}
    total = best = best_index = 0
    for i, e in enumerate(entries):
        action = e.get("action")
        if action == "alloc":
            live[e["addr"]] = e["size"]
            total += e["size"]
            if total > best:
                best, best_index = total, i + 1
        elif action == "free_completed":  # a block from before the trace lowers the baseline's share
            total -= live.pop(e["addr"]) if e["addr"] in live else e.get("size", 0)
    at_peak: dict[int, dict[str, Any]] = {}
    for e in entries[:best_index]:  # second pass: the blocks alive right after the peak's allocation
        if e.get("action") == "alloc":
            at_peak[e["addr"]] = e
        elif e.get("action") == "free_completed":
            at_peak.pop(e["addr"], None)
    groups: dict[tuple[str, str], list[int]] = {}
    for e in at_peak.values():
        frames = e.get("frames") or []
        key = (_site(frames, src_marker), _site(frames, src_marker + "modules/"))
        groups.setdefault(key, []).append(e["size"])
    ranked = sorted(groups.items(), key=lambda kv: -sum(kv[1]))
    sites = [
        {
            "site": site,
            "layer": layer,
            "mib": round(sum(sizes) / MIB, 1),
            "blocks": len(sizes),
            "largest_mib": round(max(sizes) / MIB, 1),
        }
        for (site, layer), sizes in ranked[:top]
    ]
    other = sum(sum(sizes) for _, sizes in ranked[top:])
    return {
        "peak_gib": round((baseline_bytes + best) / 2**30, 3),
        "baseline_gib": round(baseline_bytes / 2**30, 3),
        "traced_peak_gib": round(best / 2**30, 3),
        "sites": sites,
        "other_mib": round(other / MIB, 1),
        "events": len(entries),
    }


def peak_breakdown(fn: Callable[[], Any], top: int = 15, max_entries: int = 500_000) -> dict[str, Any]:
    """Run `fn` once on the current CUDA device while recording allocations; `analyze_trace` of that run."""
    import torch

    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    torch.cuda.memory._record_memory_history(
        enabled="all", context="alloc", stacks="python", max_entries=max_entries
    )
    try:
        fn()
        torch.cuda.synchronize()
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    device = torch.cuda.current_device()
    traces = snapshot.get("device_traces") or []
    entries = traces[device] if device < len(traces) else []
    result = analyze_trace(entries, baseline, top)
    result["trace_truncated"] = len(entries) >= max_entries
    return result
