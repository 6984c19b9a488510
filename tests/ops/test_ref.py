"""The pure-PyTorch reference ops: spec vectors, conventions, float64 gradcheck, bad input, impl selection."""

from __future__ import annotations

import math

import pytest
import torch

from sg3 import ops
from sg3.ops import _dispatch

F64 = torch.float64
IMPLS = ["ref", pytest.param("cpp", marks=pytest.mark.cpp)]  # cpp: the compiled op, same numbers


@pytest.mark.parametrize("impl", IMPLS)
def test_filtered_lrelu_spec_vector_a(spec_filters, spec_input, impl):
    x, b = spec_input(8), torch.tensor([0.1, -0.3])
    f = spec_filters["l0"]
    y = ops.filtered_lrelu(x, f, f, b, up=2, down=2, padding=[9, 8, 9, 8], clamp=256, impl=impl)
    assert y.shape == (1, 2, 6, 6)
    expect_row = [0.8576723, 0.8926805, 0.6267111, 0.2388392, -0.0312557, -0.1246599]
    expect_col = [0.8576723, 0.9774170, 0.9773285, 0.8915771, 0.7415945, 0.5456005]
    expect_c1 = [0.4350489, 0.3196744, 0.0905097, -0.0639220, -0.0950503, -0.0831859]
    torch.testing.assert_close(y[0, 0, 0], torch.tensor(expect_row), atol=2e-6, rtol=0)
    torch.testing.assert_close(y[0, 0, :, 0], torch.tensor(expect_col), atol=2e-6, rtol=0)
    torch.testing.assert_close(y[0, 1, 0], torch.tensor(expect_c1), atol=2e-6, rtol=0)
    assert y.sum().item() == pytest.approx(10.25981, abs=2e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_filtered_lrelu_spec_vector_b(spec_filters, spec_input, impl):
    x, b = spec_input(16), torch.tensor([0.1, -0.3])
    fu, fd = spec_filters["l2_up"], spec_filters["l2_down"]
    y = ops.filtered_lrelu(x, fu, fd, b, up=4, down=2, padding=[-6, -9, -6, -9], clamp=0.5, impl=impl)
    assert y.shape == (1, 2, 8, 8)
    row = [-0.0651485, 0.0775654, 0.2795766, 0.4357540, 0.4922481, 0.4997894, 0.4999995, 0.4998081]
    col = [-0.1098035, -0.1074973, -0.1037830, -0.0988919, -0.0931277, -0.0868492, -0.0804464, -0.0743178]
    torch.testing.assert_close(y[0, 0, 0], torch.tensor(row), atol=2e-6, rtol=0)
    torch.testing.assert_close(y[0, 1, :, 0], torch.tensor(col), atol=2e-6, rtol=0)
    assert y.sum().item() == pytest.approx(21.26865, abs=2e-5)


def test_spec_filter_values(spec_filters):
    expect = [0.0007919021, 0.010018318, 0.038949523, 0.09241279, 0.15652561, 0.20130186]
    torch.testing.assert_close(spec_filters["l0"][:6], torch.tensor(expect), atol=1e-8, rtol=1e-6)
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f[0], torch.tensor([0.015625, 0.046875, 0.046875, 0.015625]))
    torch.testing.assert_close(f[1], torch.tensor([0.046875, 0.140625, 0.140625, 0.046875]))


def test_setup_filter_options():
    assert ops.setup_filter(None).shape == (1, 1)
    long = ops.setup_filter(torch.arange(1.0, 9.0))
    assert long.shape == (8,) and long.sum().item() == pytest.approx(1.0)
    assert ops.setup_filter([1, 2], separable=True).shape == (2,)
    torch.testing.assert_close(ops.setup_filter([1, 3], flip_filter=True), ops.setup_filter([3, 1]))
    assert ops.setup_filter([1, 3, 3, 1], gain=4).sum().item() == pytest.approx(4.0)
    assert ops.setup_filter(torch.ones(10), gain=4).sum().item() == pytest.approx(2.0)  # sqrt per axis
    with pytest.raises(ValueError, match="normalize=False"):
        ops.setup_filter([1, -1])


