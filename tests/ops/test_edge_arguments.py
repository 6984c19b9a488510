"""Edge cases of the ops: empty inputs at the compiled entry points, derivatives at activation kinks,
conv2d_resample with both up and down, scalar argument types, setup_filter's `separable` with 2-D input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from sg3 import ops

F64 = torch.float64
IMPLS = ["ref", pytest.param("cpp", marks=pytest.mark.cpp)]

# Runs in a child process: a division by zero in the extension (SIGFPE) must not take pytest down.
_EMPTY_SCRIPT = textwrap.dedent(
    """
    import torch
    from sg3.ops import _build

    ext = _build.build_extension("cpp")
    f2, f1, none = torch.ones(4, 4) / 16, torch.ones(4) / 4, torch.empty(0)
    for shape in [(0, 2, 6, 5), (2, 0, 6, 5), (1, 2, 0, 5), (1, 2, 5, 0)]:
        x = torch.randn(shape)
        for f, up in ((f2, 2), (f1[None], 1), (f1[:, None], 1)):
            y = ext.upfirdn2d(x, f, up, up, 1, 1, 3, 2, 3, 2, False, 4.0)
            oh = shape[2] * up + 5 - f.shape[0] + 1
            ow = shape[3] * up + 5 - f.shape[1] + 1
            assert tuple(y.shape) == (*shape[:2], oh, ow) and not y.any(), (shape, y.shape)
        b = torch.randn(shape[1])
        for grad in (0, 1, 2):
            z = ext.bias_act(x, b, x if grad else none, grad, 1, 6, 0.0, 1.0, -1.0)
            assert z.shape == x.shape
        dx, db = ext.bias_act_grad_db(x, b, x, 1, 1, 6, 0.0, 1.0, -1.0)
        assert dx.shape == x.shape and db.shape == b.shape and not db.any()
        for fu in (f1, f2):
            y, si = ext.filtered_lrelu_fwd(x, fu, fu, b, 2, 2, 4, 3, 4, 3, 1.5, 0.2, 1.0, False, True)
            assert tuple(y.shape) == (*shape[:2], shape[2] + 1, shape[3] + 1) and not y.any(), y.shape
            assert si.shape[:2] == shape[:2]
            dy = torch.randn(y.shape)
            dx = ext.filtered_lrelu_bwd(dy, fu, fu, si, 2, 2, 4, 3, 4, 3, *shape[2:], 1.5, 0.2, False)
            assert dx.shape == x.shape and not dx.any()
    print("empty-ok")
    """
)


@pytest.mark.cpp
def test_compiled_entry_points_return_empty_or_zero_outputs_for_empty_inputs():
    """The C++ functions themselves (not only the Python wrappers) take inputs with N, C, H or W = 0:
    outputs of the formula's shape, zeros where padding alone makes samples; no SIGFPE."""
    from sg3.ops import _build

    _build.build_extension("cpp")  # build here (in the cache) so the child only loads it
    env = dict(os.environ, OMP_NUM_THREADS="2")
    run = subprocess.run(
        [sys.executable, "-c", _EMPTY_SCRIPT], capture_output=True, text=True, timeout=300, env=env
    )
    assert run.returncode == 0 and "empty-ok" in run.stdout, (run.returncode, run.stderr[-2000:])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ["elu", "selu"])
