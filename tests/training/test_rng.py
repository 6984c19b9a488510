"""Per-rank RNG states in checkpoints: tensor round trip, each rank restores its own entry."""

from __future__ import annotations

import random

import numpy as np
import torch

from sg3.training.rng import (
    gather_rng_states,
    restore_rank_rng,
    rng_from_tensors,
    rng_state,
    rng_to_tensors,
)


def draws() -> tuple[float, ...]:
    """Numbers from each generator, the cached Gaussians included (consumes them)."""
    return (float(torch.rand(1)), float(np.random.rand()), float(np.random.standard_normal()),
            random.random(), random.gauss(0, 1))  # fmt: skip


def state_after_seed(seed: int) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    np.random.standard_normal()  # NumPy caches the second Gaussian of a pair: part of the state
    random.gauss(0, 1)
    return rng_state()


def test_tensor_round_trip_keeps_every_generator():
    state = state_after_seed(5)
    expected = draws()
    restore_rank_rng([rng_from_tensors(rng_to_tensors(state))], rank=0, world=1)
    assert draws() == expected


def test_each_rank_restores_its_own_state():
    saved = [state_after_seed(1), state_after_seed(2)]  # what ranks 0 and 1 held at saving
    expected = []
    for s in saved:
        restore_rank_rng([s], 0, 1)
        expected.append(draws())
    assert expected[0] != expected[1]
    for rank in (1, 0):
        torch.manual_seed(99), np.random.seed(99), random.seed(99)
        assert restore_rank_rng(saved, rank=rank, world=2)
        assert draws() == expected[rank]


def test_other_process_counts_and_older_checkpoints():
    saved = [state_after_seed(1), state_after_seed(2)]
    assert not restore_rank_rng(saved, rank=1, world=4)  # 4 processes now: rank 1 reseeds
    assert restore_rank_rng(saved, rank=0, world=4)  # rank 0 continues its stream
    assert not restore_rank_rng(None, rank=0, world=1)
    old = state_after_seed(3)  # version-1 checkpoints held rank 0's state as a dict
    expected = draws()
    assert restore_rank_rng(old, rank=0, world=2) and draws() == expected
    assert not restore_rank_rng(old, rank=1, world=2)


def test_gather_stacks_the_ranks_in_order_and_each_restores_its_own(tmp_path):
    states = [rng_to_tensors(state_after_seed(r)) for r in (7, 8)]

    def fake_all_gather(mine):  # what LightningModule.all_gather returns on 2 ranks: [world, ...] tensors
        return {k: torch.stack([states[0][k], states[1][k]]) for k in mine}

    gathered = gather_rng_states(fake_all_gather, torch.device("cpu"))
    assert len(gathered) == 2
    for rank in (0, 1):
        assert torch.equal(gathered[rank]["torch"], states[rank]["torch"])
        assert gathered[rank]["python"][1] == states[rank]["python_internal"][1:].tolist()
    # Each rank restores its entry from a saved checkpoint (rank 1's was once a view at a storage offset,
    # which crashed torch.set_rng_state).
    path = tmp_path / "rng.pt"
    torch.save({"rng": gathered}, path)
    loaded = torch.load(path, weights_only=True)["rng"]
    for rank in (1, 0):
        assert restore_rank_rng(loaded, rank=rank, world=2)
        assert torch.equal(torch.get_rng_state(), states[rank]["torch"])
    single = gather_rng_states(None, torch.device("cpu"))
    assert len(single) == 1 and torch.equal(single[0]["torch"], torch.get_rng_state())