@pytest.mark.parametrize("impl", IMPLS)
def test_upfirdn2d_semantics_1d(impl):
    """Zero insertion after each sample, padding relative to the upsampled signal, true convolution."""
    x = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)
    f = torch.tensor([1.0, 10.0])
    y = ops.upfirdn2d(x, f.reshape(1, 2), up=[2, 1], padding=[1, 0, 0, 0], impl=impl)
    # upsampled + padded: [0, 1, 0, 2, 0, 3, 0]; convolution with [1, 10] (valid) -> correlation with [10, 1].
    assert y.flatten().tolist() == [1.0, 10.0, 2.0, 20.0, 3.0, 30.0]
    y = ops.upfirdn2d(x, f.reshape(1, 2), up=[2, 1], padding=[1, 0, 0, 0], flip_filter=True, impl=impl)
    assert y.flatten().tolist() == [10.0, 1.0, 20.0, 2.0, 30.0, 3.0]
    y = ops.upfirdn2d(x, f.reshape(1, 2), up=[2, 1], down=[2, 1], padding=[1, 0, 0, 0], gain=2, impl=impl)
    assert y.flatten().tolist() == [2.0, 4.0, 6.0]
    # The same along y, and the 1-D (separable) form: sqrt(gain) per pass, total gain `gain`.
    y = ops.upfirdn2d(x.transpose(2, 3), f.reshape(2, 1), up=[1, 2], padding=[0, 0, 1, 0], gain=4, impl=impl)
    assert y.flatten().tolist() == [4.0, 40.0, 8.0, 80.0, 12.0, 120.0]
    y = ops.upfirdn2d(x, f, up=[2, 1], padding=[1, 0, 1, 0], flip_filter=True, gain=4, impl=impl)
    assert y.flatten().tolist() == [400.0, 40.0, 800.0, 80.0, 1200.0, 120.0]


@pytest.mark.parametrize("h,w", [(8, 8), (9, 7)])
def test_resample_helpers_sizes(h, w):
    x = torch.randn(1, 2, h, w)
    f = ops.setup_filter([1, 3, 3, 1])
    assert ops.upsample2d(x, f, impl="ref").shape == (1, 2, 2 * h, 2 * w)
    assert ops.downsample2d(x, f, impl="ref").shape == (1, 2, h // 2, w // 2)
    assert ops.filter2d(x, f, impl="ref").shape == (1, 2, h, w)
    assert ops.filter2d(x, f, padding=1, impl="ref").shape == (1, 2, h + 2, w + 2)
    # upsample2d keeps a constant signal's level (gain up**2 on the zero-inserted signal).
    ones = torch.ones(1, 1, h, w)
    assert ops.upsample2d(ones, f, impl="ref")[0, 0, 3:-3, 3:-3].allclose(torch.ones(1))


def test_conv2d_resample_shapes_and_down_path():
    x = torch.randn(2, 3, 16, 16, dtype=F64)
    w = torch.randn(4, 3, 3, 3, dtype=F64)
    f = ops.setup_filter([1, 3, 3, 1]).to(F64)
    y = ops.conv2d_resample(x, w, f, down=2, padding=1)
    assert y.shape == (2, 4, 8, 8)
    expect = torch.nn.functional.conv2d(ops.upfirdn2d(x, f, padding=2, impl="ref"), w, stride=2)
    torch.testing.assert_close(y, expect)
    skip = ops.conv2d_resample(x, w[:, :, :1, :1].contiguous(), f, down=2)
    assert skip.shape == (2, 4, 8, 8)
    # Spec 2.4: the 1x1 down skip is FIR with pads [1, 1], decimation by 2, then the 1x1 conv.
    fir = ops.upfirdn2d(x, f, padding=1, impl="ref")[:, :, ::2, ::2]
    torch.testing.assert_close(skip, torch.nn.functional.conv2d(fir, w[:, :, :1, :1]))
    up = ops.conv2d_resample(x, w, f, up=2, padding=1, flip_weight=False)
    assert up.shape == (2, 4, 32, 32)
    plain = ops.conv2d_resample(x, w, padding=1)
    torch.testing.assert_close(plain, torch.nn.functional.conv2d(x, w, padding=1))


@pytest.mark.parametrize(
    "up,down,padding,ndim,order2",
    [
        (1, 1, 1, 2, True),
        (2, 1, [2, 1], 1, False),
        (1, 2, [1, 2, 0, 1], 2, False),
        ([2, 1], [1, 2], [-1, 2, 1, 0], 1, True),
    ],
)
def test_upfirdn2d_ref_gradcheck(up, down, padding, ndim, order2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 4, 5, dtype=F64, generator=g, requires_grad=True)
    f = torch.rand([3] if ndim == 1 else [3, 2], dtype=F64, generator=g)
    fn = lambda t: ops.upfirdn2d(t, f, up=up, down=down, padding=padding, gain=1.5, impl="ref")
    assert torch.autograd.gradcheck(fn, (x,))
    if order2:
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("act", list(ops.ACTIVATIONS))
def test_bias_act_ref_gradcheck(act):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, dtype=F64, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=F64, generator=g, requires_grad=True)
    fn = lambda t, bb: ops.bias_act(t, bb, act=act, clamp=1.3, impl="ref")
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_values():
    x = torch.tensor([[-2.0, 0.5], [3.0, -0.1]])
    b = torch.tensor([0.5, -1.0])
    y = ops.bias_act(x, b, dim=1, act="lrelu", impl="ref")
    expect = torch.nn.functional.leaky_relu(x + b, 0.2) * math.sqrt(2)
    torch.testing.assert_close(y, expect)
    y = ops.bias_act(x, act="relu", gain=1, clamp=2, impl="ref")
    assert y.tolist() == [[0.0, 0.5], [2.0, 0.0]]
    y = ops.bias_act(x, torch.tensor([1.0, 2.0]), dim=0, impl="ref")
    torch.testing.assert_close(y, torch.tensor([[-1.0, 1.5], [5.0, 1.9]]))


