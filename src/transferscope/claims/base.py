"""Claims, effects and verdicts.

A :class:`Claim` names the typed evidence it needs and has a judge that turns that evidence into
:class:`Effect` s per target: named statistics with their interval, the side of the bound the claim is on, n
and what was counted. :func:`decide` applies the one decision rule of :mod:`.stats` over the whole family
(claims x targets x effects, Holm before anything is called "does not hold") and returns a :class:`Verdict`
per claim. No judge reads dict keys: evidence is :class:`~transferscope.claims.evidence.Evidence`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import stats
from .stats import FAILS, HOLDS, INCONCLUSIVE, MIN_SEEDS, NOT_MEASURED, Estimate

__all__ = ["Effect", "TargetVerdict", "Verdict", "Claim", "Measure", "missing", "decide", "ABOVE", "BELOW", "WITHIN",
           "ALL"]

ABOVE, BELOW, WITHIN = "above", "below", "within"
"""The claim's side of its bound: the statistic is above it, below it, or within +-margin of it (sameness)."""
ALL = "all targets"
"""The 'target' of an effect that is about the targets together (an ordering, a rank correlation)."""


@dataclass(frozen=True)
class Measure:
    """What a judge hands to :func:`decide`: one statistic of one target, not yet given an outcome."""

    target: str
    name: str
    unit: str
    estimate: Estimate
    side: str
    counted: str
    bound: float = 0.0
    margin: float = 0.0
    min_n: int = MIN_SEEDS
    note: str = ""
    level: float = stats.LEVEL
    """Confidence level of this effect's interval (higher where a judge tests several effects of which any one may
    hold: a Bonferroni correction)."""
    unit_n: str = "seeds"
    """What n counts (the statistical unit)."""


def missing(target: str, name: str, unit: str, side: str, why: str) -> Measure:
    """A part of a claim that could not be measured on a target: it keeps the target from holding (inconclusive)."""
    nan = Estimate(math.nan, math.nan, math.nan, 0, "not measured")
    return Measure(target, name, unit, nan, side, "", note=why)


@dataclass(frozen=True)
class Effect:
    """A named statistic with its interval, the claim's side, and the outcome the decision rule gave it."""

    target: str
    name: str
    unit: str
    value: float
    low: float
    high: float
    level: float
    n: int
    counted: str
    method: str
    side: str
    bound: float
    margin: float
    p_against: float
    """One-sided p-value of the effect lying on the other side of the claim (Holm-corrected before use)."""
    outcome: str
    why: str
    seeds_needed: int | None = None
    """For an inconclusive effect: roughly how many seeds would decide it at the observed effect and spread."""

    @property
    def claim_side(self) -> str:
        if self.side == WITHIN:
            return f"within {self.bound:g} +- {self.margin:g}"
        return f"{'>' if self.side == ABOVE else '<'} {self.bound:g}"


@dataclass(frozen=True)
class TargetVerdict:
    target: str
    outcome: str
    effects: tuple[Effect, ...]
    why: str


@dataclass(frozen=True)
class Verdict:
    """The answer to one claim: overall and per target, with the effects behind it and one plain sentence."""

    claim: str
    statement: str
    outcome: str
    targets: tuple[TargetVerdict, ...]
    why: str
    conditional_on: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for t, td in zip(self.targets, d["targets"], strict=True):
            for e, ed in zip(t.effects, td["effects"], strict=True):
                ed["claim_side"] = e.claim_side
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """The inverse of :meth:`to_dict`, also after :mod:`transferscope.jsonio` (and of files written before it,
        whose NaN is null)."""
        names = {f.name for f in dataclasses.fields(Effect)}
        floats = {"value", "low", "high", "level", "bound", "margin", "p_against"}

        def effect(e: dict) -> Effect:
            return Effect(**{k: (math.nan if v is None and k in floats else v) for k, v in e.items() if k in names})

        targets = tuple(TargetVerdict(t["target"], t["outcome"], tuple(effect(e) for e in t["effects"]), t["why"])
                        for t in d["targets"])
        return cls(d["claim"], d["statement"], d["outcome"], targets, d["why"], d.get("conditional_on", ""))

    @property
    def effects(self) -> list[Effect]:
        return [e for t in self.targets for e in t.effects]


