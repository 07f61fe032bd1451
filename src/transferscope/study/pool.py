"""The local backends of the scheduler (:mod:`.scheduler`): the runs of a study trained on this machine, under the
folder's lock: one at a time in this process (:class:`InProcess`), or side by side in worker processes
(:class:`ProcessPool`).

On a CPU, several small runs side by side, each on fewer threads, use the cores better than one run on all of
them (see ``benchmarks/train_throughput.py``). On CUDA, the runs are spread over the devices given (the least busy
first). A worker process that dies (killed by the kernel when memory runs out, or by ``kill -9``) costs only the
runs it held: the pool is started afresh, the dead worker's run is tried again up to
:data:`~.scheduler.WORKER_RETRIES` times (the runs that were in flight beside it again at no cost), then stored as
failed with what killed it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing as mp
import queue as queue_mod
import signal
from collections import Counter
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool

import torch
from tqdm.auto import tqdm

from ..devices import die_with_parent
from ..store import Store
from .plan import Plan, RunSpec, estimate_memory, format_bytes
from .scheduler import WORKER_RETRIES, Finished, Work
from .worker import report_to, run_one, store_failure

log = logging.getLogger(__name__)

__all__ = ["InProcess", "ProcessPool", "local_backend", "jobs_that_fit"]


def jobs_that_fit(plan: Plan, jobs: int) -> int:
    """``jobs``, or as many worker processes as the available memory holds, with a warning: every worker holds the
    study's domains and its own batches, one worker's peak being :func:`~.plan.estimate_memory` (which
    ``make_plan`` has already checked for one)."""
    if jobs <= 1:
        return jobs
    est = estimate_memory(plan.config)
    if est.available is None or jobs * est.total <= est.available:
        return jobs
    fit = int(max(1, est.available // max(1, est.total)))
    log.warning("--jobs %d: each worker needs about %s and %s of memory is available; training %d run%s at a time "
                "(lower data.image_size or the number of images per class to train more)", jobs,
                format_bytes(est.total), format_bytes(est.available), fit, "" if fit == 1 else "s")
    return fit


class _Local:
    """The folder side of both local backends: the folder's lock held for the whole study."""

    jobs = 1

    @contextlib.contextmanager
    def hold(self, store: Store) -> Iterator[int]:
        with store.lock():  # first: a call refused here writes nothing
            yield self.jobs

    def clean_tmp(self, store: Store) -> int:
        return store.clean_tmp()

    def owning(self, store: Store, run_id: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # the folder's lock covers every run


class InProcess(_Local):
    """One run at a time, in this process, on ``device``."""

    def __init__(self, device: str, jobs: int = 1) -> None:
        self.device, self.jobs = device, jobs
        self.deaths: dict[str, list[str]] = {}  # none: a run in this process takes the study down with it
        self.work: Work | None = None
        self.ended: list[Finished] = []

    def start(self, work: Work) -> None:
        self.work, self.ended = work, []
        show = work.progress
        report_to((lambda msg: msg[0] == "epoch" and show(*msg[1:])) if show else None)

    def room(self) -> int:
        return 0 if self.ended else 1

    def submit(self, spec: RunSpec) -> None:
        w = self.work
        w.note(spec.label[:40])
        before = torch.get_num_threads()
        try:
            rid, st, reason = run_one(spec, w.root, w.threads_of(spec.run_id), w.prov, device=self.device,
                                      deterministic=w.deterministic)
        finally:
            torch.set_num_threads(before)
        self.ended.append(Finished(spec, st, reason))

    def busy(self) -> bool:
        return bool(self.ended)

    def wait(self) -> list[Finished]:
        ended, self.ended = self.ended, []
        return ended

    def close(self) -> None:
        report_to(None)


def _worker_init(q) -> None:
    report_to(q.put, worker=True)  # epoch progress goes to the parent's progress bar
    die_with_parent()


def _death(exitcode: int | None) -> str:
    """What ended a worker process, from its exit code."""
    if exitcode is None:
        return "cause unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}" + (", as the kernel does when memory runs out" if -exitcode == signal.SIGKILL else "")
    return f"exited with code {exitcode}"


class ProcessPool(_Local):
    """``jobs`` runs side by side in worker processes (started with spawn: a fork after torch has started its
    thread pools can deadlock), each run on the least busy of ``slots`` (the devices, one entry per run a device
    takes at once). :attr:`deaths` holds what killed the workers of each run, each time."""

    def __init__(self, jobs: int, slots: list[str]) -> None:
        self.jobs, self.slots = jobs, slots
        self.ctx = mp.get_context("spawn")
        self.pool: cf.ProcessPoolExecutor | None = None
        self.deaths: dict[str, list[str]] = {}  # run id -> what killed its worker, each time

    def start(self, work: Work) -> None:
        self.work = work
        self.q = self.ctx.Queue()
        self.procs: dict = {}  # the pool's worker processes by pid (their exit codes say which one died, and how)
        self.worker_of: dict[str, int] = {}  # run id -> pid of the worker that took it
        self.running: dict[cf.Future, tuple[RunSpec, str]] = {}  # -> (spec, the device it was given)
        self.ended: list[Finished] = []
        self.deaths = {}
        self.idle_deaths = 0
        self._start_pool()

    def _start_pool(self) -> None:
        self.pool = cf.ProcessPoolExecutor(self.jobs, mp_context=self.ctx, initializer=_worker_init,
                                           initargs=(self.q,))
        self.procs = getattr(self.pool, "_processes", None)
        if self.procs is None:
            self.procs = {}

    def room(self) -> int:
        return self.jobs - len(self.running)

    def submit(self, spec: RunSpec) -> None:
        busy = Counter(dev for _, dev in self.running.values())
        dev = min(dict.fromkeys(self.slots), key=lambda d: busy[d])  # the least busy device
        w = self.work
        try:
            fut = self.pool.submit(run_one, spec, str(w.root), w.threads_of(spec.run_id), w.prov,
                                   self.deaths.get(spec.run_id), dev, w.deterministic)
        except BrokenProcessPool:  # a worker died while idle: a fresh pool, and submit again
            self.idle_deaths += 1
            if self.idle_deaths > 3:
                raise RuntimeError("the worker processes keep dying before they take a run; try --jobs 1") from None
            self._worker_died([])
            self.submit(spec)
            return
        self.running[fut] = (spec, dev)

    def busy(self) -> bool:
        return bool(self.running or self.ended)

    def wait(self) -> list[Finished]:
        broken: list[RunSpec] = []
        if self.running:
            done, _ = cf.wait(self.running, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                spec, _ = self.running.pop(fut)
                try:
                    self.ended.append(Finished(spec, *fut.result()[1:]))
                except BrokenProcessPool:
                    broken.append(spec)
        if broken:
            self._worker_died(broken)
        self._drain()
        ended, self.ended = self.ended, []
        return ended

    def _drain(self) -> None:
        """The workers' messages: which worker took which run, and the epochs (to the progress bar)."""
        while True:
            try:
                msg = self.q.get_nowait()
            except queue_mod.Empty:
                break
            if msg[0] == "start":
                self.worker_of[msg[1]] = msg[2]
            elif self.work.progress is not None:
                self.work.progress(*msg[1:])

    def _worker_died(self, lost: list[RunSpec]) -> None:
        """The pool broke: a worker process died. Charge its run (all the runs in flight when the dead one is not
        known), store it as failed after :data:`WORKER_RETRIES` tries, submit the others again to a fresh pool."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        for fut, (spec, _) in list(self.running.items()):  # every future of a broken pool ends; some may have finished
            self.running.pop(fut)
            exc = fut.exception()
            if exc is None:
                self.ended.append(Finished(spec, *fut.result()[1:]))
            elif isinstance(exc, BrokenProcessPool):
                lost.append(spec)
            else:
                raise exc
        self._drain()
        dead = {pid: p.exitcode for pid, p in list(self.procs.items()) if p.exitcode != -signal.SIGTERM}
        culprits = {s.run_id for s in lost if self.worker_of.get(s.run_id) in dead} or {s.run_id for s in lost}
        again = []  # in the order they were lost (the messages and failures in the reverse order, as they were)
        for spec in reversed(lost):
            rid = spec.run_id
            if rid in culprits:
                pid = self.worker_of.get(rid)
                why = _death(dead[pid] if pid in dead else next(iter(dead.values())) if len(dead) == 1 else None)
                self.deaths.setdefault(rid, []).append(why)
                n = len(self.deaths[rid])
                if n > WORKER_RETRIES:
                    whys = "; ".join(dict.fromkeys(self.deaths[rid]))
                    reason = (f"its worker process died {n} times ({whys}); out of memory? train fewer runs at a time "
                              "(--jobs) or give it more memory, then transferscope run --retry-failed")
                    _, st, first = store_failure(Store(self.work.root), spec, reason, prov=self.work.prov,
                                                 worker_deaths=self.deaths[rid],
                                                 threads=self.work.threads_of(rid))
                    self.ended.append(Finished(spec, st, first))
                    continue
                tqdm.write(f"run {rid}: its worker process died ({why}); trying it again ({n} of {WORKER_RETRIES})")
            again.insert(0, spec)
        self.worker_of.clear()
        self._start_pool()
        for spec in again:
            self.submit(spec)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def local_backend(jobs: int, slots: list[str]) -> InProcess | ProcessPool:
    """Runs on this machine: one at a time in this process (``jobs`` 1), else ``jobs`` worker processes."""
    return ProcessPool(jobs, slots) if jobs > 1 else InProcess(slots[0], jobs)
