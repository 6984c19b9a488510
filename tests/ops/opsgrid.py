"""Helpers of the ops tests used at collection time (parametrization): a sampled configuration grid."""

from __future__ import annotations

import random

import torch


def upfirdn_grid(count: int, seed: int = 0) -> list[dict]:
    """A deterministic sample of upfirdn2d configurations covering every value of each axis of the grid.

    Axes: up/down in {1, 2, 4} (scalar or per-axis), odd/even sizes, padding as int, [px, py] or
    [x0, x1, y0, y1] with negative entries, 1-D/2-D filters of 1..24 taps, flip_filter, gain.
    """
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        ndim = (1, 2)[i % 2]
        taps = [1, 2, 3, 4, 5, 8, 12, 24][i % 8] if ndim == 1 else [1, 2, 3, 4, 6, 7][i % 6]
        up = [1, 2, 4, [2, 1], [1, 4]][i % 5]
        down = [1, 2, 4, [1, 2], [4, 2], 1, 2][i % 7]
        pad_kind = i % 3
        lo, hi = -1, taps + 2
        if pad_kind == 0:
            padding = rng.randint(0, hi)
        elif pad_kind == 1:
            padding = [rng.randint(lo, hi), rng.randint(lo, hi)]
        else:
            padding = [rng.randint(-2, hi) for _ in range(4)]
        cases.append(
            dict(
                size=(rng.choice([5, 8, 9, 16]), rng.choice([6, 7, 12])),
                ndim=ndim,
                taps=taps,
                up=up,
                down=down,
                padding=padding,
                flip_filter=bool(i % 4 == 3),
                gain=[1.0, 2.5, 0.5][i % 3],
            )
        )
    return cases


def make_filter(ndim: int, taps: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """A random (non-symmetric) filter, so that flip_filter matters."""
    shape = [taps] if ndim == 1 else [taps, taps + 1 if taps < 7 else taps]
    return (torch.rand(shape, generator=generator, dtype=torch.float64) + 0.1).to(dtype)
