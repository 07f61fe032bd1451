import math

import numpy as np
import pytest
import torch

from transferscope.analyses.criticality import (
    CriticalityResult,
    _bracket,
    criticality_grid,
    fine_sigmas,
    module_criticality,
    rewind_curve,
)

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
    assert all(r.degenerate)  # a module that did not move: its 0 says nothing, and the result says so
    g = criticality_grid(m, final, d.train, alphas=[0, 0.5, 1], sigmas=[0.01, 0.1], samples=2, n_examples=60)
    assert all(c == 0 for c in g.criticality) and all(g.degenerate)


def test_bracket_against_a_known_boundary():
    """A step function with its boundary at b: the bracket holds b, its relative width is at most s_tol, and a
    boundary far below the tolerance is found (not reported as 0); infeasible at 0 and feasible at s_max are exact."""
    for b in (0.7, 0.0236, 3e-4, 2e-6):
        calls = []
        lo, hi = _bracket(lambda s, b=b, calls=calls: calls.append(s) or s <= b, 1.0, 1e-6, 0.01)
        assert lo <= b < hi and hi - lo <= 0.01 * lo
        assert abs(0.5 * (lo + hi) - b) <= 0.005 * b
        assert len(calls) <= 2 + math.ceil(math.log2(1 / b)) + 8  # halving down to b, then ~7 bisections
    assert _bracket(lambda s: s <= 2.0, 1.0, 1e-6, 0.01) == (1.0, 1.0)
    assert _bracket(lambda s: False, 1.0, 1e-6, 0.01) == (0.0, 0.0)
    assert _bracket(lambda s: s == 0, 1.0, 1e-3, 0.01)[0] == 0.0  # feasible only at 0: lo = 0 < hi <= 2 s_min


def test_fine_sigmas_are_fine():
    s = fine_sigmas()
    assert s[0] == pytest.approx(1e-4) and s[-1] == pytest.approx(1.0) and np.all(np.diff(s) > 0)
    assert np.max(s[1:] / s[:-1]) <= 1.02 + 1e-9  # every step within 2 % of s


def _agree(fast, grid, s_tol, grid_step):
    """The fast search's bracket and the grid's overlap at every (module, a) (both hold the boundary), and the
    criticalities agree within the two resolutions: each midpoint is within half its bracket of the boundary, i.e.
    within s_tol / 2 (fast) and grid_step / 2 (grid, relative step) of it."""
    for i in range(len(fast.modules)):
        for sf, wf, sg, wg in zip(fast.boundary_s[i], fast.boundary_width[i], grid.boundary_s[i],
                                  grid.boundary_width[i], strict=True):
            assert max(sf - wf / 2, sg - wg / 2) <= min(sf + wf / 2, sg + wg / 2) * (1 + 1e-9)
    bound = (1 + s_tol / 2 + grid_step / 2) ** 2 * (1 + 1e-9)
    for f, g in zip(fast.criticality, grid.criticality, strict=True):
        if math.isinf(g) or g == 0:
            assert f == g
            continue
        assert g / bound <= f <= g * bound


def test_bisection_agrees_with_a_fine_brute_force_grid(trained):
    """The old search (absolute s_tol, lower end returned) reported boundaries of 0.026 and 0.031 as 0.02 with
    s_tol 0.02, outside the grid's brackets, and criticalities 1.06x and 1.12x the grid's. With a relative s_tol
    and the midpoint it agrees with a fine grid."""
    m, init, d = trained
    kw = dict(alphas=[0.5, 1.0], samples=2, n_examples=60, tolerance=0.2, seed=5, modules=["stem", "stage1.block0"])
    fast = module_criticality(m, init, d.train, s_max=0.3, s_tol=0.02, **kw)
    grid = criticality_grid(m, init, d.train, sigmas=fine_sigmas(0.3, 0.01, 0.03, linear_steps=0), **kw)
    assert fast.modules == grid.modules
    assert all(0 < s < 0.3 for row in fast.boundary_s for s in row)  # the test is about boundaries inside the range
    _agree(fast, grid, 0.02, 0.03)
    for row_s, row_w in zip(fast.boundary_s, fast.boundary_width, strict=True):
        assert all(w <= 0.02 * (s - w / 2) * (1 + 1e-9) for s, w in zip(row_s, row_w, strict=True))
    assert fast.best_a == grid.best_a
    for lo, c, hi in zip(fast.criticality_low, fast.criticality, fast.criticality_high, strict=True):
        assert lo <= c <= hi
    assert not any(fast.degenerate)
    assert CriticalityResult.from_dict(fast.to_dict()) == fast


