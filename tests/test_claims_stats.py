"""The statistics behind every verdict, against independent references (scipy's tests, hand computations)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from transferscope.claims.stats import (
    Estimate,
    contrast_interval,
    fisher_z,
    holm,
    jackknife_interval,
    mean_interval,
    seeds_needed,
)


def test_mean_interval_is_scipys_one_sample_t_interval():
    x = [0.61, 0.58, 0.66, 0.70]
    est = mean_interval(x)
    ref = sps.ttest_1samp(x, 0.0).confidence_interval(0.95)
    assert est.interval() == pytest.approx((ref.low, ref.high))
    assert est.n == 4 and est.df == 3


def test_contrast_of_two_groups_is_welchs_interval():
    a, b = [0.8, 0.75, 0.83, 0.79], [0.6, 0.7, 0.52]
    est = contrast_interval([(1.0, a), (-1.0, b)])
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert est.value == pytest.approx(np.mean(a) - np.mean(b))
    assert est.interval() == pytest.approx((ref.low, ref.high))
    assert est.n == 3  # the smaller arm


def test_contrast_of_four_groups_by_simulation_coverage():
    # gain difference between two targets: coverage of the 95% Welch interval is near 95% (not far below)
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        g = [(c, rng.normal(m, s, 4)) for c, m, s in ((1, 0.7, 0.03), (-1, 0.5, 0.05), (-1, 0.6, 0.02), (1, 0.55, 0.04))]
        lo, hi = contrast_interval(g).interval()
        hits += lo < 0.15 < hi
    assert 0.91 < hits / 400 < 0.99


def test_constant_groups_give_a_point_and_missing_values_give_nan():
    est = contrast_interval([(1.0, [0.5, 0.5, 0.5]), (-1.0, [0.25, 0.25, 0.25])])
    assert est.se == 0 and est.interval() == pytest.approx((0.25, 0.25))
    assert est.p_below(0.0) == 1.0 and est.p_above(0.0) == 0.0
    assert est.p_below(1.0) == 0.0 and est.p_above(1.0) == 1.0
    assert math.isnan(contrast_interval([(1.0, [0.5])]).se)
    assert math.isnan(contrast_interval([(1.0, []), (-1.0, [1.0, 2.0])]).value)
    assert contrast_interval([(1.0, [0.5, None, float("nan"), 0.7])]).n == 2


def test_p_values_are_one_sided_t_tests():
    x = [0.1, 0.3, 0.2, 0.25, 0.15]
    est = mean_interval(x)
    assert est.p_above(0.0) == pytest.approx(sps.ttest_1samp(x, 0.0, alternative="greater").pvalue)
    assert est.p_below(0.3) == pytest.approx(sps.ttest_1samp(x, 0.3, alternative="less").pvalue)
    assert math.isnan(Estimate(math.nan, 1.0, 2.0, 3, "").p_above()) and math.isnan(Estimate(1.0, 1.0, 0.0, 3, "").p_below())


def test_jackknife_of_a_mean_is_the_t_interval():
    x = {0: 0.3, 1: 0.5, 2: 0.45, 3: 0.2}
    est = jackknife_interval(list(x), lambda kept: float(np.mean([x[s] for s in kept])))
    ref = mean_interval(list(x.values()))
    assert est.value == pytest.approx(ref.value) and est.se == pytest.approx(ref.se) and est.df == 3


def test_jackknife_needs_two_seeds_and_finite_leave_one_out_values():
    assert math.isnan(jackknife_interval([0], lambda kept: 1.0).se)
    assert math.isnan(jackknife_interval([0, 1], lambda kept: 1.0 if len(kept) == 2 else math.nan).se)


def test_holm_against_a_hand_computed_example():
    # sorted p: 0.01 (<= 0.05/4), 0.015 (<= 0.05/3), 0.03 (> 0.05/2): stop
    assert holm([0.03, 0.01, 0.2, 0.015], 0.05) == [False, True, False, True]
    assert holm([0.01, math.nan], 0.05) == [True, False]
    assert holm([0.04, 0.04], 0.05) == [False, False]
    assert holm([0.02, 0.04], 0.05) == [True, True]


def test_seeds_needed_matches_the_interval_it_promises():
    est = contrast_interval([(1.0, [0.52, 0.58, 0.49]), (-1.0, [0.50, 0.47, 0.55])])
    n = seeds_needed(est, est.value)
    assert n is not None and n > 3
    half = lambda m: sps.t.ppf(0.975, m - 1) * est.se * math.sqrt(est.n / m)  # noqa: E731
    assert half(n) < est.value <= half(n - 1)
    assert seeds_needed(est, 0.0) is None and seeds_needed(est, 1e-9, max_seeds=50) is None
    assert seeds_needed(Estimate(0.1, 0.0, 2.0, 3, ""), 0.1) == 3


def test_fisher_z_interval_of_a_rank_correlation():
    est = fisher_z(0.6, 12)
    lo, hi = est.interval()
    z = math.atanh(0.6)
    assert est.shown == pytest.approx(0.6)
    assert (lo, hi) == pytest.approx((math.tanh(z - 1.959964 * 1.06 / 3), math.tanh(z + 1.959964 * 1.06 / 3)), rel=1e-5)
    assert math.isnan(fisher_z(0.6, 3).se) and fisher_z(1.0, 10).shown < 1.0


def test_boundaries_of_the_statistics():
    c = contrast_interval([(1.0, [0.25, 0.25, 0.25])])
    assert c.p_below(0.25) == 1.0 and c.p_above(0.25) == 1.0
    assert fisher_z(0.5, 4).se == pytest.approx(1.06)
    assert math.isfinite(jackknife_interval([0, 1], lambda kept: float(len(kept))).se)
    assert math.isfinite(contrast_interval([(1.0, [0.1, 0.2]), (-1.0, [0.3, 0.5])]).se)
    assert holm([0.25, 0.5], 0.5) == [True, True]
    assert seeds_needed(Estimate(0.1, 0.0, 2.0, 3, ""), 0.0) is None
    assert seeds_needed(Estimate(0.1, 0.05, 2.0, 0, ""), 0.1) is None
