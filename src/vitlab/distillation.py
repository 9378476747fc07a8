"""Knowledge distillation losses of DeiT (Touvron et al. 2021, Sec. 4, eqs. 2 and 3).

With Z_s the student's logits, Z_t the teacher's, ψ the softmax, y the true label:

* **soft distillation** (eq. 2, after Hinton et al. 2015), temperature τ and weight λ:

      L = (1 − λ) L_CE(ψ(Z_s), y) + λ τ² KL(ψ(Z_t / τ) ‖ ψ(Z_s / τ)),

  the KL divergence of the student's tempered distribution from the teacher's, averaged over the samples;
* **hard-label distillation** (eq. 3), the teacher's decision y_t = argmax_c Z_t(c) as a second label:

      L = (1 − λ) L_CE(ψ(Z_s), y) + λ L_CE(ψ(Z_s), y_t),   λ = 1/2 in the paper.

With DeiT's distillation token the student has two heads: the first term is the class head's, the second the
distillation head's (Sec. 4, "Distillation token"). ``L_CE(ψ(Z_s), y)`` is the run's own criterion (label
smoothing, or the soft-target cross-entropy of Mixup/CutMix), so distillation composes with both; the teacher
scores the same augmented, mixed batch as the student (the task's job: :class:`DistillationLoss` takes its logits).

One choice differs from DeiT's code, which divides the soft term's summed KL by the number of *logits*
(B · K) rather than samples: vitlab averages over the samples, as eq. 2 reads (the code's λ is then K times smaller
than the paper's for the same number).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.errors import ConfigError, unknown_name_message

__all__ = ["KINDS", "DistillationLoss", "hard_distillation", "soft_distillation"]

KINDS = ("hard", "soft", "none")


def soft_distillation(student: Tensor, teacher: Tensor, tau: float) -> Tensor:
    """τ² KL(ψ(Z_t/τ) ‖ ψ(Z_s/τ)), averaged over the batch. student, teacher: (B, K) logits; the teacher's are
    treated as constants."""
    log_student = F.log_softmax(student.float() / tau, dim=1)
    log_teacher = F.log_softmax(teacher.detach().float() / tau, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * tau * tau


def hard_distillation(student: Tensor, teacher: Tensor) -> Tensor:
    """L_CE(ψ(Z_s), argmax Z_t), averaged over the batch. student, teacher: (B, K) logits."""
    return F.cross_entropy(student.float(), teacher.detach().argmax(dim=1))


class DistillationLoss(nn.Module):
    """``(1 − λ) base(class logits, targets) + λ D(distillation logits, teacher logits)``, D by ``kind``.

    Args:
        base: the run's criterion on the true (possibly smoothed or mixed) targets.
        kind: ``"hard"`` (eq. 3), ``"soft"`` (eq. 2) or ``"none"`` (the base criterion alone).
        alpha: λ in [0, 1] (the paper: 1/2 for hard, 0.1 for soft).
        tau: τ > 0, the soft temperature (the paper: 3).
    """

    def __init__(self, base: nn.Module, kind: str = "hard", alpha: float = 0.5, tau: float = 1.0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(unknown_name_message("distillation kind", kind, KINDS))
        if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
            raise ConfigError(f"distillation alpha must be in [0, 1], got {alpha}; DeiT uses 0.5 (hard) or 0.1 (soft)")
        if not (math.isfinite(tau) and tau > 0):
            raise ConfigError(f"distillation tau must be > 0, got {tau}; DeiT uses 3 for soft distillation")
        self.base, self.kind, self.alpha, self.tau = base, kind, float(alpha), float(tau)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, alpha={self.alpha}, tau={self.tau}"

    def forward(self, outputs: Tensor | tuple[Tensor, Tensor], targets: Tensor, teacher: Tensor | None) -> Tensor:
        """Args:
            outputs: the student's (B, K) logits, or ``(class logits, distillation logits)`` of a distilled ViT.
            targets: what ``base`` takes: (B,) labels or (B, K) soft targets.
            teacher: (B, K) teacher logits on the same batch (``None`` only with ``kind="none"``).
        """
        cls_logits, dist_logits = outputs if isinstance(outputs, tuple) else (outputs, outputs)
        base = self.base(cls_logits, targets)
        if self.kind == "none":
            return base
        if teacher is None or teacher.shape != dist_logits.shape:
            shape = None if teacher is None else tuple(teacher.shape)
            raise ConfigError("distillation needs teacher logits shaped like the student's "
                              f"{tuple(dist_logits.shape)}, got {shape}")
        if self.kind == "soft":
            distill = soft_distillation(dist_logits, teacher, self.tau)
        else:
            distill = hard_distillation(dist_logits, teacher)
        return (1.0 - self.alpha) * base + self.alpha * distill
