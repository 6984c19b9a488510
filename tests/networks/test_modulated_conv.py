"""The modulated convolution: grouped-conv, dense and batched-matmul (1x1) executions agree with the
per-sample formula of spec §1.7 (styles modulate the weight, demodulation, input_gain)."""

from __future__ import annotations

import pytest
import torch

from sg3.modules import modconv
from sg3.modules.layers import modulated_conv2d


@pytest.fixture(params=modconv.MODCONV_IMPLS)
def impl(request):
    """Run the test with each execution of kernels larger than 1x1 (set_modconv_impl), then restore."""
    modconv.set_modconv_impl(request.param)
    yield request.param
    modconv.set_modconv_impl(None)


def _per_sample(x, w, s, demodulate, padding, input_gain):
    """Spec formula, one plain conv per sample with its own modulated float64 weight."""
    x, w, s = x.double(), w.double(), s.double()
    if demodulate:
        w = w / w.square().mean([1, 2, 3], keepdim=True).sqrt()
        s = s / s.square().mean().sqrt()
    out = []
    for n in range(x.shape[0]):
        wn = w * s[n].view(1, -1, 1, 1)  # [O, I, k, k]
        if demodulate:
            wn = wn / (wn.square().sum([1, 2, 3], keepdim=True) + 1e-8).sqrt()
        if input_gain is not None:
            wn = wn * input_gain.double().expand(x.shape[0], w.shape[1])[n].view(1, -1, 1, 1)
        out.append(torch.nn.functional.conv2d(x[n : n + 1], wn, padding=padding))
    return torch.cat(out)


