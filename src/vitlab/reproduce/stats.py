"""Small-sample statistics for the reproduction report: t intervals, claim tests, Holm, exact P(A > B), power.

The distributions come from :mod:`scipy.stats` (Student's t, the noncentral t, the binomial); nothing is
hand-rolled.

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
* **Minimum detectable effect** of a paired t-test with n seeds and per-seed difference spread σ: the
  smallest true mean difference δ that a two-sided level-α test detects with the given power, solved exactly
  from the noncentral t distribution, power(δ) = P(|T'| > t_{1−α/2, n−1}), T' ~ t'(n−1, δ√n/σ).
  For large n this tends to (z_{1−α/2} + z_{power}) · σ/√n.
* **Seeds needed** for an interval half-width ≤ h at spread σ: the smallest n ≥ 2 with
  t_{0.975, n−1} · σ/√n ≤ h.

Claim tests (:func:`test_claim`), on the paired differences d_i = a_i − b_i with mean δ, each side a paired
t-test at level α (``scipy.stats.ttest_1samp`` on the differences, the same test as ``scipy.stats.ttest_rel``);
each verdict is **held**, **reversed** or **not resolved**:

* **direction** (expected sign s, optional least difference m ≥ 0): the two-sided test of δ = s·m; held
  when p < α and sign(d̄ − s·m) = s, reversed when p < α with the other sign. Its interval: the two-sided
  1 − α interval (held ⇔ it excludes s·m on the expected side).
* **non-inferiority** with margin m > 0 ("A at least as good as B", s the good direction): H0: s·δ ≤ −m
  against H1: s·δ > −m, the one-sided test on s·d + m; reversed ("inferior by more than the margin") when
  the opposite one-sided test (H1: s·δ < −m) is significant. Its interval: the one-sided 1 − α bound, the
  near end of the two-sided 1 − 2α interval.
* **equivalence** with margin m > 0, TOST (Schuirmann 1987, J. Pharmacokinet. Biopharm. 15:657): the
  p-value is the larger of the one-sided p-values of δ > −m and δ < m; held ⇔ the 1 − 2α (90%) interval lies
  inside (−m, m); reversed when the 1 − 2α interval lies entirely outside [−m, m] (a one-sided test of
  δ > m, or of δ < −m, significant at α).
* **Unpaired fallback** (``paired=False``, for arms that share fewer than two seeds because runs failed): the
  same three tests with Welch's t-test of mean(a) − mean(b) in place of the paired one (``scipy.stats.ttest_ind``
  with ``equal_var=False``, the null moved by shifting a), and Welch's interval.

**Holm's step-down adjustment** (:func:`apply_holm`; Holm 1979, Scand. J. Statist. 6:65) over a family of k
claims, one p-value per claim, its decision p-value p = min(p_held, p_reversed) (at most one side is below ½):
with p_(1) ≤ … ≤ p_(k), p̃_(i) = max_{j ≤ i} min(1, (k − j + 1) p_(j)); a claim keeps its verdict when
p̃ < α, else it is not resolved. Each side of a claim is a level-α test, so a claim whose truth sits exactly
on its boundary (s·δ = −m for non-inferiority; |δ| = m with a spread large against m for equivalence) can err
either way, up to α each.

**P(A > B)** (Bouthillier et al. 2021, Sec. 4; :func:`prob_greater_exact`): the share of paired seeds on which A
beats B, p̂ = (1/n) Σ [a_i > b_i] (a tie counts ½), with the exact interval of Clopper & Pearson (1934,
Biometrika 26:404): 5 wins of 5 gives [0.478, 1] at 95%, where a bootstrap over the pairs would collapse to the
point [1, 1]. Their reading: A is significantly better when the lower bound exceeds 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

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


def one_sided_t_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the one-sided paired t-test of H1: δ > 0 at level ``alpha`` (n pairs, difference spread ``sd``) at
    true mean difference ``effect``: P(T' > t_{1−α, n−1}), T' noncentral t with n − 1 degrees of freedom and
    noncentrality effect·√n/sd. (A non-inferiority test with margin m at true δ = 0 has the power at effect m.)
    """
    if n < 2 or not sd > 0:
        raise ValueError(f"power needs n >= 2 seeds and a positive spread, got n={n}, sd={sd}")
    df = n - 1
    crit = t_quantile(1.0 - alpha, df)
    nc = effect * math.sqrt(n) / sd
    power = float(sps.nct.sf(crit, df, nc))
    # scipy's noncentral t returns NaN deep in a tail at large df; there the normal limit is exact enough
    return power if math.isfinite(power) else float(sps.norm.sf(crit - nc))


