"""Helpers of the `gpu` tier: CUDA results compared with the pure-PyTorch reference in float64."""

from __future__ import annotations

import torch

# Tolerances on ||out - ref|| / ||ref|| by the dtype the CUDA path ran in (reference: float64).
REL_TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 3e-3}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative L2 error of `out` against `ref` (both cast to float64); inf if out has NaN/Inf."""
    out = out.detach().double()
    ref = ref.detach().double()
    if not torch.isfinite(out).all():
        return float("inf")
    denom = ref.norm().item()
    return (out - ref).norm().item() / (denom if denom > 0 else 1.0)


def assert_close(
    out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str, factor: float = 1.0
) -> None:
    """Fail with the measured error when `out` is further than the dtype's tolerance from `ref`."""
    assert out.shape == ref.shape, f"{what}: shape {list(out.shape)} != reference {list(ref.shape)}"
    err = rel_err(out, ref)
    tol = REL_TOL[dtype] * factor
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e} ({dtype})"
