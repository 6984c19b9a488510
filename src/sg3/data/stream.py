"""The sample stream behind ShardDataModule: splitting, shuffling, decoding, x-flips, skip counting.

Each DataLoader worker of each rank is one *consumer*; consumer ``k = rank * num_workers + worker``
out of ``C = world_size * num_workers``. Rank and world size are captured when the loader is built
(not read from environment variables inside workers), so fork and spawn workers behave the same.

- ``once`` (exactly once): with per-shard counts (the index), consumer k reads the contiguous range
  ``[k*N//C, (k+1)*N//C)`` of the concatenated shards; without counts, whole shards when their number
  divides C, else every consumer reads every shard and keeps sample i where ``i % C == k``.
- ``train`` (infinite): epoch after epoch, a permutation of the shards and a random rotation (the same
  for all consumers, from ``(seed, generation, epoch)``) are split the same way, so within an epoch
  every sample is read once across all consumers; then a per-consumer shuffle buffer and x-flips. A
  consumer's stream can start at a saved position without decoding what came before (sg3.data.resume).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import context as mp_context

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from sg3.data.codec import decode_array, decode_sample, image_key
from sg3.data.resume import RawCursor, ShuffleDraws, replay_shuffle
from sg3.data.shards import iter_shard_samples

__all__ = ["SKIP_KINDS", "SkipCounter", "StreamConfig", "ShardStream", "decode_sample"]

log = logging.getLogger(__name__)
SKIP_KINDS = ("corrupt_sample", "wrong_shape", "truncated_shard", "unreadable_shard")


class SkipCounter:
    """Counts skipped samples/shards by kind, shared between the main process and DataLoader workers.

    Shared memory without locks (so it passes into fork, spawn and forkserver workers alike): each
    process adds into its own slot (pid modulo the slot count) and reads sum the slots. Pickled while a
    worker process is being started it shares the memory; pickled at any other time it becomes a
    private copy.
    """

    SLOTS = 256

    def __init__(self) -> None:
        self._cells = multiprocessing.RawArray("q", self.SLOTS * len(SKIP_KINDS))

    def add(self, kind: str) -> None:
        """Adds one to ``kind`` (one of SKIP_KINDS)."""
        self._cells[(os.getpid() % self.SLOTS) * len(SKIP_KINDS) + SKIP_KINDS.index(kind)] += 1

    def as_dict(self) -> dict[str, int]:
        """Current counts, kind -> int."""
        n = len(SKIP_KINDS)
        return {k: int(sum(self._cells[i::n])) for i, k in enumerate(SKIP_KINDS)}

    def __getstate__(self) -> dict:
        if mp_context.get_spawning_popen() is not None:
            return {"cells": self._cells}
        return {"copy": list(self._cells)}

    def __setstate__(self, state: dict) -> None:
        if "cells" in state:
            self._cells = state["cells"]
        else:
            self._cells = multiprocessing.RawArray("q", state["copy"])


@dataclass
class StreamConfig:
    """Everything a consumer needs; plain values only, so it pickles into any worker.

    Attributes:
        urls: Shard URLs in canonical order.
        counts: Samples per shard, or None when unknown.
        mode: ``'train'`` (infinite, shuffled, mirrored) or ``'once'`` (finite, exactly once, in order).
        rank: This process's rank.
        world_size: Number of ranks.
        seed: Base seed of shard order, rotations, shuffle buffer and flips.
        generation: Stream generation: a resume that cannot continue the saved stream draws the next one.
        shuffle_buffer: Shuffle buffer size in samples per worker (train only; <= 1 disables).
        mirror: Random x-flips with probability 0.5 (train only).
        c_dim: One-hot label size (0 = no labels).
        resolution: Expected side in pixels, or None to accept any (consistent) size.
        channels: Expected channel count (decoded images are converted to it), or None.
        strict: Raise on a corrupt sample or broken shard instead of skipping it.
        batch_size: Images per yielded batch ``(img uint8 [N,C,H,W], c float32 [N,c_dim])``; the last
            batch of a finite stream may be smaller. 0 yields single images ``([C,H,W], [c_dim])``.
        positions: Train only: per stream id, ``[samples taken out of the shuffle buffer, images
            delivered]`` to start from (None: the start).
        shift: Worker w runs stream id ``(w + shift) % workers`` (the batches delivered before, mod workers).
        report: Train with batch_size > 0 only: yield ``(img, c, int64 [stream id, taken, images])``.
    """

    urls: list[str]
    counts: list[int] | None
    mode: str
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    generation: int = 0
    shuffle_buffer: int = 1000
    mirror: bool = False
    c_dim: int = 0
    resolution: int | None = None
    channels: int | None = None
    strict: bool = False
    batch_size: int = 0
    positions: list[list[int]] | None = None
    shift: int = 0
    report: bool = False


def _range_reads(urls, counts, order, lo, hi):
    """(url, first, stop, shard count) reads for positions [lo, hi) of the shards concatenated in order."""
    total = sum(counts)
    shift = lo // total * total  # ranges may start past the end after a rotation: wrap them
    lo, hi = lo - shift, hi - shift
    spans = [(lo, min(hi, total))] + ([(0, hi - total)] if hi > total else [])
    reads = []
    for a, b in spans:
        start = 0
        for s in order:
            end = start + counts[s]
            if a < end and b > start:
                reads.append((urls[s], max(a, start) - start, min(b, end) - start, counts[s]))
            start = end
    return reads


class ShardStream(IterableDataset):
    """Yields ``(img uint8 [C,H,W], c float32 [c_dim])`` for this consumer's share of the shards.

    Args:
        cfg: The stream configuration.
        counter: Skip counter shared with the owner (a new one when None).
    """

    def __init__(self, cfg: StreamConfig, counter: SkipCounter | None = None) -> None:
        super().__init__()
        if cfg.mode not in ("train", "once"):
            raise ValueError(f"mode={cfg.mode!r} is not 'train' or 'once'")
        if not cfg.urls:
            raise ValueError("urls is empty")
        if not 0 <= cfg.rank < cfg.world_size:
            raise ValueError(f"rank={cfg.rank} must be in [0, world_size={cfg.world_size})")
        self.cfg = cfg
        self.counter = counter if counter is not None else SkipCounter()

    def _consumer(self) -> tuple[int, int, int]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        role = (worker + self.cfg.shift) % workers  # the stream id this worker runs
        return self.cfg.rank * workers + role, self.cfg.world_size * workers, role

    def _on_error(self, kind: str, where: str, exc: Exception) -> None:
        if self.cfg.strict:
            raise RuntimeError(f"{kind.replace('_', ' ')}: {where}: {exc} (strict mode)") from exc
        self.counter.add(kind)
        log.warning("skipping %s: %s: %s", kind.replace("_", " "), where, exc)

    def _read_all_strided(self, order, k, n, cursor: RawCursor) -> Iterator[tuple[int, dict]]:
        base = 0
        for s in order:
            last = [-1]

            def owned(pos, base=base, last=last):
                last[0] = pos
                return (base + pos) % n == k

            keep = cursor.keep(owned)
            for _, sample in iter_shard_samples(self.cfg.urls[s], keep=keep, on_error=self._on_error):
                yield cursor.last, sample
            base += last[0] + 1

    def _epoch(self, k: int, n: int, epoch: int, cursor: RawCursor) -> Iterator[tuple[int, dict]]:
        """(position, sample) of consumer k's share of one epoch; the cursor numbers and selects them."""
        cfg, num = self.cfg, len(self.cfg.urls)
        if cfg.mode == "once":
            order, offset = list(range(num)), 0
        else:
            rng = np.random.default_rng([cfg.seed, cfg.generation, epoch])
            order = [int(i) for i in rng.permutation(num)]
            offset = int(rng.integers(sum(cfg.counts))) if cfg.counts else 0
        if cfg.counts is not None:
            total = sum(cfg.counts)
            lo, hi = offset + k * total // n, offset + (k + 1) * total // n
            if cfg.mode == "train" and hi == lo:  # fewer samples than consumers: one sample each
                lo, hi = (offset + k) % total, (offset + k) % total + 1
            for url, first, stop, count in _range_reads(cfg.urls, cfg.counts, order, lo, hi):
                if not cursor.any_wanted(stop - first):  # all stepped over: the shard is not even opened
                    cursor.pos += stop - first
                    continue
                keep = cursor.keep((lambda p, first=first: p >= first) if first else None)
                reader = iter_shard_samples(url, keep, stop, self._on_error, expect=min(stop, count))
                for _, sample in reader:
                    yield cursor.last, sample
        elif num % n == 0 or (cfg.mode == "train" and num >= n):
            for s in order[k::n]:
                keep = cursor.keep()
                for _, sample in iter_shard_samples(cfg.urls[s], keep=keep, on_error=self._on_error):
                    yield cursor.last, sample
        else:
            yield from self._read_all_strided(order, k, n, cursor)

    def _raw(self, k: int, n: int, cursor: RawCursor) -> Iterator[tuple[int, dict]]:
        if self.cfg.mode == "once":
            yield from self._epoch(k, n, 0, cursor)
            return
        epoch = 0
        while True:
            start = cursor.pos
            yield from self._epoch(k, n, epoch, cursor)
            if cursor.pos == start:
                raise RuntimeError(
                    f"consumer {k} of {n} read no samples from {len(self.cfg.urls)} shard(s) "
                    f"(first: {self.cfg.urls[0]}); skipped so far: {self.counter.as_dict()}"
                )
            epoch += 1

    def _shuffled(self, k: int, n: int, rng: np.random.Generator, taken: int) -> Iterator[dict]:
        """The training stream of consumer k after ``taken`` samples left its shuffle buffer."""
        size = self.cfg.shuffle_buffer
        if size <= 1:
            for _, sample in self._raw(k, n, RawCursor(skip_to=taken)):
                yield sample
            return
        draws = ShuffleDraws(rng, size)
        slots = replay_shuffle(size, taken, draws) if taken else None
        cursor = RawCursor(size + taken, slots) if taken else RawCursor()
        raw = self._raw(k, n, cursor)
        buf: list[dict] = []
        if slots is not None:  # refill the buffer with the samples it held (read; the others stepped over)
            held, ahead = {}, []
            for pos, sample in raw:
                if pos >= cursor.skip_to:
                    ahead.append((pos, sample))
                    break
                held[pos] = sample
                if len(held) == size:
                    break
            buf = [held[p] for p in slots if p in held]  # all of them unless a shard read differently
            raw = itertools.chain(ahead, raw)
        for _, sample in raw:
            if len(buf) < size:
                buf.append(sample)
                continue
            j = draws.next()
            buf[j], sample = sample, buf[j]
            yield sample
        rng.shuffle(buf)
        yield from buf

    def _decode(self, sample: dict) -> tuple[np.ndarray, int] | None:
        """(pixels uint8 [H, W, C] (a view), label or -1), or None when the sample is skipped."""
        cfg = self.cfg
        where = f"sample {sample['__key__']} of {sample['__url__']}"
        label = -1
        try:
            ext = image_key(sample)
            arr = decode_array(sample[ext], ext, cfg.channels)
            if cfg.c_dim:
                if "cls" not in sample:
                    raise ValueError("has no 'cls' label but labels are in use")
                label = int(sample["cls"].decode("ascii").strip())
                if not 0 <= label < cfg.c_dim:
                    raise ValueError(f"label {label} is outside [0, {cfg.c_dim})")
        except (RuntimeError, ValueError, UnicodeDecodeError) as exc:
            self._on_error("corrupt_sample", where, exc)
            return None
        side = cfg.resolution
        if arr.ndim != 3 or arr.shape[0] != arr.shape[1] or (side is not None and arr.shape[0] != side):
            shape = [arr.shape[2], *arr.shape[:2]] if arr.ndim == 3 else list(arr.shape)
            exp = f"[{cfg.channels or 'C'}, {side}, {side}]"
            self._on_error("wrong_shape", where, ValueError(f"shape {shape}, expected {exp}"))
            return None
        return arr, label

    def _new_batch(self, size: int, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Empty batch tensors; images in shared memory inside a DataLoader worker (no copy on hand-off)."""
        c, h, w = shape
        if get_worker_info() is None:
            img = torch.empty(size, c, h, w, dtype=torch.uint8)
        else:  # as torch's default_collate does for batches built in workers
            storage = torch.UntypedStorage._new_shared(size * c * h * w)
            img = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (size, c, h, w))
        return img, torch.zeros(size, self.cfg.c_dim, dtype=torch.float32)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        k, n, role = self._consumer()
        cfg = self.cfg
        train = cfg.mode == "train"
        taken, images = cfg.positions[role] if train and cfg.positions else (0, 0)
        rng = np.random.default_rng([cfg.seed, cfg.generation, cfg.rank, role, 1])
        flips = np.random.Generator(np.random.PCG64([cfg.seed, cfg.generation, cfg.rank, role, 2]))
        flips.bit_generator.advance(images)  # one 64-bit draw per delivered image (random() below)
        if train:
            samples = self._shuffled(k, n, rng, taken)
        else:
            samples = (sample for _, sample in self._raw(k, n, RawCursor()))
        mirror = train and cfg.mirror
        report = train and cfg.report and cfg.batch_size > 0
        size = max(cfg.batch_size, 1)
        img = c = pixels = first = None
        fill = 0
        for sample in samples:
            taken += 1  # decoded or skipped, it left the shuffle buffer
            out = self._decode(sample)
            if out is None:
                continue
            arr, label = out
            shape = (arr.shape[2], arr.shape[0], arr.shape[1])
            first = first or shape  # [C, H, W] of the stream's first image
            if shape != first:  # only possible with resolution=None or channels=None
                where = f"sample {sample['__key__']} of {sample['__url__']}"
                msg = f"shape {list(shape)}, the stream's first image has {list(first)}"
                self._on_error("wrong_shape", where, ValueError(msg))
                continue
            if img is None:
                img, c = self._new_batch(size, shape)
                pixels = img.numpy()
            if mirror and flips.random() < 0.5:
                arr = arr[:, ::-1]  # x-flip as a view: the copy below does it
            np.copyto(pixels[fill], arr.transpose(2, 0, 1))  # [H, W, C] -> [C, H, W]
            if label >= 0:
                c[fill, label] = 1
            fill += 1
            images += 1
            if fill == size:
                if report:
                    yield img, c, torch.tensor([role, taken, images], dtype=torch.int64)
                else:
                    yield (img, c) if cfg.batch_size else (img[0], c[0])
                img, fill = None, 0
        if fill:
            yield img[:fill], c[:fill]
