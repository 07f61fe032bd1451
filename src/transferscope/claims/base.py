"""Claims, effects and verdicts.

A :class:`Claim` names the typed evidence it needs and has a judge that turns that evidence into
:class:`Effect` s per target: named statistics with their interval, the side of the bound the claim is on, n
and what was counted. :func:`decide` applies the one decision rule of :mod:`.stats` over the whole family
(claims x targets x effects, Holm's correction before anything is called decisive, either way) and returns a
:class:`Verdict` per claim, each per-target outcome with the :class:`~.caveats.Caveat` s of the runs it rests on.
No judge reads dict keys: evidence is :class:`~transferscope.vocab.evidence.Evidence`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..vocab import caveats as cv
from ..vocab.arms import Cell
from ..vocab.caveats import Caveat
from . import stats
from .stats import FAILS, HOLDS, INCONCLUSIVE, MIN_SEEDS, NOT_MEASURED, UNRELIABLE, Estimate

__all__ = ["Effect", "Look", "TargetVerdict", "Verdict", "Claim", "Measure", "missing", "decide", "ABOVE", "BELOW",
           "WITHIN", "ALL", "effect_key", "Cell", "gap", "seeds_to_decide"]

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
    cells: tuple[Cell, ...] = ()
    """The cells of runs (arm, target, block size) whose seeds the statistic reads: where more seeds would narrow
    its interval. Empty when its unit is not the seed (L4 counts (target, block size) cells)."""


def missing(target: str, name: str, unit: str, side: str, why: str) -> Measure:
    """A part of a claim that could not be measured on a target: its effect is not measured (with ``why``), and it
    keeps the target from holding (inconclusive; not measured when no part of the claim is)."""
    nan = Estimate(math.nan, math.nan, math.nan, 0, "not measured")
    return Measure(target, name, unit, nan, side, "", note=why)


@dataclass(frozen=True)
class Look:
    """An effect at one look of a study that decides in rounds: its seeds, the one-sided level the look spent
    (Holm's correction over the family ran at it) and what it showed."""

    look: int
    n: int
    alpha: float
    value: float
    low: float
    high: float
    p_holm: float
    holm_alpha: float
    outcome: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Look:
        return cls(**{f.name: (math.nan if d.get(f.name) is None and f.name not in ("look", "n", "outcome")
                               else d[f.name]) for f in dataclasses.fields(cls)})


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
    """One-sided p-value of the effect lying on the other side of the claim."""
    outcome: str
    why: str
    seeds_needed: int | None = None
    """For an inconclusive effect: roughly how many seeds would decide it at the observed effect and spread, at the
    Holm level it faced."""
    p_for: float = math.nan
    """One-sided p-value of the effect lying on the claim's side (for a claim of sameness: the larger of the two
    one-sided tests' p-values, TOST)."""
    p_holm: float = math.nan
    """The p-value that Holm's correction over the family judged: the smaller of :attr:`p_for` and
    :attr:`p_against`, times the Bonferroni factor of the effect's level ((1 - 0.95) / (1 - level)); NaN when the
    effect could not be decided (too few seeds, no interval)."""
    holm_alpha: float = math.nan
    """The level :attr:`p_holm` was compared with in Holm's step-down order (ALPHA / (m - rank)); decisive only when
    it is at or under it and every smaller p-value of the family was too."""
    cells: tuple[Cell, ...] = ()
    """The cells of runs whose seeds it reads (:attr:`Measure.cells`)."""
    se: float = math.nan
    """The standard error of :attr:`value` (on the scale of its interval; for a correlation, of Fisher's z)."""
    df: float = math.nan
    """The degrees of freedom of its t-interval (inf: normal)."""
    looks: tuple[Look, ...] = ()
    """Each look that judged it, in order; a decisive outcome is that of its first decisive look (a study that
    decides in rounds stops adding seeds for it there). One look in a study of fixed seeds."""

    @property
    def decided_at(self) -> int | None:
        """The look whose outcome it carries, when decisive."""
        return next((k.look for k in self.looks if k.outcome in (HOLDS, FAILS)), None)

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
    caveats: tuple[Caveat, ...] = ()
    """The caveats of the runs this outcome rests on (of the arms the claim reads)."""
    statistical_outcome: str = ""
    """What the statistics alone said, when it differs from :attr:`outcome` (an ``unreliable`` outcome); else ``""``."""

    def shown(self, e: Effect) -> str:
        """The outcome effect ``e`` of this target is cited with: a decisive one that rests on a blocking caveat (runs
        that did not fit their training data, or whose files changed) is ``unreliable``, whatever its target's."""
        blocked = any(c.blocking for c in self.caveats)
        return UNRELIABLE if blocked and e.outcome in (HOLDS, FAILS) else e.outcome


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
            td["caveats"] = [c.to_dict() for c in t.caveats]  # with whether it blocks a decisive outcome
            for e, ed in zip(t.effects, td["effects"], strict=True):
                ed["claim_side"] = e.claim_side
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """The inverse of :meth:`to_dict`, also after :mod:`transferscope.jsonio` (and of files written before it,
        whose NaN is null)."""
        names = {f.name for f in dataclasses.fields(Effect)}
        floats = {"value", "low", "high", "level", "bound", "margin", "p_against", "p_for", "p_holm", "holm_alpha", "se",
                  "df"}

        def effect(e: dict) -> Effect:
            d = {k: (math.nan if v is None and k in floats else v) for k, v in e.items() if k in names}
            d["cells"] = tuple(Cell.from_dict(c) for c in d.get("cells", ()))
            d["looks"] = tuple(Look.from_dict(k) for k in d.get("looks", ()))
            return Effect(**d)

        targets = tuple(TargetVerdict(t["target"], t["outcome"], tuple(effect(e) for e in t["effects"]), t["why"],
                                      tuple(Caveat.from_dict(c) for c in t.get("caveats", ())),
                                      t.get("statistical_outcome", ""))
                        for t in d["targets"])
        return cls(d["claim"], d["statement"], d["outcome"], targets, d["why"], d.get("conditional_on", ""))

    @property
    def effects(self) -> list[Effect]:
        return [e for t in self.targets for e in t.effects]

    @property
    def caveats(self) -> tuple[Caveat, ...]:
        """Every caveat of every target, without repeats."""
        return tuple(dict.fromkeys(c for t in self.targets for c in t.caveats))


@dataclass(frozen=True)
class Claim:
    """One claim of SCIENCE.md: its id, statement, the evidence it needs and its judge.

    ``judge(evidence) -> (measures, notes)``: the statistics per target, and per target not measured the
    reason. ``combine``: a target holds when ``all`` its effects hold (does not hold when any does not), or, for
    a claim that something *can* happen, when ``any`` of them holds (does not hold when all do not). ``arms``: the
    arms whose runs the statistics read (``P-T``, ``RI-T``, ``basin``; ``P``, the pre-trained model itself): their
    caveats go with the verdict."""

    id: str
    statement: str
    needs: tuple[str, ...]
    judge: Callable[[Any], tuple[list[Measure], dict[str, str]]]
    combine: str = "all"
    source: str = ""
    arms: tuple[str, ...] = ("P-T", "RI-T")


def _interval_outcome(m: Measure) -> tuple[float, float, bool, bool, float, float]:
    """(low, high, on the claim's side, on the other side, one-sided p-value against the claim, one-sided p-value
    for it)."""
    est = m.estimate
    lo, hi = est.interval(m.level)
    if m.side == WITHIN:  # two one-sided tests at alpha = (1 - level) / 2 each: the level interval inside the margin
        inside = lo > m.bound - m.margin and hi < m.bound + m.margin
        outside = lo > m.bound + m.margin or hi < m.bound - m.margin
        # inside: both one-sided tests (TOST), so the larger p-value; outside the margin on either side: twice the
        # smaller one
        p_for = max(est.p_above(m.bound - m.margin), est.p_below(m.bound + m.margin))
        return (lo, hi, inside, outside,
                min(1.0, 2 * min(est.p_above(m.bound + m.margin), est.p_below(m.bound - m.margin))), p_for)
    if m.side == ABOVE:
        return lo, hi, lo > m.bound, hi < m.bound, est.p_below(m.bound), est.p_above(m.bound)
    return lo, hi, hi < m.bound, lo > m.bound, est.p_above(m.bound), est.p_below(m.bound)


def gap(value: float, side: str, bound: float, margin: float) -> float:
    """How far an estimate sits from the bound its interval must clear to be decisive (for a claim of sameness:
    from the nearer edge of the margin, inside or outside it)."""
    if side == WITHIN:
        return abs(margin - abs(value - bound))
    return abs(value - bound)


def seeds_to_decide(est: Estimate, gap_: float, holm_alpha: float, level: float, max_seeds: int = 1000) -> int | None:
    """Roughly how many seeds would decide an effect at the observed effect and spread when Holm's correction lets
    it have ``holm_alpha`` (one-sided): the interval at that level, two-sided on the effect's own scale (the
    Bonferroni factor of its ``level``), narrower than ``gap_`` (:func:`.stats.seeds_needed`)."""
    return stats.seeds_needed(est, gap_, 1 - 2 * holm_alpha * (1 - level) / (1 - stats.LEVEL), max_seeds)


def _sentence(m: Measure, outcome: str, lo: float, hi: float, on_side: bool, other_side: bool, n_needed: int | None,
              p: float, alpha: float) -> str:
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
    holm = (f"its p-value {p:.2g} is over the {alpha:.2g} that Holm's correction over the family (claims x targets "
            f"x effects) allows it")
    why = (f"the interval lies {side}, as the claim says, but {holm}" if on_side else
           f"the interval lies on the other side, but {holm}" if other_side else
           f"the interval does not lie {side}")
    return f"{m.name} is {span}: {why}{more}."


def effect_key(claim: str, e: Effect | Measure) -> tuple[str, str, str]:
    """What identifies an effect from one look to the next: its claim, target and name."""
    return (claim, e.target, e.name)


def decide(claims: Sequence[Claim], evidence: Any, conditional_on: str = "",
           caveats: Sequence[Caveat] | None = None, *, alpha: float = stats.ALPHA, look: int = 1,
           earlier: Mapping[tuple[str, str, str], Effect] | None = None) -> list[Verdict]:
    """Judge every claim on ``evidence`` with one rule: Holm's correction over the whole family, in both directions.

    An effect is decisive when its p-value (:attr:`Effect.p_holm`: the smaller one-sided p-value, scaled by the
    Bonferroni factor of its level) survives Holm at ``alpha`` (:data:`stats.ALPHA`, unless a study that decides
    in rounds spends less at this look: :mod:`.sequential`) over every decidable effect of every claim on every
    target; it then holds or does not hold by the side its interval lies on. ``caveats`` (default: the evidence's
    own ``caveats``) go with each per-target outcome whose claim reads their arm; a decisive outcome resting on a
    blocking one is :data:`UNRELIABLE` (see :mod:`.caveats`).

    ``look`` and ``earlier`` (the effects of the previous look, by :func:`effect_key`): an effect decisive at an
    earlier look keeps that outcome (its new look is recorded beside it); every effect still takes part in Holm's
    correction, so that each look's family is the whole family and its error rate is at most ``alpha`` per
    direction."""
    if caveats is None:
        caveats = tuple(getattr(evidence, "caveats", ()) or ())
    judged = []
    for c in claims:
        measures, notes = c.judge(evidence)
        clash = {m.target for m in measures} & set(notes)
        if clash:  # a developer error: a target is either measured (some parts may be missing) or not at all
            raise ValueError(f"claim {c.id}: targets both measured and not measured: {sorted(clash)}")
        judged.append((c, measures, notes))
    flat = [(m, *_interval_outcome(m)) for _, ms, _ in judged for m in ms]
    # one p-value per effect, whichever way it points; the Bonferroni factor of an effect tested at a higher level
    # (one of K checkpoints) keeps its share of the family's error
    eligible = [m.estimate.n >= m.min_n for m, *_ in flat]
    p_holm = [min(1.0, min(p_against, p_for) * (1 - stats.LEVEL) / (1 - m.level)) if ok else math.nan
              for (m, _, _, _, _, p_against, p_for), ok in zip(flat, eligible, strict=True)]
    rejected = stats.holm(p_holm, alpha)
    alphas = stats.holm_thresholds(p_holm, alpha)
    all_targets = [t.name for t in getattr(evidence, "targets", ())]
    out = []
    k = 0
    for c, measures, notes in judged:
        effects_by_target: dict[str, list[Effect]] = {}
        for m in measures:
            _, lo, hi, on_side, other_side, p_against, p_for = flat[k]
            decisive = eligible[k] and rejected[k]
            outcome = HOLDS if decisive and on_side else FAILS if decisive and other_side else INCONCLUSIVE
            if not math.isfinite(m.estimate.value):  # could not be computed: not measured, with its reason
                outcome = NOT_MEASURED
            needed = None
            if outcome == INCONCLUSIVE and math.isfinite(m.estimate.value):
                # the level this effect's interval would have to clear: its Holm threshold, two-sided, on its scale
                a = alphas[k] if math.isfinite(alphas[k]) else alpha
                needed = seeds_to_decide(m.estimate, gap(m.estimate.value, m.side, m.bound, m.margin), a, m.level)
            this = Look(look, m.estimate.n, alpha, m.estimate.shown, lo, hi, p_holm[k], alphas[k], outcome)
            prev = earlier.get(effect_key(c.id, m)) if earlier else None
            if prev is not None and prev.outcome in (HOLDS, FAILS):  # decided at an earlier look: it stays so
                eff = dataclasses.replace(prev, looks=prev.looks + (this,))
            else:
                eff = Effect(m.target, m.name, m.unit, m.estimate.shown, lo, hi, m.level, m.estimate.n, m.counted,
                             m.estimate.method + (f"; {m.note}" if m.note else ""), m.side, m.bound, m.margin,
                             p_against, outcome,
                             _sentence(m, outcome, lo, hi, on_side and eligible[k], other_side and eligible[k],
                                       needed, p_holm[k], alphas[k]),
                             needed, p_for, p_holm[k], alphas[k], m.cells, m.estimate.se, m.estimate.df,
                             (prev.looks if prev else ()) + (this,))
            effects_by_target.setdefault(m.target, []).append(eff)
            k += 1
        targets = []
        for t, effs in effects_by_target.items():
            outs = [e.outcome for e in effs]
            # no part of the claim could be computed on this target: not measured (an ordering over every target,
            # part of a claim about all of them, stays inconclusive: the claim cannot hold without it)
            if t != ALL and all(x == NOT_MEASURED for x in outs):
                targets.append(TargetVerdict(t, NOT_MEASURED, tuple(effs), " ".join(e.why for e in effs)))
                continue
            if c.combine == "any":
                o = HOLDS if HOLDS in outs else FAILS if all(x == FAILS for x in outs) else INCONCLUSIVE
            else:
                o = FAILS if FAILS in outs else HOLDS if all(x == HOLDS for x in outs) else INCONCLUSIVE
            decisive = [e for e in effs if e.outcome == o] or effs
            why = " ".join(e.why for e in decisive)
            cav = cv.applicable(caveats, all_targets if t == ALL else [t], c.arms)
            block = cv.blocking(cav)
            raw = ""
            if block and o in (HOLDS, FAILS):
                raw, o = o, UNRELIABLE
                ways = "; ".join(dict.fromkeys(b.remedy for b in block if b.remedy))
                why = (f"Unreliable: the statistics alone say it {raw}, but {cv.summary(block)}, so it is not "
                       f"reported as decisive. " + (f"Way out: {ways}. " if ways else "") + why)
            elif cav:
                why += f" Caveats: {cv.summary(cav)}."
            targets.append(TargetVerdict(t, o, tuple(effs), why, cav, raw))
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
    failed = [t.target for t in measured if t.outcome == FAILS]
    held = [t.target for t in measured if t.outcome == HOLDS]
    unreliable = [t for t in measured if t.outcome == UNRELIABLE]
    # what the claim would be from the statistics alone (an unreliable target counted as what they said)
    raw = [t.statistical_outcome or t.outcome for t in measured]
    if failed:
        o, why = FAILS, f"It does not hold on {', '.join(failed)}"
    elif all(x == HOLDS for x in raw) and not unreliable:
        o, why = HOLDS, f"It holds on {'every measured target' if len(held) > 1 else held[0]} ({', '.join(held)})"
    elif unreliable and (FAILS in raw or all(x == HOLDS for x in raw)):
        # decisive only through targets whose runs did not fit: not a verdict to cite
        o = UNRELIABLE
        why = (f"Unreliable: the statistics alone say it {'does not hold' if FAILS in raw else 'holds'}, but on "
               f"{', '.join(t.target for t in unreliable)} they rest on "
               f"{cv.summary(cv.blocking(x for t in unreliable for x in t.caveats))}")
    else:
        undecided = [t.target for t in measured if t.outcome in (INCONCLUSIVE, UNRELIABLE)]
        o = INCONCLUSIVE
        why = f"Inconclusive on {', '.join(undecided)}" + (f"; it holds on {', '.join(held)}" if held else "")
    if missing:
        why += f"; not measured on {', '.join(missing)}"
    return Verdict(c.id, c.statement, o, targets, why + ".", conditional_on)
