"""Whole-network parity with a direct, loop-per-sample transcription of the spec (§1.3-§1.8, §1.10, §3).

The reference below is written from the spec's formulas only (its own upfirdn, no sg3 ops, no modconv
factoring), so it pins the order of operations that unit tests of the pieces cannot: bias before
upsampling, input gain folded into the weight, the ToRGB style gain, the output scale, the SG2 up-2 conv
as a true convolution (§10 item 30), the img upsampling of the skip architecture, the D block gains
(sqrt(0.5)) with the clamp scaled by them, minibatch-std and the label projection. Small clamps make
every clamp bite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sg3.modules.discriminator import Discriminator
from sg3.modules.filters import synthesis_schedule
from sg3.modules.generator import Generator
from sg3.modules.stylegan2 import Generator as StyleGAN2Generator

F4 = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64


def upfirdn(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """§2.1: insert zeros, pad/crop [x0, x1, y0, y1], FIR (true convolution, valid), keep every down-th."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[..., ::up, ::up] = x
        x = z
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[..., max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    if f is not None:
        k = (torch.outer(f, f) if f.ndim == 1 else f) * gain
        y = F.conv2d(x.reshape(n * c, 1, *x.shape[2:]), k.flip([0, 1])[None, None])
        x = y.reshape(n, c, *y.shape[2:])
    return x[..., ::down, ::down]


def fc(x, layer, lrelu=False):
    """§1.2 at runtime: weight * lr_mult / sqrt(in), bias * lr_mult; lrelu with gain sqrt(2)."""
    lr = layer.bias_gain
    y = x @ (layer.weight * lr / np.sqrt(layer.weight.shape[1])).t()
    if layer.bias is not None:
        y = y + layer.bias * lr
    return F.leaky_relu(y, 0.2) * np.sqrt(2) if lrelu else y


def norm2(x):
    return x * (x.square().mean(1, keepdim=True) + 1e-8).rsqrt()


def mapping(M, z, c, num_ws, psi=1, cutoff=None):
    """§1.3 (also the SG2 and D label mappings)."""
    x = norm2(z.float()) if z is not None else None
    if M.c_dim > 0:
        y = norm2(fc(c.float(), M.embed))
        x = y if x is None else torch.cat([x, y], 1)
    for i in range(M.num_layers):
        x = fc(x, getattr(M, f"fc{i}"), lrelu=True)
    if num_ws is None:
        return x
    ws = x[:, None].repeat(1, num_ws, 1)
    if psi != 1:
        cut = num_ws if cutoff is None else cutoff
        ws[:, :cut] = M.w_avg + psi * (ws[:, :cut] - M.w_avg)
    return ws


def sg3_input(inp, w):
    """§1.5, one sample at a time, pixel-centre grid written out."""
    t = fc(w, inp.affine)
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    size, sr, bw = int(inp.size[0]), inp.sampling_rate, inp.bandwidth
    grid = (torch.arange(size) + 0.5 - size / 2) / sr
    out = []
    for rc, rs, tx, ty in t:
        m_r = torch.stack([torch.stack([rc, -rs, rc * 0]), torch.stack([rs, rc, rc * 0]), torch.eye(3)[2]])
        m_t = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
        m_t[0, 2], m_t[1, 2] = -tx, -ty
        m = m_r @ m_t @ inp.transform
        phases = inp.phases + inp.freqs @ m[:2, 2]
        freqs = inp.freqs @ m[:2, :2]
        amps = (1 - (freqs.norm(dim=1) - bw) / (sr / 2 - bw)).clamp(0, 1)
        arg = grid[None, None, :] * freqs[:, 0, None, None] + grid[None, :, None] * freqs[:, 1, None, None]
        feat = torch.sin((arg + phases[:, None, None]) * (2 * np.pi)) * amps[:, None, None]  # [C, H, W]
        out.append(torch.einsum("dc,chw->dhw", inp.weight / np.sqrt(inp.channels), feat))
    return torch.stack(out)


def sg3_layer(layer, x, w):
    """§1.6 + §1.7, with the per-sample weight built explicitly."""
    k = layer.weight.shape[-1]
    s = fc(w, layer.affine)
    weight = layer.weight
    if layer.is_torgb:
        s = s / np.sqrt(layer.in_channels * k * k)
    else:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    wm = weight[None] * s[:, None, :, None, None]  # [N, O, I, k, k]
    if not layer.is_torgb:
        wm = wm * (wm.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    wm = wm * layer.magnitude_ema.rsqrt()
    y = torch.cat([F.conv2d(x[n : n + 1], wm[n], padding=k - 1) for n in range(x.shape[0])])
    y = y + layer.bias[None, :, None, None]  # before upsampling (§10 item 1)
    up = layer.up_factor
    y = upfirdn(y, layer.up_filter, up=up, pad=layer.padding, gain=up * up)
    slope, gain = (1, 1) if layer.is_torgb else (0.2, np.sqrt(2))
    y = torch.where(y >= 0, y, y * slope) * gain
    if layer.conv_clamp is not None:
        y = y.clamp(-layer.conv_clamp, layer.conv_clamp)
    return upfirdn(y, layer.down_filter, down=layer.down_factor)


def sg3_generator(G, z, c, psi, cutoff):
    ws = mapping(G.mapping, z, c, G.num_ws, psi, cutoff)
    x = sg3_input(G.synthesis.input, ws[:, 0])
    for i, name in enumerate(G.synthesis.layer_names):
        x = sg3_layer(getattr(G.synthesis, name), x, ws[:, i + 1])
    return x * 0.25


def _bias_act(x, b, lrelu, gain, clamp):
    x = x if b is None else x + b[None, :, None, None]
    x = (F.leaky_relu(x, 0.2) if lrelu else x) * gain
    return x if clamp is None else x.clamp(-clamp, clamp)


def sg2_conv(layer, x, w):
    """§1.10 conv0/conv1 with noise_mode='const'; conv0 = zero insertion, FIR x4, flipped-kernel conv."""
    wm = layer.weight[None] * fc(w, layer.affine)[:, None, :, None, None]
    wm = wm * (wm.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    out = []
    for n in range(x.shape[0]):
        if layer.up == 2:
            xn = upfirdn(x[n : n + 1], F4, up=2, pad=(3, 2, 3, 2), gain=4)
            out.append(F.conv2d(xn, wm[n].flip([2, 3])))
        else:
            out.append(F.conv2d(x[n : n + 1], wm[n], padding=1))
    y = torch.cat(out) + layer.noise_const * layer.noise_strength
    return _bias_act(y, layer.bias, True, np.sqrt(2), layer.conv_clamp)


def sg2_generator(G, z, c):
    ws = mapping(G.mapping, z, c, G.num_ws)
    img, k = None, 0
    for r in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{r}")
        if r == 4:
            x = sg2_conv(block.conv1, block.const[None].repeat(z.shape[0], 1, 1, 1), ws[:, 0])
            k = 1
        else:
            x = sg2_conv(block.conv1, sg2_conv(block.conv0, x, ws[:, k]), ws[:, k + 1])
            k += 2
        rgb = block.torgb
        s = fc(ws[:, k], rgb.affine) / np.sqrt(rgb.in_channels)
        y = torch.cat([F.conv2d(x[n : n + 1], rgb.weight * s[n][None, :, None, None]) for n in range(len(x))])
        y = _bias_act(y, rgb.bias, False, 1, rgb.conv_clamp)
        img = y if img is None else upfirdn(img, F4, up=2, pad=(2, 1, 2, 1), gain=4) + y
    return img


def d_conv(layer, x, gain=1.0):
    """§2.4/§3 Conv2dLayer: weight / sqrt(in k k); down-2 3x3: pad 2, FIR, stride 2; 1x1: FIR + decimate."""
    k = layer.weight.shape[-1]
    w = layer.weight / np.sqrt(layer.weight[0].numel())
    if layer.down == 2 and k == 3:
        x = F.conv2d(upfirdn(x, F4, pad=(2, 2, 2, 2)), w, stride=2)
    elif layer.down == 2:
        x = F.conv2d(upfirdn(x, F4, down=2, pad=(1, 1, 1, 1)), w)
    else:
        x = F.conv2d(x, w, padding=k // 2)
    lrelu = layer.activation == "lrelu"
    clamp = None if layer.conv_clamp is None else layer.conv_clamp * gain
    return _bias_act(x, layer.bias, lrelu, (np.sqrt(2) if lrelu else 1) * gain, clamp)


def discriminator(D, img, c, group_size):
    x = None
    for r in D.block_resolutions:
        block = getattr(D, f"b{r}")
        x = d_conv(block.fromrgb, img) if x is None else x
        x = d_conv(block.skip, x, np.sqrt(0.5)) + d_conv(block.conv1, d_conv(block.conv0, x), np.sqrt(0.5))
    n, _, h, w = x.shape
    g = min(group_size, n)
    std = torch.zeros(n)
    for i in range(n // g):
        members = [i + j * (n // g) for j in range(g)]  # strided groups (§10 item 17)
        std[members] = (x[members].var(0, unbiased=False) + 1e-8).sqrt().mean()
    x = torch.cat([x, std[:, None, None, None].expand(n, 1, h, w)], 1)
    x = fc(fc(d_conv(D.b4.conv, x).flatten(1), D.b4.fc, lrelu=True), D.b4.out)
    if D.c_dim > 0:
        cmap = mapping(D.mapping, None, c, None)
        x = (x * cmap).sum(1, keepdim=True) / np.sqrt(cmap.shape[1])
    return x


def _perturb(module, scale=0.3):
    torch.manual_seed(5)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module


@pytest.mark.parametrize("cfg", ["T", "R"])
def test_sg3_generator_matches_spec_transcription(tiny, cfg):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=3, conv_clamp=1, **tiny[cfg])
    G = _perturb(G)
    getattr(G.synthesis, G.synthesis.layer_names[-1]).conv_clamp = 0.4  # make the ToRGB clamp bite too
    with torch.no_grad():
        for i, name in enumerate(G.synthesis.layer_names):
            getattr(G.synthesis, name).magnitude_ema.fill_(0.4 + 0.1 * i)
        G.mapping.w_avg.normal_()
        G.synthesis.input.transform.copy_(torch.tensor([[1.3, 0.4, 0.1], [-0.3, 1.1, -0.05], [0, 0, 1]]))
        z, c = torch.randn(3, 8), torch.randn(3, 3)
        got = G(z, c, truncation_psi=0.6, truncation_cutoff=5, noise_mode="const")
        want = sg3_generator(G, z, c, 0.6, 5)
    # ToRGB clamps at +-0.4 before the x0.25 output scale (§1.8), and does so somewhere here.
    assert got.abs().max() == pytest.approx(0.1) and got.std() > 0.01
    torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-6)


def test_sg2_generator_matches_spec_transcription(tiny):
    torch.manual_seed(0)
    G = StyleGAN2Generator(
        z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=3, conv_clamp=4, **tiny["SG2"]
    )
    G = _perturb(G).eval()
    with torch.no_grad():
        z, c = torch.randn(3, 8), torch.randn(3, 3)
        want = sg2_generator(G, z, c)
        torch.testing.assert_close(G(z, c, noise_mode="const"), want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(G.train()(z, c, noise_mode="const"), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("c_dim,freeze", [(0, 0), (4, 3)])
def test_discriminator_matches_spec_transcription(tiny, c_dim, freeze):
    torch.manual_seed(0)
    D = Discriminator(
        c_dim=c_dim,
        img_resolution=16,
        img_channels=3,
        conv_clamp=0.5,
        block_kwargs={"freeze_layers": freeze},
        epilogue_kwargs={"mbstd_group_size": 2},
        **tiny["D"],
    )
    with torch.no_grad():
        for name, t in D.state_dict().items():
            if not name.endswith("resample_filter"):
                t.add_(torch.randn_like(t) * 0.3)
        img, c = torch.randn(6, 3, 16, 16) * 2, torch.randn(6, 4)
        torch.testing.assert_close(D(img, c), discriminator(D, img, c, 2), rtol=1e-4, atol=1e-5)


def test_layer_filter_buffers_match_spec_vectors():
    """§11.2 through the layers' buffers (channels do not enter the filters, so tiny widths suffice)."""
    crit = [0.02337425, 0.03444929, -0.0508807, -0.07861523, 0.13961044, 0.43206194]
    G = Generator(
        z_dim=4, c_dim=0, w_dim=4, img_resolution=256, img_channels=3, channel_base=512, channel_max=2
    )
    names = G.synthesis.layer_names
    assert names == [s.name for s in synthesis_schedule(256, 3, channel_base=512, channel_max=2)["layers"]]
    L3, L12, L13 = (getattr(G.synthesis, names[i]) for i in (3, 12, 13))
    down3 = [1.3959712e-4, 6.6801887e-3, 3.3712786e-2, 8.9386232e-2, 1.5980484e-1, 2.1027637e-1]
    np.testing.assert_allclose(L3.down_filter[:6].numpy(), down3, rtol=2e-5, atol=2e-8)
    for f in (L12.down_filter, L13.up_filter, L13.down_filter):
        np.testing.assert_allclose(f[:6].numpy(), crit, rtol=2e-5)
    R = Generator(
        z_dim=4, c_dim=0, w_dim=4, img_resolution=256, img_channels=3, channel_base=512, channel_max=2,
        conv_kernel=1, use_radial_filters=True,
    )  # fmt: skip
    r0, r11 = (getattr(R.synthesis, R.synthesis.layer_names[i]).down_filter for i in (0, 11))
    np.testing.assert_allclose(
        [r0[5, 5], r0[0, 0], r0[5, 0]], [0.038754884, 8.4120967e-7, 2.0526213e-4], rtol=1e-4
    )
    np.testing.assert_allclose(
        [r11[5, 5], r11[0, 0], r11[5, 0], r11[2, 3]],
        [0.09437117, 8.542366e-4, -3.0122146e-3, -7.4326457e-3],
        rtol=1e-5,
    )
    G1024 = Generator(
        z_dim=4, c_dim=0, w_dim=4, img_resolution=1024, img_channels=3, channel_base=2048, channel_max=2
    )
    L2, L12k = (getattr(G1024.synthesis, G1024.synthesis.layer_names[i]) for i in (2, 12))
    up2 = [-0.00033991, -0.00029957, 0.00087359, 0.00421339, 0.01076619, 0.021245]
    np.testing.assert_allclose(L2.up_filter[:6].numpy(), up2, rtol=2e-5, atol=2e-8)
    down2 = [0.00052986, 0.00839137, 0.03629095, 0.09081732, 0.15813473, 0.20583576]
    np.testing.assert_allclose(L2.down_filter[:6].numpy(), down2, rtol=2e-5, atol=2e-8)
    up12 = [-0.00844171, -0.02586254, -0.01660515, 0.06022611, 0.19210461, 0.29857868]
    np.testing.assert_allclose(L12k.up_filter[:6].numpy(), up12, rtol=2e-5)
