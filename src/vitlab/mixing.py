"""Mixup, CutMix and Cutout on a batch, with mixed (and label-smoothed) soft targets.

Papers and equations:
    * Mixup -- Zhang, Cisse, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk Minimization",
      ICLR 2018 (arXiv:1710.09412), Eq. (1): ``x~ = lam x_i + (1 - lam) x_j``,
      ``y~ = lam y_i + (1 - lam) y_j`` with ``lam ~ Beta(alpha, alpha)``.
    * CutMix -- Yun, Han, Oh, Chun, Choe, Yoo, "CutMix: Regularization Strategy to Train Strong
      Classifiers with Localizable Features", ICCV 2019 (arXiv:1905.04899), Eqs. (1)-(2):
      ``x~ = M * x_i + (1 - M) * x_j`` where the binary mask ``M`` is 0 inside a box of width
      ``W sqrt(1 - lam)`` and height ``H sqrt(1 - lam)`` whose centre is uniform over the image, and
      ``y~ = lam y_i + (1 - lam) y_j``. After clipping the box to the image, ``lam`` is corrected to
      the exact fraction of pixels kept from ``x_i`` (``correct_lam``).
    * Cutout -- DeVries and Taylor, "Improved Regularization of Convolutional Neural Networks with
      Cutout", 2017 (arXiv:1708.04552), Sec. 3: a fixed-size square at a uniform centre, clipped at
      the borders, is set to zero (or to the image mean); labels are unchanged.
    * Label smoothing -- Szegedy et al. 2016, Sec. 7: ``y = (1 - eps) onehot + eps / K`` before mixing.
    * Gamma sampling -- Marsaglia and Tsang, "A Simple Method for Generating Gamma Variables",
      ACM TOMS 26(3), 2000; ``Beta(a, b) = G_a / (G_a + G_b)`` for independent Gamma variables.

Conventions:
    * The partner of sample ``i`` is ``j = B - 1 - i`` (the batch flipped), in every mode. With an odd
      batch the middle sample is its own partner: mixing it with itself leaves it unchanged.
    * Modes: ``'batch'`` draws one decision, ``lam`` and box for the whole batch; ``'pair'`` one per
      pair ``(i, B-1-i)``, both members using the same ``lam`` and box (so each is pasted into the other);
      ``'elem'`` one per sample. All modes are computed with the same vectorised code: a per-pixel
      weight map ``w`` of shape (B, 1, H, W) (``lam`` for Mixup, ``M`` for CutMix, 1 for untouched
      samples) and ``torch.lerp(x_flip, x, w)``; there is no Python loop over the batch.
    * Box geometry (pixel indices, half-open): ``cut = floor(H * sqrt(1 - lam))``, centre
      ``cy ~ U{0, ..., H-1}``, rows ``[clip(cy - cut // 2), clip(cy + (cut + 1) // 2))``; the same for
      columns. Every row, the last included, can be covered. With ``cutmix_minmax = (lo, hi)`` the
      side lengths are uniform integers in ``[floor(lo H), floor(hi H)]`` (both ends included) and the
      top-left corner is uniform over all ``H - cut + 1`` positions, so the box can touch the last
      row and column; ``lam`` is then always the corrected one.
    * Cutout uses the same clipped-square geometry with ``cut = cutout_size``, one square per
      sample in every mode, applied after mixing. ``cutout_fill='mean'`` fills with the per-sample,
      per-channel mean of the (mixed) image.
    * Every random number comes from ``generator`` (drawn on its device); the caller's tensors are
      never modified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vitlab.errors import ConfigError, DataError, unknown_name_message
from vitlab.losses import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy, smooth_one_hot

__all__ = [
    "MixParams",
    "Mixer",
    "build_mixing",
    "cutmix_box",
    "mixing_loss",
    "sample_beta",
    "sample_log_gamma",
]

MODES = ("batch", "pair", "elem")
FILLS = ("zero", "mean")
NONE, MIXUP, CUTMIX = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Generator-driven Gamma and Beta sampling (torch.distributions takes no generator).


def _marsaglia_tsang_round(d: Tensor, generator: torch.Generator, tries: int = 3) -> Tensor:
    """One vectorised round, ``tries`` proposals per variate: ``log G`` of the first accepted, NaN if none.

    Args:
        d: (n,) float64, ``a - 1/3`` with ``a >= 1``.
    """
    n = d.shape[0]
    z = torch.randn(tries, n, dtype=torch.float64, device=d.device, generator=generator)
    log_u = torch.rand(tries, n, dtype=torch.float64, device=d.device, generator=generator).log_()
    v = (torch.rsqrt(9.0 * d) * z).add_(1.0).pow_(3)  # (tries, n)
    log_v = v.clamp_min(1e-300).log_()
    # accept when v > 0 and log u < z^2 / 2 + d (1 - v + log v)
    bound = (1.0 - v).add_(log_v).mul_(d).addcmul_(z, z, value=0.5)
    ok = (v > 0) & (log_u < bound)  # (tries, n)
    log_g = torch.full_like(d, math.nan)
    for t in reversed(range(tries)):  # the earliest accepted proposal wins
        log_g = torch.where(ok[t], log_v[t], log_g)
    return log_g + torch.log(d)


def sample_log_gamma(shape: float | Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``log G`` for ``n`` independent ``G ~ Gamma(shape, 1)``, Marsaglia and Tsang (2000).

    For ``a >= 1``: with ``d = a - 1/3``, ``c = 1 / sqrt(9 d)``, draw ``z ~ N(0, 1)``, ``u ~ U(0, 1)``,
    ``v = (1 + c z)^3``; accept ``G = d v`` when ``v > 0`` and
    ``log u < z^2 / 2 + d - d v + d log v``. For ``a < 1`` (their Sec. 6):
    ``G_a = G_{a+1} * U^{1/a}``, i.e. ``log G_a = log G_{a+1} + log(U) / a`` -- kept in log space so
    small shapes (where ``G`` underflows to 0) stay exact when two Gammas are compared.
    Each round makes 3 proposals per variate at once (acceptance >= 95% each); the rare variates
    with none accepted get further rounds. The loop is over rounds, never over samples.

    Args:
        shape: ``a > 0``, a float or an (n,) tensor of per-sample shapes.
        n: number of samples.
        generator: source of every random number (samples are drawn on its device).

    Returns:
        (n,) float64 tensor of ``log G``.
    """
    a = torch.as_tensor(shape, dtype=torch.float64, device=generator.device).expand(n)
    if n and not bool((a > 0).all()):
        raise ConfigError(f"Gamma shape must be > 0, got {a.min().item()}")
    return _log_gamma(a, generator)


