"""The modulated convolution: grouped-conv and batched-matmul (1x1) executions agree with the
per-sample formula of spec §1.7 (styles modulate the weight, demodulation, input_gain)."""

from __future__ import annotations

import pytest
import torch

from sg3.modules.layers import modulated_conv2d


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
def test_matches_per_sample_formula(kernel, demodulate, gain):
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
