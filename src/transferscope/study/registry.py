"""The one registry of the analyses: what ``analyze`` runs, locally and on Ray, and what the tests iterate.

Each analysis is registered once, as one :class:`AnalysisSpec`: its name, version and summary; ``jobs`` (what it
computes on a study: one :class:`~transferscope.study.jobs.Job` per target, or one for the study) and ``run``
(computes one job's record); the record type of its file (``result``); the analyses whose records it reads
(``needs``); and, for the analyses of models, its ``kernel`` (the uniform call of
:mod:`transferscope.analyses.kernels`, which ``run`` calls on each pair or model of the study) with ``options``
(the kernel's options from the study's ``[analysis]`` settings). The contract tests drive ``kernel`` and
``options`` of the objects :func:`list_analyses` returns, and the adapters (:mod:`transferscope.study.adapters`)
call the kernel through the spec they are given, so a wrong adapter or a wrong setting cannot hide behind a
second, test-only registry. Every analysis is registered at the end of this module.

The cache key of a job (:func:`~transferscope.study.jobs.job_key`) is a hash of the spec's name and version, the
job's parameters and the content of the runs it reads: a spec's ``version`` is bumped when its result changes
meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..analyses import kernels
from ..config import AnalysisConfig
from ..vocab.arms import PT_P, PT_PT, PT_RIT, RIT_RI, RIT_RIT
from ..vocab.records import (
    BarrierPairs,
    BasinResult,
    CKAPairs,
    CriticalityModels,
    DeviationModels,
    DistancePairs,
    FlatnessModels,
    MistakesPairs,
    PrincipalModels,
    RelateResult,
    ScoresResult,
    StabilityModels,
    TransferResult,
)
from ..vocab.results import (
    BarrierResult,
    CKAResult,
    CriticalityResult,
    DistanceResult,
    FlatnessResult,
    MistakesResult,
    PrincipalGradientResult,
    StabilityResult,
    TransferabilityResult,
)
from . import adapters as ad
from .jobs import Context, Job

__all__ = ["AnalysisSpec", "SPECS", "register", "list_analyses", "get_analysis"]


@dataclass(frozen=True)
class AnalysisSpec:
    """An analysis of the study: ``jobs(ctx, missing)`` lists its jobs (and says in ``missing`` what it cannot
    run and why); :meth:`run` computes one job's result (a record of type ``result``, see
    :mod:`transferscope.vocab.records`) from the runs, reading other analyses' records from ``results`` where it
    builds on them, by calling ``adapter(spec, ctx, job, results)``. Module-level functions, so it pickles."""

    name: str
    summary: str
    version: int
    jobs: Callable[[Context, dict[str, str]], list[Job]]
    adapter: Callable[[AnalysisSpec, Context, Job, dict[str, Any]], Any]
    result: type
    """The record type the adapter returns; its ``to_dict`` is what the result file holds, ``from_dict`` reads it."""
    group: str = "neyshabur"
    needs: tuple[str, ...] = ()
    """The analyses whose records ``run`` reads from ``results``: every job of theirs ends before a job of this
    one starts (on any executor), and ``results`` holds theirs only. Each must be registered before this one."""
    kernel: Callable[..., Any] | None = None
    """The analysis of two models (``kernel(a, b, domain, *, seed, device, **options)``,
    :mod:`transferscope.analyses.kernels`) that the adapter calls on each pair or model; None for the analyses of
    the study's figures (transfer, basin, deviation, relate)."""
    item: type | None = None
    """The type ``kernel`` returns (one row's result)."""
    options: Callable[[AnalysisConfig], dict[str, Any]] | None = None
    """The kernel's options from the study's ``[analysis]`` settings (without ``seed``: ``settings.seed``)."""

    def run(self, ctx: Context, job: Job, results: dict[str, Any]) -> Any:
        return self.adapter(self, ctx, job, results)

    def kernel_options(self, settings: AnalysisConfig) -> dict[str, Any]:
        return self.options(settings) if self.options else {}


SPECS: dict[str, AnalysisSpec] = {}
"""The registry, in the order the analyses run (later ones may read earlier ones' results)."""


def register(spec: AnalysisSpec) -> AnalysisSpec:
    if spec.name in SPECS:
        raise ValueError(f"analysis {spec.name!r} is registered twice")
    unknown = [n for n in spec.needs if n not in SPECS]
    if unknown:
        raise ValueError(f"analysis {spec.name!r} needs {', '.join(map(repr, unknown))}, which is not registered "
                         "before it")
    if (spec.kernel is None) != (spec.item is None):
        raise ValueError(f"analysis {spec.name!r}: a kernel and the type it returns go together")
    SPECS[spec.name] = spec
    return spec


def list_analyses() -> list[AnalysisSpec]:
    """Every registered analysis, in the order ``analyze`` runs them."""
    return list(SPECS.values())


def get_analysis(name: str) -> AnalysisSpec:
    if name not in SPECS:
        raise KeyError(f"analysis {name!r}: unknown; registered analyses are {', '.join(SPECS)}")
    return SPECS[name]


