"""Tests for vitlab.data.augment. References: torchvision.transforms.functional on PIL images (test-only) for
the photometric operations and rotation, numpy shifts for translation, the papers' definitions (uniform op
choice, erased-area and aspect ranges, colour-jitter factor ranges) checked on the drawn values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.data import augment
from vitlab.data.augment import OPS, ColorJitter, RandAugment, RandomErasing, TrivialAugment, adjust_hue, apply_op
from vitlab.errors import ConfigError

F = pytest.importorskip("torchvision.transforms.functional")


def _photo(seed: int = 0, size: tuple[int, int] = (23, 17)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


@pytest.mark.parametrize("op,factor,reference", [
    ("Brightness", 0.4, lambda im: F.adjust_brightness(im, 1.4)),
    ("Contrast", -0.5, lambda im: F.adjust_contrast(im, 0.5)),
    ("Color", 0.7, lambda im: F.adjust_saturation(im, 1.7)),
    ("Sharpness", 0.9, lambda im: F.adjust_sharpness(im, 1.9)),
    ("Posterize", 3, lambda im: F.posterize(im, 3)),
    ("Solarize", 100, lambda im: F.solarize(im, 100)),
    ("AutoContrast", 0, F.autocontrast),
    ("Equalize", 0, F.equalize),
    ("Rotate", 25.0, lambda im: F.rotate(im, 25.0, fill=[128, 128, 128])),
])
def test_ops_equal_torchvision_functional(op, factor, reference):
    image = _photo()
    assert np.array_equal(_arr(apply_op(image, op, factor)), _arr(reference(image)))


def test_hue_shift_equals_torchvision_adjust_hue():
    image = _photo(3)
    assert np.array_equal(_arr(adjust_hue(image, 0.2)), _arr(F.adjust_hue(image, 0.2)))
    assert np.array_equal(_arr(adjust_hue(image, -0.3)), _arr(F.adjust_hue(image, -0.3)))


@pytest.mark.parametrize("op,axis", [("TranslateX", 1), ("TranslateY", 0)])
def test_translation_shifts_pixels_and_fills_grey(op, axis):
    image = _photo(1)
    out = _arr(apply_op(image, op, 5))
    expected = np.full_like(_arr(image), 128)
    if axis == 1:
        expected[:, 5:] = _arr(image)[:, :-5]
    else:
        expected[5:] = _arr(image)[:-5]
    assert np.array_equal(out, expected)


def test_shear_and_identity_at_zero_magnitude_leave_the_image_unchanged():
    image = _photo(2)
    for op in ("Identity", "ShearX", "ShearY", "TranslateX", "Rotate", "Brightness", "Contrast"):
        assert np.array_equal(_arr(apply_op(image, op, 0)), _arr(image)), op


def test_unknown_op_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown augmentation op"):
        apply_op(_photo(), "Invert2", 1)


def _record_ops(monkeypatch) -> list[tuple[str, float]]:
    calls: list[tuple[str, float]] = []
    real = augment.apply_op

    def spy(image, name, magnitude):
        calls.append((name, magnitude))
        return real(image, name, magnitude)

    monkeypatch.setattr(augment, "apply_op", spy)
    return calls


def test_randaugment_applies_n_uniform_ops_at_the_fixed_magnitude(monkeypatch):
    calls = _record_ops(monkeypatch)
    policy = RandAugment(num_ops=2, magnitude=9, num_bins=31)
    generator = torch.Generator().manual_seed(0)
    image = _photo(size=(331, 331))
    for _ in range(700):
        policy(image.resize((8, 8)), generator)
    assert len(calls) == 1400
    counts = np.array([sum(1 for name, _ in calls if name == op) for op in OPS])
    # uniform choice among the 14 ops (Cubuk et al. 2020): chi-square with 13 d.o.f., p = 0.001 bound 34.5
    chi2 = ((counts - 100) ** 2 / 100).sum()
    assert chi2 < 34.5, counts
    t = 9 / 30
    for name, value in calls:
        if name == "Rotate":
            assert math.isclose(abs(value), 30 * t)
        if name == "ShearX":
            assert math.isclose(abs(value), 0.3 * t)
        if name == "Posterize":
            assert value == 8 - round(4 * t)
    signs = [value > 0 for name, value in calls if name == "Rotate"]
    assert 0 < sum(signs) < len(signs)  # both signs occur


@pytest.mark.parametrize("magnitude", [9, 27])
def test_randaugment_solarize_threshold_and_enhance_factors_equal_pil_at_the_magnitude(monkeypatch, magnitude):
    # Reference: Pillow's ImageOps.solarize / ImageEnhance called by hand with the paper's magnitudes
    # (Cubuk et al. 2020; torchvision's 31-bin table): at bin M of 31, t = M / 30, Solarize inverts the pixels
    # >= 255·(1 − t) and Brightness / Color / Contrast / Sharpness use the factor 1 ± 0.9·t. Only the op's name
    # and sign are read from the spy; the pixels come from the real policy with num_ops=1.
    # Fails if Solarize's threshold is 255·t (inverted scale) or 128 − ..., or if the enhance ops use another
    # range (e.g. the wide 0.99·t of TrivialAugment, or 1 − 0.9·t for both signs).
    from PIL import ImageEnhance, ImageOps

    calls = _record_ops(monkeypatch)
    policy = RandAugment(num_ops=1, magnitude=magnitude, num_bins=31)
    generator = torch.Generator().manual_seed(magnitude)
    image = _photo(4)
    t = magnitude / 30
    enhancers = {"Brightness": ImageEnhance.Brightness, "Color": ImageEnhance.Color,
                 "Contrast": ImageEnhance.Contrast, "Sharpness": ImageEnhance.Sharpness}
    seen: set[tuple[str, bool]] = set()
    for _ in range(500):
        out = policy(image, generator)
        name, value = calls[-1]
        if name == "Solarize":
            expected = ImageOps.solarize(image, 255 * (1 - t))
            by_hand = np.where(_arr(image) >= 255 * (1 - t), 255 - _arr(image), _arr(image))
            assert np.array_equal(_arr(expected), by_hand)
        elif name in enhancers:
            expected = enhancers[name](image).enhance(1 + 0.9 * t if value > 0 else 1 - 0.9 * t)
        else:
            continue
        assert np.array_equal(_arr(out), _arr(expected)), (name, value)
        seen.add((name, name == "Solarize" or value > 0))
    # every one of these ops, and both signs of the enhancements, was drawn and checked
    assert seen == {("Solarize", True)} | {(n, s) for n in enhancers for s in (True, False)}


def test_trivialaugment_applies_one_op_with_uniform_magnitude_bins(monkeypatch):
    calls = _record_ops(monkeypatch)
    policy = TrivialAugment(num_bins=31)
    generator = torch.Generator().manual_seed(1)
    image = _photo(size=(8, 8))
    for _ in range(600):
        policy(image, generator)
    assert len(calls) == 600
    rotations = [abs(v) for name, v in calls if name == "Rotate"]
    assert rotations and max(rotations) <= 135.0
    bins = {round(abs(v) / 135.0 * 30) for v in rotations}
    assert len(bins) > 10  # many magnitude bins are drawn, not one


def test_random_erasing_erases_one_rectangle_in_the_paper_ranges():
    erase = RandomErasing(p=1.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        image = torch.zeros(3, 40, 60, dtype=torch.uint8)
        out = erase(image, generator)
        changed = (out != 0).any(0)
        rows, cols = torch.nonzero(changed, as_tuple=True)
        h = int(rows.max() - rows.min() + 1)
        w = int(cols.max() - cols.min() + 1)
        # random fill values are 0 with probability 1/256 per channel: the box's bounding rectangle is the box
        assert 0.02 * 2400 * 0.8 <= h * w <= 2400 / 3 * 1.2
        assert 0.3 * 0.7 <= h / w <= 1 / 0.3 * 1.3


def test_random_erasing_probability_and_off_switch():
    generator = torch.Generator().manual_seed(0)
    erase = RandomErasing(p=0.25)
    hits = sum(bool(erase(torch.zeros(1, 20, 20, dtype=torch.uint8), generator).any()) for _ in range(800))
    assert 150 <= hits <= 250  # binomial(800, 0.25): mean 200, sd 12.2
    untouched = torch.arange(400, dtype=torch.uint8).view(1, 20, 20) % 251
    assert torch.equal(RandomErasing(p=0.0)(untouched.clone(), generator), untouched)


def test_colour_jitter_factors_stay_in_their_ranges():
    jitter = ColorJitter(brightness=0.4)
    generator = torch.Generator().manual_seed(0)
    grey = Image.new("RGB", (4, 4), (100, 100, 100))
    levels = {jitter(grey, generator).getpixel((0, 0))[0] for _ in range(200)}
    assert min(levels) >= 60 - 1 and max(levels) <= 140 + 1  # 100 · U[0.6, 1.4]
    assert len(levels) > 20


@pytest.mark.parametrize("bad", [lambda: RandAugment(num_ops=-1), lambda: RandAugment(magnitude=31),
                                 lambda: TrivialAugment(num_bins=1), lambda: ColorJitter(hue=0.7),
                                 lambda: RandomErasing(p=2.0)])
def test_bad_policy_settings_raise_config_error(bad):
    with pytest.raises(ConfigError):
        bad()
