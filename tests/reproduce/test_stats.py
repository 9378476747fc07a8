"""vitlab.reproduce.stats: t quantiles, intervals (mean, paired, Welch), power, seeds, claim tests, Holm, P(A > B).

References: published two-sided 95% t table values (e.g. Abramowitz & Stegun Table 26.10), the closed forms of
the t distribution for 1 and 2 degrees of freedom, hand-computed intervals, ``scipy.stats.ttest_rel`` (its own
confidence interval) for the paired interval, a Monte-Carlo simulation of paired t-tests and the large-n normal
formula for the minimum detectable effect, and a direct search for the seeds needed.

The claim tests (paired t p-values, TOST, non-inferiority, Holm, the exact P(A > B) interval) are checked against
``scipy.stats.ttest_rel`` (two-sided and ``alternative=``) and ``scipy.stats.ttest_1samp`` on shifted differences,
p-values computed by hand from the closed form of the t distribution with 2 degrees of freedom, the interval rules
(the 1 − α or 1 − 2α interval against the margin, by hand and as a property), hand-computed Holm adjustments,
Holm's sequential rule written as a loop, ``statsmodels``' Holm where it is installed, the beta-quantile formula of
Clopper & Pearson (1934) and an enumeration of the binomial distribution for the interval's coverage. The unpaired
fallback is checked against ``scipy.stats.ttest_ind(equal_var=False)`` and Welch's interval.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlab.errors import ConfigError
from vitlab.reproduce.stats import (
    DIRECTION,
    EQUIVALENCE,
    HELD,
    NONINFERIORITY,
    NOT_RESOLVED,
    REVERSED,
    ClaimTest,
    apply_holm,
    clopper_pearson,
    direction_pvalues,
    equivalence_pvalues,
    holm,
    mean_interval,
    minimum_detectable_effect,
    noninferiority_pvalues,
    one_sided_t_power,
    paired_interval,
    paired_t_power,
    paired_t_pvalue,
    prob_greater_exact,
    seeds_for_half_width,
    t_cdf,
    t_quantile,
    welch_interval,
    welch_t_pvalue,
)
from vitlab.reproduce.stats import test_claim as claim_test  # renamed: only the tests here are named test_*

# t_{0.975, df} from the standard printed table (4 decimals)
T_TABLE = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 8: 2.3060, 10: 2.2281,
           15: 2.1314, 20: 2.0860, 30: 2.0423, 60: 2.0003, 120: 1.9799}


@pytest.mark.parametrize("df,expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_printed_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=6e-5)


def test_t_cdf_matches_closed_forms_for_one_and_two_degrees_of_freedom() -> None:
    for t in (-7.5, -1.3, -0.2, 0.0, 0.4, 1.0, 3.3, 40.0):
        cauchy = 0.5 + math.atan(t) / math.pi  # df = 1
        two = 0.5 + t / (2.0 * math.sqrt(2.0 + t * t))  # df = 2
        assert t_cdf(t, 1) == pytest.approx(cauchy, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(two, abs=1e-12)


def test_t_quantile_for_infinite_df_is_the_normal_quantile() -> None:
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959963984540054, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(p=st.floats(0.001, 0.999), df=st.floats(0.5, 200.0))
def test_t_quantile_inverts_t_cdf(p: float, df: float) -> None:
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-9)


def test_bad_t_arguments_raise() -> None:
    with pytest.raises(ValueError, match="quantile level"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.9, 0)


def test_mean_interval_by_hand() -> None:
    values = [90.0, 92.0, 97.0]  # mean 93, s = sqrt(13), n = 3
    got = mean_interval(values)
    half = T_TABLE[2] * math.sqrt(13.0 / 3.0)
    assert got.mean == pytest.approx(93.0)
    assert got.low == pytest.approx(93.0 - half, abs=1e-3)
    assert got.high == pytest.approx(93.0 + half, abs=1e-3)
    assert got.df == 2


def test_one_seed_has_no_interval_and_is_not_resolved() -> None:
    got = mean_interval([0.5])
    assert got.mean == 0.5 and math.isnan(got.low) and math.isnan(got.high)
    assert math.isnan(welch_interval([1.0], [0.0]).low)
    assert claim_test([1.0], [0.0], DIRECTION, +1, paired=False).verdict == NOT_RESOLVED


def test_welch_interval_by_hand() -> None:
    a, b = [10.0, 12.0, 14.0], [5.0, 6.0, 7.0, 8.0]
    va, vb = 4.0 / 3.0, (5.0 / 3.0) / 4.0  # s_a² / n_a, s_b² / n_b
    se2 = va + vb
    df = se2**2 / (va**2 / 2 + vb**2 / 3)
    got = welch_interval(a, b)
    assert got.mean == pytest.approx(12.0 - 6.5)
    assert got.df == pytest.approx(df)
    assert got.half_width == pytest.approx(t_quantile(0.975, df) * math.sqrt(se2))


def test_welch_with_equal_variances_and_sizes_has_pooled_df() -> None:
    # equal n and s: Welch–Satterthwaite gives 2(n−1)
    got = welch_interval([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert got.df == pytest.approx(4.0)


def test_welch_with_constant_samples_is_a_point() -> None:
    got = welch_interval([1.0, 1.0, 1.0], [0.5, 0.5])
    assert got.low == got.high == pytest.approx(0.5)
    assert claim_test([1.0, 1.0, 1.0], [0.5, 0.5], DIRECTION, +1, paired=False).verdict == HELD
    assert claim_test([1.0, 1.0, 1.0], [0.5, 0.5], DIRECTION, -1, paired=False).verdict == REVERSED


def _with_interval(low: float, high: float, level: float) -> tuple[list[float], list[float]]:
    """Three seeds whose paired two-sided ``level`` interval is [low, high]: d = c − k, c, c + k (s_d = k), with
    c the midpoint and k = half-width · √3 / t_{(1+level)/2, 2}; b = 0."""
    c, k = 0.5 * (low + high), 0.5 * (high - low) * math.sqrt(3.0) / t_quantile(0.5 + level / 2.0, 2)
    return [c - k, c, c + k], [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "kind,sign,margin,low,high,expected",
    [
        (DIRECTION, +1, 0.0, 0.5, 2.0, HELD),
        (DIRECTION, -1, 0.0, 0.5, 2.0, REVERSED),
        (DIRECTION, -1, 0.0, -2.0, -0.5, HELD),
        (DIRECTION, +1, 0.0, -2.0, -0.5, REVERSED),
        (DIRECTION, +1, 0.0, -0.5, 2.0, NOT_RESOLVED),
        (DIRECTION, -1, 0.0, -0.5, 2.0, NOT_RESOLVED),
        (DIRECTION, +1, 1.0, 1.2, 3.0, HELD),  # "higher by at least 1": the interval clears 1
        (DIRECTION, +1, 1.0, 0.5, 2.0, NOT_RESOLVED),
        (DIRECTION, +1, 1.0, -1.0, 0.8, REVERSED),
        (NONINFERIORITY, +1, 1.0, -0.5, 2.0, HELD),  # the near end clears −m
        (NONINFERIORITY, +1, 1.0, -1.5, 2.0, NOT_RESOLVED),
        (NONINFERIORITY, +1, 1.0, -3.0, -1.2, REVERSED),
        (NONINFERIORITY, -1, 1.0, -2.0, 0.5, HELD),  # lower is better: the near end is the upper one
        (NONINFERIORITY, -1, 1.0, 1.2, 3.0, REVERSED),
        (EQUIVALENCE, +1, 1.0, -0.4, 0.7, HELD),
        (EQUIVALENCE, +1, 1.0, -0.4, 1.3, NOT_RESOLVED),
        (EQUIVALENCE, +1, 1.0, -3.0, 3.0, NOT_RESOLVED),
        (EQUIVALENCE, +1, 1.0, 1.2, 2.0, REVERSED),
        (EQUIVALENCE, +1, 1.0, -5.0, -1.01, REVERSED),
    ],
)
def test_claim_verdicts_read_off_the_interval(kind: str, sign: int, margin: float, low: float, high: float,
                                               expected: str) -> None:
    # reference: the interval rules of the module docstring, on data built to have the given interval (95 % for
    # a direction claim, 90 % for non-inferiority and equivalence at α = 0.05)
    level = 0.95 if kind == DIRECTION else 0.90
    a, b = _with_interval(low, high, level)
    got = claim_test(a, b, kind, sign, margin, alpha=0.05)
    assert (got.interval.low, got.interval.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert got.level == pytest.approx(level) and got.verdict == expected


def test_an_interval_end_touching_the_null_is_not_resolved() -> None:
    # p = α exactly puts the 1 − α interval's end on 0: touching 0 is not excluding it (p < α is needed)
    a, b = [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]
    p = claim_test(a, b, DIRECTION).p
    on_edge = claim_test(a, b, DIRECTION, alpha=p)
    assert on_edge.interval.low == pytest.approx(0.0, abs=1e-9) and on_edge.verdict == NOT_RESOLVED
    assert claim_test(a, b, DIRECTION, alpha=p * (1 + 1e-9)).verdict == HELD


# ------------------------------------------------------------------------------------------ paired interval
def test_paired_interval_matches_scipy_ttest_rel() -> None:
    # reference: scipy's paired t-test and its own confidence interval of the mean difference
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 11):
        a = rng.normal(97.0, 0.6, n)
        b = a - rng.normal(0.3, 0.4, n)
        got = paired_interval(list(a), list(b))
        ref = stats.ttest_rel(a, b).confidence_interval(0.95)
        assert got.low == pytest.approx(ref.low, rel=1e-12) and got.high == pytest.approx(ref.high, rel=1e-12)
        assert got.mean == pytest.approx(float(np.mean(a - b))) and got.df == n - 1
        assert got.sd == pytest.approx(float(np.std(a - b, ddof=1))) and got.method == "paired"


def test_pairing_removes_the_shared_seed_effect_that_welch_keeps() -> None:
    # a seed effect shared by both variants (+-2) with a constant +0.5 difference: the paired interval is a
    # point at 0.5, Welch's is wide and contains 0; the claim "a is higher" holds paired, not unpaired
    seed_effect = [-2.0, 0.0, 2.0, 1.0]
    a = [95.5 + s for s in seed_effect]
    b = [95.0 + s for s in seed_effect]
    paired = paired_interval(a, b)
    assert paired.low == pytest.approx(0.5) and paired.high == pytest.approx(0.5)
    welch = welch_interval(a, b)
    assert welch.low < 0.0 < welch.high
    assert claim_test(a, b, DIRECTION, +1).verdict == HELD
    assert claim_test(a, b, DIRECTION, +1, paired=False).verdict == NOT_RESOLVED


def test_paired_interval_needs_aligned_samples() -> None:
    with pytest.raises(ValueError, match="per seed"):
        paired_interval([1.0, 2.0], [1.0])


# ------------------------------------------------------------------------------------------ power, seeds
@pytest.mark.parametrize("n", [3, 5, 10])
def test_minimum_detectable_effect_has_the_stated_power_in_simulation(n: int) -> None:
    # reference: simulate paired experiments with the MDE as the true difference and count how often
    # scipy's ttest_1samp rejects at 5 %
    stats = pytest.importorskip("scipy.stats")
    sd = 0.6
    mde = minimum_detectable_effect(sd, n, power=0.8)
    rng = np.random.default_rng(n)
    diffs = rng.normal(mde, sd, size=(40000, n))
    rejected = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.01)
    assert paired_t_power(mde, sd, n) == pytest.approx(0.8, abs=1e-9)


def test_one_sided_power_matches_a_simulated_one_sided_t_test() -> None:
    # reference: simulate paired experiments at a true difference and count how often scipy's one-sided
    # ttest_1samp (alternative="greater") rejects at 5 %; and the two-sided power is the sum of the two tails
    stats = pytest.importorskip("scipy.stats")
    sd, n, effect = 0.5, 6, 0.4
    power = one_sided_t_power(effect, sd, n, 0.05)
    rng = np.random.default_rng(7)
    diffs = rng.normal(effect, sd, size=(40000, n))
    rejected = stats.ttest_1samp(diffs, 0.0, axis=1, alternative="greater").pvalue < 0.05
    assert rejected.mean() == pytest.approx(power, abs=0.01)
    assert one_sided_t_power(0.0, sd, n, 0.05) == pytest.approx(0.05, abs=1e-12)  # the level, at no effect
    assert paired_t_power(effect, sd, n, 0.9) == pytest.approx(power + one_sided_t_power(-effect, sd, n, 0.05),
                                                                abs=1e-15)
    with pytest.raises(ValueError, match="positive spread"):
        one_sided_t_power(effect, 0.0, n)


def test_minimum_detectable_effect_tends_to_the_normal_formula() -> None:
    z = 1.959963984540054 + 0.8416212335729143  # z_{0.975} + z_{0.8}
    assert minimum_detectable_effect(1.0, 4000) == pytest.approx(z / math.sqrt(4000), rel=2e-3)
    assert minimum_detectable_effect(0.0, 5) == 0.0
    assert minimum_detectable_effect(2.0, 5) == pytest.approx(2.0 * minimum_detectable_effect(1.0, 5))


def test_seeds_for_half_width_is_the_first_n_that_reaches_it() -> None:
    for sd in (0.1, 0.4, 0.8, 1.5):
        n = seeds_for_half_width(sd, 0.5)
        assert T_TABLE.get(n - 1, t_quantile(0.975, n - 1)) * sd / math.sqrt(n) <= 0.5 + 1e-4
        if n > 2:
            assert t_quantile(0.975, n - 2) * sd / math.sqrt(n - 1) > 0.5
    assert seeds_for_half_width(0.0) == 2
    assert seeds_for_half_width(0.4) == 5  # t(0.975, 4) · 0.4 / √5 = 0.497
    with pytest.raises(ValueError, match="half-width"):
        seeds_for_half_width(0.4, 0.0)


# ------------------------------------------------------------------------------------------ paired t p-values
def _t2_sf(t: float) -> float:
    """P(T > t) for Student's t with 2 degrees of freedom, closed form: ½ − t / (2√(2 + t²))."""
    return 0.5 - t / (2.0 * math.sqrt(2.0 + t * t))


