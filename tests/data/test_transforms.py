"""Tests for vitlab.data.transforms.

References: the crop against an explicit per-sample loop of F.pad + slicing (the window is found by
search over all (2p+1)² offsets, so the test does not reuse the function's own offsets); the flip
against Tensor.flip per sample; normalize against the formula; channel_stats against
torch.std_mean(unbiased=False) in float64 on the whole dataset at once.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlab.data.transforms import BatchTransform, channel_stats, normalize, random_crop, random_hflip
from vitlab.errors import ConfigError, DataError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _find_offset(padded: torch.Tensor, window: torch.Tensor, p: int) -> list[tuple[int, int]]:
    """All offsets (i, j) at which ``window`` equals padded[:, i:i+H, j:j+W] (reference loop)."""
    h, w = window.shape[-2:]
    return [(i, j) for i in range(2 * p + 1) for j in range(2 * p + 1)
            if torch.equal(padded[:, i : i + h, j : j + w], window)]


def test_random_crop_is_a_window_of_the_zero_padded_image_and_reaches_every_offset():
    p = 2
    images = torch.randint(1, 256, (300, 3, 6, 5), generator=_gen(1), dtype=torch.uint8)  # no zeros: unique match
    before = images.clone()
    out = random_crop(images, p, _gen(2))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(images, before)
    seen = set()
    for b in range(images.shape[0]):
        padded = F.pad(images[b], (p, p, p, p))
        matches = _find_offset(padded, out[b], p)
        assert len(matches) == 1, f"sample {b}: crop is not a unique window of the padded image"
        seen.add(matches[0])
    assert seen == {(i, j) for i in range(2 * p + 1) for j in range(2 * p + 1)}


def test_random_crop_offsets_are_uniform_over_the_2p_plus_1_squared_grid():
    p = 1
    n = 2700
    images = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3).expand(n, 1, 3, 3).contiguous()
    out = random_crop(images, p, _gen(3))
    padded = F.pad(images[0], (p, p, p, p))
    counts: dict[tuple[int, int], int] = {}
    for b in range(n):
        (offset,) = _find_offset(padded, out[b], p)
        counts[offset] = counts.get(offset, 0) + 1
    expected = n / 9
    # chi-square with 8 degrees of freedom; 26.1 is its 0.999 quantile
    chi2 = sum((counts.get((i, j), 0) - expected) ** 2 / expected for i in range(3) for j in range(3))
    assert chi2 < 26.1


def test_random_crop_padding_zero_returns_an_equal_copy():
    images = torch.rand(4, 3, 5, 5, generator=_gen())
    out = random_crop(images, 0, _gen())
    assert torch.equal(out, images) and out.data_ptr() != images.data_ptr()


def test_random_hflip_matches_per_sample_flip_and_frequency_is_p():
    n, p = 4000, 0.3
    images = torch.rand(n, 2, 3, 4, generator=_gen(4))
    before = images.clone()
    out = random_hflip(images, _gen(5), p=p)
    assert torch.equal(images, before)
    flipped = 0
    for b in range(n):
        if torch.equal(out[b], images[b].flip(-1)):
            flipped += 1
        else:
            assert torch.equal(out[b], images[b])
    # binomial: 4 standard deviations
    assert abs(flipped - n * p) < 4 * math.sqrt(n * p * (1 - p))


def test_random_hflip_p_zero_and_one():
    images = torch.rand(8, 1, 2, 3, generator=_gen())
    assert torch.equal(random_hflip(images, _gen(), p=0.0), images)
    assert torch.equal(random_hflip(images, _gen(), p=1.0), images.flip(-1))


def test_seeded_generator_reproduces_and_different_seeds_differ():
    images = torch.rand(64, 3, 8, 8, generator=_gen())
    t = BatchTransform(crop_padding=2, hflip=True)
    a = t(images, _gen(7), train=True)
    b = t(images, _gen(7), train=True)
    c = t(images, _gen(8), train=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_one_generator_across_two_epochs_augments_the_same_batch_differently():
    # The engine keeps ONE generator for the whole run and passes it to every batch (see tests/train/test_engine.py
    # for the run itself): the second pass over the same samples must draw new crops and flips. Reference: the
    # transform of the same batch with an equally seeded fresh generator (epoch 0 again) is identical.
    # Fails if BatchTransform draws from a copy of the caller's generator instead of advancing it.
    images = torch.rand(64, 3, 8, 8, generator=_gen())
    t = BatchTransform(crop_padding=2, hflip=True)
    generator = _gen(7)
    epoch0 = t(images, generator, train=True)
    epoch1 = t(images, generator, train=True)
    assert torch.equal(t(images, _gen(7), train=True), epoch0)
    changed = sum(not torch.equal(epoch0[i], epoch1[i]) for i in range(64))
    assert changed >= 56, changed  # a sample keeps offset and flip with probability 1/50: ~63 of 64 change


def test_normalize_matches_the_formula_and_accepts_uint8():
    images = torch.randint(0, 256, (5, 3, 4, 4), generator=_gen(), dtype=torch.uint8)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.25, 0.5]
    out = normalize(images, mean, std)
    x = images.double() / 255
    for c in range(3):
        assert torch.allclose(out[:, c].double(), (x[:, c] - mean[c]) / std[c], atol=1e-6)


def test_normalize_rejects_wrong_channel_count_and_nonpositive_std():
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(ConfigError, match="3 channels"):
        normalize(images, [0.5, 0.5], [1.0, 1.0])
    with pytest.raises(ConfigError, match="std must be > 0"):
        normalize(images, [0.5] * 3, [1.0, 0.0, 1.0])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 4), chunk=st.integers(1, 17), seed=st.integers(0, 1000))
def test_channel_stats_matches_std_mean_over_the_whole_dataset(n, c, chunk, seed):
    images = torch.randint(0, 256, (n, c, 3, 2), generator=_gen(seed), dtype=torch.uint8)
    mean, std = channel_stats(images, chunk_size=chunk)
    ref_std, ref_mean = torch.std_mean(images.double() / 255, dim=(0, 2, 3), unbiased=False)
    assert mean.shape == (c,) and std.shape == (c,)
    assert torch.allclose(mean.double(), ref_mean, atol=1e-6)
    assert torch.allclose(std.double(), ref_std, atol=1e-6)


def test_channel_stats_on_float_images():
    images = torch.rand(10, 3, 4, 4, generator=_gen())
    mean, std = channel_stats(images, chunk_size=3)
    ref_std, ref_mean = torch.std_mean(images.double(), dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean.double(), ref_mean, atol=1e-6) and torch.allclose(std.double(), ref_std, atol=1e-6)


def test_batch_transform_eval_is_deterministic_float_and_leaves_input_untouched():
    images = torch.randint(0, 256, (6, 3, 8, 8), generator=_gen(), dtype=torch.uint8)
    before = images.clone()
    t = BatchTransform(crop_padding=4, hflip=True, mean=[0.5] * 3, std=[0.25] * 3)
    out = t(images, None, train=False)  # no randomness at eval: no generator needed
    assert out.dtype == torch.float32
    assert torch.allclose(out, (images.float() / 255 - 0.5) / 0.25)
    train_out = t(images, _gen(), train=True)
    assert train_out.dtype == torch.float32 and train_out.shape == images.shape
    assert torch.equal(images, before)


def test_batch_transform_never_returns_the_callers_tensor():
    images = torch.rand(2, 1, 4, 4)
    out = BatchTransform()(images, None, train=True)
    assert torch.equal(out, images)
    out.add_(1.0)
    assert float(images.max()) <= 1.0


def test_batch_transform_train_crop_only_is_a_window_of_the_scaled_padded_image():
    images = torch.randint(1, 256, (20, 1, 5, 5), generator=_gen(9), dtype=torch.uint8)
    out = BatchTransform(crop_padding=1)(images, _gen(10), train=True)
    x = images.float() / 255
    for b in range(images.shape[0]):
        assert len(_find_offset(F.pad(x[b], (1, 1, 1, 1)), out[b], 1)) == 1


def test_generator_required_and_on_the_images_device():
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(ConfigError, match="Generator is required"):
        BatchTransform(hflip=True)(images, None, train=True)
    if torch.cuda.is_available():
        with pytest.raises(ConfigError, match="generator is on"):
            random_crop(images.cuda(), 1, _gen())


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ConfigError, match="crop_padding"):
        BatchTransform(crop_padding=-1)
    with pytest.raises(ConfigError, match="both mean and std"):
        BatchTransform(mean=[0.5])
    with pytest.raises(ConfigError, match="padding"):
        random_crop(torch.rand(1, 1, 2, 2), -2, _gen())
    with pytest.raises(DataError, match=r"\(B, C, H, W\)"):
        random_hflip(torch.rand(3, 4, 4), _gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_cuda_output_stays_on_the_device_and_matches_window_property():
    images = torch.randint(1, 256, (16, 3, 6, 6), dtype=torch.uint8, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    out = BatchTransform(crop_padding=2, hflip=True)(images, g, train=True)
    assert out.device == images.device
    x = images.float().cpu() / 255
    for b in range(images.shape[0]):
        padded = F.pad(x[b], (2, 2, 2, 2))
        ok = _find_offset(padded, out[b].cpu(), 2) or _find_offset(padded, out[b].cpu().flip(-1), 2)
        assert ok


def test_rotate_scale_by_zero_is_the_identity_and_a_quarter_turn_is_rot90() -> None:
    # References: the identity, and torch.rot90 (a 90° turn maps pixel centres onto pixel centres exactly).
    from vitlab.data.transforms import random_rotate_scale

    x = torch.rand(3, 2, 12, 12, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(random_rotate_scale(x, 0.0, 0.0, g), x, rtol=0, atol=1e-12)

    # θ = +90° for every image: draws of 1.0 map to +degrees, a scale draw of 0.5 to s = 1.
    import unittest.mock

    with unittest.mock.patch("torch.rand", return_value=torch.tensor([[1.0, 0.5]] * 3)):
        turned = random_rotate_scale(x, 90.0, 0.1, g)
    candidates = [torch.rot90(x, k, dims=(2, 3)) for k in (1, -1)]
    assert min(float((turned - c).abs().max()) for c in candidates) < 1e-6  # θ is drawn in float32


def test_rotate_scale_inside_bf16_autocast_equals_float32() -> None:
    # Reference: the same call outside autocast. The engine runs the batch transform inside the forward's
    # autocast; affine_grid's matrix product there would round the sampling grid to bf16 (~0.05 px on 28x28).
    from vitlab.data.transforms import random_rotate_scale

    x = torch.rand(4, 1, 28, 28)
    plain = random_rotate_scale(x, 15.0, 0.2, torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = random_rotate_scale(x, 15.0, 0.2, torch.Generator().manual_seed(1))
    assert mixed.dtype == torch.float32 and torch.equal(mixed, plain)


def test_rotate_scale_is_seeded_per_image_and_keeps_the_range() -> None:
    from vitlab.data.transforms import random_rotate_scale

    x = torch.rand(8, 1, 28, 28)
    a = random_rotate_scale(x, 15.0, 0.2, torch.Generator().manual_seed(3))
    b = random_rotate_scale(x, 15.0, 0.2, torch.Generator().manual_seed(3))
    c = random_rotate_scale(x, 15.0, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 + 1e-6  # bilinear mixing of [0, 1] values and zeros
    same = random_rotate_scale(x[:1].expand(2, -1, -1, -1), 15.0, 0.2, torch.Generator().manual_seed(3))
    assert not torch.allclose(same[0], same[1])  # two copies of one image get their own draws


def test_batch_transform_rejects_bad_rotate_and_scale() -> None:
    from vitlab.data.transforms import BatchTransform

    for kwargs in ({"rotate": -1.0}, {"scale": 1.0}, {"scale": -0.1}):
        with pytest.raises(ConfigError, match="rotate must be"):
            BatchTransform(**kwargs)
