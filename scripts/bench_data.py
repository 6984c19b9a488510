"""Data benchmark: decode + augment throughput of the ShardDataModule training stream.

Builds 256x256 shards (random crops of scikit-image's bundled photographs) as PNG (zlib level 0, the
sg3-dataset default), PNG (level 6) and JPEG (quality 95), then measures images/s of the training stream
(shard reading, shuffle buffer, decoding, x-flips, batching) with 1 and 2 DataLoader workers, side by side.
Writes a Markdown section ``## data``.

The data/compute ratio divides the stream's images/s by the images/s a 256x256 training step consumes:
by default measured here (`--consumption measure`) on a deliberately narrow StyleGAN3-T at 256x256
(cbase 2048, cmax 32, 6 layers, batch 4; one G main + D main + G_ema step after a warm-up step, lazy R1
left out). Real configs are far wider and slower, so the measured ratio is a lower bound.

Usage: python scripts/bench_data.py --out docs/bench/data.md [--images 384]
                                   [--consumption measure|IMG_PER_S|0]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import torch

from sg3.data.datamodule import ShardDataModule
from sg3.data.dataset_tool import ConvertOptions, convert
from sg3.data.demo import demo_crop_items
from sg3.data.shards import iter_shard_samples
from sg3.data.stream import decode_sample

CONSUMPTION_CONFIG = [  # bench_train's small T, at 256x256 and batch 4
    "model.cbase=2048",
    "model.cmax=32",
    "model.z_dim=64",
    "model.w_dim=64",
    "batch=4",
    "+model.G_kwargs.num_layers=6",
]
FORMATS = (("PNG (level 0, default)", "png", 0), ("PNG (level 6)", "png", 6), ("JPEG (q95)", "jpg", 0))
TARGET_PER_WORKER = 400.0


def _stream_rate(dest: str, workers: int, batches: int, batch_size: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process) after the first batch."""
    dm = ShardDataModule(dest, batch_size=batch_size, num_workers=workers, mirror=True, shuffle_buffer=256)
    it = iter(dm.train_dataloader())
    next(it)
    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    for _ in range(batches):
        img, _ = next(it)
        n += img.shape[0]
    rates = n / (time.perf_counter() - start), n / max(time.process_time() - cpu, 1e-9)
    del it
    return rates


def _decode_rate(dest: str) -> float:
    """Images per CPU second of decoding alone (first shard, in process)."""
    samples = [s for _, s in iter_shard_samples(os.path.join(dest, "shard-000000.tar"))]
    cpu = time.process_time()
    for s in samples:
        decode_sample(s, 3)
    return len(samples) / max(time.process_time() - cpu, 1e-9)


