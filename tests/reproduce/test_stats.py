"""vitlab.reproduce.stats: t quantiles, intervals (mean, paired, Welch), P(A > B), power, seeds, verdict rules.

References: published two-sided 95% t table values (e.g. Abramowitz & Stegun Table 26.10), the closed forms of
the t distribution for 1 and 2 degrees of freedom, hand-computed intervals, ``scipy.stats.ttest_rel`` (its own
confidence interval) for the paired interval, a plain Python bootstrap loop and the bootstrap's closed-form
moments for P(A > B), a Monte-Carlo simulation of paired t-tests and the large-n normal formula for the minimum
detectable effect, and a direct search for the seeds needed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlab.errors import ConfigError
from vitlab.reproduce.stats import (
    HELD,
    NOT_RESOLVED,
    REVERSED,
    Interval,
    direction_verdict,
    equivalence_verdict,
    mean_interval,
    minimum_detectable_effect,
    paired_interval,
    paired_t_power,
    prob_greater,
    seeds_for_half_width,
    t_cdf,
    t_quantile,
    welch_interval,
)

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
    assert direction_verdict(welch_interval([1.0], [0.0]), +1) == NOT_RESOLVED


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
    assert direction_verdict(got, +1) == HELD
    assert direction_verdict(got, -1) == REVERSED


def _iv(low: float, high: float) -> Interval:
    return Interval(0.5 * (low + high), low, high, 3, 2.0)


@pytest.mark.parametrize(
    "low,high,sign,expected",
    [
        (0.5, 2.0, +1, HELD),
        (0.5, 2.0, -1, REVERSED),
        (-2.0, -0.5, -1, HELD),
        (-2.0, -0.5, +1, REVERSED),
        (-0.5, 2.0, +1, NOT_RESOLVED),
        (-0.5, 2.0, -1, NOT_RESOLVED),
        (0.0, 2.0, +1, NOT_RESOLVED),  # touching 0 is not excluding it
    ],
)
def test_direction_verdicts(low: float, high: float, sign: int, expected: str) -> None:
    assert direction_verdict(_iv(low, high), sign) == expected


@pytest.mark.parametrize(
    "low,high,expected",
    [
        (-0.4, 0.7, HELD),
        (-1.0, 1.0, HELD),  # the margin's ends are inside
        (-0.4, 1.3, NOT_RESOLVED),
        (-3.0, 3.0, NOT_RESOLVED),
        (1.2, 2.0, REVERSED),
        (-5.0, -1.01, REVERSED),
    ],
)
def test_equivalence_verdicts_with_a_margin_of_one(low: float, high: float, expected: str) -> None:
    assert equivalence_verdict(_iv(low, high), 1.0) == expected


def test_bad_verdict_arguments_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="expected_sign"):
        direction_verdict(_iv(0.0, 1.0), 0)
    with pytest.raises(ConfigError, match="margin"):
        equivalence_verdict(_iv(0.0, 1.0), 0.0)


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
    # point at 0.5, Welch's is wide and contains 0
    seed_effect = [-2.0, 0.0, 2.0, 1.0]
    a = [95.5 + s for s in seed_effect]
    b = [95.0 + s for s in seed_effect]
    paired = paired_interval(a, b)
    assert paired.low == pytest.approx(0.5) and paired.high == pytest.approx(0.5)
    assert direction_verdict(paired, +1) == HELD
    assert direction_verdict(welch_interval(a, b), +1) == NOT_RESOLVED


def test_paired_interval_needs_aligned_samples() -> None:
    with pytest.raises(ValueError, match="per seed"):
        paired_interval([1.0, 2.0], [1.0])


# ------------------------------------------------------------------------------------------ P(A > B)
def _bootstrap_loop(a: list[float], b: list[float], resamples: int, seed: int) -> list[float]:
    """The bootstrap written out: for each resample draw n pair indices, count wins (ties ½) in plain Python."""
    rng = np.random.default_rng(seed)
    n = len(a)
    out = []
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        out.append(sum(1.0 if a[i] > b[i] else 0.5 if a[i] == b[i] else 0.0 for i in idx) / n)
    return out


def test_prob_greater_matches_a_plain_bootstrap_loop() -> None:
    a = [97.1, 96.8, 97.5, 96.9, 97.0]
    b = [96.9, 96.9, 97.0, 96.5, 97.0]  # wins: 1, 0, 1, 1, tie -> 3.5 / 5
    got = prob_greater(a, b, resamples=2000, seed=7)
    boot = _bootstrap_loop(a, b, 2000, 7)
    assert got.p == pytest.approx(0.7)
    assert got.low == pytest.approx(float(np.quantile(boot, 0.025)))
    assert got.high == pytest.approx(float(np.quantile(boot, 0.975)))
    assert got.n == 5 and got.resamples == 2000
    assert prob_greater(a, b, resamples=2000, seed=7) == got  # seeded: the same numbers again


def test_prob_greater_bootstrap_has_the_closed_form_moments() -> None:
    # the resampled share is the mean of n draws from the empirical win distribution: its mean is p̂ and its
    # variance σ̂²/n with σ̂² the (1/n) variance of the wins
    rng = np.random.default_rng(1)
    a, b = list(rng.normal(0, 1, 8)), list(rng.normal(0.3, 1, 8))
    w = np.array([1.0 if x > y else 0.0 for x, y in zip(a, b)])
    boot = np.array(_bootstrap_loop(a, b, 20000, 3))
    assert prob_greater(a, b).p == pytest.approx(w.mean())
    assert boot.mean() == pytest.approx(w.mean(), abs=0.01)
    assert boot.var() == pytest.approx(w.var() / 8, rel=0.05)


def test_prob_greater_all_wins_is_one_with_a_point_interval() -> None:
    got = prob_greater([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert (got.p, got.low, got.high) == (1.0, 1.0, 1.0)
    assert prob_greater([1.0, 1.0], [1.0, 1.0]).p == 0.5  # all ties


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
