"""The Ray backends: a study's runs (``transferscope run --executor ray``, :class:`RayRuns`) and its analyses
(``transferscope analyze --executor ray``, :class:`RayAnalyses`) as Ray tasks, on any node of a cluster.

Runs: the scheduler (:mod:`.scheduler`) keeps the study's order as on one machine (P before the P-T runs that start
from it, the learning-rate candidates before the runs that take their choice, the checkpoints of P before the basin
runs) and submits a run only once what it needs is stored; :class:`RayRuns` makes each a Ray task. Each task
declares its resources: ``num_cpus`` = the study's torch threads per run, ``num_gpus`` = 1/``runs_per_device`` when
the runs train on CUDA (Ray then shows the task its GPU as ``cuda:0``).

Every node must see the results folder at the same path (a shared file system). Runs are written there as on one
machine (a temporary folder renamed into place: a run is stored whole or not at all). Instead of the folder's
``flock`` (unreliable on network file systems), the driver claims each run before submitting it
(:meth:`~transferscope.store.Store.claim`: an exclusive create of ``runs/.claims/<run_id>``), and the task that
trains it touches the claim as a heartbeat. A run claimed by another live process (a second driver on the same
folder) is waited for, not trained twice; a claim whose heartbeat stopped for the stale timeout is taken over.

A node that dies loses only the runs in flight on it: Ray tries their tasks again on another node (``max_retries``);
a run whose tries are spent is left unstored, and the next ``run`` (a resume) trains it. The claim timings are
options (``heartbeat``, ``stale_after``: ``--claim-heartbeat``, ``--claim-stale``), checked by
:func:`check_claim_timing`.

Analyses: each job not cached is a Ray task that computes it and writes its result file into the shared folder
(atomically, so a job computed twice leaves one whole file), started once the analyses it needs
(:attr:`~.registry.Analysis.needs`) have ended; the driver gathers the results and judges the claims as on one
machine.

Devices (:func:`cluster_device`): the ``--device`` names mean on a cluster what they mean on one machine, the
cluster standing for the machine: ``auto`` is CUDA when the cluster has a GPU (each task then reserves its share of
one), else the CPU; ``cuda``/``cuda:N`` is a GPU of the cluster (Ray chooses which), refused when it has none.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial

from ..config import TRUST_ENV, ConfigError, trusted_factories
from ..store import CLAIM_HEARTBEAT_S, CLAIM_STALE_S, RUN_DONE, RUN_FAILED, RunClaim, Store, StoreError
from .jobs import Compute, Outcome, inputs_of, record_of, take_ready
from .plan import Plan, RunSpec
from .scheduler import WORKER_RETRIES, ExecutionSummary, Finished, Work, run_plan
from .worker import run_one

log = logging.getLogger(__name__)

__all__ = ["execute_ray", "RayExecutionSummary", "RayRuns", "RayAnalyses", "import_ray", "check_claim_timing",
           "cluster_device"]

INSTALL_HINT = "pip install 'transferscope[ray]' (or pip install ray)"


def import_ray():
    """The ``ray`` module, or a :class:`ConfigError` that says what to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def check_claim_timing(heartbeat: float, stale_after: float) -> None:
    """Refuse claim timings that would let a live run's claim be taken over: both positive, and the stale timeout
    more than twice the heartbeat period (a beat may come late by up to one period, and the driver touches the
    claims too). Raises :class:`ConfigError` naming the flag (``--claim-heartbeat``, ``--claim-stale``)."""
    for flag, v in (("--claim-heartbeat", heartbeat), ("--claim-stale", stale_after)):
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"{flag} {v!r}: must be a positive number of seconds")
    if stale_after <= 2 * heartbeat:
        raise ConfigError(f"--claim-stale {stale_after:g}: must be more than twice --claim-heartbeat "
                          f"({heartbeat:g} s), else a run still training could be taken for dead and trained twice; "
                          f"e.g. --claim-stale {max(CLAIM_STALE_S, 12 * heartbeat):g}")


_DEVICE = re.compile(r"auto|cpu|mps|cuda(?::\d+)?")


def _device_name(name: str | None) -> str:
    dev = (name or "auto").strip().lower()
    if not _DEVICE.fullmatch(dev):
        raise ConfigError(f"device {name!r}: unknown; one of auto, cpu, cuda, cuda:N, mps")
    return dev


