"""The evidence the claims are judged on, assembled from a study's analysis results.

:func:`gather_evidence` turns the typed records of :mod:`transferscope.study.analyze` into the typed
:class:`~transferscope.vocab.evidence.Evidence` of :mod:`transferscope.claims`: per target, each figure per seed or
per pair of seeds, by arm and pair kind. This is the step that feeds the judges; it is tested field by field
against hand-built records (``tests/test_evidence_assembly.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..claims import Evidence, PerPair, PerSeed, ScoreCell, TargetEvidence
from ..claims.liu import INPUT_SCORE, LABEL_SCORE
from ..vocab.arms import PT, PT_P, PT_PT, PT_RIT, RIT, RIT_RI, RIT_RIT
from ..vocab.caveats import Caveat
from ..vocab.records import (
    BarrierPairs,
    BasinResult,
    CKAPairs,
    CriticalityModels,
    DistancePairs,
    MistakesPairs,
    ModelsResult,
    PairsResult,
    TransferResult,
    scores_at,
)
from ..vocab.results import read_float
from .plan import Plan

__all__ = ["gather_evidence"]




def _pairs(res: PairsResult | None, kind: str, value: Callable[[Any], float]) -> PerPair:
    rows = res.of_kind(kind) if res else ()
    return PerPair({(p.seeds[0], p.seeds[1]): read_float(value(p.result)) for p in rows})


def _models(res: ModelsResult | None, arm: str, value: Callable[[Any], float]) -> PerSeed:
    return PerSeed({m.seed: read_float(value(m.result)) for m in (res.of_arm(arm) if res else ())})


def _body(names: list[str]) -> list[int]:
    return [i for i, n in enumerate(names) if not n.startswith("head")]


def _finite_mean(values: list[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _mean_body(values: list, names: list[str]) -> float:
    return _finite_mean([read_float(values[i]) for i in _body(names)])


def _target_distances(plan: Plan, results: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """Distance of each target from the source: declared in the config (``distance`` of every target), else
    measured: the MMD^2 between P's features of source and target images, unshuffled."""
    cfg = plan.config
    declared = {t.display: t.distance for t in cfg.targets if getattr(t, "distance", -1.0) >= 0}
    if declared and len(declared) == len(cfg.targets):
        return {t: (d, "declared in the study config (targets.distance)") for t, d in declared.items()}
    out = {}
    for t in cfg.targets:
        sc = scores_at(results, t.display, cfg.data.image_size)
        if sc is not None:
            out[t.display] = (sc.mmd2_rbf, "measured: MMD^2 (RBF) between P's features of source and target images, "
                                           "unshuffled")
    return out


def _arm_figures(rows, name: str) -> tuple[dict, dict, str]:
    """Per (arm, block size): each seed's test accuracy (or mean AUC) and speed on target ``name``; its metric."""
    acc, speed, metric = {}, {}, "acc"
    for r in rows:
        if r.target != name:
            continue
        metric = r.metric
        for arm in (PT, RIT):
            per = r.arm(arm).per_seed
            acc[(arm, r.block_size)] = PerSeed({int(s.seed): read_float(s.test_acc) for s in per})
            speed[(arm, r.block_size)] = PerSeed({int(s.seed): read_float(s.speed_mean_acc_k) for s in per})
    return acc, speed, metric


def _criticality(crit: CriticalityModels | None) -> tuple[list[str], dict[str, dict[int, tuple[float, ...]]], str]:
    """The body's modules, each model's criticality per body module by arm and seed, and the note."""
    modules: list[str] = []
    per_crit: dict[str, dict[int, tuple[float, ...]]] = {}
    note = ""  # one architecture: every model's note is the same; N8 reads it when it cannot rank
    for m in crit.models if crit else ():
        c = m.result
        names = c.modules
        note = note or c.note
        modules = [names[i] for i in _body(names)]
        degenerate = c.degenerate or [False] * len(names)
        # infeasible (inf): the most critical; a module that did not move (degenerate): left out (NaN)
        per_crit.setdefault(m.arm, {})[m.seed] = tuple(math.nan if degenerate[i] else float(c.criticality[i])
                                                       for i in _body(names))
    return modules, per_crit, note


def _basin(b: BasinResult | None) -> tuple[dict[float, PerSeed], float]:
    basin: dict[float, dict[int, float]] = {}
    if not b:
        return {}, math.nan
    for br in b.rows:
        basin.setdefault(br.checkpoint, {})[br.seed] = br.test_acc
    return {e: PerSeed(v) for e, v in basin.items()}, b.final_checkpoint


