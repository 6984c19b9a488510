"""Exact resume of the training stream: where each consumer stands, and how to get back there cheaply.

A consumer's training stream is a pure function of ``(seed, generation, rank, stream id)``: raw samples in
shard order, a shuffle buffer, then x-flips. Its position is two numbers: samples taken out of the
shuffle buffer (decoded or skipped as corrupt) and images delivered (each drew one flip). To resume,
the shuffle is replayed on sample *positions* (no data): that gives the raw positions still in the buffer;
the stream then reads just those samples and everything after the last one taken in, stepping over the
others by tar header (or, with per-shard counts, not opening their shards at all); the flip generator
is advanced by the images delivered.

DataLoader workers hand out batches round-robin: batch i of a loader comes from its worker
``i % workers``. Worker w of a loader built after B delivered batches therefore runs stream id
``(w + B) % workers``, and the batches continue in the uninterrupted order.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

import numpy as np

__all__ = ["RawCursor", "ShuffleDraws", "StreamProgress", "replay_shuffle"]

_CHUNK = 1024


class ShuffleDraws:
    """The shuffle buffer's slot choices, drawn in chunks (the same sequence when live and when replayed)."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self._rng, self._size = rng, size
        self._chunk: list[int] = []
        self._i = 0

    def next(self) -> int:
        if self._i == len(self._chunk):
            self._chunk, self._i = self._rng.integers(self._size, size=_CHUNK).tolist(), 0
        self._i += 1
        return self._chunk[self._i - 1]


def replay_shuffle(size: int, taken: int, draws: ShuffleDraws) -> list[int]:
    """Raw positions in the buffer's slots after ``taken`` samples came out of it (draws advance as live)."""
    slots, incoming = list(range(size)), size
    for _ in range(taken):
        slots[draws.next()] = incoming  # the sample in that slot leaves, the incoming one takes its place
        incoming += 1
    return slots


class RawCursor:
    """Numbers the raw samples a consumer owns (in stream order) and says which ones must be read.

    Args:
        skip_to: Positions from here on are read.
        needed: Earlier positions that are read too (the shuffle buffer's content on resume).
    """

    def __init__(self, skip_to: int = 0, needed: list[int] | None = None) -> None:
        self.pos = 0  # position of the next owned sample
        self.last = -1  # position of the sample last accepted by keep()
        self.skip_to = skip_to
        self._needed = sorted(needed or [])
        self._set = set(self._needed)

    def any_wanted(self, count: int) -> bool:
        """Whether any of the next ``count`` positions must be read."""
        lo, hi = self.pos, self.pos + count
        if hi > self.skip_to:
            return True
        i = bisect_left(self._needed, lo)
        return i < len(self._needed) and self._needed[i] < hi

    def keep(self, owned=None):
        """A ``keep`` predicate for iter_shard_samples: numbers owned samples, accepts the wanted ones."""

        def _keep(p: int) -> bool:
            if owned is not None and not owned(p):
                return False
            pos, self.pos = self.pos, self.pos + 1
            if pos >= self.skip_to or pos in self._set:
                self.last = pos
                return True
            return False

        return _keep


class StreamProgress:
    """Batches of one rank's training loader that reached the training step, and each stream's position.

    Args:
        roles: Stream ids (the loader's workers, 1 without workers).
        positions: Per stream id ``[taken out of the shuffle buffer, images delivered]`` (None: start).
        batches: Batches delivered so far.
        hooked: Count a batch when Lightning hands it to the step (``on_before_batch_transfer``), not when
            the loader yields it: Lightning fetches ahead.
    """

    def __init__(self, roles: int, positions: list[list[int]] | None, batches: int, hooked: bool) -> None:
        self.roles, self.batches, self.hooked = roles, batches, hooked
        self.positions = [list(p) for p in positions] if positions else [[0, 0] for _ in range(roles)]
        self.pending: deque = deque()

    def fetched(self, position) -> None:
        """A batch left the loader with its stream's position ``(stream id, taken, images)``."""
        if self.hooked:
            self.pending.append(position)
        else:
            self.commit(position)

    def delivered(self) -> None:
        """The oldest fetched batch reached the training step."""
        if self.pending:
            self.commit(self.pending.popleft())

    def commit(self, position) -> None:
        role, taken, images = (int(v) for v in position)
        self.positions[role] = [taken, images]
        self.batches += 1
