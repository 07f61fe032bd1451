"""The analyses over a (partly) finished study, and the verdict per claim.

Every analysis declares itself once, as an :class:`AnalysisSpec` (name, version, the jobs it needs from the
plan, the function that runs a job), in the registry :data:`SPECS`; :func:`analyze` is a loop over it. A job's
result is cached in ``RESULTS/analyses/<name>-<target>-<key>.json``; the key is derived from the spec's
version, the job's parameters (the settings it uses, the pairs it compares) and the content hashes of the
files of every run it reads (recorded in each run's ``run.json``), so an edited input is computed again.

Pairs come from :mod:`transferscope.vocab.arms`: every pair of distinct seeds within an arm, every P-T/RI-T
pair, and each model with its start. Per-model analyses run on every seed. :func:`gather_evidence` turns the
results into the typed :class:`~transferscope.claims.Evidence` the claims are judged on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import jsonio
from .. import metrics as M
from ..claims import Evidence, PerPair, PerSeed, ScoreCell, TargetEvidence, Verdict, judge
from ..claims.across import across_pretrained
from ..claims.liu import INPUT_SCORE, LABEL_SCORE
from ..config import AnalysisConfig, ConfigError, check_config, to_dict
from ..devices import cpu_sample, resolve_device
from ..store import RUN_DONE, Store, StoreError, StoreWriteError, atomic_write_text, dumps
from ..vocab import arms
from ..vocab.arms import P_PT, PT, PT_P, PT_PT, PT_RIT, RIT, RIT_RI, RIT_RIT
from ..vocab.caveats import Caveat
from ..vocab.evidence import one_scale
from ..vocab.records import (
    SCORE_NAMES,
    BarrierPairs,
    BasinResult,
    BasinRow,
    CKAPairs,
    Correlation,
    CriticalityModels,
    DeviationModels,
    DeviationResult,
    DistancePairs,
    FlatnessModels,
    MistakesPairs,
    ModelRow,
    ModelsResult,
    PairMistakes,
    PairRow,
    PairsResult,
    PrincipalModels,
    RelatePoint,
    RelateResult,
    ScoresResult,
    StabilityCurve,
    StabilityModels,
    StabilityPoint,
    TransferResult,
    TransferRow,
)
from .caveats import study_caveats
from .plan import Plan, RunSpec, file_safe
from .summary import results_table
from .tuning import resolve

log = logging.getLogger(__name__)

__all__ = ["analyze", "AnalysisRun", "AnalysisSpec", "Job", "SPECS", "register", "gather_evidence", "verdicts",
           "format_verdicts", "write_claims", "CACHE_VERSION", "verdicts_by_pretrain", "compute_job", "compute_local",
           "inputs_of", "record_of", "Pending", "Outcome", "Compute"]

CACHE_VERSION = 4
"""Bumped when the layout of every cached result changes (results of an older layout are then recomputed)."""


@dataclass
class AnalysisRun:
    results: dict[str, Any] = field(default_factory=dict)
    """Result name (``<analysis>/<target>``) -> its record (the spec's ``result`` type, :mod:`.records`)."""
    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    """Result name -> its file under ``analyses/`` (written to ``analyses/index.json`` for the report)."""
    pretrained: dict[int, AnalysisRun] = field(default_factory=dict)
    """A study with several pre-trained models: the analyses under each P but the primary, by pre-training seed."""


@dataclass(frozen=True)
class Job:
    """One unit of an analysis: what it reads (run ids) and what else determines its result (``params``)."""

    analysis: str
    target: str
    runs: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """What a job runs with. Picklable (a plan, a folder, settings, a device), so a job can run elsewhere."""

    plan: Plan
    root: Path
    settings: AnalysisConfig
    device: str = "cpu"

    @property
    def store(self) -> Store:
        return Store(self.root)


@dataclass(frozen=True)
class AnalysisSpec:
    """An analysis of the study: ``jobs(ctx, missing)`` lists its jobs (and says in ``missing`` what it cannot
    run and why); ``run(ctx, job, results)`` computes one job's result (a record of type ``result``, see
    :mod:`.records`) from the runs, reading other analyses' records from ``results`` where it builds on them.
    Module-level functions, so it pickles."""

    name: str
    summary: str
    version: int
    jobs: Callable[[Context, dict[str, str]], list[Job]]
    run: Callable[[Context, Job, dict[str, Any]], Any]
    result: type
    """The record type ``run`` returns; its ``to_dict`` is what the result file holds, ``from_dict`` reads it."""
    group: str = "neyshabur"
    needs: tuple[str, ...] = ()
    """The analyses whose records ``run`` reads from ``results``: every job of theirs ends before a job of this
    one starts (on any executor), and ``results`` holds theirs only. Each must be registered before this one."""


SPECS: dict[str, AnalysisSpec] = {}
"""The registry, in the order the analyses run (later ones may read earlier ones' results)."""


def register(spec: AnalysisSpec) -> AnalysisSpec:
    if spec.name in SPECS:
        raise ValueError(f"analysis {spec.name!r} is registered twice")
    unknown = [n for n in spec.needs if n not in SPECS]
    if unknown:
        raise ValueError(f"analysis {spec.name!r} needs {', '.join(map(repr, unknown))}, which is not registered "
                         "before it")
    SPECS[spec.name] = spec
    return spec


# ------------------------------------------------------------------------------------------------ inputs

def _done(ctx: Context, runs: list[RunSpec]) -> list[RunSpec]:
    store = ctx.store
    return [r for r in runs if store.run_status(r.run_id) == RUN_DONE]


def _arm_runs(ctx: Context, target: str, block: int, arm: str, ckpt: float = -1.0) -> list[RunSpec]:
    return sorted(_done(ctx, [r for r in ctx.plan.runs if r.arm == arm and r.domain.display == target
                              and r.block_size == block and r.parent_checkpoint == ckpt]), key=lambda r: r.seed)


def _by_id(ctx: Context) -> dict[str, RunSpec]:
    return ctx.plan.by_id()


def _model(ctx: Context, run_id: str, which: str = "weights"):
    from .artefacts import load_run_model

    return load_run_model(ctx.store, _by_id(ctx)[run_id], which, ctx.device)


def _domain(ctx: Context, target: str, block: int | None = None):
    from .artefacts import domain_data as load

    cfg = ctx.plan.config
    d = next(t for t in cfg.targets if t.display == target) if target != cfg.source.display else cfg.source
    with torch.device("cpu"):  # the images are kept (and shuffled) on the CPU; each analysis moves what it takes
        data = load(d, cfg.data)
        full = cfg.data.image_size
        return data if block in (None, full) else data.shuffled(block, cfg.data.shuffle_seed)


def _settings(ctx: Context, prefix: str | None) -> dict[str, Any]:
    """The analysis settings whose names start with ``prefix`` (None: none of them), and the seed."""
    s = ctx.settings
    names = [k for k in s.__dataclass_fields__ if prefix is not None and k.startswith(prefix)]
    return {k: getattr(s, k) for k in names} | {"seed": s.seed}


def _pair_rows(pairs: list[arms.Pair]) -> list[dict]:
    return [{"kind": p.kind, "seeds": list(p.seeds), "runs": [p.a.run_id, p.b.run_id], "which_b": p.which_b}
            for p in pairs]


def _target_pairs(ctx: Context, target: str, missing: dict[str, str], kinds: tuple[str, ...],
                  min_per_arm: int = 2) -> list[arms.Pair] | None:
    full = ctx.plan.config.data.image_size
    pt, ri = _arm_runs(ctx, target, full, PT), _arm_runs(ctx, target, full, RIT)
    if len(pt) < min_per_arm or len(ri) < min_per_arm:
        missing[f"pairs-{target}"] = (f"needs {min_per_arm} finished P-T and RI-T runs at block {full}; has "
                                      f"{len(pt)} and {len(ri)}")
        return None
    every = arms.pairs_of(pt, ri)
    return [p for k in kinds for p in every[k]]


def _job(name: str, target: str, pairs: list[arms.Pair], params: dict[str, Any]) -> Job:
    ids = sorted({p.a.run_id for p in pairs} | {p.b.run_id for p in pairs})
    return Job(name, target, tuple(ids), {"pairs": _pair_rows(pairs), **params})


def _targets(ctx: Context) -> list[str]:
    return [t.display for t in ctx.plan.config.targets]


# ------------------------------------------------------------------------------------------------ specs

def _transfer_jobs(ctx: Context, missing: dict[str, str]) -> list[Job]:
    runs = [r.run_id for r in ctx.plan.runs if r.arm != "P" and ctx.store.run_status(r.run_id) == RUN_DONE]
    return [Job("transfer", "all", tuple(sorted(runs)))]


def _transfer_run(ctx: Context, job: Job, results: dict) -> TransferResult:
    cfg = ctx.plan.config
    rows = tuple(TransferRow(r["target"], r["block_size"], _nan(r["gain"]), r[PT], r[RIT], r.get("metric", "acc"))
                 for r in results_table(ctx.plan, ctx.store))
    return TransferResult(rows, cfg.finetune.speed_epochs, cfg.finetune.speed_fraction)


def _pair_jobs(ctx: Context, missing: dict[str, str], *, name: str, kinds: tuple[str, ...], with_p: bool = False,
               settings: tuple[str, ...] = ()) -> list[Job]:
    """One job per target over every pair of the given kinds; ``with_p`` adds P (its body with P-T's new head: the
    start of fine-tuning) against the first P-T model; ``settings``: the analysis settings the job uses."""
    out = []
    for t in _targets(ctx):
        pairs = _target_pairs(ctx, t, missing, kinds)
        if pairs is None:
            continue
        if with_p:
            first = next(p for p in pairs if p.kind in (PT_PT, PT_RIT, PT_P)).a
            pairs = pairs + [arms.Pair(P_PT, first, first, which_b="init")]
        out.append(_job(name, t, pairs, {k: getattr(ctx.settings, k) for k in settings} | {"seed": ctx.settings.seed}))
    return out


def _pairs_jobs(name: str, kinds: tuple[str, ...], with_p: bool = False, settings: tuple[str, ...] = ()):
    return partial(_pair_jobs, name=name, kinds=kinds, with_p=with_p, settings=settings)


def _mistakes_run(ctx: Context, job: Job, results: dict) -> MistakesPairs:
    from ..analyses.mistakes import mistakes_from_logits

    store, rows = ctx.store, []
    threshold = job.params.get("multilabel_threshold", ctx.settings.multilabel_threshold)
    for p in job.params["pairs"]:
        za, zb = store.read_npz(p["runs"][0]), store.read_npz(p["runs"][1])
        # single-label: the arg-max class per example; multi-label: per (example, label) at the threshold
        m = mistakes_from_logits(za["test_logits"], zb["test_logits"], za["test_labels"], threshold=threshold)
        rows.append(PairRow.of(p, PairMistakes.of(m, za["test_index"].tolist())))
    return MistakesPairs(tuple(rows))


def _models_of(ctx: Context, p: dict):
    a = _model(ctx, p["runs"][0])
    b = _model(ctx, p["runs"][1], p.get("which_b", "weights"))
    return a, b


def _cka_run(ctx: Context, job: Job, results: dict) -> CKAPairs:
    from ..analyses.cka import feature_similarity

    data = _domain(ctx, job.target)
    rows = []
    for p in job.params["pairs"]:
        a, b = _models_of(ctx, p)  # P/P-T: the P-T model and its start (P's body with the new head)
        res = feature_similarity(a, b, data.test.x, layers=a.layer_names(), batch_size=job.params["cka_batch_size"])
        rows.append(PairRow.of(p, res))
    return CKAPairs(tuple(rows))


def _distance_run(ctx: Context, job: Job, results: dict) -> DistancePairs:
    from ..analyses.distance import parameter_distance

    rows = []
    for p in job.params["pairs"]:
        a, b = _models_of(ctx, p)  # which_b "init": the start of the run, P (+ a new head) for P-T, RI for RI-T
        rows.append(PairRow.of(p, parameter_distance(a, b)))
    return DistancePairs(tuple(rows))


def _barrier_run(ctx: Context, job: Job, results: dict) -> BarrierPairs:
    from ..analyses.barrier import interpolate

    data = _domain(ctx, job.target)
    rows = []
    for p in job.params["pairs"]:
        a, b = _models_of(ctx, p)
        if p["kind"] == P_PT:
            a, b = b, a  # from P (l = 0) to P-T (l = 1)
        res = interpolate(a, b, data.test, points=job.params["barrier_points"], train_split=data.train,
                          seed=ctx.settings.seed)
        rows.append(PairRow.of(p, res))
    return BarrierPairs(tuple(rows))


def _model_jobs(ctx: Context, missing: dict[str, str], *, name: str, prefix: str | None,
                arms_: tuple[str, ...] = (PT, RIT)) -> list[Job]:
    """One job per target over every seed of the given arms (unshuffled); the settings starting with ``prefix``."""
    full = ctx.plan.config.data.image_size
    out = []
    for t in _targets(ctx):
        models = [r for a in arms_ for r in _arm_runs(ctx, t, full, a)]
        if not all(_arm_runs(ctx, t, full, a) for a in arms_):
            missing[f"{name}-{t}"] = f"needs finished {' and '.join(arms_)} runs at block {full}"
            continue
        rows = [{"arm": r.arm, "seed": r.seed, "run": r.run_id} for r in models]
        out.append(Job(name, t, tuple(r.run_id for r in models), {"models": rows, **_settings(ctx, prefix)}))
    return out


def _per_model_jobs(name: str, prefix: str | None):
    return partial(_model_jobs, name=name, prefix=prefix)


def _criticality_run(ctx: Context, job: Job, results: dict) -> CriticalityModels:
    from ..analyses.criticality import module_criticality
    from .artefacts import load_state as _load

    s = ctx.settings
    data = _domain(ctx, job.target)
    rows = []
    for m in job.params["models"]:
        init = _load(ctx.store, m["run"], "init.safetensors")  # checked against its recorded sha256
        res = module_criticality(_model(ctx, m["run"]), init, data.train, alphas=s.criticality_alphas,
                                 samples=s.criticality_samples, n_examples=s.criticality_examples,
                                 tolerance=s.criticality_tolerance, s_tol=s.criticality_s_tol, seed=s.seed)
        rows.append(ModelRow.of(m, res))
    return CriticalityModels(tuple(rows))


def _basin_jobs(ctx: Context, missing: dict[str, str]) -> list[Job]:
    cfg = ctx.plan.config
    bsize = cfg.basin.block_size or cfg.data.image_size
    out = []
    for t in _targets(ctx):
        sweep = sorted({r.parent_checkpoint for r in ctx.plan.runs if r.arm == PT and r.domain.display == t
                        and r.parent_checkpoint >= 0})
        if not sweep:
            continue
        final = _arm_runs(ctx, t, bsize, PT)
        if not final:
            missing[f"basin-{t}"] = "needs the P-T runs from the final checkpoint"
            continue
        # the final weights' position: P's epochs (for a given P with K given checkpoints, K + 1)
        rows = [{"checkpoint": float(ctx.plan.pretrain().train.epochs), "seed": r.seed, "run": r.run_id} for r in final]
        rows += [{"checkpoint": e, "seed": r.seed, "run": r.run_id} for e in sweep for r in _arm_runs(ctx, t, bsize, PT, e)]
        out.append(Job("basin", t, tuple(r["run"] for r in rows), {"models": rows, "block_size": bsize,
                                                                    "barrier_points": ctx.settings.barrier_points,
                                                                    "seed": ctx.settings.seed}))
    return out


def _basin_run(ctx: Context, job: Job, results: dict) -> BasinResult:
    from ..analyses.barrier import interpolate

    bsize = job.params["block_size"]
    data = _domain(ctx, job.target, bsize)
    final_e = max(m["checkpoint"] for m in job.params["models"])
    finals = {m["seed"]: m["run"] for m in job.params["models"] if m["checkpoint"] == final_e}
    rows = []
    for m in job.params["models"]:
        met = ctx.store.read_json(m["run"], "metrics.json")
        f = finals.get(m["seed"])
        if f is not None and f != m["run"]:
            b = interpolate(_model(ctx, m["run"]), _model(ctx, f), data.test, points=job.params["barrier_points"],
                            train_split=data.train, seed=ctx.settings.seed)
            barrier = (b.barrier_error, b.barrier_loss)
        else:
            barrier = (0.0, 0.0)
        rows.append(BasinRow(float(m["checkpoint"]), int(m["seed"]), m["run"], _nan(M.value(met, "test")),
                             _nan(met["speed_mean_acc_k"]), _nan(met["speed_steps_to_frac"]), *barrier))
    return BasinResult(tuple(rows), bsize, float(final_e))


def _flatness_run(ctx: Context, job: Job, results: dict) -> FlatnessModels:
    from ..analyses.flatness import flatness

    s = ctx.settings
    data = _domain(ctx, job.target)
    return FlatnessModels(tuple(ModelRow.of(m, flatness(_model(ctx, m["run"]), data.train, n_examples=s.flatness_examples,
                                                        iters=s.flatness_iters, tol=s.flatness_tol,
                                                        radii=s.flatness_radii, samples=s.flatness_samples,
                                                        seed=s.seed))
                                for m in job.params["models"]))


def _deviation_run(ctx: Context, job: Job, results: dict) -> DeviationModels:
    rows = []
    for m in job.params["models"]:
        h = ctx.store.read_json(m["run"], "history.json")
        modules = list(h["deviation"][0]) if h.get("deviation") else []
        per = [[d.get(k, math.nan) for k in modules] for d in h.get("deviation", [])]
        rows.append(ModelRow.of(m, DeviationResult(list(h["epoch"]), modules, per)))
    return DeviationModels(tuple(rows))


def _stability_run(ctx: Context, job: Job, results: dict) -> StabilityModels:
    from ..analyses.gradients import gradient_stability

    s = ctx.settings
    data = _domain(ctx, job.target)
    by_id = _by_id(ctx)
    out = []
    for m in job.params["models"]:
        spec = by_id[m["run"]]
        points = [(0.0, "init")] + [(float(e), f"epoch_{e:g}") for e in spec.train.checkpoint_epochs] \
            + [(float(spec.train.epochs), "weights")]
        rows = []
        for e, which in points:
            r = gradient_stability(_model(ctx, m["run"], which), data.train, lr=spec.train.lr, ks=s.stability_ks,
                                   n_examples=s.stability_examples, seed=s.seed)
            rows.append(StabilityPoint.of(r, e))
        out.append(ModelRow.of(m, StabilityCurve(rows)))
    return StabilityModels(tuple(out))


def _principal_run(ctx: Context, job: Job, results: dict) -> PrincipalModels:
    from ..analyses.gradients import principal_gradient

    s = ctx.settings
    data = _domain(ctx, job.target)
    return PrincipalModels(tuple(ModelRow.of(m, principal_gradient(_model(ctx, m["run"], "init"), data.train,
                                                                   top_k=s.principal_top_k,
                                                                   n_examples=s.principal_examples, seed=s.seed))
                                 for m in job.params["models"]))


def _scores_jobs(ctx: Context, missing: dict[str, str]) -> list[Job]:
    cfg = ctx.plan.config
    p = ctx.plan.pretrain()
    if ctx.store.run_status(p.run_id) != RUN_DONE:
        missing["scores"] = "needs the pre-trained model P"
        return []
    return [Job("scores", t.display, (p.run_id,), {"blocks": list(cfg.block_sizes), "target": to_dict(t),
                                                   "source": to_dict(cfg.source), "data": to_dict(cfg.data),
                                                   "n_source": ctx.settings.scores_source_examples,
                                                   "seed": ctx.settings.seed})
            for t in cfg.targets]


def _scores_run(ctx: Context, job: Job, results: dict) -> ScoresResult:
    from ..analyses.transferability import transferability_scores

    cfg = ctx.plan.config
    data = _domain(ctx, job.target)
    # source images balanced over the source classes (splits are stored class by class)
    src = cpu_sample(_domain(ctx, cfg.source.display).test, ctx.settings.scores_source_examples,
                     ctx.settings.seed).x \
        if cfg.has_source else None  # no source (a given P): the MMD is not measured
    model = _model(ctx, job.runs[0])
    layer = model.layer_names()[-2] if "pool" not in model.layer_names() else "pool"
    # P with a sigmoid per source label (a multi-label source) has no distribution over one label: no LEEP
    source_multilabel = M.metric_of(ctx.store.read_json(job.runs[0], "metrics.json")) == M.AUC
    res = {}
    for blk in job.params["blocks"]:
        d = _domain(ctx, job.target, blk)
        res[int(blk)] = transferability_scores(model, d.train.x, d.train.y, src, layer=layer,
                                               n_classes=data.num_classes, seed=ctx.settings.seed,
                                               source_multilabel=source_multilabel)
    return ScoresResult(res)


def _relate_jobs(ctx: Context, missing: dict[str, str]) -> list[Job]:
    if ctx.store.run_status(ctx.plan.pretrain().run_id) != RUN_DONE:
        return []
    runs = [r.run_id for r in ctx.plan.runs if ctx.store.run_status(r.run_id) == RUN_DONE]
    return [Job("relate", "all", tuple(sorted(runs)), {"seed": ctx.settings.seed})]


def _relate_run(ctx: Context, job: Job, results: dict) -> RelateResult:
    from ..analyses.transferability import rank_correlation

    points = []
    transfer: TransferResult | None = results.get("transfer/all")
    rows = transfer.rows if transfer else ()
    # gains in accuracy and in mean AUC are not ranked together: the cells of the metric of most rows are kept
    kept, left_out = one_scale([ScoreCell(r.target, r.block_size, r.gain, metric=r.metric) for r in rows])
    keep = {(c.target, c.block_size) for c in kept}
    for r in rows:
        if (r.target, r.block_size) not in keep:
            continue
        sc = _scores_at(results, r.target, r.block_size)
        if sc is None:
            continue
        points.append(RelatePoint(r.target, r.block_size, r.gain, r.pt.speed_mean_acc_k - r.rit.speed_mean_acc_k,
                                  sc.leep, sc.logme, sc.h_score, sc.mmd2_rbf))
    corr = {}
    for score in SCORE_NAMES:
        sign = -1.0 if score == "mmd2_rbf" else 1.0  # a smaller distance should mean more transfer
        for fig in ("gain", "speed_gain"):
            corr[f"{score}/{fig}"] = Correlation(**rank_correlation([sign * p.score(score) for p in points],
                                                                    [getattr(p, fig) for p in points],
                                                                    seed=job.params["seed"]))
    return RelateResult(tuple(points), corr,
                        "mmd2_rbf enters with its sign flipped (similarity), so a positive rho means agreement"
                        + (f"; {left_out}" if left_out else ""))


def _scores_at(results: dict[str, Any], target: str, block_size: int):
    """The transferability scores of P on ``target`` at ``block_size`` (a TransferabilityResult), or None."""
    sc: ScoresResult | None = results.get(f"scores/{target}")
    return sc.at(block_size) if sc else None


def _nan(x) -> float:
    return math.nan if x is None else float(x)


register(AnalysisSpec("transfer", "test accuracy and optimisation speed per target, block size and arm", 1,
                      _transfer_jobs, _transfer_run, TransferResult))
register(AnalysisSpec("mistakes", "common and uncommon mistakes of every pair", 1,
                      _pairs_jobs("mistakes", (PT_PT, RIT_RIT, PT_RIT), settings=("multilabel_threshold",)),
                      _mistakes_run, MistakesPairs))
register(AnalysisSpec("cka", "linear CKA per layer of every pair within an arm, and P against P-T", 1,
                      _pairs_jobs("cka", (PT_PT, RIT_RIT), with_p=True, settings=("cka_batch_size",)), _cka_run, CKAPairs))
register(AnalysisSpec("distance", "l2 parameter distance of every pair within an arm and of each model to its start",
                      1, _pairs_jobs("distance", (PT_PT, RIT_RIT, PT_P, RIT_RI)), _distance_run, DistancePairs))
register(AnalysisSpec("barrier", "interpolation curves and barriers of every pair, and from P to P-T", 1,
                      _pairs_jobs("barrier", (PT_PT, RIT_RIT, PT_RIT), with_p=True, settings=("barrier_points",)),
                      _barrier_run, BarrierPairs))
register(AnalysisSpec("criticality", "module criticality and rewinding curves of every P-T and RI-T model", 1,
                      _per_model_jobs("criticality", "criticality"), _criticality_run, CriticalityModels))
register(AnalysisSpec("basin", "P-T from earlier pre-training checkpoints against P-T from the final one", 1,
                      _basin_jobs, _basin_run, BasinResult))
register(AnalysisSpec("flatness", "top Hessian eigenvalue and loss under perturbations, every model", 1,
                      _per_model_jobs("flatness", "flatness"), _flatness_run, FlatnessModels, group="liu"))
register(AnalysisSpec("deviation", "relative weight deviation per module along training, every model", 1,
                      _per_model_jobs("deviation", None), _deviation_run, DeviationModels, group="liu"))
register(AnalysisSpec("stability", "loss and gradient change along a gradient step along training, every model", 1,
                      _per_model_jobs("stability", "stability"), _stability_run, StabilityModels, group="liu"))
register(AnalysisSpec("principal", "the initial gradient's energy on the top singular directions, every model", 2,
                      _per_model_jobs("principal", "principal"), _principal_run, PrincipalModels, group="liu"))
register(AnalysisSpec("scores", "LEEP, LogME, H-score and source-target MMD from P, per target and block size", 1,
                      _scores_jobs, _scores_run, ScoresResult, group="liu"))
register(AnalysisSpec("relate", "rank correlations of the scores with the measured gains", 1, _relate_jobs,
                      _relate_run, RelateResult, group="liu", needs=("transfer", "scores")))


# ------------------------------------------------------------------------------------------------ the loop

def job_key(ctx: Context, spec: AnalysisSpec, job: Job) -> str:
    """The cache key: the spec's name and version, the job's parameters and the content of every run it reads."""
    store = ctx.store
    contents = {rid: store.artefact_hashes(rid) for rid in job.runs}
    h = hashlib.sha256(json.dumps({"cache": CACHE_VERSION, "name": spec.name, "version": spec.version,
                                   "target": job.target, "params": job.params, "inputs": contents},
                                  sort_keys=True, default=str).encode())
    return f"{spec.name}-{file_safe(job.target)}-{h.hexdigest()[:12]}"


def analyze(plan: Plan, store: Store, settings: AnalysisConfig | None = None, show_progress: bool = True,
            device: str | None = None, *, executor: str = "local", address: str | None = None,
            threads: int = 0) -> AnalysisRun:
    """Compute every missing analysis of the study in ``store``; return all results (cached or new).

    A study with several pre-trained models is analysed once per P (:meth:`Plan.for_pretrain`: that P, its P-T
    runs, every RI-T run): the primary P's results are the returned run's (``analyses/index.json``), the others'
    are in its ``pretrained`` by pre-training seed (``analyses/index-P<seed>.json``). A job that does not depend
    on P (e.g. RI-T/RI-T pairs) has the same cache key under every P and is computed once.

    ``settings``: default, the study's own ``[analysis]`` table (``plan.config.analysis``). ``device``: where every
    analysis computes (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; default: the study's ``device``); one that
    is not there is an error before anything is computed. The results do not depend on it beyond the last bits
    of floating-point sums, so the cache keys do not name it.

    ``executor``: ``local`` (every job in this process, in the registry's order) or ``ray`` (each job a Ray task
    on the cluster at ``address``, a job waiting for the analyses it ``needs``:
    :func:`~transferscope.study.ray_executor.ray_analysis`). Either writes the same files. ``threads``: torch
    threads per job (0: locally, torch's current count; on Ray, the count the study's runs were trained with,
    ``threads.json``, else 1); on the CPU, a result is bitwise the same for the same count, whichever executor
    computed it."""
    check_config(settings or plan.config.analysis, "analysis.")  # a hand-edited study.json was planned unchecked
    if threads < 0:
        raise ConfigError(f"--threads {threads}: must be at least 1 (or 0: the default)")
    if executor == "ray":
        from .ray_executor import ray_analysis

        with ray_analysis(plan, store, device=device, address=address, threads=threads) as (compute, device):
            return _analyze_all(plan, store, settings, show_progress, device, compute)
    if executor != "local":
        raise ConfigError(f"--executor {executor!r}: one of 'local', 'ray'")
    device = str(resolve_device(device or plan.config.device))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _analyze_all(plan, store, settings, show_progress, device, compute_local)
    finally:
        torch.set_num_threads(before)


def _analyze_all(plan: Plan, store: Store, settings: AnalysisConfig | None, show_progress: bool, device: str,
                 compute: Compute) -> AnalysisRun:
    ps = plan.pretrains()
    out = _analyze_one(plan.for_pretrain(ps[0].seed), store, settings, show_progress, device, compute)
    for p in ps[1:]:
        out.pretrained[p.seed] = _analyze_one(plan.for_pretrain(p.seed), store, settings, show_progress, device,
                                              compute, index=f"index-P{p.seed}.json")
    return out


@dataclass(frozen=True)
class Pending:
    """A job whose result is not cached: computed into ``path`` (by :func:`compute_job`)."""

    spec: AnalysisSpec
    job: Job
    path: Path

    @property
    def name(self) -> str:
        return f"{self.spec.name}/{self.job.target}"


@dataclass(frozen=True)
class Outcome:
    """A computed job: its result as JSON text (what its file's ``result`` holds) and seconds, or why there is
    none (``missing``)."""

    text: str | None = None
    seconds: float = 0.0
    missing: str = ""


Compute = Callable[[Context, list[Pending], dict[str, Any], Callable[[], None]], dict[int, Outcome]]
"""How the jobs that are not cached are computed: ``(ctx, jobs, results, tick)`` -> outcome by index in ``jobs``.
``results`` holds the cached records; ``tick`` is called once per finished job. A job starts once every job of
the analyses it ``needs`` has ended, and gets their records only (:func:`inputs_of`)."""


def inputs_of(spec: AnalysisSpec, results: dict[str, Any]) -> dict[str, Any]:
    """The records ``spec.run`` reads: those of the analyses it needs."""
    return {k: v for k, v in results.items() if k.split("/", 1)[0] in spec.needs}


def record_of(spec: AnalysisSpec, text: str) -> Any:
    """A result's record from its JSON text, as a cached one reads."""
    return spec.result.from_dict(jsonio.loads(text))


def compute_job(ctx: Context, spec: AnalysisSpec, job: Job, results: dict[str, Any], path: str | Path) -> Outcome:
    """Compute one job and write its result file (atomically: a temporary file renamed into place, so that a job
    computed twice, or on two nodes at once, leaves one whole file). A damaged run or a failing analysis is
    returned as ``missing`` (one analysis failing must not lose the others); a folder that cannot be written
    raises :class:`StoreWriteError`."""
    t0 = time.perf_counter()
    try:
        result = spec.run(ctx, job, results)
    except StoreWriteError:
        raise
    except StoreError as e:  # a run's file is damaged: the message names it and the --rerun that repairs it
        log.warning("analysis %s on %s not computed: %s", spec.name, job.target, e)
        return Outcome(missing=f"not computed: {e}")
    except Exception as e:
        log.warning("analysis %s on %s failed: %s", spec.name, job.target, e, exc_info=True)
        return Outcome(missing=f"failed: {type(e).__name__}: {e}")
    seconds = time.perf_counter() - t0
    d = result.to_dict()
    atomic_write_text(Path(path), dumps({"analysis": spec.name, "version": spec.version, "target": job.target,
                                         "runs": list(job.runs), "params": job.params, "seconds": seconds,
                                         "result": d}))
    return Outcome(dumps(d), seconds)


def compute_local(ctx: Context, jobs: list[Pending], results: dict[str, Any], tick: Callable[[], None]
                  ) -> dict[int, Outcome]:
    """Every job in this process, in order (the registry's order puts an analysis after those it needs)."""
    results, out = dict(results), {}
    for i, p in enumerate(jobs):
        o = out[i] = compute_job(ctx, p.spec, p.job, inputs_of(p.spec, results), p.path)
        if o.text is not None:
            results[p.name] = record_of(p.spec, o.text)
        tick()
    return out


def _analyze_one(plan: Plan, store: Store, settings: AnalysisConfig | None, show_progress: bool, device: str,
                 compute: Compute, index: str = "index.json") -> AnalysisRun:
    """:func:`analyze` for a plan of one P; writes ``analyses/<index>``."""
    from tqdm.auto import tqdm

    settings = settings or plan.config.analysis
    ctx = Context(resolve(plan, store), store.root, settings, device)
    out = AnalysisRun()
    adir = store.root / "analyses"
    specs = [s for s in SPECS.values() if s.group == "neyshabur" or s.group in settings.groups]
    todo = [(s, j) for s in specs for j in s.jobs(ctx, out.missing)]
    bar = tqdm(total=len(todo), desc="analyses", disable=not show_progress, leave=False)
    cached: dict[int, tuple[str, Any]] = {}  # index in todo -> (key, record)
    pending: list[Pending] = []
    slot: dict[int, tuple[str, int]] = {}  # index in todo -> (key, index in pending)
    for i, (spec, job) in enumerate(todo):
        key = job_key(ctx, spec, job)
        path = adir / f"{key}.json"
        same = next((k for k, (key2, _) in slot.items() if key2 == key), None)
        if same is not None:  # the same job twice: computed once, then read as cached
            slot[i] = slot[same]
            continue
        if path.is_file():
            try:
                cached[i] = (key, spec.result.from_dict(jsonio.read(path)["result"]))
                bar.update(1)
                continue
            except (KeyError, TypeError, ValueError) as e:  # not JSON, or not of the record's shape
                log.warning("%s: unreadable (%s); computing it again", path, e)
        slot[i] = (key, len(pending))
        pending.append(Pending(spec, job, path))
    known = {f"{todo[i][0].name}/{todo[i][1].target}": r for i, (_, r) in cached.items()}
    done = compute(ctx, pending, known, lambda: bar.update(1)) if pending else {}
    first: set[int] = set()
    for i, (spec, job) in enumerate(todo):
        name = f"{spec.name}/{job.target}"
        if i in cached:
            key, out.results[name] = cached[i]
            out.cached.append(key)
        else:
            key, at = slot[i]
            o = done[at]
            if o.text is None:
                out.missing[f"{spec.name}-{job.target}"] = o.missing
                continue
            out.results[name] = record_of(spec, o.text)
            if at in first:
                out.cached.append(key)
            else:
                first.add(at)
                out.seconds[name] = o.seconds
                out.computed.append(key)
        out.files[name] = f"{key}.json"
    bar.close()
    try:
        images = _write_images(ctx.plan, store, out.results)
    except Exception as e:  # the report then says the images are missing; the results stay usable
        log.warning("images for the report failed: %s", e, exc_info=True)
        out.missing["images"] = f"failed: {type(e).__name__}: {e}"
        images = {}
    atomic_write_text(adir / index, dumps({
        "results": out.files, "images": images, "missing": out.missing,
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__}}))
    return out


