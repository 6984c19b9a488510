"""The tools against the numbers of spec section 7: spectra smoothing and sources, video keyframes."""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import torch

from sg3.tools import spectra


def test_heatmap_smoothing_sigma_is_spectrum_size_over_image_size():
    # Spec 7 (avg_spectra heatmap): 10*log10, fftshift, wrap one row/col, sigma = S/image_size * smooth,
    # with S the spectrum's size (interp * image_size), not the size after the wrap.
    rng = np.random.RandomState(0)
    spectrum = rng.uniform(0.5, 2.0, (32, 32))
    h = np.fft.fftshift(10 * np.log10(spectrum))
    h = np.concatenate([h, h[:1]], axis=0)
    h = np.concatenate([h, h[:, :1]], axis=1)
    want = scipy.ndimage.gaussian_filter(h, sigma=32 / 16 * 1.25, mode="nearest")
    np.testing.assert_allclose(spectra.spectrum_db(spectrum, 16, smooth=1.25), want, rtol=0, atol=1e-12)


class _RecordingG(torch.nn.Module):
    """A stand-in generator that records the z and c it is called with."""

    z_dim, c_dim = 5, 7

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def forward(self, z, c, **kwargs):
        self.calls.append((z.double().numpy(), c.numpy()))
        return torch.zeros(z.shape[0], 3, 4, 4)


def test_generator_source_draws_z_then_class_from_the_seeds_random_state(monkeypatch):
    # Spec 7: generator source uses seeds seed + i, the random one-hot class from the same RandomState.
    G = _RecordingG()
    monkeypatch.setattr(spectra, "load_network", lambda path, device: G)
    _, batches = spectra.image_source("net.pt", num=6, seed=10, device=torch.device("cpu"))
    assert sum(b.shape[0] for b in batches()) == 6
    assert len(G.calls) == 6
    for i, (z, c) in enumerate(G.calls):
        rnd = np.random.RandomState(10 + i)
        np.testing.assert_allclose(z, rnd.randn(1, G.z_dim).astype(np.float32), rtol=0, atol=0)
        want = np.zeros((1, G.c_dim), np.float32)
        want[0, rnd.randint(G.c_dim)] = 1
        np.testing.assert_array_equal(c, want)
