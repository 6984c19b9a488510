"""Fixtures of the `gpu` tier (exact reference math, the CUDA device)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _exact_reference_math():
    """No TF32 in the reference's convolutions; restore the user's settings afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device())
