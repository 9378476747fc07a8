"""Tests for vitlab.data.folder on PNG/JPEG files written by Pillow. Reference: the numpy arrays the test
wrote (PNG is lossless; JPEG is compared within a tolerance) and Pillow's own L -> RGB conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.data.folder import load_image_folder
from vitlab.errors import DataError


def _save(path: Path, array: np.ndarray, mode: str | None = None, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, format=fmt)
    return path


def _rgb(seed: int, h: int = 5, w: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_png_folder_loads_exactly_with_sorted_classes(tmp_path):
    written = {}
    for c, cls in enumerate(["zebra", "ant", "mole"]):
        for i in range(3):
            written[(cls, i)] = _rgb(10 * c + i)
            _save(tmp_path / cls / f"{i}.png", written[(cls, i)])
    ds = load_image_folder(tmp_path)
    assert ds.classes == ["ant", "mole", "zebra"]
    assert ds.images.shape == (9, 3, 5, 7) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # files are read in sorted order inside each class: sample 3 is mole/0.png
    np.testing.assert_array_equal(ds.images[3].permute(1, 2, 0).numpy(), written[("mole", 0)])


def test_grayscale_folder_has_one_channel(tmp_path):
    arrays = [np.random.default_rng(i).integers(0, 256, (4, 4), dtype=np.uint8) for i in range(4)]
    for i, a in enumerate(arrays):
        _save(tmp_path / ("a" if i < 2 else "b") / f"{i}.png", a, mode="L")
    ds = load_image_folder(tmp_path)
    assert ds.images.shape == (4, 1, 4, 4)
    np.testing.assert_array_equal(ds.images[2, 0].numpy(), arrays[2])


def test_mixed_gray_and_colour_become_rgb_like_pillow_converts(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (4, 4), dtype=np.uint8)
    _save(tmp_path / "a" / "g.png", gray, mode="L")
    _save(tmp_path / "b" / "c.png", _rgb(1, 4, 4))
    rgba = np.concatenate([_rgb(2, 4, 4), np.full((4, 4, 1), 128, np.uint8)], axis=2)
    _save(tmp_path / "b" / "d.png", rgba, mode="RGBA")
    ds = load_image_folder(tmp_path)
    assert ds.images.shape == (3, 3, 4, 4)
    expected = np.asarray(Image.fromarray(gray, mode="L").convert("RGB"))
    np.testing.assert_array_equal(ds.images[0].permute(1, 2, 0).numpy(), expected)
    np.testing.assert_array_equal(ds.images[2].permute(1, 2, 0).numpy(), rgba[:, :, :3])  # alpha dropped


def test_jpeg_and_uppercase_extensions_are_read_and_other_files_ignored(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    image = np.stack([smooth, smooth.T, np.full_like(smooth, 90)], axis=2)
    _save(tmp_path / "x" / "a.JPG", image, fmt="JPEG")
    _save(tmp_path / "x" / "b.jpeg", image, fmt="JPEG")
    (tmp_path / "x" / "notes.txt").write_text("ignored")
    (tmp_path / "x" / ".hidden.png").write_bytes(b"ignored")
    ds = load_image_folder(tmp_path)
    assert len(ds) == 2
    assert np.abs(ds.images[0].permute(1, 2, 0).numpy().astype(int) - image.astype(int)).mean() < 4  # lossy


def test_mixed_sizes_name_both_files_and_sizes(tmp_path):
    _save(tmp_path / "a" / "0.png", _rgb(0, 5, 7))
    _save(tmp_path / "b" / "1.png", _rgb(1, 6, 7))
    with pytest.raises(DataError, match=r"a/0.png is 7x5 but .*b/1.png is 7x6; resize all images to one size first"):
        load_image_folder(tmp_path)


def test_corrupt_truncated_and_non_image_files_are_named(tmp_path):
    good = _save(tmp_path / "a" / "0.png", _rgb(0, 32, 32))
    _save(tmp_path / "a" / "1.png", _rgb(1, 32, 32))
    bad = tmp_path / "a" / "1.png"
    bad.write_bytes(good.read_bytes()[:200])  # truncated PNG
    with pytest.raises(DataError, match=r"1.png: corrupt or truncated image"):
        load_image_folder(tmp_path)
    bad.write_text("I am text, not a PNG")
    with pytest.raises(DataError, match=r"1.png: not an image Pillow can read"):
        load_image_folder(tmp_path)
    jpeg = _save(tmp_path / "a" / "1.jpg", _rgb(1, 32, 32), fmt="JPEG")
    bad.unlink()
    jpeg.write_bytes(jpeg.read_bytes()[:300])  # truncated JPEG
    with pytest.raises(DataError, match=r"1.jpg: corrupt or truncated image"):
        load_image_folder(tmp_path)


def test_empty_folder_missing_folder_and_empty_class(tmp_path):
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_image_folder(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    _save(tmp_path / "a" / "0.png", _rgb(0))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*b has no images"):
        load_image_folder(tmp_path)


def test_fixed_class_list_maps_labels_and_rejects_unknown_folders(tmp_path):
    _save(tmp_path / "dog" / "0.png", _rgb(0))
    ds = load_image_folder(tmp_path, classes=["cat", "dog"])
    assert ds.labels.tolist() == [1] and ds.classes == ["cat", "dog"]
    _save(tmp_path / "bird" / "0.png", _rgb(1))
    with pytest.raises(DataError, match="class 'bird' is not one of the training classes"):
        load_image_folder(tmp_path, classes=["cat", "dog"])
