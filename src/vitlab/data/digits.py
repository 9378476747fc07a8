"""The embedded default dataset: the UCI optical recognition of handwritten digits.

1,797 real 8×8 grayscale images of the digits 0-9 (Alpaydin & Kaynak 1998; UCI ML repository), as shipped
inside scikit-learn (``sklearn.datasets.load_digits``, read from the installed package: no network).
Pixel values are counts 0..16 of set pixels in 4×4 blocks of the original 32×32 bitmaps; vitlab scales
them to [0, 1] by dividing by 16.

The split is fixed: stratified by class, seed 0, 70% train / 15% validation / 15% test, which gives
1,258 / 269 / 270 images (each class within one image of its proportion).
"""

from __future__ import annotations

import torch

from vitlab.data.base import ImageDataset, stratified_split

SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
SPLIT_SEED = 0
CLASSES = [str(d) for d in range(10)]


def load_digits_all() -> ImageDataset:
    """All 1,797 digits: images (1797, 1, 8, 8) float32 in [0, 1], labels (1797,) int64."""
    from sklearn.datasets import load_digits  # scikit-learn takes ~1 s to import: only for this dataset

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1).contiguous()
    labels = torch.from_numpy(bunch.target).long()
    return ImageDataset(images, labels, list(CLASSES), "digits")


def load_digits_dataset(seed: int = SPLIT_SEED) -> dict[str, ImageDataset]:
    """The fixed train / val / test split of the digits (see the module docstring for the counts)."""
    full = load_digits_all()
    parts = stratified_split(full.labels, SPLIT_FRACTIONS, seed)
    return {name: full.subset(index, f"digits/{name}") for name, index in parts.items()}


def load_digits_splits(seed: int = SPLIT_SEED) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The same split as ``{name: (images (N, 1, 8, 8) float32 in [0, 1], labels (N,) int64)}``."""
    return {name: (ds.images, ds.labels) for name, ds in load_digits_dataset(seed).items()}
