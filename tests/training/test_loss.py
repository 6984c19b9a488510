"""Loss math with tiny stand-in networks (spec section 4)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sg3.training.loss import StyleGAN2Loss, blur_images


class StubMapping(nn.Module):
    def __init__(self, z_dim=4, num_ws=3, w_dim=5):
        super().__init__()
        self.num_ws, self.w_dim = num_ws, w_dim
        self.fc = nn.Linear(z_dim, w_dim)
        self.calls: list[bool] = []

    def forward(self, z, c, update_emas=False):
        self.calls.append(update_emas)
        return self.fc(z).unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]


class StubSynthesis(nn.Module):
    def __init__(self, num_ws=3, w_dim=5, res=8):
        super().__init__()
        self.res = res
        self.fc = nn.Linear(num_ws * w_dim, 3 * res * res)
        self.calls: list[bool] = []

    def forward(self, ws, update_emas=False):
        self.calls.append(update_emas)
        return self.fc(ws.flatten(1)).reshape(-1, 3, self.res, self.res)  # [N, 3, H, W]


class StubG(nn.Module):
    def __init__(self):
        super().__init__()
        self.z_dim = 4
        self.mapping, self.synthesis = StubMapping(), StubSynthesis()


class LinearD(nn.Module):
    """D(x) = sum(W * x^2 / 2 + V * x): dD/dx = W * x + V."""

    def __init__(self, res=8):
        super().__init__()
        self.W = nn.Parameter(torch.randn(3, res, res) * 0.1)
        self.V = nn.Parameter(torch.randn(3, res, res) * 0.1)

    def forward(self, img, c, update_emas=False):
        return (self.W * img.square() / 2 + self.V * img).sum([1, 2, 3]).unsqueeze(1)  # [N, 1]


def data(n=4):
    torch.manual_seed(0)
    return torch.randn(n, 3, 8, 8), torch.zeros(n, 0), torch.randn(n, 4), torch.zeros(n, 0)


def test_r1_penalty_and_its_gradient_match_closed_form():
    loss, D, G = StyleGAN2Loss(r1_gamma=4.0), LinearD(), StubG()
    real, real_c, z, c = data()
    stats = loss.accumulate_gradients("Dreg", G, D, None, real, real_c, z, c, gain=16, cur_nimg=0)
    grad_x = D.W.detach() * real + D.V.detach()  # [N, 3, 8, 8]
    penalty = grad_x.square().sum([1, 2, 3])
    assert torch.allclose(stats["Loss/r1_penalty"], penalty, rtol=1e-5)
    assert torch.allclose(stats["Loss/D/reg"], penalty * 2.0, rtol=1e-5)
    # d/dV of mean(gamma/2 * |W x + V|^2) * gain = gain * gamma * mean_n(W x_n + V)
    assert torch.allclose(D.V.grad, 16 * 4.0 * grad_x.mean(0), rtol=1e-4, atol=1e-6)
    assert "Loss/scores/fake" not in stats  # Dreg sees no fakes


def test_d_main_losses_and_ema_update_only_in_fake_pass():
    loss, D, G = StyleGAN2Loss(r1_gamma=1.0), LinearD(), StubG()
    real, real_c, z, c = data()
    stats = loss.accumulate_gradients("Dmain", G, D, None, real, real_c, z, c, gain=1, cur_nimg=0)
    fake_logits, real_logits = stats["Loss/scores/fake"], stats["Loss/scores/real"]
    expected = nn.functional.softplus(fake_logits) + nn.functional.softplus(-real_logits)
    assert torch.allclose(stats["Loss/D/loss"], expected)
    assert torch.equal(stats["Loss/signs/real"], real_logits.sign())
    assert G.mapping.calls == [True] and G.synthesis.calls == [True]
    G.mapping.calls.clear()
    G.synthesis.calls.clear()
    stats = loss.accumulate_gradients("Gmain", G, D, None, real, real_c, z, c, gain=1, cur_nimg=0)
    assert torch.allclose(stats["Loss/G/loss"], nn.functional.softplus(-stats["Loss/scores/fake"]))
    assert G.mapping.calls == [False] and G.synthesis.calls == [False]
    assert G.synthesis.fc.weight.grad is not None and G.synthesis.fc.weight.grad.abs().sum() > 0


def test_switched_off_phases_do_nothing():
    loss, D, G = StyleGAN2Loss(r1_gamma=0.0, pl_weight=0.0), LinearD(), StubG()
    real, real_c, z, c = data()
    assert loss.accumulate_gradients("Dreg", G, D, None, real, real_c, z, c, 16, 0) == {}
    assert loss.accumulate_gradients("Greg", G, D, None, real, real_c, z, c, 4, 0) == {}
    stats = loss.accumulate_gradients("Dboth", G, D, None, real, real_c, z, c, 1, 0)
    assert "Loss/r1_penalty" not in stats and "Loss/D/loss" in stats
    with pytest.raises(ValueError, match="phase='Dfoo'"):
        loss.accumulate_gradients("Dfoo", G, D, None, real, real_c, z, c, 1, 0)


def test_path_length_updates_running_mean():
    loss, G = StyleGAN2Loss(pl_weight=2.0, pl_decay=0.01), StubG()
    _, _, z, c = data(8)
    stats = loss.gen_pl(G, z, c, gain=4)
    assert stats["Loss/pl_penalty"].shape == (4,)  # batch // pl_batch_shrink
    # pl_mean = lerp(0, mean(lengths), 0.01) and penalty = (lengths - pl_mean)^2
    lengths_mean = float(loss.pl_mean) / 0.01
    assert lengths_mean > 0
    assert G.synthesis.fc.weight.grad is not None and G.synthesis.fc.weight.grad.abs().sum() > 0


def test_style_mixing_takes_a_suffix_from_a_second_latent():
    torch.manual_seed(1)
    loss, G = StyleGAN2Loss(style_mixing_prob=1.0), StubG()
    _, _, z, c = data()
    _, ws = loss.run_G(G, z, c)
    own = G.mapping.fc(z)
    same = torch.isclose(ws, own.unsqueeze(1)).all(2).all(0)  # [num_ws]
    cutoff = int((~same).nonzero()[0])
    assert 1 <= cutoff < 3 and same[:cutoff].all() and not same[cutoff:].any()
    assert G.mapping.calls == [False, False]


def test_blur_uses_base_two_taps_and_fades_out():
    sigma = 1.0
    img = torch.zeros(1, 1, 15, 15)
    img[0, 0, 7, 7] = 1
    out = blur_images(img, sigma)
    k = torch.arange(-3, 4, dtype=torch.float32)
    taps = torch.pow(2.0, -(k / sigma).square())
    taps = taps / taps.sum()
    assert torch.allclose(out[0, 0, 4:11, 4:11], taps[:, None] * taps[None, :], atol=1e-6)
    assert torch.equal(blur_images(img, 0.3), img)  # floor(0.9) = 0 taps each side: no blur
    loss = StyleGAN2Loss(blur_init_sigma=10, blur_fade_kimg=200)
    assert loss.blur_sigma(0) == 10 and loss.blur_sigma(100_000) == 5 and loss.blur_sigma(300_000) == 0
    assert math.isclose(StyleGAN2Loss(blur_init_sigma=10).blur_sigma(0), 0)


def test_blur_precedes_d_in_every_evaluation_including_r1():
    """Spec 4: reals and fakes are blurred before D (and before the augment pipe), also inside R1."""
    loss, D, G = StyleGAN2Loss(r1_gamma=2.0, blur_init_sigma=2, blur_fade_kimg=1), LinearD(), StubG()
    real, real_c, z, c = data()
    assert loss.blur_sigma(0) == 2
    stats = loss.accumulate_gradients("Dboth", G, D, None, real, real_c, z, c, gain=1, cur_nimg=0)
    with torch.no_grad():
        fake = G.synthesis(G.mapping(z, c))
        torch.testing.assert_close(stats["Loss/scores/real"], D(blur_images(real, 2), real_c))
        torch.testing.assert_close(stats["Loss/scores/fake"], D(blur_images(fake, 2), c))
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(blur_images(x, 2), real_c).sum(), [x])
    torch.testing.assert_close(stats["Loss/r1_penalty"], grad.square().sum([1, 2, 3]))
    gen = loss.accumulate_gradients("Gmain", G, D, None, real, real_c, z, c, gain=1, cur_nimg=0)
    torch.testing.assert_close(gen["Loss/scores/fake"], stats["Loss/scores/fake"])
    no_blur = loss.accumulate_gradients("Dmain", G, D, None, real, real_c, z, c, gain=1, cur_nimg=1000)
    torch.testing.assert_close(no_blur["Loss/scores/real"], D(real, real_c).detach())  # faded out at 1 kimg


def test_path_length_penalty_uses_the_updated_non_detached_mean():
    """Spec 4: penalty (len - pl_mean)^2 with pl_mean = lerp(old, mean(len), decay) kept in the graph."""
    torch.manual_seed(5)
    G = StubG()
    _, _, z, c = data(8)
    loss = StyleGAN2Loss(pl_weight=2.0, pl_decay=0.3)
    loss.pl_mean.fill_(0.7)
    torch.manual_seed(9)
    stats = loss.gen_pl(G, z, c, gain=4)
    got = G.synthesis.fc.weight.grad.clone()

    def manual(detach: bool) -> torch.Tensor:
        G.zero_grad(set_to_none=True)
        torch.manual_seed(9)
        ws = G.mapping(z[:4], c[:4])
        img = G.synthesis(ws)
        noise = torch.randn_like(img) / math.sqrt(8 * 8)
        (g,) = torch.autograd.grad((img * noise).sum(), [ws], create_graph=True)
        lengths = g.square().sum(2).mean(1).sqrt()
        mean = 0.7 + 0.3 * (lengths.mean() - 0.7)
        penalty = (lengths - (mean.detach() if detach else mean)).square()
        (penalty * 2.0).mean().mul(4).backward()
        manual.mean = mean.detach()
        return penalty.detach()

    penalty = manual(detach=False)
    torch.testing.assert_close(stats["Loss/pl_penalty"], penalty)
    torch.testing.assert_close(got, G.synthesis.fc.weight.grad)
    assert float(loss.pl_mean) == pytest.approx(float(manual.mean))  # the stored, detached copy
    manual(detach=True)
    assert not torch.allclose(got, G.synthesis.fc.weight.grad)  # the test tells the two apart
