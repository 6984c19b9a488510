"""`sg3-doctor` (`make doctor`): build every compiled op, print the toolchain, run parity checks.

Exit status 0 when every extension this machine can build was built and every parity check that can
run here passed; 1 otherwise. The CUDA extension is compiled whenever nvcc is present (no GPU needed);
its parity checks run only when a GPU is visible.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Callable

import torch

from sg3 import ops
from sg3.ops import _build

_say = functools.partial(print, flush=True)  # progress shows at once (builds take minutes)


def _checks(device: str, dtype: torch.dtype) -> list[tuple[str, Callable[[str], list[torch.Tensor]]]]:
    """Named computations returning tensors (outputs and gradients) to compare between impls."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)

    x, b, w = rand(2, 5, 17, 16), rand(5), rand(4, 5, 3, 3)
    f4 = ops.setup_filter([1, 3, 3, 1], device=device).to(dtype)
    f12 = ops.setup_filter(torch.hann_window(14, dtype=torch.float64)[1:-1], device=device).to(dtype)
    rad = (f12[:, None] * f12[None, :] + 0.01 * rand(12, 12).abs()).contiguous()

    def grads(y, leaves, create_graph=False):
        return list(torch.autograd.grad(y, leaves, torch.ones_like(y), create_graph=create_graph))

    def upfirdn(impl):
        xx = x.clone().requires_grad_(True)
        y = ops.upfirdn2d(xx, f4, up=2, down=1, padding=[2, 1, 3, 0], impl=impl)
        y2 = ops.upfirdn2d(xx, f12, down=2, padding=5, impl=impl)
        (gx,) = grads((y.square().sum() + y2.square().sum()).reshape(1), [xx], create_graph=True)
        return [y, y2, gx, *grads(gx.square().sum().reshape(1), [xx])]

    def biasact(impl):
        xx, bb = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
        y = ops.bias_act(xx, bb, act="lrelu", clamp=1.0, impl=impl) + ops.bias_act(xx, act="tanh", impl=impl)
        return [y, *grads(y, [xx, bb])]

    def flrelu(impl):
        xx, bb = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
        y = ops.filtered_lrelu(xx, f12, f12, bb, up=2, down=2, padding=[9, 8, 9, 8], clamp=1.5, impl=impl)
        y2 = ops.filtered_lrelu(xx, f12, rad, bb, up=4, down=2, padding=[-2, -5, -2, -5], impl=impl)
        return [y, y2, *grads(y.sum().reshape(1) + y2.sum().reshape(1), [xx, bb])]

    def resample(impl):
        with ops.use_impl(impl):
            return [
                ops.conv2d_resample(x, w, f4, down=2, padding=1),
                ops.upsample2d(x, f4),
                ops.downsample2d(x, f4),
            ]

    return [("upfirdn2d (+2nd order)", upfirdn), ("bias_act", biasact), ("filtered_lrelu", flrelu),
            ("conv2d_resample/up/down", resample)]  # fmt: skip


def parity(impl: str, device: str) -> bool:
    """Compare `impl` against 'ref' on `device`; prints one line per check; True if all pass."""
    ok = True
    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-9)):
        for name, fn in _checks(device, dtype):
            try:
                got, want = fn(impl), fn("ref")
                err = max(((a - b).abs().max() / (b.abs().max() + 1e-12)).item() for a, b in zip(got, want))
                passed = math.isfinite(err) and err <= tol
            except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
                err, passed = float("nan"), False
                _say(f"    {name}: {type(exc).__name__}: {exc}")
            ok &= passed
            status = "ok" if passed else "FAIL"
            _say(f"  [{status}] {impl:<4} {str(dtype)[6:]:<7} {name:<26} max rel err {err:.2e}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-cuda", action="store_true", help="skip building the CUDA extension")
    parser.add_argument("--verbose", action="store_true", help="stream compiler output")
    args = parser.parse_args(argv)
    _say("sg3 ops doctor\n\nToolchain:")
    for key, value in _build.toolchain_info().items():
        _say(f"  {key:<15} {value}")
    ok = True
    kinds = ["cpp"]
    if args.no_cuda:
        _say("\nCUDA extension: skipped (--no-cuda)")
    elif _build.cuda_home() is None:
        _say("\nCUDA extension: skipped (nvcc not found; set CUDA_HOME)")
    else:
        kinds.append("cuda")
    built = {}
    _say("\nBuilds:")
    for kind in kinds:
        start = time.perf_counter()
        try:
            built[kind] = _build.build_extension(kind, verbose=args.verbose)
            _say(f"  [ok] {kind:<4} {built[kind].__name__} ({time.perf_counter() - start:.1f} s)")
        except Exception as exc:  # noqa: BLE001
            ok = False
            _say(f"  [FAIL] {kind}: {exc}")
    _say("\nParity against 'ref':")
    if "cpp" in built:
        ok &= parity("cpp", "cpu")
    if "cuda" in built and torch.cuda.is_available():
        ok &= parity("cuda", "cuda")
    elif "cuda" in built:
        _say("  cuda: compiled only (no GPU visible); run sg3-doctor on a GPU host for its parity checks")
    _say("\n" + ("All checks passed." if ok else "Some checks FAILED (see above)."))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
