"""Claims 1-9 of Neyshabur, Sedghi and Zhang (NeurIPS 2020), as SCIENCE.md states them, each with its judge.

Every judge returns, per target, the statistics that decide it (:class:`~.base.Measure`); the decision rule is
:func:`~.base.decide`. Margins of the claims of sameness are module constants, declared in the README.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import stats as sps

from ..vocab.arms import PT, PT_PT, PT_RIT, RIT, RIT_RIT, Cell
from ..vocab.evidence import Evidence, PerPair, PerSeed, TargetEvidence, figure
from ..vocab.metric import ACC, AUC, metric_labels
from .base import ABOVE, ALL, BELOW, WITHIN, Claim, Measure, missing
from .stats import LEVEL, Estimate, contrast_interval, jackknife_interval, mean_interval

__all__ = ["NEYSHABUR", "BARRIER_MARGIN", "ACCURACY_MARGIN"]

BARRIER_MARGIN = 0.02
"""Claim 7: 'no barrier' means an error barrier within +-0.02 (2 points of test error); 'a barrier' means above it."""
ACCURACY_MARGIN = 0.02
"""Claim 9: 'the same final accuracy' means a test-accuracy difference within +-0.02 (a mean-AUC difference within
+-0.02 on a multi-label target; the barrier margin likewise applies to 1 - mean AUC there)."""

SEEDS = "seeds per arm"


def _v(p: PerSeed | None) -> list[float]:
    return p.list() if p is not None else []


def _gain(t: TargetEvidence, b: int) -> list[tuple[float, list[float]]]:
    return [(1.0, _v(t.accuracy.get((PT, b)))), (-1.0, _v(t.accuracy.get((RIT, b))))]


def _cells(t: TargetEvidence, *arm_blocks: tuple[str, int]) -> tuple[Cell, ...]:
    """The cells of runs of target ``t`` that a statistic reads, by (arm, block size)."""
    return tuple(Cell(arm, t.name, b) for arm, b in arm_blocks)


def _both(t: TargetEvidence, b: int) -> tuple[Cell, ...]:
    return _cells(t, (PT, b), (RIT, b))


def _has(t: TargetEvidence, *cells: tuple[str, int]) -> bool:
    return all(len(_v(t.accuracy.get(c))) for c in cells)


def _pair_diff(a: PerPair, b: PerPair) -> Estimate:
    """Mean over pairs of ``a`` minus mean over pairs of ``b``, jackknifed over seeds. n (and df = n - 1) is the
    smaller arm's number of seeds, so an arm with fewer seeds is not credited with the other's."""
    return _pair_jackknife([a, b], lambda kept: a.mean(kept) - b.mean(kept))


def _pair_jackknife(pairs: list[PerPair], statistic) -> Estimate:
    est = jackknife_interval(sorted(set().union(*[p.seeds for p in pairs])), statistic)
    k = min(len(p.seeds) for p in pairs)
    return replace(est, n=k, df=min(est.df, k - 1)) if k != est.n else est


def _pairs_counted(*ps: tuple[str, PerPair]) -> str:
    return "seeds (averaged over " + ", ".join(f"{len(p.values)} {k}" for k, p in ps) + " pairs)"


def _by_distance(ev: Evidence) -> list[TargetEvidence]:
    """The targets nearest first, if every target has a distance to the source; else none (an ordering of some
    targets only could name the wrong one nearest or farthest)."""
    if not all(math.isfinite(t.distance) for t in ev.targets):
        return []
    return sorted(ev.targets, key=lambda t: t.distance)


def _unit(ev: Evidence) -> str:
    """The unit of a measure over all targets: their test figure when they share a metric."""
    units = {figure(t, "test") for t in ev.targets}
    return units.pop() if len(units) == 1 else f"gain in each target's test figure ({metric_labels((ACC, AUC))})"


def _speed_name(t: TargetEvidence) -> str:
    return "training mean AUC (per epoch, on a fixed training subset) averaged" if t.metric == "auc" else \
        "mean training accuracy"


# -- 1 -------------------------------------------------------------------------------------------------------------
def _judge1(ev: Evidence):
    ms, notes = [], {}
    full = ev.full_block
    for t in ev.targets:
        if not _has(t, (PT, full), (RIT, full)):
            notes[t.name] = f"needs finished P-T and RI-T runs at block {full}"
            continue
        ms.append(Measure(t.name, f"P-T minus RI-T test {figure(t, 'word')}", figure(t, "test"),
                          contrast_interval(_gain(t, full)), ABOVE, SEEDS, cells=_both(t, full)))
    near = [t for t in _by_distance(ev) if _has(t, (PT, full), (RIT, full))]
    name = "gain on the nearest target minus gain on the farthest"
    if not ms:
        notes[ALL] = "no target has the runs for a gain"
    elif len(near) > 1 and near[0].metric != near[-1].metric:  # a gain in accuracy against one in mean AUC
        a, b = near[0], near[-1]
        ms.append(missing(ALL, name, _unit(ev), ABOVE, f"the nearest target ({a.name}) is judged by {figure(a, 'word')} "
                          f"and the farthest ({b.name}) by {figure(b, 'word')}: their gains are not on one scale"))
    elif len(near) > 1:
        a, b = near[0], near[-1]
        est = contrast_interval(_gain(a, full) + [(-c, v) for c, v in _gain(b, full)])
        ms.append(Measure(ALL, f"{name} ({a.name} - {b.name})", figure(a, "test"), est, ABOVE, SEEDS,
                          note=f"target distance: {a.distance_source}", cells=_both(a, full) + _both(b, full)))
    else:  # the ordering is part of the claim: without it the claim cannot hold
        ms.append(missing(ALL, name, _unit(ev), ABOVE, "it needs at least two measured targets, each with a distance to the "
                          "source (measured by the transferability scores, or `distance` declared on every target)"))
    return ms, notes


# -- 2 -------------------------------------------------------------------------------------------------------------
def _judge2(ev: Evidence):
    ms, notes = [], {}
    full = ev.full_block
    small = min(ev.blocks) if ev.blocks else full
    if small == full:
        return [], {t.name: "needs a block size smaller than the image" for t in ev.targets}
    ordered = _by_distance(ev)
    farthest = ordered[-1].name if len(ordered) > 1 else None
    shrink = f"gain at block {full} minus gain at block {small}"
    for t in ev.targets:
        if not _has(t, (PT, full), (RIT, full), (PT, small), (RIT, small)):
            notes[t.name] = f"needs finished P-T and RI-T runs at blocks {full} and {small}"
            continue
        for arm in (PT, RIT):
            est = contrast_interval([(1.0, _v(t.accuracy[(arm, full)])), (-1.0, _v(t.accuracy[(arm, small)]))])
            ms.append(Measure(t.name, f"{arm} {figure(t, 'word')} drop from block {full} to {small}", figure(t, "test"),
                              est, ABOVE, SEEDS, cells=_cells(t, (arm, full), (arm, small))))
        if t.name == farthest:
            continue  # the claim exempts the most distant target from the shrinking gain
        if farthest is None:
            if len(ev.targets) == 1:
                why = (f"the claim exempts the most distant target, and {t.name} is the study's only target (its "
                       f"distance {t.distance:.3g}, {t.distance_source or 'not measured'}): it needs at least two "
                       f"targets" if math.isfinite(t.distance) else
                       "the claim exempts the most distant target; it needs at least two targets, each with a distance")
            else:
                lacking = [x.name for x in ev.targets if not math.isfinite(x.distance)]
                why = ("the claim exempts the most distant target, and without a distance for every target none can "
                       f"be named (none for {', '.join(lacking)}: declare `distance` on every target, or let the "
                       f"study measure it)")
            ms.append(missing(t.name, shrink, figure(t, "test"), ABOVE, why))
            continue
        est = contrast_interval(_gain(t, full) + [(-c, v) for c, v in _gain(t, small)])
        ms.append(Measure(t.name, shrink, figure(t, "test"), est, ABOVE, SEEDS, cells=_both(t, full) + _both(t, small)))
    return ms, notes


# -- 3 -------------------------------------------------------------------------------------------------------------
def _judge3(ev: Evidence):
    ms, notes = [], {}
    small = min(ev.blocks) if ev.blocks else ev.full_block
    for t in ev.targets:
        pt, ri = _v(t.speed.get((PT, small))), _v(t.speed.get((RIT, small)))
        if not (pt and ri):
            notes[t.name] = f"needs finished P-T and RI-T runs at block {small}"
            continue
        ms.append(Measure(t.name, f"P-T minus RI-T {_speed_name(t)} over the first {ev.speed_epochs} epochs "
                          f"(block {small})", figure(t, "train"),
                          contrast_interval([(1.0, pt), (-1.0, ri)]), ABOVE, SEEDS, cells=_both(t, small)))
    return ms, notes


# -- 4 -------------------------------------------------------------------------------------------------------------
def _judge4(ev: Evidence):
    ms, notes = [], {}
    for t in ev.targets:
        a, b = t.uncommon.get(PT_PT), t.uncommon.get(RIT_RIT)
        if not (a and b and a.values and b.values):
            notes[t.name] = "needs the mistakes of at least two P-T and two RI-T models"
            continue
        ms.append(Measure(t.name, "uncommon mistakes of P-T pairs minus RI-T pairs", figure(t, "mistakes"),
                          _pair_diff(a, b), BELOW, _pairs_counted((PT_PT, a), (RIT_RIT, b)),
                          cells=_both(t, ev.full_block)))
    return ms, notes


# -- 5 -------------------------------------------------------------------------------------------------------------
def _judge5(ev: Evidence):
    """Every layer's difference is its own effect (the claim holds when every one does: an intersection-union test,
    which needs no correction); a minimum over layers would be biased and its jackknife unreliable."""
    ms, notes = [], {}
    for t in ev.targets:
        a, b = t.cka.get(PT_PT), t.cka.get(RIT_RIT)
        if not (a and b and len(a) == len(b) and a[0].values and b[0].values):
            notes[t.name] = "needs the CKA of at least two P-T and two RI-T models"
            continue
        counted = _pairs_counted((PT_PT, a[0]), (RIT_RIT, b[0]))
        layers = list(t.cka_layers) or [f"layer {i}" for i in range(len(a))]
        for layer, x, y in zip(layers, a, b, strict=True):
            ms.append(Measure(t.name, f"CKA of P-T pairs minus RI-T pairs at {layer}", "CKA", _pair_diff(x, y), ABOVE,
                              counted, cells=_both(t, ev.full_block)))
        half = len(a) // 2
        name = "that difference on the lower half of the layers minus the upper half"
        if half:
            def lower_minus_upper(kept, a=a, b=b, h=half):
                d = np.array([x.mean(kept) - y.mean(kept) for x, y in zip(a, b, strict=True)])
                return float(np.mean(d[:h]) - np.mean(d[h:]))

            ms.append(Measure(t.name, name, "CKA", _pair_jackknife([a[0], b[0]], lower_minus_upper), ABOVE, counted,
                              cells=_both(t, ev.full_block)))
        else:
            ms.append(missing(t.name, name, "CKA", ABOVE, "needs at least two layers"))
    return ms, notes


# -- 6 -------------------------------------------------------------------------------------------------------------
def _judge6(ev: Evidence):
    ms, notes = [], {}
    for t in ev.targets:
        a, b = t.param_distance.get(PT_PT), t.param_distance.get(RIT_RIT)
        sa, sb = _v(t.start_distance.get(PT)), _v(t.start_distance.get(RIT))
        if not (a and b and a.values and b.values and sa and sb):
            notes[t.name] = "needs the parameter distances of at least two P-T and two RI-T models"
            continue
        ms.append(Measure(t.name, "l2 distance within P-T pairs minus within RI-T pairs", "l2 parameter norm",
                          _pair_diff(a, b), BELOW, _pairs_counted((PT_PT, a), (RIT_RIT, b)),
                          cells=_both(t, ev.full_block)))
        ms.append(Measure(t.name, "l2 distance of P-T to P minus of RI-T to RI", "l2 parameter norm",
                          contrast_interval([(1.0, sa), (-1.0, sb)]), BELOW, SEEDS, cells=_both(t, ev.full_block)))
    return ms, notes


# -- 7 -------------------------------------------------------------------------------------------------------------
def _judge7(ev: Evidence):
    ms, notes = [], {}
    for t in ev.targets:
        pts, ris, cross = t.barrier.get(PT_PT), t.barrier.get(RIT_RIT), t.barrier.get(PT_RIT)
        if not (pts and ris and cross and pts.values and ris.values and cross.values):
            notes[t.name] = "needs the interpolation barriers of P-T pairs, RI-T pairs and P-T/RI-T pairs"
            continue
        full = ev.full_block
        for kind, p, side, arms in ((PT_PT, pts, WITHIN, (PT,)), (RIT_RIT, ris, ABOVE, (RIT,)),
                                    (PT_RIT, cross, ABOVE, (PT, RIT))):
            est = jackknife_interval(p.seeds, lambda kept, p=p: p.mean(kept))
            ms.append(Measure(t.name, f"error barrier between {kind} models", figure(t, "error"), est, side,
                              _pairs_counted((kind, p)), bound=0.0 if side == WITHIN else BARRIER_MARGIN,
                              margin=BARRIER_MARGIN if side == WITHIN else 0.0,
                              cells=_cells(t, *((arm, full) for arm in arms))))
    return ms, notes


# -- 8 -------------------------------------------------------------------------------------------------------------
def depth_rank_correlation(crit: tuple[float, ...]) -> float:
    """Spearman's rho between a module's depth (input to output) and its criticality.

    ``inf``: no rewinding of the module is feasible (the most critical); NaN: the module did not move (its
    criticality means nothing) and is left out. NaN when fewer than 3 modules remain or every module has the same
    criticality (e.g. all zero: nothing to rank, so neither for nor against the claim)."""
    c = np.asarray(crit, dtype=float)
    depth = np.flatnonzero(~np.isnan(c))
    c = c[depth]
    if len(c) < 3 or len(np.unique(c)) < 2:
        return math.nan
    return float(sps.spearmanr(depth, c).statistic)


def _judge8(ev: Evidence):
    ms, notes = [], {}
    for t in ev.targets:
        per = t.criticality.get(PT, {})
        rhos = {s: depth_rank_correlation(c) for s, c in per.items()}
        ok = [r for r in rhos.values() if math.isfinite(r)]
        if not ok:
            notes[t.name] = ("needs the module criticality of P-T models with at least 3 modules that do not all share "
                             "one value" if per else "needs the module criticality of P-T models")
            if t.criticality_note:  # e.g. the configured layers hold no parameters: say which, and what was ranked
                notes[t.name] += (f" ({t.criticality_note}; ranked below the head: "
                                  f"{', '.join(t.criticality_modules) or 'none'})")
            continue
        dropped = len(rhos) - len(ok)
        ms.append(Measure(t.name, "Spearman's rho between module depth and criticality (P-T)", "rank correlation",
                          replace(mean_interval(ok), bounds=(-1.0, 1.0)), ABOVE,
                          f"P-T seeds ({len(t.criticality_modules)} modules each)",
                          cells=_cells(t, (PT, ev.full_block)),
                          note="; ".join(x for x in (f"{dropped} seed(s) left out: every module equally critical"
                                                     if dropped else "", t.criticality_note) if x)))
    return ms, notes


# -- 9 -------------------------------------------------------------------------------------------------------------
def _judge9(ev: Evidence):
    ms, notes = [], {}
    for t in ev.targets:
        if not t.basin:
            continue
        final = _v(t.basin.get(t.basin_final))
        earlier = sorted(e for e in t.basin if e != t.basin_final)
        if not (final and earlier):
            notes[t.name] = "needs P-T runs from the final and from earlier pre-training checkpoints"
            continue
        # any one checkpoint may match: each is tested at 1 - alpha / K (Bonferroni), not at 1 - alpha
        level = 1 - (1 - LEVEL) / len(earlier)
        bb = t.basin_block or ev.full_block
        for e in earlier:
            est = contrast_interval([(1.0, _v(t.basin[e])), (-1.0, final)])
            ms.append(Measure(t.name, f"test {figure(t, 'word')} fine-tuned from checkpoint {e:g} minus from the final "
                              f"one ({t.basin_final:g})", figure(t, "test"), est, WITHIN, SEEDS, margin=ACCURACY_MARGIN,
                              level=level, cells=(Cell(PT, t.name, bb, float(e)), Cell(PT, t.name, bb)),
                              note=f"{level:.2%} interval: {len(earlier)} checkpoints, any of which may match"
                              if len(earlier) > 1 else ""))
    if not ms and not notes:
        notes[ALL] = "the study has no pre-training checkpoint sweep (basin.checkpoint_epochs)"
    return ms, notes


NEYSHABUR = (
    Claim("N1", "P-T beats RI-T on every target, most on the targets most similar to the source.",
          ("accuracy", "distance"), _judge1, source="Neyshabur et al. 2020"),
    Claim("N2", "Shuffling blocks lowers the accuracy of both; as blocks get smaller P-T's gain shrinks, except on the "
          "most distant target.", ("accuracy", "distance"), _judge2, source="Neyshabur et al. 2020"),
    Claim("N3", "At the smallest blocks P-T still trains faster than RI-T.", ("speed",), _judge3,
          source="Neyshabur et al. 2020"),
    Claim("N4", "Two P-T models make fewer different (uncommon) mistakes than two RI-T models.", ("uncommon",), _judge4,
          source="Neyshabur et al. 2020"),
    Claim("N5", "Two P-T models are more similar in feature space (CKA) than two RI-T models at every layer, most at "
          "the lower layers.", ("cka",), _judge5, source="Neyshabur et al. 2020"),
    Claim("N6", "P-T models are close to each other and to P; RI-T models are far from each other and from RI.",
          ("param_distance", "start_distance"), _judge6, source="Neyshabur et al. 2020"),
    Claim("N7", "No performance barrier between two P-T models; a barrier between two RI-T models and between P-T and "
          "RI-T.", ("barrier",), _judge7, source="Neyshabur et al. 2020"),
    Claim("N8", "Lower modules are less critical than higher ones.", ("criticality",), _judge8,
          source="Neyshabur et al. 2020", arms=("P-T",)),
    Claim("N9", "Fine-tuning from an earlier pre-training checkpoint can give the same final accuracy as from the last.",
          ("basin",), _judge9, combine="any", source="Neyshabur et al. 2020", arms=("P-T", "basin")),
)
