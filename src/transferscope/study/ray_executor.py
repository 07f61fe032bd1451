"""Run a plan on a Ray cluster (``transferscope run --executor ray``): each run is a Ray task, on any node.

The driver (the process that calls :func:`execute_ray`) keeps the study's order as the local executor does (P
before the P-T runs that start from it, the learning-rate candidates before the runs that take their choice, the
checkpoints of P before the basin runs) and submits a run only once what it needs is stored. Each task declares its
resources: ``num_cpus`` = the study's torch threads per run, ``num_gpus`` = 1/``runs_per_device`` when the runs
train on CUDA (Ray then shows the task its GPU as ``cuda:0``).

Every node must see the results folder at the same path (a shared file system). Runs are written there as by the
local executor (a temporary folder renamed into place: a run is stored whole or not at all). Instead of the
folder's ``flock`` (unreliable on network file systems), the driver claims each run before submitting it
(:meth:`~transferscope.store.Store.claim`: an exclusive create of ``runs/.claims/<run_id>``), and the task that
trains it touches the claim as a heartbeat. A run claimed by another live process (a second driver on the same
folder) is waited for, not trained twice; a claim whose heartbeat stopped for the stale timeout is taken over.

A node that dies loses only the runs in flight on it: Ray tries their tasks again on another node (``max_retries``);
a run whose tries are spent is left unstored, and the next ``run`` (a resume) trains it. The claim timings are
options (``heartbeat``, ``stale_after``: ``--claim-heartbeat``, ``--claim-stale``), checked by
:func:`check_claim_timing`.

The analyses (``transferscope analyze --executor ray``, :func:`ray_analysis`) go the same way: each analysis job
not cached is a Ray task that computes it and writes its result file into the shared folder (atomically, so a job
computed twice leaves one whole file), started once the analyses it needs (:attr:`.analyze.AnalysisSpec.needs`)
have ended; the driver gathers the results and judges the claims as the local executor does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import partial

from tqdm.auto import tqdm

from ..config import ConfigError, to_dict
from ..store import (
    CLAIM_HEARTBEAT_S,
    CLAIM_STALE_S,
    RUN_DONE,
    RUN_FAILED,
    RunClaim,
    RunDamaged,
    Store,
    StoreError,
    atomic_write_text,
    dumps,
)
from .plan import Plan, RunSpec
from .runner import (
    WORKER_RETRIES,
    ExecutionSummary,
    _block_orphans,
    _check_rerun,
    _label,
    _ready,
    _record,
    _release,
    _study_threads,
    _todo,
    prepare_domains,
    provenance,
    run_one,
)

log = logging.getLogger(__name__)

__all__ = ["execute_ray", "RayExecutionSummary", "import_ray", "ray_analysis", "check_claim_timing"]

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


def execute_ray(plan: Plan, store: Store, *, address: str | None = None, threads: int = 0, retry_failed: bool = False,
                show_progress: bool = True, rerun: Iterable[str] = (), device: str | None = None,
                runs_per_device: int = 1, deterministic: bool = False, stale_after: float = CLAIM_STALE_S,
                heartbeat: float = CLAIM_HEARTBEAT_S, max_retries: int = WORKER_RETRIES) -> RayExecutionSummary:
    """Run every unfinished run of ``plan`` into ``store`` as Ray tasks (see the module's docstring).

    ``address``: the cluster to join (``ray.init(address=...)``: ``HOST:PORT`` or ``auto``; None: ``RAY_ADDRESS``,
    or a Ray instance started on this machine for the call). The other arguments are those of
    :func:`~transferscope.study.runner.execute`; ``threads`` 0 with no count recorded yet: the driver's cores
    shared out among the cluster's CPUs (at least 1).

    ``heartbeat`` (``--claim-heartbeat``, default :data:`~transferscope.store.CLAIM_HEARTBEAT_S`): how often the
    task training a run (and the driver) touches the run's claim; ``stale_after`` (``--claim-stale``, default
    :data:`~transferscope.store.CLAIM_STALE_S`): how long a claim may go untouched before its holder is taken for
    dead and the run for free. It must exceed twice ``heartbeat`` (:func:`check_claim_timing`) and the clock
    difference between the nodes; every driver on one folder should use the same values.
    """
    check_claim_timing(heartbeat, stale_after)
    ray = import_ray()
    t0 = time.time()
    summary = RayExecutionSummary()
    rerun = list(dict.fromkeys(rerun))
    dev = (device or plan.config.device or "auto").strip().lower()
    if runs_per_device < 1:
        raise ConfigError(f"--runs-per-device {runs_per_device}: must be at least 1")
    gpus = 1.0 / runs_per_device if dev.startswith("cuda") else 0.0
    task_device = "cuda" if dev.startswith("cuda") else dev  # a task sees its own GPU only, as cuda:0
    try:  # a study trained by the local executor holds the folder's flock: refuse, as it would refuse this one
        with store.lock(claims=False):
            pass
    except StoreError:
        raise
    except OSError:  # no flock on this file system: per-run claims are all there is
        pass
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                 configure_logging=False)
    owner = f"ray driver on {socket.gethostname()} (pid {os.getpid()})"
    running: dict = {}  # ObjectRef -> (spec, claim)
    try:
        store.check_format()
        _check_rerun(plan, store, rerun)
        store.write_format()
        atomic_write_text(store.root / "study.json", dumps(to_dict(plan.config)))
        removed = store.clean_tmp(live=lambda rid: store.claimed_live(rid, stale_after))
        if removed:
            log.info("removed %d unfinished run folders left by an interrupted study", removed)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        summary.jobs = cpus
        study_threads = summary.threads = _study_threads(plan, store, threads, cpus)
        most = max([int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [1])
        per_run: dict[str, int] = {}
        for rid in rerun:
            claim = store.claim(rid, stale_after, owner)
            if claim is None:
                h = store.claim_holder(rid, stale_after) or {}
                raise ConfigError(f"--rerun {rid}: the run is being trained by another process ({h.get('owner')} on "
                                  f"{h.get('host')}, pid {h.get('pid')}); wait for it to finish")
            try:
                try:
                    t = (store.run_info(rid) or {}).get("threads")
                    if isinstance(t, int) and t > 0 and not threads:
                        per_run[rid] = t
                except RunDamaged:
                    pass
                store.remove_run(rid)
            finally:
                claim.release()
            log.info("run %s removed: it is trained again", rid)

        total = plan.size()
        todo, seen, status, deferred = _todo(plan, store, retry_failed, summary)
        if not todo:
            summary.seconds = time.time() - t0
            return summary
        prepare_domains(plan, show_progress)  # data errors first, on the driver
        prov = provenance()
        bar = tqdm(total=total, initial=len(summary.skipped) + len(summary.blocked), desc="runs", unit="run",
                   disable=not show_progress, dynamic_ncols=True)
        task = ray.remote(_train).options(
            num_cpus=min(study_threads, most), num_gpus=gpus, max_retries=max_retries, retry_exceptions=False,
            scheduling_strategy="SPREAD")
        pending = list(todo)
        elsewhere: dict[str, RunSpec] = {}  # claimed by another live process: waited for

        def finish(rid: str, st: str | None, reason: str) -> None:
            _record(summary, status, rid, st, reason)
            bar.update(1)

        def ready(spec: RunSpec) -> bool | None:
            return _ready(spec, status)

        last_beat = time.time()
        while pending or running or elsewhere:
            bar.update(_block_orphans(pending, status, summary))
            for spec in [s for s in pending if ready(s)]:
                pending.remove(spec)
                rid = spec.run_id
                claim = store.claim(rid, stale_after, owner)
                if claim is None:
                    elsewhere[rid] = spec
                    continue
                st = store.run_status(rid)  # stored by another process since this call looked?
                if st == RUN_DONE or (st == RUN_FAILED and not retry_failed and rid not in rerun):
                    claim.release()
                    summary.skipped.append(rid)
                    status[rid] = st
                    bar.update(1)
                    continue
                ref = task.remote(spec, str(store.root), per_run.get(rid, study_threads), prov, task_device,
                                  deterministic, claim, heartbeat)
                running[ref] = (spec, claim)
            for rid, spec in list(elsewhere.items()):  # done there, or free again (released, or its holder died)
                if store.claimed_live(rid, stale_after):
                    continue
                del elsewhere[rid]
                st = store.run_status(rid)
                if st in (RUN_DONE, RUN_FAILED):
                    summary.elsewhere.append(rid)
                    status[rid] = st
                    if st == RUN_FAILED:
                        summary.failed[rid] = "failed in another process: see its run.json"
                    bar.update(1)
                else:
                    pending.append(spec)
            if time.time() - last_beat > heartbeat / 2:  # the driver holds the claims: it keeps them alive too
                for _, claim in running.values():
                    claim.touch()
                last_beat = time.time()
            if not running:
                if elsewhere:
                    time.sleep(min(1.0, heartbeat))
                    continue
                if not [s for s in pending if ready(s)]:
                    break
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in done:
                spec, claim = running.pop(ref)
                try:
                    rid, st, reason, node = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # an error of the store (disk full ...): the study stops
                    claim.release()
                    cause = getattr(e, "cause", None)
                    raise (cause if isinstance(cause, BaseException) else e) from None
                except ray.exceptions.RayError as e:  # its node or worker died, and its tries are spent
                    claim.release()
                    finish(spec.run_id, None, f"its Ray task was lost ({type(e).__name__}: {str(e).splitlines()[0]}); "
                                              "run the study again to train it")
                    continue
                if st == "lost":
                    elsewhere[rid] = spec
                    continue
                claim.release()
                summary.nodes[rid] = node
                finish(rid, st, reason)
            if done:
                fresh, accounted = _release(deferred, status, seen, store, retry_failed, summary)
                pending.extend(fresh)
                bar.update(accounted)
        for template, sel in deferred:
            if not sel.is_winner(template):
                summary.blocked[_label(template)] = f"the learning-rate candidates of {sel.key} did not run"
                bar.update(1)
        bar.close()
    finally:
        for ref, (_, claim) in running.items():  # interrupted: stop the tasks, free their runs
            ray.cancel(ref, force=True)
            claim.release()
        if started_here:
            ray.shutdown()
    summary.seconds = time.time() - t0
    return summary


# ------------------------------------------------------------------------------------------------ analyses

_DEVICE = re.compile(r"auto|cpu|mps|cuda(?::\d+)?")


def _analysis_task(ctx, spec, job, inputs: dict, path: str, threads: int, device: str):
    """A Ray task: compute one analysis job and write its result file (:func:`~.analyze.compute_job`), with the
    job's torch threads, on the task's device (its GPU is ``cuda:0`` under Ray)."""
    import ray
    import torch

    from ..devices import resolve_device
    from .analyze import compute_job

    torch.set_num_threads(threads)
    ctx = replace(ctx, device=str(resolve_device(device)))
    return compute_job(ctx, spec, job, inputs, path), ray.get_runtime_context().get_node_id()


@contextlib.contextmanager
def ray_analysis(plan: Plan, store: Store, *, device: str | None = None, address: str | None = None,
                 threads: int = 0, max_retries: int = WORKER_RETRIES):
    """The Ray executor of :func:`~.analyze.analyze` (``transferscope analyze --executor ray``): yields
    ``(compute, device)``, the :data:`~.analyze.Compute` that runs each job not cached as a Ray task, and the
    device the jobs compute on; joins (or starts) the cluster for the block.

    Each job declares ``num_cpus`` = its torch threads (``threads``; 0: the study's, ``threads.json``, else 1; at
    most the largest node's CPUs) and, on CUDA, ``num_gpus`` = 1 (``auto``: CUDA when the cluster has GPUs, else
    the CPU: the driver needs none). A job is submitted once every job of the analyses it ``needs`` has ended,
    with their records; it writes its result file on the shared results folder itself (atomically), and the driver
    gathers the results as the local executor does. A job whose node dies is tried again elsewhere
    (``max_retries``), then reported missing (``analyze`` again computes it); a folder that cannot be written stops
    the analysis, as locally."""
    dev = (device or plan.config.device or "auto").strip().lower()
    if not _DEVICE.fullmatch(dev):
        raise ConfigError(f"device {device!r}: unknown; one of auto, cpu, cuda, cuda:N, mps")
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
    try:
        gpus_there = ray.cluster_resources().get("GPU", 0) > 0
        if dev == "auto":
            dev = "cuda" if gpus_there else "cpu"
        if dev.startswith("cuda") and not gpus_there:
            raise ConfigError(f"device {dev!r}: the Ray cluster has no GPU; use --device cpu (or auto)")
        task_device = "cuda" if dev.startswith("cuda") else dev  # a task sees its own GPU only, as cuda:0
        most = max([int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [1])
        n = min(max(1, threads or store.recorded_threads() or 1), max(1, most))
        task = ray.remote(_analysis_task).options(num_cpus=n, num_gpus=1 if task_device == "cuda" else 0,
                                                  max_retries=max_retries, retry_exceptions=False,
                                                  scheduling_strategy="SPREAD")
        yield partial(_compute_ray, ray, task, n, task_device), task_device
    finally:
        if started_here:
            ray.shutdown()


def _compute_ray(ray, task, threads: int, device: str, ctx, jobs: list, results: dict, tick) -> dict:
    """The jobs as Ray tasks, each once the analyses it needs have ended (see :func:`ray_analysis`)."""
    from .analyze import Outcome, inputs_of, record_of

    results, out, nodes = dict(results), {}, {}
    ctx_ref = ray.put(ctx)
    waiting = dict(enumerate(jobs))
    running: dict = {}  # ObjectRef -> index in jobs
    try:
        while waiting or running:
            open_ = {j.spec.name for j in waiting.values()} | {jobs[i].spec.name for i in running.values()}
            for i, p in list(waiting.items()):
                if open_.isdisjoint(p.spec.needs):
                    del waiting[i]
                    ref = task.remote(ctx_ref, p.spec, p.job, inputs_of(p.spec, results), str(p.path), threads,
                                      device)
                    running[ref] = i
            if not running:  # a cycle of needs cannot be registered; left for safety
                raise RuntimeError(f"analyses {sorted(open_)} wait for each other")
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                i = running.pop(ref)
                p = jobs[i]
                try:
                    o, node = ray.get(ref)
                    nodes[node] = nodes.get(node, 0) + 1
                except ray.exceptions.RayTaskError as e:  # the folder cannot be written: stop, as locally
                    cause = getattr(e, "cause", None)
                    raise (cause if isinstance(cause, BaseException) else e) from None
                except ray.exceptions.RayError as e:  # its node or worker died, and its tries are spent
                    why = f"its Ray task was lost ({type(e).__name__}: {str(e).splitlines()[0]}); run analyze again"
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
