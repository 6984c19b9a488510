"""Tiny network configs for the networks tests; they run on the pure-PyTorch reference ops."""

from __future__ import annotations

import pytest

import sg3.ops

# Small channel counts keep the CPU tests fast; schedule/name tests use the spec's real kwargs.
TINY_T = dict(channel_base=512, channel_max=16)
TINY_R = dict(channel_base=1024, channel_max=32, conv_kernel=1, use_radial_filters=True)
TINY_SG2 = dict(channel_base=512, channel_max=32)
TINY_D = dict(channel_base=512, channel_max=32)


@pytest.fixture
def tiny() -> dict[str, dict]:
    """Small network kwargs per config: 'T', 'R', 'SG2', 'D'."""
    return {"T": dict(TINY_T), "R": dict(TINY_R), "SG2": dict(TINY_SG2), "D": dict(TINY_D)}


@pytest.fixture(autouse=True)
def _reference_ops():
    """Run network tests on the reference ops unless a test opts into compiled ones itself."""
    with sg3.ops.use_impl("ref"):
        yield
