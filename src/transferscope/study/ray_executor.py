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
a run whose tries are spent is left unstored, and the next ``run`` (a resume) trains it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

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

__all__ = ["execute_ray", "RayExecutionSummary", "import_ray"]

INSTALL_HINT = "pip install 'transferscope[ray]' (or pip install ray)"


def import_ray():
    """The ``ray`` module, or a :class:`ConfigError` that says what to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


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
    """
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
