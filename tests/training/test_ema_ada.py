"""G_ema update rule and the ADA p controller (spec 5.1, 5.4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sg3.training.ada import AdaController
from sg3.training.derive import ema_beta
from sg3.training.ema import update_ema


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.register_buffer("b", torch.zeros(2))


def test_update_ema_lerps_params_and_copies_buffers():
    G, G_ema = Tiny(), Tiny()
    with torch.no_grad():
        G.w.fill_(1.0)
        G.b.fill_(5.0)
    update_ema(G_ema, G, 0.75)
    assert torch.allclose(G_ema.w, torch.full([3], 0.25))
    assert torch.equal(G_ema.b, torch.full([2], 5.0))
    update_ema(G_ema, G, 0.0)
    assert torch.equal(G_ema.w, G.w)
    with pytest.raises(ValueError, match="beta=1.5"):
        update_ema(G_ema, G, 1.5)


def test_ema_rampup_sequence_matches_formula():
    # batch 32, ema_kimg 10, rampup 0.05: half-life min(10000, 0.05 * cur_nimg) images.
    G, G_ema = Tiny(), Tiny()
    expected = torch.zeros(3)
    cur = 0
    for step in range(5):
        with torch.no_grad():
            G.w.fill_(float(step + 1))
        beta = ema_beta(32, cur, 10, 0.05)
        assert beta == pytest.approx(0.0 if cur == 0 else 0.5 ** (32 / (0.05 * cur)))
        expected = G.w.detach() + beta * (expected - G.w.detach())
        update_ema(G_ema, G, beta)
        cur += 32
    assert torch.allclose(G_ema.w, expected)
    assert 4 < float(G_ema.w[0].detach()) < 5  # lags behind G, but not by much early in training


def test_ada_moves_p_up_when_d_overfits_and_down_otherwise():
    ada = AdaController(target=0.6, interval=4, adjust=0.01)
    p = torch.zeros([])
    for step in range(1, 9):  # D confidently right on reals: r_t = 1 > 0.6
        ada.accumulate(torch.ones(8, 1))
        ada.step(step, p)
    assert float(p) == pytest.approx(0.02)
    assert float(ada.last_rt) == 1.0
    for step in range(9, 13):  # r_t = 0.5 - 0.5 = 0 < 0.6
        ada.accumulate(torch.tensor([[1.0], [-1.0]]))
        ada.step(step, p)
    assert float(p) == pytest.approx(0.01)
    for step in range(13, 25):  # keeps going down and is clamped at zero
        ada.accumulate(-torch.ones(4, 1))
        ada.step(step, p)
    assert float(p) == 0.0


def test_ada_uses_reduced_statistics_and_only_every_interval():
    ada = AdaController(target=0.6, interval=4, adjust=0.5)
    p = torch.zeros([])
    ada.accumulate(-torch.ones(4, 1))  # this rank: r_t = -1 ...
    assert not ada.step(3, p)  # not an adjustment step
    # ... but the other ranks were all positive: the sum decides.
    assert ada.step(4, p, all_reduce=lambda t: t + torch.tensor([12.0, 12.0], dtype=t.dtype))
    assert float(ada.last_rt) == pytest.approx(8 / 16)
    assert float(p) == 0.0  # 0.5 < 0.6: down, clamped
    ada.accumulate(torch.ones(4, 1))
    assert ada.step(8, p) and float(p) == 0.5
    assert torch.equal(ada.stats, torch.zeros(2, dtype=torch.float64))  # reset after each decision
    assert ada.step(12, p) and float(p) == 0.5 and float(ada.last_rt) == 1.0  # no signs seen: unchanged


def test_ada_state_round_trips_through_state_dict():
    ada = AdaController(0.6, 4, 0.01)
    ada.accumulate(torch.ones(3))
    other = AdaController(0.6, 4, 0.01)
    other.load_state_dict(ada.state_dict())
    assert torch.equal(other.stats, torch.tensor([3.0, 3.0], dtype=torch.float64))
    assert "_extra_state" in ada.state_dict() and not list(ada.buffers())  # DDP must not broadcast them


def test_ada_accumulates_on_the_logits_device():
    # The sums follow D's logits to their device with no CPU tensor mixed in (on CUDA that mix raised in
    # the first GPU run). The 'meta' device stands in for a GPU here: it refuses CPU operands the same way.
    ada = AdaController(adjust=0.1)
    ada.accumulate(torch.randn([4, 1], device="meta"))
    ada.accumulate(torch.randn([4, 1], device="meta"))
    assert ada.stats.device.type == "meta" and ada.stats.shape == (2,)
    # The adjustment never reads a value back to the host (a meta tensor has none to read).
    p = torch.zeros([], device="meta")
    assert ada.step(4, p) and p.device.type == "meta" and ada.last_rt.device.type == "meta"
    cpu = AdaController(adjust=0.1)
    cpu.accumulate(torch.tensor([[1.0], [-2.0], [3.0]]))
    assert cpu.stats.tolist() == [1.0, 3.0]
