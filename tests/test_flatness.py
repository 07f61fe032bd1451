import math

import numpy as np
import pytest
import torch

from transferscope.analyses.flatness import _ce_batches, flatness, hessian_vector_product, power_iteration
from transferscope.config import ModelConfig
from transferscope.models import create_model, to_input

from .conftest import trained_model


def _sym(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_quadratic_loss_top_eigenvalue_to_tolerance(tol):
    """L(theta) = 1/2 theta^T A theta has Hessian A: double-backward HVPs + power iteration find its top eigenvalue."""
    a = _sym([7.0, 3.0, 2.5, -1.0, 0.2, 0.0])
    theta = torch.randn(6, dtype=torch.float64, requires_grad=True)
    hv = lambda v: hessian_vector_product(lambda: [0.5 * theta @ a @ theta], [theta], v)  # noqa: E731
    lam, iters, ok = power_iteration(hv, 6, iters=500, tol=tol, seed=0)
    assert ok and iters < 500
    # the stopping rule bounds the last change; with ratio 3/7 the error is of the order of that change
    assert lam == pytest.approx(7.0, rel=10 * tol)


def _random_sym(n, seed):
    """A symmetric matrix whose spectrum has a large negative end: the largest magnitude is not the top."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigs = np.concatenate([[-12.0, -9.0], rng.uniform(-3, 4, n - 2)])
    return q @ np.diag(eigs) @ q.T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_iteration_returns_the_top_eigenvalue_against_eigvalsh(seed):
    """Reference: numpy.linalg.eigvalsh of the explicit matrix. The top is ~4 while the dominant eigenvalue is -12
    (the old power iteration returned -12)."""
    a = _random_sym(30, seed)
    top = float(np.linalg.eigvalsh(a)[-1])
    at = torch.from_numpy(a)
    lam, iters, ok = power_iteration(lambda v: at @ v, 30, tol=1e-10, iters=5000, seed=seed)
    assert ok and lam == pytest.approx(top, abs=1e-6 * 16)  # tol relative to top + rho (~16)


@pytest.mark.parametrize("eigs, top", [([1.0, -2.0], 1.0), ([2.0, -2.0, 0.5], 2.0), ([-1.0, -2.0, -5.0], -1.0),
                                       ([-5.0, 2.0, 1.0], 2.0), ([7.0, -3.0, 0.0], 7.0), ([0.0, 0.0], 0.0)])
def test_power_iteration_top_of_small_spectra(eigs, top):
    """diag(1, -2) gives 1, not -2; opposite eigenvalues of equal magnitude, all-negative and zero spectra too."""
    a = _sym(eigs, seed=4)
    lam, _, ok = power_iteration(lambda v: a @ v, len(eigs), tol=1e-12, iters=5000, seed=3)
    assert ok and lam == pytest.approx(top, abs=1e-8)


def test_power_iteration_records_its_work():
    a = _sym([-5.0, 2.0, 1.0])
    lam, iters, ok = power_iteration(lambda v: a @ v, 3, tol=1e-9, iters=1000, seed=3)
    assert ok and iters < 2000
    _, iters2, ok2 = power_iteration(lambda v: a @ v, 3, tol=1e-9, iters=3, seed=3)
    assert not ok2 and iters2 <= 6  # at most ``iters`` per phase


def test_top_eigenvalue_of_a_small_net_matches_the_full_hessian(small_domain):
    """Independent reference: the full Hessian of the same loss by torch.autograd.functional.hessian."""
    model = create_model(ModelConfig(blocks=[1], width=2, norm="groupnorm"), 1, 3, seed=0).eval()
    x = to_input(small_domain.train.x[:24])
    y = small_domain.train.y[:24]
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()

    def loss_of(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            k = math.prod(s)
            params[n] = flat[i : i + k].reshape(s).float()
            i += k
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), y).double()

    h = torch.autograd.functional.hessian(loss_of, theta0)
    eigs = torch.linalg.eigvalsh((h + h.T) / 2)
    top = eigs.max().item()  # the top of the spectrum (here also the largest magnitude, as near most minima)
    params = list(model.parameters())
    lam, _, ok = power_iteration(lambda v: hessian_vector_product(_ce_batches(model, x, y, 10), params, v),
                                 theta0.numel(), iters=1000, tol=1e-7, seed=0)
    assert ok and lam == pytest.approx(top, rel=1e-3)


def test_flatness_leaves_the_model_unchanged_and_is_seeded(small_domain):
    model, _ = trained_model(small_domain, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r1 = flatness(model, small_domain.train, n_examples=40, iters=30, tol=1e-2, radii=(0.0, 0.05, 0.2), samples=3, seed=1)
    r2 = flatness(model, small_domain.train, n_examples=40, iters=30, tol=1e-2, radii=(0.0, 0.05, 0.2), samples=3, seed=1)
    assert r1 == r2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and model.training
    assert r1.top_eigenvalue > 0  # a trained model sits near a minimum: positive curvature
    assert r1.loss_increase[0] == 0.0  # r = 0 moves nothing
    assert r1.loss_increase[2] > r1.loss_increase[1]  # larger perturbations cost more
