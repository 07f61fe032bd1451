import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from transferscope.analyses.flatness import _ce_batches, hessian_vector_product
from transferscope.analyses.gradients import gradient_stability, loss_and_grad, principal_gradient
from transferscope.data import Split

from .conftest import trained_model


def _linear_split(n=64, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :c].argmax(1)).long()
    return Split(x, y, np.arange(n))


def _net(d=6, c=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, c))


def test_small_steps_give_the_first_order_constants():
    """As k -> 0: |dL| / ||eta k g|| -> ||g|| and ||dg|| / ||eta k g|| -> ||H g|| / ||g|| (H g by double backward)."""
    data = _linear_split()
    data = Split(data.x.double(), data.y, data.index)  # float64: a tiny step's loss change is above round-off
    model = _net().double()
    r = gradient_stability(model, data, lr=1e-3, ks=(1e-3,), n_examples=64)
    assert r.loss_lipschitz[0] == pytest.approx(r.grad_norm, rel=1e-2)
    params = list(model.parameters())
    _, g = loss_and_grad(model, data.x, data.y)
    gflat = torch.cat([t.reshape(-1) for t in g]).double()
    hg = hessian_vector_product(_ce_batches(model, data.x, data.y, 500), params, gflat / gflat.norm())
    assert r.grad_lipschitz[0] == pytest.approx(hg.norm().item(), rel=2e-2)
    assert r.loss_change[0] < 0  # a small step down the gradient lowers the loss


def _reference_changes(model, x, y, lr, ks):
    """Independent float64 reference: torch.func.functional_call with float64 copies of the parameters and
    torch.func.grad, on the whole (x, y) in one batch."""
    params = {n: p.detach().double() for n, p in model.named_parameters()}
    xd = x.double()

    def loss(p):
        return F.cross_entropy(torch.func.functional_call(model, p, (xd,)), y)

    grad = torch.func.grad(loss)
    l0, g0 = loss(params).item(), grad(params)
    gn = torch.sqrt(sum((g**2).sum() for g in g0.values())).item()
    out = []
    for k in ks:
        pk = {n: params[n] - lr * k * g0[n] for n in params}
        gk = grad(pk)
        dg = torch.sqrt(sum(((gk[n] - g0[n]) ** 2).sum() for n in params)).item()
        out.append((loss(pk).item() - l0, dg, lr * k * gn))
    return l0, gn, out


def test_float32_model_changes_match_a_float64_reference():
    """On a float32 model and float32 data the changes are computed in float64: equal to an independent float64
    computation to ~1e-9 even for tiny steps, where float32 forward passes gave a loss change of 0 or a few
    per cent off."""
    data = _linear_split()
    model = _net()
    assert next(model.parameters()).dtype == torch.float32 and data.x.dtype == torch.float32
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ks = (1e-3, 0.1, 1.0, 10.0)
    r = gradient_stability(model, data, lr=1e-2, ks=ks, n_examples=64, batch_size=25)
    l0, gn, ref = _reference_changes(model, data.x, data.y, 1e-2, ks)
    assert r.loss == pytest.approx(l0, rel=1e-12) and r.grad_norm == pytest.approx(gn, rel=1e-10)
    for i, (dl, dg, step) in enumerate(ref):
        assert r.loss_change[i] == pytest.approx(dl, rel=1e-7)
        assert r.grad_change[i] == pytest.approx(dg, rel=1e-7)
        assert r.loss_lipschitz[i] == pytest.approx(abs(dl) / step, rel=1e-7)
        assert r.grad_lipschitz[i] == pytest.approx(dg / step, rel=1e-7)
    assert r.loss_change[0] < 0  # resolved, not 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.float32


def test_stability_leaves_the_model_unchanged(small_domain):
    model, _ = trained_model(small_domain, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = gradient_stability(model, small_domain.train, lr=0.05, ks=(1, 4), n_examples=32)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and model.training
    assert len(r.loss_change) == 2 and r.grad_norm > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    r2 = gradient_stability(model, small_domain.train, lr=0.05, ks=(1, 4), n_examples=32, seed=1)
    assert r2.seed == 1 and r2.loss != r.loss  # the seed draws the examples (and is recorded)


def test_principal_fraction_matches_an_independent_svd_and_is_one_on_a_full_square_basis():
    data = _linear_split(d=5, c=5)
    model = nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5))
    r = principal_gradient(model, data, top_k=(1, 5), n_examples=64)
    assert r.weights == ["0.weight", "2.weight"]
    _, grads = loss_and_grad(model, data.x, data.y)
    for i, idx in enumerate((0, 2)):  # the weights' gradients are grads[0] and grads[2] (biases between)
        w = model[idx].weight.detach().double().numpy()
        g = grads[2 * i].double().numpy()
        u, _, vt = np.linalg.svd(w)
        expect = float(((u[:, :1].T @ g @ vt[:1].T) ** 2).sum() / (g**2).sum())
        assert r.fraction[i][0] == pytest.approx(expect, rel=1e-9)
        assert r.fraction[i][1] == pytest.approx(1.0, rel=1e-9)  # all singular directions of a square matrix
        assert r.random_fraction[i] == [1 / 25, 1.0]


def test_principal_gradient_on_conv_kernels(small_domain):
    model, _ = trained_model(small_domain, 0)
    r = principal_gradient(model, small_domain.train, top_k=(1,), n_examples=24)
    convs = [n for n, p in model.named_parameters() if p.ndim == 4]
    assert set(convs) <= set(r.weights)
    assert all(0.0 <= f[0] <= 1.0 for f in r.fraction)
