"""Transferability scores against cases whose answer is known in closed form, and independent references."""

import math

import numpy as np
import pytest

from transferscope.analyses.transferability import _evidence, h_score, leep, logme, mmd2, rank_correlation


def test_leep_is_zero_when_target_labels_are_a_function_of_confident_source_labels():
    z = np.array([0, 1, 2, 3, 0, 1, 2, 3, 3])
    probs = np.eye(4)[z]
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1, 1])  # y = z // 2
    assert leep(probs, y) == pytest.approx(0.0, abs=1e-12)


def test_leep_of_an_uninformative_source_model_is_the_label_log_prior():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    probs = np.full((200, 5), 0.2)
    prior = np.bincount(y, minlength=3) / 200
    assert leep(probs, y) == pytest.approx(np.mean(np.log(prior[y])), rel=1e-12)


def test_h_score_of_one_hot_label_features_is_classes_minus_one():
    y = np.repeat(np.arange(4), 25)
    assert h_score(np.eye(4)[y], y) == pytest.approx(3.0, rel=1e-9)
    # features independent of the labels carry almost nothing
    rng = np.random.default_rng(1)
    assert h_score(rng.normal(size=(4000, 3)), rng.integers(0, 4, 4000)) < 0.01


def _direct_log_evidence(f, col, alpha, beta):
    """log N(y; 0, F F^T / alpha + I / beta) with n x n matrices: the marginal likelihood, written directly."""
    n = len(col)
    cov = f @ f.T / alpha + np.eye(n) / beta
    sign, logdet = np.linalg.slogdet(cov)
    return -0.5 * (n * math.log(2 * math.pi) + logdet + col @ np.linalg.solve(cov, col))


def test_logme_is_the_maximised_marginal_likelihood():
    rng = np.random.default_rng(2)
    n, d = 60, 5
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    score = logme(f, y)
    # rebuild each column's optimum by a brute-force search of the direct formula over (alpha, beta)
    best = []
    for k in range(2):
        col = (y == k).astype(float)
        grid = [(_direct_log_evidence(f, col, a, b), a, b) for a in np.logspace(-3, 3, 61) for b in np.logspace(-2, 3, 51)]
        best.append(max(grid)[0] / n)
    assert score == pytest.approx(np.mean(best), abs=2e-3)  # the fixed point is at least as good as the grid, ~
    # and the spectral evidence formula equals the direct one at any (alpha, beta)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    col = (y == 1).astype(float)
    z = u.T @ col
    s2 = np.zeros(d)
    s2[:d] = s**2
    for a, b in ((0.3, 2.0), (5.0, 0.7)):
        assert _evidence(s2, z, col @ col - z @ z, n, d, a, b) == pytest.approx(_direct_log_evidence(f, col, a, b), rel=1e-9)


def test_logme_prefers_features_that_carry_the_labels():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    good = np.eye(3)[y] + 0.3 * rng.normal(size=(300, 3))
    bad = rng.normal(size=(300, 3))
    assert logme(good, y) > logme(bad, y)


def test_mmd_matches_explicit_sums_and_a_known_shift():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(40, 3)) + 0.5

    def explicit(kern):
        m, n = len(x), len(y)
        sxx = sum(kern(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        syy = sum(kern(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        sxy = sum(kern(a, b) for a in x for b in y) / (m * n)
        return sxx + syy - 2 * sxy

    assert mmd2(x, y, "linear")[0] == pytest.approx(explicit(np.dot), rel=1e-9)
    v, h = mmd2(x, y, "rbf", bandwidth=1.3)
    assert h == 1.3 and v == pytest.approx(explicit(lambda a, b: math.exp(-np.sum((a - b) ** 2) / (2 * 1.3**2))), rel=1e-9)
    # linear kernel: E[MMD_u^2] = ||mu_x - mu_y||^2; large samples land close to it, same distributions near 0
    big_x, big_y = rng.normal(size=(3000, 3)), rng.normal(size=(3000, 3)) + np.array([0.5, 0.0, -1.0])
    assert mmd2(big_x, big_y, "linear")[0] == pytest.approx(1.25, abs=0.1)
    assert abs(mmd2(big_x, rng.normal(size=(3000, 3)), "rbf")[0]) < 0.01


def test_rank_correlation_and_its_interval():
    a = np.arange(10.0)
    r = rank_correlation(a, a**3)
    assert r["rho"] == pytest.approx(1.0) and r["low"] > 0.9
    r = rank_correlation(a, -a)
    assert r["rho"] == pytest.approx(-1.0) and r["high"] < -0.9
    rng = np.random.default_rng(5)
    r = rank_correlation(rng.normal(size=9), rng.normal(size=9))
    assert r["low"] < r["rho"] < r["high"]
    assert math.isnan(rank_correlation([1.0, 2.0], [1.0, 2.0])["rho"])
