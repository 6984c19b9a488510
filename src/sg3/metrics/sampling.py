"""Deterministic, rank-sharded sampling shared by all metrics.

Every metric splits its samples into fixed-size batches numbered 0..B-1. Batch b draws all its
randomness (latents, labels, translations, noise) from a generator seeded by `(seed, tag, b)`, and
runs on rank `b % world_size`. Per-batch results are gathered back in batch order, so a run on any
number of processes gives exactly the numbers of a single-process run with the same seed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

__all__ = [
    "batch_seed",
    "batch_generator",
    "gather_batches",
    "run_sharded",
    "sample_labels",
    "sample_latents",
    "quantize",
    "generate_images",
    "GEN_SUB_BATCH",
    "progress_bar",
]


def batch_seed(seed: int, tag: str, index: int) -> int:
    """A 63-bit seed derived from (run seed, metric tag, batch index)."""
    digest = hashlib.sha256(f"{int(seed)}/{tag}/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def batch_generator(seed: int, tag: str, index: int) -> torch.Generator:
    """A CPU `torch.Generator` for one batch (draw on CPU, then move to the device)."""
    g = torch.Generator()
    g.manual_seed(batch_seed(seed, tag, index))
    return g


def progress_bar(iterable: Iterable, total: int, desc: str, enabled: bool) -> Iterable:
    """A tqdm bar when `enabled` (rank zero and progress requested), else the iterable itself."""
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True) if enabled else iterable


def _dist_active(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


def gather_batches(
    local: list[torch.Tensor], num_batches: int, rank: int, world_size: int
) -> list[torch.Tensor]:
    """All-gather per-batch tensors from every rank and return them in global batch order.

    Args:
        local: This rank's results for batches `rank, rank + world_size, ...`, all of one shape/dtype.
        num_batches: Total number of batches over all ranks.
        rank: This process's rank.
        world_size: Number of processes (1: no communication).

    Returns:
        `num_batches` tensors (CPU), batch 0 first.
    """
    if not _dist_active(world_size):
        if world_size > 1:
            raise RuntimeError(f"world_size={world_size} but torch.distributed is not initialized")
        return [t.cpu() for t in local]
    per_rank = math.ceil(num_batches / world_size)
    meta: list = [None] * world_size  # (shape, dtype) of one batch, from ranks that have batches
    dist.all_gather_object(meta, (tuple(local[0].shape), local[0].dtype) if local else None)
    shape, dtype = next(m for m in meta if m is not None)
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    stacked = torch.zeros((per_rank, *shape), dtype=dtype)  # [per_rank, ...], zero rows pad short ranks
    if local:
        stacked[: len(local)] = torch.stack([t.cpu() for t in local])
    stacked = stacked.to(dev or "cpu")
    parts = [torch.empty_like(stacked) for _ in range(world_size)]
    dist.all_gather(parts, stacked)
    return [parts[b % world_size][b // world_size].cpu() for b in range(num_batches)]


def run_sharded(
    fn: Callable[[int], torch.Tensor],
    num_batches: int,
    rank: int,
    world_size: int,
    desc: str,
    progress: bool,
) -> list[torch.Tensor]:
    """Run `fn(batch_index)` for this rank's batches and gather all results in batch order."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    mine = range(rank, num_batches, world_size)
    local = [fn(b) for b in progress_bar(mine, len(mine), desc, progress and rank == 0)]
    return gather_batches(local, num_batches, rank, world_size)


def _one_hot_labels(n: int, c_dim: int, g: torch.Generator) -> torch.Tensor:
    c = torch.zeros(n, c_dim)
    if c_dim:
        c[torch.arange(n), torch.randint(c_dim, (n,), generator=g)] = 1
    return c


def sample_labels(G: torch.nn.Module, n: int, g: torch.Generator, data: Any = None) -> torch.Tensor:
    """Draw labels `c [n, c_dim]` (CPU) for a generator.

    Labels come from `data.sample_labels(n, g)` when the data module offers them (uniform over the
    dataset's labels), otherwise uniformly random one-hot vectors (zeros `[n, 0]` if unconditional).
    """
    if G.c_dim and data is not None and hasattr(data, "sample_labels"):
        return torch.as_tensor(data.sample_labels(n, g), dtype=torch.float32).reshape(n, G.c_dim)
    return _one_hot_labels(n, G.c_dim, g)


def sample_latents(G: torch.nn.Module, n: int, g: torch.Generator, data: Any = None) -> tuple:
    """Draw `z [n, z_dim]` and then labels `c [n, c_dim]` (CPU, see `sample_labels`) for a generator."""
    z = torch.randn(n, G.z_dim, generator=g)
    return z, sample_labels(G, n, g, data)


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] to uint8 RGB `uint8(clamp(x*127.5 + 128, 0, 255))`, gray -> 3 channels."""
    x = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


GEN_SUB_BATCH = 4  # images per G call when generating for the feature metrics (spec §6)


def generate_images(
    G: torch.nn.Module,
    z: torch.Tensor,
    c: torch.Tensor,
    noise_seed: int,
    sub_batch: int = GEN_SUB_BATCH,
    **G_kwargs: Any,
) -> torch.Tensor:
    """Run `G(z, c)` in calls of `sub_batch` images with the global RNG (SG2 random noise) seeded once by
    `noise_seed`; uint8 output `[N, 3, H, W]`.

    The calls' size is part of the result: G's style pre-normalization is batch-global (spec §10.6), so an
    image depends on the other images of its call; the official metrics call G on 4 images at a time.
    """
    if sub_batch < 1:
        raise ValueError(f"sub_batch must be >= 1, got {sub_batch}")
    dev = z.device
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(noise_seed)
        parts = [
            quantize(G(z[i : i + sub_batch], c[i : i + sub_batch], **G_kwargs))
            for i in range(0, len(z), sub_batch)
        ]
        return torch.cat(parts)
