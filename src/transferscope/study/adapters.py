"""The product side of each analysis: which jobs it has on a study, and how one job is computed from the runs.

``*_jobs(ctx, missing)`` lists an analysis' jobs (one per target, or one for the study), with their typed
parameters (:class:`~transferscope.study.jobs.Job`); ``*_run(spec, ctx, job, results)`` computes one job's record.
The adapters of the analyses of models load each pair's or model's weights and call ``spec.kernel`` (the uniform
call of :mod:`transferscope.analyses.kernels`) with ``spec.kernel_options(settings)``: the very object the
registry holds and the contract tests drive. The registrations are at the end of
:mod:`transferscope.study.registry`.

Pairs come from :mod:`transferscope.vocab.arms`: every pair of distinct seeds within an arm, every P-T/RI-T pair,
and each model with its start (P-T with P, RI-T with its random initialisation).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from .. import jsonio
from .. import metrics as M
from ..config import to_dict
from ..devices import cpu_sample
from ..store import RUN_DONE, atomic_write_text, dumps
from ..vocab import arms
from ..vocab.arms import P_PT, PT, PT_P, PT_PT, PT_RIT, RIT
from ..vocab.evidence import ScoreCell, one_scale
from ..vocab.records import (
    SCORE_NAMES,
    BasinResult,
    BasinRow,
    Correlation,
    DeviationModels,
    DeviationResult,
    MistakesPairs,
    ModelRow,
    PairMistakes,
    RelatePoint,
    RelateResult,
    ScoresResult,
    StabilityCurve,
    StabilityModels,
    StabilityPoint,
    TransferResult,
    TransferRow,
    scores_at,
)
from ..vocab.results import read_float
from .artefacts import domain_data, load_run_model
from .jobs import CACHE_VERSION, CheckpointRef, Context, Job, ModelRef, PairRef, target_key
from .plan import RunSpec, data_identity
from .summary import results_table

if TYPE_CHECKING:
    from .registry import AnalysisSpec

__all__ = ["transfer_jobs", "transfer_run", "pair_jobs", "mistakes_run", "pairs_run", "cka_run", "barrier_run",
           "model_jobs", "models_run", "criticality_run", "stability_run", "principal_run", "deviation_run",
           "basin_jobs", "basin_run", "scores_jobs", "scores_run", "relate_jobs", "relate_run"]


# ------------------------------------------------------------------------------------------------ the study's runs

def _finished(ctx: Context, runs: list[RunSpec]) -> list[RunSpec]:
    store = ctx.store
    return [r for r in runs if store.run_status(r.run_id) == RUN_DONE]


def _arm_runs(ctx: Context, target: str, block: int, arm: str, ckpt: float = -1.0) -> list[RunSpec]:
    """The finished runs of ``arm`` on ``target`` at block size ``block`` (P-T: from P's checkpoint ``ckpt``, -1:
    its final weights), by seed."""
    return sorted(_finished(ctx, [r for r in ctx.plan.runs if r.arm == arm and r.domain.display == target
                                  and r.block_size == block and r.parent_checkpoint == ckpt]), key=lambda r: r.seed)


def _load_model(ctx: Context, run_id: str, which: str = "weights") -> torch.nn.Module:
    """A finished run's model on the context's device: ``weights`` (final), ``init`` or ``epoch_<e>``."""
    return load_run_model(ctx.store, ctx.plan.by_id()[run_id], which, ctx.device)


def _target_data(ctx: Context, target: str, block: int | None = None):
    """The data of ``target`` (or of the source, by its display name), block-shuffled at ``block`` if given."""
    cfg = ctx.plan.config
    d = next(t for t in cfg.targets if t.display == target) if target != cfg.source.display else cfg.source
    with torch.device("cpu"):  # the images are kept (and shuffled) on the CPU; each analysis moves what it takes
        data = domain_data(d, cfg.data)
        full = cfg.data.image_size
        return data if block in (None, full) else data.shuffled(block, cfg.data.shuffle_seed)


def _prefixed_settings(ctx: Context, prefix: str | None) -> tuple[tuple[str, Any], ...]:
    """The analysis settings whose names start with ``prefix`` (None: none of them), and the seed."""
    s = ctx.settings
    names = [k for k in s.__dataclass_fields__ if prefix is not None and k.startswith(prefix)]
    return tuple((k, getattr(s, k)) for k in names if k != "seed") + (("seed", s.seed),)


def _targets(ctx: Context) -> list[str]:
    return [t.display for t in ctx.plan.config.targets]



# ------------------------------------------------------------------------------------------------ transfer

def transfer_jobs(ctx: Context, missing: dict[str, str]) -> list[Job]:
    runs = [r.run_id for r in ctx.plan.runs if r.arm != "P" and ctx.store.run_status(r.run_id) == RUN_DONE]
    return [Job("transfer", "all", tuple(sorted(runs)))]


def transfer_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> TransferResult:
    cfg = ctx.plan.config
    rows = tuple(TransferRow(r["target"], r["block_size"], read_float(r["gain"]), r[PT], r[RIT], r.get("metric", "acc"))
                 for r in results_table(ctx.plan, ctx.store))
    return TransferResult(rows, cfg.finetune.speed_epochs, cfg.finetune.speed_fraction)


# ------------------------------------------------------------------------------------------------ pairs of models

def _target_pairs(ctx: Context, target: str, missing: dict[str, str], kinds: tuple[str, ...],
                  min_per_arm: int = 2) -> list[arms.Pair] | None:
    full = ctx.plan.config.data.image_size
    pt, ri = _arm_runs(ctx, target, full, PT), _arm_runs(ctx, target, full, RIT)
    if len(pt) < min_per_arm or len(ri) < min_per_arm:
        missing[f"pairs-{target}"] = (f"needs {min_per_arm} finished P-T and RI-T runs at block {full}; has "
                                      f"{len(pt)} and {len(ri)}")
        return None
    every = arms.pairs_of(pt, ri, ctx.settings.pairs_per_seed, ctx.settings.seed)
    return [p for k in kinds for p in every[k]]


def _pair_ref(p: arms.Pair) -> PairRef:
    return PairRef(p.kind, (int(p.seeds[0]), int(p.seeds[1])), (p.a.run_id, p.b.run_id), p.which_b)


def pair_jobs(ctx: Context, missing: dict[str, str], *, name: str, kinds: tuple[str, ...], with_p: bool = False,
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
        ids = sorted({p.a.run_id for p in pairs} | {p.b.run_id for p in pairs})
        used = tuple((k, getattr(ctx.settings, k)) for k in settings) + (("seed", ctx.settings.seed),)
        out.append(Job(name, t, tuple(ids), pairs=tuple(_pair_ref(p) for p in pairs), settings=used))
    return out


def pairs_of(name: str, kinds: tuple[str, ...], with_p: bool = False, settings: tuple[str, ...] = ()):
    """The jobs of a pair analysis (:func:`pair_jobs` with these arguments; a partial, so it pickles)."""
    return partial(pair_jobs, name=name, kinds=kinds, with_p=with_p, settings=settings)


def mistakes_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> MistakesPairs:
    """From the test logits each run stored when it ended (the models' own predictions; the kernel computes the
    same logits from the models and ends in the same :func:`~transferscope.analyses.mistakes.mistakes_from_logits`)."""
    from ..analyses.mistakes import mistakes_from_logits

    store, rows = ctx.store, []
    threshold = job.setting("multilabel_threshold")
    for p in job.pairs:
        za, zb = store.read_npz(p.runs[0]), store.read_npz(p.runs[1])
        # single-label: the arg-max class per example; multi-label: per (example, label) at the threshold
        m = mistakes_from_logits(za["test_logits"], zb["test_logits"], za["test_labels"], threshold=threshold)
        rows.append(p.row(PairMistakes.of(m, za["test_index"].tolist())))
    return MistakesPairs(tuple(rows))


def _each_pair(spec: AnalysisSpec, ctx: Context, job: Job, *, from_p: bool, seed: int) -> Any:
    data = _target_data(ctx, job.target)
    options = spec.kernel_options(ctx.settings)
    rows = []
    for p in job.pairs:
        a, b = _load_model(ctx, p.runs[0]), _load_model(ctx, p.runs[1], p.which_b)
        if from_p and p.kind == P_PT:
            a, b = b, a  # from P (the start, lambda 0) to P-T (lambda 1)
        rows.append(p.row(spec.kernel(a, b, data, seed=seed, **options)))
    return spec.result(tuple(rows))


def pairs_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> Any:
    """Distance: ``spec.kernel(a, b, target data)`` on each pair, ``a`` the pair's first run's final weights
    and ``b`` the second's (``which_b``: ``init``, the start of the run: P with the new head for P-T, RI for
    RI-T). It draws nothing: its records say seed 0, as every such file has said, so that one cache key (which
    hashes the study's seed) never names two contents. (CKA, which draws nothing either, is :func:`cka_run`.)"""
    return _each_pair(spec, ctx, job, from_p=False, seed=0)


CKA_SIDES_BYTES = 1 << 30
"""The most memory the sides of one CKA job keep for the pairs still to come (wide layers hold about 8 n^2 bytes
each for n test images); past it, a side is computed for its pair and dropped."""


def cka_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> Any:
    """CKA: as :func:`pairs_run`, with each model passed over the test images once for all its pairs, its features
    reduced to what CKA with any other model reads (:func:`~transferscope.analyses.cka.cka_side`, kept within
    :data:`CKA_SIDES_BYTES`): each row is bitwise the kernel's on its two models, in a fraction of the time when a
    model is in several pairs."""
    from dataclasses import replace

    from ..analyses.cka import cka_of_sides, cka_side
    from ..analyses.kernels import test_sample

    data = _target_data(ctx, job.target)
    options = spec.kernel_options(ctx.settings)
    x = test_sample(data, options["examples"], ctx.settings.seed).x  # the kernel's images, once for every model
    seed = ctx.settings.seed if options["examples"] > 0 else 0  # it draws only when it samples
    kept: dict[tuple[str, str], Any] = {}
    room = [CKA_SIDES_BYTES]

    def side(run: str, which: str) -> Any:
        if (run, which) in kept:
            return kept[run, which]
        model = _load_model(ctx, run, which)
        s = cka_side(model, x, layers=model.layer_names(), batch_size=options["batch_size"])
        size = sum(t.numel() * t.element_size() for lay in s.by_layer.values()
                   for t in (*lay.grams, *lay.minis, *lay.chunks))
        if size <= room[0]:
            kept[run, which] = s
            room[0] -= size
        return s

    rows = [p.row(replace(cka_of_sides(side(p.runs[0], "weights"), side(p.runs[1], p.which_b)), seed=seed))
            for p in job.pairs]
    return spec.result(tuple(rows))


def barrier_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> Any:
    """The barrier: as :func:`pairs_run`, except that P/P-T goes from P (lambda 0) to P-T (lambda 1)."""
    return _each_pair(spec, ctx, job, from_p=True, seed=ctx.settings.seed)


# ------------------------------------------------------------------------------------------------ one model at a time

def model_jobs(ctx: Context, missing: dict[str, str], *, name: str, prefix: str | None,
               arms_: tuple[str, ...] = (PT, RIT)) -> list[Job]:
    """One job per target over every seed of the given arms (unshuffled); the settings starting with ``prefix``."""
    full = ctx.plan.config.data.image_size
    out = []
    for t in _targets(ctx):
        models = [r for a in arms_ for r in _arm_runs(ctx, t, full, a)]
        if not all(_arm_runs(ctx, t, full, a) for a in arms_):
            missing[f"{name}-{t}"] = f"needs finished {' and '.join(arms_)} runs at block {full}"
            continue
        out.append(Job(name, t, tuple(r.run_id for r in models),
                       models=tuple(ModelRef(r.arm, r.seed, r.run_id) for r in models),
                       settings=_prefixed_settings(ctx, prefix)))
    return out


def models_of(name: str, prefix: str | None):
    """The jobs of an analysis of every model (:func:`model_jobs`; a partial, so it pickles)."""
    return partial(model_jobs, name=name, prefix=prefix)


def _row_path(ctx: Context, spec: AnalysisSpec, job: Job, m: ModelRef) -> Any:
    """Where one model's row of an analysis of single models is kept: keyed by the analysis (name, version), the
    target, the job's settings, the model's arm and seed, and the content of its run's files."""
    key = hashlib.sha256(json.dumps({"cache": CACHE_VERSION, "name": spec.name, "version": spec.version,
                                     "target": target_key(ctx.plan, job.target)[1], "settings": dict(job.settings),
                                     "model": m.to_dict(),
                                     "inputs": ctx.store.artefact_hashes(m.run)},
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    return ctx.root / "analyses" / "rows" / spec.name / f"{key}.json"


def _rows(spec: AnalysisSpec, ctx: Context, job: Job, compute: Callable[[ModelRef], Any]) -> Any:
    """The job's result, one row per model, each computed once per run: a row kept by an earlier job of the same
    analysis and settings on the same run (a study that grows by rounds adds models to a target's job) is read back
    (``analyses/rows/``) instead of computed again; each model's row depends on that model alone."""
    rows = []
    for m in job.models:
        path = _row_path(ctx, spec, job, m)
        if path.is_file():
            try:
                rows.append(ModelRow.from_dict(jsonio.loads(path.read_text(encoding="utf-8")), spec.result.inner))
                continue
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass  # a damaged row file: computed again and rewritten
        row = m.row(compute(m))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, dumps(row.to_dict()))
        rows.append(row)
    return spec.result(tuple(rows))


def models_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> Any:
    """Flatness: ``spec.kernel(model, model, training data)`` on each model's final weights."""
    data = _target_data(ctx, job.target)
    options = spec.kernel_options(ctx.settings)

    def one(m: ModelRef) -> Any:
        model = _load_model(ctx, m.run)
        return spec.kernel(model, model, data, seed=ctx.settings.seed, **options)

    return _rows(spec, ctx, job, one)


def criticality_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> Any:
    """``spec.kernel(final weights, theta^0)`` on each model, theta^0 the run's start (``init``, checked against
    its recorded sha256): P with the new head for P-T, RI for RI-T."""
    data = _target_data(ctx, job.target)
    options = spec.kernel_options(ctx.settings)

    def one(m: ModelRef) -> Any:
        final, start = _load_model(ctx, m.run), _load_model(ctx, m.run, "init")
        return spec.kernel(final, start, data, seed=ctx.settings.seed, **options)

    return _rows(spec, ctx, job, one)


def principal_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> Any:
    """``spec.kernel`` on each model's start (``init``): the initial gradient, pre-trained against random."""
    data = _target_data(ctx, job.target)
    options = spec.kernel_options(ctx.settings)

    def one(m: ModelRef) -> Any:
        start = _load_model(ctx, m.run, "init")
        return spec.kernel(start, start, data, seed=ctx.settings.seed, **options)

    return _rows(spec, ctx, job, one)


def stability_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> StabilityModels:
    """``spec.kernel`` on each model at its start, every checkpoint and its end, with eta its run's learning
    rate."""
    data = _target_data(ctx, job.target)
    options = spec.kernel_options(ctx.settings)
    by_id = ctx.plan.by_id()

    def one(m: ModelRef) -> StabilityCurve:
        run = by_id[m.run]
        points = [(0.0, "init")] + [(float(e), f"epoch_{e:g}") for e in run.train.checkpoint_epochs] \
            + [(float(run.train.epochs), "weights")]
        rows = []
        for e, which in points:
            model = _load_model(ctx, m.run, which)
            r = spec.kernel(model, model, data, seed=ctx.settings.seed, lr=run.train.lr, **options)
            rows.append(StabilityPoint.of(r, e))
        return StabilityCurve(rows)

    return _rows(spec, ctx, job, one)


def deviation_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> DeviationModels:
    """From each run's training history (recorded while it trained)."""
    rows = []
    for m in job.models:
        h = ctx.store.read_json(m.run, "history.json")
        modules = list(h["deviation"][0]) if h.get("deviation") else []
        per = [[d.get(k, math.nan) for k in modules] for d in h.get("deviation", [])]
        rows.append(m.row(DeviationResult(list(h["epoch"]), modules, per)))
    return DeviationModels(tuple(rows))


# ------------------------------------------------------------------------------------------------ basin

def basin_jobs(ctx: Context, missing: dict[str, str]) -> list[Job]:
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
        rows = [CheckpointRef(float(ctx.plan.pretrain().train.epochs), r.seed, r.run_id) for r in final]
        rows += [CheckpointRef(e, r.seed, r.run_id) for e in sweep for r in _arm_runs(ctx, t, bsize, PT, e)]
        out.append(Job("basin", t, tuple(r.run for r in rows), models=tuple(rows),
                       settings=(("block_size", bsize), ("barrier_points", ctx.settings.barrier_points),
                                 ("barrier_examples", ctx.settings.barrier_examples), ("seed", ctx.settings.seed))))
    return out


def basin_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> BasinResult:
    """Each P-T run's figures, and its barrier to the P-T run of the same seed from P's final weights."""
    from ..analyses.kernels import barrier

    bsize = job.setting("block_size")
    data = _target_data(ctx, job.target, bsize)
    final_e = max(m.checkpoint for m in job.models)
    finals = {m.seed: m.run for m in job.models if m.checkpoint == final_e}
    rows = []
    for m in job.models:
        met = ctx.store.read_json(m.run, "metrics.json")
        f = finals.get(m.seed)
        if f is not None and f != m.run:
            b = barrier(_load_model(ctx, m.run), _load_model(ctx, f), data, points=job.setting("barrier_points"),
                        examples=job.setting("barrier_examples"), seed=ctx.settings.seed)
            heights = (b.barrier_error, b.barrier_loss)
        else:
            heights = (0.0, 0.0)
        rows.append(BasinRow(float(m.checkpoint), int(m.seed), m.run, read_float(M.value(met, "test")),
                             read_float(met["speed_mean_acc_k"]), read_float(met["speed_steps_to_frac"]), *heights))
    return BasinResult(tuple(rows), bsize, float(final_e))


# ------------------------------------------------------------------------------------------------ scores, relate

def scores_jobs(ctx: Context, missing: dict[str, str]) -> list[Job]:
    cfg = ctx.plan.config
    p = ctx.plan.pretrain()
    if ctx.store.run_status(p.run_id) != RUN_DONE:
        missing["scores"] = "needs the pre-trained model P"
        return []
    return [Job("scores", t.display, (p.run_id,), settings=(
        # what the data is, for the cache key (no label: renaming a domain recomputes nothing)
        ("blocks", list(cfg.block_sizes)), ("target", data_identity(t)), ("source", data_identity(cfg.source)),
        ("data", to_dict(cfg.data)), ("n_source", ctx.settings.scores_source_examples), ("seed", ctx.settings.seed)))
        for t in cfg.targets]


def scores_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> ScoresResult:
    """``spec.kernel(P, P, target data at each block size)``, with source images balanced over its classes."""
    cfg = ctx.plan.config
    s = ctx.settings
    # source images balanced over the source classes (splits are stored class by class)
    src = cpu_sample(_target_data(ctx, cfg.source.display).test, s.scores_source_examples, s.seed).x \
        if cfg.has_source else None  # no source (a given P): the MMD is not measured
    model = _load_model(ctx, job.runs[0])
    layer = model.layer_names()[-2] if "pool" not in model.layer_names() else "pool"
    # P with a sigmoid per source label (a multi-label source) has no distribution over one label: no LEEP
    source_multilabel = M.metric_of(ctx.store.read_json(job.runs[0], "metrics.json")) == M.AUC
    res = {}
    for blk in job.setting("blocks"):
        d = _target_data(ctx, job.target, blk)
        res[int(blk)] = spec.kernel(model, model, d, seed=s.seed, source_x=src, layer=layer,
                                    source_multilabel=source_multilabel, **spec.kernel_options(s))
    return ScoresResult(res)


def relate_jobs(ctx: Context, missing: dict[str, str]) -> list[Job]:
    if ctx.store.run_status(ctx.plan.pretrain().run_id) != RUN_DONE:
        return []
    runs = [r.run_id for r in ctx.plan.runs if ctx.store.run_status(r.run_id) == RUN_DONE]
    return [Job("relate", "all", tuple(sorted(runs)), settings=(("seed", ctx.settings.seed),))]



def relate_run(spec: AnalysisSpec, ctx: Context, job: Job, results: dict) -> RelateResult:
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
        sc = scores_at(results, r.target, r.block_size)
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
                                                                    seed=job.setting("seed")))
    return RelateResult(tuple(points), corr,
                        "mmd2_rbf enters with its sign flipped (similarity), so a positive rho means agreement"
                        + (f"; {left_out}" if left_out else ""))
