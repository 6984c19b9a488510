"""Fixtures of the metric tests (helpers live in metrics_testkit.py)."""

from __future__ import annotations

import pytest
from metrics_testkit import TinyDetector, TinyLpips, TinyProbs


@pytest.fixture
def detectors():
    return {
        "inception": TinyDetector(),
        "inception_probs": TinyProbs(),
        "vgg16": TinyDetector(),
        "lpips": TinyLpips(),
    }


@pytest.fixture(autouse=True)
def _reference_ops():
    """Pure-PyTorch ops: no extension build inside the metric tests."""
    import sg3.ops

    with sg3.ops.use_impl("ref"):
        yield
