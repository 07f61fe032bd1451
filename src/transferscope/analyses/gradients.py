"""The gradient's behaviour at a point of training (Liu et al. claims L2 and L3).

* :func:`gradient_stability`: at theta with gradient g of the training loss, the change of loss and the norm of
  the change of gradient along the step theta - eta k g for a range of k, and the implied local Lipschitz
  constants of the loss (|dL| / ||step||) and of its gradient (||dg|| / ||step||) in the gradient's direction;
* :func:`principal_gradient`: per weight matrix W (conv kernels reshaped to out x rest) with SVD W = U S V^T, the
  fraction of the gradient's energy on the top-k singular directions, ||U_k^T G V_k||_F^2 / ||G||_F^2, beside
  its value for an isotropic random G of the same shape (k^2 / (out rest)).

Both take a model and data, never change the model, and return frozen results.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn as nn

from .. import task
from ..data import Split
from ..devices import cpu_sample, model_device
from ..models import to_input
from ..vocab.results import PrincipalGradientResult, StabilityResult

__all__ = ["StabilityResult", "gradient_stability", "PrincipalGradientResult", "principal_gradient", "loss_and_grad"]


def _xy(data: Split, n: int, seed: int = 0, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples balanced over the classes (splits are stored class by class: ``x[:n]`` would not be), on
    ``device``."""
    sub = cpu_sample(data, n, seed)
    x = sub.x.to(device)
    return (to_input(x) if x.dtype == torch.uint8 else x), sub.y.to(device)


def loss_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500
                  ) -> tuple[float, list[torch.Tensor]]:
    """Mean loss over (x, y) (the cross-entropy, or for multi-label ``y`` the per-label BCE averaged over known
    labels: :func:`transferscope.task.loss`) and its gradient with respect to the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.zeros_like(p) for p in params]
    total = 0.0
    for i in range(0, len(y), batch_size):
        loss = task.loss(model(x[i : i + batch_size]), y[i : i + batch_size], reduction="sum") / len(y)
        for acc, g in zip(grads, torch.autograd.grad(loss, params), strict=True):
            acc += g
        total += loss.item()
    return total, grads


def _norm(ts: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in ts)))


def gradient_stability(model: nn.Module, data: Split, *, lr: float, ks: Sequence[float] = (0.5, 1, 2, 4),
                       n_examples: int = 500, batch_size: int = 500, seed: int = 0) -> StabilityResult:
    """Loss and gradient change along theta - lr k g, on ``n_examples`` of ``data`` balanced over its classes
    (``data.sample(n_examples, seed)``).

    Every loss and gradient is computed in float64, on a float64 copy of the model (in eval mode) and float64
    inputs: the changes along small steps are differences of nearly equal numbers, which float32 forward passes
    lose (a loss change of 0, a Lipschitz estimate 16 % off). The model given is not changed."""
    m = copy.deepcopy(model).eval().double()
    x, y = _xy(data, n_examples, seed, model_device(m))
    x = x.double()
    params = [p for p in m.parameters() if p.requires_grad]
    base = [p.detach().clone() for p in params]
    l0, g0 = loss_and_grad(m, x, y, batch_size)
    gn = _norm(g0)
    dl, dg, ll, gl = [], [], [], []
    for k in ks:
        with torch.no_grad():
            for p, b, g in zip(params, base, g0, strict=True):
                p.copy_(b - lr * k * g)
        lk, gk = loss_and_grad(m, x, y, batch_size)
        step = lr * k * gn
        change = _norm([a - b for a, b in zip(gk, g0, strict=True)])
        dl.append(lk - l0)
        dg.append(change)
        ll.append(abs(lk - l0) / step if step > 0 else float("nan"))
        gl.append(change / step if step > 0 else float("nan"))
    return StabilityResult(float(lr), [float(k) for k in ks], l0, gn, dl, dg, ll, gl, len(y), seed,
                           args={"lr": lr, "ks": [float(k) for k in ks], "n_examples": n_examples, "dtype": "float64"})


def principal_gradient(model: nn.Module, data: Split, *, top_k: Sequence[int] = (1, 3), n_examples: int = 500,
                       batch_size: int = 500, seed: int = 0) -> PrincipalGradientResult:
    """The gradient's energy on the top singular directions of each weight matrix, at the model as given (for
    Liu et al.: at the start of training on the target, pre-trained vs random weights), on ``n_examples`` of
    ``data`` balanced over its classes (``data.sample(n_examples, seed)``). Eval mode on a copy."""
    m = copy.deepcopy(model).eval()
    x, y = _xy(data, n_examples, seed, model_device(m))
    loss, grads = loss_and_grad(m, x, y, batch_size)
    named = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    names, frac, rand, norms = [], [], [], []
    for (name, p), g in zip(named, grads, strict=True):
        if p.ndim < 2:
            continue
        w = p.detach().double().reshape(p.shape[0], -1)
        g2 = g.double().reshape(p.shape[0], -1)
        u, _, vh = torch.linalg.svd(w, full_matrices=False)
        total = float((g2**2).sum())
        row, rrow = [], []
        for k in top_k:
            k = min(k, u.shape[1])
            proj = u[:, :k].T @ g2 @ vh[:k].T
            row.append(float((proj**2).sum()) / total if total > 0 else float("nan"))
            rrow.append(k * k / (w.shape[0] * w.shape[1]))
        names.append(name)
        frac.append(row)
        rand.append(rrow)
        norms.append(total**0.5)
    module_of = getattr(model, "module_of", None)
    return PrincipalGradientResult(names, [int(k) for k in top_k], frac, rand, norms, loss, len(y), seed,
                                   args={"top_k": [int(k) for k in top_k], "n_examples": n_examples},
                                   modules=[module_of(n) for n in names] if module_of else [])
