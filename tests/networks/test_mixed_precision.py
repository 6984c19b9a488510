"""Mixed precision: bf16 autocast on CPU runs; fp16 layers on CUDA follow num_fp16_res (gpu tier)."""

from __future__ import annotations

import pytest
import torch

from sg3.modules.discriminator import Discriminator
from sg3.modules.generator import Generator
from sg3.modules.stylegan2 import Generator as StyleGAN2Generator


def test_bf16_autocast_cpu_does_not_crash(tiny):
    G = Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=4
    )
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=64, channel_max=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = G(torch.randn(2, 8), None)
        logits = D(img, None)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()
    logits.float().sum().backward()
    assert G.synthesis.L0_36_4.weight.grad is not None


@pytest.mark.gpu
def test_fp16_layers_on_cuda(tiny):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    G = Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3, num_fp16_res=1, **tiny["T"]
    ).cuda()
    used = [getattr(G.synthesis, n).use_fp16 for n in G.synthesis.layer_names]
    # fp16 where the output sampling rate s satisfies s * 2**num_fp16_res > 32, i.e. s = 32: the layers of
    # size 52 (s 32 + 2 * margin 10) and the two critically sampled 32 px ones; L0-L4 (s = 16) stay float32.
    assert used == [False] * 5 + [True] * 10
    seen = {}
    name = G.synthesis.layer_names[-1]
    getattr(G.synthesis, name).register_forward_hook(lambda m, a, out: seen.__setitem__("dtype", out.dtype))
    z = torch.randn(2, 8, device="cuda")
    with torch.no_grad():
        fp16 = G(z, None)
        assert seen["dtype"] == torch.float16 and fp16.dtype == torch.float32
        fp32 = G(z, None, force_fp32=True)
        assert seen["dtype"] == torch.float32
    assert (fp16 - fp32).abs().max() < 2e-2 * fp32.abs().max() + 1e-3

    G2 = (
        StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3, **tiny["SG2"])
        .cuda()
        .eval()
    )
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, **tiny["D"]).cuda()
    with torch.no_grad():
        a = G2(z, None, noise_mode="const")
        b = G2(z, None, noise_mode="const", force_fp32=True)
        la, lb = D(a, None), D(a, None, force_fp32=True)
    assert (a - b).abs().max() < 2e-2 * b.abs().max() + 1e-3
    assert (la - lb).abs().max() < 2e-2 * lb.abs().max() + 1e-2
