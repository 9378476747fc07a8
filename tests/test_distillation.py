"""DeiT's distillation losses (vitlab.distillation) against the paper's equations computed by hand in float64
(eq. 2: soft, eq. 3: hard-label), and their composition with the run's criterion (label smoothing, mixed targets)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vitlab.distillation import DistillationLoss, hard_distillation, soft_distillation
from vitlab.errors import ConfigError
from vitlab.losses import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy


def _by_hand_kl(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> float:
    """τ² · mean over samples of Σ_c p_t log(p_t / p_s), with p = softmax(z / τ), written out."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        ps = [math.exp(v / tau) for v in s_row]
        pt = [math.exp(v / tau) for v in t_row]
        ps, pt = [v / sum(ps) for v in ps], [v / sum(pt) for v in pt]
        total += sum(t * math.log(t / s) for s, t in zip(ps, pt))
    return tau * tau * total / len(student)


def test_hard_distillation_is_eq_3_by_hand() -> None:
    student = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], dtype=torch.float64)
    teacher = torch.tensor([[0.1, 0.9, 0.0], [4.0, 0.0, 0.0]], dtype=torch.float64)  # argmax: 1 and 0
    labels = torch.tensor([0, 2])
    log_softmax = [[v - math.log(sum(math.exp(u) for u in row)) for v in row] for row in student.tolist()]
    ce_true = -(log_softmax[0][0] + log_softmax[1][2]) / 2
    ce_teacher = -(log_softmax[0][1] + log_softmax[1][0]) / 2
    loss = DistillationLoss(torch.nn.CrossEntropyLoss(), "hard", alpha=0.5)(student, labels, teacher)
    assert loss.item() == pytest.approx(0.5 * ce_true + 0.5 * ce_teacher, rel=1e-6)
    assert hard_distillation(student, teacher).item() == pytest.approx(ce_teacher, rel=1e-6)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_soft_distillation_is_eq_2_by_hand(tau: float) -> None:
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 5, generator=g).double(), torch.randn(4, 5, generator=g).double() * 2
    labels = torch.tensor([0, 1, 2, 3])
    kl = _by_hand_kl(student, teacher, tau)
    assert soft_distillation(student, teacher, tau).item() == pytest.approx(kl, rel=1e-5)
    loss = DistillationLoss(torch.nn.CrossEntropyLoss(), "soft", alpha=0.1, tau=tau)(student, labels, teacher)
    assert loss.item() == pytest.approx(0.9 * F.cross_entropy(student, labels).item() + 0.1 * kl, rel=1e-5)


def test_the_two_heads_get_their_own_terms_and_the_teacher_no_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    cls_logits = torch.randn(6, 4, generator=g, requires_grad=True)
    dist_logits = torch.randn(6, 4, generator=g, requires_grad=True)
    teacher = torch.randn(6, 4, generator=g, requires_grad=True)
    labels = torch.randint(0, 4, (6,), generator=g)
    loss = DistillationLoss(torch.nn.CrossEntropyLoss(), "hard", alpha=0.5)((cls_logits, dist_logits), labels, teacher)
    loss.backward()
    expected_cls = torch.autograd.grad(0.5 * F.cross_entropy(cls_logits, labels), cls_logits)[0]
    expected_dist = torch.autograd.grad(0.5 * F.cross_entropy(dist_logits, teacher.argmax(1)), dist_logits)[0]
    torch.testing.assert_close(cls_logits.grad, expected_cls)
    torch.testing.assert_close(dist_logits.grad, expected_dist)
    assert teacher.grad is None


def test_it_composes_with_label_smoothing_and_mixed_targets() -> None:
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    labels = torch.randint(0, 10, (8,), generator=g)
    smoothed = DistillationLoss(LabelSmoothingCrossEntropy(0.1), "hard", 0.5)(student, labels, teacher)
    assert smoothed.item() == pytest.approx(
        0.5 * F.cross_entropy(student, labels, label_smoothing=0.1).item()
        + 0.5 * F.cross_entropy(student, teacher.argmax(1)).item(), rel=1e-5)
    mixed = torch.softmax(torch.randn(8, 10, generator=g), 1)  # Mixup/CutMix targets: rows of probabilities
    soft = DistillationLoss(SoftTargetCrossEntropy(), "soft", 0.1, 3.0)(student, mixed, teacher)
    reference = -(mixed * F.log_softmax(student, 1)).sum(1).mean()
    assert soft.item() == pytest.approx(0.9 * reference.item() + 0.1 * _by_hand_kl(student.double(), teacher.double(), 3.0),
                                        rel=1e-5)


def test_none_is_the_base_criterion_and_bad_settings_are_refused() -> None:
    student, labels = torch.randn(3, 4), torch.tensor([0, 1, 2])
    assert torch.equal(DistillationLoss(torch.nn.CrossEntropyLoss(), "none")(student, labels, None),
                       F.cross_entropy(student, labels))
    with pytest.raises(ConfigError, match="unknown distillation kind 'hrad'"):
        DistillationLoss(torch.nn.CrossEntropyLoss(), "hrad")
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\], got 1.5"):
        DistillationLoss(torch.nn.CrossEntropyLoss(), "hard", alpha=1.5)
    with pytest.raises(ConfigError, match="tau must be > 0, got 0"):
        DistillationLoss(torch.nn.CrossEntropyLoss(), "soft", tau=0.0)
    with pytest.raises(ConfigError, match=r"teacher logits shaped like the student's \(3, 4\), got \(3, 5\)"):
        DistillationLoss(torch.nn.CrossEntropyLoss(), "hard")(student, labels, torch.randn(3, 5))
