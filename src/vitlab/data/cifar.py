"""CIFAR-10 and CIFAR-100 from their "python version" batch files, unpickled safely.

Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images", and the dataset page
https://www.cs.toronto.edu/~kriz/cifar.html, which specifies the format: each batch file is a pickled
dict with ``data``, a 10000×3072 uint8 numpy array whose row holds a 32×32 colour image as 1024 red,
then 1024 green, then 1024 blue values (rows in raster order), i.e. row r reshapes to (3, 32, 32) in C
order; and ``labels`` (CIFAR-10) or ``fine_labels`` / ``coarse_labels`` (CIFAR-100), lists of ints.
``batches.meta`` (CIFAR-10) has ``label_names``; ``meta`` (CIFAR-100) has ``fine_label_names``.

The files were written by Python 2's cPickle, so their keys and strings are Python 2 ``str``: read with
``encoding='latin1'`` they become ``str``; pickles re-written by Python 3 have ``bytes`` keys
(``b'data'``). Both are accepted.

Pickle can run arbitrary code (any importable callable can be named in the stream), so the files are
read with a restricted unpickler that resolves only the globals a CIFAR pickle needs to rebuild its
numpy arrays: ``numpy.core.multiarray._reconstruct`` (the name in the official files, written by
numpy 1.x), ``numpy._core.multiarray._reconstruct`` (the same function's name when numpy ≥ 2 re-pickles
the arrays), ``numpy.ndarray`` and ``numpy.dtype``. Any other global raises :class:`DataError`
before anything is called. The arrays are then checked to be uint8 of the documented shape.

The official archives and their MD5 sums (the dataset page lists the archive MD5s; the per-file sums are
those in torchvision's ``torchvision/datasets/cifar.py``) are in :data:`CIFAR_SOURCES`.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitlab.data.base import ImageDataset
from vitlab.data.download import download_first, verify_file
from vitlab.errors import ConfigError, DataError, unknown_name_message
from vitlab.io import atomic_open

__all__ = ["CIFAR_SOURCES", "CifarSource", "RestrictedUnpickler", "load_cifar", "load_cifar_pickle"]


@dataclass(frozen=True)
class CifarSource:
    """Where one CIFAR dataset comes from and which files it has."""

    urls: tuple[str, ...]
    archive: str
    archive_md5: str
    folder: str  # the folder inside the archive
    train: tuple[tuple[str, str], ...]  # (file name, md5)
    test: tuple[tuple[str, str], ...]
    meta: tuple[str, str]
    label_key: str
    names_key: str
    num_classes: int


CIFAR_SOURCES: dict[str, CifarSource] = {
    "cifar10": CifarSource(
        urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        archive="cifar-10-python.tar.gz",
        archive_md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train=(("data_batch_1", "c99cafc152244af753f735de768cd75f"),
               ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
               ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
               ("data_batch_4", "634d18415352ddfa80567beed471001a"),
               ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")),
        test=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
        meta=("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
        label_key="labels",
        names_key="label_names",
        num_classes=10,
    ),
    "cifar100": CifarSource(
        urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        archive="cifar-100-python.tar.gz",
        archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
        test=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
        meta=("meta", "7973b15100ade9c7d40fb424638fde48"),
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
    ),
}


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


# (module, name) -> the object it may resolve to; nothing else is ever imported or looked up
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy array-rebuilding globals of CIFAR files.

    Args:
        file: binary file object.
        source: the file's name, for error messages.
    """

    def __init__(self, file: io.BufferedIOBase, source: str = "pickle") -> None:
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise DataError(f"{self.source}: refusing to unpickle global {module}.{name} (a CIFAR file only needs "
                            f"numpy arrays); the file is not a CIFAR batch or was tampered with, download it again")
        return factory()


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def load_cifar_pickle(path: str | Path) -> dict[str, Any]:
    """Unpickle one CIFAR batch or meta file with :class:`RestrictedUnpickler`; keys become ``str``.

    Raises:
        DataError: the file is missing, truncated, not a pickle, not a dict, or names a forbidden global.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, str(path)).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OSError) as exc:
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(exc).__name__}: {exc}); the file is corrupt or "
                        f"truncated, download it again") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}; is this a CIFAR python batch?")
    return {_text(k): v for k, v in obj.items()}


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_cifar_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: missing key 'data' or '{label_key}' (has {sorted(batch)}); "
                        f"is this the right CIFAR variant's file?")
    data, labels = batch["data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be an (N, 3072) uint8 array, got {got}; the file is corrupt")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{path}: '{label_key}' is not a list of integers; the file is corrupt") from exc
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.size} labels; the file is corrupt")
    return data, labels


def _locate(root: Path, source: CifarSource) -> Path | None:
    """The folder with the batch files: ``root/<archive folder>`` or ``root`` itself."""
    for folder in (root / source.folder, root):
        if (folder / source.meta[0]).is_file():
            return folder
    return None


def _download_and_extract(root: Path, source: CifarSource, timeout: float) -> Path:
    archive = root / source.archive
    if not verify_file(archive, md5=source.archive_md5):
        download_first(list(source.urls), archive, md5=source.archive_md5, timeout=timeout)
    target = root / source.folder
    target.mkdir(parents=True, exist_ok=True)
    wanted = [name for name, _ in (*source.train, *source.test, source.meta)]
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in wanted:
                member = tar.getmember(f"{source.folder}/{name}")  # by exact name: no path from the archive is used
                if not member.isfile():
                    raise DataError(f"{archive}: {member.name} is not a regular file; delete the archive and retry")
                source_file = tar.extractfile(member)
                assert source_file is not None  # a regular file (checked above) always has contents
                with atomic_open(target / name, suffix=".part") as out, source_file:
                    out.write(source_file.read())
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise DataError(f"{archive}: cannot extract ({exc}); delete it and download again") from exc
    return target


def load_cifar(name: str, root: str | Path, download: bool = False, timeout: float = 30) -> dict[str, ImageDataset]:
    """The official train and test sets of ``name`` (cifar10 or cifar100).

    Args:
        name: ``cifar10`` or ``cifar100``.
        root: the folder holding the batch files, or holding the extracted ``cifar-10-batches-py`` /
            ``cifar-100-python`` folder.
        download: fetch and extract the official archive (MD5 verified) if the files are missing.
        timeout: seconds per network operation.

    Returns:
        ``{'train': ..., 'test': ...}``: images (N, 3, 32, 32) uint8, labels (N,) int64, class names from
        the meta file.
    """
    if name not in CIFAR_SOURCES:
        raise ConfigError(unknown_name_message("CIFAR dataset", name, CIFAR_SOURCES))
    source = CIFAR_SOURCES[name]
    root = Path(root)
    folder = _locate(root, source)
    if folder is None:
        if not download:
            raise DataError(f"{name}: {root / source.folder / source.meta[0]} not found; pass --set download=true or "
                            f"extract {source.archive} in {root}")
        folder = _download_and_extract(root, source, timeout)
    meta = load_cifar_pickle(folder / source.meta[0])
    if source.names_key not in meta:
        raise DataError(f"{folder / source.meta[0]}: missing '{source.names_key}'; is this {name}'s meta file?")
    classes = [_text(n) for n in meta[source.names_key]]
    out = {}
    for split, files in (("train", source.train), ("test", source.test)):
        parts = []
        for file_name, _ in files:
            path = folder / file_name
            if not path.is_file():
                raise DataError(f"{name}: {path} not found; pass --set download=true or extract {source.archive} "
                                f"in {root}")
            parts.append(_read_batch(path, source.label_key))
        data = np.concatenate([d for d, _ in parts])
        labels = np.concatenate([lab for _, lab in parts])
        images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
        out[split] = ImageDataset(images, torch.from_numpy(labels), classes, f"{name}/{split}",
                                  {"source": str(folder)})
    return out
