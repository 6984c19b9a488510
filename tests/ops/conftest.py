"""Shared fixtures of the ops tests: spec §11.3 inputs and filters."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch


def _spec_input(size: int) -> torch.Tensor:
    h = np.arange(size)[:, None]
    w = np.arange(size)[None]
    planes = np.stack([np.sin(0.3 * h + 0.7 * w), np.cos(0.5 * h - 0.2 * w**2)])
    return torch.tensor(planes[None], dtype=torch.float32)


@pytest.fixture(scope="session")
def spec_input():
    """Spec §11.3 input maker: size -> [1, 2, size, size] (sin(0.3h + 0.7w), cos(0.5h - 0.2w^2))."""
    return _spec_input


def _firwin(taps: int, cutoff: float, width: float, fs: float) -> torch.Tensor:
    """Kaiser lowpass (as the SG3 layers design them), float32."""
    return torch.tensor(scipy.signal.firwin(taps, cutoff, width=width, fs=fs), dtype=torch.float32)


@pytest.fixture(scope="session")
def spec_filters() -> dict[str, torch.Tensor]:
    """The 1024-T L0 (12 taps) and L2 up/down filters of spec §11.2."""
    return {
        "l0": _firwin(12, 2, 12, 32),
        "l2_up": _firwin(24, 3.1748021, 9.6503958, 64),
        "l2_down": _firwin(12, 5.0396842, 21.9206316, 64),
        "t256_l3_up": _firwin(24, 4, 8, 64),
    }
