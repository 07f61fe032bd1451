"""Error rates of the decision rule, by simulation with the project's own decision code (:func:`.decide`).

A simulated study is a family of effects whose true value sits exactly on the claim's bound (for a claim of
sameness: on the edge of its margin), so that *every* decisive outcome, either way, is wrong. Each effect is
computed from per-seed draws with the estimators the study uses: a Welch contrast of two arms (P-T minus RI-T), a
one-sample mean, a jackknife over pairs of seeds, and an equivalence test within a margin. The family-wise rate of
a study with at least one wrong decisive outcome is what the rule promises to keep under 5%.

:func:`asymmetric_outcomes` is the rule the project used before (an uncorrected 95% interval for "holds", Holm only
before "does not hold"), kept here only so that the two can be compared on the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import binomtest

from . import stats
from .base import ABOVE, BELOW, WITHIN, Claim, Measure, Verdict, decide
from .stats import FAILS, HOLDS

__all__ = ["KINDS", "null_family", "simulate", "asymmetric_outcomes", "Rates", "simulate_sequential", "SequentialRates"]

KINDS = ("welch", "mean", "jackknife", "within")
"""The kinds of effect in a simulated family: how each is estimated from its seeds."""
MARGIN = 0.02
"""The margin of the simulated claims of sameness (that of N7 and N9)."""


def _measure(kind: str, i: int, rng: np.random.Generator, n: int, sd: float, shift: float) -> Measure:
    side = (ABOVE, BELOW)[i % 2]
    sign = 1.0 if side == ABOVE else -1.0  # a true effect ``shift`` (in sd) lies on the claim's side
    if kind == "welch":
        a, b = rng.normal(sign * shift * sd, sd, n), rng.normal(0.0, sd, n)
        est = stats.contrast_interval([(1.0, a.tolist()), (-1.0, b.tolist())])
    elif kind == "mean":
        est = stats.mean_interval(rng.normal(sign * shift * sd, sd, n).tolist())
    elif kind == "jackknife":  # a pair statistic: each pair shares its seeds' effects
        seeds = list(range(n))
        u = rng.normal(0.0, sd, n)
        pairs = {(x, y): sign * shift * sd + (u[x] + u[y]) / 2 + rng.normal(0.0, sd / 4)
                 for x, y in combinations(seeds, 2)}

        def stat(kept: frozenset[int]) -> float:
            v = [p for (x, y), p in pairs.items() if x in kept and y in kept]
            return float(np.mean(v)) if v else math.nan

        est = stats.jackknife_interval(seeds, stat)
    else:  # within: the true value on the margin's edge (shift moves it inside, towards the bound)
        centre = MARGIN * (1 - shift) if shift <= 1 else 0.0
        a, b = rng.normal(centre, sd, n), rng.normal(0.0, sd, n)
        est = stats.contrast_interval([(1.0, a.tolist()), (-1.0, b.tolist())])
        return Measure(f"t{i}", f"{kind} {i}", "unit", est, WITHIN, "seeds", margin=MARGIN)
    return Measure(f"t{i}", f"{kind} {i}", "unit", est, side, "seeds")


def null_family(rng: np.random.Generator, counts: dict[str, int], n_seeds: int, sd: float = 0.03,
                shift: float = 0.0) -> list[Claim]:
    """One simulated study: a claim per kind of effect, ``counts[kind]`` effects each (one target each), from
    ``n_seeds`` seeds per arm with per-seed spread ``sd``. ``shift`` = 0: every true effect on its bound (the
    null); > 0: ``shift`` sd on the claim's side (for claims of sameness, that fraction of the way from the margin's
    edge to the bound; 1 or more: on the bound)."""
    claims = []
    for kind in KINDS:
        ms = [_measure(kind, i, rng, n_seeds, sd, shift) for i in range(counts.get(kind, 0))]
        if ms:
            claims.append(Claim(kind, f"simulated {kind} effects", (kind,), lambda _ev, ms=ms: (ms, {})))
    return claims


def asymmetric_outcomes(vs: Sequence[Verdict]) -> list[str]:
    """The outcome of every effect under the former, asymmetric rule: holds when the interval alone lies on the
    claim's side; does not hold when it lies on the other side and the one-sided p-value survives Holm over the
    family. Read from the effects :func:`decide` recorded (their intervals, n and p-values)."""
    effs = [e for v in vs for e in v.effects]
    ok = [math.isfinite(e.low) and math.isfinite(e.high) and e.n >= stats.MIN_SEEDS for e in effs]
    rejected = stats.holm([e.p_against if k else math.nan for e, k in zip(effs, ok, strict=True)], stats.ALPHA)
    out = []
    for e, k, rej in zip(effs, ok, rejected, strict=True):
        if e.side == WITHIN:
            inside = e.low > e.bound - e.margin and e.high < e.bound + e.margin
            outside = e.low > e.bound + e.margin or e.high < e.bound - e.margin
        else:
            inside = e.low > e.bound if e.side == ABOVE else e.high < e.bound
            outside = e.high < e.bound if e.side == ABOVE else e.low > e.bound
        out.append(HOLDS if k and inside else FAILS if k and outside and rej else "inconclusive")
    return out


class _WrongRate:
    """The share of simulated studies with a wrong decisive outcome (``any_wrong`` of ``studies``): its Monte Carlo
    standard error and its Wilson interval (scipy's). A mixin of the dataclasses below, which hold both."""

    studies: int
    any_wrong: float

    @property
    def se(self) -> float:
        """Monte Carlo standard error of :attr:`any_wrong`."""
        return math.sqrt(max(self.any_wrong * (1 - self.any_wrong), 1e-12) / self.studies)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Wilson score interval of :attr:`any_wrong`."""
        ci = binomtest(round(self.any_wrong * self.studies), self.studies).proportion_ci(level, method="wilson")
        return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Rates(_WrongRate):
    studies: int
    effects: int
    """Effects per study."""
    any_wrong: float
    """Studies with at least one wrong decisive outcome, either way (under the null), as a fraction."""
    any_wrong_holds: float
    any_wrong_fails: float
    decisive_per_study: float
    """Mean decisive outcomes per study (under the null: all wrong; under an effect: the power)."""


def simulate(studies: int, counts: dict[str, int], n_seeds: int, *, seed: int = 0, sd: float = 0.03,
             shift: float = 0.0, rule: str = "holm-both") -> Rates:
    """Run ``studies`` simulated studies through :func:`decide` (``rule`` ``holm-both``, the rule in force) or
    through :func:`asymmetric_outcomes` (``asymmetric``, the former rule), and count their decisive outcomes."""
    rng = np.random.default_rng(seed)
    wrong = wrong_h = wrong_f = 0
    decisive = 0
    m = sum(counts.values())
    for _ in range(studies):
        vs = decide(null_family(rng, counts, n_seeds, sd, shift), None)
        outs = asymmetric_outcomes(vs) if rule == "asymmetric" else [e.outcome for v in vs for e in v.effects]
        h, f = outs.count(HOLDS), outs.count(FAILS)
        wrong += (h + f) > 0
        wrong_h += h > 0
        wrong_f += f > 0
        decisive += h + f
    return Rates(studies, m, wrong / studies, wrong_h / studies, wrong_f / studies, decisive / studies)


# ------------------------------------------------------------------------------------------------ in rounds

@dataclass(frozen=True)
class SequentialRates(_WrongRate):
    """Simulated studies that decide in rounds (:func:`simulate_sequential`)."""

    studies: int
    effects: int
    """Effects per study."""
    any_wrong: float
    """Studies with at least one wrong decisive outcome, as a fraction: either way when the true effects sit on their
    bounds (``shift`` 0), else one on the other side of the true effect."""
    decisive_per_study: float
    """Mean decisive outcomes per study (under the null: all wrong; under an effect: the power, in effects)."""
    seeds_per_cell: float
    """Mean seeds per cell of runs at the end (what the study trained)."""
    looks_per_study: float


def _cells(t: int):
    from ..vocab.arms import PT, RIT, Cell

    name = f"t{t}"
    return {"pt": Cell(PT, name, 28), "rit": Cell(RIT, name, 28), "pt2": Cell(PT, name, 2), "rit2": Cell(RIT, name, 2),
            "basin": Cell(PT, name, 28, 1.0)}


def _effect_cells(kind: str, i: int, c: dict) -> tuple:
    """The cells an effect of ``kind`` (its ``i``-th on the target) reads: Welch contrasts of P-T and RI-T at one
    block size or the other, means of one cell, pair statistics within P-T, sameness of a basin cell with P-T."""
    if kind == "welch":
        return (c["pt"], c["rit"]) if i % 2 == 0 else (c["pt2"], c["rit2"])
    if kind == "mean":
        return (c["pt2"],) if i % 2 == 0 else (c["rit"],)
    if kind == "jackknife":
        return (c["pt"],) if i % 2 == 0 else (c["rit"],)
    return (c["basin"], c["pt"])


def _target_claims(t: int, draws: dict, have: dict, sd: float, shift: float, counts: Mapping[str, int]) -> list[Claim]:
    """The simulated effects of one target, each reading the first ``have[cell]`` seeds of its cells (its own per-seed
    values: each effect measures something else of the same runs). The true values sit on the claim's bound
    (``shift`` 0) or ``shift`` sd on its side (sameness: that fraction of the way inside the margin; a negative
    ``shift``: on the other side)."""
    name = f"t{t}"
    ms: list[Measure] = []
    c = _cells(t)
    for kind in KINDS:
        for i in range(counts.get(kind, 0)):
            cells = _effect_cells(kind, i, c)
            side = (ABOVE, BELOW)[i % 2]
            sign = 1.0 if side == ABOVE else -1.0

            def got(cell, kind=kind, i=i):
                return draws[(kind, i, t, cell)][: have[cell]]

            label = f"{kind} {i}"
            if kind == "welch":
                est = stats.contrast_interval([(1.0, (got(cells[0]) + sign * shift * sd).tolist()),
                                               (-1.0, got(cells[1]).tolist())])
                ms.append(Measure(name, label, "unit", est, side, "seeds", cells=cells))
            elif kind == "mean":
                ms.append(Measure(name, label, "unit", stats.mean_interval((got(cells[0]) + sign * shift * sd).tolist()),
                                  side, "seeds", cells=cells))
            elif kind == "jackknife":  # pairs share their seeds' values
                x = got(cells[0])
                noise = draws[("pairs", i, t)]
                pairs = {(a, b): sign * shift * sd + (x[a] + x[b]) / 2 + noise[a, b]
                         for a, b in combinations(range(len(x)), 2)}

                def stat(kept: frozenset[int], pairs=pairs) -> float:
                    v = [p for (a, b), p in pairs.items() if a in kept and b in kept]
                    return float(np.mean(v)) if v else math.nan

                ms.append(Measure(name, label, "unit", stats.jackknife_interval(range(len(x)), stat), side, "seeds",
                                  cells=cells))
            else:
                centre = MARGIN * (1 - shift) if shift <= 1 else 0.0
                est = stats.contrast_interval([(1.0, (got(cells[0]) + centre).tolist()), (-1.0, got(cells[1]).tolist())])
                ms.append(Measure(name, label, "unit", est, WITHIN, "seeds", margin=MARGIN, cells=cells))
    return [Claim(name, "simulated", ("sim",), lambda _ev, ms=ms: (ms, {}))]


def simulate_sequential(studies: int, targets: int, n_seeds: int, max_seeds: int, looks: int, *,
                        spending: str = "obrien-fleming", levels: Sequence[float] | None = None, seed: int = 0,
                        sd: float = 0.03, shift: float = 0.0,
                        kinds: Sequence[str] | Mapping[str, int] = KINDS) -> SequentialRates:
    """Studies that decide in rounds, each judged and grown by the project's own code: :func:`~.base.decide` at
    each look's level (``spending`` over ``looks``, :func:`~.sequential.spending_levels`; or ``levels`` given, e.g.
    the fixed design's level at every look, to show what spending prevents) and
    :func:`~.sequential.plan_seeds` for the seeds of the next round, from ``n_seeds`` up to ``max_seeds`` per cell.

    ``targets`` targets of five cells each (P-T and RI-T at two block sizes, a basin cell); ``kinds``: the effects
    per target, by kind (a list: one of each). Every effect's seeds are drawn once, up to ``max_seeds`` (the seeds
    a study would train, in order), so a cell grown to n gives each effect that reads it its first n draws, as a
    study reads its first n seeds."""
    from .sequential import effects_by_key, plan_seeds, spending_levels

    counts = dict(kinds) if isinstance(kinds, Mapping) else {k: 1 for k in kinds}
    lv = tuple(levels) if levels is not None else spending_levels(looks, spending)
    if len(lv) != looks:
        raise ValueError(f"levels: expected {looks}, got {len(lv)}")
    rng = np.random.default_rng(seed)
    wrong = decisive = 0
    seeds_used = 0.0
    looks_done = 0
    m = 0
    for _ in range(studies):
        draws: dict = {}
        cells_all = set()
        for t in range(targets):
            c = _cells(t)
            cells_all |= set(c.values())
            for kind in KINDS:
                for i in range(counts.get(kind, 0)):
                    for cell in _effect_cells(kind, i, c):
                        draws[(kind, i, t, cell)] = rng.normal(0.0, sd, max_seeds)
                    if kind == "jackknife":
                        draws[("pairs", i, t)] = rng.normal(0.0, sd / 4, (max_seeds, max_seeds))
        have = {c: n_seeds for c in cells_all}
        earlier = None
        vs: list[Verdict] = []
        for k in range(looks):
            claims = [c for t in range(targets) for c in _target_claims(t, draws, have, sd, shift, counts)]
            vs = decide(claims, None, alpha=lv[k], look=k + 1, earlier=earlier)
            earlier = effects_by_key(vs)
            looks_done += 1
            if k == looks - 1:
                break
            plan = plan_seeds(vs, have, max_seeds=max_seeds, alpha=lv[k], next_alpha=lv[k + 1])
            if not plan.cells:
                break
            have.update(plan.cells)
        effs = [e for v in vs for e in v.effects]
        m = len(effs)
        # wrong: any decisive outcome on the bound; the other side's outcome off it
        wrong_outcomes = (HOLDS, FAILS) if shift == 0 else (FAILS,) if shift > 0 else (HOLDS,)
        bad = [e for e in effs if e.outcome in wrong_outcomes]
        wrong += bool(bad)
        decisive += sum(e.outcome in (HOLDS, FAILS) for e in effs)
        read = {c for e in effs for c in e.cells}
        seeds_used += float(np.mean([have[c] for c in read])) if read else float(n_seeds)
    return SequentialRates(studies, m, wrong / studies, decisive / studies, seeds_used / studies, looks_done / studies)
