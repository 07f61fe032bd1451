"""One scheduler of a study's runs over its plan and its store; where the runs train is a backend passed in.

The scheduler holds every step that does not depend on where a run trains, written once: the opening of a study
(the folder held, its format checked, ``study.json`` written, the leftovers of an interrupted call removed, the torch
threads of every run fixed in ``threads.json``, the runs asked for with ``--rerun`` removed), the to-do list of a
round (P first, then the learning-rate candidates, then the rest), which run is ready, which waits and which is
blocked because a run it needs failed, the runs a learning-rate choice releases, the record of every outcome in an
:class:`ExecutionSummary`, and the runs left blocked at the end.

A :class:`Backend` only starts runs and says when they end: :mod:`.pool` trains them on this machine (in this
process, or in a pool of worker processes under the folder's lock), :mod:`.ray_executor` as Ray tasks on a cluster
(under per-run claims). Each backend reports an ended run as a :class:`Finished`.

Rounds: :func:`open_study` opens a study once (the folder stays held until the block ends) and yields a
:class:`Scheduler` whose :meth:`Scheduler.run_round` trains the unfinished runs of a plan and returns: the study's
plan (:func:`run_plan`, one round of everything), a part of it, or a grown one (more seeds), so that a
caller can look at the results between rounds. A round's runs start from runs stored earlier or trained in the same
round; the study's files (``study.json``, ``threads.json``) are those of the plan it was opened with.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from ..config import ConfigError, to_dict
from ..store import RUN_DONE, RUN_FAILED, RunDamaged, Store, atomic_write_text, dumps
from .artefacts import domain_data
from .plan import Plan, RunSpec
from .tuning import choose, concrete
from .worker import provenance

log = logging.getLogger(__name__)

__all__ = ["WORKER_RETRIES", "ExecutionSummary", "Work", "Finished", "Backend", "Scheduler", "open_study",
           "run_plan", "prepare_domains", "study_threads", "check_rerun", "deferred_label"]

WORKER_RETRIES = 2
"""How many times a run whose worker process (or Ray task) died is tried again before it is given up."""


@dataclass
class ExecutionSummary:
    done: list[str] = field(default_factory=list)
    """Runs trained by this call."""
    skipped: list[str] = field(default_factory=list)
    """Runs already finished (or failed, without ``retry_failed``) before this call."""
    failed: dict[str, str] = field(default_factory=dict)
    """Runs that failed in this call, with the reason."""
    blocked: dict[str, str] = field(default_factory=dict)
    """Runs not started because a run they need failed (or needs to be trained again)."""
    retried: dict[str, list[str]] = field(default_factory=dict)
    """Runs whose worker process died under them, with what killed it each time (they were tried again)."""
    threads: int = 0
    """The torch threads per run of this study (recorded in ``threads.json``)."""
    jobs: int = 1
    """Runs trained side by side: ``jobs``, or fewer when that many workers would not fit in memory."""
    seconds: float = 0.0


@dataclass(frozen=True)
class Work:
    """What a backend is given to train the runs of a round."""

    root: Path
    """The results folder."""
    prov: dict
    """The provenance every run records (:func:`~.worker.provenance`)."""
    threads: int
    """The study's torch threads per run (``threads.json``)."""
    per_run: dict[str, int]
    """Runs trained again (``--rerun``) keep the count they were trained with."""
    deterministic: bool
    retry_failed: bool
    rerun: frozenset[str]
    progress: Callable[[str, int, int, float], None] | None = None
    """Called with (run id, epoch, epochs, validation figure) after each epoch, where the backend can see it."""
    note: Callable[[str], None] = lambda text: None
    """A short note for the progress bar (the run training in this process)."""

    def threads_of(self, run_id: str) -> int:
        return self.per_run.get(run_id, self.threads)


@dataclass(frozen=True)
class Finished:
    """A run the backend is done with. ``by``: ``here`` (trained by this call: ``status`` is ``done``, ``failed``,
    or None when it was not started because a run it starts from needs to be trained again, ``reason`` saying
    why), ``before`` (found stored by another process when it was about to start), ``elsewhere`` (trained by
    another process while this call waited for it)."""

    spec: RunSpec
    status: str | None
    reason: str = ""
    by: str = "here"