def paired_t_power(effect: float, sd: float, n: int, level: float = 0.95) -> float:
    """Power of the two-sided paired t-test (n pairs, difference spread ``sd``) at true mean difference ``effect``.

    P(|T'| > t_{(1+level)/2, n−1}) with T' noncentral t, n − 1 degrees of freedom, noncentrality effect·√n/sd:
    the sum of the two one-sided tails at α = (1 − level)/2, P(T' < −t) being the upper tail at −effect.
    """
    alpha = (1.0 - level) / 2.0
    return one_sided_t_power(effect, sd, n, alpha) + one_sided_t_power(-effect, sd, n, alpha)


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


# ------------------------------------------------------------------------------------------ claim tests
DIRECTION = "direction"
NONINFERIORITY = "non-inferiority"
EQUIVALENCE = "equivalence"
CLAIM_KINDS = (DIRECTION, NONINFERIORITY, EQUIVALENCE)
ALTERNATIVES = ("two-sided", "greater", "less")


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """d_i = a_i − b_i as (n,) float64; the pairs must be aligned, non-empty and finite."""
    if len(a) != len(b):
        raise ValueError(f"a paired test needs one value of each variant per seed, got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no pairs: at least one seed is needed")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"a paired test needs finite values, got differences {d.tolist()}")
    return d


