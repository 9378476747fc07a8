"""vitlab.reproduce.stats: Student-t quantiles and CDF, intervals, Welch's difference, verdict rules.

References: published two-sided 95% t table values (e.g. Abramowitz & Stegun Table 26.10), the closed forms of
the t distribution for 1 and 2 degrees of freedom, scipy.stats (when installed), and hand-computed intervals.
"""

from __future__ import annotations

import math

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
    incomplete_beta,
    mean_interval,
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


def test_against_scipy_when_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    for df in (1.0, 2.5, 3.0, 7.3, 29.0, 400.0):
        assert t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9)
        assert t_cdf(-1.7, df) == pytest.approx(stats.t.cdf(-1.7, df), rel=1e-9)
    for x, a, b in ((0.3, 2.0, 0.5), (0.9, 0.5, 0.5), (0.01, 10.0, 3.0), (0.7, 15.0, 0.5)):
        assert incomplete_beta(x, a, b) == pytest.approx(special.betainc(a, b, x), rel=1e-10)


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