class Backend(Protocol):
    """Where the runs of a study train. The folder side (:meth:`hold`, :meth:`clean_tmp`, :meth:`owning`) says how
    the study holds its folder; the compute side starts runs (:meth:`submit`, as many as :meth:`room` allows) and
    reports them as they end (:meth:`wait`), between :meth:`start` and :meth:`close` of each round."""

    def hold(self, store: Store) -> contextlib.AbstractContextManager[int]:
        """Hold the folder for the study (refused at once, writing nothing, when another process holds it); yields
        how many runs train side by side."""
        ...

    def clean_tmp(self, store: Store) -> int:
        """Remove the leftovers of runs in flight when a process died (none that a live process is writing)."""
        ...

    def owning(self, store: Store, run_id: str) -> contextlib.AbstractContextManager[None]:
        """Hold one run for the block (to remove it: ``--rerun``); refused while another process trains it."""
        ...

    def start(self, work: Work) -> None: ...

    def room(self) -> int:
        """How many more runs it takes now."""
        ...

    def submit(self, spec: RunSpec) -> None: ...

    def busy(self) -> bool:
        """Whether a run submitted has not been reported yet."""
        ...

    def wait(self) -> list[Finished]:
        """The runs that ended since the last call (waiting a little for one when none has)."""
        ...

    def close(self) -> None:
        """End the round: stop what is still in flight (an interrupted study) and free what it held."""
        ...


