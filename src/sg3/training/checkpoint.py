"""Training checkpoints: atomic writes, finding the latest one, pruning, and transfer-learning init.

A checkpoint is Lightning's `.ckpt` (weights_only-loadable) plus `ckpt['sg3']` (docs/internals.md).
Files are named `ckpt-{cur_nimg:09d}.ckpt` inside `<run dir>/checkpoints`, so the newest one is the
one with the most images seen. On SLURM, Lightning's auto-requeue (SIGUSR1) also writes
`<run dir>/hpc_ckpt_<N>.ckpt` before requeueing the job; resuming considers those too.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from sg3.io import atomic_write, load_networks
from sg3.training.derive import ConfigError

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^ckpt-(\d{9,})\.ckpt$")
_HPC_RE = re.compile(r"^hpc_ckpt_(\d+)\.ckpt$")
_TMP_RE = re.compile(r"^ckpt-\d{9,}\.ckpt\.tmp-\d+$")  # atomic_write's temporary name


def checkpoint_path(run_dir: str | os.PathLike, cur_nimg: int) -> Path:
    """Path of the checkpoint written after `cur_nimg` images in `run_dir`."""
    return Path(run_dir) / CKPT_DIR / f"ckpt-{cur_nimg:09d}.ckpt"


def _numbered(folder: Path, pattern: re.Pattern) -> list[Path]:
    """The files of `folder` whose names match `pattern`, by the number it captures ascending ([] if none)."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of `run_dir`, oldest first (temporary files of interrupted writes are ignored)."""
    return _numbered(Path(run_dir) / CKPT_DIR, _CKPT_RE)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of `run_dir`, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def list_hpc_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Lightning's requeue checkpoints `<run_dir>/hpc_ckpt_<N>.ckpt` (SLURM auto-requeue), by N ascending."""
    return _numbered(Path(run_dir), _HPC_RE)


