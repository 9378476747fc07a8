"""Small-sample statistics for the reproduction report: Student-t intervals, Welch's difference, verdicts.

* Mean and 95% interval over n seeds (Student 1908): x̄ ± t_{0.975, n−1} · s / √n, with the unbiased
  sample standard deviation s.
* Difference of two means with unequal variances (Welch 1947): d = x̄_a − x̄_b, standard error
  se = √(s_a²/n_a + s_b²/n_b), degrees of freedom (Welch–Satterthwaite)
  ν = se⁴ / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1)), interval d ± t_{0.975, ν} · se.
* Student-t distribution function through the regularised incomplete beta function
  (Abramowitz & Stegun 26.7.1 and 26.5.27): for t ≥ 0, P(T ≤ t) = 1 − ½ I_{ν/(ν+t²)}(ν/2, ½); the incomplete
  beta is evaluated with its continued fraction (A&S 26.5.8) by the modified Lentz method, and the
  quantile by bisection on that monotone function. scipy is not a dependency.

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

from vitlab.errors import ConfigError

HELD = "held"
REVERSED = "reversed"
NOT_RESOLVED = "not resolved"
VERDICTS = (HELD, NOT_RESOLVED, REVERSED)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (A&S 26.5.8), modified Lentz evaluation."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        # even step: d_{2m} = m(b−m)x / ((a+2m−1)(a+2m))
        num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        # odd step: d_{2m+1} = −(a+m)(a+b+m)x / ((a+2m)(a+2m+1))
        num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for 0 ≤ x ≤ 1, a, b > 0."""
    if not (0.0 <= x <= 1.0) or a <= 0 or b <= 0:
        raise ValueError(f"incomplete_beta needs 0 <= x <= 1 and a, b > 0, got x={x}, a={a}, b={b}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # the continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry I_x(a,b) = 1 − I_{1−x}(b,a) otherwise
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` > 0 degrees of freedom (``df = inf``: the standard normal)."""
    if df <= 0 or math.isnan(df):
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2.0))
    tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf` to 1e-12)."""
    if not (0.0 < p < 1.0):
        raise ValueError(f"quantile level must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """A mean (or difference of means) with its two-sided interval; ``low``/``high`` are NaN for n = 1."""

    mean: float
    low: float
    high: float
    n: int
    df: float

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
    return Interval(mean, mean - half, mean + half, n, float(n - 1))


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Interval of mean(a) − mean(b) with Welch's standard error and Welch–Satterthwaite degrees of freedom.

    Both samples constant (zero variance) gives a zero-width interval at the difference.
    """
    mean_a, var_a, n_a = _mean_var(a)
    mean_b, var_b, n_b = _mean_var(b)
    diff = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return Interval(diff, float("nan"), float("nan"), min(n_a, n_b), float("nan"))
    ua, ub = var_a / n_a, var_b / n_b
    se2 = ua + ub
    if se2 == 0.0:
        return Interval(diff, diff, diff, min(n_a, n_b), math.inf)
    df = se2**2 / (ua**2 / (n_a - 1) + ub**2 / (n_b - 1))
    half = t_quantile(0.5 + level / 2.0, df) * math.sqrt(se2)
    return Interval(diff, diff - half, diff + half, min(n_a, n_b), df)


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