def _pairs(rng: np.random.Generator, n: int, shift: float, sd: float) -> tuple[list[float], list[float]]:
    a = rng.normal(80.0, 1.0, n)
    return list(a), list(a - rng.normal(shift, sd, n))


def test_paired_t_pvalue_matches_scipy_ttest_rel() -> None:
    # reference: scipy.stats.ttest_rel, two-sided and one-sided; a null other than 0 by shifting b by it
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    for n in (2, 3, 5, 9):
        a, b = _pairs(rng, n, 0.3, 0.5)
        for null in (0.0, 0.4, -1.0):
            for alternative in ("two-sided", "greater", "less"):
                ref = stats.ttest_rel(a, np.asarray(b) + null, alternative=alternative).pvalue
                assert paired_t_pvalue(a, b, null, alternative) == pytest.approx(ref, rel=1e-9, abs=1e-14)


def test_paired_t_pvalue_by_hand_with_two_degrees_of_freedom() -> None:
    # d = [1, 2, 3]: d̄ = 2, s_d = 1, t = 2√3 on 2 df; reference: the closed form of the t(2) tail
    a, b = [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]
    one = _t2_sf(2.0 * math.sqrt(3.0))  # 0.03709
    assert paired_t_pvalue(a, b, alternative="greater") == pytest.approx(one, rel=1e-10)
    assert paired_t_pvalue(a, b, alternative="less") == pytest.approx(1.0 - one, rel=1e-10)
    assert paired_t_pvalue(a, b) == pytest.approx(2.0 * one, rel=1e-10)
    assert one == pytest.approx(0.03709, abs=1e-5)


