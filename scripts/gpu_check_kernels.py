"""The `kernels` stage of scripts/gpu_check.py: filtered_lrelu per layer, tiled vs blocked CUDA kernel vs ref.

For every filtered_lrelu layer of the chosen generators (gpu_check_lib.filtered_lrelu_layers), at the
training batch size: median fwd and fwd+bwd time per implementation ('cuda' = the tiled CUDA kernel,
'blocked' = the blocked one, 'ref'), GFLOP/s of useful polyphase arithmetic, the relative error against
ref, and with both CUDA kernels the blocked/tiled speed-ups and the largest differences between them.
"""

from __future__ import annotations

import time
from typing import Any

import gpu_check_lib as lib
import gpu_profile


def _layer_case(layer: dict[str, Any]):
    import torch

    from sg3.modules.filters import design_lowpass_filter

    def filt(p):
        f = design_lowpass_filter(p["numtaps"], p["cutoff"], p["width"], p["fs"], radial=p["radial"])
        return None if f is None else torch.as_tensor(f, device="cuda")

    dtype = torch.float16 if layer["fp16"] else torch.float32
    x = torch.randn(layer["x_shape"], device="cuda", dtype=dtype)
    b = torch.randn([layer["x_shape"][1]], device="cuda", dtype=dtype)
    kw = dict(
        up=layer["up"],
        down=layer["down"],
        padding=layer["padding"],
        gain=layer["gain"],
        slope=layer["slope"],
        clamp=layer["clamp"],
    )
    return x, b, filt(layer["up_filter"]), filt(layer["down_filter"]), kw


KERNEL_IMPLS = ("cuda", "blocked", "ref")  # 'cuda': the tiled CUDA kernel; 'blocked': the blocked variant


def _variant_diff(x, b, fu, fd, dy, kw: dict[str, Any]) -> dict[str, float]:
    """Max abs and relative L2 difference, blocked vs tiled CUDA kernel, of the forward output and of dx."""
    import torch

    import sg3.ops as ops
    from sg3.ops.filtered_lrelu import set_cuda_kernel

    out = {}
    try:
        for kernel in ("tiled", "blocked"):
            set_cuda_kernel(kernel)
            xg = x.detach().requires_grad_(True)
            y = ops.filtered_lrelu(xg, fu, fd, b, impl="cuda", **kw)
            (dx,) = torch.autograd.grad(y, [xg], dy)
            out[kernel] = (y.detach().double(), dx.double())
    finally:
        set_cuda_kernel(None)
    row = {}
    for i, name in enumerate(("fwd", "dx")):
        a, t = out["blocked"][i], out["tiled"][i]
        row[f"blocked_{name}_max_abs_diff"] = float((a - t).abs().max())
        row[f"blocked_{name}_rel_diff"] = float((a - t).norm() / t.norm().clamp_min(1e-30))
    return row


def time_layer(layer: dict[str, Any], impls: tuple[str, ...], warmup: int, reps: int) -> dict[str, Any]:
    """fwd and fwd+bwd time (ms, median) of one filtered_lrelu layer per impl, GFLOP/s of the CUDA fwd.

    impls: from KERNEL_IMPLS; with both 'cuda' and 'blocked', the row also holds the blocked/tiled speed-ups
    and the differences between the two kernels' results.
    """
    import torch

    import sg3.ops as ops
    from sg3.ops.filtered_lrelu import set_cuda_kernel

    x, b, fu, fd, kw = _layer_case(layer)
    row: dict[str, Any] = {
        "layer": layer["name"],
        "x_shape": layer["x_shape"],
        "up": layer["up"],
        "down": layer["down"],
        "fp16": layer["fp16"],
        "radial_down": layer["down_filter"]["radial"],
    }
    y0 = ops.filtered_lrelu(x, fu, fd, b, impl="ref", **kw)
    dy = torch.randn_like(y0)
    xg, bg = x.detach().requires_grad_(True), b.detach().requires_grad_(True)
    for impl in impls:
        op_impl = "ref" if impl == "ref" else "cuda"

        def fwd(op_impl=op_impl):
            return ops.filtered_lrelu(x, fu, fd, b, impl=op_impl, **kw)

        def fwd_bwd(op_impl=op_impl):
            y = ops.filtered_lrelu(xg, fu, fd, bg, impl=op_impl, **kw)
            torch.autograd.grad(y, [xg, bg], dy)

        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        cuda = torch.device("cuda")
        set_cuda_kernel("blocked" if impl == "blocked" else "tiled")
        try:
            row[f"{impl}_fwd_ms"] = gpu_profile.median_ms(fwd, cuda, reps, warmup)
            row[f"{impl}_fwd_bwd_ms"] = gpu_profile.median_ms(fwd_bwd, cuda, reps, warmup)
        finally:
            set_cuda_kernel(None)
        row[f"{impl}_peak_mem_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
    if "blocked" in impls:
        row["blocked_fwd_gflops"] = lib.polyphase_flops(layer) / (row["blocked_fwd_ms"] * 1e6)
    if "blocked" in impls and "cuda" in impls:
        row["blocked_speedup_fwd"] = row["cuda_fwd_ms"] / row["blocked_fwd_ms"]
        row["blocked_speedup_fwd_bwd"] = row["cuda_fwd_bwd_ms"] / row["blocked_fwd_bwd_ms"]
        row.update(_variant_diff(x, b, fu, fd, dy, kw))
    if "cuda" in impls:
        row["cuda_fwd_gflops"] = lib.polyphase_flops(layer) / (row["cuda_fwd_ms"] * 1e6)
        err = (
            ops.filtered_lrelu(x, fu, fd, b, impl="cuda", **kw).double() - y0.double()
        ).norm() / y0.double().norm()
        row["rel_err_vs_ref"] = float(err)
    if "ref" in impls and "cuda" in impls:
        row["speedup_fwd_bwd"] = row["ref_fwd_bwd_ms"] / row["cuda_fwd_bwd_ms"]
    return row


def stage_kernels(
    budget: float, gens: list[str], warmup: int, reps: int, impls: tuple[str, ...] = ("cuda", "ref")
) -> dict[str, Any]:
    import torch

    unknown = [i for i in impls if i not in KERNEL_IMPLS]
    if unknown:
        raise ValueError(f"--kernel-impls: unknown {unknown}; accepted: {', '.join(KERNEL_IMPLS)}")
    torch.backends.cudnn.benchmark = True
    deadline = time.monotonic() + budget
    result: dict[str, Any] = {"generators": {}, "skipped_layers": []}
    for gen in gens:
        rows = result["generators"].setdefault(gen, [])
        for layer in lib.filtered_lrelu_layers(lib.GENERATORS[gen]):
            if time.monotonic() > deadline:
                result["skipped_layers"].append(f"{gen}/{layer['name']}")
                continue
            try:
                rows.append(time_layer(layer, impls, warmup, reps))
            except Exception as exc:  # noqa: BLE001 - record and go on with the next layer
                rows.append({"layer": layer["name"], "error": f"{type(exc).__name__}: {exc}"})
            torch.cuda.empty_cache()
    result["ok"] = not any("error" in r for rows in result["generators"].values() for r in rows)
    return result