def latest_hpc_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """Lightning's newest requeue checkpoint `<run_dir>/hpc_ckpt_<N>.ckpt`, or None."""
    found = list_hpc_checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps all); returns the deleted paths.

    Also deletes the temporary files that killed processes left behind mid-write (`<name>.tmp-<pid>` of
    another process: each is up to a checkpoint's size, and nothing else would ever remove them).
    """
    folder = Path(run_dir) / CKPT_DIR
    own = f".tmp-{os.getpid()}"
    for p in folder.iterdir() if folder.is_dir() else ():
        if _TMP_RE.match(p.name) and not p.name.endswith(own) and p.is_file():
            log.info("removing %s (left by an interrupted checkpoint write)", p)
            p.unlink(missing_ok=True)
    found = list_checkpoints(run_dir)
    if keep <= 0 or len(found) <= keep:
        return []
    doomed = found[:-keep]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def set_aside_newer_checkpoints(run_dir: str | os.PathLike, cur_nimg: int) -> list[Path]:
    """Move checkpoints with more than `cur_nimg` images to `checkpoints/superseded/`; returns the new paths.

    A run resumed from an older checkpoint of its run directory branches off: the newer checkpoints belong to
    the abandoned continuation. Left in place they would stay the "newest" (resume=auto would go back to
    them) and pruning would delete the resumed run's own checkpoints first. This covers Lightning's SLURM
    requeue checkpoints `<run_dir>/hpc_ckpt_<N>.ckpt` too (numbered, so their images are read from the file).
    """
    dest = Path(run_dir) / CKPT_DIR / "superseded"
    newer = [p for p in list_checkpoints(run_dir) if int(_CKPT_RE.match(p.name).group(1)) > cur_nimg]
    newer += [p for p in list_hpc_checkpoints(run_dir) if (_saved_nimg(p) or 0) > cur_nimg]
    moved = []
    for p in newer:
        dest.mkdir(exist_ok=True)
        target, n = dest / p.name, 1
        while target.exists():  # an earlier branch's file of the same name is kept too
            target, n = dest / f"{p.stem}.{n}{p.suffix}", n + 1
        os.replace(p, target)
        moved.append(target)
    return moved


def _saved_nimg(path: Path) -> int | None:
    """`cur_nimg` of an sg3 training checkpoint (memory-mapped: the weights are not read), else None."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["sg3"]["counters"]["cur_nimg"])
    except Exception as e:  # noqa: BLE001 - not an sg3 checkpoint: left where it is
        log.warning("%s: cannot read its image count (%s); left in place", path, e)
        return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that never leaves a half-written checkpoint behind and loads weights-only."""

    _deferred: list[Exception] | None = None

    @contextlib.contextmanager
    def deferred_errors(self) -> Iterator[list[Exception]]:
        """Within: a failed write is added to the yielded list, not raised (see `save_on_all_ranks`)."""
        self._deferred = errors = []
        try:
            yield errors
        finally:
            self._deferred = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"storage_options={storage_options!r} is not supported: pass None")
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as f:
                torch.save(checkpoint, f)
        except Exception as e:
            if self._deferred is None:
                raise
            self._deferred.append(e)

    def load_checkpoint(
        self, path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class CheckpointWriteError(RuntimeError):
    """A rank could not build or write a checkpoint (raised on every rank, naming that rank's error)."""


_saves = itertools.count()  # save_on_all_ranks calls of this process: the same sequence on every rank


class _FailureWatch:
    """While a checkpoint is saved: reads a failure that another rank posted to the process group's store.

    A rank whose checkpoint building raised (a hook or a state_dict, before the write) leaves the collectives
    that the others are waiting in. It posts its error to the store (`post`), waits until the other ranks'
    watchers have read it, and raises; once it has exited, their pending collective fails (gloo: "connection
    closed by peer") and they raise its error too (`stop` returns it) instead of only that.
    """

    def __init__(self, key: str) -> None:
        self.key, self.seen = key, None
        try:
            self.store = dist.distributed_c10d._get_default_store()
        except (RuntimeError, ValueError, AttributeError):  # no process group: nothing to watch
            self.store = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sg3-checkpoint-watch", daemon=True)
        if self.store is not None:
            self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            try:
                if self.store.check([self.key]):
                    self.seen = self.store.get(self.key).decode()
                    self.store.add(f"{self.key}/read", 1)
                    return
            except Exception:  # noqa: BLE001 - the store's host (rank 0) has gone: nothing more to read
                return

    def stop(self) -> str | None:
        """Stop watching; returns the failure another rank posted, or None."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.seen

    def post(self, failure: str, world_size: int, wait_s: float = 30.0) -> str:
        """Post this rank's failure (the first posted one stays) and wait until the other ranks have read it
        (`wait_s` at most); returns the failure that stays posted."""
        if self.store is None:
            return failure
        try:
            posted = self.store.compare_set(self.key, "", failure).decode()
            deadline = time.monotonic() + wait_s
            while self.store.add(f"{self.key}/read", 0) < world_size - 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            return posted
        except Exception:  # noqa: BLE001 - no store to tell the others through: raise this rank's own error
            return failure


def save_on_all_ranks(trainer, path: str | os.PathLike, weights_only: bool = False) -> None:
    """`trainer.save_checkpoint(path)` (every rank calls it); a failing rank stops every rank with its error.

    Lightning's save builds the checkpoint on every rank (collectively), rank 0 writes it, then all ranks meet
    at a barrier. A write error on rank 0 skipped its barrier: the other ranks waited there until rank 0's
    process exited or the process group timed out, with an error naming neither the file nor the cause. Here
    rank 0 records the error, passes the barrier, and sends the reason to all ranks, which raise it together.
    An error while building the checkpoint (a hook or a state_dict raising on one rank, between the
    collectives of the others) cannot wait for a matching collective: that rank posts it to the process
    group's store and raises; the others read it there and raise it when their pending collective breaks
    (`_FailureWatch`).

    Raises:
        CheckpointWriteError: on every rank, naming the failing rank's error.
    """
    io = getattr(trainer.strategy, "checkpoint_io", None)
    if trainer.world_size <= 1 or not isinstance(io, AtomicCheckpointIO):
        trainer.save_checkpoint(path, weights_only=weights_only)
        return
    rank = trainer.global_rank
    watch = _FailureWatch(f"sg3/checkpoint-failed/{next(_saves)}")
    try:
        with io.deferred_errors() as errors:
            trainer.save_checkpoint(path, weights_only=weights_only)
    except Exception as e:
        failure = watch.stop() or watch.post(f"rank {rank}: {type(e).__name__}: {e}", trainer.world_size)
        raise CheckpointWriteError(
            f"rank {rank}: building the checkpoint failed on {failure} (saving {path})"
        ) from e
    watch.stop()
    reason = trainer.strategy.broadcast(f"{type(errors[0]).__name__}: {errors[0]}" if errors else None, src=0)
    if reason is not None:
        raise CheckpointWriteError(
            f"rank {rank}: the checkpoint write failed on rank 0: {reason} (writing {path})"
        ) from (errors[0] if errors else None)


def read_sg3_section(path: str | os.PathLike) -> dict[str, Any]:
    """`ckpt['sg3']` of an sg3 training checkpoint (loaded weights-only).

    Raises:
        ValueError: if the file is not an sg3 training checkpoint.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sg3 = ckpt.get("sg3") if isinstance(ckpt, dict) else None
    if not isinstance(sg3, dict) or sg3.get("format") != "sg3-checkpoint":
        raise ValueError(
            f"{path} is not an sg3 training checkpoint (no ckpt['sg3'] of format 'sg3-checkpoint')"
        )
    return sg3


def resolve_resume(resume: str | None, run_dir: str | os.PathLike) -> Path | None:
    """Checkpoint to resume from: None (fresh run), 'auto' (latest readable in run_dir, if any) or a path.

    'auto' picks the most recently written of the newest `checkpoints/ckpt-*.ckpt` and Lightning's newest
    `hpc_ckpt_<N>.ckpt`. A run directory holding an `hpc_ckpt` belongs to a SLURM job that Lightning
    requeued, so resume=None continues it like 'auto' (same counters, ADA p and W&B run). A candidate that
    cannot be read (truncated by a copy or a full disk) is skipped with a warning and left where it is (the
    resumed run moves it to `checkpoints/superseded/` with the other checkpoints past its own); the next
    newest is tried.

    Raises:
        ValueError: for a missing or unreadable path, a fresh run in a run directory that already holds
            checkpoints, or a run directory none of whose checkpoints can be read.
    """
    hpc = latest_hpc_checkpoint(run_dir)
    if resume is None and hpc is None:
        existing = latest_checkpoint(run_dir)
        if existing is not None:
            raise ValueError(
                f"run directory {run_dir} already holds checkpoints (latest {existing.name}); "
                "pass resume=auto to continue that run, or name=<new name> to start another one"
            )
        return None
    if resume is None or resume == "auto":
        ckpts, hpcs = list_checkpoints(run_dir)[::-1], list_hpc_checkpoints(run_dir)[::-1]
        unreadable: list[str] = []
        while ckpts or hpcs:
            pick = max((found[0] for found in (ckpts, hpcs) if found), key=lambda p: p.stat().st_mtime_ns)
            (ckpts if ckpts and pick == ckpts[0] else hpcs).pop(0)
            reason = _unreadable_reason(pick, check_format=False)
            if reason is None:
                if unreadable:
                    log.warning(
                        "resume=auto: skipped unreadable checkpoint(s) %s (left in place); resuming from %s",
                        "; ".join(unreadable), pick.name,
                    )  # fmt: skip
                return pick
            unreadable.append(f"{pick.name} ({reason})")
        if unreadable:
            raise ValueError(
                f"resume=auto: no readable checkpoint in {run_dir}: {'; '.join(unreadable)}. Restore one "
                "from a backup, pass resume=<path> of another, or start another run with name=<new name>"
            )
        return None
    path = Path(resume).expanduser()
    if not path.is_file():
        raise ValueError(f"resume={resume!r}: no such checkpoint file (pass resume=auto or a .ckpt path)")
    reason = _unreadable_reason(path)
    if reason is not None:
        raise ValueError(f"resume={resume!r}: cannot read the checkpoint ({reason})")
    return path


def _unreadable_reason(path: Path, check_format: bool = True) -> str | None:
    """Why `path` is not a readable sg3 training checkpoint (one line), or None when it is.

    The file is memory-mapped: its structure and sg3 section are read, the weights are not. Without
    `check_format`, any file that loads passes (the run folder's own `ckpt-*.ckpt` names).
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means: not usable
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0]  # torch adds paragraphs of advice
        return f"{type(e).__name__}: {first[:200]}; {path.stat().st_size} bytes"
    sg3 = ckpt.get("sg3") if isinstance(ckpt, dict) else None
    if check_format and (not isinstance(sg3, dict) or sg3.get("format") != "sg3-checkpoint"):
        return "not an sg3 training checkpoint: no ckpt['sg3'] of format 'sg3-checkpoint'"
    return None


def check_resume_fits(
    checkpoint: dict[str, Any], model: nn.Module, networks: dict[str, nn.Module | None], trained: list[str]
) -> None:
    """Raise a ConfigError naming what differs when `checkpoint` was written by another configuration.

    Called inside Lightning's `on_load_checkpoint` (i.e. within `trainer.fit`): a ConfigError (a ValueError)
    reaches sg3-train's configuration-error handler, which prints it in one line and exits with code 2.

    Args:
        checkpoint: The loaded training checkpoint (`state_dict`, `optimizer_states`, `sg3`).
        model: The module to restore; its state_dict keys and shapes must be the checkpoint's.
        networks: name ('G', 'D', 'G_ema', 'augment_pipe') -> this run's network (None = absent), whose
            `init_kwargs` are compared with the checkpoint's to name the differing settings.
        trained: Network names of the optimisers, in the order of `checkpoint['optimizer_states']`; each
            optimiser state must hold as many tensors as the network trains (Freeze-D keeps the keys).
    """
    saved, current = checkpoint.get("state_dict") or {}, model.state_dict()
    problems = []
    for label, names in (
        ("not in the checkpoint", [k for k in current if k not in saved]),
        ("only in the checkpoint", [k for k in saved if k not in current]),
    ):
        if names:
            problems.append(
                f"{label}: {', '.join(names[:8])}" + (f" ({len(names) - 8} more)" if len(names) > 8 else "")
            )
    shapes = [
        f"{key}: checkpoint {list(value.shape)}, model {list(current[key].shape)}"
        for key, value in saved.items()
        if isinstance(value, torch.Tensor)
        and isinstance(current.get(key), torch.Tensor)
        and value.shape != current[key].shape
    ]
    problems += shapes[:12] + (
        [f"({len(shapes) - 12} more tensors of other shapes)"] if len(shapes) > 12 else []
    )
    for name, state in zip(trained, checkpoint.get("optimizer_states") or []):
        n_saved = sum(len(group.get("params", [])) for group in state.get("param_groups", []))
        n_now = sum(1 for _ in networks[name].parameters())
        if n_saved != n_now:
            problems.append(
                f"the checkpoint's {name} optimiser trains {n_saved} tensors, this {name} trains {n_now}"
            )
    if not problems:
        return
    entries = ((checkpoint.get("sg3") or {}).get("networks")) or {}
    settings = []
    for name, module in networks.items():
        entry = entries.get(name)
        if (entry is None) != (module is None):
            settings.append(
                f"{name}: {'absent' if entry is None else 'present'} in the checkpoint, "
                f"{'absent' if module is None else 'present'} now"
            )
        elif entry is not None:
            old, new = _flat(entry.get("init_kwargs") or {}), _flat(getattr(module, "init_kwargs", {}))
            settings += [
                f"{name}.{k}: {old.get(k, '-')} in the checkpoint, {new.get(k, '-')} now"
                for k in sorted(old.keys() | new.keys())
                if old.get(k, "-") != new.get(k, "-")
            ]
    raise ConfigError(
        "the checkpoint was written by another configuration; resume it with the settings it was written "
        "with (its config is in the file's sg3 section), or start a new run from its weights with "
        "init_from=<checkpoint>:\n  " + "\n  ".join(settings + problems)
    )


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested kwargs -> {'a.b': value}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _source_state_dicts(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """name (G, D, G_ema) -> state_dict from an sg3 .ckpt, an exported generator or an official pickle."""
    nets = load_networks(path)
    wanted = ("G", "D", "G_ema")
    out = {k: v.state_dict() for k, v in nets.items() if k in wanted and isinstance(v, nn.Module)}
    if "G" not in out and "G_ema" in out:  # exported generators hold G_ema only: start G from it too
        out["G"] = out["G_ema"]
    return out


def load_init_weights(targets: dict[str, nn.Module], path: str | os.PathLike) -> dict[str, int]:
    """Copy weights by name from `path` into `targets` (transfer learning; no counters, no optimizer state).

    Args:
        targets: name ('G', 'D', 'G_ema') -> module to fill.
        path: An sg3 training checkpoint (.ckpt), an exported generator (.pt) or an official pickle (.pkl).

    Returns:
        name -> number of tensors copied.

    Raises:
        ValueError: if shapes differ (all differing names and shapes are listed) or nothing matches.
    """
    if not Path(path).is_file():
        raise ValueError(f"init_from={str(path)!r}: no such file")
    sources = _source_state_dicts(path)
    mismatched, copied = [], {}
    for name, module in targets.items():
        src = sources.get(name)
        if src is None:
            log.warning("init_from %s has no %s; it keeps its fresh initialisation", path, name)
            continue
        dst = module.state_dict()
        for key, value in src.items():
            if key in dst and tuple(dst[key].shape) != tuple(value.shape):
                mismatched.append(f"{name}.{key}: file {list(value.shape)} vs model {list(dst[key].shape)}")
        copied[name] = sum(1 for key in src if key in dst)
    if mismatched:
        raise ValueError(
            f"init_from={str(path)!r} does not fit the model ({len(mismatched)} tensors differ; "
            "check model.* and the dataset resolution):\n  " + "\n  ".join(mismatched)
        )
    if not any(copied.values()):
        raise ValueError(
            f"init_from={str(path)!r}: no tensor names match the model (is it the right kind of network?)"
        )
    with torch.no_grad():
        for name, module in targets.items():
            src = sources.get(name)
            if src is None:
                continue
            for key, tensor in list(module.named_parameters()) + list(module.named_buffers()):
                if key in src:
                    tensor.copy_(src[key])
    return copied


def init_weights_summary(
    path: str | os.PathLike, copied: dict[str, int], targets: dict[str, nn.Module]
) -> str:
    """One log line after `load_init_weights`: the file, the tensors copied and those left as they were.

    Args:
        path: The `init_from` file.
        copied: `load_init_weights`' result (name -> tensors copied).
        targets: The filled modules (name -> module); their other tensors kept their initial values.
    """
    parts, kept = [], 0
    for name, module in targets.items():
        total = len(module.state_dict())
        n = copied.get(name, 0)
        kept += total - n
        parts.append(f"{name} {n}/{total}")
    return (
        f"init_from {path}: copied {sum(copied.values())} tensors ({', '.join(parts)}); "
        f"{kept} left at their initial values"
    )
