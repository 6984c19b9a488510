"""Training callbacks: they observe the LightningModule and export; they never change the weights.

- `TickLogger`: per-tick statistics to stats.jsonl, the Lightning loggers and the console.
- `ImageGrids`: reals.png, fakes_init.png and fixed-seed fake grids `fakes{kimg:06d}.png`.
- `Snapshots`: full-state checkpoints (atomic), exported generators, and a clean stop on SIGTERM/SIGINT.
- `KimgProgress`: a progress bar in kimg with ETA.
- `Summary`: what the run produced, for the final message.
"""

from __future__ import annotations

import json
import logging
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback
from PIL import Image
from tqdm.auto import tqdm

from sg3.io import atomic_write
from sg3.training.checkpoint import (
    checkpoint_path,
    prune_checkpoints,
    save_on_all_ranks,
    set_aside_newer_checkpoints,
)
from sg3.training.loggers import log_artifact, log_image, logger_step

log = logging.getLogger("sg3.train")


def grid_shape(resolution: int, gw: int | None = None, gh: int | None = None) -> tuple[int, int]:
    """Grid columns and rows; default: official `clip(7680 // res, 7, 32)` x `clip(4320 // res, 4, 32)`."""
    gw = gw if gw is not None else int(np.clip(7680 // resolution, 7, 32))
    gh = gh if gh is not None else int(np.clip(4320 // resolution, 4, 32))
    return gw, gh


def to_grid(img: torch.Tensor, gw: int, gh: int, drange: tuple[float, float] = (-1, 1)) -> np.ndarray:
    """Images `[gw*gh, C, H, W]` -> one uint8 image `[gh*H, gw*W, C]` (C = 1 squeezed later by PIL)."""
    lo, hi = drange
    x = ((img.detach().float().cpu() - lo) * (255 / (hi - lo))).round().clamp(0, 255).to(torch.uint8)
    n, c, h, w = x.shape
    x = x.reshape(gh, gw, c, h, w).permute(0, 3, 1, 4, 2).reshape(gh * h, gw * w, c)  # [gh*H, gw*W, C]
    return x.numpy()


def grid_labels(c_dim: int, gw: int, gh: int, class_counts: list[int] | None = None) -> torch.Tensor:
    """Labels `[gw*gh, c_dim]` of the image grids: one class per row (official layout).

    Args:
        c_dim: Number of classes (0 = unconditional: `[gw*gh, 0]`).
        gw: Columns. gh: Rows.
        class_counts: Images per class in the dataset (None = all classes present); row y shows the y-th
            present class in ascending order, cycling when there are more rows than classes.
    """
    if c_dim == 0:
        return torch.zeros([gw * gh, 0])
    present = [k for k in range(c_dim) if class_counts is None or class_counts[k] > 0] or list(range(c_dim))
    rows = torch.tensor([present[y % len(present)] for y in range(gh)])  # [gh]
    return torch.nn.functional.one_hot(rows.repeat_interleave(gw), c_dim).to(torch.float32)


def fakes_name(cur_nimg: int) -> str:
    """File name of the fake grid drawn after `cur_nimg` images: `fakes{kimg:06d}.png` (spec 5.3)."""
    return f"fakes{cur_nimg // 1000:06d}.png"


def save_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 HWC array as PNG (1-channel images as grayscale)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path)


class TickLogger(Callback):
    """Writes each tick's statistics to `<run dir>/stats.jsonl` and the loggers, and prints a tick line."""

    def __init__(self, run_dir: str) -> None:
        self.path = Path(run_dir) / "stats.jsonl"

    def on_train_start(self, trainer, pl_module) -> None:
        """Set aside lines of ticks after the restored step: the stopped process logged them; they rerun."""
        if not trainer.is_global_zero or not self.path.is_file():
            return
        keep, drop = [], []
        for line in self.path.read_text().splitlines():
            try:
                kimg = json.loads(line)["Progress/kimg"]["mean"]
            except (ValueError, KeyError, TypeError):  # a line cut by SIGKILL
                kimg = None
            (keep if kimg is not None and kimg <= pl_module.kimg + 1e-9 else drop).append(line + "\n")
        if not drop:
            return
        aside = self.path.with_name("stats-superseded.jsonl")
        with open(aside, "a") as f:
            f.writelines(drop)
        with atomic_write(self.path) as f:
            f.write("".join(keep).encode())
        log.warning(
            "stats.jsonl: moved %d line(s) logged after %.3f kimg by the stopped process to %s",
            len(drop), pl_module.kimg, aside,
        )  # fmt: skip

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        info = pl_module.tick_info
        if not info or "scalars" not in info or not trainer.is_global_zero:
            return
        record = {**info["stats"], "timestamp": time.time()}
        for name, value in info["scalars"].items():  # Progress/*, Timing/*, Resources/* (official)
            if name not in record:  # the per-sample statistics keep their counts
                record[name] = {"num": 1, "mean": value, "std": 0.0}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for logger in trainer.loggers:
            logger.log_metrics(info["scalars"], step=logger_step(logger, pl_module.kimg, pl_module.batch_idx))
        s = info["scalars"]
        fmt = lambda k: f"{s[k]:.3f}" if k in s else "-"
        log.info(
            "tick %d  kimg %.1f  time %s  sec/kimg %.2f  img/s %.1f  augment %.3f  G %s  D %s  R1 %s",
            info["tick"], s["Progress/kimg"], _fmt_time(s["Timing/total_sec"]), s["Timing/sec_per_kimg"],
            s["Timing/img_per_sec"], s["Progress/augment"], fmt("Loss/G/loss"), fmt("Loss/D/loss"),
            fmt("Loss/r1_penalty"),
        )  # fmt: skip


class ImageGrids(Callback):
    """Fixed-seed image grids from G_ema (noise_mode='const'), saved under `<run dir>/images` and logged."""

    def __init__(self, run_dir: str, seed: int = 0, gw: int | None = None, gh: int | None = None) -> None:
        self.folder = Path(run_dir) / "images"
        self.seed, self.gw, self.gh = seed, gw, gh
        self.z: torch.Tensor | None = None
        self.c: torch.Tensor | None = None
        self.files: list[Path] = []

    def _setup_grid(self, trainer, pl_module) -> None:
        self.gw, self.gh = grid_shape(pl_module.derived["resolution"], self.gw, self.gh)
        n = self.gw * self.gh
        gen = torch.Generator().manual_seed(self.seed)
        self.z = torch.randn([n, pl_module.G.z_dim], generator=gen)
        counts = getattr(trainer.datamodule, "index", {}).get("class_counts")
        self.c = grid_labels(pl_module.derived["c_dim"], self.gw, self.gh, counts)

    @torch.no_grad()
    def fakes(self, pl_module) -> np.ndarray:
        """The fake grid of the current G_ema as a uint8 HWC array."""
        chunk = pl_module.derived["batch_gpu"]
        out = [
            pl_module.G_ema(z.to(pl_module.device), c.to(pl_module.device), noise_mode="const").cpu()
            for z, c in zip(self.z.split(chunk), self.c.split(chunk))
        ]
        return to_grid(torch.cat(out), self.gw, self.gh)

    def _reals(self, trainer) -> np.ndarray | None:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "exactly_once_loader"):
            return None
        need, got = self.gw * self.gh, []
        if self.c.shape[1] > 0:
            return to_grid(self._labelled_reals(dm).float(), self.gw, self.gh, drange=(0, 255))
        for img, _ in dm.exactly_once_loader(batch_size=min(need, 64)):
            got.append(img)
            if sum(x.shape[0] for x in got) >= need:
                break
        imgs = torch.cat(got)[:need]
        if imgs.shape[0] < need:  # tiny datasets: repeat
            imgs = imgs.repeat((need + imgs.shape[0] - 1) // imgs.shape[0], 1, 1, 1)[:need]
        return to_grid(imgs.float(), self.gw, self.gh, drange=(0, 255))

    def _labelled_reals(self, dm) -> torch.Tensor:
        """Real images for the grid's row labels: row y shows the next `gw` images of its class."""
        row_class = self.c[:: self.gw].argmax(1).tolist()  # [gh]
        need = {k: row_class.count(k) * self.gw for k in set(row_class)}
        found: dict[int, list[torch.Tensor]] = {k: [] for k in need}
        for img, c in dm.exactly_once_loader(batch_size=64):
            for x, k in zip(img, c.argmax(1).tolist()):
                if k in found and len(found[k]) < need[k]:
                    found[k].append(x)
            if all(len(found[k]) >= need[k] for k in need):
                break
        rows, seen = [], {k: 0 for k in need}
        for k in row_class:
            imgs = found[k] or [torch.zeros_like(img[0])]  # a class without images: a black row
            rows += [imgs[(seen[k] * self.gw + x) % len(imgs)] for x in range(self.gw)]
            seen[k] += 1
        return torch.stack(rows)

    def _save(self, trainer, pl_module, name: str, key: str) -> None:
        array = self.fakes(pl_module)
        path = self.folder / name
        save_png(array, path)
        if path not in self.files:
            self.files.append(path)
        log_image(trainer.loggers, key, array, int(pl_module.kimg), f"kimg {pl_module.kimg:.1f}")

    def on_train_start(self, trainer, pl_module) -> None:
        self._setup_grid(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        if pl_module.cur_nimg > 0:  # resumed: redraw the checkpoint step's grid if the process died first
            name = fakes_name(pl_module.cur_nimg)
            if getattr(pl_module, "resumed_at_grid_step", False) and not (self.folder / name).is_file():
                log.info("resumed at a grid step whose %s is missing: drawing it", name)
                self._save(trainer, pl_module, name, "fakes")
            return
        reals = self._reals(trainer)
        if reals is not None:
            save_png(reals, self.folder / "reals.png")
            log_image(trainer.loggers, "reals", reals, 0, "reals")
        self._save(trainer, pl_module, "fakes_init.png", "fakes")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        info = pl_module.tick_info
        if info and info.get("images") and trainer.is_global_zero:
            self._save(trainer, pl_module, fakes_name(pl_module.cur_nimg), "fakes")


class Snapshots(Callback):
    """Checkpoints and exported generators; SIGTERM (and a first Ctrl+C) save and stop at a step boundary.

    Args:
        run_dir: The run directory (checkpoints go to `<run_dir>/checkpoints`).
        keep: Number of newest checkpoints kept (0 keeps all).
        log_model: Also upload each exported generator as a W&B artifact.
    """

    def __init__(self, run_dir: str, keep: int = 3, log_model: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.keep, self.log_model = keep, log_model
        self.last_checkpoint: Path | None = None
        self.last_export: Path | None = None
        self.stopped_by_signal: str | None = None
        self._signal: str | None = None
        self._old_handlers: dict[int, Any] = {}

    def _on_signal(self, signum, frame) -> None:
        self._signal = signal.Signals(signum).name
        if signum == signal.SIGINT:  # a second Ctrl+C interrupts at once
            signal.signal(signal.SIGINT, self._old_handlers.get(signal.SIGINT, signal.default_int_handler))
        log.warning("%s: saving a checkpoint at the end of this step, then stopping", self._signal)

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and pl_module.cur_nimg > 0:  # resumed: from an older checkpoint?
            moved = set_aside_newer_checkpoints(self.run_dir, pl_module.cur_nimg)
            if moved:
                log.warning(
                    "resumed at %d images: moved %d newer checkpoint(s) of the abandoned continuation to %s",
                    pl_module.cur_nimg, len(moved), moved[0].parent,
                )  # fmt: skip
        # Replaces Lightning's SIGTERM handler, which would stop without a checkpoint when the signal
        # lands after this callback's check in a step; ours is acted on at the next step boundary.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)

    def on_train_end(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)
        self._old_handlers = {}

    def save_checkpoint(self, trainer, pl_module) -> Path:
        """Write the full-state checkpoint for the current step (every rank calls this)."""
        path = checkpoint_path(self.run_dir, pl_module.cur_nimg)
        save_on_all_ranks(trainer, path)  # a failed write stops every rank with its reason
        if trainer.is_global_zero:
            prune_checkpoints(self.run_dir, self.keep)
        self.last_checkpoint = path
        return path

    def export_generator(self, trainer, pl_module) -> Path | None:
        """Write `network-snapshot-{kimg:06d}.pt` (G_ema + kwargs, loadable by sg3.load_generator)."""
        if not trainer.is_global_zero:
            return None
        from sg3.io import save_generator

        kimg = pl_module.cur_nimg // 1000
        path = self.run_dir / f"network-snapshot-{kimg:06d}.pt"
        meta = {"cur_nimg": pl_module.cur_nimg, "cfg": pl_module.derived["cfg"], "run_dir": str(self.run_dir)}
        save_generator(str(path), pl_module.G_ema, meta=meta)
        self.last_export = path
        if self.log_model:
            log_artifact(trainer.loggers, path, f"generator-{pl_module.wandb_run_id}", meta)
        return path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        info = pl_module.tick_info or {}
        received = bool(getattr(trainer, "received_sigterm", False)) or self._signal is not None
        stop = trainer.strategy.reduce_boolean_decision(received, all=False)
        if info.get("snapshot"):
            self.export_generator(trainer, pl_module)
        if info.get("checkpoint") or stop:
            self.save_checkpoint(trainer, pl_module)
        if stop and not pl_module.done:
            self.stopped_by_signal = self._signal or "SIGTERM"
            log.warning("%s: saved %s; stopped", self.stopped_by_signal, self.last_checkpoint)
            trainer.should_stop = True


class KimgProgress(Callback):
    """A tqdm bar counting kimg up to total_kimg, with elapsed time, ETA and the latest losses."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if not (self.enabled and trainer.is_global_zero):
            return
        total = pl_module.derived["total_kimg"]
        fmt = "{l_bar}{bar}| {n:.1f}/{total:.1f} kimg [{elapsed}<{remaining}{postfix}]"
        self.bar = tqdm(
            total=total, initial=pl_module.kimg, bar_format=fmt, dynamic_ncols=True, smoothing=0.1
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is None:
            return
        self.bar.update(min(pl_module.kimg, self.bar.total) - self.bar.n)
        info = pl_module.tick_info
        if info and "scalars" in info:
            s = info["scalars"]
            self.bar.set_postfix_str(
                f"tick {info['tick']} img/s {s['Timing/img_per_sec']:.1f} p {s['Progress/augment']:.3f}"
            )

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Summary(Callback):
    """Collects what the run produced (paths, speed) for the final message printed by sg3-train.

    Speed is reported twice: the training throughput of the ticks (their images, counted from the module's
    image counter at the tick ends, over their `Timing/sec_per_tick`, which leaves out start-up and the grids,
    snapshots and checkpoints between ticks) and the wall-clock rate from the start of training (start-up
    included; most of a tiny run).
    """

    def __init__(self, run_dir: str, grids: ImageGrids, snapshots: Snapshots) -> None:
        self.run_dir = Path(run_dir)
        self.grids, self.snapshots = grids, snapshots
        self.info: dict[str, Any] = {}
        self._t0 = 0.0
        self._n0 = 0
        self._tick_sec = 0.0
        self._tick_img = 0
        self._tick_nimg0 = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0, self._n0 = time.time(), pl_module.cur_nimg
        self._tick_sec, self._tick_img = 0.0, 0
        # The first tick's images and seconds both count from its start: a resume restores that start (it may
        # lie before the resume) with the seconds the tick had already run.
        self._tick_nimg0 = pl_module.tick_start_nimg

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        info = pl_module.tick_info
        if info and "scalars" in info:
            self._tick_sec += info["scalars"]["Timing/sec_per_tick"]
            self._tick_img += pl_module.cur_nimg - self._tick_nimg0  # exact, not img/s x s
            self._tick_nimg0 = pl_module.cur_nimg

    def on_train_end(self, trainer, pl_module) -> None:
        sec = time.time() - self._t0
        wandb_dirs = (
            sorted((self.run_dir / "wandb").glob("*run-*")) if (self.run_dir / "wandb").is_dir() else []
        )
        self.info = {
            "run_dir": str(self.run_dir),
            "kimg": pl_module.kimg,
            "done": pl_module.done,
            "stopped_by": self.snapshots.stopped_by_signal,
            "seconds": sec,
            "train_img_per_sec": self._tick_img / self._tick_sec if self._tick_sec > 0 else None,
            "wall_img_per_sec": (pl_module.cur_nimg - self._n0) / max(sec, 1e-8),
            "augment_p": float(pl_module.augment_pipe.p) if pl_module.augment_pipe is not None else 0.0,
            "checkpoint": str(self.snapshots.last_checkpoint) if self.snapshots.last_checkpoint else None,
            "generator": str(self.snapshots.last_export) if self.snapshots.last_export else None,
            "grids": [str(p) for p in self.grids.files],
            "wandb": str(wandb_dirs[-1]) if wandb_dirs else None,
        }
        if trainer.is_global_zero:  # also for the parent of spawned DDP processes, which keeps no state
            with atomic_write(self.run_dir / SUMMARY_FILE) as f:
                f.write(json.dumps(self.info, indent=1).encode())

    @staticmethod
    def read(run_dir: str | Path, since: float) -> dict[str, Any]:
        """The summary written to `run_dir` by a run that ended after `since` (a time.time()), else {}."""
        path = Path(run_dir) / SUMMARY_FILE
        try:
            if path.stat().st_mtime >= since:
                return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
        return {}


SUMMARY_FILE = "summary.json"


def format_summary(info: dict[str, Any], overrides: list[str], by_dir: bool = False) -> str:
    """The end-of-run message: where everything is, speed, and what to run next.

    Args:
        info: `Summary.info` (or `Summary.read`); empty when training did not start.
        overrides: The job's command-line overrides, repeated (shell-quoted) in the resume command.
        by_dir: The run directory is not `<runs_dir>/<name>` (a --multirun point's sub-directory, or a
            `hydra.run.dir` given): the resume command names it (`hydra.run.dir`) instead of `name`.
    """
    if not info:
        return "sg3-train: training did not start"
    status = "finished" if info["done"] else f"stopped by {info['stopped_by'] or 'request'} (resumable)"
    grids = info["grids"]
    wandb_dir = info["wandb"] or "-"
    if info["wandb"] and "offline" in info["wandb"]:
        wandb_dir += "  (offline; upload with `wandb sync <that dir>`)"
    generator = info["generator"] or "<run dir>/network-snapshot-*.pt"
    drop = ("name", "resume", "total_kimg", "hydra.run.dir")
    keep = [shlex.quote(o) for o in overrides if o.split("=", 1)[0] not in drop]
    # A stopped run continues to its own total_kimg; a finished one needs a larger one. A concrete value, not
    # a placeholder: `total_kimg=<more>` pasted into a shell redirects stdin from a file named 'more'.
    if info["done"]:
        more = round(2 * info["kimg"], 3) or 1
        tail = f"resume=auto total_kimg={more:g}  # or any total above {info['kimg']:g} kimg"
    else:
        totals = [shlex.quote(o) for o in overrides if o.split("=", 1)[0] == "total_kimg"]
        tail = " ".join(["resume=auto"] + totals[-1:])
    if by_dir:  # a sweep point's directory name holds '=' and ',': quoted for Hydra, then for the shell
        quoted = info["run_dir"].replace("\\", "\\\\").replace("'", "\\'")
        where = f"hydra.run.dir='{quoted}'"
        plain = not any(ch in where for ch in '"$`\\!')
        where = f'"{where}"' if plain else shlex.quote(where)  # "...='...'" reads best where it is exact
    else:
        where = f"name={Path(info['run_dir']).name}"
    train = info.get("train_img_per_sec")
    speed = (f"{train:.1f} img/s training, " if train is not None else "") + (
        f"{info['wall_img_per_sec']:.1f} img/s wall clock"
    )
    lines = [
        f"sg3-train {status} at {info['kimg']:.1f} kimg in {_fmt_time(info['seconds'])} wall clock "
        f"({speed}, augment p {info['augment_p']:.3f})",
        f"  run dir     {info['run_dir']}",
        f"  checkpoint  {info['checkpoint']}",
        f"  generator   {info['generator']}",
        f"  fake grids  {' ... '.join(grids[:1] + grids[1:][-1:]) or '-'}",  # the first ... the last
        f"  W&B         {wandb_dir}",
        f"  stats       {info['run_dir']}/stats.jsonl",
        "next:",
        f"  sg3-generate --network {generator} --seeds 0-7 --outdir out",
        f"  sg3-train {' '.join(keep + [where])} {tail}",
    ]
    return "\n".join(lines)


def _fmt_time(sec: float) -> str:
    sec = int(sec)
    if sec < 60:
        return f"{sec}s"
    if sec < 3600:
        return f"{sec // 60}m {sec % 60:02d}s"
    return f"{sec // 3600}h {sec % 3600 // 60:02d}m"