def _write_images(plan: Plan, store: Store, results: dict[str, Any], per_row: int = 8) -> dict[str, str]:
    """Images the report shows (it reads no domain itself): per domain, one training image of each of the first
    ``per_row`` classes at every block size of the study; per target, the test images that P-T gets right and
    RI-T wrong and the reverse (first pair of seeds). One ``images-<domain>-<hash>.npz`` each; returns their names."""
    cfg = plan.config
    full = cfg.data.image_size
    out = {}
    for role, d in ([("source", cfg.source)] if cfg.has_source else []) + [("target", t) for t in cfg.targets]:
        name = d.display
        mis: MistakesPairs | None = results.get(f"mistakes/{name}")
        pair: PairMistakes | None = mis.first(PT_RIT) if mis else None
        pair_hash = hashlib.sha256(json.dumps(pair.to_dict() if pair else None, sort_keys=True).encode()).hexdigest()
        key = _key("images", name, {"per_row": per_row, "role": role, "blocks": cfg.block_sizes,
                                    "domain": to_dict(d), "data": to_dict(cfg.data), "pair": pair_hash})
        path = store.root / "analyses" / f"{key}.npz"
        out[name] = path.name
        if path.is_file():
            continue
        from .artefacts import domain_data as load

        data = load(d, cfg.data)
        y = data.train.y.numpy()
        # one image per class; multi-label: the first image where each label is present (its labels are a row)
        members = [(y[:, c] == 1) if y.ndim == 2 else (y == c) for c in range(data.num_classes)]
        first = [int(np.flatnonzero(m)[0]) for m in members if m.any()][:per_row]
        arrays = {"classes": np.asarray(data.classes, dtype=str), "sample_labels": y[first]}
        for b in ([full] if role == "source" else cfg.block_sizes):
            arrays[f"sample_b{b}"] = data.shuffled(b, cfg.data.shuffle_seed).train.x[first].numpy() if b != full \
                else data.train.x[first].numpy()
        if pair is not None:
            za = np.asarray(pair.test_index)
            labels = data.test.y.numpy()
            for which, pos in (("pt_right_ri_wrong", pair.only_b_wrong), ("ri_right_pt_wrong", pair.only_a_wrong)):
                pos = np.asarray(pos[: 2 * per_row], dtype=int)
                arrays[f"{which}_x"] = data.test.x[pos].numpy() if len(pos) else np.zeros((0, *data.test.x.shape[1:]), np.uint8)
                arrays[f"{which}_y"] = labels[pos]
                arrays[f"{which}_index"] = za[pos] if len(za) else pos
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
    return out



