"""Sharpness and flatness of a trained model (Liu et al. 2019, claim L1).

* :func:`power_iteration`: the largest (algebraic) eigenvalue of a symmetric operator given only as
  matrix-vector products (the maths kernel: power iteration, shifted by the spectral radius when the dominant
  eigenvalue is not the top one), with a seed, a relative tolerance and the iterations recorded;
* :func:`hessian_vector_product`: H v of the mean training loss over a fixed set of examples, by double
  backward (exact, no finite differences);
* :func:`flatness`: over a model and data, the top Hessian eigenvalue and the mean loss increase under
  random weight perturbations of relative size r (each parameter tensor moved by r ||W||_F in a random
  direction), returned as a frozen :class:`FlatnessResult`. The model given is never changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from .. import task
from ..data import Split
from ..devices import cpu_sample, model_device
from ..models import to_input
from ..vocab.results import FlatnessResult

__all__ = ["FlatnessResult", "power_iteration", "hessian_vector_product", "flatness", "loss_on"]


def _power(matvec: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, iters: int, tol: float,
           dtype: torch.dtype) -> tuple[float, float, torch.Tensor, int, bool]:
    """Power iteration from unit ``v``: (Rayleigh quotient, ||A v|| of the last v, v, iterations, converged)."""
    lam, norm = math.nan, 0.0
    for it in range(1, iters + 1):
        av = matvec(v).to(dtype)
        new = float(v @ av)
        n = av.norm()
        norm = float(n)
        if n == 0:
            return 0.0, 0.0, v, it, True
        v = av / n
        if math.isfinite(lam) and abs(new - lam) <= tol * abs(new):
            return new, norm, v, it, True
        lam = new
    return lam, norm, v, iters, False  # the last estimate


def power_iteration(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *, iters: int = 100, tol: float = 1e-3,
                    seed: int = 0, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
                    ) -> tuple[float, int, bool]:
    """Largest (algebraic) eigenvalue of a symmetric operator A given as matrix-vector products: the top of the
    spectrum, not the eigenvalue of largest magnitude (for diag(1, -2) it is 1, not -2).

    1. Power iteration v <- A v / ||A v|| from a seeded random v: the Rayleigh quotient r (a lower bound of the
       top eigenvalue) and rho = ||A v|| (which tends to the spectral radius, an upper bound of it).
    2. If r >= (1 - 10 tol) rho, the dominant eigenvalue is the top one: r is returned.
    3. Otherwise (the dominant eigenvalue is negative, or two of opposite signs compete) power iteration on
       A + rho I, whose spectrum is shifted to [~0, top + rho], so that its dominant eigenvalue is top + rho.

    Each phase stops when its Rayleigh quotient changes by at most ``tol`` relative to its value between two
    iterations, within ``iters`` iterations; in phase 3 that value is top + rho, so the top eigenvalue is then
    found to about tol (top + rho). Returns (eigenvalue, iterations used in all, converged). The vectors live on
    ``device`` (drawn on the CPU with ``seed``, the same start on every device).
    """
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=g, dtype=dtype, device="cpu").to(device)
    v /= v.norm()
    r, rho, v1, it1, ok1 = _power(matvec, v, iters, tol, dtype)
    if rho == 0 or (r > 0 and r >= (1 - 10 * tol) * rho):
        return r, it1, ok1
    if r <= 0:  # v1 lies near the bottom of the spectrum, which the shift sends to ~0: start afresh
        v1 = torch.randn(dim, generator=g, dtype=dtype, device="cpu").to(device)
        v1 /= v1.norm()
    mu, _, _, it2, ok2 = _power(lambda x: matvec(x).to(dtype) + rho * x, v1, iters, tol, dtype)
    return mu - rho, it1 + it2, ok2


def loss_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Mean loss of ``model`` over (x, y) as a differentiable scalar (summed batch by batch): the cross-entropy,
    or for multi-label ``y`` (N, L) the per-label BCE averaged over known labels (:func:`transferscope.task.loss`)."""
    total = 0.0
    for i in range(0, len(y), batch_size):
        out = model(x[i : i + batch_size])
        total = total + task.loss(out, y[i : i + batch_size], reduction="sum")
    return total / len(y)