def test_filtered_lrelu_ref_gradcheck():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 4, 4, dtype=F64, generator=g, requires_grad=True)
    b = torch.randn(2, dtype=F64, generator=g, requires_grad=True)
    fu = torch.rand(4, dtype=F64, generator=g)
    fd = torch.rand(3, 3, dtype=F64, generator=g)
    fn = lambda t, bb: ops.filtered_lrelu(
        t, fu, fd, bb, up=2, down=2, padding=[2, 1, 1, 2], clamp=0.8, impl="ref"
    )
    assert torch.autograd.gradcheck(fn, (x, b))


def test_filtered_lrelu_identity_case_is_bias_act():
    x = torch.randn(2, 3, 6, 5)
    b = torch.randn(3)
    y = ops.filtered_lrelu(x, b=b, gain=1, slope=1, clamp=0.5, impl="ref")
    torch.testing.assert_close(y, (x + b[:, None, None]).clamp(-0.5, 0.5))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda x, f: ops.upfirdn2d(x[0], f), ValueError, "x must have rank 4"),
        (lambda x, f: ops.upfirdn2d(x, torch.ones(2, 2, 2)), ValueError, "f must be None, 1-D"),
        (lambda x, f: ops.upfirdn2d(x, f, up=-1), ValueError, "up must be >= 1"),
        (lambda x, f: ops.upfirdn2d(x, f, down=0), ValueError, "down must be >= 1"),
        (lambda x, f: ops.upfirdn2d(x, f, up=1.5), TypeError, "up must be an int"),
        (lambda x, f: ops.upfirdn2d(x, f, padding=[1, 2, 3]), TypeError, "padding must be"),
        (lambda x, f: ops.upfirdn2d(x, f, padding=-5), ValueError, "output would be empty"),
        (lambda x, f: ops.upfirdn2d(x.long(), f), TypeError, "x must be a floating-point"),
        (lambda x, f: ops.upfirdn2d(x, f, impl="fast"), ValueError, "impl must be one of"),
        (lambda x, f: ops.bias_act(x, torch.ones(3)), ValueError, "b must be 1-D of length"),
        (lambda x, f: ops.bias_act(x, torch.ones(2, dtype=F64)), TypeError, "same dtype"),
        (lambda x, f: ops.bias_act(x, act="gelu"), ValueError, "act must be one of"),
        (lambda x, f: ops.bias_act(x, torch.ones(2), dim=4), ValueError, "dim must be an int"),
        (lambda x, f: ops.bias_act(x, clamp=-1), ValueError, "clamp must be >= 0"),
        (lambda x, f: ops.filtered_lrelu(x, f, f, up=0), ValueError, "up must be an int >= 1"),
        (lambda x, f: ops.filtered_lrelu(x, f, f, b=torch.ones(5)), ValueError, "b must be 1-D of length"),
        (lambda x, f: ops.filtered_lrelu(x, f, f, b=torch.ones(2, dtype=F64)), TypeError, "same dtype"),
        (lambda x, f: ops.filtered_lrelu(x, torch.ones(1, 2, 3)), ValueError, "fu must be None, 1-D"),
        (lambda x, f: ops.filtered_lrelu(x, "f"), TypeError, "fu must be None or a torch.Tensor"),
        (lambda x, f: ops.conv2d_resample(x, torch.ones(4, 3, 3, 3)), ValueError, "groups must be"),
    ],
)
def test_bad_input(call, error, match):
    x = torch.randn(1, 2, 8, 8)
    f = ops.setup_filter([1, 3, 3, 1])
    with pytest.raises(error, match=match):
        call(x, f)


