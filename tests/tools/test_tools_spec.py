"""The tools against the numbers of spec section 7: spectra smoothing and sources, video keyframes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from sg3.tools import spectra, video
from sg3.tools.cli_common import CliError


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
    monkeypatch.setattr(spectra, "load_network", lambda path, device, **kw: G)
    _, batches = spectra.image_source("net.pt", num=6, seed=10, device=torch.device("cpu"))
    assert sum(b.shape[0] for b in batches()) == 6
    assert len(G.calls) == 6
    for i, (z, c) in enumerate(G.calls):
        rnd = np.random.RandomState(10 + i)
        np.testing.assert_allclose(z, rnd.randn(1, G.z_dim).astype(np.float32), rtol=0, atol=0)
        want = np.zeros((1, G.c_dim), np.float32)
        want[0, rnd.randint(G.c_dim)] = 1
        np.testing.assert_array_equal(c, want)


class _KeyframeG(torch.nn.Module):
    """A stand-in generator whose 2x2 image shows w[0] / 20 (so a frame's pixel names its seed)."""

    z_dim = w_dim = 4
    c_dim, num_ws = 0, 1

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.mapping = lambda z, c, truncation_psi=1: z[:, None, :]  # [N, num_ws, w_dim]
        self.synthesis = lambda w, noise_mode="const": (
            (w[:, 0, 0] / 20).reshape(-1, 1, 1, 1).expand(-1, 3, 2, 2)
        )


def _keyframe_seeds(frames: list[np.ndarray], w_frames: int, cells: int) -> list[list[int]]:
    """Seed shown by each cell at each keyframe (frame j * w_frames), read back from the pixel value."""
    out = []
    for cell in range(cells):
        vals = [int(frames[j][0, 2 * cell, 0]) for j in range(0, len(frames), w_frames)]
        out.append([int(round((v - 128) / 127.5 * 20)) for v in vals])
    return out


@pytest.fixture
def seed_is_latent(monkeypatch):
    monkeypatch.setattr(video, "seed_latent", lambda s, z_dim: torch.full((1, z_dim), float(s)))


def test_video_keyframes_cycle_seeds_per_cell(seed_is_latent):
    # Spec 7 (gen_video): K keyframes per cell, seeds cycled to fill K*W*H; cell (y, x) uses entries
    # [(y*W + x)*K, ... + K); frame f samples f / w_frames for f in [0, K*w_frames).
    G = _KeyframeG()
    frames = video.latent_frames(G, [0, 1, 2], (1, 1), 2, num_keyframes=4, progress=False)
    assert len(frames) == 4 * 2
    assert _keyframe_seeds(frames, 2, 1) == [[0, 1, 2, 0]]
    frames = video.latent_frames(G, [0, 1, 2, 3, 4, 5], (2, 1), 3, progress=False)
    assert len(frames) == 3 * 3 and _keyframe_seeds(frames, 3, 2) == [[0, 1, 2], [3, 4, 5]]


def test_video_shuffle_seed_and_seed_count_check(seed_is_latent):
    G = _KeyframeG()
    frames = video.latent_frames(G, list(range(6)), (2, 1), 1, shuffle_seed=3, progress=False)
    want = list(range(6))
    np.random.RandomState(3).shuffle(want)
    assert _keyframe_seeds(frames, 1, 2) == [want[:3], want[3:]]
    # Seeds that do not divide into the cells would be dropped silently: refused, as in the official tool.
    with pytest.raises(CliError, match="5 seed.*2x2 grid's 4 cells.*--num-keyframes"):
        video.latent_frames(G, list(range(5)), (2, 2), 2, progress=False)


def test_seed_latent_user_transform_and_quantization_follow_gen_images():
    from sg3.modules.generator import Generator
    from sg3.tools.cli_common import seed_latent, set_user_transform, to_uint8

    # z = RandomState(seed).randn(1, z_dim), float64 cast to float32.
    np.testing.assert_array_equal(
        seed_latent(42, 6).numpy(), np.random.RandomState(42).randn(1, 6).astype(np.float32)
    )
    # The transform buffer holds the inverse of [[cos a, sin a, tx], [-sin a, cos a, ty], [0, 0, 1]].
    G = Generator(
        z_dim=4, c_dim=0, w_dim=4, img_resolution=16, img_channels=3, channel_base=64, channel_max=8
    )
    set_user_transform(G, (0.1, -0.2), 30)
    a = np.radians(30)
    m = np.array([[np.cos(a), np.sin(a), 0.1], [-np.sin(a), np.cos(a), -0.2], [0, 0, 1]])
    np.testing.assert_allclose(G.synthesis.input.transform.numpy(), np.linalg.inv(m), atol=1e-7)
    # uint8((x * 127.5 + 128).clamp(0, 255)), truncating toward zero; NCHW -> NHWC.
    x = torch.tensor([-1.5, -1.0, -0.004, 0.0, 0.5, 0.999, 1.0, 2.0]).reshape(1, 1, 2, 4)
    got = to_uint8(x).reshape(-1).tolist()
    assert got == [0, 0, 127, 128, 191, 255, 255, 255]


def test_average_spectrum_matches_the_formula():
    # Whiten by the source's pixel mean/std, separable Kaiser(beta) with each 1-D window at unit energy,
    # zero pad right/bottom to interp*size, |FFT2|^2, mean over channels then over images (float64).
    rng = np.random.RandomState(1)
    imgs = rng.randint(0, 256, (3, 2, 8, 8)).astype(np.uint8)
    spec, size = spectra.average_spectrum(
        lambda: iter([torch.from_numpy(imgs[:2]), torch.from_numpy(imgs[2:])])
    )
    x = imgs.astype(np.float64)
    x = (x - x.mean()) / x.std()
    w = np.kaiser(8, 8)
    w /= np.sqrt(np.sum(w**2))
    x = x * np.outer(w, w)
    want = (np.abs(np.fft.fft2(x, s=(32, 32))) ** 2).mean(axis=1).mean(axis=0)
    assert size == 8 and spec.shape == (32, 32)
    np.testing.assert_allclose(spec, want, rtol=1e-10)


def _two_pass_spectrum(imgs: np.ndarray, interp: int, beta: float = 8) -> np.ndarray:
    """The spectrum as the spec writes it: whiten with the mean/std of all pixels, window, pad, |FFT2|^2."""
    x = imgs.astype(np.float64)
    x = (x - x.mean()) / x.std()
    w = np.kaiser(x.shape[-1], beta)
    w /= np.sqrt(np.sum(w**2))
    s = x.shape[-1] * interp
    return (np.abs(np.fft.fft2(x * np.outer(w, w), s=(s, s))) ** 2).mean(axis=1).mean(axis=0)


def test_average_spectrum_in_one_pass_keeps_the_numbers_when_the_first_batch_is_atypical():
    # The one-pass sums are centred on the first batch's mean; a dark first batch before bright, nearly
    # flat ones (mean far from it, small std) must still give the whitened spectrum.
    rng = np.random.RandomState(2)
    dark = rng.randint(0, 40, (1, 3, 8, 8))
    bright = 200 + rng.randint(-2, 3, (5, 3, 8, 8))
    imgs = np.concatenate([dark, bright]).astype(np.uint8)
    calls = []

    def batches():
        calls.append(1)
        return iter([torch.from_numpy(imgs[:1]), torch.from_numpy(imgs[1:4]), torch.from_numpy(imgs[4:])])

    spec, size = spectra.average_spectrum(batches, interp=2)
    assert calls == [1]  # one pass over the images
    np.testing.assert_allclose(spec, _two_pass_spectrum(imgs, 2), rtol=1e-9, atol=1e-12 * spec.max())


def test_spectra_generates_each_image_once_and_keeps_the_two_pass_numbers(sg3_file, tmp_path, monkeypatch):
    """sg3-spectra generated every network image twice: one pass for the pixel mean/std, one for the FFTs."""
    real_load = spectra.load_network
    images = []

    def recording_load(path, device, **kw):
        G = real_load(path, device, **kw)
        G.register_forward_hook(lambda module, args, out: images.append(out.detach().clone()))
        return G

    monkeypatch.setattr(spectra, "load_network", recording_load)
    out = tmp_path / "s"
    args = ["--source", str(sg3_file), "--num", "3", "--seed", "5", "--interp", "2", "--device", "cpu"]
    assert spectra.main([*args, "--outdir", str(out)]) == 0
    assert len(images) == 3  # seeds 5, 6, 7, once each
    imgs = (torch.cat(images) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    with np.load(out / f"{sg3_file.stem}-spectrum.npz") as f:
        np.testing.assert_allclose(f["spectrum"], _two_pass_spectrum(imgs, 2), rtol=1e-10)


def test_cli_defaults_are_the_official_ones():
    from sg3.tools import generate

    g = generate.build_parser().parse_args(["--network", "n.pt", "--seeds", "0"])
    assert (g.trunc, g.noise_mode, g.translate, g.rotate, g.class_idx) == (1.0, "const", "0,0", 0.0, None)
    v = video.build_parser().parse_args(["--network", "n.pt", "--seeds", "0", "--output", "o.mp4"])
    assert (v.grid, v.w_frames, v.trunc, v.fps, v.kind, v.no_loop) == ("1x1", 120, 1.0, 60, "cubic", False)
    assert (v.num_keyframes, v.shuffle_seed) == (None, None)
    s = spectra.build_parser().parse_args(["--source", "n.pt", "--outdir", "o"])
    assert (s.beta, s.interp) == (8.0, 4)
    import inspect

    assert inspect.signature(spectra.spectrum_db).parameters["smooth"].default == 1.25