def test_elu_selu_second_derivative_is_zero_at_zero(act, impl):
    """At x = 0 the output is 0 and elu/selu take their linear branch for act'' (the official kernel reads
    the derivatives off y with `y >= 0`; PyTorch's autograd of F.elu/F.selu agrees): act''(0) = 0, on both
    sides of the kink the usual values."""
    x = torch.tensor([[-0.5, -0.0, 0.0, 0.5]], dtype=F64, requires_grad=True)
    y = ops.bias_act(x, act=act, impl=impl)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    scale, alpha = (1.0507009873554805, 1.6732632423543772) if act == "selu" else (1.0, 1.0)
    expect = torch.tensor([[scale * alpha * np.exp(-0.5), 0.0, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(gg, expect, rtol=1e-12, atol=0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "kernel,padding,flip_weight,up,down",
    [
        (3, 1, False, 2, 2),
        (3, [0, 1, 2, 1], True, 2, 2),
        (1, 0, True, 2, 2),
        (3, 1, True, 4, 2),
        (2, 0, False, 2, 4),
    ],
)
def test_conv2d_resample_up_and_down_in_one_call(kernel, padding, flip_weight, up, down, impl):
    """Spec 2.4: padding applied once at the start, so with up and down the up pads and the down pads are
    both added to the user's before upsampling; then FIR (gain up^2), the conv, and the down FIR (valid)
    with decimation."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(4, 3, kernel, kernel, generator=g, dtype=F64)
    f = ops.setup_filter([1, 3, 3, 1]).to(F64)
    fw = f.shape[-1]
    p = ops._params.parse_padding(padding)
    pads = [
        p[0] + (fw + up - 1) // 2 + (fw - down + 1) // 2,
        p[1] + (fw - up) // 2 + (fw - down) // 2,
        p[2] + (fw + up - 1) // 2 + (fw - down + 1) // 2,
        p[3] + (fw - up) // 2 + (fw - down) // 2,
    ]
    t = ops.upfirdn2d(x, f, up=up, padding=pads, gain=up * up, impl="ref")
    t = torch.nn.functional.conv2d(t, w if flip_weight else w.flip([2, 3]))
    expect = ops.upfirdn2d(t, f, down=down, impl="ref")
    with ops.use_impl(impl):
        y = ops.conv2d_resample(x, w, f, up=up, down=down, padding=padding, flip_weight=flip_weight)
    torch.testing.assert_close(y, expect, rtol=1e-12, atol=1e-12)
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    (gx_expect,) = torch.autograd.grad(expect.square().sum(), x)
    torch.testing.assert_close(gx, gx_expect, rtol=1e-12, atol=1e-12)
    if kernel == 3 and padding == 1 and up == down:
        assert y.shape[2:] == x.shape[2:]  # a 3x3 conv with padding 1 keeps the size


SCALARS = [np.float32(0.5), np.float64(0.5), torch.tensor(0.5), torch.tensor(0.5, dtype=F64)]


@pytest.mark.parametrize("value", SCALARS, ids=lambda v: type(v).__name__ + str(getattr(v, "dtype", "")))
def test_scalar_arguments_accept_numpy_scalars_and_0d_tensors(value):
    """gain/slope/alpha/clamp take any real scalar that float() converts (as the official ops do)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 2, 6, 6, generator=g)
    f = ops.setup_filter([1, 3, 3, 1])
    torch.testing.assert_close(
        ops.upfirdn2d(x, f, gain=value, impl="ref"), ops.upfirdn2d(x, f, gain=0.5, impl="ref")
    )
    for kw in ("alpha", "gain", "clamp"):
        got = ops.bias_act(x, act="lrelu", impl="ref", **{kw: value})
        torch.testing.assert_close(got, ops.bias_act(x, act="lrelu", impl="ref", **{kw: 0.5}))
    for kw in ("gain", "slope", "clamp"):
        got = ops.filtered_lrelu(x, f, f, padding=2, impl="ref", **{kw: value})
        torch.testing.assert_close(got, ops.filtered_lrelu(x, f, f, padding=2, impl="ref", **{kw: 0.5}))


def test_integer_arguments_accept_numpy_ints():
    x = torch.randn(1, 2, 6, 6)
    f = ops.setup_filter([1, 3, 3, 1])
    two, one = np.int64(2), np.int32(1)
    expect = ops.upfirdn2d(x, f, up=2, down=1, padding=1, impl="ref")
    torch.testing.assert_close(ops.upfirdn2d(x, f, up=two, down=one, padding=np.int64(1), impl="ref"), expect)
    torch.testing.assert_close(ops.upfirdn2d(x, f, up=[two, 2], padding=[one, one], impl="ref"), expect)
    expect = ops.filtered_lrelu(x, f, f, up=2, down=2, padding=4, impl="ref")
    got = ops.filtered_lrelu(x, f, f, up=two, down=two, padding=np.int64(4), impl="ref")
    torch.testing.assert_close(got, expect)
    w = torch.randn(4, 1, 3, 3)
    expect = ops.conv2d_resample(x, w, f, down=2, padding=1, groups=2)
    torch.testing.assert_close(ops.conv2d_resample(x, w, f, down=two, padding=one, groups=two), expect)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda x: ops.upfirdn2d(x, None, gain=True), TypeError, "gain must be a real number"),
        (lambda x: ops.upfirdn2d(x, None, gain="1"), TypeError, "gain must be a real number"),
        (lambda x: ops.upfirdn2d(x, None, gain=torch.ones(2)), TypeError, "gain must be a real number"),
        (lambda x: ops.upfirdn2d(x, None, gain=np.bool_(True)), TypeError, "gain must be a real number"),
        (lambda x: ops.upfirdn2d(x, None, gain=1j), TypeError, "gain must be a real number"),
        (lambda x: ops.upfirdn2d(x, None, gain=float("nan")), ValueError, "gain must not be NaN"),
        (lambda x: ops.bias_act(x, clamp=np.float32("nan")), ValueError, "clamp must not be NaN"),
        (lambda x: ops.bias_act(x, clamp=torch.tensor(-1.0)), ValueError, "clamp must be >= 0"),
        (lambda x: ops.filtered_lrelu(x, slope=torch.tensor(True)), TypeError, "slope must be a real number"),
        (lambda x: ops.filtered_lrelu(x, up=np.float64(2.0)), TypeError, "up must be an int"),
        (lambda x: ops.upfirdn2d(x, None, up=np.bool_(True)), TypeError, "up must be an int"),
        (lambda x: ops.upfirdn2d(x, None, padding=[np.float32(1), 1]), TypeError, "padding must be"),
    ],
)
def test_scalar_arguments_still_refuse_bools_strings_tensors_and_nan(call, error, match):
    with pytest.raises(error, match=match):
        call(torch.randn(1, 2, 6, 6))


