"""Per-process RNG states for checkpoints: each rank saves and restores its own (torch, NumPy, Python, CUDA).

Checkpoints hold `ckpt['sg3']['rng']`, a list with one state per rank, gathered from every rank while saving
(`LightningModule.all_gather`); on resume each rank restores its own entry (docs/internals.md). Private
`torch.Generator`s of the training (the label generator) travel in the same entry, under `generators`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU, NumPy, Python, CUDA when in use), weights_only-loadable."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [version, list(internal), py_gauss],
    }  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's (current) GPU
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Set this process's RNG states from `rng_state()` output."""
    # A compact copy: torch.set_rng_state crashes (segfault) on a view with a storage offset.
    torch.set_rng_state(state["torch"].cpu().clone())
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, np_state["pos"], np_state.get("has_gauss", 0), np_state.get("gauss", 0.0))
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):  # older checkpoints: every visible GPU
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        else:
            torch.cuda.set_rng_state(cuda.cpu().clone())


def rng_to_tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """`rng_state()` as tensors of the same shapes on every process (for an all-gather)."""
    np_state, (version, internal, gauss) = state["numpy"], state["python"]
    out = {
        "torch": state["torch"],
        "numpy_keys": np_state["keys"],
        "numpy_rest": torch.tensor([np_state["pos"], np_state["has_gauss"]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state["gauss"]], dtype=torch.float64),
        "python_internal": torch.tensor([version, *internal], dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if gauss is None else gauss], dtype=torch.float64),
    }
    if "cuda" in state:
        out["cuda"] = state["cuda"]
    for name, gen_state in state.get("generators", {}).items():
        out[f"gen:{name}"] = gen_state
    return out


def rng_from_tensors(t: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Inverse of `rng_to_tensors` (tensors on the CPU)."""
    version, *internal = t["python_internal"].tolist()
    gauss = float(t["python_gauss"][0])
    state = {
        "torch": t["torch"].to(torch.uint8),
        "numpy": {"keys": t["numpy_keys"], "pos": int(t["numpy_rest"][0]),
                  "has_gauss": int(t["numpy_rest"][1]), "gauss": float(t["numpy_gauss"][0])},
        "python": [version, internal, None if np.isnan(gauss) else gauss],
    }  # fmt: skip
    if "cuda" in t:
        state["cuda"] = t["cuda"].to(torch.uint8)
    gens = {k[len("gen:") :]: v.to(torch.uint8) for k, v in t.items() if k.startswith("gen:")}
    if gens:
        state["generators"] = gens
    return state


def restore_rank_rng(
    saved: list[dict[str, Any]] | dict[str, Any] | None,
    rank: int,
    world: int,
    generators: dict[str, torch.Generator] | None = None,
) -> bool:
    """Restore this process's RNG states from a checkpoint's per-rank list; True if restored.

    Args:
        saved: `ckpt['sg3']['rng']`: one state per rank (older checkpoints: rank 0's state only, a dict).
        rank: This process's global rank.
        world: Number of processes now. With a different count than at saving, only rank 0 restores
            its state (rank 0's stream continues); the other ranks return False and reseed.
        generators: name -> private generator to restore too (those the checkpoint holds; others keep
            their state).
    """
    if saved is None:
        return False
    states = [saved] if isinstance(saved, dict) else list(saved)
    if rank < len(states) and (len(states) == world or rank == 0):
        set_rng_state(states[rank])
        for name, gen_state in states[rank].get("generators", {}).items():
            if generators is not None and name in generators:
                generators[name].set_state(gen_state.cpu().clone())
        return True
    return False


def gather_rng_states(
    all_gather: Callable[[Any], Any] | None,
    device: torch.device,
    generators: dict[str, torch.Generator] | None = None,
) -> list[dict[str, Any]]:
    """Every rank's RNG states, rank by rank; every rank must call it (it is a collective).

    Args:
        all_gather: `LightningModule.all_gather` (stacks each tensor over >= 2 ranks); None: one process.
        device: Where the collective needs the tensors (the module's device; CUDA for NCCL).
        generators: name -> private CPU generator whose state is saved with this rank's (the same names on
            every rank).
    """
    state = rng_state()
    if generators:
        state["generators"] = {name: g.get_state() for name, g in generators.items()}
    mine = rng_to_tensors(state)
    if all_gather is None:
        return [rng_from_tensors(mine)]
    gathered = all_gather({k: v.to(device) for k, v in mine.items()})
    world = gathered["torch"].shape[0]  # each tensor is [world, ...]
    # clone(): compact tensors of their own, not views into the gathered [world, ...] storage (a view would
    # save the whole storage, and torch.set_rng_state crashes on a view with a storage offset)
    return [rng_from_tensors({k: v[r].cpu().clone() for k, v in gathered.items()}) for r in range(world)]
