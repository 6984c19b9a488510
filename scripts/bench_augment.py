"""Augment benchmark: cost of the ADA pipe ('bgc') per image on the CPU, side by side in one run.

Compares the pipe without image gradients, with image gradients, and the R1 pattern (forward, gradient
with create_graph, second backward); plus the bilinear samplers alone (PyTorch's grid_sample, which has
no double backward, versus both implementations of grid_sample_bilinear).
Writes a Markdown section ``## augment``.

Usage: python scripts/bench_augment.py --out docs/bench/augment.md [--batch 8] [--res 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch

import sg3.ops
from sg3.modules.augment import AUGPIPE_SPECS, AugmentPipe
from sg3.modules.augment_matrices import grid_sample_bilinear


def _median_seconds(step, repeats: int) -> float:
    """Median wall seconds of `step()` after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _pipe_steps(batch: int, res: int) -> dict[str, object]:
    pipe = AugmentPipe(**AUGPIPE_SPECS["bgc"])
    pipe.p.fill_(0.5)
    images = torch.randn(batch, 3, res, res)

    def no_grad():
        with torch.no_grad():
            pipe(images)

    def with_grad():
        x = images.clone().requires_grad_(True)
        pipe(x).square().sum().backward()

    def r1():
        x = images.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(pipe(x).square().sum(), x, create_graph=True)
        grad.square().sum().backward()

    return {"forward, no image grad": no_grad,
            "forward + backward": with_grad,
            "R1 pattern: forward + grad(create_graph) + backward": r1}  # fmt: skip


def _sampler_steps(batch: int, res: int) -> dict[str, object]:
    size = 2 * (res + 6)  # the pipe samples a 2x upsampled, padded canvas
    images = torch.randn(batch, 3, size + 12, size + 12)
    grid = torch.rand(batch, size, size, 2) * 2 - 1

    def native():
        x = images.clone().requires_grad_(True)
        torch.nn.functional.grid_sample(
            x, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        ).sum().backward()

    def adjoint_pair():
        x = images.clone().requires_grad_(True)
        grid_sample_bilinear(x, grid).sum().backward()

    def gather():
        x = images.clone().requires_grad_(True)
        grid_sample_bilinear(x, grid, impl="ref").sum().backward()

    return {
        "torch grid_sample fwd+bwd (no double backward)": native,
        "grid_sample_bilinear 'native' fwd+bwd": adjoint_pair,
        "grid_sample_bilinear 'ref' (gather) fwd+bwd": gather,
    }


def _measure(args: argparse.Namespace) -> list[str]:
    """Table rows: ms per image and ratio to the first row of each group."""
    rows = []
    for group, steps in (
        ("pipe 'bgc' p=0.5", _pipe_steps(args.batch, args.res)),
        ("sampler alone", _sampler_steps(args.batch, args.res)),
    ):
        times = {name: _median_seconds(step, args.repeats) for name, step in steps.items()}
        base = next(iter(times.values()))
        for name, sec in times.items():
            rows.append(f"| {group}: {name} | {sec / args.batch * 1e3:.2f} | {sec / base:.2f}x |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="docs/bench/augment.md", help="Markdown file to write")
    parser.add_argument("--batch", type=int, default=8, help="images per call")
    parser.add_argument("--res", type=int, default=64, help="image resolution (pixels)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument(
        "--impl", default="auto", choices=["auto", "ref", "cpp"], help="sg3.ops implementation"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with sg3.ops.use_impl(args.impl):
        rows = _measure(args)
    text = "\n".join(
        [
            "## augment",
            "",
            f"ADA pipe on the CPU, {args.batch} RGB images of {args.res}x{args.res} per call, median of "
            f"{args.repeats}, sg3.ops impl '{args.impl}'. Machine: {platform.platform()}, "
            f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"{datetime.date.today().isoformat()}. Ratios are relative to the first row of each group "
            "(measured side by side in one run; the machine is shared: absolute times are indicative).",
            "",
            "| what | ms / image | ratio |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
