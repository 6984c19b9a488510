"""Compiled filtered_lrelu with separable filters: the band-wide passes against the reference.

The CPU kernel runs each separable pass over a band of rows: horizontal passes 4, 2 or 1 rows per
sweep, vertical passes two output rows per sweep whose source columns repeat every lcm(2, factor)
rows (worked out once per band; pairs at the image borders are recomputed). These cases reach the
parts test_cpp.py's grid does not: odd resampling factors (period 2 x factor), one tall plane split
into many bands (and a band of one row), row counts that leave 3, 2 or 1 rows for the horizontal
sweeps, and 1 vs 2 threads (different band sizes).
"""

from __future__ import annotations

import math

import pytest
import torch

from sg3 import ops

pytestmark = pytest.mark.cpp

CASES = [
    # up, down, fu taps, fd taps, padding, (n, c, h, w), clamp
    (3, 3, 9, 7, [4, 5, 6, 3], (1, 1, 29, 11), None),  # odd factors on both axes, one tall plane
    (3, 1, 5, 4, [2, 1, 3, 2], (1, 2, 17, 6), 0.5),
    (1, 3, 2, 9, [5, 4, 8, 7], (2, 1, 23, 9), None),
    (2, 2, 12, 12, [9, 8, 9, 8], (1, 1, 41, 7), 256.0),  # config T layer shape, 1 plane -> many bands
    (4, 2, 24, 12, [-6, -9, -6, -9], (1, 1, 30, 13), 0.5),  # 2x upsampling layer
    (2, 3, 6, 5, [3, 3, 6, 6], (1, 3, 3, 5), None),  # 3 input rows: one 2-row and one 1-row sweep
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"up{c[0]}-down{c[1]}-fu{c[2]}-fd{c[3]}-h{c[5][2]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_separable_bands_match_reference(case, dtype, threads):
    up, down, fu_taps, fd_taps, padding, shape, clamp = case
    g = torch.Generator().manual_seed(5)
    fu = torch.rand(fu_taps, generator=g, dtype=torch.float64) + 0.2
    fd = torch.rand(fd_taps, generator=g, dtype=torch.float64) - 0.3  # some negative taps
    fu, fd = (fu / fu.sum()).to(dtype), (fd / fd.sum()).to(dtype)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(shape[1], generator=g, dtype=torch.float64).to(dtype)
    kw = dict(up=up, down=down, padding=padding, gain=math.sqrt(2), slope=0.2, clamp=clamp)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    outs, grads, dy_gen = [], [], torch.Generator()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for impl in ("ref", "cpp"):
            xi, bi = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
            y = ops.filtered_lrelu(xi, fu, fd, bi, impl=impl, **kw)
            dy = torch.randn(y.shape, generator=dy_gen.manual_seed(3), dtype=torch.float64).to(dtype)
            outs.append(y)
            grads.append(torch.autograd.grad(y, [xi, bi], dy))
    finally:
        torch.set_num_threads(old_threads)
    assert outs[0].shape[2] >= 2 and outs[0].abs().max() > 0 and grads[0][0].abs().max() > 0
    torch.testing.assert_close(outs[1], outs[0], **tol)
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, **tol)
