"""Running training statistics (count, mean, std per official stat name), reduced across processes."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class StatCollector:
    """Accumulates per-sample values by name on the device, without host synchronisation.

    `report()` adds values; `summarize()` reduces the running sums over processes (with the given
    all-reduce) and returns `{name: {'num', 'mean', 'std'}}` as Python floats, then starts afresh.
    Every process must report the same names (they all run the same phases).
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}

    def report(self, name: str, values: torch.Tensor | float) -> None:
        """Add `values` (any shape, or a number) to the statistic `name`."""
        if not isinstance(values, torch.Tensor):
            values = torch.tensor(float(values))
        v = values.detach().flatten().to(torch.float64)
        # The count is filled on the device (new_full): a tensor from host data would be a synchronising copy.
        moments = torch.stack([v.new_full([], v.numel()), v.sum(), v.square().sum()])
        if name in self._sums:
            self._sums[name] = self._sums[name] + moments.to(self._sums[name].device)
        else:
            self._sums[name] = moments

    def names(self) -> list[str]:
        """Names reported since the last summary, sorted."""
        return sorted(self._sums)

    def moments(self, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """The running sums so far, `{name: float64 [count, sum, sum of squares]}` (for checkpoints)."""
        return {n: self._sums[n].to(device or self._sums[n].device, torch.float64) for n in self.names()}

    def load_moments(self, moments: dict[str, torch.Tensor], device: torch.device | None = None) -> None:
        """Replace the running sums with saved ones (`moments()`'s format), e.g. to continue a tick."""
        self._sums = {n: m.to(device or m.device, torch.float64) for n, m in moments.items()}

    def summarize(
        self,
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: torch.device | None = None,
    ) -> dict[str, dict[str, float]]:
        """Return `{name: {'num', 'mean', 'std'}}` over everything reported (all processes) and reset."""
        names = self.names()
        if not names:
            return {}
        stacked = torch.stack([self._sums[n].to(device or self._sums[n].device) for n in names])  # [K, 3]
        if all_reduce is not None:
            stacked = all_reduce(stacked)
        self._sums = {}
        out = {}
        for name, (num, total, sq) in zip(names, stacked.tolist()):
            mean = total / num if num else float("nan")
            var = max(sq / num - mean * mean, 0.0) if num else float("nan")
            out[name] = {"num": num, "mean": mean, "std": math.sqrt(var)}
        return out