def test_use_impl_and_default():
    assert ops.get_default_impl() == "auto"
    with ops.use_impl("ref"):
        assert ops.get_default_impl() == "ref"
        assert _dispatch.resolve("auto", torch.zeros(1)) == ("ref", None)
    assert ops.get_default_impl() == "auto"
    ops.set_default_impl("ref")
    try:
        assert ops.get_default_impl() == "ref"
    finally:
        ops.set_default_impl("auto")
    with pytest.raises(ValueError, match="name must be one of"):
        ops.set_default_impl("gpu")
    with pytest.raises(ValueError, match="cannot run on a tensor on device cpu"):
        _dispatch.resolve("cuda", torch.zeros(1))


def test_firwin_helper_matches_spec_l3(spec_filters):
    f = spec_filters["t256_l3_up"]
    torch.testing.assert_close(
        f[:3], torch.tensor([-0.00163828, -0.00305529, -0.00371516]), atol=1e-8, rtol=0
    )


@pytest.mark.parametrize(
    "padding,expect",
    [
        ([-10, 5, 0, 0], [[0.0, 0.0, 0.0]]),  # crop more than the image on the left, pad on the right
        ([5, -10, 0, 0], [[0.0, 0.0, 0.0]]),
        ([-6, 1, 0, 0], [[7.0, 8.0, 0.0]]),
        ([2, -9, 0, 0], [[0.0]]),
        ([-7, 0, -3, 4], [[0.0], [0.0]]),  # along y: a 1-row image cropped by 3, padded by 4
    ],
)
@pytest.mark.parametrize("impl", IMPLS)
def test_upfirdn2d_crop_larger_than_the_image_on_one_side(padding, expect, impl):
    """Padding and cropping act on each side of the (upsampled) signal independently: a crop deeper
    than the image reaches into the other side's zero padding, and the result is those zeros."""
    x = torch.arange(1.0, 9.0).reshape(1, 1, 1, 8)
    assert ops.upfirdn2d(x, None, padding=padding, impl=impl)[0, 0].tolist() == expect


def test_crop_larger_than_the_image_after_upsampling_and_in_filtered_lrelu():
    x = torch.arange(1.0, 9.0).reshape(1, 1, 1, 8)
    # Upsampled to 16 samples, padded by 5 on the right, cropped by 17 on the left: 4 zeros, filtered.
    y = ops.upfirdn2d(x, torch.tensor([[1.0, 2.0]]), up=[2, 1], padding=[-17, 5, 0, 0], impl="ref")
    assert y.flatten().tolist() == [0.0, 0.0, 0.0]
    f = torch.tensor([0.25, 0.5, 0.25], dtype=F64)
    x64 = torch.randn(1, 2, 5, 6, dtype=F64, requires_grad=True)
    fn = lambda t: ops.filtered_lrelu(t, f, f, up=2, down=2, padding=[-13, 8, 2, 1], impl="ref")
    assert fn(x64).shape == (1, 2, 5, 2)
    assert torch.autograd.gradcheck(fn, (x64,))


def test_setup_filter_refuses_a_negative_gain_for_a_separable_filter():
    """A 1-D filter is applied once per axis, so its sign cancels: a negative total gain cannot be put
    into it (sqrt of a negative gain made a complex filter)."""
    torch.testing.assert_close(ops.setup_filter([1, 3, 3, 1], gain=-2).sum(), torch.tensor(-2.0))
    with pytest.raises(ValueError, match="negative gain"):
        ops.setup_filter(torch.ones(8), gain=-2)


