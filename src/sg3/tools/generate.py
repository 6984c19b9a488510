"""`sg3-generate`: images from a network, one PNG per seed or a single grid.

Example: `sg3-generate --network net.pt --seeds 0-7 --trunc 0.7 --outdir out` writes
`out/seed0000.png` ...; `--grid 4x2 --output grid.png` writes one grid of the 8 seeds instead (or
`--grid 4x2 --outdir out`: `out/grid.png`). Seeds are
deterministic as in the official tool: `z = RandomState(seed).randn(1, z_dim)`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm

from sg3.tools.cli_common import (
    CliError,
    ToolParser,
    check_device,
    check_image_output,
    class_labels,
    load_network,
    output_folder,
    parse_pair,
    parse_seeds,
    require_input_transform,
    seed_latent,
    set_user_transform,
    to_uint8,
    tool_main,
)

__all__ = ["main", "generate", "make_grid", "parse_grid"]

NOISE_MODES = ("const", "random", "none")  # StyleGAN2 noise inputs


def parse_grid(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H)."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
        if w < 1 or h < 1:
            raise ValueError
        return w, h
    except ValueError:
        raise CliError(f"--grid: expected WxH with positive integers like 4x2, got {text!r}") from None


def make_grid(images: np.ndarray, gw: int, gh: int) -> np.ndarray:
    """Tile `[N, H, W, C]` uint8 images, `N = gw * gh`, into a `gh x gw` grid (row by row).

    Raises:
        ValueError: the number of images is not the number of cells.
    """
    n, h, w, c = images.shape
    if n != gw * gh:
        raise ValueError(f"make_grid: {n} images for the {gw}x{gh} grid's {gw * gh} cells")
    grid = np.zeros((gh * h, gw * w, c), dtype=np.uint8)
    for i in range(n):
        y, x = divmod(i, gw)
        grid[y * h : (y + 1) * h, x * w : (x + 1) * w] = images[i]
    return grid


def to_pil(img: np.ndarray) -> PIL.Image.Image:
    """HWC uint8 (C = 1, 3 or 4) to a PIL image."""
    return PIL.Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)


def check_settings(noise_mode: str, truncation_cutoff: int | None) -> None:
    """Raise a CliError naming the flag unless `generate` accepts `noise_mode` and `truncation_cutoff`."""
    if noise_mode not in NOISE_MODES:
        raise CliError(f"--noise-mode: expected {', '.join(NOISE_MODES)}, got {noise_mode!r}")
    if truncation_cutoff is not None and truncation_cutoff < 0:
        raise CliError(f"--trunc-cutoff must be >= 0 (number of leading ws), got {truncation_cutoff}")


@torch.no_grad()
def generate(
    G: torch.nn.Module,
    seeds: list[int],
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
    noise_mode: str = "const",
    translate: tuple[float, float] = (0.0, 0.0),
    rotate: float = 0.0,
    progress: bool = True,
) -> np.ndarray:
    """Images `[len(seeds), H, W, C]` uint8, one per seed.

    Args:
        G: Generator (StyleGAN3 or StyleGAN2).
        seeds: Seeds; each gives `RandomState(seed).randn(1, z_dim)`.
        truncation_psi: Truncation strength (1 = none).
        truncation_cutoff: Truncate only the first this many ws (None = all).
        class_idx: Class of a conditional network (required there; None otherwise).
        noise_mode: StyleGAN2 noise: 'const', 'random' or 'none' (ignored by StyleGAN3).
        translate: Input-transform translation (x, y) in image units (StyleGAN3 only).
        rotate: Input-transform rotation in degrees (StyleGAN3 only).
        progress: Show a progress bar.
    """
    check_settings(noise_mode, truncation_cutoff)
    dev = next(G.parameters()).device
    set_user_transform(G, translate, rotate)
    c = class_labels(G, class_idx).to(dev)
    out = []
    for seed in tqdm(seeds, desc="generate", disable=not progress, leave=False):
        z = seed_latent(seed, G.z_dim).to(dev)
        img = G(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, noise_mode=noise_mode
        )
        out.append(to_uint8(img)[0])
    return np.stack(out)


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="sg3-generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--network", required=True, help="sg3 .ckpt, exported .pt or official .pkl")
    p.add_argument("--seeds", required=True, help="seeds, e.g. 0,1,4-6")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (1 = none)")
    p.add_argument("--trunc-cutoff", type=int, default=None, help="truncate only the first N ws")
    p.add_argument("--class", dest="class_idx", type=int, default=None, help="class label (conditional nets)")
    p.add_argument("--noise-mode", default="const", choices=NOISE_MODES, help="StyleGAN2 noise inputs")
    p.add_argument("--translate", default="0,0", help="input translation x,y in image units (StyleGAN3)")
    p.add_argument("--rotate", type=float, default=0.0, help="input rotation in degrees (StyleGAN3)")
    p.add_argument("--outdir", default=None, help="folder for seedNNNN.png files (with --grid: for grid.png)")
    p.add_argument("--grid", default=None, help="write one WxH grid image instead, one seed per cell")
    p.add_argument("--output", default=None, help="grid image path (with --grid; or --outdir for grid.png)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p


def _run(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    grid = parse_grid(args.grid) if args.grid else None
    if grid is None and not args.outdir:
        raise CliError(
            "pass --outdir DIR (one PNG per seed) or --grid WxH with --output FILE or --outdir DIR"
        )
    if grid is None and args.output:
        raise CliError(f"--output {args.output!r} names the --grid image; without --grid pass only --outdir")
    if grid is not None and args.outdir and args.output:
        raise CliError(
            f"--grid writes one image: to --output {args.output!r} or to --outdir {args.outdir!r} as "
            f"grid.png; pass one of them, not both"
        )
    if grid is not None and len(seeds) != grid[0] * grid[1]:
        cells = grid[0] * grid[1]
        raise CliError(
            f"--grid {grid[0]}x{grid[1]} has {cells} cells but --seeds {args.seeds} gives "
            f"{len(seeds)} seeds; "
            f"pass one seed per cell (e.g. --seeds 0-{cells - 1}) or change --grid"
        )
    check_settings(args.noise_mode, args.trunc_cutoff)
    translate = parse_pair(args.translate, "--translate")
    device = check_device(args.device)
    output = None
    if grid is not None:
        output = Path(args.output) if args.output else Path(args.outdir) / "grid.png"
        check_image_output(output, "--output")
    folder = output.parent if output is not None else Path(args.outdir)
    with output_folder(folder) as out:  # before the work: a bad path fails at once
        G = load_network(args.network, device)
        if translate != (0, 0) or args.rotate:
            moved = [f"--translate {args.translate}"] * (translate != (0, 0))
            require_input_transform(G, " ".join(moved + [f"--rotate {args.rotate:g}"] * bool(args.rotate)))
        images = generate(
            G, seeds, args.trunc, args.trunc_cutoff, args.class_idx, args.noise_mode, translate, args.rotate
        )
        if grid is not None:
            to_pil(make_grid(images, *grid)).save(output)
            print(f"wrote {output}")
        else:
            for seed, img in zip(seeds, images):
                to_pil(img).save(out / f"seed{seed:04d}.png")
            print(f"wrote {len(seeds)} images to {out}")
    return 0


main = tool_main(build_parser, _run, "sg3-generate")


if __name__ == "__main__":
    sys.exit(main())
