"""Tiny network files for the tool tests (StyleGAN3-T and StyleGAN2, 16 px)."""

from __future__ import annotations

import pytest
import torch

from sg3.io import save_generator
from sg3.modules.generator import Generator
from sg3.modules.stylegan2 import Generator as StyleGAN2Generator

SMALL = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3)


@pytest.fixture(autouse=True)
def _reference_ops(ref_ops_one_thread):
    """Every test here runs on the reference ops, one torch thread (fixture in tests/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def sg3_file(tmp_path_factory):
    torch.manual_seed(0)
    G = Generator(**SMALL, channel_base=128, channel_max=16).eval()
    with torch.no_grad():  # more contrast than at init, so 8-bit images show the content
        getattr(G.synthesis, G.synthesis.layer_names[-1]).weight.mul_(40)
    path = tmp_path_factory.mktemp("nets") / "tiny-sg3t.pt"
    save_generator(path, G)
    return path


@pytest.fixture(scope="session")
def sg2_file(tmp_path_factory):
    torch.manual_seed(0)
    G = StyleGAN2Generator(**SMALL, channel_base=64, channel_max=16).eval()
    path = tmp_path_factory.mktemp("nets") / "tiny-sg2.pt"
    save_generator(path, G)
    return path
