"""Intervals over seeds and the decision rule: the one place where a number becomes an outcome.

The statistical unit is the seed (an independent run); ``n`` is the number of seeds.

* A per-seed statistic (test accuracy, speed, distance to P) of one arm, or a contrast between arms and
  targets (P-T minus RI-T, the gain at one block size minus another), gets a Welch t-interval: the contrast of
  independent group means with the Welch-Satterthwaite degrees of freedom.
* A pair statistic (mistakes, CKA, barrier, distance between two models of an arm) is averaged over every pair
  of distinct seeds of the arm; its interval is a leave-one-seed-out jackknife t-interval, so that the seed, not
  the pair, is resampled (pairs that share a seed are not independent).
* Claims of sameness are equivalence tests (two one-sided tests, TOST, each at 2.5%): the 95% interval inside a
  stated margin.

Outcomes, with one error control in both directions: an effect is decisive when its p-value (the smaller of
its two one-sided p-values, scaled by the Bonferroni factor of its level) survives Holm's step-down correction
at :data:`ALPHA` over the whole family (claims x targets x effects). It then ``holds`` when its interval lies on
the claim's side and ``does not hold`` when it lies on the other side; it is ``inconclusive`` otherwise. So the
chance of any wrong decisive outcome in a study, either way, is at most 2 x ALPHA = 5% (two one-sided families
at ALPHA each). Fewer than :data:`MIN_SEEDS` seeds is inconclusive by rule. A decisive outcome that rests on
runs that did not fit their training data (see :mod:`.caveats`) is reported as ``unreliable``, never as decisive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["LEVEL", "ALPHA", "MIN_SEEDS", "Estimate", "mean_interval", "contrast_interval", "jackknife_interval",
           "holm", "holm_thresholds", "fisher_z", "seeds_needed", "HOLDS", "FAILS", "INCONCLUSIVE", "UNRELIABLE",
           "NOT_MEASURED", "OUTCOMES"]

LEVEL = 0.95
"""Confidence level of every interval, equivalence tests included (TOST at one-sided 2.5%)."""
ALPHA = (1 - LEVEL) / 2
"""One-sided error rate matching the two-sided 95% interval."""
MIN_SEEDS = 3
"""Below this many seeds a verdict is inconclusive by rule (a t-interval from 2 seeds has 1 degree of freedom)."""

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "does not hold", "inconclusive", "not measured"
UNRELIABLE = "unreliable"
"""The statistics alone would decide, but the evidence rests on runs that did not fit their training data (or whose
files changed): the outcome is not reported as decisive (see :mod:`transferscope.vocab.caveats`)."""
OUTCOMES = (HOLDS, FAILS, INCONCLUSIVE, UNRELIABLE, NOT_MEASURED)


@dataclass(frozen=True)
class Estimate:
    """A statistic with its standard error and degrees of freedom (the t-distribution behind its intervals)."""

    value: float
    se: float
    df: float
    n: int
    """Seeds (the statistical unit) behind it."""
    method: str
    fisher: bool = False
    """The statistic is a correlation carried as Fisher's z = atanh(r): ``shown`` and ``interval`` give r."""
    bounds: tuple[float, float] | None = None
    """The range the statistic cannot leave (e.g. (-1, 1) for a mean of correlations): ``interval`` is clipped to
    it (an interval that already holds every value it may take loses no coverage; the p-values do not change)."""

    @property
    def shown(self) -> float:
        return math.tanh(self.value) if self.fisher else self.value

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        if not (math.isfinite(self.value) and math.isfinite(self.se) and self.df > 0):
            return math.nan, math.nan
        h = _t_quantile(0.5 + level / 2, self.df) * self.se
        if self.fisher:
            return math.tanh(self.value - h), math.tanh(self.value + h)
        if self.bounds is not None:
            return max(self.value - h, self.bounds[0]), min(self.value + h, self.bounds[1])
        return self.value - h, self.value + h

    def p_below(self, threshold: float = 0.0) -> float:
        """One-sided p-value of 'the true value is below ``threshold``' being false, i.e. of H0: value >= threshold."""
        if not (math.isfinite(self.value) and math.isfinite(self.se) and self.df > 0):
            return math.nan
        if self.se == 0:
            return 0.0 if self.value < threshold else 1.0
        return float(special.stdtr(self.df, (self.value - threshold) / self.se))  # Student's t cdf

    def p_above(self, threshold: float = 0.0) -> float:
        """One-sided p-value of H0: value <= threshold."""
        if not (math.isfinite(self.value) and math.isfinite(self.se) and self.df > 0):
            return math.nan
        if self.se == 0:
            return 0.0 if self.value > threshold else 1.0
        return float(special.stdtr(self.df, (threshold - self.value) / self.se))  # its survival function, by symmetry


def _t_quantile(q: float, df: float) -> float:
    """Student's t quantile (scipy.special's kernel: the same value as ``scipy.stats.t.ppf``, without its
    per-call overhead, which dominated a simulation of many studies)."""
    return float(special.stdtrit(df, q))


def _finite(values: Sequence[float]) -> np.ndarray:
    a = np.asarray([v for v in values if v is not None], dtype=float)
    return a[np.isfinite(a)]