_ACT_FORMULAS = {  # spec 2.2: name -> (formula, default alpha, default gain)
    "linear": (lambda v: v, 0.0, 1.0),
    "relu": (lambda v: v.clamp(min=0), 0.0, math.sqrt(2)),
    "lrelu": (lambda v: torch.where(v >= 0, v, 0.2 * v), 0.2, math.sqrt(2)),
    "tanh": (lambda v: (v.exp() - (-v).exp()) / (v.exp() + (-v).exp()), 0.0, 1.0),
    "sigmoid": (lambda v: 1 / (1 + (-v).exp()), 0.0, 1.0),
    "elu": (lambda v: torch.where(v >= 0, v, v.exp() - 1), 0.0, 1.0),
    "selu": (lambda v: 1.0507009873554805 * torch.where(v >= 0, v, 1.6732632423543772 * (v.exp() - 1)), 0, 1),
    "softplus": (lambda v: (1 + v.exp()).log(), 0.0, 1.0),
    "swish": (lambda v: v / (1 + (-v).exp()), 0.0, math.sqrt(2)),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", list(_ACT_FORMULAS))
def test_bias_act_activation_defaults_and_order(act, impl):
    """Spec 2.2: the 9 activations with their default alpha and gain; order bias -> act -> gain -> clamp
    (clamp bounds the scaled output); clamp=0 clamps everything to 0, clamp=None not at all."""
    formula, def_alpha, def_gain = _ACT_FORMULAS[act]
    assert (ops.ACTIVATIONS[act].def_alpha, ops.ACTIVATIONS[act].def_gain) == (def_alpha, def_gain)
    x = torch.linspace(-4, 4, 24, dtype=F64).reshape(2, 3, 4)
    b = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    v = x + b[:, None]
    torch.testing.assert_close(ops.bias_act(x, b, act=act, impl=impl), formula(v) * def_gain)
    y = ops.bias_act(x, b, act=act, gain=3.0, clamp=1.25, impl=impl)
    torch.testing.assert_close(y, (formula(v) * 3.0).clamp(-1.25, 1.25))
    assert ops.bias_act(x, b, act=act, gain=3.0, clamp=0, impl=impl).abs().max() == 0
    big = ops.bias_act(x * 100, None, act=act, gain=3.0, clamp=None, impl=impl)
    torch.testing.assert_close(big, formula(x * 100) * 3.0)


@pytest.mark.parametrize("impl", IMPLS)
def test_filtered_lrelu_clamp_zero_and_none(impl):
    """clamp=0 clamps every activation to 0 (so the output and every gradient are 0); clamp=None leaves
    values of any size alone."""
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(1, 2, 6, 5, generator=g, dtype=F64) * 1000).requires_grad_(True)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=F64) / 8
    kw = dict(up=2, down=2, padding=[3, 2, 3, 2], impl=impl)
    y = ops.filtered_lrelu(x, f, f, clamp=0, **kw)
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert y.abs().max() == 0 and gx.abs().max() == 0
    y = ops.filtered_lrelu(x, f, f, clamp=None, **kw)
    up = ops.upfirdn2d(x, f, up=2, padding=[3, 2, 3, 2], gain=4, impl="ref")
    want = ops.upfirdn2d(torch.nn.functional.leaky_relu(up, 0.2) * math.sqrt(2), f, down=2, impl="ref")
    assert want.abs().max() > 1000
    torch.testing.assert_close(y, want)


def test_conv2d_resample_up_is_a_true_convolution_of_the_filtered_upsampled_input():
    """Spec 2.4 up path (SG2 conv0, flip_weight=False): zero insertion, pads [3, 2] for p = 1, FIR with
    gain 4, then a true convolution. Checked against the transposed-convolution form of the same
    operator (conv_transpose2d applies the kernel unflipped as a true convolution of the zero-inserted
    input), with the FIR padding reduced by the kernel's own extent."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=F64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=F64)
    f = ops.setup_filter([1, 3, 3, 1]).to(F64)
    y = ops.conv2d_resample(x, w, f, up=2, padding=1, flip_weight=False)
    assert y.shape == (2, 4, 10, 12)
    z = torch.nn.functional.conv_transpose2d(x, w.transpose(0, 1), stride=2)  # [N, 4, 2H+1, 2W+1]
    pads = [3 - 2, 2 - 1, 3 - 2, 2 - 1]  # [3, 2] minus (k - 1, k - up)
    torch.testing.assert_close(y, ops.upfirdn2d(z, f, padding=pads, gain=4, impl="ref"))
    x_up = ops.upfirdn2d(x, f, up=2, padding=[3, 2, 3, 2], gain=4, impl="ref")
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x_up, w.flip([2, 3])))


def test_conv2d_resample_crop_deeper_than_the_image_on_one_side():
    """Like upfirdn2d's: padding one side and cropping the other by more than the image leaves zeros."""
    x = torch.randn(1, 2, 4, 4, dtype=F64)
    w = torch.randn(3, 2, 3, 3, dtype=F64)
    y = ops.conv2d_resample(x, w[:, :, :1, :1], padding=[-5, 3, 0, 0])
    assert y.shape == (1, 3, 4, 2) and y.abs().max() == 0
    y = ops.conv2d_resample(x, w, padding=[-6, 6, 1, 1])
    assert y.shape == (1, 3, 4, 2) and y.abs().max() == 0
    y = ops.conv2d_resample(x, w, padding=[-1, 3, 2, 0])  # a crop within the image: plain pad + conv
    expect = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [0, 3, 2, 0])[..., 1:], w)
    torch.testing.assert_close(y, expect)