def test_paired_t_pvalue_degenerate_inputs_are_defined() -> None:
    # by the documented rules: one seed gives 1; zero spread gives 0 on the side the constant lies, else 1
    assert paired_t_pvalue([2.0], [1.0]) == 1.0
    same = ([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])  # every difference 0.5
    assert paired_t_pvalue(*same) == 0.0
    assert paired_t_pvalue(*same, alternative="greater") == 0.0
    assert paired_t_pvalue(*same, alternative="less") == 1.0
    for alternative in ("two-sided", "greater", "less"):
        assert paired_t_pvalue(*same, null=0.5, alternative=alternative) == 1.0
    assert paired_t_pvalue([1.0, 2.0], [1.0, 2.0]) == 1.0


def test_paired_t_pvalue_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="per seed"):
        paired_t_pvalue([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no pairs"):
        paired_t_pvalue([], [])
    with pytest.raises(ValueError, match="finite"):
        paired_t_pvalue([1.0, float("nan")], [0.0, 0.0])
    with pytest.raises(ValueError, match="alternative"):
        paired_t_pvalue([1.0, 2.0], [0.0, 0.0], alternative="bigger")


# ------------------------------------------------------------------------------------------ the three claim kinds
def test_direction_pvalues_are_the_two_sided_ttest_rel_on_the_observed_side() -> None:
    # reference: scipy.stats.ttest_rel two-sided p, assigned to the side of the sign of mean(a − b)
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    for shift in (0.8, -0.8, 0.1):
        a, b = _pairs(rng, 5, shift, 0.5)
        ref = stats.ttest_rel(a, b).pvalue
        up = float(np.mean(np.subtract(a, b))) > 0
        assert direction_pvalues(a, b, +1) == pytest.approx((ref, 1.0) if up else (1.0, ref))
        assert direction_pvalues(a, b, -1) == pytest.approx((1.0, ref) if up else (ref, 1.0))
    a, b = _pairs(rng, 6, 12.0, 0.5)  # "higher by at least 10": the test of δ = 10
    ref = stats.ttest_rel(a, np.asarray(b) + 10.0).pvalue
    assert direction_pvalues(a, b, +1, 10.0) == pytest.approx((ref, 1.0))


def test_direction_claim_verdicts_by_hand() -> None:
    # d = [1, 2, 3]: two-sided p = 2 · 0.03709 = 0.0742 (t(2) closed form): not resolved at 5 %, held at 10 %
    a, b = [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]
    p = 2.0 * _t2_sf(2.0 * math.sqrt(3.0))
    got = claim_test(a, b, DIRECTION, +1, alpha=0.05)
    assert (got.p_held, got.p_reversed, got.p) == (pytest.approx(p), 1.0, pytest.approx(p))
    assert got.verdict == got.raw_verdict == NOT_RESOLVED and got.p_adjusted is None
    assert got.estimate == pytest.approx(2.0) and got.level == pytest.approx(0.95)
    assert claim_test(a, b, DIRECTION, +1, alpha=0.1).verdict == HELD
    assert claim_test(a, b, DIRECTION, -1, alpha=0.1).verdict == REVERSED
    # by at least 1: t = (2 − 1)·√3, p = 2·P(T > √3) = 0.2254: not resolved even at 10 %
    assert claim_test(a, b, DIRECTION, +1, 1.0, alpha=0.1).p == pytest.approx(2.0 * _t2_sf(math.sqrt(3.0)))


def test_noninferiority_pvalues_are_one_sided_t_on_shifted_differences() -> None:
    # reference: scipy.stats.ttest_1samp on s·d + m against 0, alternative "greater" (held) and "less" (reversed)
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(6)
    for sign in (1, -1):
        for shift in (0.0, -0.6, 1.5):
            a, b = _pairs(rng, 5, shift, 0.5)
            shifted = sign * (np.asarray(a) - np.asarray(b)) + 0.5
            held = stats.ttest_1samp(shifted, 0.0, alternative="greater").pvalue
            reversed_ = stats.ttest_1samp(shifted, 0.0, alternative="less").pvalue
            assert noninferiority_pvalues(a, b, sign, 0.5) == pytest.approx((held, reversed_), rel=1e-9)


def test_noninferiority_verdicts_by_hand() -> None:
    # d = [0, 1, 2], m = 1: t = (1 + 1)·√3, one-sided p = 0.03709 (t(2) closed form) -> held at 5 %, while the
    # direction claim "higher" (two-sided p = 2·P(T > √3) = 0.225) is not resolved
    a, b = [0.0, 1.0, 2.0], [0.0, 0.0, 0.0]
    got = claim_test(a, b, NONINFERIORITY, +1, 1.0)
    assert got.p_held == pytest.approx(_t2_sf(2.0 * math.sqrt(3.0))) and got.verdict == HELD
    assert got.level == pytest.approx(0.9) and got.interval.low > -1.0  # the 1 − 2α interval's near end
    assert claim_test(a, b, DIRECTION, +1).verdict == NOT_RESOLVED
    # lower is better (s = −1) on the mirrored data: the same test
    assert claim_test(b, a, NONINFERIORITY, -1, 1.0).p_held == pytest.approx(got.p_held)
    # d = [−3, −4, −5], m = 1: s·d + m has mean −3, t = −3√3, p_reversed = P(T > 3√3) = 0.01756 -> reversed
    worse = claim_test([-3.0, -4.0, -5.0], [0.0, 0.0, 0.0], NONINFERIORITY, +1, 1.0)
    assert worse.p_reversed == pytest.approx(_t2_sf(3.0 * math.sqrt(3.0))) and worse.verdict == REVERSED
    assert worse.interval.high < -1.0


def test_tost_pvalue_is_the_larger_one_sided_test_and_reads_the_90_percent_interval() -> None:
    # reference: two scipy.stats.ttest_1samp one-sided tests on d + m ("greater") and d − m ("less"); and scipy's
    # own 90 % paired interval (ttest_rel(...).confidence_interval(0.9)) inside (−m, m) for held
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    seen = set()
    for shift in (0.0, 0.3, 0.7, 1.5, -2.5, 0.05):
        for n in (3, 5, 8):
            a, b = _pairs(rng, n, shift, 0.4)
            d = np.asarray(a) - np.asarray(b)
            lower = stats.ttest_1samp(d + 1.0, 0.0, alternative="greater").pvalue
            upper = stats.ttest_1samp(d - 1.0, 0.0, alternative="less").pvalue
            above = stats.ttest_1samp(d - 1.0, 0.0, alternative="greater").pvalue
            below = stats.ttest_1samp(d + 1.0, 0.0, alternative="less").pvalue
            assert equivalence_pvalues(a, b, 1.0) == pytest.approx((max(lower, upper), min(above, below)), rel=1e-9)
            ci = stats.ttest_rel(a, b).confidence_interval(0.9)
            expected = HELD if -1 < ci.low and ci.high < 1 else REVERSED if ci.low > 1 or ci.high < -1 else NOT_RESOLVED
            got = claim_test(a, b, EQUIVALENCE, margin=1.0)
            assert got.verdict == expected
            seen.add(expected)
    assert seen == {HELD, REVERSED, NOT_RESOLVED}


def test_equivalence_verdicts_by_hand_and_the_audit_case() -> None:
    # d = [−1, 0, 1], m = 2: each one-sided t = 2√3, TOST p = 0.03709 (t(2) closed form): held. TOST reads the
    # 90 % interval (half-width 2.9200/√3 = 1.69, inside ±2); the 95 % one (4.3027/√3 = 2.48), which the audit's
    # old rule read, is not inside ±2
    a, b = [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]
    got = claim_test(a, b, EQUIVALENCE, margin=2.0)
    assert got.p_held == pytest.approx(_t2_sf(2.0 * math.sqrt(3.0))) and got.verdict == HELD
    assert got.interval.high == pytest.approx(2.9200 / math.sqrt(3.0), abs=1e-4)
    wide = paired_interval(a, b).high
    assert wide == pytest.approx(T_TABLE[2] / math.sqrt(3.0), abs=1e-4) and wide > 2.0
    # m = 1: TOST p = P(T > √3) = 0.113: not resolved
    assert claim_test(a, b, EQUIVALENCE, margin=1.0).p_held == pytest.approx(_t2_sf(math.sqrt(3.0)))
    # d = [4, 5, 6], m = 1: the test of δ > 1 has t = 4√3, p = 0.0101: reversed
    far = claim_test([4.0, 5.0, 6.0], [0.0, 0.0, 0.0], EQUIVALENCE, margin=1.0)
    assert far.p_reversed == pytest.approx(_t2_sf(4.0 * math.sqrt(3.0))) and far.verdict == REVERSED


@settings(max_examples=200, deadline=None)
@given(b4=st.lists(st.integers(-400, 400), min_size=1, max_size=7), shift=st.integers(-16, 16),
       noise=st.lists(st.integers(-4, 4), min_size=7, max_size=7),
       kind=st.sampled_from([DIRECTION, NONINFERIORITY, EQUIVALENCE]),
       sign=st.sampled_from([1, -1]), margin=st.sampled_from([0.25, 1.0, 2.5]), alpha=st.sampled_from([0.05, 0.1]))
def test_raw_verdict_is_the_interval_rule(b4, shift, noise, kind, sign, margin, alpha) -> None:
    # reference: the interval rules of the module docstring on paired_interval at the stated level (1 − α for a
    # direction claim, 1 − 2α otherwise); a point interval for zero spread, NaN (not resolved) for one seed.
    # Values are multiples of ¼, so the differences (shift + noise)/4 are exact
    n = len(b4)
    a, b = [(y + shift + e) / 4 for y, e in zip(b4, noise)], [y / 4 for y in b4]
    margin = 0.0 if kind == DIRECTION and margin == 2.5 else margin
    got = claim_test(a, b, kind, sign, margin, alpha)
    iv = paired_interval(a, b, 1.0 - alpha if kind == DIRECTION else 1.0 - 2.0 * alpha)
    lo, hi = sign * iv.low, sign * iv.high
    lo, hi = min(lo, hi), max(lo, hi)  # the interval of s·δ
    if n < 2:
        expected = NOT_RESOLVED
    elif kind == DIRECTION:
        expected = HELD if lo > margin else REVERSED if hi < margin else NOT_RESOLVED
    elif kind == NONINFERIORITY:
        expected = HELD if lo > -margin else REVERSED if hi < -margin else NOT_RESOLVED
    else:
        expected = (HELD if -margin < lo and hi < margin else
                    REVERSED if lo > margin or hi < -margin else NOT_RESOLVED)
    assert got.verdict == got.raw_verdict == expected
    assert np.allclose([got.interval.low, got.interval.high], [iv.low, iv.high], rtol=0, atol=0, equal_nan=True)
    assert got.p == min(got.p_held, got.p_reversed) and 0.0 <= got.p <= 1.0
    assert not (got.p_held < 0.5 and got.p_reversed < 0.5)  # at most one side can be significant


def test_degenerate_claims_have_defined_verdicts() -> None:
    # one seed: p = 1, NaN interval, not resolved (never a NaN p)
    one = claim_test([2.0], [1.0], DIRECTION)
    assert (one.p_held, one.p_reversed, one.verdict) == (1.0, 1.0, NOT_RESOLVED) and math.isnan(one.interval.low)
    # zero spread (every difference c): p = 0 on the side c lies, 1 at the boundary
    base = [1.0, 2.0, 3.0]
    shifted = lambda c: [x + c for x in base]
    assert claim_test(shifted(0.5), base, DIRECTION).verdict == HELD
    assert claim_test(shifted(0.5), base, DIRECTION).p == 0.0
    assert claim_test(shifted(0.5), base, DIRECTION, -1).verdict == REVERSED
    assert claim_test(base, base, DIRECTION).p == 1.0
    assert claim_test(shifted(0.5), base, EQUIVALENCE, margin=1.0).verdict == HELD
    assert claim_test(shifted(1.0), base, EQUIVALENCE, margin=1.0).verdict == NOT_RESOLVED  # on the margin's end
    assert claim_test(shifted(1.5), base, EQUIVALENCE, margin=1.0).verdict == REVERSED
    assert claim_test(shifted(-1.0), base, NONINFERIORITY, +1, 1.0).verdict == NOT_RESOLVED
    assert claim_test(shifted(-1.5), base, NONINFERIORITY, +1, 1.0).verdict == REVERSED


def test_bad_claim_arguments_raise() -> None:
    a, b = [1.0, 2.0, 3.0], [0.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match="kind"):
        claim_test(a, b, "superiority")
    with pytest.raises(ConfigError, match="expected_sign"):
        claim_test(a, b, DIRECTION, 0)
    with pytest.raises(ConfigError, match="margin"):
        claim_test(a, b, EQUIVALENCE)
    with pytest.raises(ConfigError, match="margin"):
        claim_test(a, b, NONINFERIORITY, +1, -1.0)
    with pytest.raises(ConfigError, match="least difference"):
        claim_test(a, b, DIRECTION, +1, -0.5)
    with pytest.raises(ValueError, match="alpha"):
        claim_test(a, b, DIRECTION, alpha=0.5)


# ------------------------------------------------------------------------------------------ Holm
def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005, 3·0.01, 2·0.03, 1·0.04 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 2·0.5 capped at 1, then the running max
    assert holm([0.02, 0.5, 0.02]) == pytest.approx([0.06, 0.5, 0.06])  # ties share one value
    assert holm([0.2]) == [0.2] and holm([]) == []


def test_holm_matches_statsmodels_where_installed() -> None:
    # reference: statsmodels.stats.multitest.multipletests(method="holm"); skipped when statsmodels is absent
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(8)
    for k in (1, 2, 5, 12):
        p = rng.uniform(0.0, 0.2, k)
        reject, adjusted, _, _ = multitest.multipletests(p, alpha=0.05, method="holm")
        assert holm(list(p)) == pytest.approx(list(adjusted), rel=1e-12)


def _holm_sequential(p: list[float], alpha: float) -> set[int]:
    """Holm's rule as he states it: walk the sorted p-values, reject while (k − j + 1)·p_(j) < α, stop at the first
    that fails (the product, not α/(k − j + 1), so the comparison rounds as the adjusted value does)."""
    k = len(p)
    rejected = set()
    for j, i in enumerate(sorted(range(k), key=lambda i: p[i])):
        if not (k - j) * p[i] < alpha:
            break
        rejected.add(i)
    return rejected


@settings(max_examples=200, deadline=None)
@given(p=st.lists(st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.01, 0.025, 0.05, 1.0])), max_size=12),
       alpha=st.sampled_from([0.01, 0.05, 0.1]))
