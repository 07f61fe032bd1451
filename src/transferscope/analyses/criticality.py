"""Module criticality (Chatterji, Neyshabur, Sedghi, ICLR 2020), as Neyshabur et al. use it (Section 3.5).

For module i with initial parameters theta_i^0 and final theta_i^F, every other module at its final value:
theta_i^a = (1 - a) theta_i^0 + a theta_i^F. The criticality is

    min over a, s in (0, 1] of  a^2 ||theta_i^F - theta_i^0||_F^2 / s^2
    subject to  E_{u ~ N(0, s^2 I)} L(theta_i^a + u) <= eps,

with L the training loss and eps = (1 + tolerance) L(theta^F). The expectation is estimated with ``samples``
noise draws from a seeded generator (the same draws at every grid point: common random numbers).

* :func:`criticality_grid` is the brute-force reference: every (a, s) of a grid.
* :func:`module_criticality` is the faster search: for each a, a bisection for the largest feasible s
  (the noisy loss grows with s), stopping at ``s_tol``; it agrees with the grid (tests) and needs
  O(len(a) log(1/s_tol)) loss evaluations instead of O(len(a) len(s)).
* The module-wise rewinding curve (s = 0): the loss and accuracy against a, per module.

Neither function changes the model it is given.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Split
from ..models import to_input
from .result import Result

__all__ = ["CriticalityResult", "module_criticality", "criticality_grid", "rewind_curve"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CriticalityResult(Result):
    modules: list[str]
    criticality: list[float]
    """Per module; 0 where the module can be fully rewound (a = 0) within the threshold."""
    best_a: list[float]
    best_s: list[float]
    distance: list[float]
    """||theta_i^F - theta_i^0||_F per module."""
    alphas: list[float]
    rewind_loss: list[list[float]]
    """[module][a]: training loss with the module at theta_i^a and no noise (the rewinding curve)."""
    rewind_acc: list[list[float]]
    boundary_s: list[list[float]]
    """[module][a]: the largest noise scale s found feasible at that a (0: infeasible even at the smallest s).
    The feasible region of the (a, s) plane per module: the picture behind the criticality."""
    eps: float
    final_loss: float
    tolerance: float
    samples: int
    seed: int
    method: str
    """``bisection`` (with ``s_tol``) or ``grid``."""
    args: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    array_fields = ("rewind_loss", "rewind_acc", "boundary_s")



class _Evaluator:
    """Training loss of a working copy with one module moved to theta^a plus N(0, s^2) noise."""

    def __init__(self, model: nn.Module, initial: dict[str, torch.Tensor], data: Split, n_examples: int,
                 samples: int, seed: int, batch_size: int = 500) -> None:
        self.model = copy.deepcopy(model).eval()
        self.final = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.initial = initial
        sub = data.sample(n_examples, seed)  # balanced over classes (splits are stored class by class)
        self.x = to_input(sub.x)
        self.y = sub.y
        self.batch_size = batch_size
        module_of = getattr(model, "module_of", lambda n: n.rsplit(".", 1)[0])
        self.groups: dict[str, list[str]] = {}
        for n in self.final:
            if n in initial and initial[n].shape == self.final[n].shape:
                self.groups.setdefault(module_of(n), []).append(n)
        g = torch.Generator().manual_seed(seed)
        # unit-variance draws, scaled by s at each point: the same noise everywhere (common random numbers)
        self.noise = {n: [torch.randn(self.final[n].shape, generator=g) for _ in range(samples)] for n in self.final}
        self.samples = samples

    @torch.no_grad()
    def loss_acc(self) -> tuple[float, float]:
        total, correct = 0.0, 0
        for i in range(0, len(self.y), self.batch_size):
            out = self.model(self.x[i : i + self.batch_size])
            total += F.cross_entropy(out, self.y[i : i + self.batch_size], reduction="sum").item()
            correct += (out.argmax(1) == self.y[i : i + self.batch_size]).sum().item()
        return total / len(self.y), correct / len(self.y)

    @torch.no_grad()
    def set(self, module: str, a: float, s: float = 0.0, k: int | None = None) -> None:
        params = dict(self.model.named_parameters())
        for n in self.final:
            params[n].copy_(self.final[n])
        for n in self.groups[module]:
            params[n].copy_(torch.lerp(self.initial[n], self.final[n], a))
            if s > 0 and k is not None:
                params[n].add_(self.noise[n][k], alpha=s)

    def noisy_loss(self, module: str, a: float, s: float) -> float:
        if s == 0:
            self.set(module, a)
            return self.loss_acc()[0]
        vals = []
        for k in range(self.samples):
            self.set(module, a, s, k)
            vals.append(self.loss_acc()[0])
        return float(np.mean(vals))

    def distance(self, module: str) -> float:
        return math.sqrt(sum((self.final[n] - self.initial[n]).double().pow(2).sum().item() for n in self.groups[module]))


def _prepare(model, initial, data, modules, n_examples, samples, seed, tolerance):
    ev = _Evaluator(model, initial, data, n_examples, samples, seed)
    names = list(modules) if modules is not None else list(ev.groups)
    unknown = [m for m in names if m not in ev.groups]
    if unknown:
        raise ValueError(f"criticality: unknown module {unknown[0]!r}; modules are {', '.join(ev.groups)}")
    ev.set(names[0], 1.0)  # every module at its final value: the reference loss
    final_loss, _ = ev.loss_acc()
    return ev, names, final_loss, (1 + tolerance) * final_loss


def _rewind(ev: _Evaluator, module: str, alphas: Sequence[float]) -> tuple[list[float], list[float]]:
    losses, accs = [], []
    for a in alphas:
        ev.set(module, a)
        l, acc = ev.loss_acc()
        losses.append(l)
        accs.append(acc)
    return losses, accs


def _per_module(ev: _Evaluator, names: list[str], alphas: Sequence[float], search, meta: tuple) -> CriticalityResult:
    """For every module: ``boundary(module, a)`` -> the largest feasible s at a (0: none), then the criticality
    min over a of a^2 d^2 / s^2 at the boundary (0 where a = 0 or d = 0 is feasible), and the rewinding curve."""
    crit, best, dist, rew, bound = [], [], [], [], []
    for m in names:
        d = ev.distance(m)
        value, arg, row = math.inf, (math.nan, math.nan), []
        for a in alphas:
            s = search(m, a)
            row.append(s)
            if s > 0:
                cand = 0.0 if a == 0 or d == 0 else a * a * d * d / (s * s)
                if cand < value:
                    value, arg = cand, (float(a), s)
        crit.append(value)
        best.append(arg)
        dist.append(d)
        bound.append(row)
        rew.append(_rewind(ev, m, alphas))
    return CriticalityResult(names, crit, [b[0] for b in best], [b[1] for b in best], dist, list(map(float, alphas)),
                             [r[0] for r in rew], [r[1] for r in rew], bound, *meta)


def criticality_grid(model: nn.Module, initial: dict[str, torch.Tensor], data: Split, *,
                     alphas: Sequence[float] = tuple(np.linspace(0, 1, 11)),
                     sigmas: Sequence[float] = tuple(np.linspace(0.01, 1, 34)), modules: Sequence[str] | None = None,
                     n_examples: int = 1000, samples: int = 4, tolerance: float = 0.1, seed: int = 0) -> CriticalityResult:
    """Brute force: the loss at every (a, s) of the grid; the minimum of a^2 d^2 / s^2 over feasible points.

    Args:
        model: the trained model (theta^F); not changed.
        initial: theta^0 as a state dict (P for a P-T model, RI for an RI-T model); parameters whose shape
            differs (a new head) are not moved.
        data: training data (``n_examples`` of it, balanced over classes: ``data.sample(n_examples, seed)``).
    """
    ev, names, final_loss, eps = _prepare(model, initial, data, modules, n_examples, samples, seed, tolerance)

    def search(m: str, a: float) -> float:
        feasible = [float(s) for s in sigmas if s > 0 and ev.noisy_loss(m, a, s) <= eps]
        return max(feasible, default=0.0)

    args = {"alphas": [float(a) for a in alphas], "sigmas": [float(s) for s in sigmas], "modules": names,
            "n_examples": n_examples}
    return _per_module(ev, names, alphas, search, (eps, final_loss, tolerance, samples, seed, "grid", args))


def module_criticality(model: nn.Module, initial: dict[str, torch.Tensor], data: Split, *,
                       alphas: Sequence[float] = tuple(np.linspace(0, 1, 11)), s_max: float = 1.0, s_tol: float = 1e-3,
                       modules: Sequence[str] | None = None, n_examples: int = 1000, samples: int = 4,
                       tolerance: float = 0.1, seed: int = 0) -> CriticalityResult:
    """Criticality per module by bisection on s for each a (see the module docstring). Arguments as
    :func:`criticality_grid`; ``s_max`` bounds the noise scale searched and ``s_tol`` the bisection."""
    ev, names, final_loss, eps = _prepare(model, initial, data, modules, n_examples, samples, seed, tolerance)

    def search(m: str, a: float) -> float:
        if ev.noisy_loss(m, a, s_max) <= eps:
            return s_max
        if ev.noisy_loss(m, a, s_tol) > eps:
            return 0.0  # infeasible at this a even with (almost) no noise
        lo, hi = s_tol, s_max
        while hi - lo > s_tol:
            mid = 0.5 * (lo + hi)
            if ev.noisy_loss(m, a, mid) <= eps:
                lo = mid
            else:
                hi = mid
        return lo

    args = {"alphas": [float(a) for a in alphas], "s_max": s_max, "s_tol": s_tol, "modules": names,
            "n_examples": n_examples}
    return _per_module(ev, names, alphas, search, (eps, final_loss, tolerance, samples, seed, "bisection", args))


def rewind_curve(model: nn.Module, initial: dict[str, torch.Tensor], data: Split, *,
                 alphas: Sequence[float] = tuple(np.linspace(0, 1, 11)), n_examples: int = 1000) -> dict[str, list[float]]:
    """Loss against a per module with no noise (s = 0): the module-wise rewinding curve."""
    ev = _Evaluator(model, initial, data, n_examples, 0, 0)
    return {m: _rewind(ev, m, alphas)[0] for m in ev.groups}
