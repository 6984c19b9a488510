"""Tier `cpp`: the compiled CPU ops (sg3_ops_cpu) match the reference over a sampled configuration grid.

Forward, first-order gradients (x and bias), double backward for upfirdn2d and bias_act, float32 and
float64, float16 through the CPU path, non-contiguous and channels_last inputs, the spec §11.3 vectors.
The extension is built once per session (into the user's cache, reused across runs).
"""

from __future__ import annotations

import math

import pytest
import torch
from opsgrid import make_filter, upfirdn_grid

from sg3 import ops
from sg3.ops import _build

pytestmark = pytest.mark.cpp
F64 = torch.float64


@pytest.fixture(scope="session", autouse=True)
def cpu_extension():
    """Build (or load from the cache) sg3_ops_cpu once for the whole session."""
    return _build.build_extension("cpp")


def _pair(fn_ref, fn_cpp, inputs, rtol, atol, grad=True, gradgrad=False):
    """Compare forward, gradients and (optionally) second-order gradients of two implementations.

    Second order: the gradient g(x, dy) is differentiated again w.r.t. the inputs and dy (what R1's
    backward through the discriminator's input gradient needs).
    """
    leaves_r = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    leaves_c = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    y_r, y_c = fn_ref(*leaves_r), fn_cpp(*leaves_c)
    assert y_c.dtype == y_r.dtype and y_c.shape == y_r.shape
    torch.testing.assert_close(y_c, y_r, rtol=rtol, atol=atol)
    if not grad:
        return
    dy = torch.randn_like(y_r)
    results = []
    for y, leaves in ((y_r, leaves_r), (y_c, leaves_c)):
        need = [t for t in leaves if t.requires_grad]
        dyl = dy.clone().requires_grad_(gradgrad)
        g = torch.autograd.grad(y, need, dyl, create_graph=gradgrad)
        second = []
        if gradgrad:
            w = torch.Generator().manual_seed(3)
            s = sum((gi * torch.randn(gi.shape, generator=w, dtype=gi.dtype)).sum() for gi in g)
            second = torch.autograd.grad(s, [*need, dyl], allow_unused=True)
        results.append((g, second))
    (g_r, s_r), (g_c, s_c) = results
    for a, b in zip(g_c, g_r):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    for a, b in zip(s_c, s_r):
        if a is None or b is None:
            present = a if a is not None else b
            assert present is None or present.abs().max() == 0
        else:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _pair_upfirdn2d(x, f, kw, tol, gradgrad=False):
    """_pair of upfirdn2d(x, f, **kw) with impl 'ref' and 'cpp' (tol: rtol and atol)."""
    _pair(
        lambda t: ops.upfirdn2d(t, f, impl="ref", **kw),
        lambda t: ops.upfirdn2d(t, f, impl="cpp", **kw),
        [x],
        gradgrad=gradgrad,
        **tol,
    )


@pytest.mark.parametrize(
    "case", upfirdn_grid(36), ids=lambda c: f"up{c['up']}-down{c['down']}-f{c['ndim']}d{c['taps']}"
)
def test_upfirdn2d_parity_grid(case):
    g = torch.Generator().manual_seed(hash(str(case)) % 2**31)
    dtype = F64
    h, w = case["size"]
    x = torch.randn(2, 3, h, w, dtype=dtype, generator=g, requires_grad=True)
    f = make_filter(case["ndim"], case["taps"], g, dtype)
    kw = {k: case[k] for k in ("up", "down", "padding", "flip_filter", "gain")}
    try:
        ops.upfirdn2d(x, f, impl="ref", **kw)
    except ValueError as exc:  # this sampled padding crops everything: both impls must refuse it alike
        with pytest.raises(ValueError, match="output would be empty"):
            ops.upfirdn2d(x, f, impl="cpp", **kw)
        assert "output would be empty" in str(exc)
        return
    _pair_upfirdn2d(x, f, kw, dict(rtol=1e-10, atol=1e-10), gradgrad=True)


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "float32", "float16"])
def test_upfirdn2d_layouts_and_dtypes(layout):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 11, 10, generator=g)
    f = ops.setup_filter([1, 3, 3, 1])
    tol = dict(rtol=1e-5, atol=1e-5)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = x[:, ::2, 1:, ::2]
    elif layout == "float16":
        x = x.half()
        tol = dict(rtol=2e-3, atol=2e-3)
    x.requires_grad_(True)
    _pair_upfirdn2d(x, f, dict(down=2, padding=1), tol)


