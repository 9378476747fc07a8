"""Tests for vitlab.data.pipeline. References: torchvision's RandomResizedCrop / RandomHorizontalFlip / Resize /
CenterCrop on PIL images (test-only; same random-number order, so a generator seeded like the global RNG must
give identical pixels), Pillow's own mode conversions, and the 16-bit scaling formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.data.pipeline import (
    AugmentConfig,
    EvalPipeline,
    TrainPipeline,
    build_pipeline,
    center_crop_box,
    random_resized_crop_box,
    sample_generator,
)
from vitlab.errors import ConfigError

tv = pytest.importorskip("torchvision.transforms")
InterpolationMode = pytest.importorskip("torchvision.transforms.functional").InterpolationMode


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth structure plus noise, so that resampling errors would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), (x + y) % 256], axis=2)
    noise = rng.integers(-20, 21, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


@pytest.mark.parametrize("size", [(64, 48), (300, 20), (20, 300), (7, 7)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_resized_crop_box_matches_torchvision_get_params(size, seed):
    width, height = size
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    torch.manual_seed(seed)  # torchvision draws from the global RNG (test only)
    expected = tv.RandomResizedCrop.get_params(Image.new("RGB", size), scale, ratio)
    got = random_resized_crop_box(width, height, scale, ratio, torch.Generator().manual_seed(seed))
    assert got == tuple(expected)


def test_random_resized_crop_falls_back_to_the_clamped_centre_crop():
    # scale (1, 1) with ratio (1, 1) can never fit a 300x20 image: torchvision's fallback is the reference
    torch.manual_seed(0)
    expected = tv.RandomResizedCrop.get_params(Image.new("RGB", (300, 20)), (1.0, 1.0), (1.0, 1.0))
    got = random_resized_crop_box(300, 20, (1.0, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    assert got == tuple(expected) == (0, 140, 20, 20)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_train_crop_and_flip_equal_torchvision_pixels(interpolation):
    image = _photo(97, 61)
    mode = InterpolationMode.BILINEAR if interpolation == "bilinear" else InterpolationMode.BICUBIC
    reference = tv.Compose([tv.RandomResizedCrop(32, interpolation=mode), tv.RandomHorizontalFlip(),
                            tv.PILToTensor()])
    pipeline = TrainPipeline(32, 3, AugmentConfig.minimal(interpolation=interpolation))
    for seed in range(6):
        torch.manual_seed(seed)
        expected = reference(image)
        got = pipeline(image, torch.Generator().manual_seed(seed))
        assert got.dtype == torch.uint8 and got.shape == (3, 32, 32)
        assert torch.equal(got, expected)


@pytest.mark.parametrize("size", [(97, 61), (40, 120), (224, 224)])
def test_eval_resize_and_centre_crop_equal_torchvision(size):
    image = _photo(*size)
    reference = tv.Compose([tv.Resize(math.floor(32 / 0.875), interpolation=InterpolationMode.BICUBIC),
                            tv.CenterCrop(32), tv.PILToTensor()])
    got = EvalPipeline(32, 3, 0.875, "bicubic")(image)
    assert torch.equal(got, reference(image))


@pytest.mark.parametrize("size", [(64, 64), (100, 80)])
def test_default_evaluation_crop_is_seven_eighths_of_the_resized_shorter_side(size):
    # Reference: Pillow by hand, with the classic 224/256 = 0.875 protocol written out (not read from vitlab):
    # shorter side resized to floor(56 / 0.875) = 64, then the centred 56 x 56 crop, (64 - 56) / 2 = 4 in.
    # Fails if AugmentConfig's or EvalPipeline's default crop_fraction changes (e.g. 0.9 resizes to 62, 1.0
    # to 56), or if build_pipeline stops passing the config's fraction on.
    width, height = size
    image = _photo(width, height, seed=4)
    new_w, new_h = 64 * width // height, 64  # the shorter side (the height here) becomes 64
    left, top = (new_w - 56) // 2, (new_h - 56) // 2
    expected = image.resize((new_w, new_h), Image.Resampling.BICUBIC).crop((left, top, left + 56, top + 56))
    expected = torch.from_numpy(np.asarray(expected).copy()).permute(2, 0, 1)
    assert AugmentConfig().crop_fraction == 0.875
    for pipeline in (build_pipeline(False, 56, 3), build_pipeline(False, 56, 3, AugmentConfig()), EvalPipeline(56)):
        assert torch.equal(pipeline(image.copy()), expected), pipeline


def test_centre_crop_box_is_centred_and_square():
    (w, h), box = center_crop_box(200, 100, 224, 0.875)
    assert (w, h) == (512, 256)
    assert box == (144, 16, 368, 240)


MODES = {
    "1": lambda: Image.new("1", (13, 9), 1),
    "L": lambda: Image.new("L", (13, 9), 77),
    "LA": lambda: Image.new("LA", (13, 9), (77, 10)),
    "P": lambda: Image.new("RGB", (13, 9), (200, 30, 90)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8),
    "RGB": lambda: Image.new("RGB", (13, 9), (200, 30, 90)),
    "RGBA": lambda: Image.new("RGBA", (13, 9), (200, 30, 90, 5)),
    "CMYK": lambda: Image.new("CMYK", (13, 9), (10, 200, 40, 30)),
    "YCbCr": lambda: Image.new("RGB", (13, 9), (200, 30, 90)).convert("YCbCr"),
    "I;16": lambda: Image.new("I;16", (13, 9), 40000),
    "I": lambda: Image.new("I", (13, 9), 65535),
    "F": lambda: Image.new("F", (13, 9), 0.5),
}


def _expected_colour(mode: str, image: Image.Image, channels: int) -> list[int]:
    if mode in ("I;16", "I", "F"):  # the scaling formula: round(v / top * 255), top 65535 (integer) or 1 (float)
        value = float(np.asarray(image).flat[0])
        level = round(value / (1.0 if mode == "F" else 65535.0) * 255.0)
        return [level] * channels
    if mode == "P":
        image = image.convert("RGBA")
    pixel = image.convert("L" if channels == 1 else "RGB").getpixel((0, 0))  # Pillow's conversion
    return [pixel] if channels == 1 else list(pixel)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("train", [True, False])
def test_every_image_mode_becomes_the_recipe_channels(mode, channels, train):
    image = MODES[mode]()
    assert image.mode == mode
    pipeline = build_pipeline(train, 16, channels, AugmentConfig.minimal())
    out = pipeline(image, torch.Generator().manual_seed(0))
    assert out.shape == (channels, 16, 16) and out.dtype == torch.uint8
    # a constant image stays that constant colour through crop, resize and flip
    expected = torch.tensor(_expected_colour(mode, image, channels), dtype=torch.uint8).view(channels, 1, 1)
    assert torch.equal(out, expected.expand(channels, 16, 16))


def test_sample_generators_are_reproducible_and_distinct():
    draw = lambda *key: torch.rand(4, generator=sample_generator(*key))  # noqa: E731
    assert torch.equal(draw(0, 1, 2), draw(0, 1, 2))
    keys = [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 1, 1)]
    values = [draw(*k) for k in keys]
    assert len({tuple(v.tolist()) for v in values}) == len(keys)


def test_a_samples_augmentation_changes_between_epochs_and_repeats_within_one():
    # The streaming path augments sample i of epoch e from sample_generator(seed, e, i) (module docstring):
    # identical crops / flips / policy ops / erasing in every epoch would silently shrink the augmentation to
    # one fixed view per sample. Reference: the pipeline's output for the same (seed, epoch, index) computed
    # twice. Fails if sample_generator ignores ``epoch`` (e.g. drops its mixing step).
    pipeline = TrainPipeline(24, 3, AugmentConfig())  # the DeiT defaults: crop, flip, RandAugment, erasing
    image = _photo(80, 50)
    changed = 0
    for index in range(20):
        epoch0 = pipeline(image.copy(), sample_generator(7, 0, index))
        assert torch.equal(pipeline(image.copy(), sample_generator(7, 0, index)), epoch0)  # same epoch: same view
        changed += not torch.equal(pipeline(image.copy(), sample_generator(7, 1, index)), epoch0)
    assert changed == 20  # a random-resized crop of area U[0.08, 1] practically never repeats


def test_full_deit_pipeline_is_deterministic_per_generator():
    image = _photo(80, 50)
    pipeline = TrainPipeline(24, 3, AugmentConfig(policy="randaugment", color_jitter=0.3, erase_prob=1.0))
    a = pipeline(image, torch.Generator().manual_seed(5))
    b = pipeline(image, torch.Generator().manual_seed(5))
    c = pipeline(image, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("bad", [{"policy": "autoaugment"}, {"scale": (0.5, 0.1)}, {"ratio": (0, 1)},
                                 {"hflip": 2.0}, {"crop_fraction": 0.0}, {"interpolation": "cubic"},
                                 {"erase_prob": 1.5}, {"rand_magnitude": 31}])
def test_bad_augment_settings_raise_config_error(bad):
    with pytest.raises(ConfigError):
        AugmentConfig(**bad)


def test_unknown_augment_key_names_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'erase_prob'"):
        AugmentConfig.from_dict({"erase_prb": 0.1})
    assert AugmentConfig.from_dict(AugmentConfig().to_dict()) == AugmentConfig()


def test_build_pipeline_rejects_bad_sizes_and_channels():
    with pytest.raises(ConfigError, match="img_size"):
        build_pipeline(True, 0, 3)
    with pytest.raises(ConfigError, match="in_chans"):
        build_pipeline(False, 32, 4)


def _jpeg(tmp_path, width: int = 800, height: int = 600):
    path = tmp_path / "photo.jpg"
    _photo(width, height, seed=4).save(path, quality=92)
    return path


@pytest.mark.parametrize("train", [True, False])
def test_jpeg_draft_decodes_less_and_stays_close_to_the_full_decode(tmp_path, train, monkeypatch):
    from PIL import JpegImagePlugin

    from vitlab.data.folder import open_image

    path = _jpeg(tmp_path)
    scales = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real(self, mode, size)
        scales.append(800 / self.size[0])
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    fast = build_pipeline(train, 64, 3, AugmentConfig.minimal(scale=(0.5, 1.0)))
    exact = build_pipeline(train, 64, 3, AugmentConfig.minimal(scale=(0.5, 1.0), jpeg_draft=False))
    for seed in range(4):
        a = fast(open_image(path, lazy=True), torch.Generator().manual_seed(seed))
        b = exact(open_image(path, lazy=True), torch.Generator().manual_seed(seed))
        # reference: the full-resolution decode with the same crop; DCT-domain downscaling differs a little
        assert a.shape == b.shape == (3, 64, 64)
        assert (a.float() - b.float()).abs().mean() < 4.0
    assert scales and min(scales) >= 2  # the decoder really ran at 1/2 or less


def test_without_draft_a_jpeg_matches_torchvision_exactly(tmp_path):
    from vitlab.data.folder import open_image

    path = _jpeg(tmp_path, 300, 200)
    reference = tv.Compose([tv.RandomResizedCrop(32, interpolation=InterpolationMode.BICUBIC),
                            tv.RandomHorizontalFlip(), tv.PILToTensor()])
    pipeline = TrainPipeline(32, 3, AugmentConfig.minimal(jpeg_draft=False))
    for seed in range(3):
        torch.manual_seed(seed)
        expected = reference(Image.open(path).convert("RGB"))
        assert torch.equal(pipeline(open_image(path, lazy=True), torch.Generator().manual_seed(seed)), expected)
