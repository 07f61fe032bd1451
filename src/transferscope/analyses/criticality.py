"""Module criticality (Chatterji, Neyshabur, Sedghi, ICLR 2020), as Neyshabur et al. use it (Section 3.5).

For module i with initial parameters theta_i^0 and final theta_i^F, every other module at its final value:
theta_i^a = (1 - a) theta_i^0 + a theta_i^F. The criticality is

    min over a, s in (0, 1] of  a^2 ||theta_i^F - theta_i^0||_F^2 / s^2
    subject to  E_{u ~ N(0, s^2 I)} L(theta_i^a + u) <= eps,

with L the training loss and eps = (1 + tolerance) L(theta^F). The expectation is estimated with ``samples``
noise draws from a seeded generator (the same draws at every grid point: common random numbers).

* :func:`criticality_grid` is the brute-force reference: every (a, s) of a grid, by default the fine grid of
  :func:`fine_sigmas` (geometric steps of 2 % from 1e-4 to 1, plus linear steps of 0.01).
* :func:`module_criticality` is the faster search: for each a, the largest feasible s (the noisy loss grows
  with s) is bracketed by halving s from ``s_max`` (down to ``s_min``) and the bracket is bisected until its
  width is at most ``s_tol`` times its lower end (a relative tolerance); the bracket's midpoint is reported
  and its width recorded. It agrees with the fine grid (tests, ``benchmarks/criticality_search.py``) with
  O(len(a) (log(s_max / s) + log(1 / s_tol))) loss evaluations instead of O(len(a) len(s)).
* The module-wise rewinding curve (s = 0): the loss and accuracy against a, per module.

Both searches report, for every a, a bracket [lo, hi] of the largest feasible s: lo feasible, hi not (or
hi = lo = s_max when s_max itself is feasible; lo = hi = 0 when even s = 0, no noise, is infeasible; lo = 0 < hi
when s = 0 is feasible but no probed s > 0 was). The boundary estimate is (lo + hi) / 2 and the criticality
a^2 d^2 / s^2 at it; ``criticality_low`` / ``criticality_high`` are its values at hi / lo, bounds on it as long
as the noisy loss grows with s. A module whose parameters did not move (d = 0) has criticality 0 and is flagged
``degenerate``: its 0 says nothing about the module.

Multi-label targets (labels (N, L), see :mod:`transferscope.metrics`): L is the binary cross-entropy per label
averaged over an example's known labels (:func:`transferscope.task.loss`), and the rewinding curve's accuracy
is the mean AUC over labels (``CriticalityResult.metric``).

Configured layers without parameters of their own (``model.layers`` naming ReLUs or poolings) cannot be moved:
the modules holding the parameters are measured instead, with a warning, and the result names both
(``layers_without_parameters``, ``note``).

Neither function changes the model it is given.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from .. import task
from ..data import Split
from ..devices import cpu_sample, model_device
from ..metrics import ACC, AUC, is_multilabel, mean_auc
from ..models import to_input
from ..vocab.results import CriticalityResult

__all__ = ["CriticalityResult", "module_criticality", "criticality_grid", "fine_sigmas", "rewind_curve"]

log = logging.getLogger(__name__)


class _Evaluator:
    """Training loss of a working copy with one module moved to theta^a plus N(0, s^2) noise."""

    def __init__(self, model: nn.Module, initial: dict[str, torch.Tensor], data: Split, n_examples: int,
                 samples: int, seed: int, batch_size: int = 500) -> None:
        self.model = copy.deepcopy(model).eval()
        self.final = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        dev = model_device(self.model)
        self.initial = {n: v.to(dev) for n, v in initial.items()}
        sub = cpu_sample(data, n_examples, seed)  # balanced over classes (splits are stored class by class)
        self.x = to_input(sub.x.to(dev))
        self.y = sub.y.to(dev)
        self.multilabel = is_multilabel(self.y)
        self.batch_size = batch_size
        module_of = getattr(model, "module_of", lambda n: n.rsplit(".", 1)[0])
        self.groups: dict[str, list[str]] = {}
        for n in self.final:
            if n in initial and initial[n].shape == self.final[n].shape:
                self.groups.setdefault(module_of(n), []).append(n)
        g = torch.Generator().manual_seed(seed)
        # unit-variance draws, scaled by s at each point: the same noise everywhere (common random numbers)
        # drawn on the CPU (the same numbers on every device), then moved
        self.noise = {n: [torch.randn(self.final[n].shape, generator=g, device="cpu").to(dev) for _ in range(samples)]
                      for n in self.final}
        self.samples = samples

    @torch.no_grad()
    def loss_acc(self, score: bool = True) -> tuple[float, float]:
        """The mean training loss and the accuracy (multi-label: the mean AUC; NaN with ``score=False``, for the
        noisy probes, which read the loss only) of the model as it stands."""
        total, correct, logits = 0.0, 0, []
        for i in range(0, len(self.y), self.batch_size):
            out, y = self.model(self.x[i : i + self.batch_size]), self.y[i : i + self.batch_size]
            total += task.loss(out, y, reduction="sum").item()  # cross-entropy, or the masked BCE
            if not self.multilabel:
                correct += (out.argmax(1) == y).sum().item()
            elif score:
                logits.append(out.float().cpu())
        if not self.multilabel:
            return total / len(self.y), correct / len(self.y)
        return total / len(self.y), mean_auc(torch.cat(logits).numpy(), self.y.cpu().numpy()) if score else math.nan

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
            return self.loss_acc(score=False)[0]
        vals = []
        for k in range(self.samples):
            self.set(module, a, s, k)
            vals.append(self.loss_acc(score=False)[0])
        return float(np.mean(vals))

    def distance(self, module: str) -> float:
        return math.sqrt(sum((self.final[n] - self.initial[n]).double().pow(2).sum().item() for n in self.groups[module]))


def _layers_without_parameters(model: nn.Module, groups: dict[str, list[str]]) -> list[str]:
    """The configured layers (``model.layers`` of a :class:`~transferscope.models.Hooked`, config ``model.layers``)
    that no parameter belongs to (a ReLU, a pooling): criticality cannot move them, so their parameters' modules
    are measured instead. Only where those layers are the model's units (``layer_names()`` = layers + head): a
    built-in model wrapped for its input normalisation keeps its own modules."""
    layers = getattr(model, "layers", None)
    if not layers or not hasattr(model, "layer_names") or list(model.layer_names()) != [*layers, "head"]:
        return []
    return [n for n in layers if n not in groups]


def _layer_note(model: nn.Module, empty: list[str], used: list[str]) -> str:
    """Why the modules measured are not the configured layers, naming both (empty without such layers)."""
    if not empty:
        return ""
    net = getattr(model, "net", model)

    def kind(n: str) -> str:
        try:
            return f"{n} ({type(net.get_submodule(n)).__name__})"
        except AttributeError:
            return n

    return (f"model.layers {', '.join(map(kind, empty))} have no parameters of their own, so criticality cannot move "
            f"them; it was measured on the modules holding the parameters instead: {', '.join(used)}")


def _prepare(model, initial, data, modules, n_examples, samples, seed, tolerance):
    ev = _Evaluator(model, initial, data, n_examples, samples, seed)
    names = list(modules) if modules is not None else list(ev.groups)
    unknown = [m for m in names if m not in ev.groups]
    if unknown:
        raise ValueError(f"criticality: unknown module {unknown[0]!r}; modules are {', '.join(ev.groups)}")
    empty = _layers_without_parameters(model, ev.groups)
    note = _layer_note(model, empty, names)
    if note:
        log.warning("criticality: %s", note)
    ev.set(names[0], 1.0)  # every module at its final value: the reference loss
    final_loss, _ = ev.loss_acc()
    return ev, names, final_loss, (1 + tolerance) * final_loss, empty, note


def _rewind(ev: _Evaluator, module: str, alphas: Sequence[float]) -> tuple[list[float], list[float]]:
    losses, accs = [], []
    for a in alphas:
        ev.set(module, a)
        l, acc = ev.loss_acc()
        losses.append(l)
        accs.append(acc)
    return losses, accs


def fine_sigmas(s_max: float = 1.0, s_min: float = 1e-4, rel_step: float = 0.02, linear_steps: int = 100) -> np.ndarray:
    """The default noise scales of the brute-force grid: a geometric grid from ``s_min`` to ``s_max`` with
    steps of ``rel_step`` (relative), joined with ``linear_steps`` even steps up to ``s_max`` (sorted, unique).
    With the defaults (565 values) the largest feasible s is bracketed within 2 % of itself down to 1e-4."""
    n = int(math.ceil(math.log(s_max / s_min) / math.log1p(rel_step))) + 1
    geo = np.geomspace(s_min, s_max, n)
    lin = np.linspace(0, s_max, linear_steps + 1)[1:]
    return np.unique(np.round(np.concatenate([geo, lin]), 15))


def _per_module(ev: _Evaluator, names: list[str], alphas: Sequence[float], search, meta: tuple) -> CriticalityResult:
    """For every module: ``search(module, a)`` -> the bracket (lo, hi) of the largest feasible s at a, then the
    criticality min over a of a^2 d^2 / s^2 at the bracket's midpoint (0 where a = 0 or d = 0 is feasible),
    its bounds at hi and lo, and the rewinding curve."""
    out: dict[str, list] = {k: [] for k in ("crit", "a", "s", "lo", "hi", "clo", "chi", "dist", "rew_l", "rew_a",
                                            "bound", "width", "degenerate")}
    for m in names:
        d = ev.distance(m)
        value, c_lo, c_hi = math.inf, math.inf, math.inf
        arg = (math.nan, math.nan, math.nan, math.nan)
        row, wrow = [], []
        for a in alphas:
            lo, hi = search(m, a)
            s = 0.5 * (lo + hi)
            row.append(s)
            wrow.append(hi - lo)
            if hi <= 0:
                continue  # infeasible even without noise
            trivial = a == 0 or d == 0
            num = a * a * d * d
            cand = 0.0 if trivial else num / (s * s)
            c_lo = min(c_lo, 0.0 if trivial else num / (hi * hi))
            c_hi = min(c_hi, 0.0 if trivial else (num / (lo * lo) if lo > 0 else math.inf))
            if cand < value:
                value, arg = cand, (float(a), s, lo, hi)
        rl, ra = _rewind(ev, m, alphas)
        for k, v in (("crit", value), ("a", arg[0]), ("s", arg[1]), ("lo", arg[2]), ("hi", arg[3]), ("clo", c_lo),
                     ("chi", c_hi), ("dist", d), ("rew_l", rl), ("rew_a", ra), ("bound", row), ("width", wrow),
                     ("degenerate", d == 0)):
            out[k].append(v)
    eps, final_loss, tolerance, samples, seed, method, args, empty, note = meta
    if ev.multilabel:
        args = {**args, "loss": "bce"}
    return CriticalityResult(
        names, out["crit"], out["a"], out["s"], out["dist"], list(map(float, alphas)), out["rew_l"], out["rew_a"],
        out["bound"], eps, final_loss, tolerance, samples, seed, method, boundary_width=out["width"],
        best_s_low=out["lo"], best_s_high=out["hi"], criticality_low=out["clo"], criticality_high=out["chi"],
        degenerate=out["degenerate"], args=args, metric=AUC if ev.multilabel else ACC,
        layers_without_parameters=empty, note=note)


def criticality_grid(model: nn.Module, initial: dict[str, torch.Tensor], data: Split, *,
                     alphas: Sequence[float] = tuple(np.linspace(0, 1, 11)), sigmas: Sequence[float] | None = None,
                     modules: Sequence[str] | None = None, n_examples: int = 1000, samples: int = 4,
                     tolerance: float = 0.1, seed: int = 0) -> CriticalityResult:
    """Brute force: the loss at every (a, s) of the grid; the minimum of a^2 d^2 / s^2 over feasible points.

    At each a the bracket of the largest feasible s is [the largest feasible grid value, the next grid value]
    (the largest grid value itself when it is feasible; (0, smallest grid value) when none is but s = 0 is).

    Args:
        model: the trained model (theta^F); not changed.
        initial: theta^0 as a state dict (P for a P-T model, RI for an RI-T model); parameters whose shape
            differs (a new head) are not moved.
        data: training data (``n_examples`` of it, balanced over classes: ``data.sample(n_examples, seed)``).
        sigmas: the noise scales s > 0 of the grid; default :func:`fine_sigmas` () (565 values: slow, it is
            the reference).
    """
    sig = np.asarray(fine_sigmas() if sigmas is None else sigmas, dtype=float)
    sig = np.unique(sig[sig > 0])
    ev, names, final_loss, eps, empty, note = _prepare(model, initial, data, modules, n_examples, samples, seed,
                                                       tolerance)

    def search(m: str, a: float) -> tuple[float, float]:
        feasible = [j for j, s in enumerate(sig) if ev.noisy_loss(m, a, float(s)) <= eps]
        if feasible:
            j = feasible[-1]
            return float(sig[j]), float(sig[min(j + 1, len(sig) - 1)])
        return (0.0, float(sig[0])) if ev.noisy_loss(m, a, 0.0) <= eps else (0.0, 0.0)

    args = {"alphas": [float(a) for a in alphas], "sigmas": [float(s) for s in sig], "modules": names,
            "n_examples": n_examples}
    meta = (eps, final_loss, tolerance, samples, seed, "grid", args, empty, note)
    return _per_module(ev, names, alphas, search, meta)


def _bracket(feasible, s_max: float, s_min: float, s_tol: float) -> tuple[float, float]:
    """(lo, hi) around the largest s in (0, s_max] with ``feasible(s)``, assuming feasibility only gets lost as
    s grows: lo feasible (or 0), hi infeasible (or s_max = lo), hi - lo <= s_tol lo once lo > 0."""
    if feasible(s_max):
        return s_max, s_max
    if not feasible(0.0):
        return 0.0, 0.0  # infeasible at this a even without noise
    hi, lo = s_max, 0.0
    while hi > s_min:  # halve s until it is feasible: a small feasible s is found, not reported as 0
        s = 0.5 * hi
        if feasible(s):
            lo = s
            break
        hi = s
    if lo == 0.0:
        return 0.0, hi  # feasible at s = 0, at no probed s >= s_min
    while hi - lo > s_tol * lo:
        mid = 0.5 * (lo + hi)
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def module_criticality(model: nn.Module, initial: dict[str, torch.Tensor], data: Split, *,
                       alphas: Sequence[float] = tuple(np.linspace(0, 1, 11)), s_max: float = 1.0, s_tol: float = 0.01,
                       s_min: float = 1e-6, modules: Sequence[str] | None = None, n_examples: int = 1000,
                       samples: int = 4, tolerance: float = 0.1, seed: int = 0) -> CriticalityResult:
    """Criticality per module by bracketing and bisection on s for each a (see the module docstring). Arguments
    as :func:`criticality_grid`; ``s_max`` bounds the noise scale searched, ``s_min`` is the floor of the
    downward probing, and ``s_tol`` the bisection's RELATIVE tolerance: it stops when the bracket [lo, hi] has
    hi - lo <= s_tol lo, so the midpoint is within s_tol / 2 of the boundary and the criticality within about
    s_tol of its value there."""
    if not (s_max > 0 and 0 < s_min < s_max and s_tol > 0):
        raise ValueError(f"module_criticality: need 0 < s_min < s_max and s_tol > 0, got s_min={s_min}, "
                         f"s_max={s_max}, s_tol={s_tol}")
    ev, names, final_loss, eps, empty, note = _prepare(model, initial, data, modules, n_examples, samples, seed,
                                                       tolerance)

    def search(m: str, a: float) -> tuple[float, float]:
        return _bracket(lambda s: ev.noisy_loss(m, a, s) <= eps, s_max, s_min, s_tol)

    args = {"alphas": [float(a) for a in alphas], "s_max": s_max, "s_tol": s_tol, "s_tol_kind": "relative",
            "s_min": s_min, "modules": names, "n_examples": n_examples}
    meta = (eps, final_loss, tolerance, samples, seed, "bisection", args, empty, note)
    return _per_module(ev, names, alphas, search, meta)


def rewind_curve(model: nn.Module, initial: dict[str, torch.Tensor], data: Split, *,
                 alphas: Sequence[float] = tuple(np.linspace(0, 1, 11)), n_examples: int = 1000) -> dict[str, list[float]]:
    """Loss against a per module with no noise (s = 0): the module-wise rewinding curve."""
    ev = _Evaluator(model, initial, data, n_examples, 0, 0)
    return {m: _rewind(ev, m, alphas)[0] for m in ev.groups}
