"""Lightning callback: compute the configured metrics every N kimg during training.

All ranks run the metrics together (sampling is sharded, results are identical on every rank and equal
to a single-process run with the same seed). Rank zero logs `Metrics/<result>` to every Lightning
logger and appends one JSON line per metric to `<run dir>/metric-<name>.jsonl` (the official layout:
`{"results": {...}, "metric": name, "total_time": s, "total_time_str": ..., "num_gpus": n, "kimg": k,
"timestamp": t}`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

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
    """Compute metrics on `G_ema` at the first training step and every `every_kimg` thousand images.

    The first step of a fresh run is the tick-0 snapshot (spec §5.3: maintenance runs on the first
    iteration), so its metrics are computed like the official loop's kimg-0 results. Interval `i` is
    due at the first step with `cur_nimg >= i * every_kimg * 1000`; the first step counts as interval 0.

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
        self._resumed = False  # restored from a checkpoint: consult the records before the next evaluation
        self.last_results: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"done": self._done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = int(state_dict.get("done", 0))
        self._resumed = True

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        due = int(pl_module.cur_nimg // (self.every_kimg * 1000))
        if due <= self._done or not self.metrics:
            return
        self._done = due
        names = self.metrics
        if self._resumed:  # the checkpoint may have been written just before these metrics ran and recorded
            self._resumed = False
            recorded = self._recorded(trainer, due)
            names = [name for name in self.metrics if name not in recorded]
        if names:
            self.evaluate(trainer, pl_module, names)

    def _recorded(self, trainer: Any, due: int) -> set[str]:
        """Metrics whose `metric-<name>.jsonl` already holds a result of interval `due` or later.

        A snapshot checkpoint is written in the step that makes a metric due, before the metric runs; a run
        resumed from it would compute and append that interval's result a second time. Rank zero reads the
        files and the other ranks follow its answer (all ranks compute the metrics together).
        """
        found: set[str] = set()
        if int(trainer.global_rank) == 0:
            run_dir = Path(self.run_dir or trainer.default_root_dir)
            interval_nimg = self.every_kimg * 1000
            for name in self.metrics:
                try:
                    lines = (run_dir / f"metric-{name}.jsonl").read_text().splitlines()
                    nimgs = [round(float(json.loads(x)["kimg"]) * 1000) for x in lines if x.strip()]
                except (OSError, ValueError, KeyError, TypeError):  # no record (or an unreadable one)
                    continue
                if any(int(nimg // interval_nimg) >= due for nimg in nimgs):
                    found.add(name)
        if int(trainer.world_size) > 1:
            found = trainer.strategy.broadcast(found, src=0)
        return found

    def evaluate(self, trainer: Any, pl_module: Any, names: list[str] | None = None) -> dict[str, float]:
        """Compute the metrics now (all ranks; `names`: a subset, None = all), log and record them (rank
        zero); returns the results."""
        G = pl_module.G_ema
        data = getattr(trainer, "datamodule", None)
        rank, world = int(trainer.global_rank), int(trainer.world_size)
        kimg = pl_module.cur_nimg / 1000
        run_dir = self.run_dir or trainer.default_root_dir
        results: dict[str, float] = {}
        for name in self.metrics if names is None else names:
            t0 = time.perf_counter()
            res = compute(
                name, G, data=data if parse_metric(name).needs_data or G.c_dim else None,
                rank=rank, world_size=world, seed=self.seed, batch_size=self.batch_size,
                progress=self.progress, cache_dir=self.cache_dir, weights_dir=self.weights_dir,
                detectors=self.detectors,
            )  # fmt: skip
            seconds = time.perf_counter() - t0
            results.update(res)
            if rank == 0:
                append_jsonl(run_dir, name, res, seconds, num_gpus=world, kimg=kimg)
                log.info("kimg %.1f %s", kimg, " ".join(f"{k} {v:.4f}" for k, v in res.items()))
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
