"""Per-image augmentation policies on Pillow images: RandAugment, TrivialAugment, colour jitter, random erasing.

The DeiT recipe (Touvron et al. 2021, "Training data-efficient image transformers", Table 9) trains a ViT
with RandAugment (m=9, n=2), random erasing (p=0.25), Mixup and CutMix on top of Inception-style
random-resized crops. These are the per-image parts; Mixup/CutMix act on batches (:mod:`vitlab.mixing`).

* **RandAugment** (Cubuk et al. 2020, "RandAugment: Practical automated data augmentation with a reduced
  search space", §3): apply ``N`` operations drawn uniformly (with replacement) from the list
  :data:`OPS`, each at the one global magnitude ``M`` of ``num_bins - 1`` (signed operations get a
  random sign).
* **TrivialAugment** (Müller & Hutter 2021, "TrivialAugment: Tuning-free Yet State-of-the-Art Data
  Augmentation", §3, the "wide" ranges): apply ONE operation drawn uniformly, at a magnitude bin drawn
  uniformly from ``0 .. num_bins - 1``.
* **Colour jitter** (torchvision's ``ColorJitter`` definition, used by DeiT when no policy is set):
  brightness, contrast and saturation factors drawn from ``U[max(0, 1 - s), 1 + s]`` and a hue shift from
  ``U[-h, h]`` (in turns of the colour wheel), applied in a random order.
* **Random erasing** (Zhong et al. 2020, "Random Erasing Data Augmentation", Alg. 1): with probability
  ``p`` pick a rectangle of area fraction ``s ~ U[0.02, 1/3]`` and aspect ``r`` with
  ``log r ~ U[log 0.3, log 1/0.3]`` (up to 10 tries until it fits) and fill it with uniform random values
  (``0..255`` per pixel and channel, the paper's choice).

The operations are Pillow's (``ImageOps``, ``ImageEnhance``, affine ``Image.transform``): they run per image
in the DataLoader worker processes, in parallel, with no extra dependency. Every random number comes from
the ``torch.Generator`` passed in (one per sample, see :func:`vitlab.data.pipeline.sample_generator`).

The magnitude of each operation at bin ``k`` of ``B`` bins (``t = k / (B - 1)``), as in the papers:

==============  =========================  ================================
operation       RandAugment (standard)     TrivialAugment (wide)
==============  =========================  ================================
ShearX/Y        ±0.3·t                     ±0.99·t
TranslateX/Y    ±(150/331)·t·side          ±32·t pixels
Rotate          ±30°·t                     ±135°·t
Brightness,     factor 1 ± 0.9·t           factor 1 ± 0.99·t
Color, Contrast,
Sharpness
Posterize       8 - round(4·t) bits        8 - round(6·t) bits
Solarize        threshold 255·(1 - t)      threshold 255·(1 - t)
AutoContrast,   (no magnitude)             (no magnitude)
Equalize,
Identity
==============  =========================  ================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from torch import Tensor

from vitlab.errors import ConfigError

__all__ = ["OPS", "ColorJitter", "RandAugment", "RandomErasing", "TrivialAugment", "apply_op"]

OPS = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)
_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}


def _uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=generator).item())


def _randint(generator: torch.Generator, high: int) -> int:
    """Uniform in {0, ..., high - 1}."""
    return int(torch.randint(0, high, (1,), generator=generator).item())


def _fill(image) -> int | tuple[int, ...]:  # noqa: ANN001
    return 128 if image.mode == "L" else (128,) * len(image.getbands())


def apply_op(image, name: str, magnitude: float):  # noqa: ANN001, ANN201 (PIL.Image.Image)
    """One operation of :data:`OPS` at a signed magnitude (already in the operation's own unit).

    Geometric operations fill uncovered pixels with grey 128 and use nearest-neighbour resampling; shears
    and translations are about the top-left corner, rotations about the centre.

    Args:
        image: a Pillow image in mode ``L`` or ``RGB``.
        name: one of :data:`OPS`.
        magnitude: shear (tan of the angle), translation (pixels), rotation (degrees), enhancement
            offset (factor 1 + magnitude), posterize (bits kept), solarize (threshold); ignored otherwise.
    """
    if name == "Identity":
        return image
    if name == "ShearX":
        return image.transform(image.size, Image.Transform.AFFINE, (1, magnitude, 0, 0, 1, 0),
                               resample=Image.Resampling.NEAREST, fillcolor=_fill(image))
    if name == "ShearY":
        return image.transform(image.size, Image.Transform.AFFINE, (1, 0, 0, magnitude, 1, 0),
                               resample=Image.Resampling.NEAREST, fillcolor=_fill(image))
    if name == "TranslateX":
        return image.transform(image.size, Image.Transform.AFFINE, (1, 0, -magnitude, 0, 1, 0),
                               resample=Image.Resampling.NEAREST, fillcolor=_fill(image))
    if name == "TranslateY":
        return image.transform(image.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, -magnitude),
                               resample=Image.Resampling.NEAREST, fillcolor=_fill(image))
    if name == "Rotate":
        return image.rotate(magnitude, resample=Image.Resampling.NEAREST, fillcolor=_fill(image))
    if name == "Brightness":
        return ImageEnhance.Brightness(image).enhance(1.0 + magnitude)
    if name == "Color":
        return ImageEnhance.Color(image).enhance(1.0 + magnitude)
    if name == "Contrast":
        return ImageEnhance.Contrast(image).enhance(1.0 + magnitude)
    if name == "Sharpness":
        return ImageEnhance.Sharpness(image).enhance(1.0 + magnitude)
    if name == "Posterize":
        return ImageOps.posterize(image, int(magnitude))
    if name == "Solarize":
        return ImageOps.solarize(image, magnitude)
    if name == "AutoContrast":
        return ImageOps.autocontrast(image)
    if name == "Equalize":
        return ImageOps.equalize(image)
    raise ConfigError(f"unknown augmentation op {name!r}; choose one of {', '.join(OPS)}")


def _magnitude(name: str, t: float, side: tuple[int, int], wide: bool) -> float:
    """The unsigned magnitude of ``name`` at fraction ``t`` in [0, 1] of its range (see the module table)."""
    width, height = side
    if name in ("ShearX", "ShearY"):
        return (0.99 if wide else 0.3) * t
    if name == "TranslateX":
        return 32.0 * t if wide else 150.0 / 331.0 * width * t
    if name == "TranslateY":
        return 32.0 * t if wide else 150.0 / 331.0 * height * t
    if name == "Rotate":
        return (135.0 if wide else 30.0) * t
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return (0.99 if wide else 0.9) * t
    if name == "Posterize":
        return 8 - round((6 if wide else 4) * t)
    if name == "Solarize":
        return 255.0 * (1.0 - t)
    return 0.0


def _signed(name: str, value: float, generator: torch.Generator) -> float:
    if name in _SIGNED and _uniform(generator) < 0.5:
        return -value
    return value


@dataclass
class RandAugment:
    """RandAugment (Cubuk et al. 2020): ``num_ops`` operations at magnitude bin ``magnitude`` of ``num_bins``.

    Args:
        num_ops: N, operations per image (DeiT: 2).
        magnitude: M in [0, num_bins - 1] (DeiT: 9 of 31 bins in torchvision's scale, 9 of 11 in timm's).
        num_bins: magnitude bins (torchvision: 31).
    """

    num_ops: int = 2
    magnitude: int = 9
    num_bins: int = 31

    def __post_init__(self) -> None:
        if self.num_ops < 0 or self.num_bins < 2 or not 0 <= self.magnitude < self.num_bins:
            raise ConfigError(f"RandAugment needs num_ops >= 0, num_bins >= 2 and 0 <= magnitude < num_bins, got "
                              f"num_ops={self.num_ops}, magnitude={self.magnitude}, num_bins={self.num_bins}")

    def __call__(self, image, generator: torch.Generator):  # noqa: ANN001, ANN204
        """Augment one Pillow image (mode L or RGB) drawing from ``generator``."""
        t = self.magnitude / (self.num_bins - 1)
        for _ in range(self.num_ops):
            name = OPS[_randint(generator, len(OPS))]
            value = _signed(name, _magnitude(name, t, image.size, wide=False), generator)
            image = apply_op(image, name, value)
        return image


@dataclass
class TrivialAugment:
    """TrivialAugment-wide (Müller & Hutter 2021): one operation at a uniformly drawn magnitude bin."""

    num_bins: int = 31

    def __post_init__(self) -> None:
        if self.num_bins < 2:
            raise ConfigError(f"TrivialAugment needs num_bins >= 2, got {self.num_bins}")

    def __call__(self, image, generator: torch.Generator):  # noqa: ANN001, ANN204
        """Augment one Pillow image (mode L or RGB) drawing from ``generator``."""
        name = OPS[_randint(generator, len(OPS))]
        t = _randint(generator, self.num_bins) / (self.num_bins - 1)
        return apply_op(image, name, _signed(name, _magnitude(name, t, image.size, wide=True), generator))


def adjust_hue(image, shift: float):  # noqa: ANN001, ANN201
    """Rotate the hue of an RGB image by ``shift`` turns (in [-0.5, 0.5]) in Pillow's 8-bit HSV space."""
    if image.mode != "RGB" or shift == 0:
        return image
    h, s, v = image.convert("HSV").split()
    hue = np.asarray(h, dtype=np.uint8).astype(np.int16)
    hue = ((hue + int(round(shift * 255))) % 256).astype(np.uint8)  # the hue channel wraps around
    return Image.merge("HSV", (Image.fromarray(hue, "L"), s, v)).convert("RGB")


@dataclass
class ColorJitter:
    """Random brightness, contrast, saturation (factors in ``[max(0, 1 - s), 1 + s]``) and hue (``[-h, h]``).

    The four adjustments are applied in a random order; a strength of 0 leaves that one out.
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        if min(self.brightness, self.contrast, self.saturation) < 0 or not 0 <= self.hue <= 0.5:
            raise ConfigError(f"ColorJitter strengths must be >= 0 and hue in [0, 0.5], got {self}")

    @property
    def active(self) -> bool:
        return max(self.brightness, self.contrast, self.saturation, self.hue) > 0

    def __call__(self, image, generator: torch.Generator):  # noqa: ANN001, ANN204

        order = torch.randperm(4, generator=generator).tolist()
        for op in order:
            if op == 0 and self.brightness > 0:
                image = ImageEnhance.Brightness(image).enhance(
                    _uniform(generator, max(0.0, 1 - self.brightness), 1 + self.brightness))
            elif op == 1 and self.contrast > 0:
                image = ImageEnhance.Contrast(image).enhance(
                    _uniform(generator, max(0.0, 1 - self.contrast), 1 + self.contrast))
            elif op == 2 and self.saturation > 0:
                image = ImageEnhance.Color(image).enhance(
                    _uniform(generator, max(0.0, 1 - self.saturation), 1 + self.saturation))
            elif op == 3 and self.hue > 0:
                image = adjust_hue(image, _uniform(generator, -self.hue, self.hue))
        return image


@dataclass
class RandomErasing:
    """Random erasing (Zhong et al. 2020) of a (C, H, W) uint8 tensor, in place, with uniform random values.

    Args:
        p: probability of erasing one rectangle (DeiT: 0.25).
        area: range of the erased area as a fraction of the image.
        log_ratio: the aspect ratio h/w is exp(U[log_ratio]).
        attempts: tries to find a rectangle that fits before giving up.
    """

    p: float = 0.25
    area: tuple[float, float] = (0.02, 1 / 3)
    ratio: tuple[float, float] = (0.3, 1 / 0.3)
    attempts: int = 10

    def __post_init__(self) -> None:
        if (
            not 0.0 <= self.p <= 1.0
            or not 0 < self.area[0] <= self.area[1] <= 1
            or not 0 < self.ratio[0] <= self.ratio[1]
        ):
            raise ConfigError(f"RandomErasing needs p in [0, 1], 0 < area[0] <= area[1] <= 1 and "
                              f"0 < ratio[0] <= ratio[1], got p={self.p}, area={self.area}, ratio={self.ratio}")

    def __call__(self, image: Tensor, generator: torch.Generator) -> Tensor:
        """Args: image (C, H, W) uint8, modified in place and returned."""
        if self.p <= 0 or _uniform(generator) >= self.p:
            return image
        c, height, width = image.shape
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(self.attempts):
            target = height * width * _uniform(generator, *self.area)
            aspect = math.exp(_uniform(generator, log_low, log_high))
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if 0 < h < height and 0 < w < width:
                top = _randint(generator, height - h + 1)
                left = _randint(generator, width - w + 1)
                image[:, top : top + h, left : left + w] = torch.randint(
                    0, 256, (c, h, w), generator=generator, dtype=torch.uint8)
                return image
        return image
