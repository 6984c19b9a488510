"""The tools against the numbers of spec section 7: spectra smoothing and sources, video keyframes."""

from __future__ import annotations

import numpy as np
import scipy.ndimage

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
