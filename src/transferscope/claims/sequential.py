"""Deciding in rounds: the error rate spent over repeated looks, and the seeds each round adds.

A study that decides in rounds (``transferscope run --until-decided``, a ``[decide]`` table) judges its claims
after each round of runs (a *look*) and adds seeds where undecided effects need them. Looking again at growing data
with the fixed-design rule would raise the chance of a wrong decisive outcome above its 5% (optional stopping). The
rule here is fixed before any result, by the design (``looks``, ``spending``):

* **Levels per look.** Look k of K runs the one decision rule of :func:`~.base.decide` (Holm's correction over the
  whole family, both directions) at a one-sided level ``alpha_k``, and the levels add up to the fixed design's
  :data:`~.stats.ALPHA`: ``sum_k alpha_k = 0.025``. By the union bound, whatever the correlation between looks,
  the chance of any wrong decisive outcome at any look is at most ``sum_k 2 alpha_k = 5%``. The levels follow a
  spending function of the look's place ``t = k / K`` (:func:`spending_levels`): ``equal`` (a Bonferroni split,
  ``alpha t``), ``pocock`` (``alpha ln(1 + (e - 1) t)``, Lan and DeMets' Pocock-type function, which spends more
  early) or ``obrien-fleming`` (``2 - 2 Phi(z_{1 - alpha / 2} / sqrt(t))``, which spends little early). Spending by
  the look's place, not by the information it holds, keeps the union bound exact whatever seeds a look adds.
* **Decided stays decided.** An effect decisive at a look keeps that outcome (no more seeds are added for it), and
  still takes part in every later look's correction, so that each look's family is the whole family.
* **Seeds where they are needed** (:func:`plan_seeds`). After a look, each undecided effect whose unit is the seed
  has a projection: the seeds per arm at which its interval would clear its bound at the next look's level, at the
  observed effect and spread (:func:`~.stats.seeds_needed`). Those within ``max_seeds`` are picked, the nearest
  first, and each cell of runs they read grows to the largest projection among them. Which effects grow depends
  on the data; that the error rate still holds is shown by simulation with this code (:mod:`.simulate`,
  ``benchmarks/decide_error_rates.py``).

This module imports no torch and knows nothing of runs: the study layer turns cells into runs and seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from scipy import special

from ..vocab.arms import Cell
from . import stats
from .base import Effect, Verdict, effect_key, gap, seeds_to_decide
from .stats import FAILS, HOLDS, INCONCLUSIVE, Estimate

__all__ = ["SPENDINGS", "spending_levels", "Pick", "SeedPlan", "plan_seeds", "projected_seeds", "settled",
           "effects_by_key", "undecided"]

SPENDINGS = ("equal", "pocock", "obrien-fleming")
"""The spending functions a design may name (see the module's docstring)."""


def spending_levels(looks: int, spending: str = "equal", alpha: float = stats.ALPHA) -> tuple[float, ...]:
    """The one-sided level each of ``looks`` looks spends, by the spending function ``spending`` of the look's place
    t = k / K; they add up to ``alpha`` (the last look spends what is left)."""
    if looks < 1:
        raise ValueError(f"looks: expected at least 1, got {looks}")
    if spending not in SPENDINGS:
        raise ValueError(f"spending: expected one of {', '.join(SPENDINGS)}, got {spending!r}")
    ts = [k / looks for k in range(1, looks + 1)]
    if spending == "equal":
        cum = [alpha * t for t in ts]
    elif spending == "pocock":
        cum = [alpha * math.log1p((math.e - 1) * t) for t in ts]
    else:
        z = float(special.ndtri(1 - alpha / 2))
        cum = [2 * (1 - float(special.ndtr(z / math.sqrt(t)))) for t in ts]
    cum[-1] = alpha  # exact at t = 1 for every function; no rounding left over
    return tuple(b - a for a, b in zip([0.0, *cum[:-1]], cum, strict=True))


def effects_by_key(vs: Sequence[Verdict]) -> dict[tuple[str, str, str], Effect]:
    """Every effect of a look by :func:`~.base.effect_key`: what :func:`~.base.decide` reads as ``earlier``."""
    return {effect_key(v.claim, e): e for v in vs for e in v.effects}


def settled(vs: Sequence[Verdict]) -> int:
    """How many effects are decisive (either way)."""
    return sum(e.outcome in (HOLDS, FAILS) for v in vs for e in v.effects)


def undecided(vs: Sequence[Verdict]) -> list[tuple[str, Effect]]:
    """(claim, effect) of every inconclusive effect."""
    return [(v.claim, e) for v in vs for e in v.effects if e.outcome == INCONCLUSIVE]


def projected_seeds(e: Effect, next_alpha: float, alpha: float, max_seeds: int = 1000) -> int | None:
    """Seeds per arm at which ``e``'s interval would clear its bound at the next look, at the observed effect and
    spread: its Holm threshold of this look scaled to the next look's level (``next_alpha`` / ``alpha``), two-sided
    on its own scale (the Bonferroni factor of its level). None: not within ``max_seeds``, or it cannot be told
    (no spread, an effect whose unit is not the seed)."""
    if not (e.cells and math.isfinite(e.value) and math.isfinite(e.se) and e.n >= 1):
        return None
    a = (e.holm_alpha if math.isfinite(e.holm_alpha) else alpha) * next_alpha / alpha
    df = e.df if math.isfinite(e.df) else float(e.n - 1)
    return seeds_to_decide(Estimate(e.value, e.se, df, e.n, ""), gap(e.value, e.side, e.bound, e.margin), a, e.level,
                           max_seeds)


@dataclass(frozen=True)
class Pick:
    """An undecided effect and what a round would do for it."""

    claim: str
    effect: Effect
    seeds: int | None
    """Its projection (None: out of reach or not a seed question)."""
    why: str


@dataclass
class SeedPlan:
    """What the next round adds: the seeds each cell grows to, and the effects it is for (``chosen``); the
    undecided effects it leaves (``out_of_reach``: their projection exceeds the limits; ``not_seeds``: more seeds
    do not decide them; ``over_budget``: within the seed limit but not within the time left)."""

    cells: dict[Cell, int] = field(default_factory=dict)
    chosen: list[Pick] = field(default_factory=list)
    out_of_reach: list[Pick] = field(default_factory=list)
    not_seeds: list[Pick] = field(default_factory=list)
    over_budget: list[Pick] = field(default_factory=list)
    cost: float = 0.0
    """What ``cost`` said of :attr:`cells` (seconds, for the study layer)."""

    def added(self, have: Mapping[Cell, int]) -> int:
        """Seeds added over every cell."""
        return sum(max(0, n - have.get(c, 0)) for c, n in self.cells.items())


def plan_seeds(vs: Sequence[Verdict], have: Mapping[Cell, int], *, max_seeds: int, alpha: float, next_alpha: float,
               cost: Callable[[Mapping[Cell, int]], float] | None = None, budget: float = math.inf) -> SeedPlan:
    """The seeds of the next round, from the undecided effects of this look (``vs``), judged at ``alpha``.

    ``have``: the seeds each cell has now. An effect is picked when its projection (:func:`projected_seeds` at
    ``next_alpha``) is at most ``max_seeds`` and above what its cells have; the nearest projection first, each taken
    while ``cost`` (of the cells grown so far) stays within ``budget``. Each cell an effect reads grows to the
    largest projection among the effects picked that read it, never beyond ``max_seeds``."""
    plan = SeedPlan()
    cands: list[Pick] = []
    for claim, e in undecided(vs):
        if not math.isfinite(e.value):
            plan.out_of_reach.append(Pick(claim, e, None, f"it could not be computed: {e.why}"))
            continue
        if not e.cells:
            plan.not_seeds.append(Pick(claim, e, None, f"its unit is the {e.counted or 'cell'}, not the seed: more "
                                                       "seeds do not decide it (add targets or block sizes)"))
            continue
        need = projected_seeds(e, next_alpha, alpha, max_seeds)
        if need is None:
            why = ("its spread is unknown" if not math.isfinite(e.se) else
                   f"more than --max-seeds {max_seeds} seeds per arm would be needed at this effect and spread")
            plan.out_of_reach.append(Pick(claim, e, None, why))
            continue
        need = max(need, *(have.get(c, 0) + 1 for c in e.cells))  # a round adds at least one seed where it grows
        if need > max_seeds:
            plan.out_of_reach.append(Pick(claim, e, None, f"its cells already have {max_seeds} seeds (--max-seeds)"))
            continue
        cands.append(Pick(claim, e, need, f"about {need} seeds per arm would decide it at this effect and spread"))
    cands.sort(key=lambda p: (p.seeds, p.claim, p.effect.target, p.effect.name))
    for p in cands:
        grown = dict(plan.cells)
        for c in p.effect.cells:
            grown[c] = max(grown.get(c, have.get(c, 0)), p.seeds or 0)
        c_new = cost(grown) if cost is not None else 0.0
        if c_new > budget:
            plan.over_budget.append(Pick(p.claim, p.effect, p.seeds, p.why + "; not within the time left"))
            continue
        plan.cells, plan.cost = grown, c_new
        plan.chosen.append(p)
    return plan

