"""Image pipelines: any image file -> a (C, S, S) uint8 tensor at the model's input size S.

**Training** (Szegedy et al. 2015, "Going deeper with convolutions", §6, as used by ViT and DeiT): a random
crop covering a fraction ``a ~ U[scale]`` of the image area with aspect ratio ``r``, ``log r ~ U[log ratio]``,
resized to S × S (up to 10 tries for a crop that fits; otherwise the largest centred crop with the ratio
clamped to ``ratio``), then a horizontal flip with probability ``hflip``; then optionally colour jitter or
a RandAugment / TrivialAugment policy, and random erasing (:mod:`vitlab.data.augment`).

**Evaluation** (the "crop_pct" protocol of ResNet/ViT/DeiT evaluation): resize the shorter side to
``floor(S / crop_fraction)`` (the longer side in proportion), then take the centred S × S crop;
``crop_fraction`` 0.875 is the classic 224/256.

Every image mode (``1``, ``L``, ``LA``, ``P``, ``RGB``, ``RGBA``, ``CMYK``, ``I;16``, ``I``, ``F`` ...) is first
converted to the recipe's channels (:func:`vitlab.data.folder.convert_image`). The random numbers of one
sample come from its own ``torch.Generator`` seeded by ``(seed, epoch, index)``
(:func:`sample_generator`), so a sample's augmentation does not depend on which worker decodes it, on the
number of workers, or on where an interrupted epoch was resumed.

Decoding and resizing use Pillow (the same library torchvision's and timm's PIL pipelines call); the crop
parameters draw their random numbers in the order torchvision's ``RandomResizedCrop.get_params`` does,
which the tests use as the reference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from vitlab.data.augment import ColorJitter, RandAugment, RandomErasing, TrivialAugment
from vitlab.data.folder import convert_image, decode_image
from vitlab.errors import ConfigError, unknown_name_message

__all__ = [
    "AugmentConfig",
    "EvalPipeline",
    "TrainPipeline",
    "build_pipeline",
    "center_crop_box",
    "random_resized_crop_box",
    "reduce_jpeg",
    "sample_generator",
    "to_tensor",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


@dataclass
class AugmentConfig:
    """Settings of the training and evaluation pipelines (defaults: the DeiT-B recipe's, Touvron et al. 2021).

    Attributes:
        scale: RandomResizedCrop area fraction range.
        ratio: RandomResizedCrop aspect-ratio range (w/h).
        hflip: horizontal flip probability.
        policy: ``"none"``, ``"randaugment"`` or ``"trivialaugment"``.
        rand_ops: RandAugment N.
        rand_magnitude: RandAugment M (bin of ``rand_bins``).
        rand_bins: magnitude bins (31 as in torchvision).
        color_jitter: brightness = contrast = saturation strength (0: off); used only with policy ``"none"``
            (as in timm/DeiT, where a policy replaces colour jitter).
        hue: colour-jitter hue strength in turns (0: off).
        erase_prob: random-erasing probability (0: off).
        crop_fraction: evaluation centre-crop fraction.
        interpolation: resampling filter for every resize.
        jpeg_draft: let the JPEG decoder decode at 1/2, 1/4 or 1/8 scale (DCT scaling, ``Image.draft``) when
            the region the pipeline keeps would still have at least the output's size; much less decoding
            for photos larger than the model's input, a slightly different (DCT-domain) downscale.
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    policy: str = "randaugment"
    rand_ops: int = 2
    rand_magnitude: int = 9
    rand_bins: int = 31
    color_jitter: float = 0.0
    hue: float = 0.0
    erase_prob: float = 0.25
    crop_fraction: float = 0.875
    interpolation: str = "bicubic"
    jpeg_draft: bool = True

    def __post_init__(self) -> None:
        self.scale = tuple(float(v) for v in self.scale)  # type: ignore[assignment]
        self.ratio = tuple(float(v) for v in self.ratio)  # type: ignore[assignment]
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ConfigError(f"augment scale must be (low, high) with 0 < low <= high <= 1, got {self.scale}")
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"augment ratio must be (low, high) with 0 < low <= high, got {self.ratio}")
        if not 0 <= self.hflip <= 1:
            raise ConfigError(f"augment hflip must be a probability in [0, 1], got {self.hflip}")
        if self.policy not in ("none", "randaugment", "trivialaugment"):
            raise ConfigError(f"augment policy must be 'none', 'randaugment' or 'trivialaugment', got {self.policy!r}")
        if not 0 < self.crop_fraction <= 1:
            raise ConfigError(f"augment crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"augment interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                              f"got {self.interpolation!r}")
        # the policy objects check their own values
        RandAugment(self.rand_ops, self.rand_magnitude, self.rand_bins)
        ColorJitter(self.color_jitter, self.color_jitter, self.color_jitter, self.hue)
        RandomErasing(self.erase_prob)

    @classmethod
    def minimal(cls, **overrides: Any) -> AugmentConfig:
        """Crop and flip only: no policy, no colour jitter, no erasing (the throughput benchmark's pipeline)."""
        return cls(**{"policy": "none", "erase_prob": 0.0, **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> AugmentConfig:
        """From a recipe's ``augment:`` mapping; an unknown key is a :class:`ConfigError`."""
        values = dict(values or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown_name_message("augment setting", unknown[0], known))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scale"], out["ratio"] = list(self.scale), list(self.ratio)
        return out


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """SplitMix64's output function (Steele, Lea & Flood 2014): a bijective 64-bit mixer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The ``torch.Generator`` of sample ``index`` in ``epoch``.

    Seeded by chaining SplitMix64 over the three numbers, ``h = mix(mix(mix(seed) ^ epoch) ^ index)``, so
    nearby (seed, epoch, index) give unrelated streams (a few integer operations per sample).
    """
    h = _splitmix64(int(seed) & _MASK64)
    h = _splitmix64(h ^ (int(epoch) & _MASK64))
    h = _splitmix64(h ^ (int(index) & _MASK64))
    return torch.Generator().manual_seed(h >> 1)  # manual_seed takes a non-negative 63-bit value


def resample_filter(name: str) -> int:
    """Pillow's resampling filter for an interpolation name of :data:`INTERPOLATIONS`."""
    return {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[name]


def random_resized_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                            generator: torch.Generator) -> tuple[int, int, int, int]:
    """The Inception crop ``(top, left, h, w)`` of a ``width`` × ``height`` image (see the module docstring).

    Draws, per try: area fraction ``U[scale]``, log aspect ``U[log ratio]``, then the top and left offsets
    uniformly among the positions where the crop fits.
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item())
        aspect = math.exp(float(torch.empty(1).uniform_(log_low, log_high, generator=generator).item()))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height  # fallback: the whole image, its ratio clamped into `ratio`, centred
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(
    width: int, height: int, size: int, crop_fraction: float
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The evaluation resize ``(w', h')`` (shorter side ``floor(size / crop_fraction)``) and the centred crop box.

    Returns:
        ``(w', h')`` and ``(left, top, right, bottom)`` of the ``size`` × ``size`` crop in the resized image.
    """
    short = int(math.floor(size / crop_fraction))
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return (new_w, new_h), (left, top, left + size, top + size)


def to_tensor(image) -> Tensor:  # noqa: ANN001
    """A Pillow image in mode L or RGB -> (C, H, W) uint8 tensor (C = 1 or 3), writable.

    The result is a channels-first *view* of the image's bytes (not contiguous): whoever stores it copies
    it once, converting layout (and dtype) in the same pass.
    """
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    if image.mode == "L":
        return data.view(1, image.height, image.width)
    return data.view(image.height, image.width, 3).permute(2, 0, 1)


def reduce_jpeg(image, limit: float) -> None:  # noqa: ANN001
    """Before decoding: ask Pillow's JPEG decoder for the largest scale 1/s, s in {8, 4, 2}, with s <= ``limit``.

    A no-op for other formats, for ``limit`` < 2 and for decoded images. The image's ``size`` becomes the
    reduced size (``ceil(W / s)`` × ``ceil(H / s)``).
    """
    if getattr(image, "format", None) != "JPEG" or limit < 2:  # (a decoded JPEG ignores draft)
        return
    s = next(k for k in (8, 4, 2) if k <= limit)
    width, height = image.size
    image.draft(None, (width // s, height // s))  # Pillow picks the largest s' with W // (W // s) >= s'


@dataclass
class EvalPipeline:
    """Resize + centre crop: a Pillow image of any mode -> (C, size, size) uint8."""

    size: int
    channels: int = 3
    crop_fraction: float = 0.875
    interpolation: str = "bicubic"
    jpeg_draft: bool = True
    random: bool = field(default=False, init=False)

    def __call__(self, image, generator: torch.Generator | None = None, name: str = "image") -> Tensor:  # noqa: ANN001
        """Args: image: a Pillow image, decoded or only opened (then decoded here, errors naming ``name``)."""
        (new_w, new_h), box = center_crop_box(image.width, image.height, self.size, self.crop_fraction)
        if self.jpeg_draft:
            reduce_jpeg(image, min(image.width / new_w, image.height / new_h))
        image = convert_image(decode_image(image, name), self.channels)
        image = image.resize((new_w, new_h), resample_filter(self.interpolation)).crop(box)
        return to_tensor(image)


@dataclass
class TrainPipeline:
    """RandomResizedCrop + flip (+ colour jitter or a policy) (+ random erasing): any image -> (C, size, size) uint8."""

    size: int
    channels: int = 3
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    random: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        a = self.augment
        self._policy = (RandAugment(a.rand_ops, a.rand_magnitude, a.rand_bins) if a.policy == "randaugment"
                        else TrivialAugment(a.rand_bins) if a.policy == "trivialaugment" else None)
        jitter = ColorJitter(a.color_jitter, a.color_jitter, a.color_jitter, a.hue)
        self._jitter = jitter if jitter.active and self._policy is None else None
        self._erase = RandomErasing(a.erase_prob) if a.erase_prob > 0 else None

    def __call__(self, image, generator: torch.Generator, name: str = "image") -> Tensor:  # noqa: ANN001
        """Args: image: a Pillow image, decoded or only opened (then decoded here, errors naming ``name``)."""
        a = self.augment
        width, height = image.size  # the crop is drawn on the file's full size, before decoding
        top, left, h, w = random_resized_crop_box(width, height, a.scale, a.ratio, generator)
        if a.jpeg_draft:
            reduce_jpeg(image, min(w, h) / self.size)
        image = convert_image(decode_image(image, name), self.channels)
        resample = resample_filter(a.interpolation)
        if image.size == (width, height):
            image = image.crop((left, top, left + w, top + h)).resize((self.size, self.size), resample)
        else:  # decoded at a reduced scale: the same crop in the reduced image's coordinates
            fx, fy = image.width / width, image.height / height
            box = (left * fx, top * fy, (left + w) * fx, (top + h) * fy)
            image = image.resize((self.size, self.size), resample, box=box)
        if a.hflip > 0 and float(torch.rand(1, generator=generator).item()) < a.hflip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self._jitter is not None:
            image = self._jitter(image, generator)
        if self._policy is not None:
            image = self._policy(image, generator)
        tensor = to_tensor(image)
        if self._erase is not None:
            tensor = self._erase(tensor, generator)
        return tensor


def build_pipeline(
    train: bool, img_size: int, channels: int, augment: AugmentConfig | None = None
) -> TrainPipeline | EvalPipeline:
    """The training or evaluation pipeline for ``img_size`` × ``img_size`` inputs with ``channels`` 1 or 3."""
    if not isinstance(img_size, int) or img_size < 1:
        raise ConfigError(f"img_size must be a positive integer, got {img_size!r}")
    if channels not in (1, 3):
        raise ConfigError(f"in_chans must be 1 or 3 for image files, got {channels!r}")
    augment = augment or AugmentConfig()
    if train:
        return TrainPipeline(img_size, channels, augment)
    return EvalPipeline(img_size, channels, augment.crop_fraction, augment.interpolation, augment.jpeg_draft)
