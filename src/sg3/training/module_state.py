"""What a training checkpoint holds of `StyleGAN3Module` besides its state_dict (`ckpt['sg3']`).

`CheckpointState` is a mixin of the module: Lightning's `on_save_checkpoint` / `on_load_checkpoint` hooks, the
statistics and timers of the tick in progress, and the tick rules that a resume shares with the training step.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from sg3.training.checkpoint import check_resume_fits
from sg3.training.rng import gather_rng_states


class CheckpointState:
    """Saving and restoring the counters, RNG states, tick in progress and per-rank values (a mixin)."""

    def _tick_state(self) -> dict[str, Any]:
        """The current tick so far: statistics (summed over processes) and seconds (collective)."""
        moments = self.stats.moments(self.device)  # name -> [num, sum, sum sq]
        names = list(moments)
        sums = (
            torch.stack(list(moments.values()))
            if moments
            else torch.zeros([0, 3], dtype=torch.float64, device=self.device)
        )
        if self._world() > 1:
            sums = self._all_reduce_sum(sums)
        now = time.time()
        step_end = self._step_end_time or now
        # This step's maintenance so far (checkpoints are written by callbacks after the step).
        maintenance = self._maintenance_sec + (now - step_end if self.tick_info is not None else 0.0)
        return {
            "stat_names": names,
            "stat_sums": sums.cpu(),
            "tick_sec": step_end - self._tick_start_time,
            "maintenance_sec": maintenance,
            "total_sec": step_end - self._start_time,
        }

    def _restore_tick(self) -> None:
        """Continue the saved tick: its statistics (rank 0 holds the sums of all processes) and timers."""
        tick, self._restored_tick = self._restored_tick, None
        if not tick:
            return
        rank0 = self.global_rank == 0
        self.stats.load_moments(
            {n: s if rank0 else torch.zeros_like(s) for n, s in zip(tick["stat_names"], tick["stat_sums"])},
            self.device,
        )
        now = time.time()
        self._start_time = now - float(tick["total_sec"])
        self._tick_start_time = now - float(tick["tick_sec"])
        self._maintenance_sec = float(tick["maintenance_sec"])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        def net(module):
            if module is None:
                return None
            kind = {id(self.D): "discriminator", id(self.augment_pipe): "augment_pipe"}.get(id(module))
            return {"kind": kind or self.derived["G_kind"], "init_kwargs": dict(module.init_kwargs)}

        gens = {"label": self._label_gen} if self._label_gen is not None else None
        checkpoint["sg3"] = {
            "format": "sg3-checkpoint",
            "version": 1,
            "networks": {
                "G": net(self.G),
                "D": net(self.D),
                "G_ema": net(self.G_ema),
                "augment_pipe": net(self.augment_pipe),
            },
            "config": self.cfg,
            "counters": {
                "cur_nimg": self.cur_nimg,
                "cur_tick": self.cur_tick,
                "batch_idx": self.batch_idx,
                "tick_start_nimg": self.tick_start_nimg,
            },
            "rng": gather_rng_states(self.all_gather if self._world() > 1 else None, self.device, gens),
            "tick": self._tick_state(),
            "wandb_run_id": self.wandb_run_id,
        }  # fmt: skip
        ada_key = "ada._extra_state"
        if self.ada is not None and self._world() > 1 and ada_key in checkpoint.get("state_dict", {}):
            # Each process accumulates its own signs; the checkpoint holds their sum (restored on rank 0).
            summed = self._all_reduce_sum(self.ada.stats.to(self.device, torch.float64).clone())
            checkpoint["state_dict"][ada_key] = {**checkpoint["state_dict"][ada_key], "stats": summed.cpu()}
        if self._world() > 1:  # updated from each process's own samples: every rank's value, rank by rank
            checkpoint["sg3"]["per_rank"] = {
                "loss.pl_mean": self.all_gather(self.loss.pl_mean.detach().reshape(1)).reshape(-1).cpu()
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sg3 = checkpoint.get("sg3")
        if not isinstance(sg3, dict) or sg3.get("format") != "sg3-checkpoint":
            raise ValueError(
                "checkpoint has no 'sg3' section (format 'sg3-checkpoint'); is it an sg3 training checkpoint?"
            )
        nets = {"G": self.G, "D": self.D, "G_ema": self.G_ema, "augment_pipe": self.augment_pipe}
        check_resume_fits(checkpoint, self, nets, trained=["G", "D"])
        counters = sg3["counters"]
        self.cur_nimg = int(counters["cur_nimg"])
        self.cur_tick = int(counters["cur_tick"])
        self.batch_idx = int(counters["batch_idx"])
        self.tick_start_nimg = int(counters.get("tick_start_nimg", self.cur_nimg))
        self._restored_rng = sg3.get("rng")
        self._restored_tick = sg3.get("tick")
        # Checkpoints are written before the step's grid: a process killed in between lost that grid.
        saved = (sg3.get("config") or {}).get("derived") or {}
        if not all(k in saved for k in ("image_kimg", "kimg_per_tick", "total_kimg")):
            saved = self.derived
        at_tick = self.cur_tick > 0 and self.tick_start_nimg == self.cur_nimg > 0  # the step ended a tick
        self.resumed_at_grid_step = at_tick and draws_grid(saved, self.cur_tick - 1, self.cur_nimg)
        ada_state = checkpoint.get("state_dict", {}).get("ada._extra_state")
        if self.ada is not None and isinstance(ada_state, dict) and self.global_rank != 0:
            # The saved sums are those of all processes: rank 0 continues them, the others start at zero.
            checkpoint["state_dict"]["ada._extra_state"] = {
                **ada_state,
                "stats": torch.zeros([2], dtype=torch.float64),
            }
        for key, values in (sg3.get("per_rank") or {}).items():  # this rank's own value (same process count)
            if len(values) == self._world() and key in checkpoint.get("state_dict", {}):
                checkpoint["state_dict"][key] = values[self.global_rank].reshape(
                    checkpoint["state_dict"][key].shape
                )
        self.wandb_run_id = sg3.get("wandb_run_id") or self.wandb_run_id
        # The optimiser settings of this run's configuration (overrides given on resume take effect); the
        # moments continue. Lightning restores the optimiser states after this hook.
        for state, opt in zip(
            checkpoint.get("optimizer_states", []), (self.derived["G_opt"], self.derived["D_opt"])
        ):
            for group in state.get("param_groups", []):
                group.update(lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"])


def every_ticks(derived: dict[str, Any], key: str) -> int:
    """Ticks between snapshots (`key` 'snapshot_kimg') or fake grids ('image_kimg'), at least 1."""
    return max(int(round(derived[key] / derived["kimg_per_tick"])), 1)


def draws_grid(derived: dict[str, Any], tick: int, cur_nimg: int) -> bool:
    """Whether the step ending tick `tick` at `cur_nimg` images draws the fake grid (the last step does)."""
    return cur_nimg >= derived["total_kimg"] * 1000 or tick % every_ticks(derived, "image_kimg") == 0
