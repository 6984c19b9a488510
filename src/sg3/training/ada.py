"""Adaptive discriminator augmentation: the probability controller (spec §5.4).

The controller accumulates the signs of D's raw outputs on real images (from the Dmain and Dreg
phases), and every `interval` steps moves the augmentation probability `p` one step of size
`batch * interval / (ada_kimg * 1000)` towards the side that brings `E[sign(D(real))]` to `target`.
The accumulated sums are reduced across processes before the decision so that every rank keeps the
same `p`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class AdaController(nn.Module):
    """Adjusts `augment_pipe.p` from D's overfitting heuristic `r_t = E[sign(D(real))]`.

    Args:
        target: Target value of r_t (0.6 in the paper).
        interval: Steps between adjustments.
        adjust: Size of one adjustment of p (see `sg3.training.derive.ada_adjust`); 0 freezes p.

    The running sums `stats` = `[sum of signs, count]` and the latest r_t `last_rt` (NaN before the
    first adjustment) travel with the checkpoint as the module's extra state. They are deliberately not
    buffers: DDP broadcasts buffers from rank 0 at every forward, which would replace each rank's own
    sums with rank 0's.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, adjust: float = 0.0) -> None:
        super().__init__()
        if interval < 1:
            raise ValueError(f"interval={interval} is not valid: a positive number of steps")
        if adjust < 0:
            raise ValueError(f"adjust={adjust} is not valid: a step size >= 0")
        self.target = float(target)
        self.interval = int(interval)
        self.adjust = float(adjust)
        self.stats = torch.zeros([2], dtype=torch.float64)
        self.last_rt = torch.full([], float("nan"), dtype=torch.float64)

    def get_extra_state(self) -> dict:
        return {"stats": self.stats.cpu(), "last_rt": float(self.last_rt)}  # at checkpoints only

    def set_extra_state(self, state: dict) -> None:
        self.stats = state["stats"].to(torch.float64).to(self.stats.device)
        self.last_rt = torch.tensor(float(state["last_rt"]), dtype=torch.float64)

    @torch.no_grad()
    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add the signs of D's logits on real images (any shape) to the running sums."""
        signs = real_logits.detach().sign().to(torch.float64)
        if self.stats.device != signs.device:
            self.stats = self.stats.to(signs.device)
        self.stats[0] += signs.sum()  # on the logits' device: no host round trip
        self.stats[1] += signs.numel()

    @torch.no_grad()
    def step(
        self,
        batch_idx: int,
        p: torch.Tensor,
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> bool:
        """Adjust `p` in place when `batch_idx % interval == 0` and signs were seen.

        Args:
            batch_idx: Number of completed training steps (the official loop's counter after increment).
            p: The augmentation probability buffer (scalar tensor), modified in place; clamped at 0 only.
            all_reduce: Sums a tensor over processes (None for a single process).

        Returns:
            True on an adjustment step (p moves only if signs were seen since the last one).

        Everything stays on the statistics' device (no host round trip in the training step): without
        signs, the step leaves p and `last_rt` as they are.
        """
        if self.adjust == 0 or batch_idx % self.interval != 0:
            return False
        stats = self.stats.clone()
        if all_reduce is not None:
            stats = all_reduce(stats)
        self.stats.zero_()
        seen = stats[1] > 0
        rt = stats[0] / stats[1].clamp(min=1)
        direction = torch.where(seen, torch.sign(rt - self.target), torch.zeros_like(rt))
        p.copy_((p + direction.to(p.device, p.dtype) * self.adjust).clamp(min=0))
        self.last_rt = torch.where(seen, rt, self.last_rt.to(rt.device))
        return True