@pytest.mark.parametrize("kernel,demodulate", [(1, True), (1, False), (3, True)])
@pytest.mark.parametrize("gain", ["none", "scalar", "per_sample"])
def test_matches_per_sample_formula(kernel, demodulate, gain, impl):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 9, 9)
    w = torch.randn(5, 6, kernel, kernel)
    s = torch.randn(3, 6) + 1
    input_gain = {"none": None, "scalar": torch.tensor(0.7), "per_sample": torch.rand(3, 6) + 0.5}[gain]
    padding = kernel - 1
    got = modulated_conv2d(x, w, s, demodulate=demodulate, padding=padding, input_gain=input_gain)
    want = _per_sample(x, w, s, demodulate, padding, input_gain)
    assert got.shape == want.shape == (3, 5, 9 + kernel - 1, 9 + kernel - 1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_1x1_matmul_equals_grouped_conv_with_grads():
    """The bmm path of a 1x1 kernel gives the grouped-conv result and the same gradients."""
    torch.manual_seed(1)
    x = torch.randn(4, 8, 7, 7, requires_grad=True)
    w = torch.randn(6, 8, 1, 1, requires_grad=True)
    s = torch.randn(4, 8, requires_grad=True)
    gain = torch.tensor(0.5)
    got = modulated_conv2d(x, w, s, input_gain=gain)
    # Grouped-conv formulation written out: modulated, demodulated weights [N*O, I, 1, 1], groups=N.
    wn = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
    sn = s * s.square().mean().rsqrt()
    wm = wn.unsqueeze(0) * sn.view(4, 1, 8, 1, 1)  # [N, O, I, 1, 1]
    wm = wm * (wm.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt() * gain
    want = torch.nn.functional.conv2d(x.reshape(1, 32, 7, 7), wm.reshape(24, 8, 1, 1), groups=4)
    want = want.reshape(4, 6, 7, 7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    grads_got = torch.autograd.grad((got * want.detach().cos()).sum(), [x, w, s])
    grads_want = torch.autograd.grad((want * want.detach().cos()).sum(), [x, w, s])
    for a, b in zip(grads_got, grads_want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_shape_checks():
    with pytest.raises(ValueError, match="x must be"):
        modulated_conv2d(torch.randn(2, 3, 4, 4), torch.randn(5, 4, 1, 1), torch.randn(2, 4))
    with pytest.raises(ValueError, match="styles must be"):
        modulated_conv2d(torch.randn(2, 4, 4, 4), torch.randn(5, 4, 1, 1), torch.randn(3, 4))


def _plain_autograd(x, w, s, demodulate, padding, input_gain):
    """Spec §1.7 step by step with plain autograd (keeps the per-sample weights), one grouped conv."""
    n, i = s.shape
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    wm = w.unsqueeze(0) * s.view(n, 1, i, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        wm = wm * (wm.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    if input_gain is not None:
        wm = wm * input_gain.expand(n, i).view(n, 1, i, 1, 1)
    y = torch.nn.functional.conv2d(
        x.reshape(1, -1, *x.shape[2:]), wm.reshape(-1, i, *w.shape[2:]).to(x.dtype), padding=padding, groups=n
    )
    return y.reshape(n, -1, *y.shape[2:])


@pytest.mark.parametrize("kernel,demodulate", [(1, True), (1, False), (3, True), (3, False)])
def test_gradients_match_plain_autograd(kernel, demodulate, impl):
    """x, weight, styles and a per-sample input gain get the gradients of the step-by-step formula."""
    torch.manual_seed(2)
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 6, kernel, kernel, dtype=torch.float64, requires_grad=True)
    s = (torch.randn(3, 6, dtype=torch.float64) + 1).requires_grad_()
    gain = (torch.rand(3, 6, dtype=torch.float64) + 0.5).requires_grad_()
    padding = kernel - 1
    got = modulated_conv2d(x, w, s, demodulate=demodulate, padding=padding, input_gain=gain)
    want = _plain_autograd(x, w, s, demodulate, padding, gain)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    probe = torch.randn_like(want)
    grads_got = torch.autograd.grad((got * probe).sum(), [x, w, s, gain])
    grads_want = torch.autograd.grad((want * probe).sum(), [x, w, s, gain])
    for name, a, b in zip(["x", "weight", "styles", "input_gain"], grads_got, grads_want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=f"gradient of {name}")


@pytest.mark.parametrize("kernel", [1, 3])
def test_double_backward(kernel, impl):
    """Second-order gradients (path-length regularization goes through G twice) pass gradgradcheck."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, kernel, kernel, dtype=torch.float64, requires_grad=True)
    s = (torch.randn(2, 3, dtype=torch.float64) + 1).requires_grad_()

    def fn(x, w, s):
        return modulated_conv2d(
            x, w, s, padding=kernel - 1, input_gain=torch.tensor(0.8, dtype=torch.float64)
        )

    assert torch.autograd.gradcheck(fn, (x, w, s))
    assert torch.autograd.gradgradcheck(fn, (x, w, s))


def test_per_sample_weights_are_not_kept_for_backward(impl):
    """No tensor of the per-sample weight's size [N, O, I, k, k] is saved for the backward pass."""
    torch.manual_seed(4)
    n, o, i, k = 4, 16, 12, 3
    x = torch.randn(n, i, 6, 6, requires_grad=True)
    w = torch.randn(o, i, k, k, requires_grad=True)
    s = torch.randn(n, i, requires_grad=True)
    saved: list[int] = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        modulated_conv2d(x, w, s, padding=k - 1, input_gain=torch.tensor(0.5))
    assert saved, "nothing saved: the hook saw no autograd graph"
    assert max(saved) < n * o * i * k * k, saved
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        saved.clear()
        _plain_autograd(x, w, s, True, k - 1, torch.tensor(0.5))
    assert max(saved) >= n * o * i * k * k  # the plain formula keeps them: the probe can see them


def test_autocast_bfloat16_on_cpu(impl):
    """Under CPU bf16 autocast the convolution runs in bf16 (as conv2d would) and backward works."""
    torch.manual_seed(5)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    w = torch.randn(3, 4, 3, 3, requires_grad=True)
    s = torch.randn(2, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = modulated_conv2d(x, w, s, padding=2)
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()
    assert x.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
    want = modulated_conv2d(x.detach(), w.detach(), s.detach(), padding=2)
    torch.testing.assert_close(y.float(), want, rtol=0.05, atol=0.1)


def test_float16_dense_does_not_overflow_before_demodulation():
    """A worst case for float16: 512 x 3x3 inputs of 250 summed with equal weights. The undemodulated
    sum (1.15e6) would overflow float16; the dense path's 1/sqrt(I k k) factor keeps it in range."""
    x = torch.full((2, 512, 6, 6), 250.0, dtype=torch.float16)
    w, s = torch.ones(4, 512, 3, 3), torch.ones(2, 512)
    want = modulated_conv2d(x.float(), w, s, padding=1)
    for name in modconv.MODCONV_IMPLS:
        modconv.set_modconv_impl(name)
        try:
            got = modulated_conv2d(x, w, s, padding=1)
        finally:
            modconv.set_modconv_impl(None)
        assert got.dtype == torch.float16 and torch.isfinite(got).all(), name
        torch.testing.assert_close(got.float(), want, rtol=2e-3, atol=0, msg=name)


def test_impl_choice_setter_and_environment(monkeypatch):
    """set_modconv_impl wins over $SG3_MODCONV, which wins over the default; bad names are refused."""
    monkeypatch.delenv("SG3_MODCONV", raising=False)
    assert modconv.get_modconv_impl() == "grouped"
    monkeypatch.setenv("SG3_MODCONV", "dense")
    assert modconv.get_modconv_impl() == "dense"
    modconv.set_modconv_impl("grouped")
    try:
        assert modconv.get_modconv_impl() == "grouped"
    finally:
        modconv.set_modconv_impl(None)
    monkeypatch.setenv("SG3_MODCONV", "fused")
    with pytest.raises(ValueError, match=r"SG3_MODCONV must be one of grouped, dense, got 'fused'"):
        modconv.get_modconv_impl()
    with pytest.raises(
        ValueError, match=r"set_modconv_impl\(name\) must be one of grouped, dense, got 'Dense'"
    ):
        modconv.set_modconv_impl("Dense")


def test_dense_runs_one_ordinary_convolution(monkeypatch):
    """'dense' convolves the whole batch with the shared weight (groups=1); 'grouped' uses groups=N."""
    calls = []
    real = torch.nn.functional.conv2d

    def spy(x, w, *args, **kwargs):
        calls.append((tuple(w.shape), kwargs.get("groups", 1)))
        return real(x, w, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", spy)
    x, w, s = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    for name, want in [("grouped", [((15, 4, 3, 3), 3)]), ("dense", [((5, 4, 3, 3), 1)])]:
        calls.clear()
        modconv.set_modconv_impl(name)
        try:
            modulated_conv2d(x, w, s, padding=2)
        finally:
            modconv.set_modconv_impl(None)
        assert calls == want, name
