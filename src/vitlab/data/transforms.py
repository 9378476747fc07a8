"""Batch augmentation on tensors: random crop with zero padding, horizontal flip, normalization.

The standard CIFAR recipe of He et al. (2016, "Deep Residual Learning for Image Recognition", §4.2:
"4 pixels are padded on each side, and a 32×32 crop is randomly sampled from the padded image or its
horizontal flip"), later used unchanged to train ViTs on small images, written for a whole batch at
once: every sample draws its own crop offset and flip, with no Python loop over the batch, on the
device of the batch, from a caller-supplied ``torch.Generator`` (never the global RNG).

For an image x of shape (C, H, W) and padding p, let x̃ = pad(x, p) with zeros, of shape
(C, H + 2p, W + 2p). The crop draws offsets (i, j) uniformly from {0, …, 2p}² and returns

    crop(x)[c, h, w] = x̃[c, i + h, j + w],      h < H, w < W,

so (i, j) = (p, p) is the identity and every other offset is the image shifted by (p - i, p - j) with
zeros shifted in. The flip returns flip(x)[c, h, w] = x[c, h, W - 1 - w] with probability p_flip.
Normalization is per channel: norm(x)[c] = (x[c] - μ_c) / σ_c, with μ, σ usually the training set's
channel mean and standard deviation (:func:`channel_stats`).

None of these functions modifies its input; each returns a new tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor

from vitlab.data.base import to_float
from vitlab.errors import ConfigError, DataError

__all__ = ["BatchTransform", "channel_stats", "normalize", "random_crop", "random_hflip"]


def _check_batch(images: Tensor, what: str) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"{what}: images must be a (B, C, H, W) tensor, got {shape}")


def _check_generator(images: Tensor, generator: torch.Generator | None, what: str) -> None:
    if generator is None:
        raise ConfigError(f"{what}: a torch.Generator is required (vitlab never draws from the global RNG); "
                          f"pass torch.Generator(device={str(images.device)!r}).manual_seed(SEED)")
    if torch.device(generator.device).type != images.device.type:
        raise ConfigError(f"{what}: the generator is on {generator.device} but the images are on {images.device}; "
                          f"create it with torch.Generator(device={str(images.device)!r})")


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Zero-pad every image by ``padding`` on each side and crop a random window of the original size.

    Offsets (i, j) are drawn per sample, uniformly in {0, …, 2·padding} (both ends included).

    Args:
        images: (B, C, H, W) any dtype (uint8 or float); not modified.
        padding: p ≥ 0 pixels of zeros on each side; 0 returns a copy.
        generator: on the same device type as ``images``.

    Returns:
        (B, C, H, W) same dtype and device: ``out[b, c, h, w] = pad(images)[b, c, i_b + h, j_b + w]``.
    """
    _check_batch(images, "random_crop")
    if not isinstance(padding, int) or padding < 0:
        raise ConfigError(f"random_crop: padding must be an integer >= 0, got {padding!r}")
    if padding == 0:
        return images.clone()
    _check_generator(images, generator, "random_crop")
    b, c, h, w = images.shape
    p = padding
    padded = F.pad(images, (p, p, p, p))  # (B, C, H + 2p, W + 2p), zeros
    offsets = torch.randint(0, 2 * p + 1, (2, b), generator=generator, device=images.device)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (B, H): i_b + h
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (B, W): j_b + w
    # one gather over the flattened padded plane: flat index (i_b + h)·(W + 2p) + (j_b + w)
    index = (rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(padded.flatten(2), 2, index).view(b, c, h, w)


def random_rotate_scale(images: Tensor, degrees: float, scale: float, generator: torch.Generator) -> Tensor:
    """Rotate each image about its centre by θ ~ U(−degrees, degrees) and scale it by s ~ U(1 − scale, 1 + scale).

    The classic small affine jitter for handwritten digits (LeCun et al. 1998 trained on distorted copies;
    Simard et al. 2003 used affine distortions). Output pixel at normalised position p reads the input at

        p_in = R(−θ) · p / s,

    bilinearly (``F.affine_grid`` + ``F.grid_sample``, ``align_corners=False`` so pixel centres sit
    symmetrically about the centre); what falls outside the image reads 0.

    Args:
        images: (B, C, H, W) float.
        degrees: the largest rotation, ≥ 0.
        scale: the largest relative size change, in [0, 1).
        generator: the source of θ and s (one draw each per image).

    Returns:
        (B, C, H, W) float, a new tensor.
    """
    if degrees < 0 or not 0 <= scale < 1:
        raise ConfigError(f"rotate must be >= 0 degrees and scale in [0, 1), got {degrees} and {scale}")
    batch = images.shape[0]
    draws = torch.rand(batch, 2, generator=generator, device=images.device, dtype=torch.float32)
    theta = (draws[:, 0] * 2 - 1) * (degrees * torch.pi / 180)
    factor = 1 + (draws[:, 1] * 2 - 1) * scale
    cos, sin = torch.cos(theta) / factor, torch.sin(theta) / factor
    height, width = images.shape[-2:]
    aspect = height / width  # rotate in pixel units, not in the normalised square
    matrix = torch.zeros(batch, 2, 3, device=images.device, dtype=images.dtype)
    matrix[:, 0, 0], matrix[:, 0, 1] = cos, sin * aspect
    matrix[:, 1, 0], matrix[:, 1, 1] = -sin / aspect, cos
    # The grid in the images' dtype even under autocast, whose bf16 matrix product inside affine_grid would
    # round the sampling coordinates to 8 significant bits (tests/data/test_transforms.py).
    with torch.autocast(images.device.type, enabled=False) if images.device.type in ("cpu", "cuda") else nullcontext():
        grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_hflip(images: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right independently with probability ``p``.

    Args:
        images: (B, C, H, W) any dtype; not modified.
        generator: on the same device type as ``images``.
        p: flip probability in [0, 1].

    Returns:
        (B, C, H, W): ``out[b] = images[b].flip(-1)`` where u_b < p (u_b ~ U[0, 1)), else ``images[b]``.
    """
    _check_batch(images, "random_hflip")
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"random_hflip: p must be in [0, 1], got {p}")
    _check_generator(images, generator, "random_hflip")
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < p  # (B,)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def _channel_vector(values: Sequence[float] | Tensor, channels: int, what: str, like: Tensor) -> Tensor:
    vector = torch.as_tensor(values, dtype=torch.float32).flatten()
    if vector.numel() == 1:
        vector = vector.expand(channels)
    if vector.numel() != channels:
        raise ConfigError(f"normalize: {what} has {vector.numel()} values but the images have {channels} channels; "
                          f"give one value per channel")
    return vector.to(device=like.device, dtype=like.dtype).view(1, channels, 1, 1)


def normalize(images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """Per-channel standardization ``(x[:, c] - mean[c]) / std[c]``.

    Args:
        images: (B, C, H, W) float, or uint8 (first scaled to [0, 1] by :func:`vitlab.data.base.to_float`).
        mean: C values (or one value for all channels).
        std: C values > 0 (or one value).

    Returns:
        (B, C, H, W) float32 (or the input's floating dtype).
    """
    _check_batch(images, "normalize")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise DataError(f"normalize: images must be uint8 or floating point, got {images.dtype}; convert with .float()")
    x = to_float(images) if images.dtype == torch.uint8 else images
    c = x.shape[1]
    mu = _channel_vector(mean, c, "mean", x)
    sigma = _channel_vector(std, c, "std", x)
    if not bool((sigma > 0).all()):
        raise ConfigError(f"normalize: std must be > 0 in every channel, got {sigma.flatten().tolist()}")
    return (x - mu) / sigma


def channel_stats(images: Tensor | Iterable[Tensor], chunk_size: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (population) standard deviation of a dataset's images in [0, 1].

    Computed in float64 chunk by chunk (so a uint8 dataset is never converted to float all at once),
    merging the chunks' means and sums of squared deviations M2 exactly (Chan et al. 1979):
    for chunks a, b with counts n_a, n_b and δ = mean_b - mean_a,
    mean = mean_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n, and std = sqrt(M2 / n).

    Args:
        images: (N, C, H, W) uint8 (0..255, scaled by 1/255) or float in [0, 1]; or an iterable of such
            (B, C, H, W) batches (e.g. the images of a streaming loader), merged the same way.
        chunk_size: images per chunk (for a tensor).

    Returns:
        mean (C,), std (C,) float32 on the images' device.
    """
    if isinstance(images, Tensor):
        _check_batch(images, "channel_stats")
        step = max(1, int(chunk_size))
        chunks: Iterable[Tensor] = (images[start : start + step] for start in range(0, images.shape[0], step))
    else:
        chunks = images
    count = 0
    mean = m2 = None
    for chunk in chunks:
        _check_batch(chunk, "channel_stats")
        c = chunk.shape[1]
        if mean is None:
            mean = torch.zeros(c, dtype=torch.float64, device=chunk.device)
            m2 = torch.zeros(c, dtype=torch.float64, device=chunk.device)
        x = chunk.to(torch.float64)
        if chunk.dtype == torch.uint8:
            x = x / 255.0
        x = x.transpose(0, 1).reshape(c, -1)  # (C, n_chunk)
        n_b = x.shape[1]
        if n_b == 0:
            continue
        mean_b = x.mean(dim=1)
        m2_b = ((x - mean_b[:, None]) ** 2).sum(dim=1)
        total = count + n_b
        delta = mean_b - mean
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    if count == 0 or mean is None or m2 is None:
        raise DataError("channel_stats: no images")
    return mean.float(), (m2 / count).sqrt().float()


class BatchTransform:
    """What the training loop applies to every batch: to float, then (train only) rotate/scale, crop and flip,
    then normalize.

    Args:
        rotate, scale: :func:`random_rotate_scale`'s largest rotation (degrees) and size change (0: off).
        crop_padding: p for :func:`random_crop` (0: no crop).
        hflip: apply :func:`random_hflip` with p = 0.5 (leave off for digits and other text-like data).
        mean: per-channel mean for :func:`normalize` (None: no normalization; give ``std`` too).
        std: per-channel standard deviation.

    The generator passed to ``__call__`` must live on the same device type as the images
    (``torch.Generator(device=images.device)``); a mismatch raises :class:`vitlab.errors.ConfigError`.
    """

    def __init__(
        self,
        crop_padding: int = 0,
        hflip: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        rotate: float = 0.0,
        scale: float = 0.0,
    ) -> None:
        if (
            not isinstance(rotate, (int, float))
            or not isinstance(scale, (int, float))
            or rotate < 0
            or not 0 <= scale < 1
        ):
            raise ConfigError(f"rotate must be >= 0 degrees and scale in [0, 1), got {rotate!r} and {scale!r}")
        self.rotate, self.scale = float(rotate), float(scale)
        if not isinstance(crop_padding, int) or crop_padding < 0:
            raise ConfigError(f"crop_padding must be an integer >= 0, got {crop_padding!r}")
        if (mean is None) != (std is None):
            raise ConfigError("give both mean and std for normalization, or neither")
        if std is not None and any(float(s) <= 0 for s in std):
            raise ConfigError(f"std must be > 0 in every channel, got {list(std)}")
        self.crop_padding = crop_padding
        self.hflip = bool(hflip)
        self.mean = None if mean is None else [float(m) for m in mean]
        self.std = None if std is None else [float(s) for s in std]

    @property
    def augments(self) -> bool:
        """Whether the training branch draws random numbers."""
        return self.crop_padding > 0 or self.hflip or self.rotate > 0 or self.scale > 0

    def __call__(self, images: Tensor, generator: torch.Generator | None, train: bool) -> Tensor:
        """Transform one batch.

        Args:
            images: (B, C, H, W) uint8 (0..255) or float in [0, 1]; not modified.
            generator: required when ``train`` and an augmentation is on; ignored otherwise.
            train: apply the random crop and flip.

        Returns:
            (B, C, H, W) float32 on the images' device.
        """
        _check_batch(images, "BatchTransform")
        x = to_float(images)
        if train and self.augments:
            _check_generator(x, generator, "BatchTransform")
            if self.rotate > 0 or self.scale > 0:
                x = random_rotate_scale(x, self.rotate, self.scale, generator)  # type: ignore[arg-type]
            if self.crop_padding > 0:
                x = random_crop(x, self.crop_padding, generator)  # type: ignore[arg-type]
            if self.hflip:
                x = random_hflip(x, generator)  # type: ignore[arg-type]
        if self.mean is not None and self.std is not None:
            x = normalize(x, self.mean, self.std)
        return x.clone() if x is images else x  # never hand back the caller's tensor itself

    def __repr__(self) -> str:
        return (f"BatchTransform(crop_padding={self.crop_padding}, hflip={self.hflip}, "
                f"mean={self.mean}, std={self.std})")