def cluster_device(name: str | None, gpus: float) -> str:
    """The device of every task, runs and analyses alike, on a Ray cluster with ``gpus`` GPUs in all: ``cuda``
    (each task reserves its share of a GPU, which Ray shows it as ``cuda:0``), ``cpu`` or ``mps``. ``name`` means
    what it means on one machine, the cluster standing for the machine: ``auto`` (or None) is CUDA when the cluster
    has a GPU, else the CPU; ``cuda`` or ``cuda:N``, a GPU of the cluster (Ray chooses which), is refused when it
    has none (a task asking for one would wait for ever)."""
    dev = _device_name(name)
    if dev == "auto":
        dev = "cuda" if gpus > 0 else "cpu"
    if dev.startswith("cuda") and not gpus > 0:
        raise ConfigError(f"device {dev!r}: the Ray cluster has no GPU; use --device cpu (or auto)")
    return "cuda" if dev.startswith("cuda") else dev


@contextlib.contextmanager
def _joined(address: str | None) -> Iterator:
    """The ``ray`` module, joined to the cluster at ``address`` for the block (a Ray already joined is kept)."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # the factories the user trusts go with the job to every worker (a folder's own never do)
        trusted = ",".join(sorted(trusted_factories()))
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=False,
                 **({"runtime_env": {"env_vars": {TRUST_ENV: trusted}}} if trusted else {}))
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def _largest_node_cpus(ray) -> int:
    return max([int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [1])


def _task_error(e: BaseException) -> BaseException:
    """What a task raised (an error of the store: disk full ...), for the driver to raise."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def _lost(e: BaseException) -> str:
    return f"its Ray task was lost ({type(e).__name__}: {str(e).splitlines()[0]})"


# ------------------------------------------------------------------------------------------------ runs

@dataclass
class RayExecutionSummary(ExecutionSummary):
    nodes: dict[str, str] = field(default_factory=dict)
    """Run id -> the Ray node (id) that trained it, for the runs trained by this call."""
    elsewhere: list[str] = field(default_factory=list)
    """Runs that another process (another driver) trained while this call waited for them."""