def test_holm_properties(p: list[float], alpha: float) -> None:
    # adjusted >= raw, <= 1, monotone in the raw order; rejections at α are Holm's sequential rule
    q = holm(p)
    assert all(pi <= qi <= 1.0 for pi, qi in zip(p, q))
    by_raw = sorted(range(len(p)), key=lambda i: p[i])
    assert all(q[i] <= q[j] for i, j in zip(by_raw, by_raw[1:]))
    assert {i for i, qi in enumerate(q) if qi < alpha} == _holm_sequential(p, alpha)


def test_holm_rejects_p_values_outside_zero_one() -> None:
    for bad in ([0.1, 1.2], [-0.01], [float("nan")]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            holm(bad)


def _with_p(p_held: float, p_reversed: float) -> ClaimTest:
    base = claim_test([1.0, 2.0, 3.0], [0.0, 0.5, 1.5], DIRECTION)
    verdict = HELD if p_held < 0.05 else REVERSED if p_reversed < 0.05 else NOT_RESOLVED
    return ClaimTest(base.kind, 1, 0.0, 0.05, base.estimate, base.interval, base.level, p_held, p_reversed,
                     verdict, verdict)


def test_apply_holm_by_hand_keeps_the_raw_values() -> None:
    # decision p-values 0.001 (reversed), 0.03 (held), 0.04 (held), k = 3: 3·0.001, 2·0.03, 1·0.04 -> 0.003, 0.06,
    # 0.06: the reversal stands, both held claims become not resolved
    family = [_with_p(0.03, 1.0), _with_p(1.0, 0.001), _with_p(0.04, 1.0)]
    got = apply_holm(family, 0.05)
    assert [r.p_adjusted for r in got] == pytest.approx([0.06, 0.003, 0.06])
    assert [r.verdict for r in got] == [NOT_RESOLVED, REVERSED, NOT_RESOLVED]
    assert [r.raw_verdict for r in got] == [HELD, REVERSED, HELD]
    for before, after in zip(family, got):
        assert (after.interval, after.p_held, after.p_reversed) == (before.interval, before.p_held, before.p_reversed)
    # 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04: all three held
    held = apply_holm([_with_p(0.01, 1.0), _with_p(0.02, 1.0), _with_p(0.04, 1.0)])
    assert [r.verdict for r in held] == [HELD, HELD, HELD]


@settings(max_examples=60, deadline=None)
@given(seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=6), alpha=st.sampled_from([0.05, 0.1]))
def test_apply_holm_only_removes_verdicts(seeds: list[int], alpha: float) -> None:
    # p̃ ≥ p: an adjusted verdict is the raw one or "not resolved"; p_adjusted is holm() of the decision p-values
    family = []
    for s in seeds:
        rng = np.random.default_rng(s)
        a, b = _pairs(rng, 4, float(rng.normal(0, 0.6)), 0.5)
        family.append(claim_test(a, b, [DIRECTION, NONINFERIORITY, EQUIVALENCE][s % 3], 1, 0.5, alpha))
    got = apply_holm(family, alpha)
    assert [r.p_adjusted for r in got] == holm([r.p for r in family])
    assert all(r.verdict in (r.raw_verdict, NOT_RESOLVED) for r in got)