def paired_t_pvalue(
    a: Sequence[float], b: Sequence[float], null: float = 0.0, alternative: str = "two-sided"
) -> float:
    """p-value of the paired t-test of δ = mean(a − b) against ``null``: t = (d̄ − null) / (s_d/√n), n − 1 df.

    ``alternative``: ``two-sided`` (H1: δ ≠ null), ``greater`` (H1: δ > null) or ``less`` (H1: δ < null), as
    in ``scipy.stats.ttest_rel``, which it equals wherever that is defined. Degenerate inputs, where scipy
    gives NaN, are defined so that no verdict is ever made on a NaN:

    * n = 1 (no spread to estimate): p = 1.
    * zero spread (all differences equal to c, n ≥ 2): p = 0 when c lies strictly on the side of ``null``
      that the alternative names (for ``two-sided``: c ≠ null), else p = 1 (c = null gives 1 on every side).

    Args:
        a, b: (n,) values of the two variants, ``a[i]`` and ``b[i]`` from the same seed; finite.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    d = _differences(a, b)
    if d.size < 2:
        return 1.0
    if np.ptp(d) == 0.0:
        return _constant_pvalue(float(d[0]) - null, alternative)
    return float(sps.ttest_1samp(d, null, alternative=alternative).pvalue)


def welch_t_pvalue(
    a: Sequence[float], b: Sequence[float], null: float = 0.0, alternative: str = "two-sided"
) -> float:
    """p-value of Welch's t-test of δ = mean(a) − mean(b) against ``null``, for samples not paired by seed.

    t = (ā − b̄ − null) / √(s_a²/n_a + s_b²/n_b) with Welch–Satterthwaite degrees of freedom: equal to
    ``scipy.stats.ttest_ind(a − null, b, equal_var=False, alternative=alternative)``. Degenerate inputs as in
    :func:`paired_t_pvalue`: fewer than two values on a side gives p = 1; both sides constant, p = 0 when
    ā − b̄ lies strictly on the alternative's side of ``null``, else 1.

    Args:
        a, b: (n_a,) and (n_b,) finite values of the two variants, any lengths.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    x, y = np.asarray(a, dtype=np.float64) - null, np.asarray(b, dtype=np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("a Welch test needs finite values")
    if x.size < 2 or y.size < 2:
        return 1.0
    if np.ptp(x) == 0.0 and np.ptp(y) == 0.0:
        return _constant_pvalue(float(x[0] - y[0]), alternative)
    return float(sps.ttest_ind(x, y, equal_var=False, alternative=alternative).pvalue)


def _constant_pvalue(excess: float, alternative: str) -> float:
    """The p-value when there is no spread: 0 when the difference's excess over the null lies strictly on the
    alternative's side (two-sided: any excess), else 1."""
    on_side = {"two-sided": excess != 0.0, "greater": excess > 0.0, "less": excess < 0.0}[alternative]
    return 0.0 if on_side else 1.0


def _pvalue_fn(paired: bool):  # noqa: ANN202 - one of the two p-value functions above
    return paired_t_pvalue if paired else welch_t_pvalue


def _mean_difference(a: Sequence[float], b: Sequence[float], paired: bool) -> float:
    """d̄ of the aligned pairs (``paired``), else mean(a) − mean(b)."""
    if paired:
        return float(np.mean(_differences(a, b)))
    return float(np.mean(np.asarray(a, dtype=np.float64)) - np.mean(np.asarray(b, dtype=np.float64)))


def direction_pvalues(
    a: Sequence[float], b: Sequence[float], expected_sign: int, margin: float = 0.0, paired: bool = True
) -> tuple[float, float]:
    """(p_held, p_reversed) of a direction claim sign(δ − s·m) = s, δ = mean(a − b), s = ``expected_sign``.

    p = the two-sided paired t p-value of δ = s·m (m = ``margin`` ≥ 0, the least difference claimed; 0 for
    "B beats A"). It counts for the side of the observed sign of d̄ − s·m: p_held = p when that sign is s,
    p_reversed = p when it is −s; the other is 1 (both 1 when d̄ = s·m exactly). ``paired=False``: Welch's
    test (:func:`welch_t_pvalue`) and ā − b̄ instead.
    """
    _check_sign_margin(expected_sign, margin, positive=False)
    null = expected_sign * margin
    p = _pvalue_fn(paired)(a, b, null, "two-sided")
    observed = np.sign(_mean_difference(a, b, paired) - null)
    return (p if observed == expected_sign else 1.0), (p if observed == -expected_sign else 1.0)


def noninferiority_pvalues(
    a: Sequence[float], b: Sequence[float], expected_sign: int, margin: float, paired: bool = True
) -> tuple[float, float]:
    """(p_held, p_reversed) of the claim "a is not worse than b by ``margin`` or more" (s = ``expected_sign``).

    s is the good direction (+1: higher is better). With δ = mean(a − b) and m = ``margin`` > 0:

    * p_held: H0: s·δ ≤ −m against H1: s·δ > −m, the one-sided paired t-test on s·d + m;
    * p_reversed ("inferior by more than the margin"): H0: s·δ ≥ −m against H1: s·δ < −m.

    p_held < α ⇔ the one-sided 1 − α bound (the near end of the two-sided 1 − 2α interval) clears −s·m.
    ``paired=False``: Welch's test (:func:`welch_t_pvalue`).
    """
    _check_sign_margin(expected_sign, margin, positive=True)
    good, bad = ("greater", "less") if expected_sign > 0 else ("less", "greater")
    null = -expected_sign * margin
    pvalue = _pvalue_fn(paired)
    return pvalue(a, b, null, good), pvalue(a, b, null, bad)


def equivalence_pvalues(
    a: Sequence[float], b: Sequence[float], margin: float, paired: bool = True
) -> tuple[float, float]:
    """(p_held, p_reversed) of the claim |δ| < m (δ = mean(a − b), m = ``margin`` > 0), by TOST.

    TOST (Schuirmann 1987): p_held = max(p(H1: δ > −m), p(H1: δ < m)), the two one-sided paired t-tests;
    p_held < α ⇔ the two-sided 1 − 2α interval lies inside (−m, m). p_reversed = min(p(H1: δ > m),
    p(H1: δ < −m)): < α ⇔ the 1 − 2α interval lies entirely above m or entirely below −m. ``paired=False``:
    Welch's test (:func:`welch_t_pvalue`).
    """
    _check_sign_margin(1, margin, positive=True)
    pvalue = _pvalue_fn(paired)
    p_held = max(pvalue(a, b, -margin, "greater"), pvalue(a, b, margin, "less"))
    p_reversed = min(pvalue(a, b, margin, "greater"), pvalue(a, b, -margin, "less"))
    return p_held, p_reversed


def _check_sign_margin(expected_sign: int, margin: float, positive: bool) -> None:
    if expected_sign not in (1, -1):
        raise ConfigError(f"expected_sign must be +1 or -1, got {expected_sign}")
    if positive and not (margin > 0 and math.isfinite(margin)):
        raise ConfigError(f"a non-inferiority or equivalence margin must be > 0, got {margin}")
    if not positive and not (margin >= 0 and math.isfinite(margin)):
        raise ConfigError(f"the least difference of a direction claim must be >= 0, got {margin}")


@dataclass(frozen=True)
class ClaimTest:
    """One claim's paired test: estimate, raw interval and p-values, verdict before and after Holm.

    ``interval`` is the unadjusted paired interval of mean(a − b) at two-sided ``level`` (1 − α for a
    direction claim, 1 − 2α for non-inferiority and equivalence), the one the raw verdict reads off;
    its ``low``/``high`` are NaN for one seed. ``p_held`` / ``p_reversed`` are the raw p-values of the
    tests whose rejection says the claim held / reversed (at most one is below ½). ``raw_verdict`` is the
    verdict at α without adjustment; ``verdict`` equals it until :func:`apply_holm` sets ``p_adjusted``
    and the adjusted verdict.
    """

    kind: str
    expected_sign: int
    margin: float
    alpha: float
    estimate: float
    interval: Interval
    level: float
    p_held: float
    p_reversed: float
    raw_verdict: str
    verdict: str
    p_adjusted: float | None = None

    @property
    def p(self) -> float:
        """The claim's decision p-value, min(p_held, p_reversed): the one Holm adjusts."""
        return min(self.p_held, self.p_reversed)


def _verdict(p: float, p_held: float, p_reversed: float, alpha: float) -> str:
    """held / reversed when the decision p-value ``p`` < α, on the side it came from; else not resolved."""
    if not p < alpha:
        return NOT_RESOLVED
    return HELD if p_held <= p_reversed else REVERSED


def test_claim(
    a: Sequence[float],
    b: Sequence[float],
    kind: str,
    expected_sign: int = 1,
    margin: float = 0.0,
    alpha: float = 0.05,
    paired: bool = True,
) -> ClaimTest:
    """Test one claim on paired per-seed values, d_i = a_i − b_i (see the module docstring for the rules).

    Args:
        a, b: (n,) values of the two variants, ``a[i]`` and ``b[i]`` from the same seed; finite, n ≥ 1. With
            ``paired=False`` (arms that share fewer than two seeds), any lengths: Welch's test and interval.
        kind: ``direction`` (:func:`direction_pvalues`; ``margin`` ≥ 0 is the least difference claimed),
            ``non-inferiority`` (:func:`noninferiority_pvalues`) or ``equivalence``
            (:func:`equivalence_pvalues`; ``expected_sign`` is checked but does not enter).
        expected_sign: s = ±1, the expected (direction) or the good (non-inferiority) sign of a − b.
        margin: m, in the metric's unit; > 0 for non-inferiority and equivalence.
        alpha: the level of each test, 0 < α < ½.
        paired: the paired t-test (default) or, ``False``, Welch's (:func:`welch_t_pvalue`, :func:`welch_interval`).

    n = 1 gives p = 1, NaN interval ends and "not resolved"; zero spread is defined in :func:`paired_t_pvalue`.
    """
    if kind not in CLAIM_KINDS:
        raise ConfigError(f"a claim test's kind must be one of {CLAIM_KINDS}, got {kind!r}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if kind == DIRECTION:
        p_held, p_reversed = direction_pvalues(a, b, expected_sign, margin, paired)
        level = 1.0 - alpha
    elif kind == NONINFERIORITY:
        p_held, p_reversed = noninferiority_pvalues(a, b, expected_sign, margin, paired)
        level = 1.0 - 2.0 * alpha
    else:
        _check_sign_margin(expected_sign, margin, positive=True)
        p_held, p_reversed = equivalence_pvalues(a, b, margin, paired)
        level = 1.0 - 2.0 * alpha
    interval = paired_interval(a, b, level) if paired else welch_interval(a, b, level)
    verdict = _verdict(min(p_held, p_reversed), p_held, p_reversed, alpha)
    return ClaimTest(kind, expected_sign, float(margin), alpha, interval.mean, interval, level, p_held, p_reversed,
                     verdict, verdict)


test_claim.__test__ = False  # type: ignore[attr-defined]  # a library function, not a pytest test


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order.

    With the k p-values sorted, p_(1) ≤ … ≤ p_(k): p̃_(i) = max_{j ≤ i} min(1, (k − j + 1) p_(j)). Rejecting
    every hypothesis with p̃ < α is Holm's sequential rule: reject H_(1), H_(2), … while
    (k − j + 1) p_(j) < α, and stop at the first that fails. Tied p-values get the same p̃.

    Raises:
        ValueError: a p-value outside [0, 1] or NaN.
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    k = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (k - np.arange(k)) * p[order])
    adjusted = np.empty(k)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def apply_holm(results: Sequence[ClaimTest], alpha: float = 0.05) -> list[ClaimTest]:
    """The family's claims after Holm's adjustment of their decision p-values (:attr:`ClaimTest.p`).

    Each result comes back with ``p_adjusted`` = p̃ and ``verdict`` = held / reversed when p̃ < α, on the
    side of its raw test, else not resolved; ``raw_verdict``, the raw p-values and the raw ``interval`` are
    kept. A claim that is not resolved before adjustment stays so (p̃ ≥ p).
    """
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    adjusted = holm([r.p for r in results])
    return [
        replace(r, p_adjusted=q, verdict=_verdict(q, r.p_held, r.p_reversed, alpha))
        for r, q in zip(results, adjusted)
    ]


# ------------------------------------------------------------------------------------------ exact P(A > B)
def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper & Pearson 1934) two-sided interval of a binomial proportion from k successes in n trials.

    low = Beta_{(1−level)/2}(k, n − k + 1) (0 when k = 0), high = Beta_{(1+level)/2}(k + 1, n − k) (1 when
    k = n); computed by ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``.
    """
    if not (0 <= k <= n and n >= 1):
        raise ValueError(f"an exact binomial interval needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class ExactProbGreater:
    """P(A > B) over paired seeds with its exact interval; ``p`` counts a tie ½ (``wins`` and ``ties`` of ``n``)."""

    p: float
    low: float
    high: float
    n: int
    wins: int
    ties: int
    level: float


def wins(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Per pair: 1 where a_i > b_i, ½ on a tie, 0 otherwise. a, b: (n,) aligned by seed -> (n,) float64."""
    if len(a) != len(b):
        raise ValueError(f"P(A > B) needs one value of each variant per seed, got {len(a)} and {len(b)}")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (x > y) + 0.5 * (x == y)


def prob_greater_exact(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> ExactProbGreater:
    """p̂ = (w + t/2)/n with w wins (a_i > b_i) and t ties of n pairs, and a conservative exact interval.

    Ties: the estimate counts each ½ (:func:`wins`); the interval spans both ways of resolving them, low = the
    Clopper–Pearson lower bound of w of n (ties as losses), high = the upper bound of w + t of n (ties as
    wins). Without ties it is the Clopper–Pearson interval of w of n; 5 wins of 5 at 95% gives [0.478, 1].
    Bouthillier et al.'s rule: A significantly better when ``low`` > 0.5.

    Args:
        a, b: (n,) values of the two variants, aligned by seed; n ≥ 1.
    """
    w = wins(a, b)
    if w.size == 0:
        raise ValueError("no pairs: at least one seed is needed")
    n, won, tied = int(w.size), int(np.sum(w == 1.0)), int(np.sum(w == 0.5))
    low = clopper_pearson(won, n, level)[0]
    high = clopper_pearson(won + tied, n, level)[1]
    return ExactProbGreater(float(w.mean()), low, high, n, won, tied, level)
