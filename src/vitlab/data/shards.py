"""WebDataset-style tar shards: write them from an image folder, read samples from them by position.

The format (Breuel et al., the ``webdataset`` convention): a shard is a plain POSIX tar file; the files of
one sample share a key (the member name up to the first dot of its base name) and differ by extension:
``s00000042.jpg`` holds the image exactly as the source file had it (no re-encoding) and ``s00000042.cls``
the class index as decimal text. Any reader of that convention (e.g. ``webdataset.WebDataset``) reads
vitlab's shards, and vitlab reads theirs.

:func:`write_shards` writes each split of a folder (:func:`vitlab.data.folder.folder_splits`) into
``out_dir/<split>/shard-000000.tar, ...`` with at most ``max_count`` samples per shard, in a seeded
shuffled order (so every shard mixes the classes), plus ``out_dir/<split>/index.json``: the class names and,
per shard, its byte size and each sample's key, data offset, size and label. With the index the reader
needs no pass over the tars: it checks each shard's size (a truncated or replaced shard is refused, named)
and then reads any sample with one ``seek`` + ``read``. Shards without an index (written by other tools) are
indexed by walking their tar headers once; their classes are ``"0"`` .. ``"K-1"`` for the training split's
largest label K − 1, and the other splits take the training split's classes (:func:`open_shards`), so a
validation split that happens to lack a class still has the same classes.

Reading a sample by position (instead of streaming the tar front to back) lets the same sampler serve
folders and shards: an exact, seeded global order per epoch, the split of an epoch among DDP ranks, and
resuming mid-epoch at a batch (see :mod:`vitlab.data.stream`). The training order of shards is
shard-grouped (shards in a random order, the samples of a shard in a random order, each rank a contiguous
run of that order), so a rank reads whole shards of its own, front to back within each batch.

The tar format is read and written with Python's ``tarfile`` (no dependency; the ``webdataset`` package is
used by the tests only, as the independent reader and writer).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitlab.data.folder import IMAGE_EXTENSIONS, folder_splits, open_image
from vitlab.errors import DataError
from vitlab.io import atomic_open, atomic_write_text

__all__ = ["INDEX_FILE", "ShardSource", "is_shard_dir", "open_shards", "write_shards"]

INDEX_FILE = "index.json"
FORMAT = "vitlab-shards"
SPLITS = ("train", "val", "test")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append one member; returns the offset of its data in the tar file."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # reproducible bytes
    header = len(info.tobuf(tar.format, tar.encoding, tar.errors))
    start = tar.offset
    tar.addfile(info, io.BytesIO(data))
    return start + header


def write_shards(
    folder: str | Path,
    out_dir: str | Path,
    *,
    max_count: int = 1000,
    seed: int = 0,
    val_fraction: float = 0.1,
    verify: bool = False,
) -> dict[str, dict[str, Any]]:
    """Write the train / val / test splits of an image folder as tar shards.

    Args:
        folder: an image folder (``CLASS/*.jpg``, or ``train/``, ``test/`` [, ``val/``] of those).
        out_dir: a new or empty folder; receives ``train/``, ``val/``, ``test/`` with shards and index.
        max_count: samples per shard at most.
        seed: seed of the split (as :func:`folder_splits`) and of the order of samples in the shards.
        val_fraction: validation share when ``folder`` has ``train/`` but no ``val/``.
        verify: decode every image first and refuse the folder if one is corrupt (slower).

    Returns:
        split -> ``{"shards": number of tar files, "samples": number of samples}``.

    Raises:
        DataError: a bad folder layout, ``out_dir`` not empty, a corrupt image (with ``verify``).
    """
    if not isinstance(max_count, int) or max_count < 1:
        raise DataError(f"max_count must be a positive integer, got {max_count!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir} already exists and is not an empty folder; choose a new folder for the shards")
    splits, classes = folder_splits(folder, val_fraction, seed)
    if verify:
        for samples in splits.values():
            for path, _ in samples:
                open_image(path).close()
    written: dict[str, dict[str, Any]] = {}
    generator = torch.Generator().manual_seed(seed)
    for split, samples in splits.items():
        target = out_dir / split
        target.mkdir(parents=True, exist_ok=True)
        order = torch.randperm(len(samples), generator=generator).tolist()
        shards: list[dict[str, Any]] = []
        for number, start in enumerate(range(0, len(order), max_count)):
            name = f"shard-{number:06d}.tar"
            entries = []
            with atomic_open(target / name, suffix=".partial") as handle, \
                    tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for position in order[start : start + max_count]:
                    path, label = samples[position]
                    key = f"s{start + len(entries):08d}"
                    ext = path.suffix.lower().lstrip(".")
                    data = Path(path).read_bytes()
                    offset = _add(tar, f"{key}.{ext}", data)
                    _add(tar, f"{key}.cls", str(label).encode())
                    entries.append([key, ext, offset, len(data), label])
            shards.append({"file": name, "bytes": (target / name).stat().st_size, "samples": entries})
        index = {"format": FORMAT, "version": 1, "classes": list(classes), "shards": shards}
        atomic_write_text(target / INDEX_FILE, json.dumps(index))
        written[split] = {"shards": len(shards), "samples": len(samples)}
    return written


def is_shard_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder of shards (an ``index.json`` or at least one ``.tar`` file)."""
    path = Path(path)
    return path.is_dir() and ((path / INDEX_FILE).is_file() or any(path.glob("*.tar")))


class ShardSource:
    """The samples of one folder of shards, readable by position (see the module docstring).

    Shard files are opened on first read and kept open (up to 8 per process); :meth:`close` closes them (the
    loaders call it when a pass over the data ends).

    Args:
        root: the folder of shards.
        classes: for shards without an index, the class names to use (the training split's, see
            :func:`open_shards`); every label must fall inside them. None: ``"0"`` .. the largest label.

    Attributes:
        classes: class names (from the index; else ``classes``, or ``"0"``, ``"1"``, ... up to the largest label).
        labels: (N,) int64 numpy array.
        groups: (N,) int64 numpy array: the shard of each sample (for the shard-grouped training order).
        name: the folder, for messages.

    Raises:
        DataError: no shards, a damaged index or shard, or a label outside the classes.
    """

    def __init__(self, root: str | Path, classes: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        if not is_shard_dir(self.root):
            raise DataError(f"{self.root} is not a folder of shards (no {INDEX_FILE}, no .tar files); "
                            f"write them with vitlab.data.shards.write_shards(folder, out_dir)")
        self.name = str(self.root)
        given = classes is not None and not (self.root / INDEX_FILE).is_file()
        if (self.root / INDEX_FILE).is_file():
            self.files, self.classes, rows = self._from_index()
        else:
            self.files, self.classes, rows = self._from_tars()
            if classes is not None:
                self.classes = [str(c) for c in classes]
        if not rows:
            raise DataError(f"{self.root}: the shards hold no samples")
        table = np.array([row[:4] for row in rows], dtype=np.int64)  # shard, offset, size, label
        self.groups, self.offsets, self.sizes, self.labels = (np.ascontiguousarray(table[:, i]) for i in range(4))
        self.keys = np.array([f"{row[4]}.{row[5]}".encode() for row in rows])  # fixed-width bytes: no per-item objects
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes):
            bad = int(self.labels.min()) if int(self.labels.min()) < 0 else int(self.labels.max())
            if given:
                raise DataError(f"{self.root}: label {bad} is outside the training split's {len(self.classes)} classes "
                                f"(0..{len(self.classes) - 1}); give every split the training split's classes")
            raise DataError(f"{self.root}: label {bad} is out of range for {len(self.classes)} classes; "
                            f"fix the .cls members or the index")
        self._handles: dict[int, Any] = {}
        self._pid = -1

    def _from_index(self) -> tuple[list[Path], list[str], list[tuple]]:
        try:
            index = json.loads((self.root / INDEX_FILE).read_text(encoding="utf-8"))
            classes = [str(c) for c in index["classes"]]
            files, rows = [], []
            for number, shard in enumerate(index["shards"]):
                path = self.root / shard["file"]
                if not path.is_file():
                    raise DataError(f"shard {path} is listed in {self.root / INDEX_FILE} but missing; "
                                    f"restore it or rewrite the shards")
                if path.stat().st_size != int(shard["bytes"]):
                    raise DataError(f"shard {path} is {path.stat().st_size} bytes but the index says {shard['bytes']}: "
                                    f"it is truncated or was changed; rewrite the shards")
                files.append(path)
                rows.extend((number, int(offset), int(size), int(label), key, ext)
                            for key, ext, offset, size, label in shard["samples"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{self.root / INDEX_FILE} is damaged ({type(exc).__name__}: {exc}); "
                            f"rewrite the shards") from None
        return files, classes, rows

    def _from_tars(self) -> tuple[list[Path], list[str], list[tuple]]:
        files = sorted(self.root.glob("*.tar"))
        rows = []
        for number, path in enumerate(files):
            images: dict[str, tuple[str, int, int]] = {}
            labels: dict[str, int] = {}
            try:
                with tarfile.open(path, "r:") as tar:
                    for member in tar:
                        if not member.isfile():
                            continue
                        base = member.name.rsplit("/", 1)[-1]
                        stem, _, ext = base.partition(".")
                        key = member.name[: len(member.name) - len(base)] + stem
                        if "." + ext.lower() in IMAGE_EXTENSIONS:
                            images[key] = (ext.lower(), member.offset_data, member.size)
                        elif ext == "cls":
                            handle = tar.extractfile(member)
                            labels[key] = int(handle.read().decode().strip()) if handle is not None else -1
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise DataError(f"shard {path} is unreadable ({exc}); it is truncated or not a tar file; "
                                f"rewrite it or remove it") from None
            except ValueError:
                raise DataError(f"shard {path} has a .cls member that is not an integer class index") from None
            for key, (ext, offset, size) in images.items():
                if key not in labels:
                    raise DataError(f"shard {path}: sample {key}.{ext} has no {key}.cls label member")
                rows.append((number, offset, size, labels[key], key, ext))
        top = max((row[3] for row in rows), default=-1)
        return files, [str(c) for c in range(top + 1)], rows

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def describe(self, index: int) -> str:
        """``shard.tar:key.ext`` of sample ``index`` (for messages)."""
        return f"{self.files[int(self.groups[index])]}:{self.keys[index].decode()}"

    def _handle(self, shard: int):  # noqa: ANN202
        if self._pid != os.getpid():  # opened handles are per process (after a fork, reopen)
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(shard)
        if handle is None:
            if len(self._handles) >= 8:
                self._handles.pop(next(iter(self._handles))).close()
            handle = self._handles[shard] = open(self.files[shard], "rb")  # noqa: SIM115 (cached)
        return handle

    def open(self, index: int):  # noqa: ANN201 (PIL.Image.Image)
        """Sample ``index`` opened lazily (decoded by the pipeline); a read failure is a :class:`DataError`
        naming shard and member."""
        name = self.describe(index)
        try:
            handle = self._handle(int(self.groups[index]))
            handle.seek(int(self.offsets[index]))
            data = handle.read(int(self.sizes[index]))
        except OSError as exc:
            raise DataError(f"{name}: cannot read the shard ({exc}); check the file") from None
        if len(data) != int(self.sizes[index]):
            raise DataError(f"{name}: the shard ends inside this sample: it is truncated; rewrite the shards")
        return open_image(io.BytesIO(data), name, lazy=True)

    def close(self) -> None:
        """Close the shard files this process opened (a later read opens them again)."""
        if self._pid == os.getpid():  # a forked copy's handles belong to the parent: leave them be
            for handle in self._handles.values():
                handle.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:  # file handles do not travel to worker processes
        state = dict(self.__dict__)
        state["_handles"], state["_pid"] = {}, -1
        return state


def open_shards(source: str | Path, split: str) -> ShardSource | None:
    """The shards of ``split`` of ``source`` (see :func:`shard_dir_for`), or None when it holds none.

    A split other than ``train`` whose shards have no index takes the training split's classes (read from its
    index, or from its shards' largest label), not ``0`` .. its own largest label: a validation split that
    lacks the top class keeps every class.

    Raises:
        DataError: a bad shard folder, or a label outside the training split's classes.
    """
    shard_dir = shard_dir_for(source, split)
    if shard_dir is None:
        return None
    train_dir = shard_dir_for(source, "train")
    if split == "train" or train_dir is None or train_dir == shard_dir or (shard_dir / INDEX_FILE).is_file():
        return ShardSource(shard_dir)
    return ShardSource(shard_dir, classes=ShardSource(train_dir).classes)


def shard_dir_for(source: str | Path, split: str) -> Path | None:
    """``source/<split>`` when it is a shard folder, ``source`` itself when it is one, else None."""
    source = Path(source)
    if split in SPLITS and is_shard_dir(source / split):
        return source / split
    if is_shard_dir(source) and not any((source / s).is_dir() for s in SPLITS):
        return source
    return None

