"""Run with torch.distributed env vars (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): metrics on 2 ranks.

Rank 0 writes the results as JSON to argv[1]. Started as a subprocess by test_ddp.py (never by pytest).
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
from metrics_testkit import FakeData, TinyDetector, tiny_generator  # noqa: E402

import sg3.ops  # noqa: E402
from sg3.metrics.registry import compute  # noqa: E402

NAMES = ("eqt8_int", "eqr4", "fid16_full", "kid16_full")


def run_all(rank: int, world_size: int, cache_dir: str) -> dict[str, float]:
    G, data = tiny_generator(), FakeData(count=16)
    out: dict[str, float] = {}
    for name in NAMES:
        out.update(
            compute(
                name,
                G,
                data=data,
                rank=rank,
                world_size=world_size,
                seed=5,
                batch_size=8,
                progress=False,
                cache_dir=cache_dir,
                detectors={"inception": TinyDetector()},
            )
        )
    return out


def main() -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    with sg3.ops.use_impl("ref"):
        res = run_all(rank, world, sys.argv[2])
    gathered = [None] * world
    dist.all_gather_object(gathered, res)
    if rank == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