# ------------------------------------------------------------------------------------------ exact P(A > B)
def _beta_interval(k: int, n: int, level: float) -> tuple[float, float]:
    """Clopper & Pearson (1934) from the beta quantiles: Beta(α/2; k, n − k + 1), Beta(1 − α/2; k + 1, n − k)."""
    stats = pytest.importorskip("scipy.stats")
    tail = (1.0 - level) / 2.0
    low = 0.0 if k == 0 else stats.beta.ppf(tail, k, n - k + 1)
    high = 1.0 if k == n else stats.beta.ppf(1.0 - tail, k + 1, n - k)
    return float(low), float(high)


@pytest.mark.parametrize("level", [0.9, 0.95])
def test_clopper_pearson_matches_the_beta_quantile_formula(level: float) -> None:
    for n in range(1, 13):
        for k in range(n + 1):
            assert clopper_pearson(k, n, level) == pytest.approx(_beta_interval(k, n, level), abs=1e-10)


def test_clopper_pearson_covers_at_least_the_level() -> None:
    # reference: enumeration; for each true p, the binomial probability of the k whose interval holds p is ≥ 95 %
    stats = pytest.importorskip("scipy.stats")
    for n in (3, 5, 10):
        intervals = [clopper_pearson(k, n) for k in range(n + 1)]
        for p in np.linspace(0.01, 0.99, 99):
            cover = sum(stats.binom.pmf(k, n, p) for k, (lo, hi) in enumerate(intervals) if lo <= p <= hi)
            assert cover >= 0.95 - 1e-12