def hessian_vector_product(batch_losses: Callable[[], Iterable[torch.Tensor]], params: list[torch.Tensor],
                           v: torch.Tensor) -> torch.Tensor:
    """H v, H the Hessian with respect to ``params`` (flattened, concatenated) of the sum of the scalar losses
    that ``batch_losses()`` yields (one per batch, so that only one batch's graph is alive at a time)."""
    out = torch.zeros_like(v)
    for loss in batch_losses():
        grads = torch.autograd.grad(loss, params, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        hv = torch.autograd.grad(flat @ v.to(flat.dtype), params)
        out += torch.cat([h.reshape(-1) for h in hv]).to(out.dtype)
    return out


def _ce_batches(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int):
    """The mean loss (:func:`transferscope.task.loss`) over (x, y), as per-batch terms that sum to it."""
    def gen():
        for i in range(0, len(y), batch_size):
            yield task.loss(model(x[i : i + batch_size]), y[i : i + batch_size], reduction="sum") / len(y)
    return gen


@torch.no_grad()
def _perturbed_losses(model: nn.Module, x, y, radii: Sequence[float], samples: int, seed: int) -> tuple[list, list]:
    params = [p for p in model.parameters() if p.requires_grad]
    base = [p.detach().clone() for p in params]
    g = torch.Generator().manual_seed(seed + 1)
    l0 = loss_on(model, x, y).item()
    means, stds = [], []
    for r in radii:
        vals = []
        for _ in range(samples):
            for p, b in zip(params, base, strict=True):
                u = torch.randn(b.shape, generator=g, dtype=b.dtype, device="cpu").to(b.device)
                un = u.norm()
                p.copy_(b + (r * b.norm() / un) * u if un > 0 else b)
            vals.append(loss_on(model, x, y).item() - l0)
        t = torch.tensor(vals, dtype=torch.float64, device="cpu")
        means.append(float(t.mean()))
        stds.append(float(t.std()) if samples > 1 else 0.0)
    for p, b in zip(params, base, strict=True):
        p.copy_(b)
    return means, stds


def flatness(model: nn.Module, data: Split, *, n_examples: int = 500, iters: int = 100, tol: float = 1e-3,
             radii: Sequence[float] = (0.01, 0.05, 0.1), samples: int = 5, seed: int = 0,
             batch_size: int = 500) -> FlatnessResult:
    """Top Hessian eigenvalue (power iteration on exact Hessian-vector products) and the loss increase under
    random relative perturbations, on ``n_examples`` of ``data`` balanced over its classes (``data.sample``; the
    training split, as in Liu et al.).

    The model is copied and put in eval mode (the default models keep no batch statistics, so eval and train
    mode compute the same function); the one given is not changed.
    """
    m = copy.deepcopy(model).eval()
    params = [p for p in m.parameters() if p.requires_grad]
    sub = cpu_sample(data, n_examples, seed)  # balanced over classes (splits are stored class by class)
    dev = model_device(m)
    x = to_input(sub.x.to(dev)) if sub.x.dtype == torch.uint8 else sub.x.to(dev)
    y = sub.y.to(dev)
    dim = sum(p.numel() for p in params)
    with torch.no_grad():
        loss = loss_on(m, x, y, batch_size).item()
    batches = _ce_batches(m, x, y, batch_size)
    lam, it, ok = power_iteration(lambda v: hessian_vector_product(batches, params, v), dim, iters=iters, tol=tol,
                                  seed=seed, device=dev)
    inc, inc_std = _perturbed_losses(m, x, y, radii, samples, seed)
    return FlatnessResult(loss, lam, it, ok, tol, [float(r) for r in radii], inc, inc_std, samples, len(y), seed,
                          {"n_examples": n_examples, "iters": iters, "batch_size": batch_size})
