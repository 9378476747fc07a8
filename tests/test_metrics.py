"""Tests of vitlab.metrics against independent references: NumPy loops, sklearn, the paper's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlab.errors import DataError
from vitlab.metrics import (
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    per_class_accuracy,
    reliability_bins,
    topk_correct,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def numpy_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """Guo et al. 2017 Eq. (3) written out with a Python loop over (lo, hi] bins, first bin closed at 0."""
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        in_bin = (conf > lo) & (conf <= hi) if b > 0 else (conf >= lo) & (conf <= hi)
        if in_bin.any():
            acc = (pred[in_bin] == labels[in_bin]).mean()
            ece += in_bin.mean() * abs(acc - conf[in_bin].mean())
    return float(ece)


# ---------------------------------------------------------------- top-k


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), c=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_topk_correct_matches_numpy_argsort_reference(n: int, c: int, seed: int) -> None:
    """Reference: NumPy, target among the k largest of distinct random logits (no ties)."""
    g = _gen(seed)
    logits = torch.randperm(n * c, generator=g).view(n, c).float() if n else torch.zeros(0, c)
    target = torch.randint(0, c, (n,), generator=g)
    ks = (1, 2, 5, c + 3)
    got = topk_correct(logits, target, ks)
    order = np.argsort(-logits.numpy(), axis=1)
    for k in ks:
        expected = sum(int(target[i].item() in order[i, : min(k, c)]) for i in range(n))
        assert got[k].dtype == torch.long and got[k].dim() == 0
        assert int(got[k]) == expected


def test_topk_correct_k_above_num_classes_counts_every_sample() -> None:
    """Reference: definition, with k >= C every target is in the top-k."""
    logits = torch.randn(7, 3, generator=_gen())
    target = torch.randint(0, 3, (7,), generator=_gen(1))
    assert int(topk_correct(logits, target, (5,))[5]) == 7


def test_topk_correct_rejects_bad_shapes() -> None:
    with pytest.raises(DataError, match=r"\(N, C\)"):
        topk_correct(torch.randn(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="rows"):
        topk_correct(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(DataError, match="integer"):
        topk_correct(torch.randn(4, 3), torch.zeros(4))
    with pytest.raises(DataError, match="ks"):
        topk_correct(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), ks=(0,))


# ---------------------------------------------------------------- confusion matrix


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 60), k=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_confusion_matrix_matches_sklearn(n: int, k: int, seed: int) -> None:
    """Reference: sklearn.metrics.confusion_matrix (rows true, columns predicted)."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    g = _gen(seed)
    pred = torch.randint(0, k, (n,), generator=g)
    target = torch.randint(0, k, (n,), generator=g)
    got = confusion_matrix(pred, target, k)
    assert got.dtype == torch.long and got.shape == (k, k)
    expected = sk_confusion(target.numpy(), pred.numpy(), labels=list(range(k))) if n else np.zeros((k, k))
    np.testing.assert_array_equal(got.numpy(), expected)


def test_per_class_accuracy_matches_loop_and_gives_zero_for_absent_class() -> None:
    """Reference: Python loop over classes of correct / support; an absent class gives 0.0."""
    pred = torch.tensor([0, 1, 1, 2, 0, 2, 2])
    target = torch.tensor([0, 1, 2, 2, 1, 2, 0])
    acc = per_class_accuracy(confusion_matrix(pred, target, 4))
    expected = []
    for c in range(4):
        support = int((target == c).sum())
        expected.append(int(((pred == c) & (target == c)).sum()) / support if support else 0.0)
    torch.testing.assert_close(acc, torch.tensor(expected, dtype=torch.float32))
    assert not torch.isnan(acc).any()


def test_confusion_matrix_rejects_out_of_range_and_shapes() -> None:
    with pytest.raises(DataError, match=r"target contain 5, outside \[0, 3\)"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([5, 1]), 3)
    with pytest.raises(DataError, match="pred must be a 1-D integer"):
        confusion_matrix(torch.tensor([[0, 1]]), torch.tensor([0, 1]), 3)
    with pytest.raises(DataError, match="square"):
        per_class_accuracy(torch.zeros(3, 2))


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_numpy_loop_on_random_probabilities(n_bins: int) -> None:
    """Reference: numpy_ece, a direct NumPy loop of Guo et al. 2017 Eq. (3)."""
    g = _gen(n_bins)
    probs = (torch.randn(2000, 7, generator=g, dtype=torch.float64) * 2).softmax(1)
    labels = torch.randint(0, 7, (2000,), generator=g)
    got = expected_calibration_error(probs, labels, n_bins)
    assert got.dim() == 0
    assert float(got) == pytest.approx(numpy_ece(probs.numpy(), labels.numpy(), n_bins), abs=1e-12)


