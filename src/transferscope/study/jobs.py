"""The unit of work of the analyses: a job, what it runs with, its cache key, and how a backend computes it.

A :class:`Job` is one analysis on one target: the runs it reads and its typed parameters (the pairs or the models
it covers, and the analysis settings it uses). Its cache key (:func:`job_key`) is a hash of the analysis' name and
version, those parameters and the content of every run it reads, so a result is recomputed exactly when one of
them changes. A backend (:class:`AnalysisBackend`) computes the jobs that are not cached: :class:`LocalAnalyses`
in this process, or in worker processes of this machine side by side (``jobs``); the Ray backend
(:mod:`transferscope.study.ray_executor`) on a cluster. The analysis loop
(:mod:`transferscope.study.analyze`) is given its backend and imports none, so it imports no Ray module.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import jsonio
from ..config import AnalysisConfig
from ..store import Store, StoreError, StoreWriteError, atomic_write_text, dumps
from ..vocab.records import ModelRow, PairRow
from .plan import Plan, data_identity, file_safe

if TYPE_CHECKING:
    from .registry import Analysis

log = logging.getLogger(__name__)

__all__ = ["CACHE_VERSION", "PairRef", "ModelRef", "CheckpointRef", "Job", "Context", "Pending", "Outcome", "Compute",
           "job_key", "target_ids", "target_key", "relabel", "inputs_of", "record_of", "compute_job", "compute_local",
           "take_ready", "AnalysisBackend", "LocalAnalyses"]

CACHE_VERSION = 5
"""Bumped when the layout of every cached result changes (results of an older layout are then recomputed)."""


@dataclass(frozen=True)
class PairRef:
    """A pair of runs a job compares: its kind (e.g. ``P-T/RI-T``, :mod:`transferscope.vocab.arms`), their seeds,
    their run ids, and which weights of run ``b`` are read (``weights``, or ``init``: the start of the run)."""

    kind: str
    seeds: tuple[int, int]
    runs: tuple[str, str]
    which_b: str = "weights"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seeds": list(self.seeds), "runs": list(self.runs), "which_b": self.which_b}

    def row(self, result: Any) -> PairRow:
        return PairRow(self.kind, self.seeds, self.runs, self.which_b, result)


@dataclass(frozen=True)
class ModelRef:
    """One model a job reads: its arm, seed and run id."""

    arm: str
    seed: int
    run: str

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "seed": self.seed, "run": self.run}

    def row(self, result: Any) -> ModelRow:
        return ModelRow(self.arm, self.seed, self.run, result)


@dataclass(frozen=True)
class CheckpointRef:
    """One P-T run of the basin sweep: the pre-training epoch it started from (P's epochs: the final weights), its
    seed and run id."""

    checkpoint: float
    seed: int
    run: str

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "seed": self.seed, "run": self.run}


@dataclass(frozen=True)
class Job:
    """One analysis on one target: the runs it reads (``runs``), the pairs or the models it covers, and ``settings``
    (the analysis settings it uses and what else determines its result, in the order they are written).
    :attr:`params` is all of it as the dict the cache key hashes and the result file records."""

    analysis: str
    target: str
    runs: tuple[str, ...]
    pairs: tuple[PairRef, ...] = ()
    models: tuple[ModelRef | CheckpointRef, ...] = ()
    settings: tuple[tuple[str, Any], ...] = ()

    def setting(self, name: str) -> Any:
        for k, v in self.settings:
            if k == name:
                return v
        raise KeyError(f"job {self.analysis}/{self.target} has no setting {name!r}")

    @property
    def params(self) -> dict[str, Any]:
        head: dict[str, Any] = {}
        if self.pairs:
            head["pairs"] = [p.to_dict() for p in self.pairs]
        if self.models:
            head["models"] = [m.to_dict() for m in self.models]
        return head | dict(self.settings)


@dataclass(frozen=True)
class Context:
    """What a job runs with. Picklable (a plan, a folder, settings, a device), so a job can run elsewhere."""

    plan: Plan
    root: Path
    settings: AnalysisConfig
    device: str = "cpu"
    announce: bool = False
    """Print a line to stderr as each job starts and ends, with its time (``analyze --no-progress``: no bar shows
    that the analysis goes on), from whichever process computes it."""

    @property
    def store(self) -> Store:
        return Store(self.root)


def target_ids(plan: Plan) -> dict[str, str]:
    """Each target's label -> its identity (a hash of :func:`~transferscope.study.plan.data_identity`): what a cache
    key holds instead of the label, and what a cached result's labels are mapped back through (:func:`relabel`)."""
    return {t.display: hashlib.sha256(data_identity(t).encode()).hexdigest()[:16] for t in plan.config.targets}


def target_key(plan: Plan, target: str) -> tuple[str, str]:
    """``(stem, identity)`` of a job's target: the domain's name for a file name and the label-free identity, or
    ``(target, target)`` for a job over every target (``all``)."""
    t = next((t for t in plan.config.targets if t.display == target), None)
    return (target, target) if t is None else (t.name, target_ids(plan)[target])


def job_key(ctx: Context, spec: Analysis, job: Job) -> str:
    """The cache key: the analysis' name and version, the target's identity (not its label: renaming a target
    recomputes nothing), the job's parameters and the content of every run it reads."""
    store = ctx.store
    stem, ident = target_key(ctx.plan, job.target)
    contents = {rid: store.artefact_hashes(rid) for rid in job.runs}
    h = hashlib.sha256(json.dumps({"cache": CACHE_VERSION, "name": spec.name, "version": spec.version,
                                   "target": ident, "params": job.params, "inputs": contents},
                                  sort_keys=True, default=str).encode())
    return f"{spec.name}-{file_safe(stem)}-{h.hexdigest()[:12]}"


def relabel(stored: dict[str, Any], plan: Plan) -> dict[str, Any] | None:
    """A cached result file's contents under the plan's labels, or None when they are already: every ``"target"`` of
    its ``result`` that names a target by the label it had when computed (the file's ``labels``: label ->
    identity) takes the label that target has now, and ``labels`` is the plan's."""
    ids = target_ids(plan)
    now = {ident: label for label, ident in ids.items()}
    rename = {old: now[i] for old, i in stored.get("labels", {}).items() if i in now and now[i] != old}
    if not rename:
        return None

    def walk(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: (rename.get(v, v) if k == "target" and isinstance(v, str) else walk(v)) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return stored | {"target": rename.get(stored.get("target"), stored.get("target")), "labels": ids,
                     "result": walk(stored["result"])}


@dataclass(frozen=True)
class Pending:
    """A job whose result is not cached: computed into ``path`` (by :func:`compute_job`)."""

    spec: Analysis
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


def inputs_of(spec: Analysis, results: dict[str, Any]) -> dict[str, Any]:
    """The records ``spec.run`` reads: those of the analyses it needs."""
    return {k: v for k, v in results.items() if k.split("/", 1)[0] in spec.needs}


def record_of(spec: Analysis, text: str) -> Any:
    """A result's record from its JSON text, as a cached one reads."""
    return spec.result.from_dict(jsonio.loads(text))


def compute_job(ctx: Context, spec: Analysis, job: Job, results: dict[str, Any], path: str | Path) -> Outcome:
    """Compute one job and write its result file (atomically: a temporary file renamed into place, so that a job
    computed twice, or on two nodes at once, leaves one whole file). A damaged run or a failing analysis is
    returned as ``missing`` (one analysis failing must not lose the others); a folder that cannot be written
    raises :class:`StoreWriteError`."""
    t0 = time.perf_counter()
    name = f"{spec.name}/{job.target}"
    if ctx.announce:
        print(f"analysis {name}: started ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
    try:
        result = spec.run(ctx, job, results)
    except StoreWriteError:
        raise
    except StoreError as e:  # a run's file is damaged: the message names it and the --rerun that repairs it
        log.warning("analysis %s on %s not computed: %s", spec.name, job.target, e)
        _ended(ctx, name, t0, "not computed")
        return Outcome(missing=f"not computed: {e}")
    except Exception as e:
        log.warning("analysis %s on %s failed: %s", spec.name, job.target, e, exc_info=True)
        _ended(ctx, name, t0, "failed")
        return Outcome(missing=f"failed: {type(e).__name__}: {e}")
    seconds = time.perf_counter() - t0
    _ended(ctx, name, t0, "done")
    d = result.to_dict()
    atomic_write_text(Path(path), dumps({"analysis": spec.name, "version": spec.version, "target": job.target,
                                         "labels": target_ids(ctx.plan), "runs": list(job.runs), "params": job.params,
                                         "seconds": seconds, "result": d}))
    return Outcome(dumps(d), seconds)


def _ended(ctx: Context, name: str, t0: float, how: str) -> None:
    if ctx.announce:
        print(f"analysis {name}: {how} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


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


class AnalysisBackend(Protocol):
    """Where the jobs that are not cached are computed. ``session(plan, store, device, threads)`` is a context
    manager that yields ``(compute, device)``: the :data:`Compute` to call, and the device every job computes on
    (``device`` resolved: ``auto`` to what is there; None: the study's own)."""

    def session(self, plan: Plan, store: Store, device: str | None, threads: int
                ) -> contextlib.AbstractContextManager[tuple[Compute, str]]: ...


@dataclass(frozen=True)
class LocalAnalyses:
    """The jobs on this machine, with ``threads`` torch threads each.

    Each job computes with the study's torch threads per run (``threads.json``, as on Ray), or ``threads`` where
    given (a warning where it differs), whatever ``jobs`` is: the thread count sets the order of floating-point
    sums, so a result computed again (a cache emptied, a run repaired) is bitwise the one computed before, with any
    ``jobs``. A study with no count recorded: the cores shared out among the ``jobs`` (at least 1 each; ``jobs`` 1:
    torch's current count).

    ``jobs`` 1: every job in this process, in the registry's order. ``jobs`` N > 1 on the CPU: worker processes
    (started with spawn) compute jobs side by side, each job once the analyses it ``needs`` have ended; N, or fewer
    where N times the threads per job would exceed the cores. On a GPU the jobs stay in this process, one after
    another (one device)."""

    jobs: int = 1

    @contextlib.contextmanager
    def session(self, plan: Plan, store: Store, device: str | None, threads: int) -> Iterator[tuple[Compute, str]]:
        import torch

        from ..devices import resolve_device

        device = str(resolve_device(device or plan.config.device))
        recorded = store.recorded_threads()
        if threads and recorded and threads != recorded:
            log.warning("analysis threads %d differ from the %d this study's runs were trained with (%s): results "
                        "computed now may differ from those computed before in their last bits", threads, recorded,
                        store.root / "threads.json")
        n = threads or recorded or 0
        if self.jobs > 1 and device == "cpu":
            n = n or max(1, _cores() // self.jobs)
            workers = min(self.jobs, max(1, _cores() // n))
            yield partial(_compute_pool, partial(cf.ProcessPoolExecutor, workers, mp_context=mp.get_context("spawn"),
                                                 initializer=_job_threads, initargs=(n,))), device
            return
        before = torch.get_num_threads()
        if n:
            torch.set_num_threads(n)
        try:
            yield compute_local, device
        finally:
            torch.set_num_threads(before)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _job_threads(n: int) -> None:
    """A worker of the analysis pool: ``n`` torch threads, and it dies with ``analyze`` (no orphan computes on when
    ``analyze`` is killed)."""
    import torch

    from ..devices import die_with_parent

    die_with_parent()
    torch.set_num_threads(n)


def take_ready(waiting: dict[int, Pending], running: Iterable[int], jobs: list[Pending]) -> list[tuple[int, Pending]]:
    """Take out of ``waiting`` (index in ``jobs`` -> job) the jobs none of whose needed analyses has a job waiting
    or ``running`` (indices in ``jobs``), in order: what a backend that computes jobs side by side submits next.

    Raises:
        RuntimeError: nothing is running and no waiting job can start (a cycle of needs: the registry refuses one,
            so this is a safeguard)."""
    running = list(running)
    open_ = {p.spec.name for p in waiting.values()} | {jobs[i].spec.name for i in running}
    ready = [(i, p) for i, p in waiting.items() if open_.isdisjoint(p.spec.needs)]
    if waiting and not ready and not running:
        raise RuntimeError(f"analyses {sorted(open_)} wait for each other")
    for i, _ in ready:
        del waiting[i]
    return ready


def _compute_pool(new_pool: Callable[[], cf.ProcessPoolExecutor], ctx: Context, jobs: list[Pending],
                  results: dict[str, Any], tick: Callable[[], None]) -> dict[int, Outcome]:
    """The jobs in worker processes (``new_pool()``), each submitted once no job of the analyses it needs is
    waiting or running, with their records (see :class:`LocalAnalyses`). When a worker process dies (killed when
    memory runs out), the jobs in flight are reported missing (``analyze`` again computes them) and a fresh pool
    takes the rest; a folder that cannot be written stops the analysis."""
    results, out = dict(results), {}
    waiting = dict(enumerate(jobs))
    running: dict[cf.Future, int] = {}
    pool = new_pool()
    try:
        while waiting or running:
            for i, p in take_ready(waiting, running.values(), jobs):
                running[pool.submit(compute_job, ctx, p.spec, p.job, inputs_of(p.spec, results), p.path)] = i
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            broken = False
            for f in done:
                i = running.pop(f)
                try:
                    o = out[i] = f.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    o = out[i] = Outcome(missing="not computed: a worker process died while it was in flight "
                                                 "(killed, e.g. when memory ran out); run analyze again")
                    log.warning("analysis %s: %s", jobs[i].name, o.missing)
                if o.text is not None:
                    results[jobs[i].name] = record_of(jobs[i].spec, o.text)
                tick()
            if broken:  # the pool takes no more work: every job in flight is lost with it
                for i in running.values():
                    out[i] = Outcome(missing="not computed: a worker process died while it was in flight "
                                             "(killed, e.g. when memory ran out); run analyze again")
                    log.warning("analysis %s: %s", jobs[i].name, out[i].missing)
                    tick()
                running.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = new_pool()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out
