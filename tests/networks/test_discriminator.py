"""Discriminator: keys (spec §11.4), Freeze-D, minibatch-std grouping, conditioning, gradients (spec §3)."""

from __future__ import annotations

import pytest
import torch

from sg3.modules.discriminator import Discriminator, MinibatchStdLayer

CONV = ["weight", "bias", "resample_filter"]


def _block_keys(r, first, frozen=()):
    keys = [f"b{r}.resample_filter"]
    for layer in (["fromrgb"] if first else []) + ["conv0", "conv1"]:
        order = ["resample_filter", "weight", "bias"] if layer in frozen else CONV
        keys += [f"b{r}.{layer}.{k}" for k in order]
    return keys + [f"b{r}.skip.weight", f"b{r}.skip.resample_filter"]


def test_keys_unconditional_32():
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3)
    sd = D.state_dict()
    expected = _block_keys(32, True) + _block_keys(16, False) + _block_keys(8, False)
    expected += [f"b4.conv.{k}" for k in CONV] + [
        "b4.fc.weight",
        "b4.fc.bias",
        "b4.out.weight",
        "b4.out.bias",
    ]
    assert list(sd) == expected and len(sd) == 37
    shapes = {
        "b32.fromrgb.weight": (512, 3, 1, 1),
        "b32.conv0.weight": (512, 512, 3, 3),
        "b32.skip.weight": (512, 512, 1, 1),
        "b4.conv.weight": (512, 513, 3, 3),
        "b4.fc.weight": (512, 8192),
        "b4.out.weight": (1, 512),
        "b4.out.bias": (1,),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key


def test_keys_conditional_freezed_2():
    D = Discriminator(c_dim=10, img_resolution=32, img_channels=3, block_kwargs={"freeze_layers": 2})
    sd = D.state_dict()
    expected = (
        _block_keys(32, True, frozen=("fromrgb", "conv0")) + _block_keys(16, False) + _block_keys(8, False)
    )
    expected += ["mapping.embed.weight", "mapping.embed.bias"]
    expected += [f"mapping.fc{i}.{k}" for i in range(8) for k in ("weight", "bias")]
    expected += [f"b4.conv.{k}" for k in CONV] + [
        "b4.fc.weight",
        "b4.fc.bias",
        "b4.out.weight",
        "b4.out.bias",
    ]
    assert list(sd) == expected and len(sd) == 55
    assert sd["mapping.embed.weight"].shape == (512, 10) and sd["b4.out.weight"].shape == (512, 512)
    trainable = {n for n, _ in D.named_parameters()}
    assert "b32.conv0.weight" not in trainable and "b32.fromrgb.bias" not in trainable
    assert "b32.conv1.weight" in trainable and "b32.skip.weight" in trainable
    assert D.init_kwargs["block_kwargs"] == {"freeze_layers": 2}


def test_frozen_layers_get_no_gradient_and_forward_works(tiny):
    D = Discriminator(
        c_dim=3, img_resolution=16, img_channels=3, block_kwargs={"freeze_layers": 3}, **tiny["D"]
    )
    img = torch.randn(4, 3, 16, 16, requires_grad=True)
    logits = D(img, torch.randn(4, 3))
    assert logits.shape == (4, 1) and logits.dtype == torch.float32
    logits.sum().backward()
    assert D.b16.conv1.weight.requires_grad is False and D.b16.conv1.weight.grad is None
    assert D.b16.skip.weight.grad is not None and D.b8.conv0.weight.grad.abs().sum() > 0
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_r1_double_backward(tiny):
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=1, **tiny["D"])
    img = torch.randn(2, 1, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(D(img, None).sum(), img, create_graph=True)
    penalty = grad.square().sum()
    penalty.backward()
    assert D.b16.conv0.weight.grad.abs().sum() > 0


def test_minibatch_std_is_strided():
    x = torch.randn(6, 4, 2, 2)
    y = MinibatchStdLayer(group_size=2)(x)
    assert y.shape == (6, 5, 2, 2)
    for n in range(3):  # samples n and n + 3 form a group
        pair = torch.stack([x[n], x[n + 3]])
        std = (pair.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(y[n, 4], std.expand(2, 2))
        torch.testing.assert_close(y[n + 3, 4], std.expand(2, 2))
    with pytest.raises(ValueError, match="divisible"):
        MinibatchStdLayer(group_size=4)(torch.randn(6, 4, 2, 2))


def test_mbstd_group_size_kwarg_and_checks(tiny):
    D = Discriminator(
        c_dim=0, img_resolution=16, img_channels=3, epilogue_kwargs={"mbstd_group_size": 2}, **tiny["D"]
    )
    assert D.b4.mbstd.group_size == 2
    assert D(torch.randn(2, 3, 16, 16), None).shape == (2, 1)
    with pytest.raises(ValueError, match="img must be"):
        D(torch.randn(2, 3, 32, 32), None)
    with pytest.raises(ValueError, match="architecture"):
        Discriminator(c_dim=0, img_resolution=16, img_channels=3, architecture="skip")
    with pytest.raises(ValueError, match="img_resolution"):
        Discriminator(c_dim=0, img_resolution=24, img_channels=3)


def test_conditional_projection(tiny):
    D = Discriminator(c_dim=4, img_resolution=16, img_channels=3, **tiny["D"])
    assert D.mapping.num_layers == 8 and not hasattr(D.mapping, "w_avg")
    img = torch.randn(4, 3, 16, 16)
    c = torch.eye(4)
    with torch.no_grad():
        a, b = D(img, c), D(img, c.flip(0))
        x = None
        for res in D.block_resolutions:
            x, _ = getattr(D, f"b{res}")(x, img if x is None else None)
        h = D.b4.fc(D.b4.conv(D.b4.mbstd(x)).flatten(1))
        cmap = D.mapping(None, c)
        expected = (D.b4.out(h) * cmap).sum(1, keepdim=True) / cmap.shape[1] ** 0.5
    torch.testing.assert_close(a, expected)
    assert not torch.allclose(a, b)