def _measure_consumption() -> float:
    """Images/s one training step at 256x256 consumes (CONSUMPTION_CONFIG, all CPU threads)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_train import build  # the training benchmark's module builder

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # training gets the whole machine: a higher consumption
    try:
        module = build(CONSUMPTION_CONFIG, 256)
        n = module.derived["batch_per_gpu"]
        reals = module.split_reals(
            (torch.randint(0, 256, [n, 3, 256, 256], dtype=torch.uint8), torch.zeros(n, 0))
        )
        opt_G, opt_D = module.optimizers()
        for _ in range(2):  # a warm-up step (compiled-op load), then one timed step
            start = time.perf_counter()
            module.phase_G_main(reals, opt_G)
            module.phase_D_main(reals, opt_D)
            module.phase_ema()
        return n / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def _report(args, rows, convert_rates) -> list[str]:
    png_cpu = rows[0][3]
    verdict = "meets" if png_cpu >= TARGET_PER_WORKER else "misses"
    lines = [
        "## data",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.platform()}, {os.cpu_count()} CPU cores "
        f"shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end), torch "
        f"{torch.__version__}, Python {platform.python_version()}.",
        "",
        "Training stream of `ShardDataModule` (tar reading, shuffle buffer 256, decoding into the batch"
        f" tensor with x-flips, batches of 32) over {args.images} random 256x256 crops of the bundled"
        " scikit-image photographs, timed after"
        f" the first batch, {args.batches} batches per row (the workers' prefetched batches, 2 each,"
        " flatter the wall-clock columns by up to 4 batches). Per-worker capacity = images per CPU-second of"
        " the same stream in one process (`num_workers=0`, one torch thread); it depends less on other"
        " jobs than the wall-clock worker columns, but still rises and falls with the load.",
        "",
        "| encoding | KiB/image | decode only (img/CPU-s) | per worker (img/CPU-s) | 1 worker (img/s) |"
        " 2 workers (img/s) | 2 vs 1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, kib, dec, cpu_rate, r1, r2 in rows:
        lines.append(
            f"| {label} | {kib:.0f} | {dec:.0f} | {cpu_rate:.0f} | {r1:.0f} | {r2:.0f} | {r2 / r1:.2f}x |"
        )
    lines += [
        "",
        f"Target >= {TARGET_PER_WORKER:.0f} images/s per worker for 256x256 PNG: the default PNG encoding "
        f"{verdict} it with {png_cpu:.0f} images per CPU-second ({png_cpu / TARGET_PER_WORKER:.2f}x).",
        "Conversion speed of `sg3-dataset` (one process, from in-memory crops): "
        + ", ".join(f"{k} {v:.0f} img/s" for k, v in convert_rates.items())
        + ".",
        "",
    ]
    if args.consumption:
        how = (
            "measured here on a narrow StyleGAN3-T at 256x256: cbase 2048, cmax 32, 6 layers, batch 4, "
            f"{os.cpu_count()} threads, G main + D main + G_ema with lazy R1 left out; real configs are much "
            "slower, so the ratios are lower bounds"
            if args.measured
            else "as given with `--consumption`"
        )
        wall = rows[0][4]
        lines.append(
            f"Training consumes {args.consumption:.2f} images/s at 256x256 ({how}). One worker with the "
            f"default PNG supplies {png_cpu:.0f} images per CPU-second, {png_cpu / args.consumption:.0f}x "
            f"that, and {wall:.0f} images per wall second on the shared machine, "
            f"{wall / args.consumption:.0f}x (target >= 10x)."
        )
    else:
        lines.append(
            "Training consumption at 256x256 was not given (`--consumption`); divide the numbers above by "
            "the images/s of the training benchmark (docs/bench/training.md) for the data/compute ratio "
            "(target >= 10x)."
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes the Markdown section to ``--out``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Markdown file to write")
    p.add_argument("--images", type=int, default=384, help="images per dataset (default 384)")
    p.add_argument("--batches", type=int, default=48, help="timed batches of 32 per configuration (48)")
    p.add_argument(
        "--consumption",
        default="measure",
        help="training images/s at 256x256: 'measure' (default, about a minute), a number, or 0 to leave out",
    )
    args = p.parse_args(argv)
    args.measured = args.consumption == "measure"
    args.consumption = _measure_consumption() if args.measured else float(args.consumption)
    if args.measured:
        print(f"training step at 256x256: {args.consumption:.2f} img/s")
    torch.set_num_threads(1)
    rows, convert_rates = [], {}
    with tempfile.TemporaryDirectory(prefix="sg3-bench-data-") as tmp:
        items = demo_crop_items(256, args.images, seed=1)
        for label, fmt, level in FORMATS:
            dest = os.path.join(tmp, f"{fmt}{level}")
            opts = ConvertOptions(
                resolution=256, transform="center-crop", image_format=fmt, quality=95,
                png_compression=level, shard_size=128, progress=False,
            )  # fmt: skip
            start = time.perf_counter()
            summary = convert(items, dest, opts)
            convert_rates[label] = args.images / (time.perf_counter() - start)
            kib = sum(s["bytes"] for s in summary.index["shards"]) / args.images / 1024
            cpu_rate = _stream_rate(dest, 0, args.batches, 32)[1]
            r1, r2 = (_stream_rate(dest, w, args.batches, 32)[0] for w in (1, 2))
            rows.append((label, kib, _decode_rate(dest), cpu_rate, r1, r2))
            print(
                f"{label}: {kib:.0f} KiB/img, {cpu_rate:.0f} img/CPU-s, 1 worker {r1:.0f}, 2 workers {r2:.0f}"
            )
    with open(args.out, "w") as f:
        f.write("\n".join(_report(args, rows, convert_rates)) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
