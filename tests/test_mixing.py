"""Tests of vitlab.mixing against timm's Mixup (test-only reference), the papers' formulas and closed-form laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitlab.errors import ConfigError, DataError
from vitlab.losses import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy, smooth_one_hot
from vitlab.mixing import (
    CUTMIX,
    MIXUP,
    NONE,
    Mixer,
    MixParams,
    build_mixing,
    cutmix_box,
    mixing_loss,
    sample_beta,
    sample_log_gamma,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 6, c: int = 3, h: int = 8, w: int = 10, k: int = 10, seed: int = 0):
    g = _gen(seed)
    return torch.randn(b, c, h, w, generator=g), torch.randint(0, k, (b,), generator=g)


# ---------------------------------------------------------------- Gamma / Beta sampling


@pytest.mark.parametrize("a,b", [(0.2, 0.2), (0.4, 0.4), (1.0, 1.0), (5.0, 5.0), (2.0, 5.0), (0.5, 3.0)])
def test_beta_sampler_mean_and_variance_match_beta_formulas(a: float, b: float) -> None:
    """Reference: Beta(a, b) mean a/(a+b) and variance ab/((a+b)^2 (a+b+1)), within 5 standard errors."""
    n = 100_000
    x = sample_beta(a, b, n, _gen(int(a * 10 + b)))
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    assert x.dtype == torch.float64 and x.shape == (n,)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / n)
    # standard error of the sample variance <= sqrt(E[(x - m)^4] / n) <= sqrt(var / n) (values in [0, 1])
    assert abs(float(x.var()) - var) < 5 * math.sqrt(var / n)


@pytest.mark.parametrize(
    "alpha,cdf",
    [
        (0.5, lambda x: 2.0 / math.pi * np.arcsin(np.sqrt(x))),  # arcsine law
        (1.0, lambda x: x),  # uniform
        (2.0, lambda x: 3 * x**2 - 2 * x**3),
    ],
)
def test_beta_sampler_matches_closed_form_cdf(alpha: float, cdf) -> None:
    """Reference: closed-form CDFs of Beta(a, a); Kolmogorov-Smirnov statistic below the 0.1% critical value."""
    n = 20_000
    x = np.sort(sample_beta(alpha, alpha, n, _gen(1)).numpy())
    f = cdf(x)
    ks = max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))
    assert ks < 1.95 / math.sqrt(n)


@pytest.mark.parametrize("shape", [0.05, 0.3, 1.0, 4.5])
def test_log_gamma_sampler_moments_match_gamma(shape: float) -> None:
    """Reference: Gamma(a, 1) has mean a and variance a; also E[log G] = digamma(a) (torch.special)."""
    n = 100_000
    log_g = sample_log_gamma(shape, n, _gen(2))
    assert torch.isfinite(log_g).all()
    expected_log_mean = float(torch.special.digamma(torch.tensor(shape, dtype=torch.float64)))
    log_sd = math.sqrt(float(torch.special.polygamma(1, torch.tensor(shape, dtype=torch.float64))))
    assert abs(float(log_g.mean()) - expected_log_mean) < 5 * log_sd / math.sqrt(n)
    if shape >= 0.3:  # the raw moments are too heavy-tailed to test for tiny shapes
        g = log_g.exp()
        assert abs(float(g.mean()) - shape) < 5 * math.sqrt(shape / n)


def test_beta_sampler_agrees_with_torch_dirichlet_quantiles() -> None:
    """Reference: torch._sample_dirichlet (PyTorch's own Gamma-based sampler), quantiles within 0.01."""
    n = 50_000
    ours = sample_beta(0.8, 0.8, n, _gen(3))
    ref = torch._sample_dirichlet(torch.full((n, 2), 0.8, dtype=torch.float64), generator=_gen(4))[:, 0]
    q = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    torch.testing.assert_close(ours.quantile(q), ref.quantile(q), atol=0.01, rtol=0)


# ---------------------------------------------------------------- agreement with timm


def _drive_timm(monkeypatch, mode: str, lams: list[float], use_cutmix: list[bool], centres: list[int], smoothing: float,
                num_classes: int, x: torch.Tensor, y: torch.Tensor):
    """Run timm.data.Mixup with fixed lam / method per draw and fixed CutMix box centres."""
    timm_mixup = pytest.importorskip("timm.data.mixup")
    mix = timm_mixup.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, label_smoothing=smoothing,
                           num_classes=num_classes)
    lam_np = np.array(lams, dtype=np.float32)
    cut_np = np.array(use_cutmix, dtype=bool)
    if mode == "batch":
        monkeypatch.setattr(mix, "_params_per_batch", lambda: (float(lam_np[0]), bool(cut_np[0])))
    else:
        monkeypatch.setattr(mix, "_params_per_elem", lambda n: (lam_np[:n].copy(), cut_np[:n].copy()))
    queue = list(centres)
    monkeypatch.setattr(timm_mixup.np.random, "randint", lambda lo, hi, size=None: queue.pop(0))
    out, target = mix(x.clone(), y)
    assert not queue, "timm did not consume every box centre"
    return out, target