def _key(name: str, target: str, args: dict) -> str:
    h = hashlib.sha256(json.dumps({"name": name, "args": args}, sort_keys=True, default=str).encode())
    return f"{name}-{file_safe(target)}-{h.hexdigest()[:10]}"

# ------------------------------------------------------------------------------------------------ evidence and claims

def _pairs(res: PairsResult | None, kind: str, value: Callable[[Any], float]) -> PerPair:
    rows = res.of_kind(kind) if res else ()
    return PerPair({(p.seeds[0], p.seeds[1]): _nan(value(p.result)) for p in rows})


def _models(res: ModelsResult | None, arm: str, value: Callable[[Any], float]) -> PerSeed:
    return PerSeed({m.seed: _nan(value(m.result)) for m in (res.of_arm(arm) if res else ())})


def _body(names: list[str]) -> list[int]:
    return [i for i, n in enumerate(names) if not n.startswith("head")]


def _finite_mean(values: list[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _mean_body(values: list, names: list[str]) -> float:
    return _finite_mean([_nan(values[i]) for i in _body(names)])


def _target_distances(plan: Plan, results: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """Distance of each target from the source: declared in the config (``distance`` of every target), else
    measured: the MMD^2 between P's features of source and target images, unshuffled."""
    cfg = plan.config
    declared = {t.display: t.distance for t in cfg.targets if getattr(t, "distance", -1.0) >= 0}
    if declared and len(declared) == len(cfg.targets):
        return {t: (d, "declared in the study config (targets.distance)") for t, d in declared.items()}
    out = {}
    for t in cfg.targets:
        sc = _scores_at(results, t.display, cfg.data.image_size)
        if sc is not None:
            out[t.display] = (sc.mmd2_rbf, "measured: MMD^2 (RBF) between P's features of source and target images, "
                                           "unshuffled")
    return out


def gather_evidence(plan: Plan, results: dict[str, Any], caveats: tuple[Caveat, ...] = ()) -> Evidence:
    """The typed evidence of every claim, from the analysis records (cached or new) of a study, with the caveats of
    its runs (:func:`transferscope.study.caveats.study_caveats`)."""
    cfg = plan.config
    full = cfg.data.image_size
    transfer: TransferResult | None = results.get("transfer/all")
    rows = transfer.rows if transfer else ()
    dist = _target_distances(plan, results)
    targets = []
    for t in cfg.targets:
        name = t.display
        acc, speed, metric = {}, {}, "acc"
        for r in rows:
            if r.target != name:
                continue
            metric = r.metric
            for arm in (PT, RIT):
                per = r.arm(arm).per_seed
                acc[(arm, r.block_size)] = PerSeed({int(s.seed): _nan(s.test_acc) for s in per})
                speed[(arm, r.block_size)] = PerSeed({int(s.seed): _nan(s.speed_mean_acc_k) for s in per})
        mis: MistakesPairs | None = results.get(f"mistakes/{name}")
        cka: CKAPairs | None = results.get(f"cka/{name}")
        dst: DistancePairs | None = results.get(f"distance/{name}")
        bar: BarrierPairs | None = results.get(f"barrier/{name}")
        first_cka = cka.first(PT_PT) if cka else None
        layers = first_cka.layers if first_cka else []
        # the full-data estimate where it was computed (full=False keeps only the minibatch one)
        cka_key = "full" if first_cka is not None and first_cka.has_full else "minibatch"
        crit: CriticalityModels | None = results.get(f"criticality/{name}")
        modules: list[str] = []
        per_crit: dict[str, dict[int, tuple[float, ...]]] = {}
        crit_note = ""  # one architecture: every model's note is the same; N8 reads it when it cannot rank
        for m in crit.models if crit else ():
            c = m.result
            names = c.modules
            crit_note = crit_note or c.note
            modules = [names[i] for i in _body(names)]
            degenerate = c.degenerate or [False] * len(names)
            # infeasible (inf): the most critical; a module that did not move (degenerate): left out (NaN)
            per_crit.setdefault(m.arm, {})[m.seed] = tuple(math.nan if degenerate[i] else float(c.criticality[i])
                                                           for i in _body(names))
        basin, final_e = {}, math.nan
        b: BasinResult | None = results.get(f"basin/{name}")
        if b:
            final_e = b.final_checkpoint
            for br in b.rows:
                basin.setdefault(br.checkpoint, {})[br.seed] = br.test_acc
        flat, dev, stab, pg = (results.get(f"{k}/{name}") for k in ("flatness", "deviation", "stability", "principal"))
        d, how = dist.get(name, (math.nan, ""))
        targets.append(TargetEvidence(
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
            basin={e: PerSeed(v) for e, v in basin.items()}, basin_final=final_e,
            top_eigenvalue={a: _models(flat, a, lambda r: r.top_eigenvalue) for a in (PT, RIT)},
            deviation={a: _models(dev, a, lambda r: _mean_body(r.deviation[-1], r.modules)
                                  if r.deviation else math.nan) for a in (PT, RIT)},
            grad_lipschitz={a: _models(stab, a, lambda r: _finite_mean([_nan(v) for p in r.points
                                                                         for v in p.grad_lipschitz]))
                            for a in (PT, RIT)},
            principal={a: _models(pg, a, lambda r: _mean_body([f[0] if f else None for f in r.fraction],
                                                                  r.modules or r.weights))
                       for a in (PT, RIT)}))
    cells = []
    for r in rows:
        sc = _scores_at(results, r.target, r.block_size)
        if sc is None:
            continue
        cells.append(ScoreCell(r.target, r.block_size, r.gain, {INPUT_SCORE: -sc.mmd2_rbf, LABEL_SCORE: sc.leep,
                                                                 "logme": sc.logme, "h_score": sc.h_score}, r.metric))
    p = plan.pretrain()
    m = cfg.model
    which = (f"given as {m.weights}, sha256 {m.weights_sha256[:16]}" if m.weights else
             f"{cfg.source.display}, pre-training seed {cfg.pretrain_seed}")
    return Evidence(tuple(targets), full, tuple(sorted(cfg.block_sizes, reverse=True)), cfg.finetune.speed_epochs,
                    tuple(cells), conditional_on=f"one pre-trained model P ({which}, run {p.run_id}); P-T and RI-T "
                                                 f"seeds {', '.join(map(str, cfg.seeds))}", caveats=tuple(caveats))


def _pairs_as_seeds(res: DistancePairs | None, kind: str) -> PerSeed:
    """A model-to-its-start distance (a 'pair' of one run with its own init) as a per-seed value."""
    return PerSeed({p.seeds[0]: _nan(p.result.total) for p in (res.of_kind(kind) if res else ())})


def verdicts(plan: Plan, results: dict[str, dict], store: Store | None = None) -> list[Verdict]:
    """The verdict of every claim (N1-N9, L1-L5) on a study's analysis results under its primary P (the results
    of :func:`analyze`'s returned run); with ``store``, each carries the caveats of the runs it rests on."""
    view = plan.for_pretrain()
    return judge(gather_evidence(view, results, study_caveats(view, store) if store is not None else ()))


def verdicts_by_pretrain(plan: Plan, run: AnalysisRun, store: Store | None = None) -> dict[int, list[Verdict]]:
    """The verdicts under each pre-trained model P of the study, by pre-training seed (the primary first); each is
    conditional on its P, and with ``store`` carries the caveats of its runs.
    :func:`transferscope.claims.across_pretrained` puts them side by side."""
    ps = plan.pretrains()
    out = {ps[0].seed: verdicts(plan, run.results, store)}
    for p in ps[1:]:
        sub = run.pretrained.get(p.seed)
        view = plan.for_pretrain(p.seed)
        out[p.seed] = judge(gather_evidence(view, sub.results if sub else {},
                                            study_caveats(view, store) if store is not None else ()))
    return out


def format_verdicts(vs: list[Verdict], by_pretrain: dict[int, list[Verdict]] | None = None) -> str:
    """The verdicts as text; with several pre-trained models, each claim's outcome under every P follows."""
    lines = []
    numbers: dict = {}  # caveat -> its number in the list after the verdicts
    for v in vs:
        lines.append(f"claim {v.claim}: {v.statement}\n  -> {v.outcome.upper()}. {v.why}")
        for t in v.targets:
            for e in t.effects:
                if not math.isfinite(e.value):  # a statistic that could not be computed: its reason, no numbers
                    lines.append(f"     {t.target}: {e.name}: not measured: {e.why}")
                    continue
                span = (f"[{e.low:+.3g}, {e.high:+.3g}]" if math.isfinite(e.low) and math.isfinite(e.high)
                        else "[no interval]")
                lines.append(f"     {t.target}: {e.name} = {e.value:+.3g} {span} "
                             f"(claim: {e.claim_side}; n = {e.n} {e.counted}) -> {e.outcome}")
            if not t.effects:
                lines.append(f"     {t.target}: not measured: {t.why}")
            if t.statistical_outcome:
                lines.append(f"     {t.target}: {t.outcome.upper()} (the statistics alone: {t.statistical_outcome})")
            if t.caveats:  # by number: each caveat is written out once, after the verdicts
                refs = [f"[{numbers.setdefault(c, len(numbers) + 1)}]{'!' if c.blocking else ''} {c.short}"
                        for c in t.caveats]
                lines.append(f"     {t.target}: rests on: {'; '.join(refs)}")
    if numbers:
        lines.append("\ncaveats the verdicts rest on ('!': blocking, a decisive outcome resting on it is unreliable):")
        for c, i in numbers.items():
            lines.append(f"  [{i}]{'!' if c.blocking else ''} {c.target}, {c.arm or 'the target'}: [{c.kind}] {c.message}"
                         + (f"; way out: {c.remedy}" if c.remedy else ""))
    if vs and vs[0].conditional_on:
        lines.append(f"every verdict is conditional on {vs[0].conditional_on}")
    if by_pretrain and len(by_pretrain) > 1:
        seeds = list(by_pretrain)
        lines.append(f"\nunder each pre-trained model (P of seed {', '.join(map(str, seeds))}):")
        for a in across_pretrained(by_pretrain):
            per = "  ".join(f"P{s}: {a.outcomes[s]}" for s in seeds)
            lines.append(f"  claim {a.claim}: {a.outcome.upper()}  ({per})")
    return "\n".join(lines)


def write_claims(store: Store, vs: list[Verdict], by_pretrain: dict[int, list[Verdict]] | None = None,
                 plan: Plan | None = None) -> Path:
    """``analyses/claims.json``: the rule, the verdicts under the primary P (``verdicts``) and, per pre-trained
    model, its verdicts (``pretrained``: seed, run id, verdicts) and the claims' outcomes side by side
    (``across_pretrained``, see :func:`transferscope.claims.across_pretrained`)."""
    path = store.root / "analyses" / "claims.json"
    from ..claims import stats

    by_pretrain = by_pretrain or {}
    runs = {p.seed: p.run_id for p in plan.pretrains()} if plan is not None else {}
    atomic_write_text(path, dumps({
        "rule": {"level": stats.LEVEL, "min_seeds": stats.MIN_SEEDS,
                 "correction": "Holm over claims x targets x effects at one-sided 0.025, in both directions: an "
                               "effect holds or does not hold only when the smaller of its one-sided p-values "
                               "(times the Bonferroni factor of its level) survives it",
                 "caveats": "a decisive outcome that rests on runs that did not fit their training data, or whose "
                            "files changed, is 'unreliable'; other caveats are listed beside the verdict",
                 "across_pretrained": "holds (does not hold) when it holds (does not hold) under every P; "
                                      "'depends on P' when it holds under one and does not under another"},
        "verdicts": [v.to_dict() for v in vs],
        "pretrained": [{"seed": s, "run": runs.get(s, ""), "verdicts": [v.to_dict() for v in pvs]}
                       for s, pvs in by_pretrain.items()],
        "across_pretrained": [a.to_dict() for a in across_pretrained(by_pretrain)]}))
    return path
