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

import numpy as np
import torch

from vitlab.data.base import ImageDataset
from vitlab.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "find_images", "load_image_folder"]

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


def _open(path: Path):  # noqa: ANN202 (PIL.Image.Image)
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()  # decode now: a truncated or corrupt file fails here, not later
    except UnidentifiedImageError as exc:
        raise DataError(f"{path}: not an image Pillow can read; remove it or replace it with a valid image") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated data, bad chunks (Pillow raises SyntaxError too)
        raise DataError(f"{path}: corrupt or truncated image ({exc}); remove it or replace it") from exc
    return image


def _to_array(image, gray: bool) -> np.ndarray:  # noqa: ANN001
    """(H, W) uint8 when ``gray`` else (H, W, 3) uint8."""
    if not gray:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I") else 1.0
        return np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)


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
    first_path, first_size = None, None
    arrays: list[np.ndarray] = []  # (H, W) for grayscale files, (H, W, 3) for colour files
    for path, _ in samples:
        with _open(path) as image:
            if first_size is None:
                first_path, first_size = path, image.size
            elif image.size != first_size:
                (w0, h0), (w1, h1) = first_size, image.size
                raise DataError(f"images differ in size: {first_path} is {w0}x{h0} but {path} is {w1}x{h1}; "
                                f"resize all images to one size first")
            arrays.append(_to_array(image, gray=image.mode in GRAY_MODES))
    if all(a.ndim == 2 for a in arrays):
        tensor = torch.from_numpy(np.stack(arrays)).unsqueeze(1)  # (N, 1, H, W)
    else:  # some colour: grayscale files become RGB by repeating the channel (what Pillow's L -> RGB does)
        rgb = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
        tensor = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2)  # (N, 3, H, W)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ImageDataset(tensor.contiguous(), labels, names, name or Path(root).name, {"source": str(root)})


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
    image = _open(path)
    try:
        array = _to_array(image, gray=channels == 1)
    finally:
        image.close()
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()