def test_prob_greater_exact_five_of_five_is_the_audit_example() -> None:
    # the audit: 5 wins of 5 -> [0.478, 1] exactly, where the bootstrap the report used before printed [1, 1]
    a, b = [2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 1.0, 1.0, 1.0, 1.0]
    got = prob_greater_exact(a, b)
    assert (got.p, got.n, got.wins, got.ties) == (1.0, 5, 5, 0)
    assert got.low == pytest.approx(0.025 ** (1 / 5), abs=1e-12)  # k = n: the lower bound is (α/2)^(1/n)
    assert got.low == pytest.approx(0.478, abs=5e-4) and got.high == 1.0


def test_prob_greater_exact_counts_ties_half_with_the_wider_integer_bounds() -> None:
    # wins 1, 0, 1, 1 and one tie: p̂ = 3.5/5; low from 3 of 5, high from 4 of 5 (reference: the beta formula)
    a = [97.1, 96.8, 97.5, 96.9, 97.0]
    b = [96.9, 96.9, 97.0, 96.5, 97.0]
    got = prob_greater_exact(a, b)
    assert (got.p, got.wins, got.ties, got.level) == (pytest.approx(0.7), 3, 1, 0.95)
    assert got.low == pytest.approx(_beta_interval(3, 5, 0.95)[0]) and got.high == pytest.approx(_beta_interval(4, 5, 0.95)[1])
    all_ties = prob_greater_exact([1.0, 1.0], [1.0, 1.0])
    assert (all_ties.p, all_ties.low, all_ties.high) == (0.5, 0.0, 1.0)


