"""One step of every phase on CPU with tiny networks, R1 through ADA, accumulation, non-finite grads."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from training_helpers import reals, tiny_module


def grads_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


def test_one_training_step_runs_every_sg3_phase():
    module = tiny_module()
    G0, D0 = copy.deepcopy(module.G.state_dict()), copy.deepcopy(module.D.state_dict())
    w_avg0 = module.G.mapping.w_avg.clone()
    module.training_step(reals(), 0)  # batch_idx 0: Gmain, Dmain and Dreg all run
    assert module.cur_nimg == 4 and module.batch_idx == 1 and module.cur_tick == 1
    changed = lambda before, net: [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert "mapping.fc0.weight" in changed(G0, module.G)
    assert any(k.endswith("weight") for k in changed(D0, module.D))
    assert not torch.equal(module.G.mapping.w_avg, w_avg0)  # only the D fake pass updates w_avg
    for k, v in module.G_ema.state_dict().items():  # step 0: beta = 0, G_ema = G
        assert torch.equal(v, module.G.state_dict()[k]), k
    stats = module.tick_info["stats"]
    for name in ("Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty", "Loss/scores/real", "Loss/scores/fake"):
        assert stats[name]["num"] > 0 and torch.isfinite(torch.tensor(stats[name]["mean"])), name
    assert module.tick_info["scalars"]["Progress/kimg"] == pytest.approx(0.004)


def test_r1_through_active_augmentation_is_twice_differentiable():
    module = tiny_module(["augment=fixed", "augment.p=1.0"])
    assert float(module.augment_pipe.p) == 1.0
    module.D.requires_grad_(True)
    img = module.split_reals(reals())[0][0]
    stats = module.loss.accumulate_gradients(
        "Dreg", module.G, module.D, module.augment_pipe, img, torch.zeros(4, 0), torch.randn(4, 32),
        torch.zeros(4, 0), gain=16, cur_nimg=0,
    )  # fmt: skip
    grads = grads_of(module.D)
    assert stats["Loss/r1_penalty"].shape == (4,) and (stats["Loss/r1_penalty"] > 0).all()
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0


def test_stylegan2_path_length_phase_step():
    module = tiny_module(["model=stylegan2", "model.z_dim=16", "model.w_dim=16", "model.cbase=512",
                          "model.cmax=16", "model.map_depth=2", "augment=none"])  # fmt: skip
    assert [p for p, _ in module.derived["phases"]] == ["Gmain", "Greg", "Dmain", "Dreg"]
    module.training_step(reals(), 0)
    stats = module.tick_info["stats"]
    assert stats["Loss/pl_penalty"]["num"] == 2 and float(module.loss.pl_mean) > 0


class LinMapping(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 8)

    def forward(self, z, c, update_emas=False):
        return self.fc(z).unsqueeze(1)  # [N, 1, 8]


class LinSynthesis(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3 * 16 * 16)

    def forward(self, ws, update_emas=False):
        return self.fc(ws[:, 0]).reshape(-1, 3, 16, 16)  # [N, 3, 16, 16]


class LinG(nn.Module):
    z_dim = 32

    def __init__(self):
        super().__init__()
        self.mapping, self.synthesis = LinMapping(), LinSynthesis()


class LinD(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 1)

    def forward(self, img, c, update_emas=False):
        return self.fc(img.flatten(1))  # [N, 1]


def test_gradient_accumulation_sums_chunks_like_one_large_batch():
    """batch_gpu=2 over 4 images gives 2x the gradient of one chunk of 4 (spec 5.1: chunk losses are summed).

    Stand-in networks keep samples independent (the real D's minibatch-std couples them)."""
    torch.manual_seed(3)
    G, D = LinG(), LinD()
    results = []
    for extra in ([], ["batch_gpu=2"]):
        extra = ["model.mbstd_group=2", *extra]
        m = tiny_module(["augment=none", *extra])
        m.G, m.D = copy.deepcopy(G), copy.deepcopy(D)
        chunks = m.split_reals(reals())
        assert len(chunks) == (2 if len(extra) == 2 else 1)
        for phase, opt in (("Dmain", torch.optim.SGD(m.D.parameters(), lr=0.0)),
                           ("Dreg", torch.optim.SGD(m.D.parameters(), lr=0.0)),
                           ("Gmain", torch.optim.SGD(m.G.parameters(), lr=0.0))):  # fmt: skip
            torch.manual_seed(7)  # same z for both runs
            m._run_phase(phase, 16 if phase == "Dreg" else 1, chunks, opt)
            results.append(grads_of(m.G if phase == "Gmain" else m.D))
    big, small = results[:3], results[3:]
    for b, s in zip(big, small):
        assert b.keys() == s.keys() and b
        for k in b:
            torch.testing.assert_close(s[k], 2 * b[k], rtol=1e-4, atol=1e-7)


def test_nonfinite_gradients_are_replaced_and_counted():
    module = tiny_module()
    p = module.D.b4.out.weight
    p.grad = torch.full_like(p, float("nan"))
    p.grad[0, 0] = float("inf")
    count = module._finish_grads(module.D)
    assert int(count) == p.numel()
    assert torch.isfinite(p.grad).all() and float(p.grad[0, 0]) == 1e5 and float(p.grad[0, 1]) == 0


def test_batch_size_mismatch_is_reported():
    module = tiny_module()
    with pytest.raises(ValueError, match="batch of 3 images, expected batch/processes = 4"):
        module.split_reals(reals(3))


def test_phase_schedule_gains_and_ada_signs_from_dmain_and_dreg():
    """Spec 5.1: G and Dmain every step, Dreg at batch 0, 16, 32 ... with gain 16. Spec 5.4: ADA's r_t also
    counts the real signs of the Dreg phase; p moves every 4 steps by batch * 4 / (ada_kimg * 1000)."""
    module = tiny_module(["augment.p=0.5", "augment.kimg=1"])  # adjust = 4 * 4 / 1000
    calls = []

    def record(phase, G, D, augment_pipe, real_img, real_c, z, c, gain, cur_nimg, backward=None):
        calls.append((module.batch_idx, phase, gain, cur_nimg))
        n = {"Dmain": 4, "Dreg": 8}.get(phase)  # Dmain: D right on 4 reals; Dreg: wrong on 8
        return {} if n is None else {"Loss/signs/real": torch.full([n, 1], 1.0 if phase == "Dmain" else -1.0)}

    module.loss.accumulate_gradients = record
    for _ in range(17):
        module.training_step(reals(), module.batch_idx)
    assert [c[1] for c in calls[:3]] == ["Gboth", "Dmain", "Dreg"]  # Gboth: no lazy G reg (SG3)
    assert [c for c in calls if c[1] == "Dreg"] == [(0, "Dreg", 16, 0), (16, "Dreg", 16, 64)]
    assert [c[0] for c in calls if c[1] == "Gboth"] == list(range(17))
    assert [c[0] for c in calls if c[1] == "Dmain"] == list(range(17))
    assert all(c[2] == 1 for c in calls if c[1] != "Dreg")
    # Steps 0-3: r_t = (16 - 8) / 24 < 0.6 (decided by the Dreg signs): p goes down one step; steps 4-15:
    # r_t = 1, three steps up.
    step = 4 * 4 / 1000
    assert float(module.augment_pipe.p) == pytest.approx(0.5 - step + 3 * step)
    assert float(module.ada.last_rt) == 1.0
    assert float(module.ada.stats[1]) == 4 + 8  # step 16's Dmain and Dreg signs wait for the next decision
