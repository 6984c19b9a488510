"""StyleGAN3 generator: shapes, num_ws, conditioning, truncation, EMAs, init order, keys (spec §1, §8.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sg3.modules.generator import Generator, MappingNetwork
from sg3.modules.synthesis import SynthesisNetwork


@pytest.mark.parametrize(
    "res,cfg,channels",
    [(16, "T", 3), (32, "R", 1), (64, "T", 4), (128, "R", 3), (256, "T", 3)],
)
def test_shapes_dtypes_num_ws(tiny, res, cfg, channels):
    kwargs = dict(channel_base=256, channel_max=4) if res >= 128 else (tiny["T"] if cfg == "T" else tiny["R"])
    if cfg == "R":
        kwargs = {**kwargs, "conv_kernel": 1, "use_radial_filters": True}
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=channels, **kwargs)
    assert G.num_ws == G.synthesis.num_ws == 16
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (8, 0, 8, res, channels)
    assert G.mapping.w_avg.shape == (8,) and torch.equal(G.synthesis.input.transform, torch.eye(3))
    with torch.no_grad():
        img = G(torch.randn(1, 8), None)
    assert img.shape == (1, channels, res, res) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and img.abs().max() > 0


def test_conditional_and_input_checks(tiny):
    G = Generator(z_dim=8, c_dim=5, w_dim=8, img_resolution=16, img_channels=3, **tiny["T"])
    z, c = torch.randn(2, 8), torch.nn.functional.one_hot(torch.tensor([1, 3]), 5).float()
    with torch.no_grad():
        img = G(z, c)
        other = G(z, c.flip(0))
    assert img.shape == (2, 3, 16, 16)
    assert not torch.allclose(img, other), "the label must change the image"
    assert list(G.state_dict())[G.state_dict().__len__() - 7 :][:3] == [
        "mapping.w_avg",
        "mapping.embed.weight",
        "mapping.embed.bias",
    ]
    with pytest.raises(ValueError, match=r"c must be \[N, 5\]"):
        G(z, None)
    with pytest.raises(ValueError, match=r"z must be \[N, 8\]"):
        G(torch.randn(2, 7), c)
    with pytest.raises(ValueError, match=r"ws must be \[N, 16, 8\]"):
        G.synthesis(torch.randn(2, 15, 8))
    with pytest.raises(ValueError, match="z_dim"):
        Generator(z_dim=0, c_dim=0, w_dim=8, img_resolution=16, img_channels=3)


def test_truncation_psi_and_cutoff(tiny):
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, **tiny["T"])
    G.mapping.w_avg.copy_(torch.linspace(-1, 1, 8))
    z = torch.randn(3, 8)
    with torch.no_grad():
        ws = G.mapping(z, None)
        assert torch.equal(G.mapping(z, None, truncation_psi=1), ws)
        full = G.mapping(z, None, truncation_psi=0.5)
        torch.testing.assert_close(full, G.mapping.w_avg + 0.5 * (ws - G.mapping.w_avg))
        cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=8)
        torch.testing.assert_close(cut[:, :8], full[:, :8])
        assert torch.equal(cut[:, 8:], ws[:, 8:])
        zero = G(z, None, truncation_psi=0)
    assert torch.allclose(zero[0], zero[1], atol=1e-6), "psi=0 maps every z to w_avg"


def test_update_emas_only_when_asked(tiny):
    G = Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, magnitude_ema_beta=0.5, **tiny["T"]
    )
    z = torch.randn(2, 8)
    with torch.no_grad():
        G(z, None)
        assert torch.equal(G.mapping.w_avg, torch.zeros(8))
        assert all(getattr(G.synthesis, n).magnitude_ema.item() == 1 for n in G.synthesis.layer_names)
        ws = G.mapping(z, None)
        G(z, None, update_emas=True)
    torch.testing.assert_close(G.mapping.w_avg, ws[:, 0].mean(0) * (1 - 0.998))
    x0 = G.synthesis.input(ws[:, 0])
    torch.testing.assert_close(G.synthesis.L0_36_16.magnitude_ema, 0.5 * x0.square().mean() + 0.5)


def test_init_rng_order_synthesis_then_mapping(tiny):
    torch.manual_seed(123)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, **tiny["T"])
    torch.manual_seed(123)
    g = torch.randn([16, 2])  # input freqs are the very first draw
    r = g.square().sum(1, keepdim=True).sqrt()
    torch.testing.assert_close(G.synthesis.input.freqs, g / (r * r.square().exp().pow(0.25)) * 2)
    torch.testing.assert_close(G.synthesis.input.phases, torch.rand([16]) - 0.5)
    torch.testing.assert_close(G.synthesis.input.weight, torch.randn([16, 16]))
    assert torch.equal(G.synthesis.input.affine.weight, torch.zeros(4, 8))
    torch.testing.assert_close(G.synthesis.input.affine.bias, torch.tensor([1.0, 0, 0, 0]))
    torch.manual_seed(123)
    SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=3, **tiny["T"])
    mapping = MappingNetwork(z_dim=8, c_dim=0, w_dim=8, num_ws=16)
    torch.testing.assert_close(G.mapping.fc0.weight, mapping.fc0.weight)
    assert G.mapping.fc0.weight.std().item() == pytest.approx(100, rel=0.3), "weights stored / lr_multiplier"


def test_state_dict_keys_256_t_match_spec():
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3, channel_base=16384)
    sd = G.state_dict()
    assert len(sd) == 114
    keys = list(sd)
    assert keys[:6] == [
        "synthesis.input.weight",
        "synthesis.input.transform",
        "synthesis.input.freqs",
        "synthesis.input.phases",
        "synthesis.input.affine.weight",
        "synthesis.input.affine.bias",
    ]
    layer = ["weight", "bias", "magnitude_ema", "up_filter", "down_filter", "affine.weight", "affine.bias"]
    assert keys[6:13] == [f"synthesis.L0_36_512.{k}" for k in layer]
    assert keys[-5:] == [
        "mapping.w_avg",
        "mapping.fc0.weight",
        "mapping.fc0.bias",
        "mapping.fc1.weight",
        "mapping.fc1.bias",
    ]
    shapes = {
        "synthesis.L7_148_362.weight": (362, 512, 3, 3),
        "synthesis.L8_148_256.affine.weight": (362, 512),
        "synthesis.L14_256_3.weight": (3, 64, 1, 1),
        "synthesis.L3_52_512.up_filter": (24,),
        "synthesis.L3_52_512.down_filter": (12,),
        "synthesis.L0_36_512.magnitude_ema": (),
        "synthesis.input.freqs": (512, 2),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "synthesis.L14_256_3.up_filter" not in sd and "synthesis.L14_256_3.down_filter" not in sd
    np.testing.assert_allclose(
        sd["synthesis.L3_52_512.up_filter"][:6].numpy(),
        [-0.00163828, -0.00305529, -0.00371516, -0.00214536, 0.00331233, 0.01398208],
        rtol=1e-5,
    )
    layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
    assert [lay.use_fp16 for lay in layers] == [False] * 3 + [True] * 12


def test_state_dict_r_radial_filters_and_kernel(tiny):
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3, **tiny["R"])
    sd = G.state_dict()
    names = G.synthesis.layer_names
    assert all(sd[f"synthesis.{n}.weight"].shape[2:] == (1, 1) for n in names)
    assert [tuple(sd[f"synthesis.{n}.down_filter"].shape) for n in names[:-1]] == [(12, 12)] * 12 + [
        (12,)
    ] * 2


def test_state_dict_round_trip_and_init_kwargs(tiny):
    def kwargs() -> dict:  # fresh each time: what the constructor was given, however it treats its arguments
        return {
            "z_dim": 8,
            "c_dim": 3,
            "w_dim": 8,
            "img_resolution": 16,
            "img_channels": 3,
            "mapping_kwargs": {"num_layers": 3},
        }

    G = Generator(**kwargs(), **tiny["R"])
    assert G.init_kwargs == {**kwargs(), **tiny["R"]}
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        G.mapping.w_avg.normal_()
        G.synthesis.input.transform[0, 2] = 0.1
    G2 = Generator(**G.init_kwargs)
    G2.load_state_dict(G.state_dict(), strict=True)
    z, c = torch.randn(2, 8), torch.randn(2, 3)
    with torch.no_grad():
        assert torch.equal(G(z, c, truncation_psi=0.7), G2(z, c, truncation_psi=0.7))


def test_synthesis_input_vector():
    """Spec §11.3: fixed frequencies, phases, weights and affine bias -> known feature values."""
    from sg3.modules.synthesis import SynthesisInput

    layer = SynthesisInput(w_dim=4, channels=2, size=36, sampling_rate=16, bandwidth=2)
    with torch.no_grad():
        layer.freqs.copy_(torch.tensor([[1.5, 0.5], [-0.3, 1.2]]))
        layer.phases.copy_(torch.tensor([0.1, -0.2]))
        layer.weight.copy_(torch.tensor([[1.0, 0.5], [-0.5, 1.0]]))
        layer.affine.weight.zero_()
        layer.affine.bias.copy_(torch.tensor([2 * np.cos(np.pi / 6), 2 * np.sin(np.pi / 6), 0.2, -0.1]))
        out = layer(torch.zeros(1, 4))
        assert out.shape == (1, 2, 36, 36) and out.dtype == torch.float32
        expected = [-0.0577831, -0.3230556, -0.3654047, -0.1632025, 0.2154203, 0.6369397]
        torch.testing.assert_close(out[0, 0, 0, :6], torch.tensor(expected), atol=2e-6, rtol=0)
        got = [out[0, 1, 17, 17], out[0, 1, 0, 35], out[0, 1, 35, 0]]
        torch.testing.assert_close(
            torch.stack(got), torch.tensor([-0.4723789, -0.3612333, -0.4785832]), atol=2e-6, rtol=0
        )
        layer.transform.copy_(torch.diag(torch.tensor([1.5, 1.5, 1.0])))  # exercises the amplitude damping
        out = layer(torch.zeros(1, 4))
    expected = [-0.0393471, 0.5058175, 0.8706814, 0.7377501, 0.1688838, -0.4410765]
    torch.testing.assert_close(out[0, 0, 0, :6], torch.tensor(expected), atol=2e-6, rtol=0)
    assert out[0, 1, 17, 17].item() == pytest.approx(-0.4672902, abs=2e-6)


@pytest.mark.parametrize("res", [512, 1024])
def test_large_resolutions_build(res):
    """Construction only (no forward): sizes, paddings and num_ws at 512 and 1024 with tiny channels."""
    G = Generator(
        z_dim=4, c_dim=0, w_dim=4, img_resolution=res, img_channels=3, channel_base=2048, channel_max=2
    )
    layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
    assert G.num_ws == 16 and [int(lay.out_size[0]) for lay in layers[-2:]] == [res, res]
    assert layers[13].padding == [-11, -12, -11, -12] and layers[14].padding == [0, 0, 0, 0]
    assert layers[0].up_filter.shape == (12,) and layers[-1].up_filter is None
