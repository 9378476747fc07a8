"""Label-smoothing and soft-target cross-entropy.

Paper:
    Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception Architecture for Computer
    Vision", CVPR 2016 (arXiv:1512.00567), Section 7, "label-smoothing regularization": the one-hot
    target ``q(k) = delta_{k,y}`` is replaced by

        q'(k) = (1 - eps) * delta_{k,y} + eps / K,

    and the loss is the cross-entropy ``H(q', p) = -sum_k q'(k) log p(k)
    = (1 - eps) H(q, p) + eps H(u, p)`` with ``u`` the uniform distribution over the ``K`` classes.

Class weights and ``ignore_index`` (PyTorch's exact semantics, which
:class:`LabelSmoothingCrossEntropy` reproduces). With ``log p = log_softmax(x)``, weight ``w``
(all ones if not given) and ``m_n = [y_n != ignore_index]``, the per-element loss is

    l_n = m_n * [ (1 - eps) * w_{y_n} * (-log p_{n, y_n})  +  (eps / K) * sum_k w_k * (-log p_{n, k}) ],

i.e. the smoothing term weights every class by its own weight (not by the target's). Reduction
``'sum'`` is ``sum_n l_n``, ``'none'`` returns ``l`` with the target's shape, and ``'mean'`` divides
**both** terms by the same normaliser ``sum_n m_n * w_{y_n}`` (the weight mass of the non-ignored
targets; the count of non-ignored elements when there are no weights). A batch whose targets are all
ignored therefore gives ``0 / 0 = nan`` under ``'mean'``, as in PyTorch.

Precision: both losses are computed in float32 (float64 for float64 logits) whatever the logits'
dtype and outside any autocast region: float16 / bfloat16 logits are upcast, and soft targets are
never rounded down to the logits' dtype (a bf16 mixed and smoothed target row would sum to
0.998-1.002, and a bf16 log-softmax loses three decimal digits). Under bf16 logits the loss equals
the float32 computation on the upcast logits, bit for bit; the gradient flows back to the logits in
their own dtype.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.errors import ConfigError, DataError

__all__ = ["LabelSmoothingCrossEntropy", "SoftTargetCrossEntropy", "smooth_one_hot"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_smoothing(smoothing: float) -> float:
    smoothing = float(smoothing)
    if not 0.0 <= smoothing < 1.0:
        raise ConfigError(f"label smoothing must be in [0, 1), got {smoothing}; typical values are 0.1 or 0.0 (off)")
    return smoothing


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ConfigError(f"reduction must be one of {', '.join(_REDUCTIONS)}, got '{reduction}'")
    return reduction


def _compute_dtype(logits: Tensor) -> torch.dtype:
    """float32 for float16 / bfloat16 / float32 logits, float64 for float64 ones."""
    return torch.promote_types(logits.dtype, torch.float32)


def _full_precision(device: torch.device):  # noqa: ANN202 - a context manager
    """A region where autocast casts nothing down (the losses' explicit dtypes hold)."""
    return torch.autocast(device_type=device.type, enabled=False) if device.type in ("cpu", "cuda") else nullcontext()


def smooth_one_hot(
    target: Tensor, num_classes: int, smoothing: float = 0.0, dtype: torch.dtype | None = None
) -> Tensor:
    """Label-smoothed one-hot targets ``q'(k) = (1 - eps) * [k == y] + eps / K`` (Szegedy et al. 2016).

    Built by filling ``eps / K`` everywhere and writing ``1 - eps + eps / K`` at the target class
    with ``Tensor.scatter_`` along the last dimension.

    Args:
        target: (...,) integer class indices in ``[0, num_classes)``.
        num_classes: ``K``.
        smoothing: ``eps`` in ``[0, 1)``.
        dtype: float dtype of the result (default ``torch.get_default_dtype()``).

    Returns:
        (..., K) tensor whose rows sum to 1.
    """
    smoothing = _check_smoothing(smoothing)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if (
        not isinstance(target, Tensor)
        or target.is_floating_point()
        or target.is_complex()
        or target.dtype == torch.bool
    ):
        desc = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise DataError(f"target must be an integer tensor of class indices, got {desc}; use target.long()")
    if target.numel() and bool(((target < 0) | (target >= num_classes)).any()):
        bad = target[(target < 0) | (target >= num_classes)].flatten()[0].item()
        raise DataError(f"target contains {bad}, outside [0, {num_classes}); check num_classes and the labels")
    dtype = dtype or torch.get_default_dtype()
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    out = torch.full((*target.shape, num_classes), off, dtype=dtype, device=target.device)
    return out.scatter_(-1, target.long().unsqueeze(-1), on)


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy with label smoothing, class weights and ``ignore_index`` (see module docstring).

    Equal to ``F.cross_entropy(x, y, weight, ignore_index=..., reduction=..., label_smoothing=eps)``.

    Args:
        smoothing: ``eps`` in ``[0, 1)``.
        ignore_index: target value whose elements contribute nothing (and nothing to the mean).
        weight: optional (K,) per-class weights.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Shapes:
        logits: (N, K) or (N, K, d1, ..., dm) or (K,); target: (N,) or (N, d1, ..., dm) or ().
    """

    def __init__(
        self,
        smoothing: float = 0.0,
        ignore_index: int = -100,
        weight: Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.smoothing = _check_smoothing(smoothing)
        self.ignore_index = int(ignore_index)
        self.reduction = _check_reduction(reduction)
        if weight is not None:
            weight = torch.as_tensor(weight)
            if weight.dim() != 1 or not weight.is_floating_point():
                raise ConfigError(f"weight must be a 1-D float tensor (K,), got {tuple(weight.shape)} {weight.dtype}")
        self.register_buffer("weight", weight)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}, ignore_index={self.ignore_index}, reduction='{self.reduction}'"

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` (N, K, ...) against class indices ``target`` (N, ...)."""
        if logits.dim() == 0 or logits.shape[1 if logits.dim() > 1 else 0] == 0:
            raise DataError(f"logits must be (N, K, ...) or (K,) with K >= 1 classes, got shape {tuple(logits.shape)}")
        if logits.dim() == 1:  # unbatched (K,) with target ()
            if target.dim() != 0:
                raise DataError(f"unbatched logits (K,) need a scalar target, got shape {tuple(target.shape)}")
            logits, target = logits.unsqueeze(0), target.reshape(1)
            out = self.forward(logits, target)
            return out.squeeze(0) if self.reduction == "none" else out
        if not logits.is_floating_point():
            raise DataError(f"logits must be floating point, got {logits.dtype}; convert with .float()")
        if target.is_floating_point():
            raise DataError(
                f"target must hold class indices (integer), got {target.dtype}; "
                "for probabilities use SoftTargetCrossEntropy"
            )
        expected = (logits.shape[0], *logits.shape[2:])
        if tuple(target.shape) != expected:
            raise DataError(
                f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}; "
                f"expected {expected} (logits are (N, K, d1, ...), target (N, d1, ...))"
            )
        num_classes = logits.shape[1]
        weight = self.weight
        if weight is not None and weight.shape[0] != num_classes:
            raise DataError(f"weight has {weight.shape[0]} entries but logits have {num_classes} classes")
        target = target.long()
        keep = target != self.ignore_index  # (N, ...)
        if bool((keep & ((target < 0) | (target >= num_classes))).any()):
            bad = target[keep & ((target < 0) | (target >= num_classes))][0].item()
            raise DataError(
                f"target contains {bad}, outside [0, {num_classes}) and not ignore_index={self.ignore_index}"
            )
        safe_target = torch.where(keep, target, torch.zeros_like(target))  # (N, ...)
        with _full_precision(logits.device):
            return self._loss(logits.to(_compute_dtype(logits)), safe_target, keep, weight, num_classes)

    def _loss(
        self, logits: Tensor, safe_target: Tensor, keep: Tensor, weight: Tensor | None, num_classes: int
    ) -> Tensor:
        """The module docstring's formula on float32 / float64 ``logits`` (N, K, ...)."""
        log_p = F.log_softmax(logits, dim=1)  # (N, K, ...)
        nll = -log_p.gather(1, safe_target.unsqueeze(1)).squeeze(1)  # (N, ...): -log p_{n, y_n}
        if weight is not None:
            w = weight.to(log_p.dtype)
            w_target = w[safe_target]  # (N, ...)
            w_classes = w.view(1, -1, *([1] * (logits.dim() - 2)))  # (1, K, 1, ...)
            smooth = -(log_p * w_classes).sum(dim=1)  # (N, ...): -sum_k w_k log p_{n, k}
        else:
            w_target = torch.ones_like(nll)
            smooth = -log_p.sum(dim=1)
        eps = self.smoothing
        loss = (1.0 - eps) * w_target * nll + (eps / num_classes) * smooth  # (N, ...)
        loss = torch.where(keep, loss, torch.zeros_like(loss))
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        normaliser = torch.where(keep, w_target, torch.zeros_like(w_target)).sum()
        return loss.sum() / normaliser


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy against a target distribution: ``l_n = -sum_k q_{n,k} log softmax(x_n)_k``.

    Used with mixed (Mixup / CutMix) targets, which already contain any label smoothing, so no
    further smoothing is applied here. Equal to ``F.cross_entropy(x, q)`` with probability targets.

    Args:
        reduction: ``'mean'`` (over samples), ``'sum'`` or ``'none'``.

    Shapes:
        logits: (N, K); soft_targets: (N, K), rows non-negative and summing to 1. The loss is
        float32 (float64 for float64 logits), see the module docstring.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"reduction='{self.reduction}'"

    def forward(self, logits: Tensor, soft_targets: Tensor) -> Tensor:
        """Loss (a scalar, or (N,) for ``reduction='none'``)."""
        if logits.dim() != 2 or tuple(soft_targets.shape) != tuple(logits.shape):
            raise DataError(
                f"logits {tuple(logits.shape)} and soft_targets {tuple(soft_targets.shape)} must both be (N, K); "
                "build soft targets with smooth_one_hot() or a Mixer"
            )
        if not logits.is_floating_point():
            raise DataError(f"logits must be floating point, got {logits.dtype}; convert with .float()")
        if not soft_targets.is_floating_point():
            raise DataError(
                f"soft_targets must be float probabilities, got {soft_targets.dtype}; "
                "for class indices use LabelSmoothingCrossEntropy"
            )
        dtype = _compute_dtype(logits)
        with _full_precision(logits.device):
            log_p = F.log_softmax(logits.to(dtype), dim=1)  # (N, K) in float32 / float64
            loss = -(soft_targets.to(dtype) * log_p).sum(dim=1)  # (N,)
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.mean()
