"""Training benchmark: images/s of a full training step on CPU (G main + D main + lazy R1 amortised).

For each config (the tiny test model at 16x16, the demo's StyleGAN3-T at 32x32 and a small StyleGAN3-T
at 64x64) it times the phases of `StyleGAN3Module` on random reals, without a Trainer or data loading:
one step = Gmain + Dmain + Dreg/16 (R1 every 16 steps, as in training), plus the G_ema update. Each
config is measured with the compiled CPU ops and with the pure-PyTorch reference ops, side by side.
Writes a Markdown section ``## train``.

Usage: python scripts/bench_train.py --out docs/bench/train.md [--steps 4]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import sg3.ops
from sg3.modules.augment import AUGPIPE_SPECS
from sg3.train import CONF_DIR
from sg3.training.derive import derive
from sg3.training.module import StyleGAN3Module

CONFIGS = (
    ("tiny 16x16 (tests)", ["model=tiny", "batch=8"], 16),
    (
        "T 64x64 (cbase 2048, cmax 32, 6 layers)",
        [
            "model.cbase=2048",
            "model.cmax=32",
            "model.z_dim=64",
            "model.w_dim=64",
            "batch=8",
            "+model.G_kwargs.num_layers=6",
        ],
        64,
    ),
)


def build(overrides: list[str], resolution: int) -> StyleGAN3Module:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "loss.r1_gamma=1", "data.urls=unused", "logger=none"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["derived"] = derive(
        plain, resolution=resolution, img_channels=3, c_dim=0, augment_specs=AUGPIPE_SPECS
    )
    torch.manual_seed(0)
    module = StyleGAN3Module(plain)
    opts = module.configure_optimizers()
    module.optimizers = lambda: opts
    return module


def time_step(module: StyleGAN3Module, steps: int) -> tuple[float, float]:
    """(seconds per Gmain+Dmain+EMA step, seconds per Dreg phase)."""
    n, res = module.derived["batch_per_gpu"], module.derived["resolution"]
    reals = module.split_reals(
        (torch.randint(0, 256, [n, 3, res, res], dtype=torch.uint8), torch.zeros(n, 0))
    )
    opt_G, opt_D = module.optimizers()
    module.phase_G_main(reals, opt_G)  # warm-up (and compiled-op build / load)
    module.phase_D_main(reals, opt_D)
    module.phase_D_reg(reals, opt_D, 16)
    t0 = time.perf_counter()
    for _ in range(steps):
        module.phase_G_main(reals, opt_G)
        module.phase_D_main(reals, opt_D)
        module.phase_ema()
    t_main = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    for _ in range(max(steps // 2, 1)):
        module.phase_D_reg(reals, opt_D, 16)
    t_reg = (time.perf_counter() - t0) / max(steps // 2, 1)
    return t_main, t_reg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/bench/train.md", help="Markdown file to write")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per config and ops implementation")
    args = parser.parse_args(argv)
    rows = []
    for label, overrides, res in CONFIGS:
        module = build(overrides, res)
        params = sum(p.numel() for p in module.G.parameters()) + sum(p.numel() for p in module.D.parameters())
        rates = {}
        for impl in ("auto", "ref"):
            with sg3.ops.use_impl(impl):
                t_main, t_reg = time_step(module, args.steps)
            step = t_main + t_reg / 16
            rates[impl] = (module.derived["batch"] / step, t_main, t_reg)
            print(
                f"{label:34s} {impl:5s} {rates[impl][0]:7.2f} img/s (main {t_main:.2f} s, R1 {t_reg:.2f} s)"
            )
        rows.append((label, module.derived["batch"], params, rates))
    lines = [
        "## train",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.platform()}, {os.cpu_count()} CPU cores "
        f"shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end), "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads.",
        "",
        "Full training step of `StyleGAN3Module` on random reals (no data loading): G main + D main + G_ema, "
        f"plus one lazy R1 phase (through ADA) amortised over its 16-step interval; {args.steps} timed steps "
        "after a warm-up. `compiled` = the default ops (`impl='auto'`: compiled CPU kernels when they "
        "build), `ref` = pure-PyTorch reference ops.",
        "",
        "| config | batch | G+D params | compiled img/s | ref img/s | compiled / ref | main step s "
        "| R1 phase s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, batch, params, r in rows:
        lines.append(
            f"| {label} | {batch} | {params / 1e6:.2f} M | {r['auto'][0]:.2f} | {r['ref'][0]:.2f} | "
            f"{r['auto'][0] / r['ref'][0]:.2f}x | {r['auto'][1]:.2f} | {r['auto'][2]:.2f} |"
        )
    lines += [
        "",
        "The machine is shared, so absolute numbers vary by run; the ratio column is the comparison.",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
