"""The LightningModule that trains G and D (spec §4, §5.1, §5.3, §5.4).

Manual optimisation: each training step runs the phases of `derived['phases']` (G main, G reg,
D main, D reg), each with its own Adam step, then updates G_ema, the counters and ADA's p, and
marks tick boundaries. Callbacks read `tick_info` after each step to log, draw grids and save
snapshots; they never change the weights.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule

from sg3.modules.registry import build_network
from sg3.training.ada import AdaController
from sg3.training.derive import ema_beta
from sg3.training.ema import update_ema
from sg3.training.loss import StyleGAN2Loss
from sg3.training.module_state import CheckpointState, draws_grid, every_ticks
from sg3.training.ops_agreement import agree_on_ops
from sg3.training.rng import restore_rank_rng
from sg3.training.stats import StatCollector


class StyleGAN3Module(CheckpointState, LightningModule):
    """Trains StyleGAN3 (T/R) or StyleGAN2 with the official losses, schedules and ADA.

    Args:
        cfg: The resolved run configuration as a plain dict; `cfg['derived']` holds the output of
            `sg3.training.derive.derive` (network kwargs, optimiser settings, phases, schedules).

    Attributes:
        G, D, G_ema: The networks (G_ema in eval mode, never trained directly).
        augment_pipe: The AugmentPipe, or None for `augment.mode=none`.
        cur_nimg: Images shown to D so far (all processes). cur_tick: Ticks completed.
        batch_idx: Training steps completed. tick_info: Set on the step that ends a tick (else None).
        resumed_at_grid_step: The restored checkpoint was written at a step that draws the fake grid.
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        d = self.derived = cfg["derived"]
        self.G = build_network(d["G_kind"], d["G_kwargs"]).train().requires_grad_(False)
        self.D = build_network("discriminator", d["D_kwargs"]).train().requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.augment_pipe = None
        if d["augment_kwargs"] is not None:
            self.augment_pipe = (
                build_network("augment_pipe", d["augment_kwargs"]).train().requires_grad_(False)
            )
            self.augment_pipe.p.fill_(d["ada"]["p"])
        self.loss = StyleGAN2Loss(**d["loss_kwargs"])
        ada = d["ada"]
        self.ada = (
            AdaController(ada["target"], ada["interval"], ada["adjust"]) if ada["mode"] == "ada" else None
        )
        self.cur_nimg = 0
        self.cur_tick = 0
        self.batch_idx = 0
        self.tick_start_nimg = 0
        self.tick_info: dict[str, Any] | None = None
        self.wandb_run_id: str | None = None
        self.stats = StatCollector()
        self._tick_start_time = 0.0
        self._step_end_time = 0.0
        self._maintenance_sec = 0.0
        self._start_time = time.time()
        self._label_gen: torch.Generator | None = None
        self._restored_rng: list[dict[str, Any]] | dict[str, Any] | None = None
        self._restored_tick: dict[str, Any] | None = None
        self.resumed_at_grid_step = False

    # ------------------------------------------------------------------ properties and setup
    @property
    def kimg(self) -> float:
        """Thousands of images shown to D so far."""
        return self.cur_nimg / 1000

    @property
    def done(self) -> bool:
        """True once `total_kimg` has been reached."""
        return self.cur_nimg >= self.derived["total_kimg"] * 1000

    def configure_optimizers(self):
        d = self.derived
        opt_G = torch.optim.Adam(self.G.parameters(), **d["G_opt"])
        opt_D = torch.optim.Adam(self.D.parameters(), **d["D_opt"])
        return [opt_G, opt_D]

    def setup(self, stage: str) -> None:
        # DistributedDataParallel refuses to wrap a module without trainable parameters. The phases switch
        # requires_grad themselves (and `_finish_grads` averages the gradients), so G and D are trainable
        # only while the strategy wraps the module; `on_fit_start` (after the wrap) switches them off again.
        self.G.requires_grad_(True)
        self.D.requires_grad_(True)

    def on_fit_start(self) -> None:
        self.G.requires_grad_(False)
        self.D.requires_grad_(False)
        rank, world = self.global_rank, self.trainer.world_size
        seed = self.derived["seed"] * world + rank
        # Fresh runs (and resumes with another process count) seed from (seed, rank, progress). A resume
        # restores the saved states at its first step instead (`on_train_batch_start`): building the data
        # loader's iterator draws from the global torch RNG, which the uninterrupted run did only once.
        torch.manual_seed(seed + self.cur_nimg)
        np.random.seed((seed + self.cur_nimg) % 2**32)
        self._label_gen = torch.Generator().manual_seed(seed + self.cur_nimg)
        # tick_start_nimg is 0 on a fresh run and restored by on_load_checkpoint on resume, so a resumed
        # run keeps the tick boundaries of the uninterrupted one.
        self._start_time = self._tick_start_time = time.time()
        self._restore_tick()
        if world > 1:
            agree_on_ops(self.device, rank, self._all_reduce_sum)
        if self.device.type == "cuda":
            tf32 = bool(self.cfg.get("tf32", False))
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32

    # ------------------------------------------------------------------ helpers
    def _world(self) -> int:
        """Number of training processes (1 without a Trainer)."""
        return self.trainer.world_size if self._trainer is not None else 1

    def _all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self._world() <= 1:
            return t
        return self.trainer.strategy.reduce(t, reduce_op="sum")

    def _no_grad_sync(self):
        """Gradients are reduced by hand in `_finish_grads`, so DDP must not sync them on backward."""
        model = self.trainer.strategy.model if self._trainer is not None else None
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            return model.no_sync()
        return contextlib.nullcontext()

    def _profile(self, name: str):
        return self.trainer.profiler.profile(name) if self._trainer is not None else contextlib.nullcontext()

    def _backward(self, loss: torch.Tensor) -> None:
        if self._trainer is not None:
            self.manual_backward(loss)
        else:
            loss.backward()

    def _sample_c(self, n: int) -> torch.Tensor:
        c_dim = self.derived["c_dim"]
        if c_dim == 0:
            return torch.zeros([n, 0], device=self.device)
        dm = self.trainer.datamodule
        return dm.sample_labels(n, self._label_gen).to(self.device, torch.float32)

    @torch.no_grad()
    def _finish_grads(self, module: torch.nn.Module) -> torch.Tensor:
        """Average grads over processes and replace non-finite values (0, +-1e5); returns their count."""
        # Every rank reduces the same tensors: which parameters have a gradient follows from the graph, and
        # the op implementation that could change it (compiled ops leave R1's zero second-order gradient
        # of the last fc bias unconnected, ref ops do not) is the same on all ranks (agree_on_ops).
        params = [p for p in module.parameters() if p.numel() > 0 and p.grad is not None]
        world = self._world()
        if not params:
            return torch.zeros([], device=self.device)
        flat = torch.cat([p.grad.flatten() for p in params])
        if world > 1:
            flat = self._all_reduce_sum(flat) / world
        nonfinite = (~torch.isfinite(flat)).sum()
        torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.reshape(p.shape)
        return nonfinite

    # ------------------------------------------------------------------ phases
    def _run_phase(self, phase: str, gain: int, reals: list[tuple[torch.Tensor, torch.Tensor]], opt) -> None:
        module = self.G if phase.startswith("G") else self.D
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        for real_img, real_c in reals:
            n = real_img.shape[0]
            z = torch.randn([n, self.G.z_dim], device=self.device)
            stats = self.loss.accumulate_gradients(
                phase, self.G, self.D, self.augment_pipe, real_img, real_c, z, self._sample_c(n),
                gain, self.cur_nimg, backward=self._backward,
            )  # fmt: skip
            for name, values in stats.items():
                self.stats.report(name, values)
            if self.ada is not None and "Loss/signs/real" in stats:
                self.ada.accumulate(stats["Loss/signs/real"])
        module.requires_grad_(False)
        self.stats.report(f"Grad/{phase[0]}/nonfinite", self._finish_grads(module).float())
        opt.step()

    def phase_G_main(self, reals, opt, gain: int = 1) -> None:
        """G main phase (non-saturating loss; 'Gboth' also adds the path-length term)."""
        with self._profile("Gmain"):
            self._run_phase("Gboth" if self.derived["G_reg_interval"] is None else "Gmain", gain, reals, opt)

    def phase_G_reg(self, reals, opt, gain: int) -> None:
        """G regularization phase: path-length penalty (StyleGAN2)."""
        with self._profile("Greg"):
            self._run_phase("Greg", gain, reals, opt)

    def phase_D_main(self, reals, opt, gain: int = 1) -> None:
        """D main phase: logistic loss on fakes and reals ('Dboth' also adds R1)."""
        with self._profile("Dmain"):
            self._run_phase("Dboth" if self.derived["D_reg_interval"] is None else "Dmain", gain, reals, opt)

    def phase_D_reg(self, reals, opt, gain: int) -> None:
        """D regularization phase: lazy R1 through blur and augmentation (double backward)."""
        with self._profile("Dreg"):
            self._run_phase("Dreg", gain, reals, opt)

    def phase_ema(self) -> None:
        """G_ema update with the ramp-up schedule (cur_nimg before increment)."""
        with self._profile("Gema"):
            d = self.derived
            beta = ema_beta(d["batch"], self.cur_nimg, d["ema_kimg"], d["ema_rampup"])
            update_ema(self.G_ema, self.G, beta)

    def phase_ada(self) -> None:
        """ADA p adjustment every `interval` steps (statistics summed over processes)."""
        if self.ada is None or self.augment_pipe is None:
            return
        with self._profile("ADA"):
            self.ada.step(self.batch_idx, self.augment_pipe.p, all_reduce=self._all_reduce_sum)

    # ------------------------------------------------------------------ the step
    def split_reals(self, batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 `[N, C, H, W]` images, `[N, c_dim]` labels -> `batch_gpu`-sized float chunks in [-1, 1]."""
        img, c = batch
        expected = self.derived["batch_per_gpu"]
        if img.shape[0] != expected:
            raise ValueError(f"batch of {img.shape[0]} images, expected batch/processes = {expected}")
        img = img.to(self.device, torch.float32) / 127.5 - 1
        c = c.to(self.device, torch.float32)
        size = self.derived["batch_gpu"]
        return list(zip(img.split(size), c.split(size)))

    def training_step(self, batch, batch_idx: int) -> None:
        reals = self.split_reals(batch)
        opt_G, opt_D = self.optimizers()
        with self._no_grad_sync():
            for phase, interval in self.derived["phases"]:
                if self.batch_idx % interval != 0:
                    continue
                if phase in ("Gmain", "Gboth"):
                    self.phase_G_main(reals, opt_G, interval)
                elif phase == "Greg":
                    self.phase_G_reg(reals, opt_G, interval)
                elif phase in ("Dmain", "Dboth"):
                    self.phase_D_main(reals, opt_D, interval)
                else:
                    self.phase_D_reg(reals, opt_D, interval)
        self.phase_ema()
        prev_nimg = self.cur_nimg
        self.cur_nimg += self.derived["batch"]
        self.batch_idx += 1
        self.phase_ada()
        self._end_of_step(prev_nimg)

    def _end_of_step(self, prev_nimg: int) -> None:
        d = self.derived
        done = self.done
        checkpoint = done
        if d["checkpoint_kimg"] is not None:  # extra checkpoints; None: only at the snapshots (set below)
            every = d["checkpoint_kimg"] * 1000
            checkpoint = checkpoint or int(self.cur_nimg // every) > int(prev_nimg // every)
        is_tick = (
            done or self.cur_tick == 0 or self.cur_nimg >= self.tick_start_nimg + d["kimg_per_tick"] * 1000
        )
        self.tick_info = None
        if is_tick:
            self.tick_info = self._tick_summary(done)
            self.tick_info["checkpoint"] = checkpoint or self.tick_info["snapshot"]
            self.cur_tick += 1
        elif checkpoint:
            self.tick_info = {
                "tick": None,
                "done": False,
                "snapshot": False,
                "images": False,
                "checkpoint": True,
            }
        if done and self._trainer is not None:
            self.trainer.should_stop = True
        self._step_end_time = time.time()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """After the callbacks (Lightning calls this hook last): their work at this step is maintenance.

        As in the official loop, grids, snapshots, metrics and checkpoints do not count as training time in
        the next tick's `Timing/sec_per_tick` / `sec_per_kimg`; they are reported as `Timing/maintenance_sec`.
        """
        if self.tick_info is None:
            return
        spent = time.time() - self._step_end_time
        self._maintenance_sec += spent
        self._tick_start_time += spent

    def _tick_summary(self, done: bool) -> dict[str, Any]:
        d = self.derived
        now = time.time()
        tick_sec = now - self._tick_start_time
        tick_kimg = (self.cur_nimg - self.tick_start_nimg) / 1000
        stats = self.stats.summarize(self._all_reduce_sum if self._trainer is not None else None, self.device)
        scalars = {name: s["mean"] for name, s in stats.items()}
        total_sec = now - self._start_time
        scalars.update({
            "Progress/tick": self.cur_tick,
            "Progress/kimg": self.kimg,
            "Progress/augment": float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0,
            "Timing/total_sec": total_sec,
            "Timing/sec_per_tick": tick_sec,
            "Timing/sec_per_kimg": tick_sec / max(tick_kimg, 1e-8),
            "Timing/maintenance_sec": self._maintenance_sec,
            "Timing/total_hours": total_sec / (60 * 60),
            "Timing/total_days": total_sec / (24 * 60 * 60),
            "Timing/img_per_sec": tick_kimg * 1000 / max(tick_sec, 1e-8),
            "Resources/cpu_mem_gb": _cpu_mem_gb(),
        })  # fmt: skip
        if self.ada is not None and not torch.isnan(self.ada.last_rt):
            scalars["Progress/ada_rt"] = float(self.ada.last_rt)
        if self.device.type == "cuda":
            gib = 2**30
            scalars["Resources/peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / gib
            scalars["Resources/peak_gpu_mem_reserved_gb"] = torch.cuda.max_memory_reserved(self.device) / gib
            torch.cuda.reset_peak_memory_stats(self.device)
        self._tick_start_time = now
        self._maintenance_sec = 0.0
        self.tick_start_nimg = self.cur_nimg
        return {
            "tick": self.cur_tick,
            "done": done,
            "snapshot": done or self.cur_tick % every_ticks(d, "snapshot_kimg") == 0,
            "images": draws_grid(d, self.cur_tick, self.cur_nimg),
            "stats": stats,
            "scalars": scalars,
        }

    # ------------------------------------------------------------------ resuming (see CheckpointState)
    def on_train_start(self) -> None:
        if self.done:  # resumed at or past total_kimg: no step beyond it (an uninterrupted run has stopped)
            total = self.derived["total_kimg"]
            logging.getLogger("sg3.train").warning(
                "the checkpoint has already trained %g kimg, which reaches total_kimg=%g: nothing to train; "
                "pass a larger total_kimg (e.g. total_kimg=%g) to continue this run",
                self.kimg, total, 2 * max(total, self.kimg),
            )  # fmt: skip
            self.trainer.should_stop = True

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self._restored_rng is not None:  # the first step of a resumed run continues the saved streams
            restore_rank_rng(
                self._restored_rng, self.global_rank, self._world(), generators={"label": self._label_gen}
            )
            self._restored_rng = None


def _cpu_mem_gb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except OSError:
        return float("nan")