@dataclass(frozen=True)
class Claim:
    """One claim of SCIENCE.md: its id, statement, the evidence it needs and its judge.

    ``judge(evidence) -> (measures, notes)``: the statistics per target, and per target not measured the
    reason. ``combine``: a target holds when ``all`` its effects hold (does not hold when any does not), or, for
    a claim that something *can* happen, when ``any`` of them holds (does not hold when all do not)."""

    id: str
    statement: str
    needs: tuple[str, ...]
    judge: Callable[[Any], tuple[list[Measure], dict[str, str]]]
    combine: str = "all"
    source: str = ""


def _interval_outcome(m: Measure) -> tuple[float, float, bool, bool, float]:
    """(low, high, on the claim's side, on the other side, one-sided p-value against the claim)."""
    est = m.estimate
    lo, hi = est.interval(m.level)
    if m.side == WITHIN:  # two one-sided tests at alpha = (1 - level) / 2 each: the level interval inside the margin
        inside = lo > m.bound - m.margin and hi < m.bound + m.margin
        outside = lo > m.bound + m.margin or hi < m.bound - m.margin
        # outside the margin on either side: two one-sided tests, so twice the smaller p-value
        return lo, hi, inside, outside, min(1.0, 2 * min(est.p_above(m.bound + m.margin), est.p_below(m.bound - m.margin)))
    if m.side == ABOVE:
        return lo, hi, lo > m.bound, hi < m.bound, est.p_below(m.bound)
    return lo, hi, hi < m.bound, lo > m.bound, est.p_above(m.bound)


def _gap(m: Measure) -> float:
    """How far the estimate sits from the bound its interval must clear to be decisive (for a claim of sameness:
    from the nearer edge of the margin, inside or outside it)."""
    v = m.estimate.value
    if m.side == WITHIN:
        return abs(m.margin - abs(v - m.bound))
    return abs(v - m.bound)


def _sentence(m: Measure, outcome: str, lo: float, hi: float, other_side: bool, n_needed: int | None) -> str:
    est = m.estimate
    span = f"{est.shown:+.3g} [{lo:+.3g}, {hi:+.3g}]"
    side = (f"within +-{m.margin:g} of {m.bound:g}" if m.side == WITHIN
            else f"{'above' if m.side == ABOVE else 'below'} {m.bound:g}")
    if not math.isfinite(est.value):
        return f"{m.name} could not be computed{': ' + m.note if m.note else ''}."
    if est.n < m.min_n:
        return (f"{m.name} is {est.shown:+.3g} from n = {est.n} {m.unit_n}; at least {m.min_n} are needed for an "
                f"interval, so it is inconclusive by rule.")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (f"{m.name} is {est.shown:+.3g} from n = {est.n} {m.unit_n}, but no interval could be computed (the "
                f"spread over {m.unit_n} is undefined: some {m.unit_n} lack a value), so it is inconclusive.")
    if outcome == HOLDS:
        return f"{m.name} is {span}: the interval lies {side}, as the claim says."
    if outcome == FAILS:
        return f"{m.name} is {span}: the interval lies on the other side of the claim ({side} was expected)."
    more = f"; about {n_needed} {m.unit_n} would decide it at this effect and spread" if n_needed else ""
    why = ("it lies on the other side, but not after Holm's correction over the family (claims x targets)"
           if other_side else f"the interval does not lie {side}")
    return f"{m.name} is {span}: {why}{more}."