def _fixed_draw(lams: list[float], use_cutmix: list[bool], centres: list[int], h: int, w: int):
    """Our _draw with the same lam / method / centres: the box from cutmix_box and lam corrected to its area."""
    lam = torch.tensor(lams, dtype=torch.float64)
    kind = torch.tensor([NONE if l == 1.0 else (CUTMIX if c else MIXUP) for l, c in zip(lams, use_cutmix)])
    box = torch.zeros(len(lams), 4, dtype=torch.long)
    it = iter(centres)
    for i, (l, c) in enumerate(zip(lams, use_cutmix)):
        if c and l != 1.0:
            cy, cx = next(it), next(it)
            box[i] = cutmix_box(torch.tensor([l]), torch.tensor([cy]), torch.tensor([cx]), h, w)[0]
            lam[i] = 1.0 - float((box[i, 1] - box[i, 0]) * (box[i, 3] - box[i, 2])) / (h * w)
    return lambda n, height, width: (lam[:n], kind[:n], box[:n])


# 1 - lam is a square of a dyadic fraction, so float32 and float64 give the same box sizes
ELEM_LAMS = [0.75, 1.0, 0.4375, 0.859375, 0.234375, 0.75, 0.5, 0.9375]
ELEM_CUT = [True, False, True, False, True, True, False, True]
ELEM_CENTRES = [0, 0, 7, 9, 3, 5, 7, 0, 2, 9]  # corners and the last row / column included


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_elem_mode_equals_timm_for_same_lambda_and_box(monkeypatch, smoothing: float) -> None:
    """Reference: timm.data.Mixup(mode='elem') driven with the same lam, method and box centres."""
    x, y = _batch(8, 3, 8, 10, k=5)
    ref_x, ref_q = _drive_timm(monkeypatch, "elem", ELEM_LAMS, ELEM_CUT, ELEM_CENTRES, smoothing, 5, x, y)
    mixer = Mixer(5, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", label_smoothing=smoothing, generator=_gen())
    monkeypatch.setattr(mixer, "_draw", _fixed_draw(ELEM_LAMS, ELEM_CUT, ELEM_CENTRES, 8, 10))
    out, q = mixer(x, y)
    cut = torch.tensor(ELEM_CUT) & (torch.tensor(ELEM_LAMS) != 1.0)
    assert torch.equal(out[cut], ref_x[cut])  # CutMix pixels are copies: bit-exact
    torch.testing.assert_close(out, ref_x, atol=1e-6, rtol=0)
    torch.testing.assert_close(q, ref_q, atol=1e-6, rtol=0)


def test_pair_mode_equals_timm_for_same_lambda_and_box(monkeypatch) -> None:
    """Reference: timm.data.Mixup(mode='pair'): each pair (i, B-1-i) shares lam and box."""
    x, y = _batch(8, 3, 8, 10, k=5, seed=1)
    lams, cuts, centres = ELEM_LAMS[:4], ELEM_CUT[:4], ELEM_CENTRES[:4]
    ref_x, ref_q = _drive_timm(monkeypatch, "pair", lams, cuts, centres, 0.1, 5, x, y)
    mixer = Mixer(5, mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair", label_smoothing=0.1, generator=_gen())
    monkeypatch.setattr(mixer, "_draw", _fixed_draw(lams, cuts, centres, 8, 10))
    out, q = mixer(x, y)
    torch.testing.assert_close(out, ref_x, atol=1e-6, rtol=0)
    torch.testing.assert_close(q, ref_q, atol=1e-6, rtol=0)


@pytest.mark.parametrize("lam,use_cutmix,centre", [(0.4375, True, [7, 9]), (0.3, False, []), (0.75, True, [0, 0])])
def test_batch_mode_equals_timm_for_same_lambda_and_box(monkeypatch, lam, use_cutmix, centre) -> None:
    """Reference: timm.data.Mixup(mode='batch') with the same lam and box centre."""
    x, y = _batch(6, 3, 8, 10, k=4, seed=2)
    ref_x, ref_q = _drive_timm(monkeypatch, "batch", [lam], [use_cutmix], centre, 0.1, 4, x, y)
    mixer = Mixer(4, mixup_alpha=1.0, cutmix_alpha=1.0, mode="batch", label_smoothing=0.1, generator=_gen())
    monkeypatch.setattr(mixer, "_draw", _fixed_draw([lam], [use_cutmix], centre, 8, 10))
    out, q = mixer(x, y)
    if use_cutmix:
        assert torch.equal(out, ref_x)
    torch.testing.assert_close(out, ref_x, atol=1e-6, rtol=0)
    torch.testing.assert_close(q, ref_q, atol=1e-6, rtol=0)


def test_cutmix_box_equals_timm_rand_bbox() -> None:
    """Reference: timm.data.mixup.rand_bbox geometry for every centre and several lam (centres fed to it)."""
    timm_mixup = pytest.importorskip("timm.data.mixup")
    h, w = 7, 9
    for lam in (0.0, 0.1, 0.5, 0.84, 0.99):
        for cy in range(h):
            for cx in range(w):
                it = iter([cy, cx])
                orig = timm_mixup.np.random.randint
                timm_mixup.np.random.randint = lambda lo, hi, size=None: next(it)
                try:
                    ref = timm_mixup.rand_bbox((3, h, w), lam)
                finally:
                    timm_mixup.np.random.randint = orig
                ours = cutmix_box(torch.tensor([lam]), torch.tensor([cy]), torch.tensor([cx]), h, w)[0]
                assert tuple(int(v) for v in ref) == tuple(ours.tolist())


# ---------------------------------------------------------------- the papers' invariants


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_corrected_lambda_equals_pasted_area_and_targets_sum_to_one(mode: str) -> None:
    """Reference: Yun et al. 2019 Eq. (2) with correct_lam: lam = fraction of own pixels, counted pixel by pixel."""
    b, h, w = 7, 9, 11
    x = torch.arange(1, b + 1, dtype=torch.float64).view(b, 1, 1, 1).expand(b, 2, h, w).contiguous()
    y = torch.arange(b)  # distinct labels, so q[i, i] is the own-label weight
    mixer = Mixer(b, cutmix_alpha=1.0, mode=mode, generator=_gen(5))
    for _ in range(20):
        out, q = mixer(x, y)
        own = (out == x).double().mean(dim=(1, 2, 3))  # fraction of pixels kept from x_i
        partner = b - 1 - torch.arange(b)
        self_paired = partner == torch.arange(b)
        torch.testing.assert_close(q.sum(1), torch.ones(b, dtype=torch.float64), atol=1e-12, rtol=0)
        expected_own = torch.where(self_paired, torch.ones_like(own), own)
        torch.testing.assert_close(q[torch.arange(b), y], expected_own, atol=0, rtol=0)


def test_mixup_is_the_convex_combination_of_the_paper() -> None:
    """Reference: Zhang et al. 2018 Eq. (1), x~ = lam x_i + (1 - lam) x_j, y~ likewise, written out."""
    x, y = _batch(6, 3, 5, 5, k=6, seed=3)
    x = x.double()
    mixer = Mixer(6, mixup_alpha=0.4, mode="elem", generator=_gen(6))
    params = mixer.sample(6, 5, 5)
    out, q = mixer.apply(x, y, params)
    lam = params.lam.view(6, 1, 1, 1)
    torch.testing.assert_close(out, lam * x + (1 - lam) * x.flip(0), atol=1e-12, rtol=0)
    oh = F.one_hot(y, 6).double()
    torch.testing.assert_close(q, params.lam[:, None] * oh + (1 - params.lam[:, None]) * oh.flip(0))


def test_cutmix_box_edges_reach_last_row_and_column_with_the_exact_frequency() -> None:
    """Reference: exact coverage law of a uniform centre in {0..H-1} (enumerated), cf. timm PR #2739.

    Row r is covered with probability mean_i #{c : c - cut_i//2 <= r < c + (cut_i+1)//2} / H. A sampler
    whose centre misses the last row (the old border bug) under-covers row H-1 and fails here. (The law
    is not symmetric: an even-sized box spans cut/2 rows above its centre pixel and cut/2 - 1 below.)
    """
    h, w, n = 6, 5, 20_000
    mixer = Mixer(3, cutmix_alpha=0.5, mode="elem", correct_lam=False, generator=_gen(7))
    params = mixer.sample(n, h, w)
    assert (params.kind == CUTMIX).all()
    box, lam = params.box, params.lam
    for size, lo_col, hi_col in ((h, 0, 1), (w, 2, 3)):
        cut = torch.floor(size * torch.sqrt(1 - lam)).long()
        covered = torch.zeros(size, dtype=torch.float64)
        expected = torch.zeros(size, dtype=torch.float64)
        for r in range(size):
            covered[r] = ((box[:, lo_col] <= r) & (r < box[:, hi_col])).double().mean()
            c = torch.arange(size).view(1, -1)
            hit = (c - (cut // 2).view(-1, 1) <= r) & (r < c + ((cut + 1) // 2).view(-1, 1))
            expected[r] = hit.double().mean()
        torch.testing.assert_close(covered, expected, atol=0.015, rtol=0)
        assert (box[:, hi_col] == size).any() and (box[:, lo_col] == 0).any()
        assert covered[-1] > 0.1  # the last row / column is reached, at its exact rate (above)


def test_cutmix_minmax_box_sides_inclusive_and_corner_reaches_last_position() -> None:
    """Reference: uniform law on integer sides [floor(lo H), floor(hi H)] and corners {0..H-cut}, chi-square bound."""
    h, w = 10, 8
    mixer = Mixer(3, cutmix_minmax=(0.2, 0.5), mode="elem", generator=_gen(8))
    p = mixer.sample(30_000, h, w)
    cut_h = p.box[:, 1] - p.box[:, 0]
    cut_w = p.box[:, 3] - p.box[:, 2]
    assert set(cut_h.unique().tolist()) == {2, 3, 4, 5}
    assert set(cut_w.unique().tolist()) == {1, 2, 3, 4}
    torch.testing.assert_close(p.lam, 1 - (cut_h * cut_w).double() / (h * w))
    sel = cut_h == 5  # top-left row uniform over 0..5 for this size
    counts = torch.bincount(p.box[sel, 0], minlength=6).double()
    assert counts.numel() == 6 and (p.box[sel, 1] <= h).all()
    expected = counts.sum() / 6
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # chi-square(5 dof) 0.1% critical value


def test_elem_mode_draws_are_independent_per_sample_and_pair_mode_shares_them() -> None:
    """Reference: independence, the lag-1 correlation of elem lam is ~0; pair mode has lam_i == lam_{B-1-i}."""
    mixer = Mixer(3, mixup_alpha=1.0, mode="elem", generator=_gen(9))
    lam = mixer.sample(20_000, 4, 4).lam
    corr = float(torch.corrcoef(torch.stack([lam[:-1], lam[1:]]))[0, 1])
    assert abs(corr) < 0.03 and lam.unique().numel() > 19_000
    pair = Mixer(3, mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair", generator=_gen(10)).sample(9, 4, 4)
    assert torch.equal(pair.lam, pair.lam.flip(0)) and torch.equal(pair.box, pair.box.flip(0))
    assert pair.kind[4] == NONE and pair.lam[4] == 1.0  # odd batch: the middle sample is unpaired
    batch = Mixer(3, mixup_alpha=1.0, mode="batch", generator=_gen(11)).sample(5, 4, 4)
    assert batch.shared and batch.lam.unique().numel() == 1


def test_prob_and_switch_prob_frequencies() -> None:
    """Reference: Bernoulli frequencies prob and switch_prob, within 5 standard errors."""
    n = 20_000
    p = Mixer(3, mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.7, switch_prob=0.25, mode="elem", generator=_gen(12))
    kind = p.sample(n, 8, 8).kind
    applied = (kind != NONE).double().mean()
    cut_given_applied = (kind == CUTMIX).double().sum() / (kind != NONE).double().sum()
    assert abs(float(applied) - 0.7) < 5 * math.sqrt(0.21 / n)
    assert abs(float(cut_given_applied) - 0.25) < 5 * math.sqrt(0.1875 / (0.7 * n))


@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_cutout_square_is_clipped_filled_and_labels_unchanged(fill: str) -> None:
    """Reference: DeVries & Taylor 2017 written out with slicing per sample; targets = smoothed one-hot."""
    x, y = _batch(5, 3, 9, 7, k=4, seed=13)
    mixer = Mixer(4, cutout_size=4, cutout_fill=fill, label_smoothing=0.1, generator=_gen(14))
    params = mixer.sample(5, 9, 7)
    out, q = mixer.apply(x, y, params)
    expected = x.clone()
    for i in range(5):
        y0, y1, x0, x1 = params.hole[i].tolist()
        assert 0 <= y0 <= y1 <= 9 and 0 <= x0 <= x1 <= 7 and (y1 - y0) <= 4 and (x1 - x0) <= 4
        value = x[i].mean(dim=(1, 2)).view(3, 1, 1) if fill == "mean" else 0.0
        expected[i, :, y0:y1, x0:x1] = value
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(q, smooth_one_hot(y, 4, 0.1))


def test_cutout_squares_reach_every_border() -> None:
    """Reference: a uniform centre in {0..H-1}: clipped squares touch row 0, row H-1, column 0, column W-1."""
    mixer = Mixer(2, cutout_size=3, generator=_gen(15))
    hole = mixer.sample(2000, 8, 6).hole
    assert (hole[:, 0] == 0).any() and (hole[:, 1] == 8).any() and (hole[:, 2] == 0).any() and (hole[:, 3] == 6).any()
    size_h = hole[:, 1] - hole[:, 0]
    assert set(size_h.unique().tolist()) == {2, 3}  # clipped at a border or full


# ---------------------------------------------------------------- API guarantees


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_same_seed_same_result_input_untouched_odd_batch(mode: str) -> None:
    """Reference: the input's own copy (torch.equal) and a second run with the same seed."""
    x, y = _batch(7, 3, 8, 8, k=5, seed=16)
    x_copy, y_copy = x.clone(), y.clone()
    kw = dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutout_size=3, mode=mode, label_smoothing=0.1)
    a = Mixer(5, generator=_gen(17), **kw)
    b = Mixer(5, generator=_gen(17), **kw)
    c = Mixer(5, generator=_gen(18), **kw)
    outs_a = [a(x, y) for _ in range(3)]
    outs_b = [b(x, y) for _ in range(3)]
    outs_c = [c(x, y) for _ in range(3)]
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    for (xa, qa), (xb, qb) in zip(outs_a, outs_b):
        assert torch.equal(xa, xb) and torch.equal(qa, qb)
        assert xa.shape == x.shape and qa.shape == (7, 5)
    assert any(not torch.equal(xa, xc) for (xa, _), (xc, _) in zip(outs_a, outs_c))


def test_library_leaves_global_rng_untouched() -> None:
    """Reference: torch and numpy global RNG states before and after."""
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    x, y = _batch()
    Mixer(10, mixup_alpha=1.0, cutmix_alpha=1.0, cutout_size=2, mode="elem", generator=_gen())(x, y)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_odd_batch_pair_mode_leaves_middle_sample_unchanged() -> None:
    """Reference: the input itself; the unpaired middle sample keeps its image and its one-hot target."""
    x, y = _batch(5, 1, 6, 6, k=5, seed=19)
    mixer = Mixer(5, mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair", generator=_gen(20))
    for _ in range(5):
        out, q = mixer(x, y)
        assert torch.equal(out[2], x[2])
        torch.testing.assert_close(q[2], F.one_hot(y[2], 5).float())


def test_active_property_and_inactive_mixer_returns_one_hot() -> None:
    """Reference: F.one_hot / smooth_one_hot for an inactive mixer; images returned unchanged."""
    assert not Mixer(3).active
    assert not Mixer(3, mixup_alpha=1.0, prob=0.0).active
    assert Mixer(3, cutout_size=2).active and Mixer(3, cutmix_minmax=(0.2, 0.8)).active
    x, y = _batch(4, k=3)
    out, q = Mixer(3, label_smoothing=0.2)(x, y)
    assert torch.equal(out, x)
    torch.testing.assert_close(q, smooth_one_hot(y, 3, 0.2))


def test_mixing_loss_applies_smoothing_once() -> None:
    """Reference: F.cross_entropy(label_smoothing=eps) equals the soft loss on the mixer's unmixed targets."""
    x, y = _batch(6, k=10)
    logits = torch.randn(6, 10, generator=_gen(21))
    mixer = Mixer(10, mixup_alpha=1.0, prob=1.0, label_smoothing=0.1, generator=_gen())
    loss_fn = mixing_loss(mixer, 0.1)
    assert isinstance(loss_fn, SoftTargetCrossEntropy)
    params = MixParams(lam=torch.ones(6, dtype=torch.float64), kind=torch.zeros(6, dtype=torch.long),
                       box=torch.zeros(6, 4, dtype=torch.long))
    _, q = mixer.apply(x, y, params)
    torch.testing.assert_close(loss_fn(logits, q), F.cross_entropy(logits, y, label_smoothing=0.1))
    with pytest.raises(ConfigError, match="label_smoothing"):
        mixing_loss(mixer, 0.2)
    plain = mixing_loss(None, 0.1)
    assert isinstance(plain, LabelSmoothingCrossEntropy) and plain.smoothing == 0.1
    none, loss = build_mixing(10, label_smoothing=0.1)
    assert none is None and isinstance(loss, LabelSmoothingCrossEntropy)
    mixer2, loss2 = build_mixing(10, mixup_alpha=0.8, cutmix_alpha=1.0, mix_prob=0.5, switch_prob=0.3,
                                 mix_mode="elem", label_smoothing=0.1, cutout_size=4)
    assert isinstance(loss2, SoftTargetCrossEntropy)
    assert (mixer2.prob, mixer2.switch_prob, mixer2.mode, mixer2.label_smoothing) == (0.5, 0.3, "elem", 0.1)


def test_errors_name_the_bad_value_and_the_fix() -> None:
    with pytest.raises(ConfigError, match="did you mean 'elem'"):
        Mixer(3, mixup_alpha=1.0, mode="elems")
    with pytest.raises(ConfigError, match="mixup_alpha"):
        Mixer(3, mixup_alpha=-1.0)
    with pytest.raises(ConfigError, match="cutmix_minmax"):
        Mixer(3, cutmix_minmax=(0.6, 0.2))
    with pytest.raises(ConfigError, match="label_smoothing"):
        Mixer(3, label_smoothing=1.0)
    mixer = Mixer(3, mixup_alpha=1.0, generator=_gen())
    with pytest.raises(DataError, match=r"images.float\(\)"):
        mixer(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))
    with pytest.raises(DataError, match=r"\(B, C, H, W\)"):
        mixer(torch.zeros(2, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(DataError, match=r"\(B,\) = \(2,\)"):
        mixer(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(DataError, match=r"outside \[0, 3\)"):
        mixer(torch.zeros(2, 1, 4, 4), torch.tensor([0, 3]))
