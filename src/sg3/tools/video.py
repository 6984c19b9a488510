"""`sg3-video`: latent interpolation videos and, for StyleGAN3, translation/rotation videos.

Examples:
  sg3-video --network net.pt --seeds 0-31 --grid 4x2 --output lerp.mp4          # looping cubic latent walk
  sg3-video --network net.pt --seeds 3 --mode rotate --frames 120 --output rot.mp4
MP4 is written through imageio's packaged ffmpeg (libx264); when that is missing, or the output ends
in .gif, a GIF is written instead.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import scipy.interpolate
import torch
from tqdm.auto import tqdm

from sg3.tools.cli_common import (
    CliError,
    ToolParser,
    check_device,
    class_labels,
    load_network,
    output_folder,
    parse_seeds,
    require_input_transform,
    seed_latent,
    set_user_transform,
    to_uint8,
    tool_main,
)
from sg3.tools.generate import make_grid, parse_grid

__all__ = ["main", "keyframes_per_cell", "latent_frames", "transform_frames", "write_video"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".gif")  # libx264 containers, and GIF
INTERPOLATIONS = ("cubic", "linear")  # latent walk (scipy.interpolate.interp1d kinds)


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write HWC uint8 frames as MP4 (libx264) or GIF; returns the path actually written.

    Falls back to a GIF next to the requested path when the ffmpeg writer is unavailable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [f[:, :, :3] if f.shape[2] >= 3 else np.repeat(f, 3, axis=2) for f in frames]
    if path.suffix.lower() != ".gif":
        try:
            with imageio.get_writer(path, mode="I", fps=fps, codec="libx264", bitrate="12M",
                                    macro_block_size=1) as w:  # fmt: skip
                for f in frames:
                    w.append_data(f)
            return path
        except (ImportError, RuntimeError, OSError, ValueError) as e:
            path = path.with_suffix(".gif")
            print(f"sg3-video: MP4 writer unavailable ({e}); writing {path} instead", file=sys.stderr)
    imageio.mimsave(path, frames, format="GIF", duration=1000 / fps, loop=0)
    return path


def keyframes_per_cell(
    num_seeds: int,
    grid: tuple[int, int],
    kind: str = "cubic",
    loop: bool = True,
    num_keyframes: int | None = None,
) -> int:
    """The keyframes K per grid cell of a latent walk (see `latent_frames`), checked before any network work.

    Args:
        num_seeds: Number of keyframe seeds given.
        grid, kind, loop, num_keyframes: As for `latent_frames`.

    Raises:
        CliError: an unknown `kind`, seeds that do not fill the cells, or too few keyframes to move
            (2; 4 for a cubic walk that does not loop).
    """
    if kind not in INTERPOLATIONS:
        raise CliError(f"--kind: expected {' or '.join(INTERPOLATIONS)}, got {kind!r}")
    gw, gh = grid
    cells = gw * gh
    if num_keyframes is None:
        if num_seeds % cells:
            raise CliError(
                f"--seeds: {num_seeds} seed(s) do not divide into the {gw}x{gh} grid's {cells} cells; "
                f"pass a multiple of {cells} seeds, or --num-keyframes K to cycle them"
            )
        k = max(num_seeds // cells, 2 if not loop else 1)
    elif num_keyframes < 1:
        raise CliError(f"--num-keyframes must be >= 1, got {num_keyframes}")
    else:
        k = num_keyframes
    if not loop and k < 2:
        raise CliError(f"--no-loop needs >= 2 keyframes per cell, got {k}")
    if k < 2:  # a loop through one keyframe: every frame the same still image
        raise CliError(
            f"--seeds: {num_seeds} seed(s) for the {gw}x{gh} grid give 1 keyframe per cell, so the walk "
            f"would not move; pass at least {2 * cells} seeds or --num-keyframes 2 (or more) to cycle them"
        )
    if kind == "cubic" and not loop and k < 4:
        raise CliError(
            f"--kind cubic with --no-loop needs >= 4 keyframes per cell, got {k}; add seeds or use linear"
        )
    return k


@torch.no_grad()
def latent_frames(
    G: torch.nn.Module, seeds: list[int], grid: tuple[int, int], w_frames: int, kind: str = "cubic",
    loop: bool = True, psi: float = 1.0, class_idx: int | None = None, progress: bool = True,
    num_keyframes: int | None = None, shuffle_seed: int | None = None,
) -> list[np.ndarray]:  # fmt: skip
    """Frames of a latent walk through the seeds' w vectors, one walk per grid cell.

    Args:
        G: Generator.
        seeds: Keyframe seeds, cycled to fill K*W*H; cell (y, x) uses entries [(y*W + x)*K, ... + K).
        grid: (W, H) cells.
        w_frames: Frames per transition between two keyframes.
        kind: Interpolation: 'cubic' or 'linear'.
        loop: Return to the first keyframe seamlessly (else stop at the last one).
        psi: Truncation psi.
        class_idx: Class for conditional networks.
        progress: Progress bar.
        num_keyframes: Keyframes K per cell; None = len(seeds) / (W*H), which must then be a whole number.
        shuffle_seed: Shuffle the cycled seeds with `RandomState(shuffle_seed)`; None keeps their order.
    """
    gw, gh = grid
    cells = gw * gh
    k = keyframes_per_cell(len(seeds), grid, kind, loop, num_keyframes)
    all_seeds = [seeds[i % len(seeds)] for i in range(k * cells)]
    if shuffle_seed is not None:
        np.random.RandomState(shuffle_seed).shuffle(all_seeds)
    dev = next(G.parameters()).device
    z = torch.cat([seed_latent(s, G.z_dim) for s in all_seeds]).to(dev)
    c = class_labels(G, class_idx, len(all_seeds)).to(dev)
    ws = G.mapping(z, c, truncation_psi=psi).cpu().numpy().reshape(cells, k, G.num_ws, -1)  # [cell, K, ws, w]
    if loop:
        wraps = 2
        x = np.arange(-k * wraps, k * (wraps + 1))  # keyframes tiled so the walk loops seamlessly
        ys = np.tile(ws, (1, 2 * wraps + 1, 1, 1))
        n_frames = k * w_frames
    else:
        x, ys, n_frames = np.arange(k), ws, (k - 1) * w_frames + 1
    interp = [scipy.interpolate.interp1d(x, ys[i], kind=kind, axis=0) for i in range(cells)]
    frames = []
    for f in tqdm(range(n_frames), desc="video", disable=not progress, leave=False):
        w = torch.from_numpy(np.stack([fn(f / w_frames) for fn in interp])).float().to(dev)
        imgs = to_uint8(G.synthesis(w, noise_mode="const"))
        frames.append(make_grid(imgs, gw, gh))
    return frames


@torch.no_grad()
def transform_frames(
    G: torch.nn.Module, seeds: list[int], grid: tuple[int, int], mode: str, num_frames: int,
    amount: float = 0.125, psi: float = 1.0, class_idx: int | None = None, progress: bool = True,
) -> list[np.ndarray]:  # fmt: skip
    """Frames that move the input grid (StyleGAN3): 'translate' (circle of radius `amount` image
    units) or 'rotate' (one full turn); the latents stay fixed, so an equivariant generator shows the
    same content moving rigidly."""
    gw, gh = grid
    dev = next(G.parameters()).device
    chosen = [seeds[i % len(seeds)] for i in range(gw * gh)]
    z = torch.cat([seed_latent(s, G.z_dim) for s in chosen]).to(dev)
    ws = G.mapping(z, class_labels(G, class_idx, len(chosen)).to(dev), truncation_psi=psi)
    frames = []
    try:
        for f in tqdm(range(num_frames), desc=mode, disable=not progress, leave=False):
            a = 2 * math.pi * f / num_frames
            if mode == "translate":
                set_user_transform(G, (amount * math.cos(a) - amount, amount * math.sin(a)), 0)
            else:
                set_user_transform(G, (0, 0), math.degrees(a))
            frames.append(make_grid(to_uint8(G.synthesis(ws, noise_mode="const")), gw, gh))
    finally:
        set_user_transform(G, (0, 0), 0)
    return frames


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="sg3-video", description=__doc__.split("\n\n")[0])
    p.add_argument("--network", required=True, help="sg3 .ckpt, exported .pt or official .pkl")
    p.add_argument("--seeds", required=True, help="seeds, e.g. 0-31")
    p.add_argument("--mode", default="latent", choices=["latent", "translate", "rotate"],
                   help="latent walk, or move the input grid (StyleGAN3)")  # fmt: skip
    p.add_argument("--grid", default="1x1", help="WxH cells")
    p.add_argument(
        "--num-keyframes", type=int, default=None, help="keyframes per cell (default: seeds/cells)"
    )
    p.add_argument("--shuffle-seed", type=int, default=None, help="shuffle the seeds with this random seed")
    p.add_argument("--w-frames", type=int, default=120, help="frames per latent transition")
    p.add_argument("--kind", default="cubic", choices=INTERPOLATIONS, help="latent interpolation")
    p.add_argument("--no-loop", action="store_true", help="do not return to the first keyframe")
    p.add_argument("--frames", type=int, default=120, help="frames of a translate/rotate video")
    p.add_argument("--amount", type=float, default=0.125, help="translation radius in image units")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi")
    p.add_argument("--class", dest="class_idx", type=int, default=None, help="class (conditional nets)")
    p.add_argument("--fps", type=int, default=60, help="frames per second")
    p.add_argument("--output", required=True, help=".mp4 (also .mov, .mkv) or .gif")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p


def _run(args: argparse.Namespace) -> int:
    seeds, grid = parse_seeds(args.seeds), parse_grid(args.grid)
    if args.w_frames < 1 or args.frames < 1:
        raise CliError(f"--w-frames and --frames must be >= 1, got {args.w_frames}, {args.frames}")
    if args.fps < 1:
        raise CliError(f"--fps must be >= 1, got {args.fps}")
    suffix = Path(args.output).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise CliError(
            f"--output {args.output!r}: cannot write a video ending in {suffix or '(no suffix)'!r}; "
            f"use {', '.join(VIDEO_SUFFIXES)}"
        )
    if args.mode == "latent":
        keyframes_per_cell(len(seeds), grid, args.kind, not args.no_loop, args.num_keyframes)
    device = check_device(args.device)
    with output_folder(Path(args.output).parent):  # before the work: a bad path fails at once
        G = load_network(args.network, device)
        if args.mode == "latent":
            frames = latent_frames(G, seeds, grid, args.w_frames, args.kind, not args.no_loop, args.trunc,
                                   args.class_idx, num_keyframes=args.num_keyframes,
                                   shuffle_seed=args.shuffle_seed)  # fmt: skip
        else:
            require_input_transform(G, f"--mode {args.mode}")
            frames = transform_frames(
                G, seeds, grid, args.mode, args.frames, args.amount, args.trunc, args.class_idx
            )
        out = write_video(frames, args.output, args.fps)
    print(f"wrote {out} ({len(frames)} frames)")
    return 0


main = tool_main(build_parser, _run, "sg3-video")


if __name__ == "__main__":
    sys.exit(main())