@pytest.mark.parametrize(
    "size,up,down,padding,separable",
    [
        ((8, 8), 1, 1, 2, False),  # the discriminator's FIR (rank-1 2-D filter), whole 8-element blocks
        ((8, 8), 1, 2, 1, False),  # its FIR + downsample, and (backward) upsample by 2
        ((5, 7), 2, 1, [1, 2, 0, 3], False),
        ((9, 6), 1, 2, [2, -1, 1, 0], True),  # 1-D filter: two 1-D passes; cropping
        ((4, 4), 4, 2, [3, 2, 3, 2], True),
        ((64, 64), 1, 2, 1, False),  # the widest planes of the path
    ],
)
def test_upfirdn2d_plane_vectorised_path(size, up, down, padding, separable):
    """Narrow planes with a separable filter are vectorised across planes (8 float32 lanes): 13 planes
    are one full group and a partial one; forward, gradient and double backward against ref."""
    g = torch.Generator().manual_seed(17)
    x = torch.randn(1, 13, *size, generator=g, requires_grad=True)
    f = ops.setup_filter([1, 2, 3, 1] if separable else [1, 3, 3, 1], separable=separable)
    kw = dict(up=up, down=down, padding=padding, gain=1.5)
    _pair_upfirdn2d(x, f, kw, dict(rtol=1e-5, atol=1e-5), gradgrad=True)


def test_large_outputs_come_from_a_reuse_pool():
    """Outputs of 1 MiB and more are recycled (csrc/pool_cpu.h): a freed output's buffer is handed to the
    next output of that size and fully overwritten, live outputs never share memory, and pooled tensors
    stay ordinary resizable tensors."""
    g = torch.Generator().manual_seed(19)
    xs = [torch.randn(1, 4, 256, 256, generator=g) for _ in range(3)]  # 1 MiB of float32 each
    b = torch.randn(4, generator=g)

    def both(x):
        return ops.bias_act(x, b, act="lrelu", impl="cpp"), ops.bias_act(x, b, act="lrelu", impl="ref")

    first, _ = both(xs[0])
    ptr = first.data_ptr()
    del first
    second, second_ref = both(xs[1])
    assert second.data_ptr() == ptr
    third, third_ref = both(xs[2])
    assert third.data_ptr() != second.data_ptr()
    torch.testing.assert_close(second, second_ref)
    torch.testing.assert_close(third, third_ref)
    f = ops.setup_filter([1, 3, 3, 1])
    y = ops.upfirdn2d(xs[0], f, padding=2, impl="cpp")  # a different size: a new block
    torch.testing.assert_close(y, ops.upfirdn2d(xs[0], f, padding=2, impl="ref"), rtol=1e-5, atol=1e-5)
    second.resize_(2, 4, 256, 256)
    second[1] = 3.0
    torch.testing.assert_close(second[0], second_ref[0])
    assert second[1].eq(3.0).all()