def check_rerun(plan: Plan, store: Store, rerun: Iterable[str]) -> None:
    known = {r.run_id for r in plan.runs + plan.tuning} | set(store.list_runs())
    for rid in rerun:
        if rid not in known:
            close = difflib.get_close_matches(rid, sorted(known), n=3, cutoff=0.6)
            raise ConfigError(f"--rerun {rid}: no such run in this study or in {store.root}"
                              + (f"; close matches: {', '.join(close)}" if close else
                                 f" (transferscope status {store.root} --runs lists them)"))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def study_threads(plan: Plan, store: Store, threads: int, jobs: int) -> int:
    """The torch threads of every run of the study: those its first call recorded (``threads.json``); for a first
    call, ``threads`` or the cores shared out among the runs trained side by side (all of torch's threads for one
    run at a time), never how many runs happen to be in flight. Call with the folder held."""
    recorded = store.recorded_threads()
    if recorded is None:  # a folder written before the count was recorded: the count most of its runs used
        counts = Counter()
        for rid in store.list_runs():
            with contextlib.suppress(RunDamaged):
                info = store.run_info(rid) or {}
                if info.get("status") == RUN_DONE and isinstance(info.get("threads"), int):
                    counts[info["threads"]] += 1
        recorded = counts.most_common(1)[0][0] if counts else None
        base = _cores() if jobs > 1 else torch.get_num_threads()
        store.record_threads(recorded or threads or max(1, base // max(1, min(jobs, plan.size()))))
        recorded = store.recorded_threads()
    if threads and threads != recorded:
        log.warning("--threads %d: this study's runs are trained with %d threads (%s); runs trained now may differ in "
                    "their last bits from those of a study run at once", threads, recorded, store.root / "threads.json")
        return threads
    return recorded


def prepare_domains(plan: Plan, show_progress: bool = True) -> None:
    """Load (and cache) every domain of the plan before any training, so data errors come first."""
    seen = []
    for r in plan.runs + plan.tuning + [t for t, _ in plan.deferred]:
        if r.domain.name and (r.domain, r.data) not in seen:  # a given P may have no source
            seen.append((r.domain, r.data))
    for domain, data in tqdm(seen, desc="domains", disable=not show_progress, leave=False):
        domain_data(domain, data)


def deferred_label(template: RunSpec) -> str:
    """A readable name for a run whose learning rate is not chosen (it has no run id of its own yet)."""
    return f"{template.label} (lr from the grid)"


def _ready(spec: RunSpec, status: dict[str, str | None]) -> bool | None:
    """True: ``spec`` can start; False: it waits for its parent; None: its parent failed or was blocked."""
    if not spec.parent:
        return True
    st = status.get(spec.parent)
    return True if st == RUN_DONE else None if st in (RUN_FAILED, "blocked") else False


@dataclass
class _Round:
    """The state of one round: what is still to train, what ended, what waits for a learning-rate choice."""

    plan: Plan
    store: Store
    retry_failed: bool
    summary: ExecutionSummary
    status: dict[str, str | None] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    deferred: list = field(default_factory=list)
    pending: list[RunSpec] = field(default_factory=list)
    bar: tqdm | None = None
    epochs: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """The to-do list, in order: P first (everything on P-T waits for it), then the learning-rate candidates,
        then the rest, and the deferred runs whose choice an earlier call made. Runs already finished (or failed,
        without ``retry_failed``) go to ``summary.skipped``."""
        plan, s = self.plan, self.summary
        self.labels = {r.run_id: r.label for r in plan.tuning + plan.runs}
        for r in plan.runs[:1] + plan.tuning + plan.runs[1:]:
            if r.run_id in self.seen:
                continue
            self.seen.add(r.run_id)
            if self._stored(r.run_id):
                s.skipped.append(r.run_id)
            else:
                self.pending.append(r)
        self.status = {r: self.store.run_status(r) for r in s.skipped}
        self.deferred = list(plan.deferred)
        self.pending += self.release()  # choices an earlier call made

    def _stored(self, rid: str) -> bool:
        st = self.store.run_status(rid)
        return st == RUN_DONE or (st == RUN_FAILED and not self.retry_failed)

    def count(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def release(self) -> list[RunSpec]:
        """Decide the deferred runs whose learning-rate candidates are all stored (``status`` has them), removing
        them from ``deferred``: a run already stored is counted as skipped, one whose grid failed as blocked, the
        rest are returned to train."""
        fresh: list[RunSpec] = []
        decided = {}
        for item in list(self.deferred):
            template, sel = item
            if any(c.run_id not in self.status for c in sel.candidates):
                continue  # a candidate is still to train
            if sel.key not in decided:
                decided[sel.key] = choose(sel, self.store)
            c = decided[sel.key]
            if c.state == "pending":
                continue
            self.deferred.remove(item)
            if c.state == "failed":
                if not sel.is_winner(template):  # that slot is the failed candidate, counted already
                    self.summary.blocked[deferred_label(template)] = f"every learning rate of {sel.key}'s grid failed"
                    self.count(1)
                continue
            spec = concrete(template, c.lr)
            if spec.run_id in self.seen:
                continue  # the winning candidate itself
            self.seen.add(spec.run_id)
            if self._stored(spec.run_id):
                self.summary.skipped.append(spec.run_id)
                self.status[spec.run_id] = self.store.run_status(spec.run_id)
                self.count(1)
            else:
                fresh.append(spec)
        return fresh

    def block_orphans(self) -> None:
        """Take out of ``pending`` the runs whose parent failed or was blocked, recording them as blocked (so that
        their own children are blocked in turn)."""
        for spec in list(self.pending):
            if _ready(spec, self.status) is None:
                self.pending.remove(spec)
                why = f"needs {spec.parent}, which failed"
                if self.status.get(spec.parent) == "blocked":
                    why = f"needs {spec.parent}, which was not trained: {self.summary.blocked[spec.parent]}"
                self.summary.blocked[spec.run_id] = why
                self.status[spec.run_id] = "blocked"
                self.count(1)

    def block_strays(self) -> None:
        """The runs still pending when nothing is in flight: their parent is neither stored nor in the round."""
        for spec in self.pending:
            self.summary.blocked[spec.run_id] = f"needs {spec.parent}, which is neither stored nor in this round"
            self.status[spec.run_id] = "blocked"
            self.count(1)
        self.pending.clear()

    def ready(self) -> list[RunSpec]:
        return [s for s in self.pending if _ready(s, self.status)]

    def record(self, f: Finished) -> None:
        """A run the backend is done with, in the summary and in ``status``: trained here (done, failed, or not
        started because a run it starts from needs to be trained again), or stored by another process."""
        s, rid, st = self.summary, f.spec.run_id, f.status
        if f.by == "before":
            s.skipped.append(rid)
        elif f.by == "elsewhere":
            if st == RUN_FAILED:
                s.failed[rid] = f.reason
        elif st == RUN_DONE:
            s.done.append(rid)
        elif st is None:
            st = "blocked"
            s.blocked[rid] = f.reason
            tqdm.write(f"run {rid} not done: {f.reason}")
        else:
            s.failed[rid] = f.reason
            tqdm.write(f"run {rid} failed: {f.reason}")
        self.status[rid] = st
        self.epochs.pop(rid, None)
        self.count(1)

    def show(self, rid: str, ep: int, total: int, va: float) -> None:
        """An epoch of a run in flight, on the progress bar."""
        if rid not in self.status:  # else a late message of a finished run
            self.epochs[rid] = f"{self.labels.get(rid, rid.rsplit('-', 1)[0])} ep {ep}/{total}"
        if self.bar is not None:
            self.bar.set_postfix_str(" | ".join(self.epochs.values()))

    def end(self) -> None:
        """The deferred runs still undecided: their candidates were blocked."""
        for template, sel in self.deferred:
            if not sel.is_winner(template):
                self.summary.blocked[deferred_label(template)] = f"the learning-rate candidates of {sel.key} did not run"
                self.count(1)


class Scheduler:
    """An opened study (:func:`open_study`): trains rounds of runs on its backend."""

    def __init__(self, plan: Plan, store: Store, backend: Backend, *, jobs: int, threads: int,
                 per_run: dict[str, int], retry_failed: bool, rerun: frozenset[str], deterministic: bool,
                 show_progress: bool) -> None:
        self.plan, self.store, self.backend = plan, store, backend
        self.jobs, self.threads, self.per_run = jobs, threads, per_run
        self.retry_failed, self.rerun, self.deterministic = retry_failed, rerun, deterministic
        self.show_progress = show_progress

    def run_round(self, plan: Plan | None = None) -> ExecutionSummary:
        """Train every unfinished run of ``plan`` (default: the study's), parents first; returns what this round
        did. A run whose parent failed is blocked, and so are its own children; a run that failed is not tried
        again unless the study was opened with ``retry_failed``."""
        t0 = time.time()
        plan = plan or self.plan
        summary = ExecutionSummary(threads=self.threads, jobs=self.jobs)
        r = _Round(plan, self.store, self.retry_failed, summary)
        if not r.pending:  # nothing to train (every deferred run is decided too): not even the data is loaded
            summary.seconds = time.time() - t0
            return summary
        prepare_domains(plan, self.show_progress)  # data errors first
        r.bar = tqdm(total=plan.size(), initial=len(summary.skipped) + len(summary.blocked), desc="runs", unit="run",
                     disable=not self.show_progress, dynamic_ncols=True)
        work = Work(self.store.root, provenance(), self.threads, self.per_run, self.deterministic, self.retry_failed,
                    self.rerun, progress=r.show if self.show_progress else None, note=r.bar.set_postfix_str)
        b = self.backend
        try:
            b.start(work)
            while r.pending or b.busy():
                r.block_orphans()
                for spec in r.ready()[:b.room()]:
                    r.pending.remove(spec)
                    b.submit(spec)
                if not b.busy():
                    if not r.ready():  # every pending run waits for a run that is neither stored nor in this round
                        r.block_strays()
                        break
                    continue
                ended = b.wait()
                for f in ended:
                    r.record(f)
                if ended:
                    r.pending.extend(r.release())
            r.end()
        finally:
            r.bar.close()
            b.close()
        summary.seconds = time.time() - t0
        return summary


@contextlib.contextmanager
def open_study(plan: Plan, store: Store, backend: Backend, *, threads: int = 0, retry_failed: bool = False,
               rerun: Iterable[str] = (), deterministic: bool = False, show_progress: bool = True
               ) -> Iterator[Scheduler]:
    """Open the study of ``plan`` in ``store`` on ``backend`` for the block: the folder held (refused at once,
    writing nothing, when another process holds it), its format checked and written, ``study.json`` written, the
    leftovers of an interrupted call removed, the threads per run fixed (:func:`study_threads`; ``threads``: the
    ``--threads`` asked for) and the runs of ``rerun`` removed (they are trained again, with the thread count they
    were trained with). Yields the :class:`Scheduler` that runs its rounds."""
    rerun = list(dict.fromkeys(rerun))
    with backend.hold(store) as jobs:
        store.check_format()  # a folder of an older format would be trained again from scratch: refuse it
        check_rerun(plan, store, rerun)
        store.write_format()
        # the study the folder holds (what status, analyze and report read), written with the folder held
        atomic_write_text(store.root / "study.json", dumps(to_dict(plan.config)))
        removed = backend.clean_tmp(store)
        if removed:
            log.info("removed %d unfinished run folders left by an interrupted study", removed)
        fixed = study_threads(plan, store, threads, jobs)
        per_run: dict[str, int] = {}  # a run trained again keeps the count it was trained with
        for rid in rerun:
            with backend.owning(store, rid):
                with contextlib.suppress(RunDamaged):
                    t = (store.run_info(rid) or {}).get("threads")
                    if isinstance(t, int) and t > 0 and not threads:
                        per_run[rid] = t
                store.remove_run(rid)
            log.info("run %s removed: it is trained again", rid)
        yield Scheduler(plan, store, backend, jobs=jobs, threads=fixed, per_run=per_run, retry_failed=retry_failed,
                        rerun=frozenset(rerun), deterministic=deterministic, show_progress=show_progress)


def run_plan(plan: Plan, store: Store, backend: Backend, **options) -> ExecutionSummary:
    """One round of every run of ``plan``: what ``transferscope run`` does (``options``: those of
    :func:`open_study`). ``seconds`` counts the opening too."""
    t0 = time.time()
    with open_study(plan, store, backend, **options) as scheduler:
        summary = scheduler.run_round()
    summary.seconds = time.time() - t0
    return summary