def mean_interval(values: Sequence[float]) -> Estimate:
    """The mean of per-seed values with its one-sample t standard error (df = n - 1)."""
    return contrast_interval([(1.0, values)])


def contrast_interval(groups: Sequence[tuple[float, Sequence[float]]]) -> Estimate:
    """sum_i c_i mean(group_i) for independent groups of per-seed values, with the Welch-Satterthwaite df.

    E.g. P-T minus RI-T: ``[(1, acc_pt), (-1, acc_ri)]``. n is the smallest group's size. A group of fewer
    than two values gives an undefined standard error (NaN)."""
    value, var, dfden, sizes = 0.0, 0.0, 0.0, []
    for c, vals in groups:
        a = _finite(vals)
        sizes.append(len(a))
        if len(a) == 0:
            return Estimate(math.nan, math.nan, math.nan, 0, "Welch t")
        value += c * float(a.mean())
        if len(a) < 2:
            var = math.nan
            continue
        v = c * c * float(a.var(ddof=1)) / len(a)
        var += v
        dfden += v * v / (len(a) - 1)
    se = math.sqrt(var) if math.isfinite(var) else math.nan
    # every group constant (var 0): the smallest group's df, and the interval is a point
    df = var * var / dfden if dfden > 0 else float(min(sizes) - 1) if math.isfinite(var) else math.nan
    method = "one-sample t" if len(groups) == 1 else "Welch t (Welch-Satterthwaite df)"
    return Estimate(value, se, df, min(sizes), method)


def jackknife_interval(seeds: Sequence[int], statistic: Callable[[frozenset[int]], float]) -> Estimate:
    """Leave-one-seed-out jackknife of a statistic computed from the runs of a set of seeds.

    ``statistic(kept)`` recomputes the statistic from the pairs whose seeds are all in ``kept`` (so leaving a
    seed out drops every pair it is part of). se^2 = (n-1)/n sum_i (theta_-i - mean theta_-)^2, df = n - 1."""
    seeds = sorted(set(seeds))
    n = len(seeds)
    full = statistic(frozenset(seeds))
    if n < 2 or not math.isfinite(full):
        return Estimate(full, math.nan, math.nan, n, "leave-one-seed-out jackknife")
    loo = np.asarray([statistic(frozenset(seeds) - {s}) for s in seeds], dtype=float)
    if not np.all(np.isfinite(loo)):
        return Estimate(full, math.nan, math.nan, n, "leave-one-seed-out jackknife")
    se = math.sqrt((n - 1) / n * float(((loo - loo.mean()) ** 2).sum()))
    return Estimate(full, se, float(n - 1), n, "leave-one-seed-out jackknife t")


def fisher_z(r: float, n: int) -> Estimate:
    """A rank correlation from n points as Fisher's z with the standard error 1.06 / sqrt(n - 3) of Fieller et al.
    (1957) for Spearman's rho; normal (df = inf). Needs n >= 4."""
    z = math.atanh(float(np.clip(r, -0.999999, 0.999999))) if math.isfinite(r) else math.nan
    if n < 4:
        return Estimate(z, math.nan, math.nan, n, "Fisher z of Spearman's rho", fisher=True)
    return Estimate(z, 1.06 / math.sqrt(n - 3), math.inf, n, "Fisher z of Spearman's rho, se 1.06/sqrt(n-3)", fisher=True)


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level ``alpha``. NaN: never."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if math.isfinite(p))
    m = len(order)
    rejected = [False] * len(pvalues)
    for k, (p, i) in enumerate(order):
        if p > alpha / (m - k):
            break
        rejected[i] = True
    return rejected


def holm_thresholds(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """The level each p-value is compared with in Holm's step-down order: ``alpha / (m - rank)`` for the finite
    p-values by increasing p (ties by position), NaN for the others. A p-value at or under its threshold is
    rejected when every smaller one was (:func:`holm`); the threshold of one that was not says how far it was
    from being decisive."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if math.isfinite(p))
    m = len(order)
    out = [math.nan] * len(pvalues)
    for k, (_, i) in enumerate(order):
        out[i] = alpha / (m - k)
    return out


def seeds_needed(est: Estimate, gap: float, level: float = LEVEL, max_seeds: int = 1000) -> int | None:
    """Roughly how many seeds would make an interval at ``level`` narrower (half-width) than ``gap``, at the
    observed effect and spread: the standard error scaled as 1 / sqrt(n) from the observed one, df = n - 1.

    ``gap`` is the distance from the estimate to the bound the interval must clear. None: no number of seeds up
    to ``max_seeds`` would (the estimate sits on the bound, or the spread is unknown)."""
    if not (math.isfinite(gap) and math.isfinite(est.se)) or est.n < 1 or not gap > 0:
        return None
    if est.se == 0:
        return max(est.n, MIN_SEEDS)
    def half(n: int) -> float:
        return _t_quantile(0.5 + level / 2, n - 1) * est.se * math.sqrt(est.n / n)

    lo, hi = max(est.n, MIN_SEEDS), max_seeds
    if lo > hi or not half(hi) < gap:
        return None
    while lo < hi:  # the half-width falls as n grows: the first n under the gap, by bisection
        mid = (lo + hi) // 2
        if half(mid) < gap:
            hi = mid
        else:
            lo = mid + 1
    return lo