def _liu_figures(results: dict[str, Any], name: str) -> dict[str, dict[str, PerSeed]]:
    """Liu et al.'s figures per arm on target ``name``: flatness, deviation, gradient stability, principal."""
    flat, dev, stab, pg = (results.get(f"{k}/{name}") for k in ("flatness", "deviation", "stability", "principal"))
    return dict(
        top_eigenvalue={a: _models(flat, a, lambda r: r.top_eigenvalue) for a in (PT, RIT)},
        deviation={a: _models(dev, a, lambda r: _mean_body(r.deviation[-1], r.modules)
                              if r.deviation else math.nan) for a in (PT, RIT)},
        grad_lipschitz={a: _models(stab, a, lambda r: _finite_mean([read_float(v) for p in r.points
                                                                     for v in p.grad_lipschitz]))
                        for a in (PT, RIT)},
        principal={a: _models(pg, a, lambda r: _mean_body([f[0] if f else None for f in r.fraction],
                                                              r.modules or r.weights))
                   for a in (PT, RIT)})


def _target_evidence(name: str, results: dict[str, Any], rows, distance: tuple[float, str],
                     basin_block: int) -> TargetEvidence:
    acc, speed, metric = _arm_figures(rows, name)
    mis: MistakesPairs | None = results.get(f"mistakes/{name}")
    cka: CKAPairs | None = results.get(f"cka/{name}")
    dst: DistancePairs | None = results.get(f"distance/{name}")
    bar: BarrierPairs | None = results.get(f"barrier/{name}")
    first_cka = cka.first(PT_PT) if cka else None
    layers = first_cka.layers if first_cka else []
    # the full-data estimate where it was computed (full=False keeps only the minibatch one)
    cka_key = "full" if first_cka is not None and first_cka.has_full else "minibatch"
    modules, per_crit, crit_note = _criticality(results.get(f"criticality/{name}"))
    basin, final_e = _basin(results.get(f"basin/{name}"))
    d, how = distance
    return TargetEvidence(
        name, num_classes=0, distance=d, distance_source=how, metric=metric, accuracy=acc, speed=speed,
        uncommon={k: _pairs(mis, k, lambda r: r.uncommon_fraction) for k in (PT_PT, RIT_RIT, PT_RIT)},
        common={k: _pairs(mis, k, lambda r: r.common_fraction) for k in (PT_PT, RIT_RIT, PT_RIT)},
        cka_layers=tuple(layers),
        cka={k: tuple(_pairs(cka, k, lambda r, i=i, key=cka_key: getattr(r, key)[i]) for i in range(len(layers)))
             for k in (PT_PT, RIT_RIT)},
        param_distance={k: _pairs(dst, k, lambda r: r.total) for k in (PT_PT, RIT_RIT)},
        start_distance={PT: _pairs_as_seeds(dst, PT_P), RIT: _pairs_as_seeds(dst, RIT_RI)},
        barrier={k: _pairs(bar, k, lambda r: r.barrier_error) for k in (PT_PT, RIT_RIT, PT_RIT)},
        criticality_modules=tuple(modules), criticality=per_crit, criticality_note=crit_note,
        basin=basin, basin_final=final_e, basin_block=basin_block, **_liu_figures(results, name))


def gather_evidence(plan: Plan, results: dict[str, Any], caveats: tuple[Caveat, ...] = ()) -> Evidence:
    """The typed evidence of every claim, from the analysis records (cached or new) of a study, with the caveats of
    its runs (:func:`transferscope.study.caveats.study_caveats`)."""
    cfg = plan.config
    transfer: TransferResult | None = results.get("transfer/all")
    rows = transfer.rows if transfer else ()
    dist = _target_distances(plan, results)
    basin_block = cfg.basin.block_size or cfg.data.image_size
    targets = [_target_evidence(t.display, results, rows, dist.get(t.display, (math.nan, "")), basin_block)
               for t in cfg.targets]
    cells = []
    for r in rows:
        sc = scores_at(results, r.target, r.block_size)
        if sc is None:
            continue
        cells.append(ScoreCell(r.target, r.block_size, r.gain, {INPUT_SCORE: -sc.mmd2_rbf, LABEL_SCORE: sc.leep,
                                                                 "logme": sc.logme, "h_score": sc.h_score}, r.metric))
    p = plan.pretrain()
    m = cfg.model
    which = (f"given as {m.weights}, sha256 {m.weights_sha256[:16]}" if m.weights else
             f"{cfg.source.display}, pre-training seed {cfg.pretrain_seed}")
    return Evidence(tuple(targets), cfg.data.image_size, tuple(sorted(cfg.block_sizes, reverse=True)),
                    cfg.finetune.speed_epochs, tuple(cells),
                    conditional_on=f"one pre-trained model P ({which}, run {p.run_id}); P-T and RI-T "
                                   f"seeds {', '.join(map(str, cfg.seeds))}"
                                   + (f" and the seeds the rounds added ({sum(len(a.seeds) for a in cfg.decide.added)} "
                                      "cell-seeds)" if cfg.decide.added else ""), caveats=tuple(caveats))


def _pairs_as_seeds(res: DistancePairs | None, kind: str) -> PerSeed:
    """A model-to-its-start distance (a 'pair' of one run with its own init) as a per-seed value."""
    return PerSeed({p.seeds[0]: read_float(p.result.total) for p in (res.of_kind(kind) if res else ())})
