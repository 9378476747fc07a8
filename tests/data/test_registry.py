"""Tests for vitlab.data.registry: names, split rules, errors (on small files written in the real formats)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vitlab.data.registry import list_datasets, load_splits
from vitlab.errors import ConfigError, DataError


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_mnist(root: Path, n_train: int = 100, n_test: int = 20) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_list_datasets_names_every_loader():
    assert list_datasets() == ["mnist5k", "digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "folder"]


def test_digits_gives_the_fixed_split_and_ignores_root():
    splits = load_splits("digits", root="/nonexistent", seed=5)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1258, "val": 269, "test": 270}
    assert splits["train"].meta["augmentation"]["hflip"] is False


def test_train_test_dataset_val_is_a_seeded_stratified_part_of_train(tmp_path):
    _write_mnist(tmp_path)
    a = load_splits("mnist", str(tmp_path), val_fraction=0.2, seed=3)
    b = load_splits("mnist", str(tmp_path), val_fraction=0.2, seed=3)
    c = load_splits("mnist", str(tmp_path), val_fraction=0.2, seed=4)
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (80, 20, 20)
    assert torch.bincount(a["val"].labels, minlength=10).tolist() == [2] * 10  # stratified: 20% of 10 per class
    assert torch.equal(a["val"].images, b["val"].images)
    assert not torch.equal(a["val"].images, c["val"].images)
    # train and val partition the official training set: no image in both, none lost
    together = torch.cat([a["train"].images, a["val"].images]).flatten(1)
    assert torch.unique(together, dim=0).shape[0] == 100


def test_unknown_name_suggests_the_nearest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        load_splits("cifar1O", str(tmp_path))


def test_missing_files_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz not found; pass --set download=true"):
        load_splits("kmnist", str(tmp_path))


def test_bad_val_fraction_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="val_fraction"):
        load_splits("mnist", str(tmp_path), val_fraction=1.0)


def _png(path: Path, value: int, size=(6, 5)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0]), value, np.uint8), mode="L").save(path)


def test_single_image_folder_is_split_70_15_15_stratified(tmp_path):
    for cls in ("a", "b"):
        for i in range(20):
            _png(tmp_path / cls / f"{i}.png", i)
    splits = load_splits("folder", str(tmp_path), seed=1)
    assert {k: len(v) for k, v in splits.items()} == {"train": 28, "val": 6, "test": 6}
    for ds in splits.values():
        assert torch.bincount(ds.labels).tolist() == [len(ds) // 2] * 2
        assert ds.classes == ["a", "b"]


def test_folder_with_train_and_test_subfolders_uses_them_and_splits_val_from_train(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(10):
            _png(tmp_path / "train" / cls / f"{i}.png", i)
        for i in range(3):
            _png(tmp_path / "test" / cls / f"{i}.png", 100 + i)
    splits = load_splits("folder", str(tmp_path), val_fraction=0.2)
    assert {k: len(v) for k, v in splits.items()} == {"train": 16, "val": 4, "test": 6}
    assert int(splits["test"].images.min()) >= 100  # the test set is the test folder
    _png(tmp_path / "val" / "dog" / "0.png", 200)  # a val folder may lack a class
    splits = load_splits("folder", str(tmp_path))
    assert len(splits["train"]) == 20 and len(splits["val"]) == 1 and splits["val"].labels.tolist() == [1]


def test_folder_train_without_test_is_an_error(tmp_path):
    _png(tmp_path / "train" / "a" / "0.png", 0)
    with pytest.raises(DataError, match="does not"):
        load_splits("folder", str(tmp_path))


def test_folder_requires_a_root():
    with pytest.raises(ConfigError, match="needs a root"):
        load_splits("folder")


def test_cifar_through_the_registry(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for file_name in names:
        with open(folder / file_name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                         b"labels": [i % 10 for i in range(20)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    splits = load_splits("cifar10", str(tmp_path), val_fraction=0.1)
    assert {k: len(v) for k, v in splits.items()} == {"train": 90, "val": 10, "test": 20}
    assert splits["train"].image_shape == (3, 32, 32)
    assert splits["train"].meta["augmentation"] == {"crop_padding": 4, "hflip": True}
