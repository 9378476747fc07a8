"""An image folder: ``root/<class name>/<image>.png|jpg`` read with Pillow into one in-memory tensor.

The layout popularised by ImageNet's training set (Deng et al. 2009) and torchvision's ``ImageFolder``:
each sub-folder of ``root`` is a class, named by the folder; the class index is the position of the
name in sorted order. Files with the extensions in :data:`IMAGE_EXTENSIONS` (any case) are images;
hidden files and other extensions are ignored.

All images must have the same size (vitlab batches are slices of one tensor; resize them beforehand).
If every image is grayscale (Pillow modes ``1``, ``L``, ``LA``, ``I``, ``I;16``, ``F``) the dataset has
one channel; otherwise every image is converted to RGB (alpha dropped) and it has three. 16-bit and
float grayscale images are scaled to 0..255 first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vitlab.data.base import ImageDataset, stratified_split
from vitlab.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "convert_image", "decode_image", "find_images", "folder_splits", "load_image_files",
           "load_image_folder", "open_image"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def find_images(root: str | Path, classes: Sequence[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """List ``(path, label)`` of every image under ``root/<class>/``, sorted, and the class names.

    Args:
        root: the folder whose sub-folders are the classes.
        classes: fix the class list (e.g. a validation folder must use the training folder's classes);
            a sub-folder not in it is an error, a class without a sub-folder is allowed.

    Raises:
        DataError: ``root`` is missing or has no class folders, a class folder has no images, or a
            folder is not in ``classes``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; create {root}/CLASS_NAME/IMAGE.png or fix the path")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"image folder {root} has no class sub-folders; put the images in {root}/CLASS_NAME/*.png")
    names = [p.name for p in folders] if classes is None else list(classes)
    index = {name: i for i, name in enumerate(names)}
    samples: list[tuple[Path, int]] = []
    for folder in folders:
        if folder.name not in index:
            raise DataError(f"{folder}: class '{folder.name}' is not one of the training classes {names}; "
                            f"rename or remove the folder")
        files = sorted(p for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        if not files:
            raise DataError(f"class folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                            f"add images or remove the folder")
        samples.extend((f, index[folder.name]) for f in files)
    return samples, names


FOLDER_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def folder_splits(root: str | Path, val_fraction: float = 0.1,
                  seed: int = 0) -> tuple[dict[str, list[tuple[Path, int]]], list[str]]:
    """The train / val / test file lists of an image folder (the files are listed, not opened).

    If ``root/train`` exists it is the training set, ``root/val`` (else a stratified ``val_fraction`` of
    train) the validation set and ``root/test`` the test set; otherwise the class folders directly in
    ``root`` are split stratified 70/15/15 (:data:`FOLDER_FRACTIONS`) with ``seed``
    (:func:`vitlab.data.base.stratified_split`). Inside each split the files keep their sorted order.

    Returns:
        split name -> ``[(path, label), ...]``, and the class names (those of the training set).

    Raises:
        DataError: the layout is incomplete or a split would be empty.
    """
    root = Path(root)

    def pick(samples: list[tuple[Path, int]], index: torch.Tensor) -> list[tuple[Path, int]]:
        return [samples[i] for i in index.tolist()]

    def labels_of(samples: list[tuple[Path, int]]) -> torch.Tensor:
        return torch.tensor([label for _, label in samples], dtype=torch.int64)

    if (root / "train").is_dir():
        train, classes = find_images(root / "train")
        if not (root / "test").is_dir():
            raise DataError(f"{root / 'train'} exists but {root / 'test'} does not; add {root}/test/CLASS/*.png, "
                            f"or put the class folders directly in {root} to split them 70/15/15")
        test, _ = find_images(root / "test", classes)
        if (root / "val").is_dir():
            return {"train": train, "val": find_images(root / "val", classes)[0], "test": test}, classes
        parts = stratified_split(labels_of(train), {"train": 1.0 - val_fraction, "val": val_fraction}, seed)
        for part in ("train", "val"):
            if parts[part].numel() == 0:
                raise DataError(f"folder: val_fraction={val_fraction} leaves the {part} split empty "
                                f"({len(train)} training images); change val_fraction or add images")
        return {"train": pick(train, parts["train"]), "val": pick(train, parts["val"]), "test": test}, classes
    full, classes = find_images(root)
    parts = stratified_split(labels_of(full), FOLDER_FRACTIONS, seed)
    for part, index in parts.items():
        if index.numel() == 0:
            raise DataError(f"folder {root}: only {len(full)} images, the 70/15/15 split leaves '{part}' empty; "
                            f"add images (a few per class at least)")
    return {part: pick(full, index) for part, index in parts.items()}, classes


def open_image(source: str | Path | IO[bytes], name: str | None = None, lazy: bool = False):  # noqa: ANN201
    """Open (and unless ``lazy``, fully decode) one image with Pillow; a failure is a one-line :class:`DataError`.

    Args:
        source: a path, or a binary file object (e.g. a member of a tar shard).
        name: what to call the image in messages (default: the path).
        lazy: read the header only (size, mode, format known; pixels not decoded); decode later with
            :func:`decode_image`, e.g. after asking the JPEG decoder for a reduced scale (``image.draft``).

    Returns:
        a ``PIL.Image.Image``.

    Raises:
        DataError: not an image Pillow can read, corrupt or truncated data, or a decompression bomb.
    """
    name = name if name is not None else str(source)
    try:
        image = Image.open(source)
    except UnidentifiedImageError as exc:
        raise DataError(f"{name}: not an image Pillow can read; remove it or replace it with a valid image") from exc
    except FileNotFoundError as exc:
        raise DataError(f"{name}: file not found; was it removed after the data set was listed?") from exc
    except Exception as exc:  # noqa: BLE001 (only Pillow's header parser runs here)
        raise DataError(f"{name}: corrupt or truncated image ({_first_line(exc)}); remove it or replace it") from exc
    return image if lazy else decode_image(image, name)


def decode_image(image, name: str):  # noqa: ANN001, ANN201 (PIL.Image.Image)
    """Decode the pixels of an opened image now, so that truncated or corrupt data fails here, named."""
    try:
        image.load()
    except Exception as exc:  # noqa: BLE001 (only Pillow's decoder runs here: whatever it raises, the data is bad)
        # truncated data (OSError), bad chunks (SyntaxError, struct.error, ...), absurd sizes (DecompressionBombError)
        image.close()
        raise DataError(f"{name}: corrupt or truncated image ({_first_line(exc)}); remove it or replace it") from exc
    return image


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def convert_image(image, channels: int):  # noqa: ANN001, ANN201 (PIL.Image.Image)
    """A Pillow image of any mode as mode ``L`` (``channels`` 1) or ``RGB`` (``channels`` 3).

    16-bit and 32-bit integer grayscale (``I;16``, ``I``) are scaled by 255/65535 and float grayscale
    (``F``, values in [0, 1]) by 255 before rounding (Pillow's own conversion would clip them at 255);
    palette images are expanded through their palette (``P`` -> ``RGBA``, so a transparent palette entry
    keeps its colour); alpha is dropped; ``CMYK`` and ``YCbCr`` use Pillow's conversion to RGB.
    """
    if channels not in (1, 3):
        raise DataError(f"images must have 1 or 3 channels, the model expects {channels}")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I") else 1.0
        image = Image.fromarray(np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "P":
        image = image.convert("RGBA")
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def _to_array(image, gray: bool) -> np.ndarray:  # noqa: ANN001
    """(H, W) uint8 when ``gray`` else (H, W, 3) uint8."""
    return np.asarray(convert_image(image, 1 if gray else 3), dtype=np.uint8)


def load_image_folder(root: str | Path, classes: Sequence[str] | None = None,
                      name: str | None = None) -> ImageDataset:
    """Read every image of ``root/<class>/`` into one dataset.

    Args:
        root: the folder whose sub-folders are the classes.
        classes: fix the class list (see :func:`find_images`).
        name: dataset name for messages (default: the folder's name).

    Returns:
        images (N, C, H, W) uint8 with C = 1 (all grayscale) or 3, labels (N,) int64, classes.

    Raises:
        DataError: see :func:`find_images`; an unreadable / truncated / non-image file (named); images of
            different sizes (two files named with their sizes).
    """
    samples, names = find_images(root, classes)
    return load_image_files(samples, names, name or Path(root).name, str(root))


def load_image_files(samples: Sequence[tuple[Path, int]], classes: Sequence[str], name: str,
                     source: str | None = None, channels: int | None = None) -> ImageDataset:
    """Read the listed ``(path, label)`` images (all of one size) into one in-memory dataset.

    Args:
        channels: convert every image to 1 (grayscale) or 3 (RGB) channels (:func:`convert_image`);
            None: 1 when every file is grayscale, else 3.

    Returns:
        images (N, C, H, W) uint8, labels (N,) int64, ``classes``.

    Raises:
        DataError: an unreadable / truncated / non-image file (named); images of different sizes.
    """
    first_path, first_size = None, None
    arrays: list[np.ndarray] = []  # (H, W) for grayscale files, (H, W, 3) for colour files
    for path, _ in samples:
        with open_image(path) as image:
            if first_size is None:
                first_path, first_size = path, image.size
            elif image.size != first_size:
                (w0, h0), (w1, h1) = first_size, image.size
                raise DataError(f"images differ in size: {first_path} is {w0}x{h0} but {path} is {w1}x{h1}; "
                                f"resize all images to one size first, or give the recipe an img_size to stream "
                                f"them through the resize pipeline")
            gray = image.mode in GRAY_MODES if channels is None else channels == 1
            arrays.append(_to_array(image, gray=gray))
    if not arrays:
        raise DataError(f"{name}: the dataset is empty; point it at a folder or file with samples")
    if all(a.ndim == 2 for a in arrays):
        tensor = torch.from_numpy(np.stack(arrays)).unsqueeze(1)  # (N, 1, H, W)
    else:  # some colour: grayscale files become RGB by repeating the channel (what Pillow's L -> RGB does)
        rgb = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
        tensor = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2)  # (N, 3, H, W)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    meta = {"source": source} if source is not None else {}
    return ImageDataset(tensor.contiguous(), labels, list(classes), name, meta)


def read_image(path: str | Path, channels: int) -> torch.Tensor:
    """One image file as a (C, H, W) uint8 tensor with ``channels`` 1 (grayscale) or 3 (RGB).

    Raises:
        DataError: the file is missing, not an image, corrupt or truncated, or ``channels`` is not 1 or 3.
    """
    path = Path(path)
    if channels not in (1, 3):
        raise DataError(f"images must have 1 or 3 channels, the model expects {channels}")
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    image = open_image(path)
    try:
        array = _to_array(image, gray=channels == 1)
    finally:
        image.close()
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()
