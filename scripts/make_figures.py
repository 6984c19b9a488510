"""Draw the figures of docs/alias-free.md with the project's own code (filters, schedule, tools).

Usage: python scripts/make_figures.py [--outdir docs/figures] [--skip-sticking]

Figures:
  aliasing_1d.png        pointwise ReLU on samples vs the filtered ReLU (signal, reconstruction, spectra)
  filter_responses.png   Kaiser (T) and jinc (R) filters of real layers: frequency responses
  schedule.png           per-layer cutoff / minimum stopband / sampling rate, 1024 and 256 generators
  sticking.png           sg3-sticking on a tiny StyleGAN2 (const noise) and a tiny StyleGAN3-T (untrained)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sg3.modules.filters import design_lowpass_filter, synthesis_schedule  # noqa: E402

DPI = 72


def _sinc_reconstruct(samples: np.ndarray, rate: float, t: np.ndarray) -> np.ndarray:
    """Ideal band-limited (periodic) reconstruction of samples taken at `rate` per unit on [0, 1)."""
    n = len(samples)
    spec = np.fft.rfft(samples)
    out = np.zeros_like(t)
    for k, c in enumerate(spec):
        w = (1 if k in (0, n // 2) else 2) / n
        out += w * (c.real * np.cos(2 * np.pi * k * t) - c.imag * np.sin(2 * np.pi * k * t))
    return out


def _upfirdn1d(x: np.ndarray, f: np.ndarray, up: int = 1, down: int = 1) -> np.ndarray:
    """Circular upsample (zero insertion, gain up) -> FIR -> downsample on a periodic 1-D signal."""
    y = np.zeros(len(x) * up)
    y[::up] = x * up
    spec = np.fft.fft(y) * np.fft.fft(np.roll(np.pad(f, (0, len(y) - len(f))), -(len(f) // 2)))
    return np.real(np.fft.ifft(spec))[::down]


def figure_aliasing(path: Path) -> tuple[float, float]:
    rate, up = 16, 4  # samples per unit; internal upsampling of the filtered nonlinearity
    nyq = rate // 2
    dense = np.arange(4096) / 4096
    freqs, amps, phases = [1, 2, 3], [1.0, 0.6, 0.45], [0.3, 1.1, 2.0]

    def signal(t):
        return sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in zip(freqs, amps, phases))

    ts = np.arange(rate) / rate
    x = signal(ts)
    naive = np.maximum(x, 0)  # pointwise ReLU on the samples
    # Filtered ReLU: x4 upsample (Kaiser, cutoff 6), ReLU at 64/unit, Kaiser low-pass (cutoff 6,
    # stopband 8 = output Nyquist), keep every 4th sample. Odd tap counts keep the filters zero-phase.
    taps = design_lowpass_filter(up * 12 + 1, cutoff=6, width=4, fs=rate * up).astype(np.float64)
    filtered = _upfirdn1d(np.maximum(_upfirdn1d(x, taps, up=up), 0), taps, down=up)
    relu_dense = np.maximum(signal(dense), 0)
    true_spec = np.fft.rfft(relu_dense) / len(dense)  # spectrum of ReLU(continuous signal)
    k = np.arange(nyq + 1)
    h_down = np.real(
        np.fft.rfft(np.roll(np.pad(taps, (0, 4096 - len(taps))), -(len(taps) // 2)))[:: 4096 // (rate * up)]
    )
    target_naive = true_spec[: nyq + 1]  # what ideal (alias-free) sampling of ReLU(x) would give
    target_filtered = true_spec[: nyq + 1] * h_down[: nyq + 1]  # same, through the low-pass filter
    keep = np.where(np.arange(len(true_spec)) <= nyq, true_spec, 0)
    fig, ax = plt.subplots(2, 2, figsize=(10, 6))
    ax[0, 0].plot(dense, signal(dense), "k", lw=1, label="continuous signal (band-limited to 3)")
    ax[0, 0].plot(ts, x, "o", ms=4, label=f"{rate} samples per unit (Nyquist {nyq})")
    ax[0, 0].set_title("signal and its samples")
    ax[0, 1].plot(dense, relu_dense, color="0.75", lw=3, label="ReLU of the continuous signal")
    ax[0, 1].plot(dense, np.fft.irfft(keep * len(dense)), "k", lw=1, label="... band-limited to Nyquist")
    ax[0, 1].plot(
        dense, _sinc_reconstruct(naive, rate, dense), "r", lw=1, label="ReLU on samples, reconstructed"
    )
    ax[0, 1].plot(dense, _sinc_reconstruct(filtered, rate, dense), "b--", lw=1,
                  label=f"filtered ReLU (x{up} up, ReLU, Kaiser low-pass, down)")  # fmt: skip
    ax[0, 1].set_title("after the nonlinearity")
    kk = np.arange(40)
    ax[1, 0].semilogy(kk, np.abs(true_spec[:40]) + 1e-7, "k.-", lw=1)
    ax[1, 0].axvline(nyq, color="r", ls=":", label="Nyquist of the samples")
    ax[1, 0].set_title("spectrum of ReLU(continuous): energy above Nyquist")
    ax[1, 0].set_xlabel("frequency (cycles per unit)")
    err_naive = np.abs(np.fft.rfft(naive) / rate - target_naive)
    err_filt = np.abs(np.fft.rfft(filtered) / rate - target_filtered)
    ax[1, 1].semilogy(k, err_naive + 1e-7, "r.-", lw=1, label="ReLU on samples: folded-back energy")
    ax[1, 1].semilogy(k, err_filt + 1e-7, "b.-", lw=1, label="filtered ReLU")
    ax[1, 1].semilogy(k, np.abs(target_naive) + 1e-7, "k:", lw=1, label="spectrum of ReLU (reference)")
    ax[1, 1].set_title("aliasing error per frequency (vs the alias-free result)")
    ax[1, 1].set_xlabel("frequency (cycles per unit)")
    for a in ax.flat:
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return float(np.sum(err_naive**2)), float(np.sum(err_filt**2))


def _response_db(taps: np.ndarray, fs: float, n: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    h = np.abs(np.fft.rfft(taps, n))
    return np.fft.rfftfreq(n, 1 / fs), 20 * np.log10(np.maximum(h, 1e-8))


def figure_filters(path: Path) -> None:
    sched_t = synthesis_schedule(256, 3, channel_base=16384)
    sched_r = synthesis_schedule(
        256, 3, channel_base=32768, channel_max=1024, conv_kernel=1, use_radial_filters=True
    )
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    for i in (0, 3, 8, 13):
        spec = sched_t["layers"][i]
        fs = spec.tmp_sampling_rate
        taps = design_lowpass_filter(spec.down_taps, spec.out_cutoff, 2 * spec.out_half_width, fs)
        f, db = _response_db(taps, fs)
        ax[0].plot(f / spec.out_sampling_rate, db, lw=1, label=f"{spec.name} down (fc {spec.out_cutoff:.1f})")
    ax[0].axvline(0.5, color="k", ls=":", lw=0.8)
    ax[0].set(ylim=(-100, 5), xlim=(0, 1), title="T (256): Kaiser down filters",
              xlabel="frequency / output sampling rate", ylabel="dB")  # fmt: skip
    spec = sched_r["layers"][4]
    fs = spec.tmp_sampling_rate
    radial = design_lowpass_filter(spec.down_taps, spec.out_cutoff, 2 * spec.out_half_width, fs, radial=True)
    n = 128
    h = np.fft.fftshift(np.abs(np.fft.fft2(radial.astype(np.float64), (n, n))))
    ext = [-fs / 2, fs / 2, -fs / 2, fs / 2]
    im = ax[1].imshow(20 * np.log10(np.maximum(h, 1e-8)), extent=ext, vmin=-100, vmax=0, cmap="viridis")
    circle = plt.Circle((0, 0), spec.out_cutoff, fill=False, color="w", ls="--", lw=0.8)
    ax[1].add_patch(circle)
    ax[1].set(title=f"R (256) {spec.name}: jinc down filter", xlabel="fx", ylabel="fy")
    fig.colorbar(im, ax=ax[1], label="dB")
    sep = design_lowpass_filter(spec.down_taps, spec.out_cutoff, 2 * spec.out_half_width, fs).astype(
        np.float64
    )
    for name, filt in [
        ("jinc (radial)", radial.astype(np.float64)),
        ("Kaiser (separable)", np.outer(sep, sep)),
    ]:
        hh = np.abs(np.fft.fft2(filt, (n, n)))
        fr = np.fft.fftfreq(n, 1 / fs)[: n // 2]
        diag = np.array([hh[i, i] for i in range(n // 2)])
        ax[2].plot(fr, 20 * np.log10(np.maximum(hh[0, : n // 2], 1e-8)), lw=1, label=f"{name}, 0 deg")
        ax[2].plot(
            fr * np.sqrt(2), 20 * np.log10(np.maximum(diag, 1e-8)), "--", lw=1, label=f"{name}, 45 deg"
        )
    ax[2].axvline(spec.out_cutoff, color="k", ls=":", lw=0.8)
    ax[2].set(ylim=(-100, 5), xlim=(0, fs / 2), title="isotropy: 0 vs 45 degree slices", xlabel="frequency")
    for a in (ax[0], ax[2]):
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def figure_schedule(path: Path) -> None:
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8), sharey=False)
    for a, res in zip(ax, (1024, 256)):
        s = synthesis_schedule(res, 3)
        i = np.arange(len(s["cutoffs"]))
        a.semilogy(i, s["sampling_rates"] / 2, "k-s", ms=3, lw=1, label="sampling rate / 2 (Nyquist)")
        a.semilogy(i, s["stopbands"], "r-^", ms=3, lw=1, label="minimum stopband ft")
        a.semilogy(i, s["cutoffs"], "b-o", ms=3, lw=1, label="cutoff fc")
        a.set(
            title=f"{res}x{res} generator (T)", xlabel="layer index (14 = ToRGB)", ylabel="cycles per image"
        )
        a.set_yscale("log", base=2)
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def figure_sticking(path: Path) -> None:
    from sg3.io import save_generator
    from sg3.modules.generator import Generator
    from sg3.modules.stylegan2 import Generator as StyleGAN2Generator
    from sg3.tools import sticking

    kw = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        save_generator(
            Path(tmp) / "sg2.pt", StyleGAN2Generator(**kw, channel_base=512, channel_max=32).eval()
        )
        torch.manual_seed(0)
        g3 = Generator(**kw, channel_base=1024, channel_max=32).eval()
        with torch.no_grad():
            getattr(g3.synthesis, g3.synthesis.layer_names[-1]).weight.mul_(20)  # visible contrast
        save_generator(Path(tmp) / "sg3.pt", g3)
        args = ["--network", f"{tmp}/sg2.pt", "--label", "StyleGAN2 (untrained, const noise)",
                "--network", f"{tmp}/sg3.pt", "--label", "StyleGAN3-T (untrained)",
                "--paths", "16", "--steps", "12", "--tile", "160", "--output", str(path)]  # fmt: skip
        if sticking.main(args) != 0:
            raise SystemExit("sg3-sticking failed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--outdir", default="docs/figures")
    p.add_argument("--skip-sticking", action="store_true", help="skip the (slower) sticking figure")
    args = p.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    e_naive, e_filt = figure_aliasing(out / "aliasing_1d.png")
    print(f"1-D demo: aliasing energy {e_naive:.2e} (ReLU on samples) vs {e_filt:.2e} (filtered ReLU)")
    figure_filters(out / "filter_responses.png")
    figure_schedule(out / "schedule.png")
    if not args.skip_sticking:
        import sg3.ops

        with sg3.ops.use_impl("ref"):
            figure_sticking(out / "sticking.png")
    print(f"figures in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
