"""Tier `gpu`: both executions of the modulated convolution (grouped, dense) on CUDA against the float64
CPU result, forward and the gradients of input, weight and styles, in float32 and float16."""

from __future__ import annotations

import pytest
import torch
from gpu_helpers import assert_close

from sg3.modules import modconv
from sg3.modules.layers import modulated_conv2d

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("impl", modconv.MODCONV_IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_modulated_conv_executions_match_float64(device, impl, dtype):
    g = torch.Generator(device="cpu").manual_seed(11)
    x = torch.randn([4, 64, 20, 20], generator=g, dtype=torch.float64)
    w = torch.randn([48, 64, 3, 3], generator=g, dtype=torch.float64)
    s = torch.randn([4, 64], generator=g, dtype=torch.float64) + 1
    gain = torch.rand([4, 64], generator=g, dtype=torch.float64) + 0.5
    probe = torch.randn([4, 48, 22, 22], generator=g, dtype=torch.float64)

    def run(x, w, s, gain):
        leaves = [t.clone().requires_grad_() for t in (x, w, s)]
        y = modulated_conv2d(leaves[0], leaves[1], leaves[2], padding=2, input_gain=gain)
        grads = torch.autograd.grad((y.double() * probe.to(y.device)).sum(), leaves)
        return y, grads

    want_y, want_grads = run(x, w, s, gain)
    modconv.set_modconv_impl(impl)
    try:
        got_y, got_grads = run(
            x.to(device, dtype), w.float().to(device), s.float().to(device), gain.float().to(device)
        )
    finally:
        modconv.set_modconv_impl(None)
    assert got_y.dtype == dtype
    assert_close(got_y.cpu(), want_y, dtype, f"{impl} forward")
    for name, got, want in zip(["x", "weight", "styles"], got_grads, want_grads):
        assert_close(got.cpu(), want, dtype, f"{impl} gradient of {name}", factor=3)