def _train(spec: RunSpec, root: str, threads: int, prov: dict, device: str, deterministic: bool, claim: RunClaim,
           heartbeat: float) -> tuple[str, str | None, str, str]:
    """A Ray task: train one run under its claim, touching the claim while it trains."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    if not claim.touch():
        return spec.run_id, "lost", "its claim was taken over by another process", node
    with claim.heartbeat(heartbeat):
        rid, st, reason = run_one(spec, root, threads, prov, device=device, deterministic=deterministic)
    return rid, st, reason, node


class RayRuns:
    """The scheduler's backend on a Ray cluster: each run a Ray task (see the module's docstring). ``device``: the
    ``--device`` (:func:`cluster_device`); :attr:`nodes` and :attr:`elsewhere` say where the runs of the last round
    were trained."""

    def __init__(self, address: str | None = None, *, device: str = "auto", runs_per_device: int = 1,
                 stale_after: float = CLAIM_STALE_S, heartbeat: float = CLAIM_HEARTBEAT_S,
                 max_retries: int = WORKER_RETRIES) -> None:
        if runs_per_device < 1:
            raise ConfigError(f"--runs-per-device {runs_per_device}: must be at least 1")
        self.address, self.device, self.runs_per_device = address, _device_name(device), runs_per_device
        self.stale_after, self.heartbeat, self.max_retries = stale_after, heartbeat, max_retries
        self.owner = f"ray driver on {socket.gethostname()} (pid {os.getpid()})"
        self.ray = None
        self.nodes: dict[str, str] = {}
        self.elsewhere: list[str] = []

    # the folder: per-run claims
    @contextlib.contextmanager
    def hold(self, store: Store) -> Iterator[int]:
        try:  # a study trained on this machine holds the folder's flock: refuse, as it would refuse this one
            with store.lock(claims=False):
                pass
        except StoreError:
            raise
        except OSError:  # no flock on this file system: per-run claims are all there is
            pass
        with _joined(self.address) as ray:
            self.ray = ray
            self.task_device = cluster_device(self.device, ray.cluster_resources().get("GPU", 0))
            yield max(1, int(ray.cluster_resources().get("CPU", 1)))

    def clean_tmp(self, store: Store) -> int:
        return store.clean_tmp(live=lambda rid: store.claimed_live(rid, self.stale_after))

    @contextlib.contextmanager
    def owning(self, store: Store, run_id: str) -> Iterator[None]:
        claim = store.claim(run_id, self.stale_after, self.owner)
        if claim is None:
            h = store.claim_holder(run_id, self.stale_after) or {}
            raise ConfigError(f"--rerun {run_id}: the run is being trained by another process ({h.get('owner')} on "
                              f"{h.get('host')}, pid {h.get('pid')}); wait for it to finish")
        try:
            yield
        finally:
            claim.release()

    # the runs: Ray tasks
    def start(self, work: Work) -> None:
        self.work, self.store = work, Store(work.root)
        gpus = 1.0 / self.runs_per_device if self.task_device == "cuda" else 0.0
        self.task = self.ray.remote(_train).options(
            num_cpus=min(work.threads, _largest_node_cpus(self.ray)), num_gpus=gpus, max_retries=self.max_retries,
            retry_exceptions=False, scheduling_strategy="SPREAD")
        self.running: dict = {}  # ObjectRef -> (spec, claim)
        self.held: dict[str, RunSpec] = {}  # claimed by another live process: waited for
        self.ended: list[Finished] = []
        self.nodes, self.elsewhere = {}, []
        self.last_beat = time.time()

    def room(self) -> int:
        return sys.maxsize  # Ray queues what the cluster cannot take yet

    def submit(self, spec: RunSpec) -> None:
        rid, w = spec.run_id, self.work
        claim = self.store.claim(rid, self.stale_after, self.owner)
        if claim is None:
            self.held[rid] = spec
            return
        st = self.store.run_status(rid)  # stored by another process since this call looked?
        if st == RUN_DONE or (st == RUN_FAILED and not w.retry_failed and rid not in w.rerun):
            claim.release()
            self.ended.append(Finished(spec, st, by="before"))
            return
        ref = self.task.remote(spec, str(w.root), w.threads_of(rid), w.prov, self.task_device, w.deterministic,
                               claim, self.heartbeat)
        self.running[ref] = (spec, claim)

    def busy(self) -> bool:
        return bool(self.running or self.held or self.ended)

    def wait(self) -> list[Finished]:
        for rid, spec in list(self.held.items()):  # done there, or free again (released, or its holder died)
            if self.store.claimed_live(rid, self.stale_after):
                continue
            del self.held[rid]
            st = self.store.run_status(rid)
            if st in (RUN_DONE, RUN_FAILED):
                self.elsewhere.append(rid)
                self.ended.append(Finished(spec, st, "failed in another process: see its run.json", by="elsewhere"))
            else:
                self.submit(spec)
        if time.time() - self.last_beat > self.heartbeat / 2:  # the driver holds the claims: it keeps them alive too
            for _, claim in self.running.values():
                claim.touch()
            self.last_beat = time.time()
        if not self.running:
            if self.held and not self.ended:
                time.sleep(min(1.0, self.heartbeat))
        else:
            self._gather()
        ended, self.ended = self.ended, []
        return ended

    def _gather(self) -> None:
        ray = self.ray
        done, _ = ray.wait(list(self.running), num_returns=1, timeout=0.5)
        for ref in done:
            spec, claim = self.running.pop(ref)
            try:
                rid, st, reason, node = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # an error of the store (disk full ...): the study stops
                claim.release()
                raise _task_error(e) from None
            except ray.exceptions.RayError as e:  # its node or worker died, and its tries are spent
                claim.release()
                self.ended.append(Finished(spec, None, _lost(e) + "; run the study again to train it"))
                continue
            if st == "lost":
                self.held[rid] = spec
                continue
            claim.release()
            self.nodes[rid] = node
            self.ended.append(Finished(spec, st, reason))

    def close(self) -> None:
        for ref, (_, claim) in getattr(self, "running", {}).items():  # interrupted: stop the tasks, free their runs
            self.ray.cancel(ref, force=True)
            claim.release()
        self.running = {}


def execute_ray(plan: Plan, store: Store, *, address: str | None = None, threads: int = 0, retry_failed: bool = False,
                show_progress: bool = True, rerun: Iterable[str] = (), device: str | None = None,
                runs_per_device: int = 1, deterministic: bool = False, stale_after: float = CLAIM_STALE_S,
                heartbeat: float = CLAIM_HEARTBEAT_S, max_retries: int = WORKER_RETRIES) -> RayExecutionSummary:
    """Run every unfinished run of ``plan`` into ``store`` as Ray tasks (see the module's docstring).

    ``address``: the cluster to join (``ray.init(address=...)``: ``HOST:PORT`` or ``auto``; None: ``RAY_ADDRESS``,
    or a Ray instance started on this machine for the call). ``device``: as on one machine, for the cluster
    (:func:`cluster_device`). The other arguments are those of :func:`~transferscope.study.runner.execute`;
    ``threads`` 0 with no count recorded yet: the driver's cores shared out among the cluster's CPUs (at least 1).

    ``heartbeat`` (``--claim-heartbeat``, default :data:`~transferscope.store.CLAIM_HEARTBEAT_S`): how often the
    task training a run (and the driver) touches the run's claim; ``stale_after`` (``--claim-stale``, default
    :data:`~transferscope.store.CLAIM_STALE_S`): how long a claim may go untouched before its holder is taken for
    dead and the run for free. It must exceed twice ``heartbeat`` (:func:`check_claim_timing`) and the clock
    difference between the nodes; every driver on one folder should use the same values.
    """
    check_claim_timing(heartbeat, stale_after)
    import_ray()  # before anything else: what to install
    backend = RayRuns(address, device=device or plan.config.device or "auto", runs_per_device=runs_per_device,
                      stale_after=stale_after, heartbeat=heartbeat, max_retries=max_retries)
    s = run_plan(plan, store, backend, threads=threads, retry_failed=retry_failed, rerun=rerun,
                  deterministic=deterministic, show_progress=show_progress)
    return RayExecutionSummary(**vars(s), nodes=backend.nodes, elsewhere=backend.elsewhere)


# ------------------------------------------------------------------------------------------------ analyses

def _analysis_task(ctx, spec, job, inputs: dict, path: str, threads: int, device: str):
    """A Ray task: compute one analysis job and write its result file (:func:`~.jobs.compute_job`), with the
    job's torch threads, on the task's device (its GPU is ``cuda:0`` under Ray)."""
    import ray
    import torch

    from ..devices import resolve_device
    from .jobs import compute_job

    torch.set_num_threads(threads)
    ctx = replace(ctx, device=str(resolve_device(device)))
    return compute_job(ctx, spec, job, inputs, path), ray.get_runtime_context().get_node_id()


@dataclass(frozen=True)
class RayAnalyses:
    """The analyses' backend on a Ray cluster (:class:`~.jobs.AnalysisBackend`; ``transferscope analyze --executor
    ray``): each job not cached a Ray task on the cluster at ``address`` (None: ``RAY_ADDRESS``, else a Ray started
    here for the session).

    Each job declares ``num_cpus`` = its torch threads (``threads``; 0: the study's, ``threads.json``, else 1; at
    most the largest node's CPUs) and, on CUDA, ``num_gpus`` = 1 (the device: :func:`cluster_device`). A job is
    submitted once every job of the analyses it ``needs`` has ended, with their records; it writes its result file
    on the shared results folder itself (atomically), and the driver gathers the results as on one machine. A job
    whose node dies is tried again elsewhere (``max_retries``), then reported missing (``analyze`` again computes
    it); a folder that cannot be written stops the analysis, as on one machine."""

    address: str | None = None
    max_retries: int = WORKER_RETRIES
    name: str = "ray"

    @contextlib.contextmanager
    def session(self, plan: Plan, store: Store, device: str | None, threads: int) -> Iterator[tuple[Compute, str]]:
        dev = _device_name(device or plan.config.device)  # an unknown name before joining a cluster
        with _joined(self.address) as ray:
            task_device = cluster_device(dev, ray.cluster_resources().get("GPU", 0))
            n = min(max(1, threads or store.recorded_threads() or 1), max(1, _largest_node_cpus(ray)))
            task = ray.remote(_analysis_task).options(num_cpus=n, num_gpus=1 if task_device == "cuda" else 0,
                                                      max_retries=self.max_retries, retry_exceptions=False,
                                                      scheduling_strategy="SPREAD")
            yield partial(_compute_ray, ray, task, n, task_device), task_device


def _compute_ray(ray, task, threads: int, device: str, ctx, jobs: list, results: dict, tick) -> dict:
    """The jobs as Ray tasks, each once the analyses it needs have ended (see :class:`RayAnalyses`)."""
    results, out, nodes = dict(results), {}, {}
    ctx_ref = ray.put(ctx)
    waiting = dict(enumerate(jobs))
    running: dict = {}  # ObjectRef -> index in jobs
    try:
        while waiting or running:
            for i, p in take_ready(waiting, running.values(), jobs):
                running[task.remote(ctx_ref, p.spec, p.job, inputs_of(p.spec, results), str(p.path), threads,
                                    device)] = i
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                i = running.pop(ref)
                p = jobs[i]
                try:
                    o, node = ray.get(ref)
                    nodes[node] = nodes.get(node, 0) + 1
                except ray.exceptions.RayTaskError as e:  # the folder cannot be written: stop, as locally
                    raise _task_error(e) from None
                except ray.exceptions.RayError as e:  # its node or worker died, and its tries are spent
                    why = _lost(e) + "; run analyze again"
                    log.warning("analysis %s not computed: %s", p.name, why)
                    o = Outcome(missing=f"not computed: {why}")
                if o.missing and not o.text:
                    log.warning("analysis %s: %s", p.name, o.missing)
                if o.text is not None:
                    results[p.name] = record_of(p.spec, o.text)
                out[i] = o
                tick()
    finally:
        for ref in running:  # interrupted: stop what is in flight (a job writes its file whole or not at all)
            ray.cancel(ref, force=True)
    log.info("analyses on Ray: %d jobs computed on %d nodes (%s)", sum(nodes.values()), len(nodes),
             ", ".join(f"{n[:8]}: {k}" for n, k in nodes.items()))
    return out
