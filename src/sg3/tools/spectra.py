"""`sg3-spectra`: average power spectra of datasets and generators (heatmaps, slices, raw arrays).

Per image: whiten with the source's pixel mean/std, multiply by a separable Kaiser window (beta 8,
each 1-D window scaled to unit energy), zero-pad to `interp` times the size, take `|FFT2|^2`, average
over channels and images (float64). Example:
  sg3-spectra --source data/dataset.json --source net.pt --num 1000 --outdir spectra
writes `<name>-spectrum.npz` (`spectrum`, `image_size`), `<name>-heatmap.png` per source and a
`slices.png` comparing the 0 and 45 degree profiles of all sources.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.ndimage  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from sg3.tools.cli_common import (  # noqa: E402
    CliError,
    ToolParser,
    check_device,
    class_labels,
    load_network,
    output_folder,
    tool_main,
)

__all__ = ["main", "average_spectrum", "spectrum_db", "slices", "image_source"]

NETWORK_SUFFIXES = (".pt", ".ckpt", ".pkl")


def image_source(spec: str, num: int, seed: int, device: torch.device) -> tuple[str, Callable[[], Iterator]]:
    """A named factory of uint8 image batches `[N, C, H, W]` from a network file or a dataset."""
    name = Path(spec.rstrip("/")).stem if not spec.startswith("demo") else spec.replace(":", "-")
    if spec.endswith(NETWORK_SUFFIXES):
        G = load_network(spec, device, arg="--source")

        def gen_batches() -> Iterator[torch.Tensor]:
            for i in range(num):
                rnd = np.random.RandomState(seed + i)  # z, then the class, from the seed's own state
                z = torch.from_numpy(rnd.randn(1, G.z_dim)).float().to(device)
                cls = int(rnd.randint(G.c_dim)) if G.c_dim else None
                with torch.no_grad():
                    img = G(z, class_labels(G, cls).to(device))
                yield (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu()

        return name, gen_batches
    from sg3.data.datamodule import ShardDataModule

    dm = ShardDataModule(urls=spec, batch_size=32, num_workers=0, shuffle_buffer=0)
    name = dm.name or name

    def data_batches() -> Iterator[torch.Tensor]:
        left = num
        for img, _c in dm.exactly_once_loader(32):
            if left <= 0:
                return
            yield img[:left]
            left -= len(img[:left])

    return name, data_batches


def _kaiser(n: int, beta: float) -> np.ndarray:
    w = np.kaiser(n, beta)
    return w / np.sqrt(np.sum(w**2))


def average_spectrum(
    batches: Callable[[], Iterator], beta: float = 8, interp: int = 4
) -> tuple[np.ndarray, int]:
    """Average power spectrum `[interp*S, interp*S]` of the images a batch factory yields (one pass).

    The whitening mean and std are those of all the images, known only at the end; the spectrum is still
    taken in the same pass: for any constant `c`, `F((x - mean) w) = F((x - c) w) - (mean - c) F(w)`, so
    the sums over images and channels of `|F((x - c) w)|^2` and of `F((x - c) w)` give the spectrum of the
    whitened images. `c` is the first batch's pixel mean, close to `mean`, so the correction stays small.

    Returns:
        (spectrum, image_size).
    """
    total, sq, count = 0.0, 0.0, 0
    power = field = window = None
    shift, images, planes, size = 0.0, 0, 0, 0
    for x in batches():
        x = x.double()
        total, sq, count = total + x.sum().item(), sq + x.square().sum().item(), count + x.numel()
        if window is None:
            size, shift = x.shape[-1], x.mean().item()
            w = torch.from_numpy(_kaiser(size, beta))
            window = w[:, None] * w[None, :]  # [S, S]
        f = torch.fft.fft2((x - shift) * window, s=(size * interp, size * interp))  # zero pad right/bottom
        p = f.abs().square().mean(dim=1).sum(dim=0)  # [S', S'] summed over images, mean over channels
        a = f.sum(dim=(0, 1))  # [S', S'] complex, summed over images and channels
        power, field = (p, a) if power is None else (power + p, field + a)
        images, planes = images + x.shape[0], planes + x.shape[0] * x.shape[1]
    if count == 0:
        raise CliError("the source yielded no images")
    mean = total / count
    std = max(np.sqrt(sq / count - mean**2), 1e-8)
    d, fw = mean - shift, torch.fft.fft2(window, s=(size * interp, size * interp))
    channels = planes / images
    cross = (2 * d * (fw.conj() * field).real - planes * d**2 * fw.abs().square()) / channels
    return ((power - cross) / std**2 / images).numpy(), int(size)


def spectrum_db(spectrum: np.ndarray, image_size: int, smooth: float = 1.25) -> np.ndarray:
    """Heatmap form: 10*log10, fftshift, wrap one row/column, Gaussian smoothing sigma = S/size*smooth."""
    h = np.fft.fftshift(10 * np.log10(np.maximum(spectrum, 1e-30)))
    h = np.concatenate([h, h[:1]], axis=0)
    h = np.concatenate([h, h[:, :1]], axis=1)
    if smooth > 0:  # sigma from the spectrum's size S (before the wrap): S / image_size * smooth
        sigma = spectrum.shape[0] / image_size * smooth
        h = scipy.ndimage.gaussian_filter(h, sigma=sigma, mode="nearest")
    return h


def slices(spectrum: np.ndarray, image_size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """0 degree (centre row) and 45 degree (diagonal) profiles in dB vs frequency (cycles per image)."""
    h = spectrum_db(spectrum, image_size, smooth=0)
    c = h.shape[0] // 2
    freqs = (np.arange(h.shape[0]) - c) * image_size / (h.shape[0] - 1)
    return {"0deg": (freqs[c:], h[c, c:]), "45deg": (freqs[c:] * np.sqrt(2), np.diagonal(h)[c:])}


def save_heatmap(spectrum: np.ndarray, image_size: int, path: Path, title: str) -> None:
    h = spectrum_db(spectrum, image_size)
    half = image_size / 2
    fig, ax = plt.subplots(figsize=(4.2, 4))
    im = ax.imshow(h, extent=[-half, half, -half, half], origin="lower", cmap="inferno", vmin=-40, vmax=20)
    ax.contour(h, levels=np.linspace(-40, 20, 13), extent=[-half, half, -half, half], colors="w",
               linewidths=0.3, alpha=0.5)  # fmt: skip
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("cycles / image")
    fig.colorbar(im, ax=ax, label="dB")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_slices(results: dict[str, tuple[np.ndarray, int]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for name, (spec, size) in results.items():
        for ax, (key, (f, v)) in zip(axes, slices(spec, size).items()):
            ax.plot(f, v, label=name, lw=1)
            ax.set_title(f"{key} slice", fontsize=9)
            ax.set_xlabel("cycles / image")
    axes[0].set_ylabel("power (dB)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="sg3-spectra", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--source",
        action="append",
        required=True,
        help="network (.pt/.ckpt/.pkl) or dataset (dataset.json, shards folder, demo:RES); repeatable",
    )
    p.add_argument("--num", type=int, default=1000, help="images per source")
    p.add_argument("--seed", type=int, default=0, help="first seed for generators")
    p.add_argument("--beta", type=float, default=8.0, help="Kaiser window beta")
    p.add_argument("--interp", type=int, default=4, help="zero-padding factor")
    p.add_argument("--outdir", required=True, help="folder for the .npz arrays and .png plots")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p  # fmt: skip


def _counted(batches: Callable[[], Iterator], bar: tqdm) -> Callable[[], Iterator]:
    """`batches` advancing a progress bar by the images of each batch."""

    def gen() -> Iterator:
        for x in batches():
            bar.update(len(x))
            yield x

    return gen


def _run(args: argparse.Namespace) -> int:
    if args.num < 1 or args.interp < 1:
        raise CliError(f"--num and --interp must be >= 1, got {args.num}, {args.interp}")
    device = check_device(args.device)
    with output_folder(args.outdir) as out:  # before the work: a bad path fails at once
        _spectra(args, device, out)
    return 0


def _spectra(args: argparse.Namespace, device: torch.device, out: Path) -> None:
    results: dict[str, tuple[np.ndarray, int]] = {}
    for spec in args.source:
        try:
            name, batches = image_source(spec, args.num, args.seed, device)
            base, i = name, 2
            while name in results:  # e.g. two runs' network-snapshot-001000.pt: keep both
                name, i = f"{base}-{i}", i + 1
            with tqdm(total=args.num, desc=f"spectra {name}", unit="img", leave=False) as bar:
                spectrum, size = average_spectrum(_counted(batches, bar), args.beta, args.interp)
        except FileNotFoundError as e:
            raise CliError(
                f"--source {spec}: not found ({e.filename or e}); expected a network (.pt/.ckpt/.pkl) "
                "or a dataset (dataset.json, shards folder, shard pattern, demo:RES)"
            ) from e
        results[name] = (spectrum, size)
        np.savez(out / f"{name}-spectrum.npz", spectrum=spectrum, image_size=size)
        save_heatmap(spectrum, size, out / f"{name}-heatmap.png", name)
        print(f"{name}: {out / f'{name}-spectrum.npz'}, {out / f'{name}-heatmap.png'}")
    save_slices(results, out / "slices.png")
    print(f"slices: {out / 'slices.png'}")


main = tool_main(build_parser, _run, "sg3-spectra")


if __name__ == "__main__":
    sys.exit(main())