def test_setup_filter_separable_true_refuses_a_2d_filter():
    """separable=True promises a 1-D filter; a 2-D one cannot be kept separable (the official helper
    asserts), so it is refused instead of silently coming back 2-D."""
    with pytest.raises(ValueError, match=r"separable=True.*\[2, 2\]"):
        ops.setup_filter([[1, 2], [3, 4]], separable=True)
    assert ops.setup_filter([[1, 2], [3, 4]], separable=False).shape == (2, 2)
    assert ops.setup_filter([[1, 2], [3, 4]]).shape == (2, 2)


@pytest.mark.parametrize("impl", IMPLS)
def test_bias_act_without_bias_ignores_dim(impl):
    """dim only says where b runs: without b any x works, a 1-D or 0-d one too (as the official op)."""
    for x in (torch.randn(5, dtype=F64), torch.tensor(-1.5, dtype=F64), torch.randn(2, 3, dtype=F64)):
        y = ops.bias_act(x, act="lrelu", clamp=0.5, impl=impl)
        torch.testing.assert_close(y, (torch.nn.functional.leaky_relu(x, 0.2) * 2**0.5).clamp(-0.5, 0.5))
    with pytest.raises(ValueError, match="dim must be an int in"):
        ops.bias_act(torch.randn(5), torch.randn(5), dim=1, impl=impl)


def test_bias_and_weight_on_another_device_are_refused_by_name():
    x = torch.randn(1, 2, 8, 8)
    f = ops.setup_filter([1, 3, 3, 1])
    with pytest.raises(ValueError, match="b must be on the same device as x"):
        ops.filtered_lrelu(x, f, f, b=torch.zeros(2, device="meta"), padding=2)
    with pytest.raises(ValueError, match="w must be on the same device as x"):
        ops.conv2d_resample(x, torch.ones(4, 2, 3, 3, device="meta"))


@pytest.mark.cpp
def test_filters_longer_than_the_cpu_kernels_take_fall_back_under_auto():
    """The C++ kernels take at most 256 taps per axis: 'auto' then computes with 'ref' (the call is valid),
    an explicit 'cpp' raises a ValueError naming the filter and the limit."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 2, 3, 310, generator=g, dtype=F64)
    f = torch.rand(1, 300, generator=g, dtype=F64)
    with ops.use_impl("auto"):
        torch.testing.assert_close(ops.upfirdn2d(x, f, down=2), ops.upfirdn2d(x, f, down=2, impl="ref"))
        got = ops.filtered_lrelu(x, f, None, padding=[0, 0, 0, 0])
        torch.testing.assert_close(got, ops.filtered_lrelu(x, f, None, impl="ref"))
    with pytest.raises(ValueError, match=r"f has 300 taps.*256"):
        ops.upfirdn2d(x, f, impl="cpp")
    with pytest.raises(ValueError, match=r"fu has 300 taps.*256"):
        ops.filtered_lrelu(x, f, impl="cpp")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("normalize", [True, False])
def test_setup_filter_refuses_nan_and_inf_taps(bad, normalize):
    """A non-finite tap would turn every output sample it touches into NaN/inf: refused up front."""
    with pytest.raises(ValueError, match=r"f has non-finite taps"):
        ops.setup_filter([1.0, bad, 1.0], normalize=normalize)
    with pytest.raises(ValueError, match=r"f has non-finite taps"):
        ops.setup_filter(torch.tensor([[1.0, 2.0], [bad, 1.0]]), normalize=normalize)
    if bad > 0:  # an infinite gain, or taps whose outer product overflows float32, end non-finite as well
        with pytest.raises(ValueError, match=r"f has non-finite taps after normalization and gain inf"):
            ops.setup_filter([1.0, 2.0, 1.0], gain=bad, normalize=normalize)
        with pytest.raises(ValueError, match=r"f has non-finite taps after normalization"):
            ops.setup_filter([3e38, 3e38], normalize=normalize)


def test_ref_moves_a_filter_to_the_device_of_x(monkeypatch):
    """The compiled paths move a filter to x's device (compiled_filter); ref must too, or a CUDA x with a
    CPU filter fails inside conv2d. A meta-device x stands in for the CUDA one: every conv2d must get its
    weight on x's device."""
    conv2d = torch.nn.functional.conv2d
    devices = []

    def checked_conv2d(x, w, *args, **kwargs):
        devices.append((x.device.type, w.device.type))
        return conv2d(x, w, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", checked_conv2d)
    x = torch.randn(1, 2, 8, 8, device="meta")
    f2, f1 = ops.setup_filter([1, 3, 3, 1]), ops.setup_filter(torch.ones(8))
    assert ops.upfirdn2d(x, f2, up=2, padding=2, impl="ref").shape == (1, 2, 17, 17)
    assert ops.upfirdn2d(x, f1, down=2, padding=3, impl="ref").shape == (1, 2, 4, 4)
    b = torch.zeros(2, device="meta")
    assert ops.filtered_lrelu(x, f1, f2, b, up=2, down=2, padding=5, impl="ref").shape == (1, 2, 8, 8)
    assert devices and all(d == ("meta", "meta") for d in devices), devices
