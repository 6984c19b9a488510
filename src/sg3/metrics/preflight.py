"""Checks, before a training run starts, that its metrics will be able to run at the first snapshot.

Each check is the metric code's own, done early and without computing anything: the detector weights
files (`sg3.metrics.features.check_weights`: found where the detectors look, or downloadable now), the
real images of fid/kid/pr (`feature_metrics.check_data`) and the StyleGAN3 input transform of the EQ
metrics (`equivariance.input_transform`). Metrics that need none of these (the EQ metrics need no weights)
are never blocked.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from sg3.metrics.equivariance import input_transform
from sg3.metrics.feature_metrics import check_data
from sg3.metrics.features import NEEDS, DetectorWeightsError, check_weights
from sg3.metrics.options import MetricOptions
from sg3.metrics.registry import parse_metric

__all__ = ["MetricPrerequisiteError", "check_metrics"]


class MetricPrerequisiteError(ValueError):
    """A configured metric cannot run; the message names the metric and what it lacks (one line)."""


def check_metrics(
    names: list[str],
    G: torch.nn.Module | None = None,
    data: Any = None,
    weights_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    detectors: dict[str, torch.nn.Module] | None = None,
) -> None:
    """Raise `MetricPrerequisiteError` when one of the metrics would fail for lack of a prerequisite.

    Args:
        names: Metric names (e.g. `['fid50k_full', 'eqt50k_int']`).
        G: The generator the metrics will evaluate (for the real-image and EQ checks); None = skip those.
        data: The data module of the real images (fid, kid, pr); checked only when `G` is given.
        weights_dir: Detector weights folder, as passed to the metrics; None = `$SG3_METRICS_WEIGHTS` or
            `~/.cache/sg3/metrics`.
        download: As passed to the metrics; None = downloads allowed unless `$SG3_METRICS_OFFLINE`.
        detectors: Detectors injected by kind; their weights files are not needed.

    Raises:
        MetricPrerequisiteError: one line per problem found (each names its metric(s)), joined by '; '.
    """
    specs = [parse_metric(name) for name in names]
    problems: dict[str, list[str]] = {}  # what is wrong -> the metrics it stops (in the order given)
    users: dict[str, list[str]] = {}  # weights key -> the metrics that load it
    for spec in specs:
        for kind in spec.detectors:
            if kind not in (detectors or {}):
                for key in NEEDS[kind]:
                    users.setdefault(key, []).append(spec.name)
    for key, metrics in users.items():
        try:
            check_weights(key, weights_dir, download)
        except DetectorWeightsError as e:
            problems.setdefault(str(e), []).extend(metrics)
    if G is not None:
        opts = MetricOptions(G=G, data=data)
        for spec in specs:
            try:
                if spec.needs_data:
                    check_data(opts, spec.name)
                if spec.family in ("eqt_int", "eqt_frac", "eqr"):
                    input_transform(G)
            except (TypeError, ValueError) as e:
                problems.setdefault(str(e), []).append(spec.name)
    if problems:
        raise MetricPrerequisiteError(
            "; ".join(f"{_named(m)} cannot run: {why}" for why, m in problems.items())
        )


def _named(metrics: list[str]) -> str:
    metrics = list(dict.fromkeys(metrics))
    return f"metric {metrics[0]!r}" if len(metrics) == 1 else f"metrics {', '.join(map(repr, metrics))}"
