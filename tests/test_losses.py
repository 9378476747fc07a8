"""Tests of vitlab.losses against PyTorch's F.cross_entropy (label_smoothing, probability targets) and the paper."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlab.errors import ConfigError, DataError
from vitlab.losses import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy, smooth_one_hot


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _case(shape: tuple[int, ...], seed: int, ignore_index: int, dtype: torch.dtype):
    g = _gen(seed)
    k = shape[1]
    x = torch.randn(*shape, generator=g, dtype=dtype) * 3
    t = torch.randint(0, k, (shape[0], *shape[2:]), generator=g)
    flat = t.view(-1)
    flat[:: 3] = ignore_index if ignore_index < 0 or ignore_index >= k else flat[:: 3]
    w = torch.rand(k, generator=g, dtype=dtype) + 0.1
    return x, t, w


COMBOS = list(
    itertools.product(
        [(8, 5), (4, 5, 3), (3, 4, 2, 3)],  # (N, C) and extra dims (N, C, d1, ...)
        [False, True],  # weight
        [-100, 2],  # ignore_index: absent / a real class
        ["mean", "sum", "none"],
        [0.0, 0.1, 0.5],
    )
)


@pytest.mark.parametrize("shape,use_weight,ignore_index,reduction,eps", COMBOS)
def test_label_smoothing_ce_equals_torch_cross_entropy(shape, use_weight, ignore_index, reduction, eps) -> None:
    """Reference: F.cross_entropy(..., label_smoothing=eps), to 1e-6, float64 exact and float32 relative."""
    for dtype, tol in ((torch.float64, dict(atol=1e-6, rtol=0)), (torch.float32, dict(atol=1e-6, rtol=1e-6))):
        x, t, w = _case(shape, hash((shape, ignore_index)) % 1000, ignore_index, dtype)
        if ignore_index == -100:
            t.view(-1)[::4] = -100  # some elements ignored through the default index
        weight = w if use_weight else None
        ours = LabelSmoothingCrossEntropy(eps, ignore_index, weight, reduction)(x, t)
        ref = F.cross_entropy(x, t, weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, **tol)


@pytest.mark.parametrize("use_weight", [False, True])
def test_label_smoothing_ce_gradient_equals_torch(use_weight: bool) -> None:
    """Reference: autograd gradient of F.cross_entropy(label_smoothing=0.2) in float64."""
    x, t, w = _case((6, 7, 2), 1, -100, torch.float64)
    t.view(-1)[::5] = -100
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    LabelSmoothingCrossEntropy(0.2, weight=w if use_weight else None)(xa, t).backward()
    F.cross_entropy(xb, t, w if use_weight else None, label_smoothing=0.2).backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-12, rtol=1e-10)


def test_label_smoothing_ce_all_ignored_mean_is_nan_like_torch() -> None:
    """Reference: F.cross_entropy gives nan (0/0) for a mean over only ignored targets."""
    x = torch.randn(3, 4, generator=_gen())
    t = torch.full((3,), -100)
    ours = LabelSmoothingCrossEntropy(0.1)(x, t)
    ref = F.cross_entropy(x, t, label_smoothing=0.1)
    assert torch.isnan(ours) and torch.isnan(ref)


def test_label_smoothing_ce_unbatched_matches_torch() -> None:
    """Reference: F.cross_entropy on an unbatched (C,) input and () target."""
    x = torch.randn(5, generator=_gen())
    t = torch.tensor(3)
    for red in ("mean", "sum", "none"):
        torch.testing.assert_close(
            LabelSmoothingCrossEntropy(0.3, reduction=red)(x, t),
            F.cross_entropy(x, t, reduction=red, label_smoothing=0.3),
        )


def test_label_smoothing_ce_is_the_paper_formula() -> None:
    """Reference: Szegedy et al. 2016 Sec. 7 written out, H(q', p) = (1 - eps) H(q, p) + eps H(u, p)."""
    x = torch.randn(10, 6, generator=_gen(2), dtype=torch.float64)
    t = torch.randint(0, 6, (10,), generator=_gen(3))
    eps = 0.1
    log_p = x.log_softmax(1)
    h_q = -log_p[torch.arange(10), t]
    h_u = -log_p.mean(1)
    expected = ((1 - eps) * h_q + eps * h_u).mean()
    torch.testing.assert_close(LabelSmoothingCrossEntropy(eps)(x, t), expected)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20), k=st.integers(1, 12), eps=st.floats(0.0, 0.99), seed=st.integers(0, 9999))
