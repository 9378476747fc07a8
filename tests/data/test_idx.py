"""Tests for vitlab.data.idx on IDX files written here with struct, following the format spec
(big-endian magic 0x00 0x00 type ndim, big-endian uint32 sizes, C-order data), gzip'd and plain.
Reference: numpy arrays the test wrote."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vitlab.data.idx import MNIST_FAMILY, load_mnist_family, read_idx
from vitlab.errors import ConfigError, DataError

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path: Path, array: np.ndarray, gz: bool = True, code: int | None = None) -> Path:
    code = CODES[array.dtype.type] if code is None else code
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_family(root: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[f"{prefix}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}_labels"] = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", arrays[f"{prefix}_images"], gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", arrays[f"{prefix}_labels"], gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_round_trips_every_type(tmp_path, gz, dtype):
    array = (np.arange(24).reshape(2, 3, 4) * 37 - 300).astype(dtype)
    out = read_idx(write_idx(tmp_path / "x.idx", array, gz))
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out.numpy(), array)


@pytest.mark.parametrize("name", sorted(MNIST_FAMILY))
@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_family_matches_the_written_arrays(tmp_path, name, gz):
    arrays = write_family(tmp_path, gz=gz)
    splits = load_mnist_family(name, tmp_path)
    assert splits["train"].images.shape == (30, 1, 28, 28) and splits["train"].images.dtype == torch.uint8
    np.testing.assert_array_equal(splits["train"].images[:, 0].numpy(), arrays["train_images"])
    np.testing.assert_array_equal(splits["test"].labels.numpy(), arrays["t10k_labels"])
    assert splits["test"].labels.dtype == torch.int64
    assert splits["train"].classes == list(MNIST_FAMILY[name].classes) and len(splits["train"].classes) == 10


def test_bad_magic_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(20))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: not an IDX file \(bad magic 12340803"):
        read_idx(path)


def test_unknown_type_code_is_refused(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros(3, np.uint8), gz=False, code=0x07)
    with pytest.raises(DataError, match="unknown IDX type code 0x07"):
        read_idx(path)


def test_size_mismatch_names_the_shapes(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((4, 5, 5), np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-7])  # truncated data
    with pytest.raises(DataError, match=r"shape \(4, 5, 5\) \(100 bytes of data\) but the file holds 93"):
        read_idx(path)
    path.write_bytes(path.read_bytes() + bytes(20))  # trailing garbage
    with pytest.raises(DataError, match="but the file holds 113"):
        read_idx(path)


def test_truncated_header_and_truncated_gzip(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(short)
    gz = write_idx(tmp_path / "x.gz", np.zeros((50, 28, 28), np.uint8))
    gz.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_idx(gz)


def test_images_and_labels_count_mismatch(tmp_path):
    write_family(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(DataError, match="10 images but 9 labels"):
        load_mnist_family("mnist", tmp_path)


def test_label_out_of_range_is_caught(tmp_path):
    write_family(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10, 12, np.uint8))
    with pytest.raises(DataError, match="label 12 is out of range"):
        load_mnist_family("fashion_mnist", tmp_path)


def test_swapped_files_are_caught(tmp_path):
    write_family(tmp_path)
    labels = (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(labels)
    with pytest.raises(DataError, match="expected \\(N, H, W\\) uint8 images"):
        load_mnist_family("mnist", tmp_path)


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    write_family(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz not found; pass --set download=true or put"):
        load_mnist_family("mnist", tmp_path)


def test_unknown_family_member():
    with pytest.raises(ConfigError, match="did you mean 'kmnist'"):
        load_mnist_family("kmnst", "/tmp")


def test_download_fetches_missing_files_from_a_file_mirror_with_md5(tmp_path, monkeypatch):
    import hashlib

    from vitlab.data import idx

    mirror = tmp_path / "mirror"
    write_family(mirror)
    files = {role: (name, hashlib.md5((mirror / name).read_bytes()).hexdigest())
             for role, (name, _) in MNIST_FAMILY["mnist"].files.items()}
    source = idx.IdxSource(mirrors=("file:///nonexistent/", mirror.as_uri() + "/"), files=files, classes=tuple("0123456789"))
    monkeypatch.setitem(idx.MNIST_FAMILY, "mnist", source)
    root = tmp_path / "data"
    splits = load_mnist_family("mnist", root, download=True)
    assert len(splits["train"]) == 30 and (root / "train-images-idx3-ubyte.gz").is_file()
    # wrong digest: nothing is left behind and the error says so
    bad = idx.IdxSource(mirrors=(mirror.as_uri() + "/",), files={**files, "test_labels": (files["test_labels"][0], "0" * 32)},
                        classes=source.classes)
    monkeypatch.setitem(idx.MNIST_FAMILY, "mnist", bad)
    root2 = tmp_path / "data2"
    with pytest.raises(DataError, match="does not match"):
        load_mnist_family("mnist", root2, download=True)
    assert not (root2 / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list(root2.glob("*.part"))
