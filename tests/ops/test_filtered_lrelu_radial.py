"""Compiled filtered_lrelu with mirror-symmetric 2-D down filters (the radial filters of config R).

The CPU kernel folds row pairs k / th-1-k of such filters (one horizontal pass per pair in the
forward, one pass feeding two rows in the backward); these cases check that path against the
reference composition, forward and both gradients, for even and odd filter heights and several
resampling factors. Random (non-mirrored) 2-D filters are covered by test_cpp.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from sg3 import ops
from sg3.modules.filters import design_lowpass_filter

pytestmark = pytest.mark.cpp


def _mirrored(th: int, tw: int, seed: int) -> torch.Tensor:
    """Random 2-D filter whose rows k and th-1-k are equal (columns not symmetric)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(th, tw, generator=g, dtype=torch.float64) + 0.1
    f = (f + f.flip(0)) / 2
    return f / f.sum()


CASES = [
    # up, down, fu taps, fd (kind, th, tw), padding, size, clamp
    (2, 2, 12, ("radial", 12, 12), [11, 10, 11, 10], (9, 10), 256.0),  # config R layer
    (4, 2, 24, ("radial", 12, 12), [-2, -5, -2, -5], (14, 13), None),  # config R 2x upsampling layer
    (2, 2, 12, ("mirror", 7, 9), [5, 4, 6, 3], (8, 11), 0.5),  # odd height, middle row unpaired
    (1, 1, 3, ("mirror", 4, 5), [2, 2, 2, 2], (6, 7), None),
    (2, 4, 6, ("mirror", 10, 3), [4, 5, 6, 7], (12, 9), None),
]


def _fd(kind: str, th: int, tw: int, seed: int) -> torch.Tensor:
    if kind == "radial":
        f = design_lowpass_filter(th, cutoff=6.0, width=10.0, fs=36.0, radial=True)
        return torch.from_numpy(f).double()
    return _mirrored(th, tw, seed)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"up{c[0]}-down{c[1]}-{c[3][0]}{c[3][1]}x{c[3][2]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mirrored_fd_matches_reference(case, dtype):
    up, down, fu_taps, fd_spec, padding, (h, w), clamp = case
    g = torch.Generator().manual_seed(7)
    fu = torch.rand(fu_taps, generator=g, dtype=torch.float64) + 0.2
    fu = (fu / fu.sum()).to(dtype)
    fd = _fd(*fd_spec, seed=11).to(dtype)
    assert torch.equal(fd, fd.flip(0)), "the case must exercise the mirrored-row path"
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(3, generator=g, dtype=torch.float64).to(dtype)
    kw = dict(up=up, down=down, padding=padding, gain=math.sqrt(2), slope=0.2, clamp=clamp)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    outs, grads = [], []
    for impl in ("ref", "cpp"):
        xi, bi = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
        y = ops.filtered_lrelu(xi, fu, fd, bi, impl=impl, **kw)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
        outs.append(y)
        grads.append(torch.autograd.grad(y, [xi, bi], dy))
    torch.testing.assert_close(outs[1], outs[0], **tol)
    assert outs[0].abs().max() > 0 and grads[0][0].abs().max() > 0
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, **tol)
