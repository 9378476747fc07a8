"""Classification metrics: top-k accuracy, confusion matrix, calibration (ECE) and temperature scaling.

Papers:
    Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017
    (arXiv:1706.04599). Section 2, Eq. (3): the expected calibration error over ``M`` equal-width
    confidence bins ``B_1..B_M``,

        ECE = sum_m |B_m| / n * | acc(B_m) - conf(B_m) |,

    where ``acc(B_m)`` is the accuracy and ``conf(B_m)`` the mean confidence (the largest predicted
    probability) of the samples whose confidence falls in ``B_m = ((m-1)/M, m/M]``. Section 4.2:
    temperature scaling divides the logits by one scalar ``T > 0`` fitted by minimising the
    negative log-likelihood on the validation split; it changes no prediction, only confidences.

Conventions:
    * Bins are left-open, right-closed ``(lo, hi]``; the first bin also holds confidence 0, so the
      bins ``[0, 1/M], (1/M, 2/M], ..., ((M-1)/M, 1]`` cover ``[0, 1]``.
    * Counting functions (:func:`topk_correct`, :func:`confusion_matrix`) return integer tensors on
      the input's device; :func:`topk_correct` never synchronises with the host, so it can be
      accumulated inside a training loop. The validating functions (ECE, confusion matrix) check
      value ranges, which reads one boolean back from the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vitlab.errors import DataError
from vitlab.scatter import scatter_mean, scatter_sum

__all__ = [
    "confusion_matrix",
    "expected_calibration_error",
    "fit_temperature",
    "per_class_accuracy",
    "reliability_bins",
    "topk_correct",
]


def _check_logits_target(logits: Tensor, target: Tensor, what: str = "logits") -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise DataError(f"{what} must be a 2-D tensor (N, C), got shape {shape}; flatten extra dims first")
    if not logits.is_floating_point():
        raise DataError(f"{what} must be floating point, got {logits.dtype}; convert with .float()")
    if not isinstance(target, Tensor) or target.dim() != 1:
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise DataError(f"labels must be a 1-D tensor (N,), got shape {shape}; pass class indices, not one-hot")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise DataError(f"labels must be an integer tensor of class indices, got {target.dtype}; use .long()")
    if logits.shape[0] != target.shape[0]:
        raise DataError(
            f"{what} has {logits.shape[0]} rows but labels has {target.shape[0]}; pass one label per row"
        )


def _check_label_range(target: Tensor, num_classes: int, what: str = "labels") -> None:
    if target.numel() and bool(((target < 0) | (target >= num_classes)).any()):
        bad = target[(target < 0) | (target >= num_classes)][0].item()
        raise DataError(f"{what} contain {bad}, outside [0, {num_classes}); labels must be class indices")


def topk_correct(logits: Tensor, target: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, Tensor]:
    """Number of samples whose target is among the ``k`` highest logits, for each ``k`` in ``ks``.

    With ``idx = logits.topk(k_max).indices`` (N, k_max), ``hit[n, j] = idx[n, j] == target[n]``;
    the running maximum ``cummax(hit, dim=1)`` marks whether the target appeared in the first
    ``j + 1`` predictions, and ``torch.gather`` picks its column ``k - 1`` for every ``k``.
    Ties between equal logits are broken as ``torch.topk`` breaks them. ``k`` larger than ``C`` is
    clipped to ``C`` (so every sample counts). No host synchronisation.

    Args:
        logits: (N, C) scores (any monotone transform of them, e.g. probabilities, gives the same).
        target: (N,) integer class indices.
        ks: the ``k`` values, each >= 1.

    Returns:
        ``{k: count}`` where ``count`` is a 0-dim ``torch.long`` tensor on ``logits.device``.
    """
    _check_logits_target(logits, target)
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise DataError(f"ks must be a non-empty list of integers >= 1, got {ks}; e.g. ks=(1, 5)")
    num_classes = logits.shape[1]
    if num_classes == 0:
        raise DataError("logits has 0 classes (shape (N, 0)); the model must output at least one class")
    k_max = min(max(ks), num_classes)
    idx = logits.topk(k_max, dim=1).indices  # (N, k_max)
    hit = idx.eq(target.to(idx.dtype).unsqueeze(1))  # (N, k_max)
    seen = hit.to(torch.uint8).cummax(dim=1).values  # (N, k_max): target within the first j+1
    columns = torch.tensor([min(k, k_max) - 1 for k in ks], device=logits.device, dtype=torch.long)
    picked = torch.gather(seen, 1, columns.unsqueeze(0).expand(seen.shape[0], -1))  # (N, len(ks))
    counts = picked.sum(dim=0, dtype=torch.long)  # (len(ks),)
    return {k: counts[i] for i, k in enumerate(ks)}


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Confusion matrix ``M[t, p]`` = number of samples of true class ``t`` predicted as ``p``.

    Built with one scatter-add (:func:`vitlab.scatter.scatter_sum`) over the flat index
    ``t * K + p`` into ``K * K`` counters.

    Args:
        pred: (N,) predicted class indices.
        target: (N,) true class indices.
        num_classes: ``K``.

    Returns:
        (K, K) ``torch.long`` tensor; rows are true classes, columns predicted classes.
    """
    if num_classes < 1:
        raise DataError(f"num_classes must be >= 1, got {num_classes}")
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor) or t.dim() != 1 or t.is_floating_point() or t.is_complex():
            desc = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
            raise DataError(f"{name} must be a 1-D integer tensor (N,), got {desc}; use logits.argmax(1) for pred")
    if pred.shape[0] != target.shape[0]:
        raise DataError(f"pred has {pred.shape[0]} entries but target has {target.shape[0]}; they must match")
    _check_label_range(pred, num_classes, "pred")
    _check_label_range(target, num_classes, "target")
    flat = target.long() * num_classes + pred.long()  # (N,)
    # Labels were range-checked above, so the scatter needs no second check.
    counts = scatter_sum(torch.ones_like(flat), flat, dim=0, dim_size=num_classes * num_classes, check=False)
    return counts.view(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """Recall of each class: ``acc[k] = M[k, k] / sum_p M[k, p]``.

    A class with no samples (an all-zero row) gets accuracy **0.0**, not NaN, so the result can be
    averaged and logged; check ``confusion.sum(1) > 0`` to tell "absent" from "always wrong".

    Args:
        confusion: (K, K) counts from :func:`confusion_matrix` (rows = true class).

    Returns:
        (K,) float32 tensor in [0, 1].
    """
    if not isinstance(confusion, Tensor) or confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        shape = tuple(confusion.shape) if isinstance(confusion, Tensor) else type(confusion).__name__
        raise DataError(f"confusion must be a square (K, K) tensor, got {shape}; build it with confusion_matrix()")
    support = confusion.sum(dim=1).to(torch.float32)
    correct = confusion.diagonal().to(torch.float32)
    return torch.where(support > 0, correct / support.clamp_min(1), torch.zeros_like(correct))


def _check_probs(probs: Tensor, labels: Tensor, n_bins: int) -> None:
    _check_logits_target(probs, labels, "probs")
    if int(n_bins) != n_bins or n_bins < 1:
        raise DataError(f"n_bins must be a positive integer, got {n_bins}; Guo et al. use 15")
    if probs.numel() == 0:
        raise DataError(f"probs is empty (shape {tuple(probs.shape)}); calibration needs at least one sample")
    _check_label_range(labels, probs.shape[1])
    # Checked in float32 (a bf16 row sum is itself rounded by up to 2**-8). A softmax output stored
    # in a dtype with unit roundoff u = eps / 2 has |p_i - p_i*| <= u * p_i, so its row sum is within
    # u of 1; the tolerance is one eps of the input dtype (2u), never below the float32 slack.
    tol = max(1e-4, torch.finfo(probs.dtype).eps)
    p32 = probs.detach().to(torch.float32)
    bad_range = (p32 < -tol) | (p32 > 1 + tol) | ~torch.isfinite(p32)
    bad_sum = (p32.sum(dim=1) - 1).abs() > max(tol, 1e-5 * probs.shape[1])
    if bool(bad_range.any() | bad_sum.any()):
        raise DataError(
            "probs must be probabilities in [0, 1] whose rows sum to 1; pass logits.softmax(dim=1), not logits"
        )


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = 15) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin accuracy, mean confidence and count, the data of a reliability diagram.

    Confidence is ``max_c probs[n, c]`` and the prediction its argmax; sample ``n`` goes to bin
    ``b`` with ``b/M < conf_n <= (b+1)/M`` (bin 0 also holds ``conf_n = 0``). The per-bin counts
    and means are segment reductions over the bin index (:mod:`vitlab.scatter`), not a loop over bins.

    Args:
        probs: (N, C) predicted probabilities (rows sum to 1), any floating dtype: float16 /
            bfloat16 rows are accepted within one eps of their dtype, and everything is computed in
            float64.
        labels: (N,) true class indices.
        n_bins: ``M``, the number of equal-width bins over [0, 1].

    Returns:
        ``(acc, conf, counts)``: (M,) float64 accuracy and mean confidence per bin (0 for an empty
        bin) and (M,) ``torch.long`` counts.
    """
    _check_probs(probs, labels, n_bins)
    conf, pred = probs.detach().to(torch.float64).max(dim=1)  # (N,), (N,)
    correct = pred.eq(labels.to(pred.dtype)).to(torch.float64)  # (N,)
    inner_edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=conf.device)[1:-1]
    # bucketize(right=False) returns b with edges[b-1] < x <= edges[b]: exactly the (lo, hi] bins.
    bin_index = torch.bucketize(conf, inner_edges, right=False)  # (N,) in [0, M)
    counts = scatter_sum(torch.ones_like(bin_index), bin_index, dim=0, dim_size=n_bins, check=False)  # (M,)
    # One segment mean over both columns (the 1-D bin index broadcasts along dim 0); empty bins give 0.
    means = scatter_mean(torch.stack([correct, conf], dim=1), bin_index, dim=0, dim_size=n_bins, check=False)
    return means[:, 0], means[:, 1], counts


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> Tensor:
    """Expected calibration error, Guo et al. 2017 Eq. (3), over ``n_bins`` equal-width bins.

    ``ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|`` with the bins of :func:`reliability_bins`.

    Args:
        probs: (N, C) predicted probabilities (``logits.softmax(1)``).
        labels: (N,) true class indices.
        n_bins: number of bins (15 in the paper).

    Returns:
        0-dim float64 tensor in [0, 1].
    """
    acc, conf, counts = reliability_bins(probs, labels, n_bins)
    weights = counts.to(torch.float64) / counts.sum().to(torch.float64)
    return (weights * (acc - conf).abs()).sum()


def _nll_at(logits: Tensor, labels: Tensor, log_t: float) -> float:
    return float(F.cross_entropy(logits / math.exp(log_t), labels, reduction="mean"))


def fit_temperature(
    logits: Tensor,
    labels: Tensor,
    t_min: float = 0.05,
    t_max: float = 20.0,
    tol: float = 1e-6,
) -> float:
    """Temperature scaling (Guo et al. 2017, Sec. 4.2): ``T* = argmin_T NLL(softmax(z / T), y)``.

    ``NLL(beta) = mean_n [logsumexp(beta z_n) - beta z_{n, y_n}]`` is convex in ``beta = 1/T``, hence
    unimodal in ``u = log T``; scipy's bounded Brent search (``scipy.optimize.minimize_scalar``,
    ``method="bounded"``: golden-section steps sped up by parabolic interpolation) over ``u`` in
    ``[log t_min, log t_max]``, on float64 NLLs, finds the minimum deterministically. If the optimum lies
    at or outside the bracket the nearest bound is returned.

    Args:
        logits: (N, C) validation logits (detached; not modified).
        labels: (N,) validation class indices.
        t_min, t_max: search bracket for ``T``.
        tol: absolute tolerance of the search in ``log T`` (scipy's ``xatol``).

    Returns:
        The fitted temperature ``T`` as a Python float; use ``logits / T`` afterwards.
    """
    from scipy.optimize import minimize_scalar  # scipy.optimize costs ~0.3 s to import: only when fitting

    _check_logits_target(logits, labels)
    if logits.shape[0] == 0:
        raise DataError("logits is empty (shape (0, C)); temperature scaling needs validation samples")
    if not (0 < t_min < t_max):
        raise DataError(f"need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    _check_label_range(labels, logits.shape[1])
    if not bool(torch.isfinite(logits).all()):
        raise DataError("logits contain NaN or inf; temperature scaling needs finite logits")
    z = logits.detach().to(torch.float64)
    y = labels.long()
    lo, hi = math.log(t_min), math.log(t_max)
    fit = minimize_scalar(lambda u: _nll_at(z, y, float(u)), bounds=(lo, hi), method="bounded",
                          options={"xatol": tol, "maxiter": 500})
    # The bracket ends are candidates too: the bounded search never evaluates them (optimum at or beyond a bound).
    # They come first, so that where the NLL is flat to float64 (separable logits) the bound wins the tie.
    best = min((lo, hi, float(fit.x)), key=lambda v: _nll_at(z, y, v))
    return math.exp(best)
