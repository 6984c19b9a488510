"""Metric arithmetic on feature arrays (spec §6): Frechet distance, KID, precision/recall, IS.

Pure numpy/scipy on float64 (features come in as `[N, D]` arrays). Each function follows the
official definition, which differs in details from other libraries: covariance divides by N, KID
uses 100 subsets of `min(n_real, n_gen, 1000)` samples, precision/recall use the distance to the
k-th nearest *other* neighbour as the manifold radius.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

__all__ = [
    "feature_moments",
    "frechet_distance",
    "kernel_inception_distance",
    "precision_recall",
    "inception_score",
]


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty feature array [N, D], got shape {x.shape}")
    return x


def feature_moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (`E[xx^T] - mu mu^T`, divided by N) of features `[N, D]`, in float64."""
    x = _as_features(features, "features").astype(np.float64)
    mu = x.mean(axis=0)
    sigma = x.T @ x / x.shape[0] - np.outer(mu, mu)
    return mu, sigma


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """`||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))`, real part of scipy's sqrtm.

    Args:
        mu1: Mean `[D]` of the first set.
        sigma1: Covariance `[D, D]` of the first set.
        mu2: Mean `[D]` of the second set.
        sigma2: Covariance `[D, D]` of the second set.

    Returns:
        The Frechet distance (float).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}"
        )
    m = np.square(mu1 - mu2).sum()
    s = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(np.real(m + np.trace(sigma1 + sigma2 - s * 2)))


def kernel_inception_distance(
    gen: np.ndarray, real: np.ndarray, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0
) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel `(a.b/d + 1)^3`, averaged over subsets.

    Args:
        gen: Generated-image features `[Ng, D]`.
        real: Real-image features `[Nr, D]`.
        num_subsets: Number of random subsets (100 officially).
        max_subset_size: Upper bound of the subset size m (1000 officially; m = min(Nr, Ng, this)).
        seed: Seed of the subset sampling.

    Returns:
        KID (float).
    """
    gen = _as_features(gen, "gen").astype(np.float64)
    real = _as_features(real, "real").astype(np.float64)
    if gen.shape[1] != real.shape[1]:
        raise ValueError(f"feature sizes differ: gen {gen.shape}, real {real.shape}")
    n = gen.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(
            f"KID needs at least 2 samples per set, got gen {gen.shape[0]}, real {real.shape[0]}"
        )
    rng = np.random.RandomState(seed)
    t = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


def _radii(x: torch.Tensor, k: int, block: int) -> torch.Tensor:
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(0, x.shape[0], block):
        d = _cdist(x[i : i + block], x, block)
        out[i : i + block] = d.kthvalue(k + 1, dim=1).values  # (k+1)-th smallest, self included
    return out


def _cdist(a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
    parts = []
    for j in range(0, b.shape[0], block):
        bb = b[j : j + block]
        d2 = (a * a).sum(1)[:, None] + (bb * bb).sum(1)[None, :] - 2 * a @ bb.T
        parts.append(d2.clamp_min(0).sqrt())
    return torch.cat(parts, dim=1)


def _coverage(probe: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor, block: int) -> float:
    hits = 0
    for i in range(0, probe.shape[0], block):
        d = _cdist(probe[i : i + block], manifold, block)
        hits += int((d <= radii[None, :]).any(dim=1).sum())
    return hits / probe.shape[0]


def precision_recall(
    gen: np.ndarray, real: np.ndarray, k: int = 3, block: int = 10000, device: torch.device | str = "cpu"
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al.) with k-NN manifolds.

    Args:
        gen: Generated-image features `[Ng, D]`.
        real: Real-image features `[Nr, D]`.
        k: Neighbourhood size: each point's radius is the distance to its k-th nearest other point.
        block: Row/column block size of the pairwise distance computation.
        device: Where the distances are computed (float64 on CPU, float32 on GPUs).

    Returns:
        `(precision, recall)`: the fraction of generated points inside the real manifold and of real
        points inside the generated manifold.
    """
    gen = _as_features(gen, "gen").astype(np.float64)
    real = _as_features(real, "real").astype(np.float64)
    if min(gen.shape[0], real.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    dev = torch.device(device)
    dtype = torch.float64 if dev.type == "cpu" else torch.float32
    g, r = (torch.as_tensor(a, dtype=dtype, device=dev) for a in (gen, real))
    precision = _coverage(g, r, _radii(r, k, block), block)
    recall = _coverage(r, g, _radii(g, k, block), block)
    return precision, recall


def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """Inception score: `exp(mean_x KL(p(y|x) || p(y)))` per split, mean and std over splits.

    Args:
        probs: Class probabilities `[N, K]` (rows sum to 1).
        num_splits: Number of equal consecutive splits (10 officially).

    Returns:
        `(mean, std)` over the splits.
    """
    p = _as_features(probs, "probs").astype(np.float64)
    if p.shape[0] < num_splits:
        raise ValueError(f"inception score needs at least num_splits={num_splits} samples, got {p.shape[0]}")
    n = p.shape[0]
    scores = []
    for i in range(num_splits):
        part = p[i * n // num_splits : (i + 1) * n // num_splits]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))