def test_ece_bin_edges_are_left_open_right_closed() -> None:
    """Reference: hand-placed confidences exactly on the edges 0.2, 0.4 (5 bins) land in the lower bin."""
    # Two classes can only produce confidence >= 0.5; use 5 classes with exact binary fractions.
    probs = torch.tensor(
        [
            [0.5, 0.5, 0.0, 0.0, 0.0],  # conf 0.5 -> bin 2 ((0.4, 0.6])
            [0.25, 0.25, 0.25, 0.25, 0.0],  # conf 0.25 -> bin 1
            [1.0, 0.0, 0.0, 0.0, 0.0],  # conf 1.0 -> last bin
        ],
        dtype=torch.float64,
    )
    edge = torch.full((1, 5), 0.2, dtype=torch.float64)  # conf exactly 0.2 -> bin 0 (first bin closed)
    probs = torch.cat([probs, edge])
    labels = torch.tensor([0, 3, 0, 4])
    acc, conf, counts = reliability_bins(probs, labels, 5)
    assert counts.tolist() == [1, 1, 1, 0, 1]
    assert float(expected_calibration_error(probs, labels, 5)) == pytest.approx(
        numpy_ece(probs.numpy(), labels.numpy(), 5), abs=1e-12
    )


def test_ece_is_near_zero_when_labels_are_drawn_from_the_predicted_probabilities() -> None:
    """Reference: definition of calibration, labels sampled from probs give ECE -> 0 (O(1/sqrt(N/M)))."""
    g = _gen(3)
    probs = (torch.randn(200_000, 5, generator=g, dtype=torch.float64) * 1.5).softmax(1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    assert float(expected_calibration_error(probs, labels, 15)) < 0.01
    # The same probabilities against shuffled labels are badly calibrated: the test can fail.
    shuffled = labels[torch.randperm(labels.numel(), generator=g)]
    assert float(expected_calibration_error(probs, shuffled, 15)) > 0.1


def test_reliability_bins_counts_sum_to_n_and_match_numpy_histogram() -> None:
    """Reference: NumPy per-bin means with the same (lo, hi] edges."""
    g = _gen(4)
    probs = torch.randn(500, 4, generator=g).softmax(1)
    labels = torch.randint(0, 4, (500,), generator=g)
    acc, conf, counts = reliability_bins(probs, labels, 10)
    assert int(counts.sum()) == 500
    c = probs.max(1).values.double().numpy()
    edges = np.linspace(0, 1, 11)
    for b in range(10):
        m = (c > edges[b]) & (c <= edges[b + 1]) if b else (c <= edges[1])
        assert counts[b] == m.sum()
        if m.any():
            assert float(conf[b]) == pytest.approx(c[m].mean(), abs=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_accepts_low_precision_softmax_and_matches_the_float32_result(dtype: torch.dtype, seed: int) -> None:
    """bf16/fp16 softmax rows sum to 1 only within the dtype's rounding (issue 17); they are accepted.

    References: numpy_ece on the same probabilities upcast to float64 (exact agreement), and the
    float32 softmax of the same logits: with unit roundoff u = eps/2 each confidence moves by at most
    u, which moves ECE by at most u, plus at most 2/N for every sample whose bin or argmax changed.
    """
    g = _gen(seed)
    logits = (torch.randn(1000, 10, generator=g) * 3).to(dtype)
    labels = torch.randint(0, 10, (1000,), generator=g)
    low = logits.softmax(1)
    ref = logits.float().softmax(1)
    got = expected_calibration_error(low, labels)
    assert float(got) == pytest.approx(numpy_ece(low.double().numpy(), labels.numpy(), 15), abs=1e-12)
    acc, conf, counts = reliability_bins(low, labels)
    assert int(counts.sum()) == 1000 and acc.dtype == torch.float64
    edges = torch.linspace(0, 1, 16, dtype=torch.float64)[1:-1]
    conf_low, pred_low = low.double().max(1)
    conf_ref, pred_ref = ref.double().max(1)
    moved = (torch.bucketize(conf_low, edges) != torch.bucketize(conf_ref, edges)) | (pred_low != pred_ref)
    u = torch.finfo(dtype).eps / 2
    bound = u + 2 * int(moved.sum()) / 1000
    assert abs(float(got) - float(expected_calibration_error(ref, labels))) <= bound


def test_low_precision_tolerance_still_rejects_logits_and_unnormalised_rows() -> None:
    logits = (torch.randn(50, 10, generator=_gen(5)) * 3).bfloat16()
    labels = torch.zeros(50, dtype=torch.long)
    with pytest.raises(DataError, match="softmax"):
        expected_calibration_error(logits, labels)
    off = logits.float().softmax(1) * 1.02  # 2% off: more than one bf16 eps (0.0078)
    with pytest.raises(DataError, match="rows sum to 1"):
        reliability_bins(off.bfloat16(), labels)


def test_ece_rejects_logits_and_bad_shapes() -> None:
    logits = torch.randn(10, 3, generator=_gen()) * 5
    labels = torch.zeros(10, dtype=torch.long)
    with pytest.raises(DataError, match="softmax"):
        expected_calibration_error(logits, labels)
    with pytest.raises(DataError, match="one label per row"):
        expected_calibration_error(logits.softmax(1), torch.zeros(9, dtype=torch.long))
    with pytest.raises(DataError, match="n_bins"):
        expected_calibration_error(logits.softmax(1), labels, n_bins=0)
    with pytest.raises(DataError, match=r"outside \[0, 3\)"):
        expected_calibration_error(logits.softmax(1), torch.full((10,), 3))


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_known_temperature(true_t: float) -> None:
    """Reference: synthetic data whose labels come from softmax(z); logits z * T must give back T."""
    g = _gen(int(true_t * 10))
    z = torch.randn(20_000, 10, generator=g, dtype=torch.float64) * 2.0
    labels = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    fitted = fit_temperature((z * true_t).float(), labels)
    assert fitted == pytest.approx(true_t, rel=0.05)


def _golden_section_temperature(logits: torch.Tensor, labels: torch.Tensor, t_min: float = 0.05, t_max: float = 20.0,
                                tol: float = 1e-6) -> float:
    """vitlab's former hand-written fit: golden-section search over log T to a bracket of width ``tol``,
    then the best of its midpoint and the two bounds (float64 NLLs)."""
    z, y = logits.double(), labels.long()

    def nll(u: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / math.exp(u), y))

    lo, hi = math.log(t_min), math.log(t_max)
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = nll(d)
    return math.exp(min(((a + b) / 2.0, lo, hi), key=nll))


def _logit_set(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(sum(map(ord, kind)))
    if kind == "separable":  # every label is the argmax and confident: NLL falls as T -> 0, the fit is t_min
        z = torch.randn(500, 5, generator=g)
        return z * 8.0, z.argmax(1)
    z = torch.randn(2000, 10, generator=g, dtype=torch.float64)
    labels = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    scale = {"calibrated": 1.0, "over-confident": 3.0, "under-confident": 0.3, "noise": 40.0}[kind]
    if kind == "noise":  # labels unrelated to huge logits: the optimum is beyond t_max
        labels = torch.randint(0, 10, (2000,), generator=g)
    return (z * scale).float(), labels


@pytest.mark.parametrize("kind", ["calibrated", "over-confident", "under-confident", "separable", "noise"])
def test_fit_temperature_equals_the_former_golden_section_search(kind: str) -> None:
    """Reference: the golden-section search vitlab used before scipy's bounded Brent search, on the same NLL;
    including the two cases where the optimum is a bound of the bracket [0.05, 20]."""
    logits, labels = _logit_set(kind)
    expected = _golden_section_temperature(logits, labels)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(expected, rel=1e-4)
    if kind == "separable":
        assert fitted == pytest.approx(0.05, rel=1e-12)
    if kind == "noise":
        assert fitted == pytest.approx(20.0, rel=1e-12)


def test_fit_temperature_is_the_nll_minimum_and_deterministic() -> None:
    """Reference: NLL evaluated on a dense grid of T with F.cross_entropy; fitted T is no worse."""
    g = _gen(7)
    z = torch.randn(3000, 6, generator=g) * 4
    labels = torch.randint(0, 6, (3000,), generator=g)  # over-confident logits: T > 1
    t = fit_temperature(z, labels)
    assert t == fit_temperature(z, labels)
    nll = lambda temp: float(torch.nn.functional.cross_entropy(z.double() / temp, labels))  # noqa: E731
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 400))
    assert nll(t) <= min(nll(float(v)) for v in grid) + 1e-9
    assert t > 1.0
    # temperature scaling lowers ECE on over-confident logits
    assert float(expected_calibration_error((z / t).softmax(1), labels)) < float(
        expected_calibration_error(z.softmax(1), labels)
    )
