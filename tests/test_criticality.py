import math

import numpy as np
import pytest
import torch

from transferscope.analyses.criticality import CriticalityResult, criticality_grid, module_criticality, rewind_curve

from .conftest import trained_model


@pytest.fixture(scope="module")
def trained(small_domain):
    m, init = trained_model(small_domain, 0, epochs=6)
    return m, init, small_domain


def test_zero_when_initial_equals_final(trained):
    m, _, d = trained
    final = {k: v.clone() for k, v in m.state_dict().items()}
    r = module_criticality(m, final, d.train, alphas=[0, 0.5, 1], samples=2, n_examples=60)
    assert all(c == 0 for c in r.criticality) and all(x == 0 for x in r.distance)
    g = criticality_grid(m, final, d.train, alphas=[0, 0.5, 1], sigmas=[0.01, 0.1], samples=2, n_examples=60)
    assert all(c == 0 for c in g.criticality)


def test_bisection_agrees_with_the_brute_force_grid(trained):
    m, init, d = trained
    kw = dict(alphas=[0, 0.5, 1.0], samples=2, n_examples=60, tolerance=0.2, seed=5,
              modules=["stem", "stage2.block0", "head"])
    fast = module_criticality(m, init, d.train, s_max=0.5, s_tol=1e-3, **kw)
    grid = criticality_grid(m, init, d.train, sigmas=np.linspace(0.01, 0.5, 50), **kw)
    assert fast.modules == grid.modules
    step, s_tol = 0.01, 1e-3
    for f, g, sg in zip(fast.criticality, grid.criticality, grid.best_s, strict=True):
        if math.isinf(g):
            assert math.isinf(f) or f > 0
            continue
        # The grid's best s is the largest feasible grid value, within one grid step below the true boundary;
        # bisection lands within s_tol of it. So the values agree up to those two resolutions.
        assert g * (sg / (sg + step)) ** 2 * (1 - 1e-9) <= f <= g * ((sg + s_tol) / sg) ** 2 * (1 + 1e-9)
    assert fast.best_a == grid.best_a
    assert CriticalityResult.from_dict(fast.to_dict()) == fast


def test_rewinding_curve_ends_at_the_final_loss_and_model_unchanged(trained):
    m, init, d = trained
    before = {k: v.clone() for k, v in m.state_dict().items()}
    curves = rewind_curve(m, init, d.train, alphas=[0.0, 1.0], n_examples=60)
    ends = {round(c[-1], 6) for c in curves.values()}
    assert len(ends) == 1  # every module at a = 1 is the final model
    assert any(c[0] > c[-1] for c in curves.values())  # rewinding some module to its init hurts
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(ValueError, match="unknown module 'layer9'"):
        module_criticality(m, init, d.train, modules=["layer9"])
