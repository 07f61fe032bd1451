import numpy as np
import pytest
import torch

from transferscope.analyses.barrier import BarrierResult, barrier_of_curve, interpolate
from transferscope.config import ModelConfig
from transferscope.models import create_model
from transferscope.train import evaluate

from .conftest import trained_model


@pytest.fixture
def domain(small_domain):
    return small_domain


def _trained(domain, seed, norm="groupnorm"):
    return trained_model(domain, seed, norm=norm)[0]


def test_barrier_of_curve_by_hand():
    lam = np.linspace(0, 1, 5)
    assert barrier_of_curve(lam, [0.1, 0.2, 0.6, 0.3, 0.3]) == pytest.approx(0.6 - 0.2)
    assert barrier_of_curve(lam, [0.5, 0.4, 0.3, 0.2, 0.1]) == pytest.approx(0.0)


@pytest.mark.parametrize("norm", ["groupnorm", "none"])
def test_endpoints_reproduce_the_models_exactly(domain, norm):
    a, b = _trained(domain, 0, norm), _trained(domain, 1, norm)
    r = interpolate(a, b, domain.test, points=5)
    la, acc_a, _ = evaluate(a, domain.test)
    lb, acc_b, _ = evaluate(b, domain.test)
    assert r.bn_policy == "exact"
    assert r.error[0] == pytest.approx(1 - acc_a, abs=1e-6) and r.error[-1] == pytest.approx(1 - acc_b, abs=1e-6)
    assert r.loss[0] == pytest.approx(la, rel=1e-5) and r.loss[-1] == pytest.approx(lb, rel=1e-5)
    assert r.barrier_error >= 0 and r.barrier_loss >= 0
    assert BarrierResult.from_dict(r.to_dict()) == r


def test_batched_points_equal_one_model_per_point(domain):
    a, b = _trained(domain, 0), _trained(domain, 1)
    r = interpolate(a, b, domain.test, points=7)
    r2 = interpolate(a, b, domain.test, points=7, batched=True, chunk_points=2)
    r3 = interpolate(a, b, domain.test, points=7, batched=True)
    for lam, loss in zip(r.lambdas, r.loss, strict=True):
        m = create_model(ModelConfig(blocks=[1, 1], width=8), 1, 3, seed=0)
        sa, sb = a.state_dict(), b.state_dict()
        m.load_state_dict({k: torch.lerp(sa[k], sb[k], lam) for k in sa})
        assert evaluate(m, domain.test)[0] == pytest.approx(loss, rel=1e-5)
    assert np.allclose(r.loss, r2.loss, rtol=1e-5) and np.allclose(r.loss, r3.loss, rtol=1e-5)
    assert r.error == pytest.approx(r3.error, abs=1e-6)


def test_a_model_with_itself_has_no_barrier_and_inputs_unchanged(domain):
    a = _trained(domain, 0)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    r = interpolate(a, a, domain.test, points=4)
    assert r.barrier_error == pytest.approx(0.0, abs=1e-12) and max(r.loss) - min(r.loss) < 1e-5
    assert all(torch.equal(before[k], v) for k, v in a.state_dict().items())
    assert a.training


def test_batchnorm_policies(domain):
    a, b = _trained(domain, 0, "batchnorm"), _trained(domain, 1, "batchnorm")
    with pytest.raises(ValueError, match="needs train_split"):
        interpolate(a, b, domain.test, points=3)
    keep = interpolate(a, b, domain.test, points=3, bn_policy="keep")
    inter = interpolate(a, b, domain.test, points=3, bn_policy="interpolate")
    rec = interpolate(a, b, domain.test, points=3, bn_policy="recompute", train_split=domain.train)
    assert (keep.bn_policy, inter.bn_policy, rec.bn_policy) == ("keep", "interpolate", "recompute")
    # with interpolated statistics both endpoints reproduce the models
    assert inter.error[0] == pytest.approx(1 - evaluate(a, domain.test)[1], abs=1e-6)
    assert inter.error[-1] == pytest.approx(1 - evaluate(b, domain.test)[1], abs=1e-6)
    # keeping model a's statistics does not reproduce model b at l = 1
    assert keep.loss[-1] != pytest.approx(evaluate(b, domain.test)[0], rel=1e-6)


def test_different_heads_are_refused(domain):
    a = create_model(ModelConfig(blocks=[1], width=8), 1, 3, seed=0)
    b = create_model(ModelConfig(blocks=[1], width=8), 1, 4, seed=0)
    with pytest.raises(ValueError, match="differ at 'head.weight'"):
        interpolate(a, b, domain.test)
