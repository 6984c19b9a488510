"""`sg3-sticking`: the texture-sticking analysis of the StyleGAN3 paper as a tool, with a numeric score.

For `paths` random latent paths (each a straight line between two random w vectors, walked in
`steps` small steps), every frame is generated and all frames are averaged. A generator whose fine
details are tied to pixel coordinates (positional references: padding, fixed noise, a fixed input)
keeps those details in the same place while the latent moves, so the average stays sharp. In an
equivariant generator the details move with the content and the average is blurry.

Sticking score = HF(mean frame) / mean over frames of HF(frame), where HF(x) is the mean squared
high-pass residual `x - blur(x)` (5x5 binomial blur, reflect padding) over pixels and channels.
0 means the details cancel out completely (no sticking); 1 means they are fully pixel-locked.

Example: `sg3-sticking --network sg2.pkl --network sg3t.pkl --output sticking.png` prints one
`name score` line per network and saves, per network, an example frame next to the average frame.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sg3.tools.cli_common import (
    CliError,
    ToolParser,
    check_device,
    check_image_output,
    class_labels,
    load_network,
    output_folder,
    tool_main,
)

__all__ = ["main", "high_frequency_energy", "sticking_analysis", "comparison_image"]


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean squared residual of a 5x5 binomial blur, per image: `[N, C, H, W] -> [N]`."""
    if x.ndim != 4 or min(x.shape[-2:]) < 3:
        raise ValueError(f"x must be images [N, C, H, W] with H, W >= 3, got {tuple(x.shape)}")
    k = torch.tensor([1.0, 4, 6, 4, 1], dtype=x.dtype, device=x.device)
    k = (k[:, None] * k[None, :]) / 256  # [5, 5]
    flat = x.reshape(-1, 1, *x.shape[-2:])  # [N*C, 1, H, W]
    blur = F.conv2d(F.pad(flat, (2, 2, 2, 2), mode="reflect"), k[None, None]).reshape(x.shape)
    return (x - blur).square().mean(dim=(1, 2, 3))


@torch.no_grad()
def sticking_analysis(
    G: torch.nn.Module, paths: int = 64, steps: int = 16, seed: int = 0, psi: float = 1.0,
    class_idx: int | None = None, batch: int = 16, progress: bool = True,
) -> dict:  # fmt: skip
    """Average frame and sticking score of a generator.

    Args:
        G: Generator (StyleGAN2 runs with noise_mode='const', so fixed noise counts as positional).
        paths: Number of random latent paths.
        steps: Frames per path (the step is 1/(steps-1) of the path).
        seed: Seed of the path endpoints.
        psi: Truncation psi of the endpoints.
        class_idx: Class for conditional networks.
        batch: Paths synthesized together.
        progress: Progress bar.

    Returns:
        `{'score': float, 'average': [C,H,W] tensor, 'example': [C,H,W] tensor}` (images in [-1, 1]).
    """
    if paths < 1 or steps < 2:
        raise CliError(f"need --paths >= 1 and --steps >= 2, got {paths}, {steps}")
    dev = next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, paths, G.z_dim, generator=g)
    total, hf_sum, count, example = None, 0.0, 0, None
    chunks = range(0, paths, batch)
    for i in tqdm(chunks, desc="sticking", disable=not progress, leave=False):
        n = min(batch, paths - i)
        c = class_labels(G, class_idx, n).to(dev)
        wa = G.mapping(z[0, i : i + n].to(dev), c, truncation_psi=psi)
        wb = G.mapping(z[1, i : i + n].to(dev), c, truncation_psi=psi)
        for t in torch.linspace(0, 1, steps).tolist():
            img = G.synthesis(torch.lerp(wa, wb, t), noise_mode="const").double()
            example = img[0].cpu() if example is None else example
            total = img.sum(0) if total is None else total + img.sum(0)
            hf_sum += high_frequency_energy(img).sum().item()
            count += n
    average = (total / count).cpu()
    score = high_frequency_energy(average[None])[0].item() / max(hf_sum / count, 1e-30)
    return {"score": score, "average": average.float(), "example": example.float()}


def _tile(img: torch.Tensor, size: int) -> PIL.Image.Image:
    x = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.repeat(3, 1, 1) if x.shape[0] == 1 else x[:3]
    pil = PIL.Image.fromarray(x.permute(1, 2, 0).numpy())
    return pil.resize((size, size), PIL.Image.NEAREST)


def comparison_image(results: dict[str, dict], tile: int = 192) -> PIL.Image.Image:
    """One row per network: example frame | average frame, labelled with the name and score."""
    label_h = 18
    canvas = PIL.Image.new("RGB", (2 * tile + 8, len(results) * (tile + label_h + 6)), "white")
    draw = PIL.ImageDraw.Draw(canvas)
    for row, (name, r) in enumerate(results.items()):
        y = row * (tile + label_h + 6)
        draw.text((4, y + 2), f"{name}: sticking {r['score']:.3f}  (frame | average)", fill="black")
        canvas.paste(_tile(r["example"], tile), (0, y + label_h))
        canvas.paste(_tile(r["average"], tile), (tile + 8, y + label_h))
    return canvas


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="sg3-sticking", description=__doc__.split("\n\n")[0])
    p.add_argument("--network", action="append", required=True, help="network file; repeat to compare")
    p.add_argument("--label", action="append", default=None, help="display name per --network")
    p.add_argument("--paths", type=int, default=64, help="random latent paths")
    p.add_argument("--steps", type=int, default=16, help="frames per path")
    p.add_argument("--seed", type=int, default=0, help="seed of the path endpoints")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi of the path endpoints")
    p.add_argument("--class", dest="class_idx", type=int, default=None, help="class (conditional nets)")
    p.add_argument("--output", default="sticking.png", help="side-by-side comparison PNG")
    p.add_argument("--tile", type=int, default=192, help="display size of each image in pixels")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p


def _run(args: argparse.Namespace) -> int:
    labels = args.label or [Path(n).stem for n in args.network]
    if len(labels) != len(args.network):
        raise CliError(f"--label given {len(labels)} times for {len(args.network)} --network files")
    if args.paths < 1 or args.steps < 2:
        raise CliError(f"need --paths >= 1 and --steps >= 2, got {args.paths}, {args.steps}")
    if args.tile < 1:
        raise CliError(f"--tile must be >= 1 (pixels), got {args.tile}")
    check_image_output(args.output, "--output")
    device = check_device(args.device)
    results = {}
    with output_folder(Path(args.output).parent):  # before the work: a bad path fails at once
        for label, path in zip(labels, args.network):
            G = load_network(path, device)
            results[label] = sticking_analysis(
                G, args.paths, args.steps, args.seed, args.trunc, args.class_idx
            )
            print(f"{label} {results[label]['score']:.4f}", flush=True)
        comparison_image(results, args.tile).save(args.output)
    print(f"wrote {args.output}")
    return 0


main = tool_main(build_parser, _run, "sg3-sticking")


if __name__ == "__main__":
    sys.exit(main())
