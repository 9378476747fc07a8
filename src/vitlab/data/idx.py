"""MNIST-family datasets (MNIST, Fashion-MNIST, KMNIST) from their IDX files.

The IDX format (LeCun et al., "The MNIST database of handwritten digits", file-format section of
http://yann.lecun.com/exdb/mnist/): a big-endian header

    magic = 0x00 0x00 <type code> <number of dimensions d>,   then d uint32 sizes s_1 … s_d,

followed by s_1·…·s_d values of the given type in C order (big-endian for multi-byte types). Type codes:
0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. Image files are
(N, 28, 28) uint8 (magic 0x00000803), label files (N,) uint8 (magic 0x00000801). The files are
usually distributed gzip'd; both ``NAME`` and ``NAME.gz`` are read.

The official file names, mirrors and MD5 sums are in :data:`MNIST_FAMILY`. The digests are those
listed in torchvision's ``torchvision/datasets/mnist.py`` (``resources``; MNIST's own page publishes
none; the Fashion-MNIST README lists the same MD5s). No SHA-256 is published, so MD5 is verified.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vitlab.data.base import ImageDataset
from vitlab.data.download import download_first, verify_file
from vitlab.errors import ConfigError, DataError, unknown_name_message

__all__ = ["MNIST_FAMILY", "IdxSource", "load_mnist_family", "read_idx"]

# type code -> numpy dtype (big-endian where it matters)
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class IdxSource:
    """Where one MNIST-family dataset comes from."""

    mirrors: tuple[str, ...]
    files: dict[str, tuple[str, str]]  # role -> (file name, md5)
    classes: tuple[str, ...]


MNIST_FAMILY: dict[str, IdxSource] = {
    "mnist": IdxSource(
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        classes=tuple(str(d) for d in range(10)),
    ),
    "fashion_mnist": IdxSource(
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
    ),
    "kmnist": IdxSource(
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
        },
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
}


def read_idx(path: str | Path) -> Tensor:
    """Read one IDX file (gzip'd or plain) into a tensor of its declared shape.

    Args:
        path: the file; gzip is detected from its first two bytes (0x1f 0x8b), not its name.

    Returns:
        Tensor of shape (s_1, …, s_d): uint8 / int8 / int16 / int32 / float32 / float64 as declared.

    Raises:
        DataError: bad magic, unknown type code, truncated header, or a data size that does not match
            the header (each message names the file).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a cut gzip stream is an EOFError
        raise DataError(f"{path}: cannot read ({exc}); the file is corrupt or truncated, download it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic {raw[:4].hex() or 'empty'}; expected 0000 0803 for "
                        f"images or 0000 0801 for labels); download the file again")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}; the file is corrupt, download it again")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header}); download the file again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says shape {tuple(shape)} ({expected} bytes of data) but the file holds "
                        f"{len(raw) - header}; the file is truncated or corrupt, download it again")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def _find(root: Path, file_name: str) -> Path | None:
    """``root/NAME.gz`` or ``root/NAME`` (the unzipped file), whichever exists."""
    stem = file_name[:-3] if file_name.endswith(".gz") else file_name
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    return None


def load_mnist_family(name: str, root: str | Path, download: bool = False,
                      timeout: float = 30) -> dict[str, ImageDataset]:
    """The official train and test sets of ``name`` (mnist, fashion_mnist, kmnist) from ``root``.

    Args:
        name: a key of :data:`MNIST_FAMILY`.
        root: the folder holding the four IDX files (gzip'd or not).
        download: fetch missing files from the mirrors (MD5 verified).
        timeout: seconds per network operation.

    Returns:
        ``{'train': ..., 'test': ...}``, images (N, 1, 28, 28) uint8, labels (N,) int64.
    """
    if name not in MNIST_FAMILY:
        raise ConfigError(unknown_name_message("MNIST-family dataset", name, MNIST_FAMILY))
    source = MNIST_FAMILY[name]
    root = Path(root)
    paths: dict[str, Path] = {}
    for role, (file_name, md5) in source.files.items():
        found = _find(root, file_name)
        if found is None and download:
            dest = root / file_name
            found = dest if verify_file(dest, md5=md5) else download_first(
                [m + file_name for m in source.mirrors], dest, md5=md5, timeout=timeout)
        if found is None:
            raise DataError(f"{name}: {root / file_name} not found; pass --set download=true or put {file_name} "
                            f"in {root}")
        paths[role] = found
    out = {}
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"])
        labels = read_idx(paths[f"{split}_labels"])
        if images.dim() != 3 or images.dtype != torch.uint8:
            raise DataError(f"{paths[f'{split}_images']}: expected (N, H, W) uint8 images, got "
                            f"{tuple(images.shape)} {images.dtype}; is this an images file?")
        if labels.dim() != 1:
            raise DataError(f"{paths[f'{split}_labels']}: expected (N,) labels, got shape {tuple(labels.shape)}; "
                            f"is this a labels file?")
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{name}/{split}: {images.shape[0]} images but {labels.shape[0]} labels; "
                            f"the files do not belong together, download them again")
        out[split] = ImageDataset(images.unsqueeze(1).contiguous(), labels.long(), list(source.classes),
                                  f"{name}/{split}", {"source": str(root)})
    return out
