"""The in-memory image dataset every loader returns, and the seeded stratified split.

vitlab's datasets are small enough to live in memory as one tensor (CIFAR-10's 50,000 training images
are 150 MB as uint8), so batches are index selections on that tensor: no worker processes, no per-sample
Python. Images are stored either as ``uint8`` (0..255, as the files hold them) or as ``float32`` in
[0, 1]; :func:`to_float` turns either into float32 in [0, 1] on the batch's device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from vitlab.errors import DataError


@dataclass
class ImageDataset:
    """Images and integer labels held in memory.

    Attributes:
        images: (N, C, H, W) uint8 in 0..255 or float32 in [0, 1].
        labels: (N,) int64 in [0, len(classes)).
        classes: class names, index = label.
        name: where the data came from (for messages and the run config).
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str = "dataset"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_images(self.images, self.labels, len(self.classes), self.name)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: Tensor, name: str | None = None) -> ImageDataset:
        """The samples at ``index`` (a 1-D int64 tensor), sharing class names."""
        return ImageDataset(
            self.images[index], self.labels[index], list(self.classes), name or self.name, dict(self.meta)
        )


def validate_images(images: Tensor, labels: Tensor, num_classes: int, name: str = "dataset") -> None:
    """Check shapes, dtypes, label range and finiteness; raise :class:`DataError` naming the problem.

    Args:
        images: (N, C, H, W) uint8 or floating.
        labels: (N,) integer.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"{name}: images must be a (N, C, H, W) tensor, got shape {shape}")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise DataError(f"{name}: labels must be a ({images.shape[0]},) tensor matching the images, got {shape}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DataError(f"{name}: labels must be integers, got {labels.dtype}")
    if images.shape[0] == 0:
        raise DataError(f"{name}: the dataset is empty; point it at a folder or file with samples")
    if num_classes < 1:
        raise DataError(f"{name}: no classes")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(f"{name}: label {bad} is out of range [0, {num_classes}); fix the labels or the class list")
    if images.dtype == torch.uint8:
        return
    if not images.dtype.is_floating_point:
        raise DataError(f"{name}: images must be uint8 or floating point, got {images.dtype}")
    if not bool(torch.isfinite(images).all()):
        raise DataError(f"{name}: images contain NaN or inf values; clean the data before training")


def to_float(images: Tensor) -> Tensor:
    """uint8 (0..255) or float images -> float32 in [0, 1] (floats are returned as float32, unscaled)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def stratified_split(labels: Tensor, fractions: dict[str, float], seed: int) -> dict[str, Tensor]:
    """Split sample indices into named parts with the same class proportions in each.

    For every class c with n_c samples (in a seeded random order), part p receives
    ``round(f_p · n_c)`` of them, the last part taking the remainder, so every sample lands in
    exactly one part. The order inside each part is sorted (the loader shuffles).

    Args:
        labels: (N,) integer labels.
        fractions: part name -> fraction; the fractions must sum to 1.
        seed: seed of the permutation inside each class.

    Returns:
        part name -> (n_p,) int64 indices into ``labels``.
    """
    if abs(sum(fractions.values()) - 1.0) > 1e-9 or any(f < 0 for f in fractions.values()):
        raise DataError(f"split fractions {fractions} must be non-negative and sum to 1")
    generator = torch.Generator().manual_seed(seed)
    names = list(fractions)
    parts: dict[str, list[Tensor]] = {name: [] for name in names}
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        start = 0
        for i, name in enumerate(names):
            take = members.numel() - start if i == len(names) - 1 else round(fractions[name] * members.numel())
            parts[name].append(members[start : start + take])
            start += take
    return {name: torch.sort(torch.cat(chunks)).values for name, chunks in parts.items()}


def take_per_class(labels: Tensor, count: int, seed: int, name: str = "dataset") -> Tensor:
    """A seeded stratified subset with exactly ``count`` samples of every class (few-label training).

    For every class, in increasing label order, the first ``count`` samples of a random permutation drawn
    from one ``torch.Generator`` seeded with ``seed`` (the same draw as :func:`stratified_split`).

    Args:
        labels: (N,) integer labels.
        count: samples to keep per class (>= 1).
        seed: seed of the per-class permutations.
        name: the dataset, for the error message.

    Returns:
        (K · count,) sorted int64 indices into ``labels``.

    Raises:
        DataError: a class has fewer than ``count`` samples.
    """
    if count < 1:
        raise DataError(f"{name}: samples per class must be >= 1, got {count}")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        if members.numel() < count:
            raise DataError(f"{name}: class {c} has {members.numel()} training samples, "
                            f"fewer than the {count} per class "
                            f"asked for; lower train_per_class to at most {members.numel()}")
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:count]])
    return torch.sort(torch.cat(chosen)).values