def test_bad_binomial_arguments_raise() -> None:
    with pytest.raises(ValueError, match="k <= n"):
        clopper_pearson(3, 2)
    with pytest.raises(ValueError, match="k <= n"):
        clopper_pearson(0, 0)
    with pytest.raises(ValueError, match="level"):
        clopper_pearson(1, 2, 1.0)
    with pytest.raises(ValueError, match="no pairs"):
        prob_greater_exact([], [])


# ------------------------------------------------------------------------------------------ the unpaired fallback
def test_welch_pvalue_is_scipys_ttest_ind_with_unequal_variances() -> None:
    stats = pytest.importorskip("scipy.stats")
    a, b = [10.2, 9.1, 11.4, 10.8], [8.0, 8.9, 7.2, 9.5, 8.4, 7.9]
    for null in (0.0, 1.5, -0.7):
        for alternative in ("two-sided", "greater", "less"):
            ref = stats.ttest_ind(np.asarray(a) - null, b, equal_var=False, alternative=alternative).pvalue
            assert welch_t_pvalue(a, b, null, alternative) == pytest.approx(ref, rel=1e-12)
    assert welch_t_pvalue([1.0], b) == 1.0  # one value on a side: no spread to estimate
    assert welch_t_pvalue([2.0, 2.0], [1.0, 1.0], 0.0, "greater") == 0.0
    assert welch_t_pvalue([2.0, 2.0], [1.0, 1.0], 1.0) == 1.0  # both constant, the difference on the null


