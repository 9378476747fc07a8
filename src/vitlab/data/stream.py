"""Image data at any size and scale: one loader interface over an in-memory tensor or a decoding stream.

The engine calls :func:`build_image_loader` once per split and gets an :class:`ImageLoader`::

    loader = build_image_loader("photos/", "train", img_size=224, in_chans=3, batch_size=64, train=True,
                                augment=AugmentConfig(), seed=0, rank=rank, world_size=world, workers=4)
    loader.num_classes, loader.classes, len(loader)          # classes; batches per epoch on this rank
    for epoch in range(start_epoch, epochs):
        loader.set_epoch(epoch)                               # after load_state_dict: resumes at its batch
        for images, labels in loader:                         # images (B, C, S, S) float32 in [0, 1]
            ...                                               # labels (B,) int64
            state = loader.state_dict()                       # {"epoch", "batch", "skipped", ...}: checkpoint it
    loader.skipped, loader.skipped_files                      # bad images dropped (bad_images="skip")

``images`` are float32 in [0, 1] (``dtype=torch.uint8`` gives 0..255, four times fewer bytes to pin and
copy: convert on the device with :func:`vitlab.data.base.to_float`); normalisation (mean/std) stays with
the engine's :class:`~vitlab.data.transforms.BatchTransform`, as for the in-memory datasets.

**Two paths** (``mode="auto"`` picks, see :func:`choose_mode`):

* ``memory``: the split is decoded once into an :class:`~vitlab.data.base.ImageDataset` tensor and batches
  are index selections (no workers). Picked when the source is an image folder, no per-image
  augmentation is asked for (``augment=None``: the engine's tensor crop/flip does the training
  augmentation), every image of the split already has the model's size (``img_size`` × ``img_size``, or
  one common size when ``img_size`` is None), and the decoded split is at most ``memory_limit_mb`` (1024 MB).
* ``stream``: images are decoded on the fly by ``torch.utils.data.DataLoader`` worker processes and put
  through the training pipeline (RandomResizedCrop + flip + policy + erasing) or the evaluation pipeline
  (resize + centre crop) of :mod:`vitlab.data.pipeline`; pinned memory on CUDA, ``prefetch`` batches per
  worker, persistent workers. Everything else: shards (:mod:`vitlab.data.shards`), mixed sizes, larger
  sets, any ``augment``. Memory is bounded by ``workers × prefetch`` batches, not the data set's size.

**Order and DDP**: training uses ``torch.utils.data.DistributedSampler``'s order (permutation seeded by
``seed + epoch``, rank ``r`` takes every ``world``-th index, the tail dropped so that ranks get equal
counts; batches of ``batch_size`` per rank, the last partial batch dropped); shards use the shard-grouped
order of :mod:`vitlab.data.shards` with a contiguous run per rank. Evaluation gives rank ``r`` the
contiguous range ``[r·n/world, (r+1)·n/world)`` (as ``DistContext.shard_range``) in file order, every
sample exactly once. The same batch sampler serves both paths, so they give the same order.

**Determinism and resume**: sample ``i`` of epoch ``e`` is augmented from its own generator seeded by
``(seed, e, i)``; batches are assembled in sampler order whatever the number of workers, so the same seed
gives the same batches with 0 or N workers, and a loader restored with ``load_state_dict`` (or
``start_batch``) yields exactly the batches an uninterrupted one would have from that point.

**Bad data** (``bad_images``): a file that does not decode is caught inside the worker and reported with the
batch; ``"error"`` (default) raises one :class:`~vitlab.errors.DataError` line naming the file in the main
process (no worker traceback); ``"skip"`` drops the sample from its batch (which is then smaller), counts
it in :attr:`ImageLoader.skipped` and keeps the first names in :attr:`ImageLoader.skipped_files`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from vitlab.data.base import ImageDataset
from vitlab.data.folder import folder_splits, load_image_files, open_image
from vitlab.data.pipeline import AugmentConfig, build_pipeline, sample_generator
from vitlab.data.shards import SPLITS, ShardSource, open_shards
from vitlab.errors import ConfigError, DataError

__all__ = [
    "EpochBatchSampler",
    "FolderSource",
    "ImageLoader",
    "InMemoryLoader",
    "StreamingLoader",
    "build_image_loader",
    "choose_mode",
    "open_source",
]

MEMORY_LIMIT_MB = 1024
BAD_IMAGES = ("error", "skip")
KEEP_NAMES = 20  # bad file names kept for the summary


# ------------------------------------------------------------------------------------------ sources
class FolderSource:
    """The files of one split of an image folder, readable by position.

    Paths are held in one fixed-width bytes numpy array (no per-file Python objects, so worker processes
    do not copy them on access), labels in an int64 array.
    """

    groups = None  # no shard grouping

    def __init__(self, samples: Sequence[tuple[Path, int]], classes: Sequence[str], name: str) -> None:
        if not samples:
            raise DataError(f"{name}: the split is empty; add images")
        self.paths = np.array([os.fsencode(str(path)) for path, _ in samples])
        self.labels = np.array([label for _, label in samples], dtype=np.int64)
        self.classes = list(classes)
        self.name = name

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def describe(self, index: int) -> str:
        return os.fsdecode(self.paths[index])

    def open(self, index: int):  # noqa: ANN201 (PIL.Image.Image)
        """Sample ``index`` opened lazily (header read, pixels not yet decoded); DataError if unreadable."""
        return open_image(self.describe(index), lazy=True)

    def close(self) -> None:
        """Nothing to close (each file is closed after it is read); as :meth:`ShardSource.close`."""


def open_source(source: str | Path, split: str, val_fraction: float, split_seed: int) -> FolderSource | ShardSource:
    """The ``split`` of a folder of images or of tar shards, as an indexable source of (encoded image, label)."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    shards = open_shards(source, split)
    if shards is not None:
        return shards
    splits, classes = folder_splits(source, val_fraction, split_seed)
    return FolderSource(splits[split], classes, f"{Path(source)}/{split}")


