"""Metric arithmetic against straightforward numpy/scipy computations on known inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.special

from sg3.metrics.stats import (
    feature_moments,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    return rng.randn(n, d) @ rng.randn(d, d) * 0.5 + shift


def test_moments_match_numpy_cov_with_bias():
    x = _features(200, 6, 0)
    mu, sigma = feature_moments(x)
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False, bias=True), rtol=1e-10, atol=1e-12)


def test_frechet_distance_one_dimensional_closed_form():
    # N(m1, s1) vs N(m2, s2): (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2)
    fd = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert fd == pytest.approx(9 + 4 + 9 - 2 * 6)


def test_frechet_distance_matches_symmetric_sqrtm_formula():
    a, b = _features(300, 8, 1), _features(300, 8, 2, shift=0.3)
    mu1, s1 = feature_moments(a)
    mu2, s2 = feature_moments(b)
    r1 = scipy.linalg.sqrtm(s1).real
    expected = (
        np.sum((mu1 - mu2) ** 2)
        + np.trace(s1)
        + np.trace(s2)
        - 2 * np.trace(scipy.linalg.sqrtm(r1 @ s2 @ r1).real)
    )
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def _kid_reference(gen, real, num_subsets, max_subset_size, seed):
    d = gen.shape[1]
    m = min(len(gen), len(real), max_subset_size)
    rng = np.random.RandomState(seed)
    k = lambda u, v: (np.dot(u, v) / d + 1) ** 3
    vals = []
    for _ in range(num_subsets):
        x = gen[rng.choice(len(gen), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
        vals.append(kxx + kyy - 2 * kxy)
    return float(np.mean(vals))


def test_kid_matches_explicit_unbiased_mmd():
    gen, real = _features(40, 5, 3), _features(30, 5, 4, shift=0.5)
    got = kernel_inception_distance(gen, real, num_subsets=4, max_subset_size=12, seed=7)
    assert got == pytest.approx(_kid_reference(gen, real, 4, 12, 7), rel=1e-9)
    same = kernel_inception_distance(gen, gen, num_subsets=20, max_subset_size=40, seed=0)
    far = kernel_inception_distance(gen, real + 3, num_subsets=20, max_subset_size=30, seed=0)
    assert abs(same) < 0.1 * far


def _pr_reference(gen, real, k):
    def radii(x):
        return np.sort(scipy.spatial.distance.cdist(x, x), axis=1)[:, k]

    rr, rg = radii(real), radii(gen)
    prec = np.mean([(scipy.spatial.distance.cdist(g[None], real)[0] <= rr).any() for g in gen])
    rec = np.mean([(scipy.spatial.distance.cdist(r[None], gen)[0] <= rg).any() for r in real])
    return prec, rec


def test_precision_recall_matches_bruteforce_and_extremes():
    gen, real = _features(60, 4, 5), _features(50, 4, 6, shift=0.8)
    got = precision_recall(gen, real, k=3, block=7)
    exp = _pr_reference(gen, real, 3)
    assert got == pytest.approx(exp)
    assert 0 < got[0] < 1 and 0 < got[1] < 1
    assert precision_recall(gen, gen, k=3) == (1.0, 1.0)
    assert precision_recall(gen, gen + 100, k=3) == (0.0, 0.0)


def test_inception_score_known_values_and_reference():
    k = 10
    one_hot = np.eye(k)[np.arange(100) % k]  # confident and evenly spread: IS = K
    mean, std = inception_score(np.clip(one_hot, 1e-30, 1), num_splits=10)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0, abs=1e-6)
    uniform = np.full((50, k), 1 / k)  # no information: IS = 1
    assert inception_score(uniform, num_splits=5)[0] == pytest.approx(1.0)
    rng = np.random.RandomState(0)
    p = scipy.special.softmax(rng.randn(40, 7) * 2, axis=1)
    scores = []
    for part in np.split(p, 4):
        py = part.mean(0)
        scores.append(np.exp(np.mean([scipy.special.rel_entr(row, py).sum() for row in part])))
    assert inception_score(p, num_splits=4) == pytest.approx((np.mean(scores), np.std(scores)))


def test_bad_feature_arrays_are_rejected():
    with pytest.raises(ValueError, match=r"gen must be a non-empty feature array"):
        kernel_inception_distance(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least num_splits"):
        inception_score(np.full((3, 2), 0.5), num_splits=10)
