"""ShardDataModule: the LightningDataModule over sg3 webdataset shards (docs/internals.md, "Data")."""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import replace

import lightning as L
import torch
from torch.utils.data import DataLoader

from sg3.data.resume import StreamProgress
from sg3.data.shards import ShardList, iter_shard_samples, resolve_urls
from sg3.data.stream import ShardStream, SkipCounter, StreamConfig, decode_sample

__all__ = ["ShardDataModule", "auto_num_workers"]

log = logging.getLogger(__name__)
_STATE_FORMAT = "sg3-stream"
_NOT_A_SHARD = (
    " (shards are tar files written by sg3-dataset; convert image folders and official dataset zips "
    "with sg3-dataset --source SRC --dest DIR first)"
)
_FORK = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
MAX_AUTO_WORKERS = 3  # the official --workers default


def auto_num_workers() -> int:
    """``num_workers='auto'``: ``min(3, CPUs - 1)``, over the CPUs this process may run on.

    The CPUs are those of the process's affinity mask (SLURM's --cpus-per-task binding, taskset,
    containers; ``os.cpu_count()`` where there is no mask). One CPU stays with the training process, so
    ``--cpus-per-task=N+1`` gives N workers; 3 (the official ``--workers``) is the most.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(0, min(MAX_AUTO_WORKERS, cpus - 1))


def _num_workers(value: int | str) -> int:
    if value == "auto":
        return auto_num_workers()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"num_workers={value!r} must be 'auto' or an int >= 0")
    return value


def _resolve(urls: str | list[str]) -> ShardList:
    """resolve_urls plus the ``demo[:RES[:COUNT]]`` shorthand for the embedded demo dataset."""
    if isinstance(urls, str) and (urls == "demo" or urls.startswith("demo:")):
        from sg3.data.demo import ensure_demo_dataset

        parts = urls.split(":")[1:]
        try:
            args = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"urls={urls!r}: expected 'demo', 'demo:RES' or 'demo:RES:COUNT'") from None
        return resolve_urls(ensure_demo_dataset(None, *args))
    return resolve_urls(urls)


class _TrainLoader(DataLoader):
    """The training DataLoader: each iteration starts where the delivered batches left the stream.

    The stream reports every batch's position; this loader passes ``(img, c)`` on and records the
    position in the progress (committed when the batch reaches the training step).
    """

    def __init__(self, dataset, progress: StreamProgress, **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        self.progress = progress

    def __iter__(self):
        p = self.progress
        p.pending.clear()  # batches fetched by an earlier iteration never reach the step now
        self.dataset.cfg = replace(self.dataset.cfg, positions=p.positions, shift=p.batches % p.roles)
        for img, c, position in super().__iter__():
            p.fetched(position)
            yield img, c


class ShardDataModule(L.LightningDataModule):
    """Streams training images from sg3/webdataset shards.

    Args:
        urls: Dataset location: a folder or dataset.json (local or URL), a glob, a brace pattern, any URL
            webdataset opens (``pipe:...``, ``https://...``), a list of those, or ``'demo[:RES[:COUNT]]'``
            for the embedded demo dataset.
        batch_size: Images per batch on this rank (batch_gpu).
        num_workers: DataLoader worker processes per rank (0 = decode in the main process); ``'auto'``
            = ``min(3, CPUs - 1)`` over the CPUs this process may run on (:func:`auto_num_workers`).
        mirror: Random x-flips (probability 0.5 per image) in the training stream.
        use_labels: Deliver one-hot class labels (needs a labelled dataset with a dataset.json index).
        resolution: The model's resolution in pixels; None accepts the dataset's.
        channels: The model's image channels; None accepts the dataset's.
        shuffle_buffer: Shuffle buffer in samples per worker (<= 1 disables shuffling).
        seed: Seed of the training stream (shard order, shuffling, flips).
        strict: Raise on a corrupt sample or broken shard instead of logging, counting and skipping it.
    """

    def __init__(
        self,
        urls: str | list[str],
        batch_size: int,
        num_workers: int | str = "auto",
        mirror: bool = False,
        use_labels: bool = False,
        resolution: int | None = None,
        channels: int | None = None,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        strict: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a positive int")
        num_workers = _num_workers(num_workers)
        if channels is not None and channels not in (1, 3, 4):
            raise ValueError(f"channels={channels!r} must be 1, 3, 4 or None")
        self.urls = urls
        self.batch_size, self.num_workers = batch_size, num_workers
        self.mirror, self.use_labels = bool(mirror), bool(use_labels)
        self.shuffle_buffer, self.seed, self.strict = int(shuffle_buffer), int(seed), bool(strict)
        self.shards = _resolve(urls)
        self.index: dict | None = self.shards.index
        self.name: str = self.shards.name
        self.skipped = SkipCounter()
        self._expected = (resolution, channels)
        self._probed: tuple[int, int] | None = None
        self._generation = 0
        self._progress: StreamProgress | None = None  # of the training loader last built
        self._resume: dict | None = None  # stream position loaded from a checkpoint, used by the next loader
        self._check_indexes()
        if self.use_labels:
            if self.index is None and len(self.shards.indexes) > 1:
                raise ValueError(
                    f"use_labels=True needs a single dataset (one dataset.json); urls={urls!r} spans "
                    f"{len(self.shards.indexes)} datasets, whose class ids need not agree"
                )
            if self.index is None:
                raise ValueError(
                    f"use_labels=True needs the dataset.json index to know the classes; urls={urls!r} "
                    "has none "
                    "(point urls at the folder or its dataset.json)"
                )
            if not self.index["labels"]:
                raise ValueError(
                    f"use_labels=True but dataset {self.name!r} has no labels (convert with --labels)"
                )
        self.c_dim: int = int(self.index["num_classes"]) if self.use_labels else 0

    # ---- shape checks ----------------------------------------------------------------------------

    def _check_indexes(self) -> None:
        """Every index the shards come from against the model and against each other."""
        indexes = self.shards.indexes
        given = self.urls if isinstance(self.urls, str) or len(self.urls) != 1 else self.urls[0]
        first = None
        for where, idx in indexes:
            shape = (int(idx["resolution"]), int(idx["channels"]))
            # what the user gave (a folder, a shard, a glob) and the index that holds the shape
            named = where if len(indexes) > 1 or str(given) == where else f"{given} (index {where})"
            self._check_against(*shape, named)
            if first is None:
                first = (where, shape)
            elif shape != first[1]:
                (r, c), (r0, c0) = shape, first[1]
                raise ValueError(
                    f"{where} has {r}x{r} images with {c} channel(s), but {first[0]} has {r0}x{r0} with "
                    f"{c0}; stream datasets of one resolution and channel count together (convert them "
                    "with the same sg3-dataset --resolution and --channels)"
                )

    def _check_against(self, resolution: int, channels: int, what: str) -> None:
        want_res, want_ch = self._expected
        if (want_res is not None and resolution != want_res) or (want_ch is not None and channels != want_ch):
            raise ValueError(
                f"{what} has {resolution}x{resolution} images with {channels} channel(s), "
                f"but the model expects "
                f"{want_res or resolution}x{want_res or resolution} with {want_ch or channels} channel(s); "
                "convert the data with sg3-dataset --resolution/--channels or change the model config"
            )

    def check_first_sample(self) -> tuple[int, int]:
        """Decodes the first sample of the first shard and checks it against the expected shape.

        Returns:
            (resolution, channels) of that sample.
        """
        url = self.shards.urls[0]
        try:  # a missing or damaged shard, or a file that is no tar at all, is named here
            sample = next((s for _, s in iter_shard_samples(url, stop=1)), None)
            img = None if sample is None else decode_sample(sample)
        except (OSError, EOFError, ValueError) as exc:
            hint = "" if url.endswith(".tar") else _NOT_A_SHARD
            raise ValueError(f"cannot read the first sample of {url}: {exc}{hint}") from exc
        if sample is None:
            raise ValueError(f"first shard {url} holds no samples")
        if img.ndim != 3 or img.shape[1] != img.shape[2]:
            raise ValueError(
                f"first sample {sample['__key__']} of {url} is not a square image: {list(img.shape)}"
            )
        self._check_against(
            int(img.shape[1]), int(img.shape[0]), f"first sample {sample['__key__']} of {url}"
        )
        self._probed = (int(img.shape[1]), int(img.shape[0]))
        return self._probed

    def _shape_value(self, i: int, key: str) -> int:
        """Index value, else the model's expectation, else the first sample's (i: 0 side, 1 channels)."""
        if self.shards.indexes:  # all of them agree (checked at construction)
            return int(self.shards.indexes[0][1][key])
        if self._expected[i] is not None:
            return int(self._expected[i])
        return (self._probed or self.check_first_sample())[i]

    @property
    def resolution(self) -> int:
        """Image side in pixels."""
        return self._shape_value(0, "resolution")

    @property
    def num_channels(self) -> int:
        """Image channels."""
        return self._shape_value(1, "channels")

    # ---- Lightning hooks ------------------------------------------------------------------------

    def _detect_rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.global_rank), int(trainer.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def setup(self, stage: str | None = None) -> None:
        """Checks the first sample against the model's shape (rank/world are read when loaders are built)."""
        if self._probed is None:
            self.check_first_sample()

    def _config(self, mode: str, rank: int, world_size: int, batch_size: int) -> StreamConfig:
        return StreamConfig(
            urls=list(self.shards.urls),
            counts=None if self.shards.counts is None else list(self.shards.counts),
            mode=mode,
            rank=rank,
            world_size=world_size,
            seed=self.seed,
            generation=self._generation,
            shuffle_buffer=self.shuffle_buffer,
            mirror=self.mirror and mode == "train",
            c_dim=self.c_dim,
            resolution=self.resolution,
            channels=self.num_channels,
            strict=self.strict,
            batch_size=batch_size,
        )

    def _loader(self, cfg: StreamConfig, progress: StreamProgress | None = None) -> DataLoader:
        extra = {} if progress is None else {"progress": progress}
        return (DataLoader if progress is None else _TrainLoader)(
            ShardStream(cfg, self.skipped),
            batch_size=None,  # the stream yields whole batches (decoded straight into the batch tensor)
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
            # fork starts fast and is the Linux default up to Python 3.13 (3.14 defaults to forkserver);
            # the stream is correct with any start method (rank/world live in the dataset object).
            multiprocessing_context=_FORK if self.num_workers > 0 else None,
            **extra,
        )

    def train_dataloader(self) -> DataLoader:
        """Infinite batches ``(img uint8 [N,C,H,W], c float32 [N,c_dim])`` for this rank."""
        if self._probed is None:
            self.check_first_sample()
        rank, world = self._detect_rank_world()
        layout = self._layout(world)
        positions, batches = None, 0  # every training loader starts where the loaded state stood
        why = None if self._resume is None else _mismatch(self._resume, layout, rank)
        if why:
            log.warning("data stream: %s; the resumed run draws a fresh stream", why)
            self._generation, self._resume = self._generation + 1, None
        elif self._resume is not None and self._resume["ranks"] is not None:
            entry = self._resume["ranks"][rank]
            positions, batches = entry["positions"], int(entry["batches"])
        roles = max(self.num_workers, 1)
        hooked = getattr(self, "trainer", None) is not None
        self._progress = StreamProgress(roles, positions, batches, hooked)
        self._progress.rank, self._progress.layout = rank, layout
        cfg = replace(self._config("train", rank, world, self.batch_size), report=True)
        return self._loader(cfg, self._progress)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Lightning hands this batch to the training step now: it counts as delivered (not when fetched)."""
        if self._progress is not None:
            self._progress.delivered()
        return batch

    def _layout(self, world: int) -> dict:
        """What the stream's split and order depend on besides the seed (checked on resume)."""
        counts = self.shards.counts
        return {
            "world_size": world,
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            "shuffle_buffer": self.shuffle_buffer,
            "shards": len(self.shards.urls),
            "samples": None if counts is None else sum(counts),
        }

    def exactly_once_loader(self, batch_size: int, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Finite loader giving every sample exactly once across ranks and workers (no flips, no shuffle).

        Args:
            batch_size: Images per batch (the last batch of each worker may be smaller).
            rank: This rank.
            world_size: Number of ranks that each iterate their own loader.

        Returns:
            A DataLoader of ``(img uint8 [N,C,H,W], c float32 [N,c_dim])``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        return self._loader(self._config("once", rank, world_size, batch_size))

    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Labels for generated images: classes drawn like the dataset's labels (its class frequencies).

        Args:
            n: Number of labels.
            generator: Torch RNG (None = global RNG).

        Returns:
            float32 ``[n, c_dim]`` one-hot rows (``[n, 0]`` when unconditional).
        """
        if n < 0:
            raise ValueError(f"n={n} must be >= 0")
        if self.c_dim == 0:
            return torch.zeros(n, 0)
        counts = self.index.get("class_counts") or [1] * self.c_dim
        weights = torch.tensor(counts, dtype=torch.float64).clamp_min(0)
        if float(weights.sum()) <= 0:
            weights = torch.ones(self.c_dim, dtype=torch.float64)
        idx = (
            torch.multinomial(weights, n, replacement=True, generator=generator)
            if n
            else torch.zeros(0, dtype=torch.long)
        )
        return torch.nn.functional.one_hot(idx, self.c_dim).to(torch.float32)

    def state_dict(self) -> dict:
        """Stream state for checkpoints: seed, generation and every rank's position in the training stream.

        Under DDP this gathers the ranks' positions (Lightning calls it on every rank when it saves a
        checkpoint, and rank 0 writes the file).
        """
        state = {"format": _STATE_FORMAT, "version": 2, "seed": self.seed, "generation": self._generation}
        p = self._progress
        if p is None:  # no training loader yet: keep what was loaded (or None: the stream's start)
            return state | {"stream": self._resume}
        world = p.layout["world_size"]
        own = {"batches": p.batches, "positions": [list(x) for x in p.positions]}
        ranks: list = [None] * world
        dist = torch.distributed
        if world > 1 and dist.is_available() and dist.is_initialized() and dist.get_world_size() == world:
            dist.all_gather_object(ranks, own)
        else:
            ranks[p.rank] = own
        return state | {"stream": dict(p.layout, ranks=ranks)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores the stream state: the next training loader continues each rank's stream exactly.

        When that cannot be (the seed, ranks, workers, batch, shuffle buffer or shards changed, or a
        checkpoint of sg3 before stream positions), the next stream is a fresh draw (generation + 1).
        """
        if not isinstance(state_dict, dict) or state_dict.get("format") != _STATE_FORMAT:
            raise ValueError(f"not a ShardDataModule state (format {_STATE_FORMAT!r}): {state_dict!r}")
        self._generation = int(state_dict["generation"])
        self._resume, self._progress = None, None
        if int(state_dict["seed"]) != self.seed:
            log.warning(
                "data seed changed on resume: %s -> %s; a fresh stream", state_dict["seed"], self.seed
            )
            self._generation += 1
        elif state_dict.get("version", 1) < 2:
            self._generation += 1  # no positions saved
        else:
            self._resume = state_dict.get("stream") or {"ranks": None}


def _mismatch(saved: dict, layout: dict, rank: int) -> str | None:
    """Why a saved stream position cannot be continued here, or None."""
    if saved.get("ranks") is None:  # saved before the training loader was built: the start of the stream
        return None
    for key, now in layout.items():
        if saved.get(key) != now:
            return f"{key} was {saved.get(key)} when the checkpoint was saved and is {now} now"
    ranks = saved["ranks"]
    if rank >= len(ranks) or ranks[rank] is None:
        return f"the checkpoint holds no stream position for rank {rank}"
    return None