def test_a_feasible_s_below_the_tolerance_is_found(trained):
    """With a tight threshold the boundary at a = 1 lies below 0.05: the old search (absolute s_tol 0.05)
    called it infeasible (s = 0, criticality inf). A log grid down to 1e-4 is the reference."""
    m, init, d = trained
    kw = dict(alphas=[1.0], samples=2, n_examples=60, tolerance=0.002, seed=5, modules=["stage1.block0", "head"])
    fast = module_criticality(m, init, d.train, s_tol=0.05, **kw)
    grid = criticality_grid(m, init, d.train, sigmas=np.geomspace(1e-4, 0.1, 150), **kw)
    assert all(0 < row[0] < 0.05 for row in grid.boundary_s)
    assert all(0 < row[0] < 0.05 for row in fast.boundary_s)
    assert all(math.isfinite(c) for c in fast.criticality)
    _agree(fast, grid, 0.05, 10 ** (3 / 149) - 1)


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


def test_layers_without_parameters_are_named_with_the_modules_used(small_domain, caplog):
    """``model.layers`` of ReLUs hold no parameters: criticality fell back to the modules holding them without a
    word, and N8 then said only that it needed 3 modules. The result and the log now name both."""
    import json
    import logging

    from transferscope.config import ModelConfig
    from transferscope.models import create_model

    cfg = ModelConfig(name="tests.byo_models:odd_cnn", kwargs={"width": 4}, head="classifier", layers=["act0", "act1"])
    m, init = create_model(cfg, 1, 3, seed=1), create_model(cfg, 1, 3, seed=0).state_dict()
    kw = dict(alphas=[0.0, 1.0], samples=1, n_examples=12, s_tol=0.2)
    with caplog.at_level(logging.WARNING, logger="transferscope.analyses.criticality"):
        r = module_criticality(m, init, small_domain.train, **kw)
    assert r.modules == ["features_in", "body_conv", "head"]
    assert r.layers_without_parameters == ["act0", "act1"]
    assert "act0 (ReLU), act1 (ReLU)" in r.note and "features_in, body_conv, head" in r.note
    assert r.note in caplog.text
    back = CriticalityResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    # a record written before these fields loads with none
    old = {k: v for k, v in r.to_dict().items() if k not in ("layers_without_parameters", "note")}
    assert CriticalityResult.from_dict(old).layers_without_parameters == [] and CriticalityResult.from_dict(old).note == ""
    # layers that hold parameters: nothing to say, and the criticality is that of the modules themselves
    ok = ModelConfig(name="tests.byo_models:odd_cnn", kwargs={"width": 4}, head="classifier",
                     layers=["features_in", "body_conv"])
    m2 = create_model(ok, 1, 3, seed=1)
    r2 = module_criticality(m2, create_model(ok, 1, 3, seed=0).state_dict(), small_domain.train, **kw)
    assert r2.layers_without_parameters == [] and r2.note == ""
    assert r2.criticality == r.criticality  # the same weights, the same modules: the same numbers


def test_a_builtin_model_with_input_normalisation_names_no_layer(trained):
    """A built-in ResNet wrapped for its own mean/std keeps its modules (no configured layers): no note, and with an
    identity-equivalent normalisation the same criticality as the model without it."""
    from transferscope.config import ModelConfig
    from transferscope.models import create_model

    m, init, d = trained
    w = create_model(ModelConfig(blocks=[1, 1], width=8, norm="groupnorm", mean=[0.5], std=[0.5]), 1, 3, seed=0)
    w.net.load_state_dict(m.state_dict())
    kw = dict(alphas=[0.5, 1.0], samples=1, n_examples=24, s_tol=0.1, modules=["stem", "head"])
    r = module_criticality(w, {f"net.{k}": v for k, v in init.items()}, d.train, **kw)
    assert r.layers_without_parameters == [] and r.note == ""
    assert r.criticality == module_criticality(m, init, d.train, **kw).criticality
