"""Datasets: the embedded digits, real-format loaders for users' own data, tensor batch transforms, and the
streaming path for image folders and tar shards of any size (:mod:`vitlab.data.stream`)."""

from vitlab.data.base import ImageDataset, stratified_split, to_float, validate_images
from vitlab.data.cifar import load_cifar
from vitlab.data.digits import load_digits_dataset, load_digits_splits
from vitlab.data.download import download
from vitlab.data.folder import load_image_folder
from vitlab.data.idx import load_mnist_family, read_idx
from vitlab.data.pipeline import AugmentConfig, build_pipeline
from vitlab.data.registry import list_datasets, load_splits
from vitlab.data.shards import write_shards
from vitlab.data.stream import ImageLoader, build_image_loader, choose_mode
from vitlab.data.transforms import BatchTransform, channel_stats, normalize, random_crop, random_hflip

__all__ = [
    "AugmentConfig",
    "BatchTransform",
    "ImageLoader",
    "build_image_loader",
    "build_pipeline",
    "choose_mode",
    "write_shards",
    "ImageDataset",
    "channel_stats",
    "download",
    "list_datasets",
    "load_cifar",
    "load_digits_dataset",
    "load_digits_splits",
    "load_image_folder",
    "load_mnist_family",
    "load_splits",
    "normalize",
    "random_crop",
    "random_hflip",
    "read_idx",
    "stratified_split",
    "to_float",
    "validate_images",
]
