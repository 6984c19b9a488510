"""Tier `gpu`: the CUDA ops against the pure-PyTorch reference (float64) on a CUDA device.

Forward, first-order gradients, double backward for upfirdn2d and bias_act, odd shapes and
non-contiguous inputs, in float32 and float16 (float64 where the reference tolerance is tight).
Every case draws fresh random data; outputs are compared by relative L2 error (tests/gpu/conftest.py).
"""

from __future__ import annotations

import math

import pytest
import torch
from gpu_helpers import assert_close

import sg3.ops as ops
from sg3.modules.filters import design_lowpass_filter
from sg3.ops.filtered_lrelu import CUDA_KERNELS, set_cuda_kernel

pytestmark = pytest.mark.gpu

DTYPES = [torch.float32, torch.float16]


def _rand(shape, dtype, device, seed, layout="contiguous"):
    g = torch.Generator(device="cpu").manual_seed(seed)
    if layout == "sliced":  # a strided view: every other column of a wider tensor, one row cropped each side
        n, c, h, w = shape
        big = torch.randn([n, c, h + 2, 2 * w], generator=g)
        return big.to(device=device, dtype=dtype)[:, :, 1:-1, ::2]
    x = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    return x


def _rand_vec(n, dtype, device, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn([n], generator=g).to(device=device, dtype=dtype)


def _lowpass(taps: int, radial: bool = False) -> torch.Tensor:
    if taps == 1:
        return torch.ones([1])
    return torch.as_tensor(design_lowpass_filter(taps, cutoff=2.0, width=6.0, fs=16.0, radial=radial))


def _grads(fn, inputs, dy):
    """Forward and the gradients of sum(y * dy) with respect to each of `inputs`."""
    inputs = [t.detach().requires_grad_(True) for t in inputs]
    y = fn(*inputs)
    grads = torch.autograd.grad(y, inputs, dy)
    return y, grads


# ------------------------------------------------------------------------------------------------ upfirdn2d

UPFIRDN_CASES = [
    # (shape, up, down, padding, filter taps, 2-D filter, flip, gain)
    ([2, 3, 16, 16], 1, 1, 0, 4, True, False, 1.0),
    ([2, 3, 17, 13], 2, 1, [2, 1], 4, True, False, 4.0),
    ([1, 4, 15, 16], 1, 2, [1, 2, 1, 1], 4, True, True, 1.0),
    ([2, 2, 9, 11], 4, 1, [3, 2, 1, 4], 12, False, False, 16.0),
    ([2, 2, 33, 41], 1, 4, [-1, 2, 3, -2], 24, False, True, 0.5),
    ([1, 3, 12, 12], [2, 1], [1, 2], [5, 4, 0, 0], 7, True, False, 2.0),
    ([1, 2, 8, 8], 3, 2, 2, 9, False, False, 1.0),
    ([3, 1, 5, 7], 1, 1, [-1, -1, 0, 0], 1, False, False, 3.0),
]


@pytest.mark.parametrize("dtype", DTYPES + [torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("case", range(len(UPFIRDN_CASES)))
def test_upfirdn2d_forward_and_grad(device, dtype, layout, case):
    shape, up, down, padding, taps, two_d, flip, gain = UPFIRDN_CASES[case]
    x = _rand(shape, dtype, device, seed=100 + case, layout=layout)
    f = _lowpass(taps)
    if two_d:
        f = f.ger(f) if f.ndim == 1 else f
    f = f.to(device)
    kw = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
    ref = ops.upfirdn2d(x.double(), f, impl="ref", **kw)
    y = ops.upfirdn2d(x, f, impl="cuda", **kw)
    assert y.dtype == dtype
    assert_close(y, ref, dtype, "upfirdn2d forward")

    dy = _rand(list(ref.shape), dtype, device, seed=200 + case)
    _, (dx,) = _grads(lambda t: ops.upfirdn2d(t, f, impl="cuda", **kw), [x], dy)
    _, (dx_ref,) = _grads(lambda t: ops.upfirdn2d(t, f, impl="ref", **kw), [x.double()], dy.double())
    assert_close(dx, dx_ref, dtype, "upfirdn2d dx")


@pytest.mark.parametrize("impl", ["ref", "cuda"])
def test_a_cpu_filter_with_a_cuda_x_is_moved_by_every_impl(device, impl):
    """Filters are moved to x's device by every implementation (ref used to fail inside conv2d)."""
    x = _rand([1, 2, 9, 11], torch.float32, device, seed=90)
    f1, f2 = _lowpass(12), _lowpass(4).ger(_lowpass(4))  # on the CPU
    kw = dict(up=2, padding=[2, 1, 2, 1])
    want = ops.upfirdn2d(x.double(), f2.to(device), impl="ref", **kw)
    assert_close(ops.upfirdn2d(x, f2, impl=impl, **kw), want, torch.float32, "upfirdn2d with a CPU filter")
    kw = dict(up=2, down=2, padding=8, clamp=0.5)
    y = ops.filtered_lrelu(x, f1, f2, impl=impl, **kw)
    want = ops.filtered_lrelu(x.double(), f1.to(device), f2.to(device), impl="ref", **kw)
    assert_close(y, want, torch.float32, "filtered_lrelu with CPU filters")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_upfirdn2d_double_backward(device, dtype):
    f = _lowpass(4).to(device)
    f = f.ger(f)
    kw = dict(up=2, down=1, padding=[2, 1, 2, 1], gain=4.0)
    results = {}
    for impl in ("cuda", "ref"):
        x = _rand([2, 3, 9, 10], torch.float64, device, seed=7).to(dtype).requires_grad_(True)
        dy = _rand([2, 3, 18, 20], torch.float64, device, seed=8).to(dtype).requires_grad_(True)
        y = ops.upfirdn2d(x, f, impl=impl, **kw)
        (dx,) = torch.autograd.grad(y, x, dy, create_graph=True)
        v = _rand(list(dx.shape), torch.float64, device, seed=9).to(dtype)
        (ddy,) = torch.autograd.grad((dx * v).sum(), dy)
        results[impl] = (dx, ddy)
    assert_close(results["cuda"][0], results["ref"][0], dtype, "upfirdn2d dx (create_graph)")
    assert_close(results["cuda"][1], results["ref"][1], dtype, "upfirdn2d d(dx)/d(dy)")


# ------------------------------------------------------------------------------------------------ bias_act


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", list(ops.ACTIVATIONS))
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_bias_act_forward_grad_and_double_backward(device, dtype, act, clamp):
    x0 = _rand([3, 5, 7, 9], dtype, device, seed=11)
    b0 = _rand_vec(5, dtype, device, seed=12)
    dy0 = _rand([3, 5, 7, 9], dtype, device, seed=13)
    v0 = _rand([3, 5, 7, 9], dtype, device, seed=14)
    kw = dict(dim=1, act=act, clamp=clamp)
    out = {}
    for impl, cast in (("cuda", lambda t: t), ("ref", lambda t: t.double())):
        x = cast(x0).detach().requires_grad_(True)
        b = cast(b0).detach().requires_grad_(True)
        dy = cast(dy0).detach().requires_grad_(True)
        y = ops.bias_act(x, b, impl=impl, **kw)
        dx, db = torch.autograd.grad(y, [x, b], dy, create_graph=True)
        second = torch.autograd.grad((dx * cast(v0)).sum(), [x, b, dy], allow_unused=True)
        out[impl] = (y, dx, db, second)
    y, dx, db, second = out["cuda"]
    y_r, dx_r, db_r, second_r = out["ref"]
    assert y.dtype == dtype
    assert_close(y, y_r, dtype, f"bias_act[{act}] forward")
    assert_close(dx, dx_r, dtype, f"bias_act[{act}] dx")
    assert_close(db, db_r, dtype, f"bias_act[{act}] db", factor=4)
    for name, got, want in zip(("x", "b", "dy"), second, second_r):
        if want is None or want.abs().max() == 0:
            assert got is None or got.abs().max() == 0, f"bias_act[{act}] d2/d{name} should vanish"
        else:
            assert_close(got, want, dtype, f"bias_act[{act}] second derivative w.r.t. {name}", factor=4)


@pytest.mark.parametrize("dim", [0, 2, 3])
def test_bias_act_other_axes_and_channels_last(device, dim):
    x = _rand([4, 6, 5, 3], torch.float32, device, seed=21, layout="channels_last")
    b = _rand_vec(x.shape[dim], torch.float32, device, seed=22)
    y = ops.bias_act(x, b, dim=dim, act="lrelu", impl="cuda")
    ref = ops.bias_act(x.double(), b.double(), dim=dim, act="lrelu", impl="ref")
    assert_close(y, ref, torch.float32, f"bias_act dim={dim}")


# ---------------------------------------------------------------------------------------- filtered_lrelu

FLRELU_CASES = [
    # (shape, up, down, padding, up taps, down taps, radial down, clamp, slope, gain, flip)
    ([2, 3, 20, 20], 2, 2, [9, 8, 9, 8], 12, 12, False, 256.0, 0.2, math.sqrt(2), False),  # T same-rate layer
    ([2, 3, 20, 20], 4, 2, [-6, -9, -6, -9], 24, 12, False, 0.5, 0.2, math.sqrt(2), False),  # T up-4 layer
    ([1, 4, 18, 18], 2, 2, [11, 10, 11, 10], 12, 12, True, 1.0, 0.2, math.sqrt(2), False),  # R radial down
    ([2, 2, 21, 19], 4, 2, [-2, -5, -2, -5], 24, 12, True, 0.5, 0.2, math.sqrt(2), False),  # R up-4 layer
    ([2, 3, 16, 16], 1, 1, 0, 1, 1, False, 256.0, 1.0, 1.0, False),  # ToRGB: bias + clamp only
    ([1, 2, 13, 17], 2, 2, [3, 4, 5, 2], 6, 8, False, None, 0.1, 2.0, True),  # odd sizes, flip
    ([1, 2, 11, 9], 3, 1, [4, 4, 4, 4], 9, 3, False, 0.8, 0.3, 1.0, False),  # generic fallback factors
    ([1, 3, 24, 12], 1, 4, [5, 6, 7, 8], 4, 16, False, None, 0.2, math.sqrt(2), False),
]


@pytest.fixture(params=CUDA_KERNELS)
def flrelu_kernel(request):
    """Runs the test once per CUDA filtered_lrelu kernel variant (tiled, blocked)."""
    set_cuda_kernel(request.param)
    yield request.param
    set_cuda_kernel(None)


def _flrelu_filters(up_taps, down_taps, radial, device):
    fu = _lowpass(up_taps).to(device)
    fd = _lowpass(down_taps, radial=radial).to(device)
    return fu, fd


@pytest.mark.parametrize("dtype", DTYPES + [torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("case", range(len(FLRELU_CASES)))
def test_filtered_lrelu_forward_and_grads(device, dtype, layout, case, flrelu_kernel):
    shape, up, down, padding, tu, td, radial, clamp, slope, gain, flip = FLRELU_CASES[case]
    fu, fd = _flrelu_filters(tu, td, radial, device)
    x = _rand(shape, dtype, device, seed=300 + case, layout=layout) * 2
    b = _rand_vec(shape[1], dtype, device, seed=400 + case)
    kw = dict(up=up, down=down, padding=padding, gain=gain, slope=slope, clamp=clamp, flip_filter=flip)

    y_nograd = ops.filtered_lrelu(x, fu, fd, b, impl="cuda", **kw)
    ref = ops.filtered_lrelu(x.double(), fu, fd, b.double(), impl="ref", **kw)
    assert y_nograd.dtype == dtype
    assert_close(y_nograd, ref, dtype, "filtered_lrelu forward")

    dy = _rand(list(ref.shape), dtype, device, seed=500 + case)
    y, (dx, db) = _grads(lambda t, c: ops.filtered_lrelu(t, fu, fd, c, impl="cuda", **kw), [x, b], dy)
    _, (dx_r, db_r) = _grads(
        lambda t, c: ops.filtered_lrelu(t, fu, fd, c, impl="ref", **kw), [x.double(), b.double()], dy.double()
    )
    assert torch.equal(y, y_nograd), "recording signs must not change the forward result"
    assert_close(dx, dx_r, dtype, "filtered_lrelu dx", factor=2)
    assert_close(db, db_r, dtype, "filtered_lrelu db", factor=4)


def test_filtered_lrelu_batch_larger_than_grid_limit_of_one_launch(device, flrelu_kernel):
    # 70000 planes exceed one grid dimension (65535): the kernel must loop over planes.
    fu, fd = _flrelu_filters(12, 12, False, device)
    x = _rand([1, 70000, 4, 4], torch.float32, device, seed=31)
    kw = dict(up=2, down=2, padding=[9, 8, 9, 8], clamp=256.0)
    assert_close(
        ops.filtered_lrelu(x, fu, fd, impl="cuda", **kw),
        ops.filtered_lrelu(x.double(), fu, fd, impl="ref", **kw),
        torch.float32,
        "filtered_lrelu with 70000 planes",
    )


def test_filtered_lrelu_spec_vector_a(device, flrelu_kernel):
    """Spec 11.3 vector A (official-code output) through the CUDA kernel."""
    h = torch.arange(8, dtype=torch.float64)[:, None]
    w = torch.arange(8, dtype=torch.float64)[None, :]
    x = torch.stack([torch.sin(0.3 * h + 0.7 * w), torch.cos(0.5 * h - 0.2 * w**2)])[None].float().to(device)
    b = torch.tensor([0.1, -0.3], device=device)
    f = _lowpass_exact(12, 2.0, 12.0, 32.0).to(device)
    y = ops.filtered_lrelu(
        x, f, f, b, up=2, down=2, padding=[9, 8, 9, 8], gain=math.sqrt(2), slope=0.2, clamp=256, impl="cuda"
    )
    assert list(y.shape) == [1, 2, 6, 6]
    want_row = torch.tensor([0.8576723, 0.8926805, 0.6267111, 0.2388392, -0.0312557, -0.1246599])
    assert torch.allclose(y[0, 0, 0].cpu(), want_row, atol=2e-6)
    assert abs(y.sum().item() - 10.25981) < 1e-4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [0, 1, 2, 3, 5])
def test_filtered_lrelu_kernel_variants_agree(device, dtype, case):
    """blocked vs tiled on the same data (several planes and tiles): forward, dx and db agree."""
    shape, up, down, padding, tu, td, radial, clamp, slope, gain, flip = FLRELU_CASES[case]
    fu, fd = _flrelu_filters(tu, td, radial, device)
    x = _rand([4, 8, shape[2] + 29, shape[3] + 34], dtype, device, seed=600 + case) * 2
    b = _rand_vec(8, dtype, device, seed=700 + case)
    kw = dict(up=up, down=down, padding=padding, gain=gain, slope=slope, clamp=clamp, flip_filter=flip)
    ref = ops.filtered_lrelu(x.double(), fu, fd, b.double(), impl="ref", **kw)
    dy = _rand(list(ref.shape), dtype, device, seed=800 + case)
    out = {}
    try:
        for kernel in CUDA_KERNELS:
            set_cuda_kernel(kernel)
            fn = lambda t, c: ops.filtered_lrelu(t, fu, fd, c, impl="cuda", **kw)  # noqa: E731
            y, (dx, db) = _grads(fn, [x, b], dy)
            out[kernel] = (y, dx, db)
    finally:
        set_cuda_kernel(None)
    for got, want, what in zip(out["blocked"], out["tiled"], ("forward", "dx", "db")):
        assert_close(got, want, dtype, f"blocked vs tiled {what}", factor=4)
    assert_close(out["blocked"][0], ref, dtype, "blocked forward vs ref")


def _lowpass_exact(taps, cutoff, width, fs):
    return torch.as_tensor(design_lowpass_filter(taps, cutoff=cutoff, width=width, fs=fs))
