"""Networks benchmark: generator and discriminator forward+backward time per image on the CPU,
compiled C++ ops versus the pure-PyTorch reference ops, side by side in one run.

Configs: 64x64 StyleGAN3-T and -R generators and the discriminator with small channel counts.
Writes a Markdown section ``## networks``.

Usage: python scripts/bench_networks.py --out docs/bench/networks.md [--batch 4] [--repeats 3]
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
from sg3.modules.discriminator import Discriminator
from sg3.modules.generator import Generator

TARGET = 8.0
RES = 64
CONFIGS = {
    "T": dict(channel_base=4096, channel_max=64),
    "R": dict(channel_base=8192, channel_max=128, conv_kernel=1, use_radial_filters=True),
}
D_KWARGS = dict(c_dim=0, img_resolution=RES, img_channels=3, channel_base=4096, channel_max=64)


def _time_per_image(step, batch: int, repeats: int) -> float:
    """Median seconds per image of `step()` after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


def _g_step(G: Generator, batch: int):
    z = torch.randn(batch, G.z_dim)

    def step():
        G.zero_grad(set_to_none=True)
        G(z, None).square().mean().backward()

    return step


def _d_step(D: Discriminator, batch: int):
    img = torch.randn(batch, 3, RES, RES)

    def step():
        D.zero_grad(set_to_none=True)
        D(img, None).sum().backward()

    return step


def _compiled_status() -> str | None:
    """None if the compiled CPU ops work, else the reason they do not."""
    x = torch.randn(1, 1, 8, 8)
    try:
        with sg3.ops.use_impl("cpp"):
            sg3.ops.filtered_lrelu(x, torch.ones(4) / 4, torch.ones(4) / 4, up=2, down=2, padding=1)
    except Exception as err:  # the build or load failure is reported in the table
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="docs/bench/networks.md", help="Markdown file to write")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per cell (median)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: robust on a shared CPU)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    nets = {f"G {name}": Generator(64, 0, 64, RES, 3, **kw) for name, kw in CONFIGS.items()}
    nets["D"] = Discriminator(**D_KWARGS)
    compiled_error = _compiled_status()
    rows = []
    for label, net in nets.items():
        step = _d_step(net, args.batch) if label == "D" else _g_step(net, args.batch)
        with sg3.ops.use_impl("ref"):
            ref = _time_per_image(step, args.batch, args.repeats)
        cpp = None
        if compiled_error is None:
            with sg3.ops.use_impl("cpp"):
                cpp = _time_per_image(step, args.batch, args.repeats)
        rows.append((label, ref, cpp))
        print(
            f"{label}: ref {ref * 1e3:.1f} ms/img, cpp {'n/a' if cpp is None else f'{cpp * 1e3:.1f}'} ms/img"
        )

    load = os.getloadavg()[0]
    lines = [
        "## networks",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.platform()}, {os.cpu_count()} CPU cores "
        f"(shared with other jobs, load average {load:.1f}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}.",
        "",
        f"Forward + backward time per image, batch {args.batch}, median of {args.repeats} steps after a "
        f"warm-up, {RES}x{RES}: StyleGAN3-T G (channel_base 4096, channel_max 64), StyleGAN3-R G "
        "(8192/128, 1x1 convs, radial filters), discriminator (4096/64). Same networks and inputs; only "
        "the op implementation differs. The modulated convolutions (grouped conv2d) and their backward are "
        "plain PyTorch in both columns; only upfirdn2d, bias_act and filtered_lrelu change.",
        "",
        "| network | ref ops (ms/img) | compiled C++ ops (ms/img) | speed-up |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, ref, cpp in rows:
        cpp_txt = "unavailable" if cpp is None else f"{cpp * 1e3:.1f}"
        ratio = "–" if cpp is None else f"{ref / cpp:.2f}x"
        lines.append(f"| {label} | {ref * 1e3:.1f} | {cpp_txt} | {ratio} |")
    lines.append("")
    if compiled_error is not None:
        lines.append(
            f"Compiled CPU ops were not available in this run ({compiled_error}); target not measured."
        )
    else:
        worst = min(ref / cpp for _, ref, cpp in rows)
        verdict = "meets" if worst >= TARGET else "misses"
        lines.append(
            f"Target: compiled >= {TARGET:g}x faster than ref for every network; this run {verdict} it "
            f"(smallest speed-up {worst:.2f}x)."
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
