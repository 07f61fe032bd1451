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

Outcomes: ``holds`` when the 95% interval lies on the claim's side, ``does not hold`` when it lies on the other
side *and* the one-sided p-value survives Holm's correction over the family (claims x targets), ``inconclusive``
otherwise; fewer than :data:`MIN_SEEDS` seeds is inconclusive by rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["LEVEL", "ALPHA", "MIN_SEEDS", "Estimate", "mean_interval", "contrast_interval", "jackknife_interval",
           "holm", "fisher_z", "seeds_needed", "HOLDS", "FAILS", "INCONCLUSIVE", "NOT_MEASURED", "OUTCOMES"]

LEVEL = 0.95
"""Confidence level of every interval, equivalence tests included (TOST at one-sided 2.5%)."""
ALPHA = (1 - LEVEL) / 2
"""One-sided error rate matching the two-sided 95% interval."""
MIN_SEEDS = 3
"""Below this many seeds a verdict is inconclusive by rule (a t-interval from 2 seeds has 1 degree of freedom)."""

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "does not hold", "inconclusive", "not measured"
OUTCOMES = (HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED)


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

    @property
    def shown(self) -> float:
        return math.tanh(self.value) if self.fisher else self.value

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        if not (math.isfinite(self.value) and math.isfinite(self.se) and self.df > 0):
            return math.nan, math.nan
        h = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.se
        if self.fisher:
            return math.tanh(self.value - h), math.tanh(self.value + h)
        return self.value - h, self.value + h

    def p_below(self, threshold: float = 0.0) -> float:
        """One-sided p-value of 'the true value is below ``threshold``' being false, i.e. of H0: value >= threshold."""
        if not (math.isfinite(self.value) and math.isfinite(self.se) and self.df > 0):
            return math.nan
        if self.se == 0:
            return 0.0 if self.value < threshold else 1.0
        return float(stats.t.cdf((self.value - threshold) / self.se, self.df))

    def p_above(self, threshold: float = 0.0) -> float:
        """One-sided p-value of H0: value <= threshold."""
        if not (math.isfinite(self.value) and math.isfinite(self.se) and self.df > 0):
            return math.nan
        if self.se == 0:
            return 0.0 if self.value > threshold else 1.0
        return float(stats.t.sf((self.value - threshold) / self.se, self.df))


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


def seeds_needed(est: Estimate, gap: float, level: float = LEVEL, max_seeds: int = 1000) -> int | None:
    """Roughly how many seeds would make an interval at ``level`` narrower (half-width) than ``gap``, at the
    observed effect and spread: the standard error scaled as 1 / sqrt(n) from the observed one, df = n - 1.

    ``gap`` is the distance from the estimate to the bound the interval must clear. None: no number of seeds up
    to ``max_seeds`` would (the estimate sits on the bound, or the spread is unknown)."""
    if not (math.isfinite(gap) and math.isfinite(est.se)) or est.n < 1 or not gap > 0:
        return None
    if est.se == 0:
        return max(est.n, MIN_SEEDS)
    for n in range(max(est.n, MIN_SEEDS), max_seeds + 1):
        half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * est.se * math.sqrt(est.n / n)
        if half < gap:
            return n
    return None
