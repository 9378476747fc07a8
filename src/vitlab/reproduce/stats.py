"""Small-sample statistics for the reproduction report: t intervals (paired and Welch), P(A > B), power, verdicts.

The distributions come from :mod:`scipy.stats` (Student's t, the noncentral t); nothing is hand-rolled.

* Mean and 95% interval over n seeds (Student 1908): x̄ ± t_{0.975, n−1} · s / √n, with the unbiased
  sample standard deviation s.
* **Paired difference** (the design for variants that share seeds: the same seed gives them the same
  initialisation, data order and augmentation draws; Bouthillier et al. 2021, "Accounting for variance in
  machine learning benchmarks", MLSys, recommend it): per-seed differences d_i = a_i − b_i, interval
  d̄ ± t_{0.975, n−1} · s_d / √n. It is the one-sample interval of the differences, the interval of
  ``scipy.stats.ttest_rel``.
* Difference of two means with unequal variances, for samples that are not paired (Welch 1947): se =
  √(s_a²/n_a + s_b²/n_b), Welch–Satterthwaite degrees of freedom
  ν = se⁴ / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1)), interval d ± t_{0.975, ν} · se.
* **P(A > B)** (Bouthillier et al. 2021, Sec. 4): the share of paired seeds on which A beats B,
  p̂ = (1/n) Σ [a_i > b_i] (a tie counts ½), with a percentile-bootstrap interval over resampled pairs
  (seeded, so the report is reproducible). Their rule: A is significantly better when the interval's lower
  bound exceeds 0.5, and meaningfully better when its upper bound exceeds γ = 0.75.
* **Minimum detectable effect** of a paired t-test with n seeds and per-seed difference spread σ: the
  smallest true mean difference δ that a two-sided level-α test detects with the given power, solved exactly
  from the noncentral t distribution, power(δ) = P(|T'| > t_{1−α/2, n−1}), T' ~ t'(n−1, δ√n/σ).
  For large n this tends to (z_{1−α/2} + z_{power}) · σ/√n.
* **Seeds needed** for an interval half-width ≤ h at spread σ: the smallest n ≥ 2 with
  t_{0.975, n−1} · σ/√n ≤ h.

Verdicts (what :mod:`vitlab.reproduce.report` writes for each claim):

* a direction claim ("B beats A", expected sign s = ±1 of the difference B − A): **held** when the
  difference's interval excludes 0 on the expected side, **reversed** when it excludes 0 on the other
  side, **not resolved** when it contains 0.
* an equivalence claim ("about equal", within a stated margin m): **held** when the whole interval lies
  in [−m, m]; **reversed** (the two differ by more than the margin) when the whole interval lies
  outside it; **not resolved** otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

from vitlab.errors import ConfigError

HELD = "held"
REVERSED = "reversed"
NOT_RESOLVED = "not resolved"
VERDICTS = (HELD, NOT_RESOLVED, REVERSED)


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` > 0 degrees of freedom (``df = inf``: the standard normal)."""
    if df <= 0 or math.isnan(df):
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    return float(sps.norm.cdf(t) if math.isinf(df) else sps.t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (``df = inf``: the standard normal)."""
    if not (0.0 < p < 1.0):
        raise ValueError(f"quantile level must be in (0, 1), got {p}")
    if df <= 0 or math.isnan(df):
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    return float(sps.norm.ppf(p) if math.isinf(df) else sps.t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """A mean (or difference of means) with its two-sided interval; ``low``/``high`` are NaN for n = 1.

    ``sd`` is the sample standard deviation behind it (of the values, or of the per-seed differences for a
    paired interval; NaN for Welch); ``method`` says which interval it is (``mean``, ``paired``, ``welch``).
    """

    mean: float
    low: float
    high: float
    n: int
    df: float
    sd: float = float("nan")
    method: str = "mean"

    @property
    def half_width(self) -> float:
        return 0.5 * (self.high - self.low)


def _mean_var(values: Sequence[float]) -> tuple[float, float, int]:
    n = len(values)
    if n == 0:
        raise ValueError("no values: at least one seed is needed")
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else float("nan")
    return mean, var, n


def mean_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """x̄ ± t_{(1+level)/2, n−1} · s/√n over the values (one per seed)."""
    mean, var, n = _mean_var(values)
    if n < 2:
        return Interval(mean, float("nan"), float("nan"), n, float("nan"))
    half = t_quantile(0.5 + level / 2.0, n - 1) * math.sqrt(var / n)
    return Interval(mean, mean - half, mean + half, n, float(n - 1), math.sqrt(var))


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Interval of mean(a − b) from per-seed differences: d̄ ± t_{(1+level)/2, n−1} · s_d/√n.

    Args:
        a, b: (n,) values of the two variants, ``a[i]`` and ``b[i]`` from the same seed.

    Raises:
        ValueError: ``a`` and ``b`` differ in length (the pairs are not aligned) or are empty.
    """
    if len(a) != len(b):
        raise ValueError(f"a paired interval needs one value of each variant per seed, got {len(a)} and {len(b)}")
    interval = mean_interval([x - y for x, y in zip(a, b)], level)
    return Interval(interval.mean, interval.low, interval.high, interval.n, interval.df, interval.sd, "paired")


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Interval of mean(a) − mean(b) with Welch's standard error and Welch–Satterthwaite degrees of freedom.

    For samples that are not paired by seed. Both samples constant (zero variance) gives a zero-width
    interval at the difference.
    """
    mean_a, var_a, n_a = _mean_var(a)
    mean_b, var_b, n_b = _mean_var(b)
    diff = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return Interval(diff, float("nan"), float("nan"), min(n_a, n_b), float("nan"), method="welch")
    ua, ub = var_a / n_a, var_b / n_b
    se2 = ua + ub
    if se2 == 0.0:
        return Interval(diff, diff, diff, min(n_a, n_b), math.inf, method="welch")
    df = se2**2 / (ua**2 / (n_a - 1) + ub**2 / (n_b - 1))
    half = t_quantile(0.5 + level / 2.0, df) * math.sqrt(se2)
    return Interval(diff, diff - half, diff + half, min(n_a, n_b), df, method="welch")


@dataclass(frozen=True)
class ProbGreater:
    """P(A > B) over paired seeds with its percentile-bootstrap interval (Bouthillier et al. 2021)."""

    p: float
    low: float
    high: float
    n: int
    resamples: int


def wins(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Per pair: 1 where a_i > b_i, ½ on a tie, 0 otherwise. a, b: (n,) aligned by seed -> (n,) float64."""
    if len(a) != len(b):
        raise ValueError(f"P(A > B) needs one value of each variant per seed, got {len(a)} and {len(b)}")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (x > y) + 0.5 * (x == y)


def prob_greater(
    a: Sequence[float], b: Sequence[float], resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> ProbGreater:
    """p̂ = (1/n) Σ [a_i > b_i] (ties ½) and its percentile-bootstrap interval over resampled seed pairs.

    Each of ``resamples`` bootstrap samples draws n pair indices with replacement from a
    ``numpy.random.default_rng(seed)`` generator (one (resamples, n) draw); the interval is the
    (1 ± level)/2 percentiles of the resampled p̂.

    Args:
        a, b: (n,) values of the two variants, aligned by seed; n ≥ 1.
    """
    w = wins(a, b)
    n = w.size
    if n == 0:
        raise ValueError("no pairs: at least one seed is needed")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    boot = w[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return ProbGreater(float(w.mean()), float(low), float(high), n, resamples)


def paired_t_power(effect: float, sd: float, n: int, level: float = 0.95) -> float:
    """Power of the two-sided paired t-test (n pairs, difference spread ``sd``) at true mean difference ``effect``.

    P(|T'| > t_{(1+level)/2, n−1}) with T' noncentral t, n − 1 degrees of freedom, noncentrality effect·√n/sd.
    """
    if n < 2 or not sd > 0:
        raise ValueError(f"power needs n >= 2 seeds and a positive spread, got n={n}, sd={sd}")
    df = n - 1
    crit = t_quantile(0.5 + level / 2.0, df)
    nc = effect * math.sqrt(n) / sd
    upper, lower = float(sps.nct.sf(crit, df, nc)), float(sps.nct.cdf(-crit, df, nc))
    # scipy's noncentral t returns NaN deep in a tail at large df; there the normal limit is exact enough
    upper = upper if math.isfinite(upper) else float(sps.norm.sf(crit - nc))
    lower = lower if math.isfinite(lower) else float(sps.norm.cdf(-crit - nc))
    return upper + lower


def minimum_detectable_effect(sd: float, n: int, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t-test with ``n`` seeds detects with ``power``.

    Solved exactly (Brent's method) from :func:`paired_t_power`; ``sd`` is the spread of the per-seed
    differences (0 gives 0: any difference is detected).
    """
    if n < 2:
        raise ValueError(f"a minimum detectable effect needs n >= 2 seeds, got {n}")
    if not (0.0 < power < 1.0) or not (0.0 < level < 1.0):
        raise ValueError(f"power and level must be in (0, 1), got power={power}, level={level}")
    if sd == 0:
        return 0.0
    if not (sd > 0 and math.isfinite(sd)):
        raise ValueError(f"the spread must be a finite number >= 0, got {sd}")
    alpha_power = paired_t_power(0.0, sd, n, level)
    if power <= alpha_power:
        return 0.0
    hi = sd
    while paired_t_power(hi, sd, n, level) < power:
        hi *= 2.0
    return float(optimize.brentq(lambda d: paired_t_power(d, sd, n, level) - power, 0.0, hi, xtol=1e-12 * sd))


def seeds_for_half_width(sd: float, half_width: float = 0.5, level: float = 0.95, max_seeds: int = 10_000) -> int:
    """The smallest n ≥ 2 with t_{(1+level)/2, n−1} · sd/√n ≤ ``half_width`` (``max_seeds`` if none below it)."""
    if not half_width > 0:
        raise ValueError(f"the target half-width must be > 0, got {half_width}")
    if not (sd >= 0 and math.isfinite(sd)):
        raise ValueError(f"the spread must be a finite number >= 0, got {sd}")
    for n in range(2, max_seeds + 1):
        if t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n) <= half_width:
            return n
    return max_seeds


def direction_verdict(diff: Interval, expected_sign: int) -> str:
    """held / reversed / not resolved for the claim sign(diff) == ``expected_sign`` (+1 or −1)."""
    if expected_sign not in (1, -1):
        raise ConfigError(f"expected_sign must be +1 or -1, got {expected_sign}")
    if math.isnan(diff.low):
        return NOT_RESOLVED
    if diff.low > 0:
        return HELD if expected_sign > 0 else REVERSED
    if diff.high < 0:
        return HELD if expected_sign < 0 else REVERSED
    return NOT_RESOLVED


def equivalence_verdict(diff: Interval, margin: float) -> str:
    """held when the interval lies within [−margin, margin], reversed when entirely outside it."""
    if not margin > 0:
        raise ConfigError(f"an equivalence margin must be > 0, got {margin}")
    if math.isnan(diff.low):
        return NOT_RESOLVED
    if -margin <= diff.low and diff.high <= margin:
        return HELD
    if diff.low > margin or diff.high < -margin:
        return REVERSED
    return NOT_RESOLVED
