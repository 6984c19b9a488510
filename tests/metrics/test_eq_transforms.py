"""Pixel-space references of the equivariance metrics: filter test vectors (spec 11.3) and shifts."""

from __future__ import annotations

import math

import pytest
import torch

from sg3.metrics.eq_transforms import (
    bandlimit_filter,
    fractional_rotation,
    fractional_translation,
    integer_translation,
    pseudo_rotation,
    rotation_matrix,
)


def test_bandlimit_filter_identity_vectors():
    f1 = bandlimit_filter(torch.eye(3), up=1)
    assert f1.shape == (11, 11) and f1.dtype == torch.float32
    assert f1[5, 5].item() == pytest.approx(0.99999994, abs=1e-6)
    off = f1.clone()
    off[5, 5] = 0
    assert off.abs().max().item() < 5e-8
    f4 = bandlimit_filter(torch.eye(3), up=4)
    assert f4.shape == (47, 47)
    for (i, j), v in {
        (23, 23): 0.0623017,
        (23, 22): 0.0556389,
        (23, 21): 0.0383893,
        (22, 22): 0.0496886,
    }.items():
        assert f4[i, j].item() == pytest.approx(v, abs=2e-7)
    assert f4.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_bandlimit_filter_rotation_vectors():
    r = rotation_matrix(math.radians(30))
    f1 = bandlimit_filter(r, up=1)
    assert f1[5, 5].item() == pytest.approx(0.9994738, abs=2e-7)
    for ij in [(5, 4), (5, 6), (4, 5)]:
        assert f1[ij].item() == pytest.approx(0.0832717, abs=2e-7)
    for ij in [(4, 4), (4, 6), (6, 4)]:
        assert f1[ij].item() == pytest.approx(-0.1280211, abs=2e-7)
    assert f1.sum().item() == pytest.approx(1.0, abs=1e-5)
    f4 = bandlimit_filter(r, up=4)
    assert f4[23, 23].item() == pytest.approx(0.0528324, abs=2e-7)
    assert f4[23, 22].item() == pytest.approx(0.0481350, abs=2e-7)
    assert f4[22, 23].item() == pytest.approx(0.0481350, abs=2e-7)


def _smooth(n=2, c=3, h=32):
    yy, xx = torch.meshgrid(torch.arange(h).double(), torch.arange(h).double(), indexing="ij")
    img = torch.sin(0.3 * xx + 0.1 * yy) + torch.cos(0.2 * yy - 0.15 * xx)
    return img.reshape(1, 1, h, h).repeat(n, c, 1, 1).float(), (xx, yy)


def test_integer_translation_moves_content_toward_positive_axes():
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(1, 2, 16, 16)
    y, m = integer_translation(x, 3 / 16, -2 / 16)
    assert torch.equal(y[0, :, 0, 3:], x[0, :, 2, :13])
    assert torch.all(y[0, :, :, :3] == 0) and torch.all(y[0, :, 14:, :] == 0)
    assert m.sum().item() == 2 * 13 * 14
    y0, m0 = integer_translation(x, 1.5, 0)  # shift beyond the image: nothing valid
    assert m0.sum() == 0 and y0.abs().sum() == 0


def test_fractional_translation_matches_analytic_shift_and_integer_case():
    img, (xx, yy) = _smooth()
    h = img.shape[-1]
    tx, ty = 2.3 / h, -1.6 / h
    y, m = fractional_translation(img, tx, ty)
    expected = torch.sin(0.3 * (xx - 2.3) + 0.1 * (yy + 1.6)) + torch.cos(
        0.2 * (yy + 1.6) - 0.15 * (xx - 2.3)
    )
    err = ((y - expected.float()) * m).abs().max().item()
    assert err < 0.02 and m[0, 0].sum().item() == (h - 5) * (h - 5)
    yi, mi = integer_translation(img, 4 / h, 2 / h)
    yf, mf = fractional_translation(img, 4 / h, 2 / h)
    assert torch.allclose(yf * mf, yi * mf, atol=1e-6) and torch.all(mi >= mf)


def test_fractional_rotation_quarter_turn_equals_rot90_in_the_valid_region():
    img, _ = _smooth()
    y, m = fractional_rotation(img, rotation_matrix(math.pi / 2))
    assert y.shape == img.shape and 0.3 < m.mean().item() < 0.5
    assert ((y - torch.rot90(img, 1, dims=(2, 3))) * m).abs().max().item() < 1e-3
    y0, m0 = fractional_rotation(img, torch.eye(3))
    assert ((y0 - img) * m0).abs().max().item() < 1e-3


def test_pseudo_rotation_identity_and_mask():
    img, _ = _smooth()
    y, m = pseudo_rotation(img, torch.eye(3))
    assert ((y - img) * m).abs().max().item() < 1e-5
    assert m[0, 0].sum().item() == (32 - 10) ** 2
    with pytest.raises(ValueError, match=r"x must be a float tensor \[N, C, H, W\]"):
        pseudo_rotation(img[0], torch.eye(3))