# ------------------------------------------------------------------------------------------ order
class EpochBatchSampler(Sampler):
    """The batches of one rank for one epoch, as lists of ``(epoch, index)`` keys, from ``start_batch`` on.

    Args:
        n: samples in the split (all ranks).
        batch_size: samples per batch on this rank.
        train: shuffled order with the tail dropped (see the module docstring); else contiguous ranges.
        seed: order seed (the permutation of epoch e uses ``seed + e``).
        rank, world_size: this process and the number of processes.
        groups: (n,) group (shard) of each sample for the shard-grouped training order, or None.
    """

    def __init__(self, n: int, batch_size: int, train: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 groups: np.ndarray | None = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank!r} and world_size {world_size!r} must satisfy 0 <= rank < world_size")
        self.n, self.batch_size, self.train, self.seed = n, batch_size, train, seed
        self.rank, self.world_size, self.groups = rank, world_size, groups
        self.epoch, self.start_batch = 0, 0
        if train and len(self) < 1:
            raise ConfigError(f"batch_size {batch_size} × {world_size} processes is larger than the training split "
                              f"({n} images); lower batch_size")

    def indices(self, epoch: int) -> Tensor:
        """(m,) int64: this rank's sample order in ``epoch``."""
        if not self.train:
            return torch.arange(self.rank * self.n // self.world_size, (self.rank + 1) * self.n // self.world_size)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        if self.groups is None:  # DistributedSampler(shuffle=True, drop_last=True)'s order
            order = torch.randperm(self.n, generator=generator)
            per_rank = self.n // self.world_size
            return order[: per_rank * self.world_size][self.rank :: self.world_size]
        # shards in a random order, the samples of each shard in a random order: a random permutation of
        # all samples, stably sorted by the position of its shard in a random permutation of the shards
        groups = torch.from_numpy(np.asarray(self.groups, dtype=np.int64))
        shard_rank = torch.empty(int(groups.max()) + 1, dtype=torch.int64)
        shard_rank[torch.randperm(shard_rank.numel(), generator=generator)] = torch.arange(shard_rank.numel())
        shuffled = torch.randperm(self.n, generator=generator)
        order = shuffled[torch.sort(shard_rank[groups[shuffled]], stable=True).indices]
        per_rank = self.n // self.world_size
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        """Batches in a whole epoch on this rank."""
        if self.train:
            return self.n // self.world_size // self.batch_size
        count = (self.rank + 1) * self.n // self.world_size - self.rank * self.n // self.world_size
        return math.ceil(count / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.indices(self.epoch).tolist()
        epoch = self.epoch
        for b in range(self.start_batch, len(self)):
            yield [(epoch, i) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]


# ------------------------------------------------------------------------------------------ decoding
@dataclass
class Batch:
    """What a worker returns: the good samples' images and labels, and the bad files as ``(name, message)``."""

    images: Tensor  # (b, C, S, S)
    labels: Tensor  # (b,)
    bad: list[tuple[str, str]]

    def pin_memory(self) -> Batch:
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.bad)


class StreamDataset(Dataset):
    """Map-style dataset: key ``(epoch, index)`` -> the decoded, transformed sample; batches via ``__getitems__``."""

    def __init__(self, source: FolderSource | ShardSource, pipeline: Any, seed: int, channels: int, size: int,
                 dtype: torch.dtype) -> None:
        self.source, self.pipeline, self.seed = source, pipeline, seed
        self.channels, self.size, self.dtype = channels, size, dtype

    def __len__(self) -> int:
        return len(self.source)

    def load(self, epoch: int, index: int) -> Tensor:
        """(C, S, S) uint8 of sample ``index`` in ``epoch``; DataError if the file does not decode."""
        image = self.source.open(index)  # header only: the pipeline may ask for a reduced JPEG scale first
        try:
            generator = sample_generator(self.seed, epoch, index) if self.pipeline.random else None
            return self.pipeline(image, generator, name=self.source.describe(index))
        finally:
            image.close()

    def __getitem__(self, key: tuple[int, int]) -> Batch:
        return self.__getitems__([key])

    def __getitems__(self, keys: list[tuple[int, int]]) -> Batch:
        images = _batch_buffer((len(keys), self.channels, self.size, self.size), self.dtype)
        labels, bad, good = [], [], 0
        for epoch, index in keys:
            try:
                sample = self.load(epoch, index)  # (C, S, S) uint8, channels-first view
            except DataError as error:
                bad.append((self.source.describe(index), str(error)))
                continue
            if self.dtype == torch.uint8:  # numpy's strided uint8 copy is ~2x torch's here
                np.copyto(images[good].numpy(), sample.numpy())
            else:  # layout and dtype converted in one pass, straight into the batch
                torch.div(sample, 255.0, out=images[good])
            labels.append(int(self.source.labels[index]))
            good += 1
        return Batch(images[:good], torch.tensor(labels, dtype=torch.int64), bad)


def _batch_buffer(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """An uninitialised batch tensor; in a DataLoader worker, allocated in shared memory right away.

    A worker's result travels to the main process through shared memory; allocating it there from the start
    (as ``default_collate`` does) saves copying (and page-faulting) every batch a second time.
    """
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = math.prod(shape)
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel, device="cpu")
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


def _keep(batch: Batch) -> Batch:
    return batch


def _worker_init(worker_id: int) -> None:
    """Fix glibc's mmap threshold at 128 KiB in each worker (a no-op where there is no glibc).

    glibc raises the threshold to the size of each freed mmap'd block, after which a worker's per-batch
    buffers (MBs, allocated by one thread and freed after another sent them) come from the heap and
    fragment it: without this a worker's RSS grew by ~3 MB per batch (benchmarks/bench_data.py);
    setting the threshold explicitly turns that adjustment off.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


# ------------------------------------------------------------------------------------------ loaders
class ImageLoader:
    """What both paths share: classes, batches per epoch, epoch/batch position and bad-image counts."""

    classes: list[str]
    sampler: EpochBatchSampler
    image_shape: tuple[int, int, int]

    def __init__(self) -> None:
        self.skipped = 0
        self.skipped_files: list[str] = []
        self._batch = 0
        self._pending: tuple[int, int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_samples(self) -> int:
        """Samples in the split (all ranks)."""
        return self.sampler.n

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self.sampler)

    def set_epoch(self, epoch: int, start_batch: int | None = None) -> None:
        """Iterate ``epoch`` next, from ``start_batch`` (default 0, or the batch restored by
        :meth:`load_state_dict`)."""
        if start_batch is None:
            start_batch = self._pending[1] if self._pending is not None and self._pending[0] == epoch else 0
        if not 0 <= start_batch <= len(self):
            raise ConfigError(f"start_batch {start_batch} is outside the epoch's {len(self)} batches")
        self._pending = None
        self.sampler.epoch, self.sampler.start_batch, self._batch = epoch, start_batch, start_batch

    def state_dict(self) -> dict[str, Any]:
        """The position (epoch, next batch) and bad-image counts; plain Python values (JSON / weights_only safe)."""
        return {"epoch": self.sampler.epoch, "batch": self._batch, "skipped": self.skipped,
                "skipped_files": list(self.skipped_files), "num_samples": self.sampler.n,
                "world_size": self.sampler.world_size, "batch_size": self.sampler.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` stopped: the next :meth:`set_epoch` of that epoch (or the next iteration)
        resumes there."""
        for key in ("num_samples", "world_size", "batch_size"):
            mine = self.state_dict()[key]
            if key in state and int(state[key]) != mine:
                raise DataError(f"the loader state was saved with {key}={state[key]} but this loader has {mine}; "
                                f"resume with the same data, processes and batch size")
        self.skipped = int(state.get("skipped", 0))
        self.skipped_files = list(state.get("skipped_files", []))
        self.set_epoch(int(state["epoch"]), int(state["batch"]))
        self._pending = (int(state["epoch"]), int(state["batch"]))

    def _advance(self) -> None:
        self._batch += 1
        if self._batch >= len(self):  # the epoch is done: a new iteration starts the next one at batch 0
            self.sampler.start_batch = 0


class InMemoryLoader(ImageLoader):
    """Batches selected from an in-memory :class:`ImageDataset` (images as stored, no resizing)."""

    def __init__(self, dataset: ImageDataset, sampler: EpochBatchSampler, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.dataset, self.sampler, self.dtype = dataset, sampler, dtype
        self.classes = list(dataset.classes)
        self.image_shape = dataset.image_shape
        self.mode = "memory"

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self._batch = self.sampler.start_batch
        for keys in self.sampler:
            index = torch.tensor([i for _, i in keys], dtype=torch.int64)
            images = self.dataset.images[index]
            if self.dtype != torch.uint8:
                images = images.to(self.dtype).div_(255.0)
            self._advance()
            yield images, self.dataset.labels[index]


class StreamingLoader(ImageLoader):
    """Batches decoded by DataLoader workers through a pipeline (see the module docstring)."""

    def __init__(self, dataset: StreamDataset, sampler: EpochBatchSampler, *, workers: int, prefetch: int,
                 pin_memory: bool, bad_images: str, seed: int, persistent: bool = True) -> None:
        super().__init__()

        self.dataset, self.sampler, self.bad_images = dataset, sampler, bad_images
        self.classes = list(dataset.source.classes)
        self.image_shape = (dataset.channels, dataset.size, dataset.size)
        self.mode = "stream"
        extra: dict[str, Any] = {}
        if workers > 0:
            # (DataLoader's workers already run torch on one thread each; the random draws are per sample)
            extra = {"prefetch_factor": prefetch, "persistent_workers": persistent, "worker_init_fn": _worker_init}
        self.loader = DataLoader(
            dataset, batch_sampler=sampler, num_workers=workers, collate_fn=_keep, pin_memory=pin_memory,
            generator=torch.Generator().manual_seed(seed), **extra,  # workers' base seed: not from the global RNG
        )

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass (an epoch from its start batch); at its end, or when it is abandoned, the files that this
        process opened (shards, with ``workers=0``) are closed."""
        self._batch = self.sampler.start_batch
        try:
            for batch in self.loader:
                if batch.bad:
                    if self.bad_images == "error":
                        raise DataError(batch.bad[0][1] + " (or set bad_images: skip to drop such files)")
                    self.skipped += len(batch.bad)
                    room = KEEP_NAMES - len(self.skipped_files)
                    self.skipped_files.extend(name for name, _ in batch.bad[: max(room, 0)])
                self._advance()
                yield batch.images, batch.labels
        finally:
            self.dataset.source.close()


# ------------------------------------------------------------------------------------------ choosing
def choose_mode(source: FolderSource | ShardSource, img_size: int | None, augment: AugmentConfig | None,
                memory_limit_mb: float = MEMORY_LIMIT_MB, channels: int = 3) -> tuple[str, str]:
    """``("memory" | "stream", reason)`` by the rule in the module docstring.

    Only image headers are read (Pillow opens lazily), and only while the split can still fit the limit.
    """
    if isinstance(source, ShardSource):
        return "stream", "the source is tar shards"
    if augment is not None:
        return "stream", "per-image augmentation is asked for"
    size: tuple[int, int] | None = None if img_size is None else (img_size, img_size)
    limit = memory_limit_mb * 2**20
    per_image = None if size is None else channels * size[0] * size[1]
    if per_image is not None and per_image * len(source) > limit:
        return "stream", f"{len(source)} images of {per_image} bytes exceed memory_limit_mb={memory_limit_mb}"

    for index in range(len(source)):
        try:
            image = Image.open(source.describe(index))  # lazy: reads the header only
        except Exception:  # noqa: BLE001 (an unreadable file: the stream reports it by the bad_images setting)
            return "stream", f"{source.describe(index)} cannot be read"
        with image:
            if size is None:
                size = image.size
                per_image = channels * size[0] * size[1]
                if per_image * len(source) > limit:
                    return "stream", (f"{len(source)} images of {per_image} bytes exceed "
                                      f"memory_limit_mb={memory_limit_mb}")
            elif image.size != size:
                return "stream", f"{source.describe(index)} is {image.size[0]}x{image.size[1]}, not {size[0]}x{size[1]}"
    return "memory", f"{len(source)} images of one size {size[0]}x{size[1]} fit in memory_limit_mb={memory_limit_mb}"


def _check_loader_settings(bad_images: str, mode: str, in_chans: int, dtype: torch.dtype) -> None:
    """Refuse a ``bad_images``, ``mode``, ``in_chans`` or ``dtype`` that the loaders do not offer."""
    if bad_images not in BAD_IMAGES:
        raise ConfigError(f"bad_images must be 'error' or 'skip', got {bad_images!r}")
    if mode not in ("auto", "memory", "stream"):
        raise ConfigError(f"data mode must be 'auto', 'memory' or 'stream', got {mode!r}")
    if in_chans not in (1, 3):
        raise ConfigError(f"in_chans must be 1 or 3 for image files, got {in_chans!r}")
    if dtype not in (torch.float32, torch.uint8):
        raise ConfigError(f"dtype must be torch.float32 or torch.uint8, got {dtype}")


def _memory_loader(
    data: FolderSource | ShardSource, source: str | Path, sampler: EpochBatchSampler, *, img_size: int | None,
    in_chans: int, dtype: torch.dtype, mode: str, bad_images: str,
) -> InMemoryLoader | None:
    """The split decoded once into memory; None when a file does not decode and ``auto`` + ``skip`` streams it."""
    if isinstance(data, ShardSource):
        raise ConfigError("mode 'memory' reads image folders only; use mode 'stream' (or 'auto') for shards")
    samples = [(Path(data.describe(i)), int(data.labels[i])) for i in range(len(data))]
    try:
        dataset = load_image_files(samples, data.classes, data.name, str(source), channels=in_chans)
    except DataError:
        if mode == "memory" or bad_images == "error":
            raise
        return None  # auto + skip: a file that does not decode sends the split to the stream, which skips it
    if img_size is not None and dataset.image_shape[1:] != (img_size, img_size):
        raise DataError(f"{data.name}: images are {dataset.image_shape[2]}x{dataset.image_shape[1]}, the "
                        f"model expects {img_size}x{img_size}; use mode 'stream' to resize them")
    return InMemoryLoader(dataset, sampler, dtype)


def _streaming_loader(
    data: FolderSource | ShardSource, sampler: EpochBatchSampler, *, train: bool, img_size: int | None,
    in_chans: int, augment: AugmentConfig | None, seed: int, dtype: torch.dtype, workers: int | None, prefetch: int,
    pin_memory: bool | None, bad_images: str,
) -> StreamingLoader:
    """Batches decoded on the fly by DataLoader workers through the training or evaluation pipeline."""
    if img_size is None:
        raise ConfigError(f"{data.name}: streaming needs the model's img_size (images are resized to it)")
    pipeline = build_pipeline(train, img_size, in_chans, augment or AugmentConfig.minimal())
    workers = min(4, os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    pin = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
    stream = StreamDataset(data, pipeline, seed, in_chans, img_size, dtype)
    return StreamingLoader(stream, sampler, workers=workers, prefetch=prefetch, pin_memory=pin,
                           bad_images=bad_images, seed=seed)


def build_image_loader(
    source: str | Path,
    split: str,
    *,
    img_size: int | None,
    in_chans: int = 3,
    batch_size: int,
    train: bool,
    augment: AugmentConfig | dict | None = None,
    seed: int = 0,
    epoch: int = 0,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    workers: int | None = None,
    prefetch: int = 2,
    pin_memory: bool | None = None,
    dtype: torch.dtype = torch.float32,
    bad_images: str = "error",
    mode: str = "auto",
    memory_limit_mb: float = MEMORY_LIMIT_MB,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> ImageLoader:
    """The batches of one split of an image folder or shard folder for this rank (see the module docstring).

    Args:
        source: an image folder (``CLASS/*.jpg`` or ``train/``, ``test/`` [, ``val/``] of those) or a shard
            folder written by :func:`vitlab.data.shards.write_shards` (``train/``, ``val/``, ``test/`` of
            shards), or one folder of ``.tar`` shards.
        split: ``"train"``, ``"val"`` or ``"test"``.
        img_size: model input side S (required for streaming; None keeps the files' common size in memory).
        in_chans: 1 (grayscale) or 3 (RGB): every image is converted to it.
        batch_size: samples per batch on this rank.
        train: training order and pipeline (shuffled, tail dropped, random crop...) or evaluation.
        augment: training pipeline settings (:class:`AugmentConfig` or its dict); None = no per-image
            augmentation (memory path allowed; a stream then uses :meth:`AugmentConfig.minimal`).
        seed: order and augmentation seed.
        epoch, start_batch: the first epoch and the batch to start it at (resume).
        rank, world_size: this process among ``world_size``.
        workers: DataLoader worker processes (default ``min(4, cpu count)``; 0 decodes in this process).
        prefetch: batches prefetched per worker.
        pin_memory: page-locked batches (default: when CUDA is available).
        dtype: ``torch.float32`` (values in [0, 1]) or ``torch.uint8`` (0..255).
        bad_images: ``"error"`` or ``"skip"`` (see the module docstring).
        mode: ``"auto"``, ``"memory"`` or ``"stream"``.
        memory_limit_mb: the decoded size up to which ``auto`` keeps a split in memory.
        val_fraction, split_seed: how a folder without ``val/`` is split (:func:`folder_splits`).

    Raises:
        ConfigError: bad settings. DataError: a bad folder, shard or (with ``bad_images="error"``) image.
    """
    _check_loader_settings(bad_images, mode, in_chans, dtype)
    if isinstance(augment, dict):
        augment = AugmentConfig.from_dict(augment)
    data = open_source(source, split, val_fraction, split_seed)
    chosen = mode
    if mode == "auto":
        chosen, _reason = choose_mode(data, img_size, augment, memory_limit_mb, in_chans)
    sampler = EpochBatchSampler(len(data), batch_size, train, seed, rank, world_size,
                                groups=data.groups if train else None)
    loader: ImageLoader | None = None
    if chosen == "memory":
        loader = _memory_loader(data, source, sampler, img_size=img_size, in_chans=in_chans, dtype=dtype, mode=mode,
                                bad_images=bad_images)
    if loader is None:
        loader = _streaming_loader(data, sampler, train=train, img_size=img_size, in_chans=in_chans, augment=augment,
                                   seed=seed, dtype=dtype, workers=workers, prefetch=prefetch, pin_memory=pin_memory,
                                   bad_images=bad_images)
    loader.set_epoch(epoch, start_batch)
    return loader