def _log_gamma(a: Tensor, generator: torch.Generator) -> Tensor:
    """:func:`sample_log_gamma` for an (n,) float64 tensor of shapes already known to be > 0 (no host sync)."""
    n = a.shape[0]
    device = generator.device
    boost = a < 1.0
    d = torch.where(boost, a + 1.0, a) - 1.0 / 3.0
    log_g = _marsaglia_tsang_round(d, generator)
    missing = torch.isnan(log_g)
    while bool(missing.any()):
        idx = missing.nonzero().squeeze(1)
        log_g[idx] = _marsaglia_tsang_round(d[idx], generator)
        missing = torch.isnan(log_g)
    u = torch.rand(n, dtype=torch.float64, device=device, generator=generator)
    return torch.where(boost, log_g + torch.log1p(-u) / a, log_g)


def sample_beta(alpha: float | Tensor, beta: float | Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` samples of ``Beta(alpha, beta) = G_alpha / (G_alpha + G_beta)``, as ``sigmoid(log G_a - log G_b)``.

    Args:
        alpha, beta: ``> 0``, floats or (n,) tensors.
        n: number of samples.
        generator: source of every random number.

    Returns:
        (n,) float64 tensor in [0, 1].
    """
    device = generator.device
    shapes = torch.cat(
        [
            torch.as_tensor(alpha, dtype=torch.float64, device=device).expand(n),
            torch.as_tensor(beta, dtype=torch.float64, device=device).expand(n),
        ]
    )
    if n and not bool((shapes > 0).all()):
        raise ConfigError(f"Beta parameters must be > 0, got alpha={alpha}, beta={beta}")
    return _beta_from_shapes(shapes, generator)


def _beta_from_shapes(shapes: Tensor, generator: torch.Generator) -> Tensor:
    """Beta draws from (2n,) float64 shapes ``[alpha_1..alpha_n, beta_1..beta_n]``, all > 0 (unchecked)."""
    n = shapes.shape[0] // 2
    log_g = _log_gamma(shapes, generator)
    return torch.sigmoid(log_g[:n] - log_g[n:])


def _symmetric_beta(alpha: float | Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` draws of ``Beta(alpha, alpha)`` for ``alpha`` validated by the caller (a float or an (n,) tensor)."""
    if isinstance(alpha, Tensor):
        shapes = alpha.to(device=generator.device, dtype=torch.float64).repeat(2)
    else:
        shapes = torch.full((2 * n,), float(alpha), dtype=torch.float64, device=generator.device)
    return _beta_from_shapes(shapes, generator)


# ---------------------------------------------------------------------------------------------
# Boxes


def _clipped_span(centre: Tensor, cut: Tensor, size: int) -> tuple[Tensor, Tensor]:
    lo = (centre - torch.div(cut, 2, rounding_mode="floor")).clamp(0, size)
    hi = (centre + torch.div(cut + 1, 2, rounding_mode="floor")).clamp(0, size)
    return lo, hi


def cutmix_box(lam: Tensor, cy: Tensor, cx: Tensor, height: int, width: int) -> Tensor:
    """CutMix box (Yun et al. 2019, Sec. 3.1) for area ratio ``1 - lam``, centred at ``(cy, cx)``, clipped.

    ``cut_h = floor(H sqrt(1 - lam))``, ``cut_w = floor(W sqrt(1 - lam))``; rows
    ``[max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, H))`` and the same for columns, so an
    unclipped box has exactly ``cut_h x cut_w`` pixels.

    Args:
        lam: (n,) float mixing ratios in [0, 1].
        cy, cx: (n,) integer centres in ``[0, H)`` and ``[0, W)``.
        height, width: image size ``H, W``.

    Returns:
        (n, 4) ``torch.long`` boxes ``(y_lo, y_hi, x_lo, x_hi)``, half-open.
    """
    sizes = torch.tensor([[height], [width]], dtype=torch.float64, device=lam.device)  # (2, 1)
    ratio = (1.0 - lam.to(torch.float64)).clamp_min_(0.0).sqrt_()  # (n,)
    cut = torch.floor(sizes * ratio).long()  # (2, n): cut_h, cut_w
    centre = torch.stack([cy.long(), cx.long()])  # (2, n)
    lo = (centre - cut.div(2, rounding_mode="floor")).clamp_min_(0)
    hi = torch.minimum(centre + (cut + 1).div(2, rounding_mode="floor"), sizes.long())
    return torch.stack([lo[0], hi[0], lo[1], hi[1]], dim=1)


def _box_area(box: Tensor) -> Tensor:
    return (box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])


def _box_factors(box: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """(n, 4) boxes -> the row and column indicators of the separable box, (n, 1, H, 1) and (n, 1, 1, W) bool.

    ``M[y, x] = [y_lo <= y < y_hi] * [x_lo <= x < x_hi]`` is their broadcast product, so a (n, 1, H, W)
    map that uses ``M`` is made by one broadcasting operation on these two small tensors.
    """
    rows = torch.arange(height, device=box.device)
    cols = torch.arange(width, device=box.device)
    in_rows = (rows >= box[:, 0:1]) & (rows < box[:, 1:2])  # (n, H)
    in_cols = (cols >= box[:, 2:3]) & (cols < box[:, 3:4])  # (n, W)
    return in_rows.view(-1, 1, height, 1), in_cols.view(-1, 1, 1, width)


# ---------------------------------------------------------------------------------------------
# The mixer


@dataclass(frozen=True)
class MixParams:
    """Everything random about one call of :class:`Mixer`, one row per sample.

    Attributes:
        lam: (B,) float64, the weight of the sample's own label in its soft target (after correction).
        kind: (B,) long, 0 = untouched, 1 = Mixup, 2 = CutMix.
        box: (B, 4) long CutMix boxes ``(y_lo, y_hi, x_lo, x_hi)`` pasted from the partner (empty if not CutMix).
        hole: (B, 4) long Cutout squares, or ``None`` when Cutout is off.
        shared: every row is the same draw (``mode='batch'``), applied by plain slicing.
    """

    lam: Tensor
    kind: Tensor
    box: Tensor
    hole: Tensor | None = None
    shared: bool = False


class Mixer:
    """Mixup / CutMix / Cutout on a batch of images, returning mixed soft targets.

    Args:
        num_classes: ``K``, the width of the soft targets.
        mixup_alpha: Mixup's ``alpha``; Mixup is on when > 0.
        cutmix_alpha: CutMix's ``alpha``; CutMix is on when > 0 (or when ``cutmix_minmax`` is given).
        cutout_size: side of the Cutout square in pixels; Cutout is on when > 0.
        prob: probability of mixing a batch / pair / sample (per ``mode``).
        switch_prob: probability of CutMix rather than Mixup when both are on.
        mode: ``'batch'``, ``'pair'`` or ``'elem'`` (see the module docstring).
        correct_lam: replace ``lam`` by the exact kept-area fraction after clipping the CutMix box.
        label_smoothing: ``eps`` applied to the one-hot targets before mixing (use
            :class:`~vitlab.losses.SoftTargetCrossEntropy` on the result; see :func:`mixing_loss`).
        cutmix_minmax: optional ``(lo, hi)`` bounds of the box sides as fractions of the image side.
        cutout_fill: ``'zero'`` or ``'mean'`` (per-sample, per-channel mean).
        generator: the source of every random number; ``None`` makes a private generator with a
            non-deterministic seed (pass one, e.g. ``torch.Generator().manual_seed(0)``, to reproduce).

    Call:
        ``mixer(images, target)`` with ``images: (B, C, H, W)`` float and ``target: (B,)`` integer
        returns ``(mixed_images (B, C, H, W), soft_targets (B, K))``.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        cutout_size: int = 0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.0,
        cutmix_minmax: tuple[float, float] | None = None,
        cutout_fill: str = "zero",
        generator: torch.Generator | None = None,
    ) -> None:
        if int(num_classes) != num_classes or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer, got {num_classes}")
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be >= 0 (0 turns it off), got {value}")
        if int(cutout_size) != cutout_size or cutout_size < 0:
            raise ConfigError(f"cutout_size must be a non-negative integer (pixels), got {cutout_size}")
        for name, value in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if mode not in MODES:
            raise ConfigError(unknown_name_message("mix mode", str(mode), MODES))
        if cutout_fill not in FILLS:
            raise ConfigError(unknown_name_message("cutout fill", str(cutout_fill), FILLS))
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if cutmix_minmax is not None:
            if len(cutmix_minmax) != 2 or not 0.0 < cutmix_minmax[0] <= cutmix_minmax[1] <= 1.0:
                raise ConfigError(f"cutmix_minmax must be (lo, hi) with 0 < lo <= hi <= 1, got {cutmix_minmax}")
            cutmix_minmax = (float(cutmix_minmax[0]), float(cutmix_minmax[1]))
        self.num_classes = int(num_classes)
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.cutout_size = int(cutout_size)
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)
        self.mode = mode
        self.correct_lam = bool(correct_lam)
        self.label_smoothing = float(label_smoothing)
        self.cutmix_minmax = cutmix_minmax
        self.cutout_fill = cutout_fill
        if generator is None:
            generator = torch.Generator()
            generator.seed()  # non-deterministic seed for this private generator; global RNG untouched
        self.generator = generator
        self.enabled = True  # a training loop may switch mixing off for the last epochs

    # -- configuration -------------------------------------------------------------------------

    @property
    def mixup_on(self) -> bool:
        return self.mixup_alpha > 0

    @property
    def cutmix_on(self) -> bool:
        return self.cutmix_alpha > 0 or self.cutmix_minmax is not None

    @property
    def active(self) -> bool:
        """True when a call can change images: mixing with ``prob > 0``, or Cutout, configured and enabled."""
        return self.enabled and (((self.mixup_on or self.cutmix_on) and self.prob > 0) or self.cutout_size > 0)

    def __repr__(self) -> str:
        return (
            f"Mixer(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
            f"cutout_size={self.cutout_size}, prob={self.prob}, switch_prob={self.switch_prob}, mode='{self.mode}', "
            f"correct_lam={self.correct_lam}, label_smoothing={self.label_smoothing}, "
            f"cutmix_minmax={self.cutmix_minmax}, cutout_fill='{self.cutout_fill}')"
        )

    # -- sampling ------------------------------------------------------------------------------

    def _draw(self, n: int, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` independent draws of (lam (n,) float64, kind (n,) long, box (n, 4) long)."""
        g = self.generator
        dev = g.device
        ones = torch.ones(n, dtype=torch.float64, device=dev)
        kind = torch.zeros(n, dtype=torch.long, device=dev)
        box = torch.zeros(n, 4, dtype=torch.long, device=dev)
        if not self.enabled or n == 0 or not (self.mixup_on or self.cutmix_on):
            return ones, kind, box
        r = torch.rand(2, n, dtype=torch.float64, device=dev, generator=g)
        apply = r[0] < self.prob  # (n,)
        both = self.mixup_on and self.cutmix_on
        use_cutmix = r[1] < self.switch_prob if both else torch.full((n,), self.cutmix_on, device=dev)
        # One Beta(alpha, alpha) draw per sample, alpha being that sample's method's alpha.
        if self.cutmix_minmax is None:
            if both:
                alpha: float | Tensor = torch.where(use_cutmix, self.cutmix_alpha, self.mixup_alpha)
            else:
                alpha = self.cutmix_alpha if self.cutmix_on else self.mixup_alpha
            lam_beta = _symmetric_beta(alpha, n, g)  # alphas were validated in __init__
        else:  # the box size is drawn directly; lam only matters for Mixup
            lam_beta = _symmetric_beta(self.mixup_alpha, n, g) if self.mixup_on else ones
        lam_cut, cut_box = ones, box
        if self.cutmix_on:
            if self.cutmix_minmax is None:
                cy = torch.randint(0, height, (n,), device=dev, generator=g)
                cx = torch.randint(0, width, (n,), device=dev, generator=g)
                cut_box = cutmix_box(lam_beta, cy, cx, height, width)
                lam_cut = lam_beta
            else:
                lo, hi = self.cutmix_minmax
                cut_h = torch.randint(int(height * lo), int(height * hi) + 1, (n,), device=dev, generator=g)
                cut_w = torch.randint(int(width * lo), int(width * hi) + 1, (n,), device=dev, generator=g)
                u = torch.rand(2, n, dtype=torch.float64, device=dev, generator=g)
                # top-left corner uniform over all H - cut + 1 positions (min() guards float rounding)
                y_lo = torch.minimum(torch.floor(u[0] * (height - cut_h + 1)).long(), height - cut_h)
                x_lo = torch.minimum(torch.floor(u[1] * (width - cut_w + 1)).long(), width - cut_w)
                cut_box = torch.stack([y_lo, y_lo + cut_h, x_lo, x_lo + cut_w], dim=1)
            if self.correct_lam or self.cutmix_minmax is not None:
                # (HW - area) / HW: the correctly rounded kept fraction (1 - area / HW can be 1 ulp off)
                lam_cut = (height * width - _box_area(cut_box)).to(torch.float64) / float(height * width)
        lam = torch.where(apply, torch.where(use_cutmix, lam_cut, lam_beta), ones)
        kind = torch.where(apply, torch.where(use_cutmix, CUTMIX, MIXUP), NONE)
        box = torch.where((kind == CUTMIX).unsqueeze(1), cut_box, box)
        return lam, kind, box

    def sample(self, batch_size: int, height: int, width: int) -> MixParams:
        """Draw the random parameters of one call for a (B, C, H, W) batch (on the generator's device)."""
        b = int(batch_size)
        shared = False
        if self.mode == "elem":
            lam, kind, box = self._draw(b, height, width)
        elif self.mode == "pair":
            lam_p, kind_p, box_p = self._draw(b // 2, height, width)
            mid = b % 2  # odd batch: the middle sample is its own partner and stays untouched
            dev = lam_p.device
            lam = torch.cat([lam_p, torch.ones(mid, dtype=lam_p.dtype, device=dev), lam_p.flip(0)])
            kind = torch.cat([kind_p, torch.zeros(mid, dtype=kind_p.dtype, device=dev), kind_p.flip(0)])
            box = torch.cat([box_p, torch.zeros(mid, 4, dtype=box_p.dtype, device=dev), box_p.flip(0)])
        else:
            lam1, kind1, box1 = self._draw(1, height, width)
            lam, kind, box = lam1.expand(b), kind1.expand(b), box1.expand(b, 4)
            shared = True
        hole = None
        if self.enabled and self.cutout_size > 0:
            g = self.generator
            cy = torch.randint(0, height, (b,), device=g.device, generator=g)
            cx = torch.randint(0, width, (b,), device=g.device, generator=g)
            size = torch.full((b,), self.cutout_size, dtype=torch.long, device=g.device)
            y_lo, y_hi = _clipped_span(cy, size, height)
            x_lo, x_hi = _clipped_span(cx, size, width)
            hole = torch.stack([y_lo, y_hi, x_lo, x_hi], dim=1)
        return MixParams(lam=lam, kind=kind, box=box, hole=hole, shared=shared)

    # -- applying ------------------------------------------------------------------------------

    def _check(self, images: Tensor, target: Tensor) -> None:
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise DataError(f"images must be a (B, C, H, W) tensor, got shape {shape}; add a batch/channel dim")
        if not images.is_floating_point():
            raise DataError(f"images must be floating point, got {images.dtype}; convert with images.float()")
        if not isinstance(target, Tensor) or target.dim() != 1 or target.shape[0] != images.shape[0]:
            shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
            raise DataError(
                f"target must be (B,) = ({images.shape[0]},) class indices, got shape {shape}; "
                "pass integer labels, not one-hot"
            )

    def apply(self, images: Tensor, target: Tensor, params: MixParams) -> tuple[Tensor, Tensor]:
        """Mix ``images`` (B, C, H, W) and ``target`` (B,) with given ``params``; returns new tensors.

        ``out = lerp(x_flip, x, w) = x_flip + w (x - x_flip)`` with the per-pixel weight ``w`` of shape
        (B, 1, H, W): ``lam`` (Mixup), 0 inside the box and 1 outside (CutMix), 1 (untouched).
        ``torch.lerp`` is exact at ``w = 0`` and ``w = 1``, so pasted and untouched pixels are
        bit-exact copies. Then Cutout fills its squares. Soft targets:
        ``lam * q'(y_i) + (1 - lam) * q'(y_{B-1-i})`` with ``q'`` the smoothed one-hot.
        """
        self._check(images, target)
        b, _, height, width = images.shape
        dev = images.device
        tdtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        q = smooth_one_hot(target, self.num_classes, self.label_smoothing, dtype=tdtype)  # (B, K)
        out = images
        kinds = params.kind
        if bool((kinds != NONE).any()):
            if params.shared:  # batch mode: one lam / box for all, plain slicing
                kind0, lam0 = int(kinds[0]), float(params.lam[0])
                if kind0 == CUTMIX:
                    y_lo, y_hi, x_lo, x_hi = (int(v) for v in params.box[0])
                    out = images.clone()
                    # only the box is read from the flipped batch (flipping all of it would cost a full copy)
                    out[:, :, y_lo:y_hi, x_lo:x_hi] = images[:, :, y_lo:y_hi, x_lo:x_hi].flip(0)
                else:
                    out = images.flip(0).lerp_(images, lam0)
            else:
                lam_own = torch.where(kinds == CUTMIX, 1.0, params.lam)  # (B,) weight of x outside boxes
                w = lam_own.to(device=dev, dtype=images.dtype).view(b, 1, 1, 1)
                if bool((kinds == CUTMIX).any()):
                    # w = lam_own - M: 0 inside a CutMix box, 1 outside it; non-CutMix boxes are empty.
                    # One addcmul builds the (B, 1, H, W) map from the (B, 1, H, 1) and (B, 1, 1, W) factors.
                    in_rows, in_cols = _box_factors(params.box.to(dev), height, width)
                    w = torch.addcmul(w, in_rows.to(images.dtype), in_cols.to(images.dtype), value=-1.0)
                out = images.flip(0).lerp_(images, w)
            # q~ = lam q'(y_i) + (1 - lam) q'(y_{B-1-i}) = lerp(q'.flip(0), q', lam)
            q = torch.lerp(q.flip(0), q, params.lam.to(device=dev, dtype=tdtype).unsqueeze(1))
        if params.hole is not None:
            in_rows, in_cols = _box_factors(params.hole.to(dev), height, width)
            hole = in_rows & in_cols  # (B, 1, H, W) bool
            if self.cutout_fill == "mean":
                fill = out.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
                out = torch.where(hole, fill, out)
            elif out is images:
                out = images.masked_fill(hole, 0.0)
            else:
                out.masked_fill_(hole, 0.0)  # our own buffer, not the caller's
        return out, q

    def __call__(self, images: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Mix a batch: ``images`` (B, C, H, W) float, ``target`` (B,) integer -> (images, soft targets (B, K))."""
        self._check(images, target)
        if images.shape[2] < 1 or images.shape[3] < 1:
            raise DataError(f"Mixer: images must be at least 1×1, got shape {tuple(images.shape)}")
        params = self.sample(images.shape[0], images.shape[2], images.shape[3])
        return self.apply(images, target, params)


# ---------------------------------------------------------------------------------------------
# Wiring for a training loop


def mixing_loss(mixer: Mixer | None, smoothing: float = 0.0) -> nn.Module:
    """The training loss that goes with ``mixer``, so that label smoothing is applied exactly once.

    * ``mixer`` active: its targets are soft and already smoothed (``mixer.label_smoothing``), so the
      loss is :class:`~vitlab.losses.SoftTargetCrossEntropy` (no smoothing of its own). ``smoothing``
      must equal ``mixer.label_smoothing``.
    * ``mixer`` is ``None`` or inactive: :class:`~vitlab.losses.LabelSmoothingCrossEntropy` with
      ``smoothing``, applied to integer targets (do not call the mixer then).
    """
    if mixer is not None and mixer.active:
        if abs(float(smoothing) - mixer.label_smoothing) > 0.0:
            raise ConfigError(
                f"label smoothing {smoothing} differs from the Mixer's label_smoothing={mixer.label_smoothing}; "
                "build the Mixer with the same label_smoothing (it smooths the mixed targets)"
            )
        return SoftTargetCrossEntropy()
    return LabelSmoothingCrossEntropy(smoothing)


def build_mixing(
    num_classes: int,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    cutout_size: int = 0,
    mix_prob: float = 1.0,
    switch_prob: float = 0.5,
    mix_mode: str = "batch",
    label_smoothing: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[Mixer | None, nn.Module]:
    """Build ``(mixer, loss)`` from the training config keys of the same names.

    Returns ``(None, LabelSmoothingCrossEntropy(label_smoothing))`` when nothing is configured, else
    ``(Mixer(...), SoftTargetCrossEntropy())``. In the loop::

        if mixer is not None:
            images, targets = mixer(images, labels)  # soft (B, K), smoothing included
        loss = loss_fn(model(images), targets)
    """
    mixer = Mixer(
        num_classes,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        cutout_size=cutout_size,
        prob=mix_prob,
        switch_prob=switch_prob,
        mode=mix_mode,
        label_smoothing=label_smoothing,
        generator=generator if generator is not None else torch.Generator().manual_seed(0),
    )
    if not mixer.active:
        return None, LabelSmoothingCrossEntropy(label_smoothing)
    return mixer, mixing_loss(mixer, label_smoothing)
