"""StyleGAN2 generator: keys (spec §11.4), num_ws, noise modes, shared ws, conditioning (spec §1.10)."""

from __future__ import annotations

import pytest
import torch

from sg3.modules.stylegan2 import Generator


def test_state_dict_keys_32_match_spec():
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=32, img_channels=3)
    sd = G.state_dict()
    assert len(sd) == 87
    conv = [
        "weight",
        "noise_strength",
        "bias",
        "resample_filter",
        "noise_const",
        "affine.weight",
        "affine.bias",
    ]
    torgb = ["weight", "bias", "affine.weight", "affine.bias"]
    expected = ["synthesis.b4.const", "synthesis.b4.resample_filter"]
    expected += [f"synthesis.b4.conv1.{k}" for k in conv] + [f"synthesis.b4.torgb.{k}" for k in torgb]
    for r in (8, 16, 32):
        expected += [f"synthesis.b{r}.resample_filter"]
        expected += [f"synthesis.b{r}.conv{i}.{k}" for i in (0, 1) for k in conv]
        expected += [f"synthesis.b{r}.torgb.{k}" for k in torgb]
    expected += ["mapping.w_avg"] + [f"mapping.fc{i}.{k}" for i in range(8) for k in ("weight", "bias")]
    assert list(sd) == expected
    assert sd["synthesis.b4.const"].shape == (512, 4, 4)
    assert sd["synthesis.b8.conv0.noise_const"].shape == (8, 8)
    assert sd["synthesis.b4.conv1.noise_strength"].shape == ()
    assert sd["synthesis.b32.torgb.weight"].shape == (3, 512, 1, 1)
    torch.testing.assert_close(sd["synthesis.b4.resample_filter"][0], torch.tensor([1.0, 3, 3, 1]) / 64)
    assert [getattr(G.synthesis, f"b{r}").use_fp16 for r in (4, 8, 16, 32)] == [False, True, True, True]


@pytest.mark.parametrize("res,num_ws", [(16, 6), (32, 8), (64, 10), (256, 14)])
def test_num_ws_and_shapes(tiny, res, num_ws):
    kwargs = tiny["SG2"] if res <= 64 else dict(channel_base=256, channel_max=4)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3, **kwargs).eval()
    assert G.num_ws == num_ws and G.mapping.num_layers == 8
    with torch.no_grad():
        img = G(torch.randn(1, 8), None, noise_mode="const")
    assert img.shape == (1, 3, res, res) and img.dtype == torch.float32 and torch.isfinite(img).all()


def test_noise_modes_and_fused_modconv(tiny):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=4, w_dim=8, img_resolution=16, img_channels=1, **tiny["SG2"])
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    z, c = torch.randn(2, 8), torch.randn(2, 4)
    with torch.no_grad():
        G.eval()
        const = G(z, c, noise_mode="const")
        assert torch.equal(const, G(z, c, noise_mode="const"))
        assert not torch.allclose(G(z, c), G(z, c)), "noise_mode defaults to 'random'"
        none = G(z, c, noise_mode="none")
        assert not torch.allclose(none, const)
        G.train()  # 'inference_only' is not the default here; compare fused and unfused paths explicitly
        unfused = G(z, c, noise_mode="const", fused_modconv=False)
        fused = G(z, c, noise_mode="const", fused_modconv=True)
    torch.testing.assert_close(unfused, fused, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused, const)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, c, noise_mode="loud")


def test_torgb_shares_w_with_next_conv0(tiny):
    """ws[:, 1] drives b4.torgb and b8.conv0 (spec §1.10): changing only it changes both."""
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, **tiny["SG2"]).eval()
    seen = {}
    hooks = [
        getattr(G.synthesis, blk)
        .get_submodule(layer)
        .register_forward_hook(
            lambda m, args, out, key=f"{blk}.{layer}": seen.__setitem__(key, args[1].clone())
        )
        for blk, layer in [
            ("b4", "torgb"),
            ("b8", "conv0"),
            ("b8", "conv1"),
            ("b8", "torgb"),
            ("b16", "conv0"),
        ]
    ]
    ws = torch.randn(1, 6, 8)
    with torch.no_grad():
        G.synthesis(ws, noise_mode="none")
    for h in hooks:
        h.remove()
    assert torch.equal(seen["b4.torgb"], ws[:, 1]) and torch.equal(seen["b8.conv0"], ws[:, 1])
    assert torch.equal(seen["b8.conv1"], ws[:, 2])
    assert torch.equal(seen["b8.torgb"], ws[:, 3]) and torch.equal(seen["b16.conv0"], ws[:, 3])


def test_round_trip_and_init_kwargs(tiny):
    kwargs = dict(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs={"num_layers": 2}
    )
    G = Generator(**kwargs, fused_modconv_default="inference_only", **tiny["SG2"])
    assert G.init_kwargs["fused_modconv_default"] == "inference_only" and G.mapping.num_layers == 2
    G2 = Generator(**G.init_kwargs).eval()
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    G2.load_state_dict(G.state_dict(), strict=True)
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(G.eval()(z, None, noise_mode="const"), G2(z, None, noise_mode="const"))
    with pytest.raises(ValueError, match="architecture"):
        Generator(**kwargs, architecture="resnet")
    with pytest.raises(ValueError, match="channel_base=64 gives 0 channels"):
        Generator(**{**kwargs, "img_resolution": 128}, channel_base=64)