def test_smooth_one_hot_is_the_paper_distribution(n: int, k: int, eps: float, seed: int) -> None:
    """Reference: q' = (1 - eps) * F.one_hot + eps / K (Szegedy et al. 2016), rows sum to 1."""
    t = torch.randint(0, k, (n,), generator=_gen(seed))
    q = smooth_one_hot(t, k, eps, dtype=torch.float64)
    expected = (1 - eps) * F.one_hot(t, k).double() + eps / k
    torch.testing.assert_close(q, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(q.sum(1), torch.ones(n, dtype=torch.float64))


def test_smooth_one_hot_keeps_leading_dims() -> None:
    """Reference: F.one_hot on a (2, 3) target, smoothing 0."""
    t = torch.tensor([[0, 2, 1], [1, 1, 0]])
    torch.testing.assert_close(smooth_one_hot(t, 3), F.one_hot(t, 3).float())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_soft_target_ce_equals_torch_probability_targets(reduction: str) -> None:
    """Reference: F.cross_entropy with (N, C) probability targets."""
    g = _gen(5)
    x = torch.randn(9, 4, generator=g)
    q = torch.rand(9, 4, generator=g).softmax(1)
    torch.testing.assert_close(
        SoftTargetCrossEntropy(reduction)(x, q), F.cross_entropy(x, q, reduction=reduction)
    )


def test_soft_target_ce_on_smoothed_one_hot_equals_label_smoothing_ce() -> None:
    """Reference: F.cross_entropy(label_smoothing=eps); soft CE of smooth_one_hot(eps) is the same loss once."""
    x = torch.randn(16, 10, generator=_gen(6))
    t = torch.randint(0, 10, (16,), generator=_gen(7))
    soft = SoftTargetCrossEntropy()(x, smooth_one_hot(t, 10, 0.1))
    torch.testing.assert_close(soft, F.cross_entropy(x, t, label_smoothing=0.1))
    # smoothing twice (smoothed targets + smoothing loss) would be a different loss: the test can fail
    double = F.cross_entropy(x, smooth_one_hot(t, 10, 0.1), label_smoothing=0.1)
    assert not torch.allclose(soft, double)


def test_errors_name_the_bad_value() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        LabelSmoothingCrossEntropy(1.0)
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        smooth_one_hot(torch.tensor([0]), 3, -0.1)
    with pytest.raises(ConfigError, match="reduction"):
        LabelSmoothingCrossEntropy(reduction="avg")
    with pytest.raises(DataError, match=r"target contains 3, outside \[0, 3\)"):
        LabelSmoothingCrossEntropy(0.1)(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(DataError, match=r"target contains -1"):
        smooth_one_hot(torch.tensor([0, -1]), 3)
    with pytest.raises(DataError, match=r"expected \(4,\)"):
        LabelSmoothingCrossEntropy(0.1)(x, torch.tensor([0, 1]))
    with pytest.raises(DataError, match="SoftTargetCrossEntropy"):
        LabelSmoothingCrossEntropy(0.1)(x, torch.rand(4))
    with pytest.raises(DataError, match=r"\(N, K\)"):
        SoftTargetCrossEntropy()(x, torch.rand(4, 2))
    with pytest.raises(DataError, match="weight has 2"):
        LabelSmoothingCrossEntropy(0.1, weight=torch.ones(2))(x, torch.tensor([0, 1, 2, 0]))


# ---------------------------------------------------------------- precision (issue 17)


def _mixed_smoothed_targets(target: torch.Tensor, k: int, lam: float = 0.3, eps: float = 0.1) -> torch.Tensor:
    """A Mixup-style float32 target: lam * smoothed(y) + (1 - lam) * smoothed(y rolled)."""
    return lam * smooth_one_hot(target, k, eps) + (1 - lam) * smooth_one_hot(target.roll(1), k, eps)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_on_low_precision_logits_equal_float32_on_the_upcast_logits(dtype: torch.dtype) -> None:
    """References: the same loss on logits.float() (bit for bit) and F.cross_entropy in float32."""
    g = _gen(7)
    logits = (torch.randn(64, 10, generator=g) * 3).to(dtype).requires_grad_()
    target = torch.randint(0, 10, (64,), generator=g)
    soft = _mixed_smoothed_targets(target, 10)
    upcast = logits.detach().float().requires_grad_()
    for crit, tgt, ref in (
        (SoftTargetCrossEntropy(), soft, lambda x: F.cross_entropy(x, soft)),
        (LabelSmoothingCrossEntropy(0.1), target, lambda x: F.cross_entropy(x, target, label_smoothing=0.1)),
    ):
        got = crit(logits, tgt)
        expected = crit(upcast, tgt)
        assert got.dtype == torch.float32
        assert torch.equal(got, expected)
        torch.testing.assert_close(got, ref(upcast.detach()))
        (grad,) = torch.autograd.grad(got, logits)
        (grad_ref,) = torch.autograd.grad(expected, upcast)
        assert grad.dtype == dtype and torch.equal(grad, grad_ref.to(dtype))  # float32 gradient, rounded once
    # The old computation (targets cast down to the logits' dtype, log-softmax in that dtype) differs,
    # so the comparison above can fail.
    old = -(soft.to(dtype) * F.log_softmax(logits.detach(), dim=1)).sum(dim=1).mean()
    assert not torch.equal(old.float(), SoftTargetCrossEntropy()(upcast.detach(), soft))


def test_losses_under_cpu_bf16_autocast_equal_the_float32_computation() -> None:
    """Inside torch.autocast("cpu", bfloat16) the loss is still computed in float32 on the bf16 logits."""
    g = _gen(8)
    head = torch.nn.Linear(16, 10)
    x = torch.randn(32, 16, generator=g)
    target = torch.randint(0, 10, (32,), generator=g)
    soft = _mixed_smoothed_targets(target, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x)
        soft_loss = SoftTargetCrossEntropy()(logits, soft)
        smooth_loss = LabelSmoothingCrossEntropy(0.1)(logits, target)
    assert logits.dtype == torch.bfloat16
    assert soft_loss.dtype == smooth_loss.dtype == torch.float32
    outside = logits.detach().float()
    assert torch.equal(soft_loss, SoftTargetCrossEntropy()(outside, soft))
    assert torch.equal(smooth_loss, LabelSmoothingCrossEntropy(0.1)(outside, target))
    torch.testing.assert_close(soft_loss, F.cross_entropy(outside, soft))
    (soft_loss + smooth_loss).backward()
    assert head.weight.grad is not None and bool(torch.isfinite(head.weight.grad).all())
