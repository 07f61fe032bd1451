"""Run a plan: skip finished runs, train the rest parents-first, on this machine or on a Ray cluster.

:func:`execute` is ``transferscope run``: it picks the backend (:mod:`.pool` on this machine, under the folder's
lock; :mod:`.ray_executor` on a Ray cluster, under per-run claims) and hands it to the scheduler
(:mod:`.scheduler`), which holds every step they share. A run whose loss diverges, or that raises, is stored as
failed with its reason and the study goes on; runs that need it are skipped.

Determinism: a run's result depends on its spec and on the number of torch threads it trains with (the order of
floating-point sums). The first ``run`` of a study fixes that number for every run (``threads.json``: ``--threads``,
or the cores shared out among ``--jobs``), whatever runs beside it; every later call, and a run trained again
(``--rerun``, a retry), reuses it, so a resumed or repaired study is bitwise identical to one run at once.

The names this module has always offered stay here: :func:`run_one` and :func:`provenance` (:mod:`.worker`),
:class:`ExecutionSummary` and :data:`WORKER_RETRIES` (:mod:`.scheduler`), :func:`load_run_model`
(:mod:`.artefacts`).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..config import ConfigError
from ..devices import device_slots
from ..store import Store
from .artefacts import load_run_model
from .plan import Plan
from .pool import jobs_that_fit, local_backend
from .scheduler import WORKER_RETRIES, ExecutionSummary, run_plan
from .worker import provenance, run_one

__all__ = ["execute", "run_one", "ExecutionSummary", "provenance", "load_run_model", "WORKER_RETRIES"]


def execute(plan: Plan, store: Store, *, jobs: int = 1, threads: int = 0, retry_failed: bool = False,
            show_progress: bool = True, rerun: Iterable[str] = (), device: str | None = None,
            runs_per_device: int = 1, deterministic: bool = False, executor: str = "local",
            address: str | None = None, heartbeat: float | None = None,
            stale_after: float | None = None) -> ExecutionSummary:
    """Run every unfinished run of ``plan`` into ``store`` (which this call holds: see ``executor``).

    Args:
        jobs: runs trained side by side in worker processes (1: in this process); fewer, with a warning, when
            that many workers would not fit in the available memory. Not used on Ray (the cluster's CPUs).
        threads: torch threads per run; 0: those the study's first call fixed (``threads.json``), where a first
            call shares the cores out among ``jobs``. Results are bitwise reproducible for a fixed thread count,
            so a resumed study equals one run at once.
        retry_failed: run again the runs stored as failed.
        rerun: run ids to train again (removed first): runs whose files are damaged (:class:`RunDamaged`).
        device: where the runs train (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; None: the study's
            ``device``). ``auto``: a GPU where the runs train if there is one (this machine's; on Ray, the
            cluster's: :func:`~.ray_executor.cluster_device`), else MPS (this machine), else the CPU. A device that
            is not there is an error before anything is written. On CUDA, ``jobs`` is the GPUs times
            ``runs_per_device`` (``cuda``/``auto`` spread the runs over every GPU of the machine).
        deterministic: PyTorch's deterministic algorithms on a GPU (the CPU is bitwise reproducible as it is).
        executor: ``local`` (worker processes of this machine, under the folder's lock) or ``ray`` (a Ray task per
            run on the cluster at ``address``, under per-run claims: :mod:`.ray_executor`; ``jobs`` is then the
            cluster's CPUs).
        heartbeat, stale_after: with ``executor="ray"``, the claim heartbeat and stale timeout in seconds
            (``--claim-heartbeat``, ``--claim-stale``; None: the defaults of :mod:`transferscope.store`).

    Raises:
        StoreFormatError: ``store`` was written by another version of transferscope, in another format.
        StoreLocked: another process is writing ``store`` (then nothing is written).
        StoreWriteError: the folder cannot be written (disk full, read-only); finished runs are kept.
        RunDamaged: a stored run.json cannot be read (the message names it and the ``--rerun`` that repairs it).
    """
    if executor == "ray":
        from .ray_executor import execute_ray

        return execute_ray(plan, store, address=address, threads=threads, retry_failed=retry_failed,
                           show_progress=show_progress, rerun=rerun, device=device, runs_per_device=runs_per_device,
                           deterministic=deterministic,
                           **{k: v for k, v in (("heartbeat", heartbeat), ("stale_after", stale_after)) if v is not None})
    if executor != "local":
        raise ConfigError(f"--executor {executor!r}: one of 'local', 'ray'")
    slots = device_slots(device or plan.config.device, runs_per_device)  # refused here: nothing written yet
    if slots[0].startswith("cuda"):
        jobs = len(slots)
    backend = local_backend(jobs_that_fit(plan, jobs), slots)
    summary = run_plan(plan, store, backend, threads=threads, retry_failed=retry_failed, rerun=rerun,
                        deterministic=deterministic, show_progress=show_progress)
    summary.retried = {rid: d for rid, d in backend.deaths.items() if rid not in summary.failed}
    return summary