def test_unpaired_claim_tests_use_welch_for_every_kind() -> None:
    """test_claim(paired=False): the same three tests on Welch's statistic, with Welch's interval at 1 − α or 1 − 2α."""
    stats = pytest.importorskip("scipy.stats")
    a, b = [95.1, 95.6, 94.9, 95.3], [94.8, 95.2, 95.0, 94.6, 95.1]
    direction = claim_test(a, b, DIRECTION, +1, 0.0, 0.05, paired=False)
    assert direction.interval == welch_interval(a, b, 0.95) and direction.interval.method == "welch"
    assert direction.p_held == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    ni = claim_test(a, b, NONINFERIORITY, +1, 0.5, 0.05, paired=False)
    assert ni.level == pytest.approx(0.90) and ni.interval == welch_interval(a, b, 0.90)
    assert ni.p_held == pytest.approx(stats.ttest_ind(np.asarray(a) + 0.5, b, equal_var=False,
                                                      alternative="greater").pvalue)
    tost = claim_test(a, b, EQUIVALENCE, +1, 1.0, 0.05, paired=False)
    upper = stats.ttest_ind(np.asarray(a) - 1.0, b, equal_var=False, alternative="less").pvalue
    lower = stats.ttest_ind(np.asarray(a) + 1.0, b, equal_var=False, alternative="greater").pvalue
    assert tost.p_held == pytest.approx(max(upper, lower))
    assert tost.verdict == HELD  # Welch's 90% interval lies inside ±1
    assert -1.0 < tost.interval.low and tost.interval.high < 1.0