# ------------------------------------------------------------------------------------------------ the kernels' options

def _mistakes_options(s: AnalysisConfig) -> dict[str, Any]:
    return {"threshold": s.multilabel_threshold}


def _cka_options(s: AnalysisConfig) -> dict[str, Any]:
    return {"batch_size": s.cka_batch_size, "examples": s.cka_examples}


def _barrier_options(s: AnalysisConfig) -> dict[str, Any]:
    return {"points": s.barrier_points, "examples": s.barrier_examples}


def _criticality_options(s: AnalysisConfig) -> dict[str, Any]:
    return {"alphas": s.criticality_alphas, "samples": s.criticality_samples, "n_examples": s.criticality_examples,
            "tolerance": s.criticality_tolerance, "s_tol": s.criticality_s_tol}


def _flatness_options(s: AnalysisConfig) -> dict[str, Any]:
    return {"n_examples": s.flatness_examples, "iters": s.flatness_iters, "tol": s.flatness_tol,
            "radii": s.flatness_radii, "samples": s.flatness_samples}


def _stability_options(s: AnalysisConfig) -> dict[str, Any]:
    return {"ks": s.stability_ks, "n_examples": s.stability_examples}


def _principal_options(s: AnalysisConfig) -> dict[str, Any]:
    return {"top_k": s.principal_top_k, "n_examples": s.principal_examples}


# ------------------------------------------------------------------------------------------------ the analyses

register(AnalysisSpec("transfer", "test accuracy and optimisation speed per target, block size and arm", 1,
                      ad.transfer_jobs, ad.transfer_run, TransferResult))
register(AnalysisSpec("mistakes", "common and uncommon mistakes of every pair", 1,
                      ad.pairs_of("mistakes", (PT_PT, RIT_RIT, PT_RIT), settings=("multilabel_threshold",)),
                      ad.mistakes_run, MistakesPairs, kernel=kernels.mistakes, item=MistakesResult,
                      options=_mistakes_options))
register(AnalysisSpec("cka", "linear CKA per layer of every pair within an arm, and P against P-T", 1,
                      ad.pairs_of("cka", (PT_PT, RIT_RIT), with_p=True, settings=("cka_batch_size", "cka_examples")), ad.cka_run,
                      CKAPairs, kernel=kernels.cka, item=CKAResult, options=_cka_options))
register(AnalysisSpec("distance", "l2 parameter distance of every pair within an arm and of each model to its start",
                      1, ad.pairs_of("distance", (PT_PT, RIT_RIT, PT_P, RIT_RI)), ad.pairs_run, DistancePairs,
                      kernel=kernels.distance, item=DistanceResult))
register(AnalysisSpec("barrier", "interpolation curves and barriers of every pair, and from P to P-T", 1,
                      ad.pairs_of("barrier", (PT_PT, RIT_RIT, PT_RIT), with_p=True,
                                  settings=("barrier_points", "barrier_examples")),
                      ad.barrier_run, BarrierPairs, kernel=kernels.barrier, item=BarrierResult, options=_barrier_options))
register(AnalysisSpec("criticality", "module criticality and rewinding curves of every P-T and RI-T model", 1,
                      ad.models_of("criticality", "criticality"), ad.criticality_run, CriticalityModels,
                      kernel=kernels.criticality, item=CriticalityResult, options=_criticality_options))
register(AnalysisSpec("basin", "P-T from earlier pre-training checkpoints against P-T from the final one", 1,
                      ad.basin_jobs, ad.basin_run, BasinResult))
register(AnalysisSpec("flatness", "top Hessian eigenvalue and loss under perturbations, every model", 1,
                      ad.models_of("flatness", "flatness"), ad.models_run, FlatnessModels, group="liu",
                      kernel=kernels.flatness, item=FlatnessResult, options=_flatness_options))
register(AnalysisSpec("deviation", "relative weight deviation per module along training, every model", 1,
                      ad.models_of("deviation", None), ad.deviation_run, DeviationModels, group="liu"))
register(AnalysisSpec("stability", "loss and gradient change along a gradient step along training, every model", 1,
                      ad.models_of("stability", "stability"), ad.stability_run, StabilityModels, group="liu",
                      kernel=kernels.stability, item=StabilityResult, options=_stability_options))
register(AnalysisSpec("principal", "the initial gradient's energy on the top singular directions, every model", 2,
                      ad.models_of("principal", "principal"), ad.principal_run, PrincipalModels, group="liu",
                      kernel=kernels.principal, item=PrincipalGradientResult, options=_principal_options))
register(AnalysisSpec("scores", "LEEP, LogME, H-score and source-target MMD from P, per target and block size", 1,
                      ad.scores_jobs, ad.scores_run, ScoresResult, group="liu", kernel=kernels.scores,
                      item=TransferabilityResult))
register(AnalysisSpec("relate", "rank correlations of the scores with the measured gains", 1, ad.relate_jobs,
                      ad.relate_run, RelateResult, group="liu", needs=("transfer", "scores")))
