"""Fixtures of the metric tests (helpers live in metrics_testkit.py)."""

from __future__ import annotations

import pytest
import torch
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
    """Pure-PyTorch ops (no extension build here) on one torch thread (the 2 cores are shared)."""
    import sg3.ops

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with sg3.ops.use_impl("ref"):
            yield
    finally:
        torch.set_num_threads(threads)
