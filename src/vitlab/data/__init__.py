"""Datasets: the embedded digits, real-format loaders for users' own data, and tensor batch transforms."""

from vitlab.data.base import ImageDataset, stratified_split, to_float, validate_images
from vitlab.data.digits import load_digits_dataset, load_digits_splits

__all__ = [
    "ImageDataset",
    "load_digits_dataset",
    "load_digits_splits",
    "stratified_split",
    "to_float",
    "validate_images",
]