def decide(claims: Sequence[Claim], evidence: Any, conditional_on: str = "") -> list[Verdict]:
    """Judge every claim on ``evidence`` with one rule, Holm's correction over the whole family."""
    judged = []
    for c in claims:
        measures, notes = c.judge(evidence)
        clash = {m.target for m in measures} & set(notes)
        if clash:  # a developer error: a target is either measured (some parts may be missing) or not at all
            raise ValueError(f"claim {c.id}: targets both measured and not measured: {sorted(clash)}")
        judged.append((c, measures, notes))
    flat = [(ci, m, *_interval_outcome(m)) for ci, (_, ms, _) in enumerate(judged) for m in ms]
    # "does not hold" needs the interval on the other side AND survival of Holm over the family (claims x targets)
    eligible = [m.estimate.n >= m.min_n for _, m, *_ in flat]
    rejected = stats.holm([row[6] if ok else math.nan for row, ok in zip(flat, eligible, strict=True)], stats.ALPHA)
    out = []
    k = 0
    for c, measures, notes in judged:
        effects_by_target: dict[str, list[Effect]] = {}
        for m in measures:
            _, _, lo, hi, on_side, other_side, p = flat[k]
            decisive = eligible[k]
            if decisive and on_side:
                outcome = HOLDS
            elif decisive and other_side and rejected[k]:
                outcome = FAILS
            else:
                outcome = INCONCLUSIVE
            needed = None
            if outcome == INCONCLUSIVE and math.isfinite(m.estimate.value):
                needed = stats.seeds_needed(m.estimate, _gap(m), m.level)
            eff = Effect(m.target, m.name, m.unit, m.estimate.shown, lo, hi, m.level, m.estimate.n, m.counted,
                         m.estimate.method + (f"; {m.note}" if m.note else ""), m.side, m.bound, m.margin, p, outcome,
                         _sentence(m, outcome, lo, hi, other_side and decisive, needed), needed)
            effects_by_target.setdefault(m.target, []).append(eff)
            k += 1
        targets = []
        for t, effs in effects_by_target.items():
            outs = [e.outcome for e in effs]
            if c.combine == "any":
                o = HOLDS if HOLDS in outs else FAILS if all(x == FAILS for x in outs) else INCONCLUSIVE
            else:
                o = FAILS if FAILS in outs else HOLDS if all(x == HOLDS for x in outs) else INCONCLUSIVE
            decisive = [e for e in effs if e.outcome == o] or effs
            targets.append(TargetVerdict(t, o, tuple(effs), " ".join(e.why for e in decisive)))
        for t, reason in notes.items():
            targets.append(TargetVerdict(t, NOT_MEASURED, (), reason))
        out.append(_verdict(c, tuple(targets), conditional_on))
    return out


def _verdict(c: Claim, targets: tuple[TargetVerdict, ...], conditional_on: str) -> Verdict:
    measured = [t for t in targets if t.outcome != NOT_MEASURED]
    missing = [t.target for t in targets if t.outcome == NOT_MEASURED]
    if not measured:
        why = "; ".join(f"{t.target}: {t.why}" for t in targets) or "nothing to judge it on"
        return Verdict(c.id, c.statement, NOT_MEASURED, targets, f"Not measured: {why}.", conditional_on)
    outs = [t.outcome for t in measured]
    failed = [t.target for t in measured if t.outcome == FAILS]
    held = [t.target for t in measured if t.outcome == HOLDS]
    if failed:
        o, why = FAILS, f"It does not hold on {', '.join(failed)}"
    elif all(x == HOLDS for x in outs):
        o, why = HOLDS, f"It holds on {'every measured target' if len(held) > 1 else held[0]} ({', '.join(held)})"
    else:
        undecided = [t.target for t in measured if t.outcome == INCONCLUSIVE]
        o = INCONCLUSIVE
        why = f"Inconclusive on {', '.join(undecided)}" + (f"; it holds on {', '.join(held)}" if held else "")
    if missing:
        why += f"; not measured on {', '.join(missing)}"
    return Verdict(c.id, c.statement, o, targets, why + ".", conditional_on)

