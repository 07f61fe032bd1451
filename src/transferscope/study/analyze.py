"""The loop over the analyses of a (partly) finished study, and their cache.

:func:`analyze` runs every analysis :func:`~transferscope.study.registry.list_analyses` returns (the one
registry), each job whose result is not cached computed by the backend it is given
(:mod:`transferscope.study.jobs`). A job's result is cached in ``RESULTS/analyses/<name>-<target>-<key>.json``;
the key is derived from the analysis' version, the job's parameters (the settings it uses, the pairs it
compares) and the content hashes of the files of every run it reads (recorded in each run's ``run.json``), so an
edited input is computed again. ``analyses/index.json`` names each result's file, what could not be computed and
why, the settings, and the images the report shows.

The evidence the claims are judged on is assembled from these results in :mod:`transferscope.study.evidence`;
the verdicts are written by :mod:`transferscope.study.verdicts`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import jsonio
from ..config import AnalysisConfig, ConfigError, check_config
from ..store import RUN_DONE, Store, atomic_write_text, dumps
from .jobs import AnalysisBackend, Compute, Context, LocalAnalyses, Pending, job_key, record_of, relabel
from .plan import Plan
from .registry import list_analyses
from .tuning import resolve

log = logging.getLogger(__name__)

__all__ = ["analyze", "AnalysisRun", "ImageWriter"]

ImageWriter = Callable[[Plan, Store, dict[str, Any]], dict[str, str]]
"""Writes the images the report shows from a study's results: ``(plan, store, results)`` -> file by domain."""


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
    stale: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    """Cached results read from runs whose files changed since they ended (damaged after the result was computed):
    result name -> {run id: the changed files}. Nothing is recomputed from a damaged run; the verdicts carry a
    ``changed-artefacts`` caveat for it."""


def analyze(plan: Plan, store: Store, settings: AnalysisConfig | None = None, show_progress: bool = True,
            device: str | None = None, *, backend: AnalysisBackend | None = None, threads: int = 0,
            images: ImageWriter | None = None) -> AnalysisRun:
    """Compute every missing analysis of the study in ``store``; return all results (cached or new).

    A study with several pre-trained models is analysed once per P (:meth:`Plan.for_pretrain`: that P, its P-T
    runs, every RI-T run): the primary P's results are the returned run's (``analyses/index.json``), the others'
    are in its ``pretrained`` by pre-training seed (``analyses/index-P<seed>.json``). A job that does not depend
    on P (e.g. RI-T/RI-T pairs) has the same cache key under every P and is computed once.

    ``settings``: default, the study's own ``[analysis]`` table (``plan.config.analysis``). ``device``: where every
    analysis computes (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; default: the study's ``device``); one that
    is not there is an error before anything is computed. The results do not depend on it beyond the last bits
    of floating-point sums, so the cache keys do not name it.

    ``backend``: where the jobs that are not cached are computed (:class:`~transferscope.study.jobs.LocalAnalyses`,
    the default: every job in this process, in the registry's order; or the Ray backend of
    :mod:`transferscope.study.ray_executor`: each job a Ray task, a job waiting for the analyses it ``needs``).
    Either writes the same files. ``threads``: torch threads per job (0: the count the study's runs were trained
    with, ``threads.json``; without one, locally the cores shared out among the jobs, on Ray 1); on the CPU, a
    result is bitwise the same for the same count, whichever backend and however many jobs computed it.
    ``images``: writes the images the report shows
    (:func:`transferscope.report.strips.write_image_strips`; the command line and the API pass it), their files
    named in ``analyses/index.json``; None: no images."""
    check_config(settings or plan.config.analysis, "analysis.")  # a hand-edited study.json was planned unchecked
    if threads < 0:
        raise ConfigError(f"--threads {threads}: must be at least 1 (or 0: the default)")
    with (backend or LocalAnalyses()).session(plan, store, device, threads) as (compute, device):
        return _analyze_all(plan, store, settings, show_progress, device, compute, images)


def _analyze_all(plan: Plan, store: Store, settings: AnalysisConfig | None, show_progress: bool, device: str,
                 compute: Compute, images: ImageWriter | None) -> AnalysisRun:
    ps = plan.pretrains()
    out = _analyze_one(plan.for_pretrain(ps[0].seed), store, settings, show_progress, device, compute, images)
    for p in ps[1:]:
        out.pretrained[p.seed] = _analyze_one(plan.for_pretrain(p.seed), store, settings, show_progress, device,
                                              compute, images, index=f"index-P{p.seed}.json")
    return out


def _analyze_one(plan: Plan, store: Store, settings: AnalysisConfig | None, show_progress: bool, device: str,
                 compute: Compute, images: ImageWriter | None, index: str = "index.json") -> AnalysisRun:
    """:func:`analyze` for a plan of one P; writes ``analyses/<index>``."""
    from tqdm.auto import tqdm

    settings = settings or plan.config.analysis
    ctx = Context(resolve(plan, store), store.root, settings, device, announce=not show_progress)
    out = AnalysisRun()
    adir = store.root / "analyses"
    specs = [s for s in list_analyses() if s.group == "neyshabur" or s.group in settings.groups]
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
                stored = jsonio.read(path)
                renamed = relabel(stored, ctx.plan)
                if renamed is not None:  # a target renamed since: the result speaks of its name now
                    atomic_write_text(path, dumps(renamed))
                cached[i] = (key, spec.result.from_dict((renamed or stored)["result"]))
                bar.update(1)
                continue
            except (KeyError, TypeError, ValueError) as e:  # not JSON, or not of the record's shape
                log.warning("%s: unreadable (%s); computing it again", path, e)
        slot[i] = (key, len(pending))
        pending.append(Pending(spec, job, path))
    changed: dict[str, tuple[str, ...]] = {}  # run id -> its changed files, each run checked once
    for i in cached:
        spec, job = todo[i]
        for rid in job.runs:
            if rid not in changed:
                changed[rid] = tuple(store.verify_run(rid)) if store.run_status(rid) == RUN_DONE else ()
        bad = {rid: changed[rid] for rid in job.runs if changed[rid]}
        if bad:
            out.stale[f"{spec.name}/{job.target}"] = bad
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
        written = images(ctx.plan, store, out.results) if images else {}
    except Exception as e:  # the report then says the images are missing; the results stay usable
        log.warning("images for the report failed: %s", e, exc_info=True)
        out.missing["images"] = f"failed: {type(e).__name__}: {e}"
        written = {}
    atomic_write_text(adir / index, dumps({
        "results": out.files, "images": written, "missing": out.missing,
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__}}))
    return out
