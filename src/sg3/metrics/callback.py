"""Lightning callback: compute the configured metrics at the network snapshots during training.

All ranks run the metrics together (sampling is sharded, results are identical on every rank and equal
to a single-process run with the same seed). Rank zero logs `Metrics/<result>` to every Lightning
logger and appends one JSON line per metric to `<run dir>/metric-<name>.jsonl` (the official layout:
`{"results": {...}, "metric": name, "total_time": s, "total_time_str": ..., "num_gpus": n, "kimg": k,
"snapshot_pkl": file (when a snapshot was exported at that step), "timestamp": t}`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from sg3.metrics.registry import compute, parse_metric

log = logging.getLogger(__name__)

__all__ = ["MetricsCallback", "append_jsonl", "format_seconds"]


def format_seconds(s: float) -> str:
    """'1h 02m 03s' style duration."""
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def append_jsonl(run_dir: str | os.PathLike, metric: str, results: dict[str, float], seconds: float,
                 num_gpus: int = 1, **extra: Any) -> Path:  # fmt: skip
    """Append one result line to `<run_dir>/metric-<metric>.jsonl`; returns the file path."""
    path = Path(run_dir) / f"metric-{metric}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = dict(results=results, metric=metric, total_time=seconds, total_time_str=format_seconds(seconds),
                num_gpus=num_gpus, **extra, timestamp=time.time())  # fmt: skip
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
    return path


class MetricsCallback(pl.Callback):
    """Compute metrics on `G_ema` at the network snapshots (spec §5.3), on the G_ema that was exported.

    Metrics run at maintenance steps, the steps that end a tick (`pl_module.tick_info`): at the tick-0
    snapshot of a fresh run (the first step), at the final snapshot, and at the first tick end at or past
    each multiple of `every_kimg` (thousand images shown to D); when `every_kimg` is at least the
    snapshot interval (the default equals it), at the first network snapshot at or past each multiple,
    so that the results belong to that snapshot. A module without `tick_info` is evaluated at any step.

    Args:
        metrics: Metric names (e.g. `['fid50k_full', 'eqt50k_int']`); validated at construction.
        every_kimg: Interval in kimg (images shown to D / 1000); must be > 0.
        seed: Seed of the generated samples (the same samples at every evaluation).
        batch_size: Generator batch of the feature metrics.
        cache_dir: Dataset-statistics cache; None = `$SG3_METRICS_CACHE` or `~/.cache/sg3/gan-metrics`.
        weights_dir: Detector weights folder; None = `$SG3_METRICS_WEIGHTS` or `~/.cache/sg3/metrics`.
        run_dir: Where the `metric-*.jsonl` files go; None = the trainer's `default_root_dir`.
        progress: Progress bars on rank zero.
        detectors: Detectors by kind to use instead of torch-fidelity's (tests).
    """

    def __init__(
        self,
        metrics: list[str],
        every_kimg: float | None,
        seed: int = 0,
        batch_size: int = 32,
        cache_dir: str | None = None,
        weights_dir: str | None = None,
        run_dir: str | None = None,
        progress: bool = True,
        detectors: dict | None = None,
    ) -> None:
        super().__init__()
        self.metrics = [parse_metric(m).name for m in (metrics or [])]
        if every_kimg is None or not every_kimg > 0:
            raise ValueError(f"every_kimg must be a positive number of kimg, got {every_kimg!r}")
        self.every_kimg = float(every_kimg)
        self.seed, self.batch_size, self.progress = int(seed), int(batch_size), bool(progress)
        self.cache_dir, self.weights_dir, self.run_dir = cache_dir, weights_dir, run_dir
        self.detectors = detectors
        self._done = -1  # last interval evaluated; -1: not even the first step's (tick 0) yet
        self._evaluated_nimg = -1  # cur_nimg of the last evaluation (one per step)
        self._module: Any = None  # the LightningModule (state_dict runs inside checkpoint saving)
        self._pending: dict[str, Any] | None = None  # restored: an evaluation the checkpoint step still owed
        self.last_results: dict[str, float] = {}

    def check_prerequisites(self, G: torch.nn.Module, data: Any = None) -> None:
        """Raise `sg3.metrics.preflight.MetricPrerequisiteError` when a metric would fail for lack of a
        detector weights file, real images or a StyleGAN3 generator (checked as `evaluate` will need them).

        Args:
            G: The generator the metrics will evaluate (the module's `G_ema`).
            data: The data module of the run (the real images of fid/kid/pr).
        """
        from sg3.metrics.preflight import check_metrics

        check_metrics(self.metrics, G=G, data=data, weights_dir=self.weights_dir, detectors=self.detectors)

    # ---- schedule ---------------------------------------------------------------------------------

    def _due(self, pl_module: Any) -> int:
        return int(pl_module.cur_nimg // (self.every_kimg * 1000))

    def _scheduled(self, pl_module: Any) -> bool:
        """Whether the metrics run at this step (see the class docstring); False once they have."""
        if not self.metrics or pl_module.cur_nimg == self._evaluated_nimg:
            return False
        if not hasattr(pl_module, "tick_info"):  # a bare module: any step past a new interval
            return self._due(pl_module) > self._done
        info = pl_module.tick_info or {}
        if info.get("tick") is None:  # not a maintenance step (or a checkpoint-only step)
            return False
        if info.get("done") or self._done < 0:  # the final snapshot; the tick-0 snapshot of a fresh run
            return True
        if self._due(pl_module) <= self._done:
            return False
        snapshot_kimg = (getattr(pl_module, "derived", None) or {}).get("snapshot_kimg")
        return bool(info.get("snapshot")) if snapshot_kimg and self.every_kimg >= snapshot_kimg else True

    def setup(self, trainer: Any, pl_module: Any, stage: str | None = None) -> None:
        self._module = pl_module

    def state_dict(self) -> dict[str, Any]:
        """`done`: last interval evaluated; `pending_nimg`: the checkpoint is written at a step whose metrics
        run after it (snapshots are saved first), so a run resumed from it owes them."""
        m = self._module
        pending = m is not None and self._scheduled(m)
        return {"done": self._done, "pending_nimg": int(m.cur_nimg) if pending else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = int(state_dict.get("done", 0))
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """A resumed run first computes the metrics its checkpoint's step still owed, on the restored G_ema
        (the snapshot's), skipping those `metric-<name>.jsonl` already holds for that step."""
        self._module = pl_module
        state, self._pending = self._pending, None
        if state is None or not self.metrics:
            return
        nimg = int(pl_module.cur_nimg)
        if "pending_nimg" in state:
            if state["pending_nimg"] != nimg:
                return
            recorded = self._recorded(trainer, lambda n: n == nimg)
        else:  # a checkpoint of the interval-only schedule: owed when its step made a new interval due
            due = self._due(pl_module)
            if due <= self._done:
                return
            interval = self.every_kimg * 1000
            recorded = self._recorded(trainer, lambda n: int(n // interval) >= due)
        self._done = max(self._done, self._due(pl_module))
        names = [name for name in self.metrics if name not in recorded]
        self._evaluated_nimg = nimg
        if names:  # the restored G_ema is the checkpoint step's, so that of its snapshot if it had one
            self.evaluate(trainer, pl_module, names, snapshot=True)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._module = pl_module
        if not self._scheduled(pl_module):
            return
        self._done = max(self._done, self._due(pl_module))
        self._evaluated_nimg = int(pl_module.cur_nimg)
        self.evaluate(trainer, pl_module)

    def _recorded(self, trainer: Any, match: Any) -> set[str]:
        """Metrics whose `metric-<name>.jsonl` holds a result whose image count `match(nimg)` accepts.

        Rank zero reads the files and the other ranks follow its answer (all ranks compute together).
        """
        found: set[str] = set()
        if int(trainer.global_rank) == 0:
            run_dir = Path(self.run_dir or trainer.default_root_dir)
            for name in self.metrics:
                try:
                    lines = (run_dir / f"metric-{name}.jsonl").read_text().splitlines()
                    nimgs = [round(float(json.loads(x)["kimg"]) * 1000) for x in lines if x.strip()]
                except (OSError, ValueError, KeyError, TypeError):  # no record (or an unreadable one)
                    continue
                if any(match(nimg) for nimg in nimgs):
                    found.add(name)
        if int(trainer.world_size) > 1:
            found = trainer.strategy.broadcast(found, src=0)
        return found

    def evaluate(
        self, trainer: Any, pl_module: Any, names: list[str] | None = None, snapshot: bool | None = None
    ) -> dict[str, float]:
        """Compute the metrics now (all ranks; `names`: a subset, None = all), log and record them (rank
        zero); returns the results. `snapshot`: G_ema is that of this step's network snapshot, whose file
        the records name (`snapshot_pkl`); None = this step's `tick_info['snapshot']`."""
        if snapshot is None:
            snapshot = bool((getattr(pl_module, "tick_info", None) or {}).get("snapshot"))
        G = pl_module.G_ema
        data = getattr(trainer, "datamodule", None)
        rank, world = int(trainer.global_rank), int(trainer.world_size)
        kimg = pl_module.cur_nimg / 1000
        run_dir = self.run_dir or trainer.default_root_dir
        results: dict[str, float] = {}
        dev = next(G.parameters()).device
        # An observer: the data loaders and samplers it runs leave the training's random streams as they were.
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            for name in self.metrics if names is None else names:
                results.update(self._one(name, G, data, rank, world, run_dir, kimg, snapshot))
        if rank == 0:
            from sg3.training.loggers import logger_step

            # The tick statistics' x value (training steps; int(kimg) on TensorBoard). Not Lightning's
            # global_step: it counts every optimizer step (about 2 per training step), and W&B drops the
            # next ticks' values when a step goes backwards.
            batch_idx = int(getattr(pl_module, "batch_idx", 0))
            for logger in trainer.loggers:
                step = logger_step(logger, kimg, batch_idx)
                logger.log_metrics({f"Metrics/{k}": v for k, v in results.items()}, step=step)
        self.last_results = results
        return results

    def _one(
        self, name: str, G: Any, data: Any, rank: int, world: int, run_dir: Any, kimg: float, snapshot: bool
    ) -> dict:
        """Compute one metric (all ranks); rank zero appends it to `metric-<name>.jsonl`."""
        t0 = time.perf_counter()
        res = compute(
            name, G, data=data if parse_metric(name).needs_data or G.c_dim else None,
            rank=rank, world_size=world, seed=self.seed, batch_size=self.batch_size,
            progress=self.progress, cache_dir=self.cache_dir, weights_dir=self.weights_dir,
            detectors=self.detectors,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        if rank == 0:
            extra: dict[str, Any] = {"kimg": kimg}
            name_pt = f"network-snapshot-{int(round(kimg * 1000)) // 1000:06d}.pt"
            if snapshot and (Path(run_dir) / name_pt).is_file():  # exported this step (Snapshots ran first)
                extra["snapshot_pkl"] = name_pt
            append_jsonl(run_dir, name, res, seconds, num_gpus=world, **extra)
            log.info("kimg %.3f %s", kimg, " ".join(f"{k} {v:.4f}" for k, v in res.items()))
        return res