@pytest.mark.parametrize("act", list(ops.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_bias_act_parity(act, dtype):
    g = torch.Generator().manual_seed(11)
    x = (torch.randn(3, 5, 4, 6, generator=g) * 3).to(dtype).requires_grad_(True)
    b = torch.randn(5, generator=g).to(dtype).requires_grad_(True)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    for kw in (dict(), dict(clamp=1.7, gain=0.8), dict(alpha=0.1)):
        _pair(
            lambda t, bb, kw=kw: ops.bias_act(t, bb, act=act, impl="ref", **kw),
            lambda t, bb, kw=kw: ops.bias_act(t, bb, act=act, impl="cpp", **kw),
            [x, b],
            gradgrad=True,
            **tol,
        )


@pytest.mark.parametrize(
    "dim,layout", [(0, "plain"), (2, "plain"), (1, "channels_last"), (1, "2d"), (-1, "sliced")]
)
def test_bias_act_dims_and_layouts(dim, layout):
    g = torch.Generator().manual_seed(12)
    x = torch.randn(4, 6, 5, 3, generator=g, dtype=F64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "2d":
        x = x[:, :, 0, 0].contiguous()
    elif layout == "sliced":
        x = x[..., ::2, :]
    x.requires_grad_(True)
    b = torch.randn(x.shape[dim], generator=g, dtype=F64, requires_grad=True)
    _pair(
        lambda t, bb: ops.bias_act(t, bb, dim=dim, act="lrelu", clamp=1.0, impl="ref"),
        lambda t, bb: ops.bias_act(t, bb, dim=dim, act="lrelu", clamp=1.0, impl="cpp"),
        [x, b],
        rtol=1e-12,
        atol=1e-12,
        gradgrad=True,
    )


def test_bias_act_float16_and_no_bias():
    x = torch.randn(2, 3, 4, 4).half().requires_grad_(True)
    _pair(
        lambda t: ops.bias_act(t, act="swish", impl="ref"),
        lambda t: ops.bias_act(t, act="swish", impl="cpp"),
        [x],
        rtol=2e-3,
        atol=2e-3,
    )


@pytest.mark.parametrize("act", ["linear", "relu", "lrelu", "tanh"])
@pytest.mark.parametrize(
    "shape,layout", [((2, 7, 5, 9), "plain"), ((2, 19, 3, 5), "channels_last"), ((2, 3, 48, 40), "plain")]
)
def test_bias_act_vector_body_tails_and_fused_bias_grad(act, shape, layout):
    """Rows that are not whole vectors (7x45, 19 channels-last), and rows long enough for the blocked
    bias-gradient sum (1920 elements), in float32; the CPU extension reduces db in the backward kernel."""
    assert hasattr(_build.load_extension("cpp"), "bias_act_grad_db")
    g = torch.Generator().manual_seed(13)
    x = (torch.randn(shape, generator=g) * 2).requires_grad_(True)
    if layout == "channels_last":
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    b = torch.randn(shape[1], generator=g).requires_grad_(True)
    for kw in (dict(), dict(clamp=1.3, gain=1.7)):
        _pair(
            lambda t, bb, kw=kw: ops.bias_act(t, bb, act=act, impl="ref", **kw),
            lambda t, bb, kw=kw: ops.bias_act(t, bb, act=act, impl="cpp", **kw),
            [x, b],
            rtol=1e-5,
            atol=2e-5,
            gradgrad=True,
        )


def _saved_storages(fn) -> list[int]:
    """Data pointers of the tensors autograd saves while `fn()` runs."""
    ptrs: list[int] = []

    def pack(t):
        ptrs.append(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return ptrs


def test_bias_act_saves_only_what_its_derivative_needs():
    """lrelu/relu and clamped linear keep the output (which the next layer saves anyway) instead of the
    pre-activation, linear without clamp keeps nothing, other activations keep x; gradients stay exact."""
    g = torch.Generator().manual_seed(14)
    x = (torch.randn(2, 4, 5, 6, generator=g, dtype=F64) * 3).requires_grad_(True)
    b = torch.randn(4, generator=g, dtype=F64, requires_grad=True)
    out: dict[str, torch.Tensor] = {}
    saved = _saved_storages(lambda: out.update(y=ops.bias_act(x, b, act="lrelu", clamp=2.0, impl="cpp")))
    assert saved == [out["y"].untyped_storage().data_ptr()]
    saved = _saved_storages(lambda: out.update(y=ops.bias_act(x, b, act="linear", gain=0.5, impl="cpp")))
    assert saved == []
    saved = _saved_storages(lambda: out.update(y=ops.bias_act(x, b, act="tanh", impl="cpp")))
    assert x.untyped_storage().data_ptr() in saved
    # Where the output does not show the sign (negative gain, negative slope), x is kept and used.
    for kw in (
        dict(act="lrelu", gain=-1.5, clamp=2.0),
        dict(act="lrelu", alpha=-0.3),
        dict(act="relu", gain=0.0),
    ):
        saved = _saved_storages(lambda kw=kw: out.update(y=ops.bias_act(x, b, impl="cpp", **kw)))
        assert x.untyped_storage().data_ptr() in saved, kw
        _pair(
            lambda t, bb, kw=kw: ops.bias_act(t, bb, impl="ref", **kw),
            lambda t, bb, kw=kw: ops.bias_act(t, bb, impl="cpp", **kw),
            [x, b],
            rtol=1e-12,
            atol=1e-12,
            gradgrad=True,
        )


def test_bias_act_gradient_is_zero_at_the_clamp_bounds():
    """An output at exactly +-clamp gets gradient 0, as through torch.clamp (the reference), both where the
    derivative is read off the output (gain > 0) and where it is read off x (gain < 0)."""
    x = torch.tensor([[-3.0, -1.0, 0.5, 1.0, 2.5]], dtype=F64, requires_grad=True)
    for gain in (1.0, -1.0):
        for impl in ("cpp", "ref"):
            (dx,) = torch.autograd.grad(ops.bias_act(x, gain=gain, clamp=1.0, impl=impl).sum(), x)
            want = torch.tensor([[0.0, 0.0, gain, 0.0, 0.0]], dtype=F64)
            torch.testing.assert_close(dx, want, msg=f"gain={gain} impl={impl}")


FL_CASES = [
    # up, down, fu (ndim, taps), fd (ndim, taps), padding, size, clamp, slope, gain, flip
    (2, 2, (1, 12), (1, 12), [9, 8, 9, 8], (12, 12), 256.0, 0.2, math.sqrt(2), False),
    (4, 2, (1, 24), (1, 12), [-6, -9, -6, -9], (14, 13), 0.5, 0.2, math.sqrt(2), False),
    (
        2,
        2,
        (1, 12),
        (2, 12),
        [11, 10, 11, 10],
        (9, 10),
        256.0,
        0.2,
        math.sqrt(2),
        False,
    ),  # config R radial fd
    (4, 2, (1, 24), (2, 12), [-2, -5, -2, -5], (14, 13), None, 0.2, math.sqrt(2), False),
    (2, 2, (1, 12), (1, 12), [-11, -12, -11, -12], (26, 25), 1.0, 0.2, math.sqrt(2), False),  # cropping (L13)
    (1, 1, None, None, 0, (7, 9), 0.3, 1.0, 1.0, False),  # ToRGB: bias + clamp only
    (1, 2, None, (1, 4), [1, 2], (9, 8), None, 0.1, 2.0, True),
    (2, 1, (1, 3), None, 1, (6, 7), 0.7, 0.3, 1.0, True),
    (4, 4, (1, 8), (1, 5), [3, 2, 4, 1], (7, 8), 0.9, 0.25, 1.5, False),
    (2, 4, (2, 5), (2, 3), [2, 3, 1, 2], (8, 9), None, 0.2, 1.0, True),  # 2-D fu
    (1, 4, (1, 1), (1, 24), [12, 11], (13, 10), 2.0, 0.2, 1.0, False),
]


@pytest.mark.parametrize("case", FL_CASES, ids=lambda c: f"up{c[0]}-down{c[1]}-fu{c[2]}-fd{c[3]}")
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_filtered_lrelu_parity(case, dtype):
    up, down, fu_spec, fd_spec, padding, (h, w), clamp, slope, gain, flip = case
    g = torch.Generator().manual_seed(hash(str(case)) % 2**31)
    fu = make_filter(*fu_spec, g, dtype) if fu_spec else None
    fd = make_filter(*fd_spec, g, dtype) if fd_spec else None
    if fu is not None:
        fu = fu / fu.sum()
    if fd is not None:
        fd = fd / fd.sum()
    x = torch.randn(2, 3, h, w, generator=g, dtype=F64).to(dtype).requires_grad_(True)
    b = torch.randn(3, generator=g, dtype=F64).to(dtype).requires_grad_(True)
    kw = dict(up=up, down=down, padding=padding, gain=gain, slope=slope, clamp=clamp, flip_filter=flip)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    _pair(
        lambda t, bb: ops.filtered_lrelu(t, fu, fd, bb, impl="ref", **kw),
        lambda t, bb: ops.filtered_lrelu(t, fu, fd, bb, impl="cpp", **kw),
        [x, b],
        **tol,
    )


def test_filtered_lrelu_spec_vectors_cpp(spec_filters, spec_input):
    b = torch.tensor([0.1, -0.3])
    f = spec_filters["l0"]
    y = ops.filtered_lrelu(spec_input(8), f, f, b, up=2, down=2, padding=[9, 8, 9, 8], clamp=256, impl="cpp")
    assert y.shape == (1, 2, 6, 6)
    assert y.sum().item() == pytest.approx(10.25981, abs=2e-5)
    row = torch.tensor([0.8576723, 0.8926805, 0.6267111, 0.2388392, -0.0312557, -0.1246599])
    torch.testing.assert_close(y[0, 0, 0], row, atol=2e-6, rtol=0)
    fu, fd = spec_filters["l2_up"], spec_filters["l2_down"]
    y = ops.filtered_lrelu(
        spec_input(16), fu, fd, b, up=4, down=2, padding=[-6, -9, -6, -9], clamp=0.5, impl="cpp"
    )
    assert y.sum().item() == pytest.approx(21.26865, abs=2e-5)
    assert y[0, 1, 7, 0].item() == pytest.approx(-0.0743178, abs=2e-6)


def test_filtered_lrelu_layouts_and_float16(spec_filters):
    f = spec_filters["l0"]
    g = torch.Generator().manual_seed(5)
    base = torch.randn(2, 4, 10, 10, generator=g)
    b = torch.randn(4, generator=g)
    for x, tol in (
        (base.contiguous(memory_format=torch.channels_last), 1e-5),
        (base[:, :, ::2, :], 1e-5),
        (base.half(), 5e-3),
    ):
        xx = x.detach().requires_grad_(True)
        bb = b.to(x.dtype)
        kw = dict(up=2, down=2, padding=[9, 8, 9, 8], clamp=2.0)
        _pair(
            lambda t, bb=bb, kw=kw: ops.filtered_lrelu(t, f, f, bb, impl="ref", **kw),
            lambda t, bb=bb, kw=kw: ops.filtered_lrelu(t, f, f, bb, impl="cpp", **kw),
            [xx],
            rtol=tol,
            atol=tol,
        )


def test_filtered_lrelu_no_grad_skips_signs_and_backward_needs_them(spec_filters):
    f = spec_filters["l0"]
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        y = ops.filtered_lrelu(x, f, f, up=2, down=2, padding=[9, 8, 9, 8], impl="cpp")
    torch.testing.assert_close(y, ops.filtered_lrelu(x, f, f, up=2, down=2, padding=[9, 8, 9, 8], impl="ref"))
    ext = _build.load_extension("cpp")
    with pytest.raises(RuntimeError, match="si must be the forward's"):
        ext.filtered_lrelu_bwd(
            y, f, f, torch.empty(0, dtype=torch.uint8), 2, 2, 9, 8, 9, 8, 8, 8, 1.0, 0.2, False
        )


def test_conv2d_resample_uses_compiled_path_consistently():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 12, 12, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=F64)
    f = ops.setup_filter([1, 3, 3, 1]).to(F64)
    with ops.use_impl("ref"):
        y_r = ops.conv2d_resample(x, w, f, down=2, padding=1)
        (gx_r,) = torch.autograd.grad(y_r.square().sum(), x, create_graph=True)
        (ggx_r,) = torch.autograd.grad(gx_r.square().sum(), x)
    with ops.use_impl("cpp"):
        y_c = ops.conv2d_resample(x, w, f, down=2, padding=1)
        (gx_c,) = torch.autograd.grad(y_c.square().sum(), x, create_graph=True)
        (ggx_c,) = torch.autograd.grad(gx_c.square().sum(), x)
    torch.testing.assert_close(y_c, y_r)
    torch.testing.assert_close(gx_c, gx_r)
    torch.testing.assert_close(ggx_c, ggx_r)


@pytest.mark.parametrize("impl", ["ref", "cpp"])
@pytest.mark.parametrize("shape", [(0, 2, 6, 5), (2, 0, 6, 5), (1, 2, 0, 5)])
def test_empty_inputs_give_empty_or_zero_outputs(shape, impl):
    """An empty batch, no channels or no rows: the output has the formula's shape (zeros where padding
    alone makes samples), gradients flow back as empty/zero tensors; the process must not die."""
    f = ops.setup_filter([1, 3, 3, 1])
    x = torch.zeros(shape, requires_grad=True)
    b = torch.zeros(shape[1], requires_grad=True)
    y = ops.upfirdn2d(x, f, up=2, padding=[3, 2, 3, 2], gain=4, impl=impl)
    assert y.shape == (shape[0], shape[1], 2 * shape[2] + 2, 12) and not y.any()
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert gx.shape == x.shape
    fu = torch.ones(4) / 4
    z = ops.filtered_lrelu(x, fu, fu, b, up=2, down=2, padding=[4, 3, 4, 3], clamp=1.0, impl=impl)
    assert z.shape == (shape[0], shape[1], shape[2] + 1, 6) and not z.any()
    gx, gb = torch.autograd.grad(z.sum(), [x, b])
    assert gx.shape == x.shape and gb.shape == b.shape and not gb.any()


@pytest.mark.parametrize("impl", ["ref", "cpp"])
@pytest.mark.parametrize("ndim", [0, 1, 2])
def test_upfirdn2d_negative_gain_is_the_total_gain(ndim, impl):
    """Spec 2.1: the total gain is `gain` whatever the filter's rank. A separable filter gets sqrt(|gain|)
    per pass and the sign once (gain ** 0.5 of a negative gain is complex and used to crash)."""
    g = torch.Generator().manual_seed(23)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=F64)
    f = None if ndim == 0 else make_filter(ndim, 4, g, F64)
    kw = dict(up=[2, 1], down=[1, 2], padding=[2, 1, 0, 3])
    y = ops.upfirdn2d(x, f, gain=-2.5, impl=impl, **kw)
    torch.testing.assert_close(y, -2.5 * ops.upfirdn2d(x, f, impl=impl, **kw), rtol=1e-12, atol=1e-12)
    upsampled = ops.upsample2d(x, f, gain=-1.0, impl=impl)  # upsample2d's gain up**2 times -1
    torch.testing.assert_close(upsampled, -ops.upsample2d(x, f, impl=impl), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_filtered_lrelu_signs_are_packed_two_bits_per_sample(dtype, spec_filters):
    """Spec §2.3: the forward records 2 bits per upsampled-domain sample (bit0 = negative, bit1 = clamped),
    4 per byte. With identity filters the z grid is x + b itself: z-row v's code sits in bits 2 * (v % 4)
    of byte v / 4. With the L0 filter at up = down = 2 the tensor stays near a quarter byte per sample."""
    ext = _build.load_extension("cpp")
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 5, 21, generator=g, dtype=dtype)
    b = torch.randn(3, generator=g, dtype=dtype)
    one = torch.ones(1, dtype=dtype)
    gain, slope, clamp = 1.5, 0.25, 1.2
    _, signs = ext.filtered_lrelu_fwd(x, one, one, b, 1, 1, 0, 0, 0, 0, gain, slope, clamp, False, True)
    assert signs.dtype == torch.uint8 and signs.shape[:3] == (2, 3, 5) and signs.shape[3] * 4 >= 21
    v = torch.arange(21)
    codes = (signs[..., v // 4].long() >> (2 * (v % 4))) & 3
    z = x + b[:, None, None]
    a = z * torch.where(z < 0, gain * slope, gain)
    torch.testing.assert_close(codes, (z < 0).long() + 2 * (a.abs() > clamp).long(), rtol=0, atol=0)
    f = spec_filters["l0"].to(dtype)
    x = torch.randn(1, 2, 64, 64, generator=g, dtype=dtype)
    _, signs = ext.filtered_lrelu_fwd(x, f, f, b[:2], 2, 2, 11, 10, 11, 10, gain, slope, -1.0, False, True)
    hz = wz = 63 * 2 + 12  # z rows and samples per row the 64x64 output reads
    assert signs.shape[2] == hz and signs.numel() <= 1.1 * 2 * hz * wz / 4
