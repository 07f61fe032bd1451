"""Run a plan on this machine: skip finished runs, run the rest parents-first, in parallel worker processes.

On a CPU, several small runs side by side, each on fewer threads, use the cores better than one run on all of
them (see ``benchmarks/train_throughput.py``). A run whose loss diverges, or that raises, is stored as failed with
its reason and the study goes on; runs that need it are skipped.

Determinism: a run's result depends on its spec and on the number of torch threads it trains with (the order of
floating-point sums). The first ``run`` of a study fixes that number for every run (``threads.json``: ``--threads``,
or the cores shared out among ``--jobs``), whatever runs beside it; every later call, and a run trained again
(``--rerun``, a retry), reuses it, so a resumed or repaired study is bitwise identical to one run at once.

A worker process that dies (killed by the kernel when memory runs out, or by ``kill -9``) costs only the runs it
held: the pool is started afresh, the dead worker's run is tried again up to :data:`WORKER_RETRIES` times (the
runs that were in flight beside it again at no cost), then stored as failed with what killed it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import difflib
import functools
import logging
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import __version__, tblog
from ..config import ConfigError, to_dict
from ..devices import describe, device_slots, library_versions, resolve_device, set_deterministic
from ..metrics import AUC, is_multilabel, key, metric_of
from ..models import ModelError, create_model
from ..store import (
    RUN_DONE,
    RUN_FAILED,
    RunDamaged,
    Store,
    atomic_write_text,
    dumps,
    hash_artefacts,
    write_json,
    write_npz,
)
from ..train import TrainingDiverged, train
from .artefacts import checkpoint_name as _checkpoint_name
from .artefacts import domain_data as _domain
from .artefacts import load_run_model
from .artefacts import load_state as _load
from .artefacts import save_state as _save
from .plan import Plan, RunSpec, estimate_memory, format_bytes
from .tuning import choose, concrete

log = logging.getLogger(__name__)

__all__ = ["execute", "run_one", "ExecutionSummary", "provenance", "load_run_model", "WORKER_RETRIES"]

WORKER_RETRIES = 2
"""How many times a run whose worker process died is tried again before it is stored as failed."""

_KILL_ENV = "TRANSFERSCOPE_TEST_KILL_WORKER"
"""Tests only: ``RUN_ID:TIMES:FOLDER`` makes the worker process of that run kill itself with SIGKILL after its first
epoch, the first TIMES times (counted by files in FOLDER), as the kernel does when memory runs out."""


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


@functools.cache
def provenance() -> dict[str, str]:
    """Package version, git commit of the source tree (if any), and the software that ran."""
    src = Path(__file__).resolve().parent
    commit = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if dirty:
            commit += "-dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"transferscope": __version__, "git_commit": commit, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _initial_model(spec: RunSpec, store: Store, num_classes: int, device: str | torch.device = "cpu"
                   ) -> torch.nn.Module:
    """The model a run starts from, on ``device``. Initialised on the CPU with the run's seed, then moved: a run
    starts from the same weights on every device."""
    with torch.device("cpu"):
        if spec.arm != "P-T":
            return create_model(spec.model, spec.data.channels, num_classes, seed=spec.seed).to(device)
        pinfo = store.run_info(spec.parent)
        model = create_model(spec.model, spec.data.channels, pinfo["num_classes"], seed=spec.seed)
        name = "weights.safetensors"
        if spec.parent_checkpoint >= 0:
            name = "checkpoints/" + _checkpoint_name(spec.parent_checkpoint)
        model.load_state_dict(_load(store, spec.parent, name))
        model.reset_head(num_classes, generator=torch.Generator().manual_seed(spec.seed))
    return model.to(device)


_QUEUE = None  # worker processes: where epoch progress goes (to the parent's progress bar)
_PROGRESS = None  # in-process runs: a callback (run_id, epoch, epochs, validation accuracy or mean AUC)


def _worker_init(q) -> None:
    global _QUEUE
    _QUEUE = q
    if sys.platform.startswith("linux"):  # die with the parent, even when it is killed with SIGKILL
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _test_kill(run_id: str) -> None:
    """The test hook of :data:`_KILL_ENV`."""
    rid, _, rest = os.environ.get(_KILL_ENV, "").partition(":")
    if rid != run_id or _QUEUE is None:
        return
    times, _, folder = rest.partition(":")
    for k in range(int(times)):
        try:
            os.close(os.open(Path(folder) / f"kill-{k}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        os.kill(os.getpid(), signal.SIGKILL)


def _base_info(spec: RunSpec, prov: dict | None, worker_deaths: list[str] | None = None, device: str = "cpu",
               deterministic: bool = False) -> dict:
    info = {"run_id": spec.run_id, "arm": spec.arm, "spec": spec.to_dict(), "seed": spec.seed,
            "provenance": prov or provenance(), "threads": torch.get_num_threads(), "started": time.time(),
            "device": device, "precision": spec.train.precision, "deterministic": deterministic,
            "versions": library_versions()}
    if worker_deaths:
        info["worker_deaths"] = list(worker_deaths)
    return info


def run_one(spec: RunSpec, root: str | Path, threads: int = 0, prov: dict | None = None,
            worker_deaths: list[str] | None = None, device: str = "cpu",
            deterministic: bool = False) -> tuple[str, str | None, str]:
    """Train one run on ``device`` and store it. Returns (run_id, status, reason). Never raises for a failed run.
    The status is None when the run was not started because a run it starts from needs to be trained again
    (nothing stored). ``worker_deaths``: what killed the worker processes of its earlier tries (recorded in
    run.json). ``deterministic``: PyTorch's deterministic algorithms on a GPU (the CPU is deterministic as it
    is)."""
    if threads:
        torch.set_num_threads(threads)
    if _QUEUE is not None:
        _QUEUE.put(("start", spec.run_id, os.getpid()))
    store = Store(root)
    run_id = spec.run_id
    try:
        dev = resolve_device(device)
        set_deterministic(dev, deterministic)
    except Exception as e:
        return _store_failure(store, _base_info(spec, prov, worker_deaths, str(device), deterministic),
                              f"{type(e).__name__}: {e}")
    info = _base_info(spec, prov, worker_deaths, describe(dev), deterministic)
    t0 = info["started"]
    if spec.arm == "P" and spec.model.weights:
        return _import_pretrained(spec, store, info, t0, dev)
    try:
        data = _domain(spec.domain, spec.data)
        if spec.arm != "P":
            data = data.shuffled(spec.block_size, spec.data.shuffle_seed)
        model = _initial_model(spec, store, data.num_classes, dev)
        init = {k: v.detach().clone() for k, v in model.state_dict().items()}
        spe = -(-len(data.train) // spec.train.batch_size)
        ckpt_steps = {round(e * spe): e for e in spec.train.checkpoint_epochs}

        tb = tblog.run_log(root, run_id, spe)  # None unless --tensorboard

        def progress(epoch: int, figs: dict) -> None:
            if tb is not None:
                tb.epoch(epoch, figs)
            # the validation figure in the run's metric: accuracy, or the mean AUC of a multi-label target
            msg = (run_id, epoch, spec.train.epochs, figs.get("val_acc", figs.get("val_auc", float("nan"))))
            if _QUEUE is not None:
                _QUEUE.put(("epoch", *msg))
                _test_kill(run_id)
            elif _PROGRESS is not None:
                _PROGRESS(*msg)

        # fp32, the default, is train's own default: passed only when off it
        prec = {"precision": spec.train.precision} if spec.train.precision != "fp32" else {}
        result = train(model, data, spec.train, seed=spec.seed, checkpoint_steps=list(ckpt_steps), progress=progress,
                       **prec)
        if tb is not None:
            tb.finish(result.history)
    except TrainingDiverged as e:
        return _store_failure(store, info, f"diverged: {e}")
    except RunDamaged as e:  # the run it starts from is damaged: store nothing, it trains once that one is repaired
        return run_id, None, str(e)
    except Exception as e:  # a run's failure must not stop the study; the reason is kept
        log.debug("run %s failed", run_id, exc_info=True)
        return _store_failure(store, info, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}")
    with store.new_run(run_id) as d:
        _save(init, d / "init.safetensors")
        _save(model.state_dict(), d / "weights.safetensors")
        if result.checkpoints:
            (d / "checkpoints").mkdir()  # 0777 less the umask
            for step, state in result.checkpoints.items():
                _save(state, d / "checkpoints" / _checkpoint_name(ckpt_steps[step]))
        write_npz(d / "predictions.npz", test_logits=result.test_logits, test_labels=result.test_labels,
                  test_index=data.test.index)
        write_json(d, "metrics.json", result.metrics)
        write_json(d, "history.json", {**result.history, "steps_per_epoch": result.steps_per_epoch})
        info.update(status=RUN_DONE, num_classes=data.num_classes, classes=list(data.classes),
                    n_train=len(data.train), n_val=len(data.val), n_test=len(data.test),
                    domain_meta=data.meta, finished=time.time(), seconds=time.time() - t0,
                    artefacts=hash_artefacts(d))  # what was written; Store.verify_run checks it later
        write_json(d, "run.json", info)  # written last: a run folder with run.json is whole
    return run_id, RUN_DONE, ""


def _import_pretrained(spec: RunSpec, store: Store, info: dict, t0: float, dev: torch.device | str = "cpu"
                       ) -> tuple[str, str, str]:
    """P given as weights (``[model] weights``): stored as a finished run without training. Its head keeps the
    size of the weights; where it matches the source's classes, P is evaluated on the source's test split."""
    from ..models import Hooked, load_weights
    from ..store import file_sha256
    from ..train import evaluate

    cfg = spec.model
    try:
        digest = file_sha256(cfg.weights)
        if cfg.weights_sha256 and digest != cfg.weights_sha256:
            raise ModelError(f"model.weights {cfg.weights!r}: its content changed since the study was planned "
                             f"(sha256 {digest[:12]}..., planned {cfg.weights_sha256[:12]}...)")
        state = load_weights(cfg.weights)
        model = create_model(cfg, spec.data.channels, 1, seed=spec.seed)
        body = model.net if isinstance(model, Hooked) else model
        head = model.head_name if isinstance(model, Hooked) else "head"
        if f"{head}.weight" not in state:
            raise ModelError(f"model.weights {cfg.weights!r}: no {head}.weight (the head, model.head = {head!r}); "
                             f"the file holds {', '.join(list(state)[:8])}{', ...' if len(state) > 8 else ''}")
        k = int(state[f"{head}.weight"].shape[0])
        model.reset_head(k)

        def fit(key: str, path: str, state: dict) -> None:
            missing, unexpected = body.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ModelError(f"{key} {path!r} do not fit model.name {cfg.name!r}: "
                                 + "; ".join(f"{what}: {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}"
                                             for what, keys in (("missing", missing), ("unexpected", unexpected))
                                             if keys))

        # the given checkpoints first (each loaded into the model and kept in its key layout), the final weights last
        checkpoints = {}
        for i, (path, want) in enumerate(zip(spec.checkpoint_files, spec.checkpoint_sha256, strict=True)):
            if file_sha256(path) != want:
                raise ModelError(f"basin.checkpoints[{i}] {path!r}: its content changed since the study was planned")
            fit(f"basin.checkpoints[{i}]", path, load_weights(path))
            checkpoints[float(i + 1)] = {n: v.detach().clone() for n, v in model.state_dict().items()}
        fit("model.weights", cfg.weights, state)
        metrics = {"imported": True, "num_classes": k, "test_acc": float("nan"), "test_loss": float("nan")}
        classes: list = []
        if not spec.domain.name:
            metrics["note"] = "not evaluated: the study names no source domain"
        else:
            data = _domain(spec.domain, spec.data)
            if data.num_classes == k:
                if is_multilabel(data.test.y):  # judged as the source is: by its mean AUC over labels
                    del metrics["test_acc"]
                    metrics.update(metric=AUC, test_auc=float("nan"))
                metrics["test_loss"], metrics[key("test", metric_of(metrics))], _ = evaluate(model.to(dev), data.test)
                classes = list(data.classes)
            else:
                metrics["note"] = (f"not evaluated on the source: the head has {k} outputs, the source "
                                   f"{spec.domain.display} {data.num_classes} classes")
    except Exception as e:
        log.debug("importing P failed", exc_info=True)
        return _store_failure(store, info, f"{type(e).__name__}: {e}")
    with store.new_run(spec.run_id) as d:
        _save(model.state_dict(), d / "init.safetensors")
        _save(model.state_dict(), d / "weights.safetensors")
        if checkpoints:
            (d / "checkpoints").mkdir()
            for e, ck in checkpoints.items():
                _save(ck, d / "checkpoints" / _checkpoint_name(e))
        write_json(d, "metrics.json", metrics)
        write_json(d, "history.json", {"epoch": [], "steps_per_epoch": 0})
        info.update(status=RUN_DONE, num_classes=k, classes=classes,
                    imported_from={"path": str(cfg.weights), "sha256": digest,
                                   "checkpoints": [{"position": i + 1, "path": p, "sha256": h} for i, (p, h) in
                                                   enumerate(zip(spec.checkpoint_files, spec.checkpoint_sha256,
                                                                 strict=True))]},
                    finished=time.time(),
                    seconds=time.time() - t0, artefacts=hash_artefacts(d))
        write_json(d, "run.json", info)
    return spec.run_id, RUN_DONE, ""


def _store_failure(store: Store, info: dict, reason: str) -> tuple[str, str, str]:
    with store.new_run(info["run_id"]) as d:
        info.update(status=RUN_FAILED, reason=reason, finished=time.time(), seconds=time.time() - info["started"])
        write_json(d, "run.json", info)
    return info["run_id"], RUN_FAILED, reason.splitlines()[0]


def _release(deferred: list, status: dict[str, str | None], seen: set[str], store: Store, retry_failed: bool,
             summary: ExecutionSummary) -> tuple[list[RunSpec], int]:
    """Decide the deferred runs whose learning-rate candidates are all stored (``status`` has them), removing them
    from ``deferred``: a run already stored is counted as skipped, one whose grid failed as blocked, the rest are
    returned to train. Returns (runs to train, runs accounted for as skipped or blocked)."""
    fresh: list[RunSpec] = []
    accounted = 0
    decided = {}
    for item in list(deferred):
        template, sel = item
        if any(c.run_id not in status for c in sel.candidates):
            continue  # a candidate is still to train
        if sel.key not in decided:
            decided[sel.key] = choose(sel, store)
        c = decided[sel.key]
        if c.state == "pending":
            continue
        deferred.remove(item)
        if c.state == "failed":
            if not sel.is_winner(template):  # that slot is the failed candidate, counted already
                summary.blocked[_label(template)] = f"every learning rate of {sel.key}'s grid failed"
                accounted += 1
            continue
        spec = concrete(template, c.lr)
        if spec.run_id in seen:
            continue  # the winning candidate itself
        seen.add(spec.run_id)
        st = store.run_status(spec.run_id)
        if st == RUN_DONE or (st == RUN_FAILED and not retry_failed):
            summary.skipped.append(spec.run_id)
            status[spec.run_id] = st
            accounted += 1
        else:
            fresh.append(spec)
    return fresh, accounted


def _label(template: RunSpec) -> str:
    """A readable name for a run whose learning rate is not chosen (it has no run id of its own yet)."""
    return f"{template.label} (lr from the grid)"


def prepare_domains(plan: Plan, show_progress: bool = True) -> None:
    """Load (and cache) every domain of the plan before any training, so data errors come first."""
    seen = []
    for r in plan.runs + plan.tuning + [t for t, _ in plan.deferred]:
        if r.domain.name and (r.domain, r.data) not in seen:  # a given P may have no source
            seen.append((r.domain, r.data))
    for domain, data in tqdm(seen, desc="domains", disable=not show_progress, leave=False):
        _domain(domain, data)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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


def _study_threads(plan: Plan, store: Store, threads: int, jobs: int) -> int:
    """The torch threads of every run of the study: those its first call recorded (``threads.json``); for a first
    call, ``threads`` or the cores shared out among the runs trained side by side (all of torch's threads for one
    run at a time), never how many runs happen to be in flight. Call with the lock held."""
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


def _todo(plan: Plan, store: Store, retry_failed: bool, summary: ExecutionSummary
          ) -> tuple[list[RunSpec], set[str], dict[str, str | None], list]:
    """What a call of either executor trains, in order: P first (everything on P-T waits for it), then the
    learning-rate candidates, then the rest, and the deferred runs whose choice an earlier call made. Returns
    (runs to train, run ids seen, status of the runs already stored, deferred runs still waiting); runs already
    finished (or failed, without ``retry_failed``) go to ``summary.skipped``."""
    todo: list[RunSpec] = []
    seen: set[str] = set()
    for r in plan.runs[:1] + plan.tuning + plan.runs[1:]:
        if r.run_id in seen:
            continue
        seen.add(r.run_id)
        st = store.run_status(r.run_id)
        if st == RUN_DONE or (st == RUN_FAILED and not retry_failed):
            summary.skipped.append(r.run_id)
        else:
            todo.append(r)
    status: dict[str, str | None] = {r: store.run_status(r) for r in summary.skipped}
    deferred = list(plan.deferred)
    todo += _release(deferred, status, seen, store, retry_failed, summary)[0]  # choices an earlier call made
    return todo, seen, status, deferred


def _record(summary: ExecutionSummary, status: dict[str, str | None], rid: str, st: str | None, reason: str) -> None:
    """A run that ended in this call, in the summary and in ``status``: done, failed, or (``st`` None) blocked,
    because a run it starts from needs to be trained again and nothing was stored."""
    if st == RUN_DONE:
        summary.done.append(rid)
    elif st is None:
        st = "blocked"
        summary.blocked[rid] = reason
        tqdm.write(f"run {rid} not done: {reason}")
    else:
        summary.failed[rid] = reason
        tqdm.write(f"run {rid} failed: {reason}")
    status[rid] = st


def _ready(spec: RunSpec, status: dict[str, str | None]) -> bool | None:
    """True: ``spec`` can start; False: it waits for its parent; None: its parent failed or was blocked."""
    if not spec.parent:
        return True
    st = status.get(spec.parent)
    return True if st == RUN_DONE else None if st in (RUN_FAILED, "blocked") else False


def _block_orphans(pending: list[RunSpec], status: dict[str, str | None], summary: ExecutionSummary) -> int:
    """Take out of ``pending`` the runs whose parent failed or was blocked, recording them as blocked (so that
    their own children are blocked in turn); returns how many."""
    n = 0
    for spec in list(pending):
        if _ready(spec, status) is None:
            pending.remove(spec)
            why = f"needs {spec.parent}, which failed"
            if status.get(spec.parent) == "blocked":
                why = f"needs {spec.parent}, which was not trained: {summary.blocked[spec.parent]}"
            summary.blocked[spec.run_id] = why
            status[spec.run_id] = "blocked"
            n += 1
    return n


def _jobs_that_fit(plan: Plan, jobs: int) -> int:
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


def _check_rerun(plan: Plan, store: Store, rerun: list[str]) -> None:
    known = {r.run_id for r in plan.runs + plan.tuning} | set(store.list_runs())
    for rid in rerun:
        if rid not in known:
            close = difflib.get_close_matches(rid, sorted(known), n=3, cutoff=0.6)
            raise ConfigError(f"--rerun {rid}: no such run in this study or in {store.root}"
                              + (f"; close matches: {', '.join(close)}" if close else
                                 f" (transferscope status {store.root} --runs lists them)"))


def execute(plan: Plan, store: Store, *, jobs: int = 1, threads: int = 0, retry_failed: bool = False,
            show_progress: bool = True, rerun: Iterable[str] = (), device: str | None = None,
            runs_per_device: int = 1, deterministic: bool = False, executor: str = "local",
            address: str | None = None, heartbeat: float | None = None,
            stale_after: float | None = None) -> ExecutionSummary:
    """Run every unfinished run of ``plan`` into ``store`` (which this call locks).

    Args:
        jobs: runs trained side by side in worker processes (1: in this process); fewer, with a warning, when
            that many workers would not fit in the available memory.
        threads: torch threads per run; 0: those the study's first call fixed (``threads.json``), where a first
            call shares the cores out among ``jobs``. Results are bitwise reproducible for a fixed thread count,
            so a resumed study equals one run at once.
        retry_failed: run again the runs stored as failed.
        rerun: run ids to train again (removed first): runs whose files are damaged (:class:`RunDamaged`).
        device: where the runs train (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; None: the study's
            ``device``). A device that is not there is an error before anything is written. On CUDA, ``jobs`` is
            the GPUs times ``runs_per_device`` (``cuda``/``auto`` spread the runs over every GPU of the machine).
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
    t0 = time.time()
    summary = ExecutionSummary()
    rerun = list(dict.fromkeys(rerun))
    slots = device_slots(device or plan.config.device, runs_per_device)  # refused here: nothing written yet
    if slots[0].startswith("cuda"):
        jobs = len(slots)
    jobs = summary.jobs = _jobs_that_fit(plan, jobs)
    with store.lock():  # first: a call refused here writes nothing
        store.check_format()  # a folder of an older format would be trained again from scratch: refuse it
        _check_rerun(plan, store, rerun)
        store.write_format()
        # the study the folder holds (what status, analyze and report read), written with the lock held
        atomic_write_text(store.root / "study.json", dumps(to_dict(plan.config)))
        removed = store.clean_tmp()
        if removed:
            log.info("removed %d unfinished run folders left by an interrupted study", removed)
        study_threads = summary.threads = _study_threads(plan, store, threads, jobs)
        per_run: dict[str, int] = {}  # a run trained again keeps the count it was trained with
        for rid in rerun:
            with contextlib.suppress(RunDamaged):
                t = (store.run_info(rid) or {}).get("threads")
                if isinstance(t, int) and t > 0 and not threads:
                    per_run[rid] = t
            store.remove_run(rid)
            log.info("run %s removed: it is trained again", rid)
        total = plan.size()
        todo, seen, status, deferred = _todo(plan, store, retry_failed, summary)
        if not todo:  # nothing to train (every deferred run is decided too): not even the data is loaded
            summary.seconds = time.time() - t0
            return summary
        prepare_domains(plan, show_progress)
        prov = provenance()
        bar = tqdm(total=total, initial=len(summary.skipped) + len(summary.blocked), desc="runs", unit="run",
                   disable=not show_progress, dynamic_ncols=True)
        pending = list(todo)
        running: dict[cf.Future, RunSpec] = {}
        ctx = mp.get_context("spawn")  # fork after torch has started its thread pools can deadlock
        q = ctx.Queue() if jobs > 1 else None
        pool: cf.ProcessPoolExecutor | None = None
        procs: dict = {}  # the pool's worker processes by pid (their exit codes say which one died, and how)
        worker_of: dict[str, int] = {}  # run id -> pid of the worker that took it
        device_of: dict[cf.Future, str] = {}  # the device each run in flight was given
        deaths: dict[str, list[str]] = {}  # run id -> what killed its worker, each time
        epochs: dict[str, str] = {}
        threads_before = torch.get_num_threads()

        def start_pool() -> None:
            nonlocal pool, procs
            pool = cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(q,))
            procs = getattr(pool, "_processes", None)
            if procs is None:
                procs = {}

        if jobs > 1:
            start_pool()

        labels = {r.run_id: r.label for r in plan.tuning + plan.runs}

        def show(rid: str, ep: int, total: int, va: float) -> None:
            if rid not in status:  # a late message of a finished run
                epochs[rid] = f"{labels.get(rid, rid.rsplit('-', 1)[0])} ep {ep}/{total}"
            bar.set_postfix_str(" | ".join(epochs.values()))

        def drain() -> None:
            while q is not None:
                try:
                    msg = q.get_nowait()
                except queue_mod.Empty:
                    break
                if msg[0] == "start":
                    worker_of[msg[1]] = msg[2]
                else:
                    show(*msg[1:])

        def release() -> None:
            fresh, accounted = _release(deferred, status, seen, store, retry_failed, summary)
            pending.extend(fresh)
            bar.update(accounted)

        global _PROGRESS
        _PROGRESS = show if show_progress else None

        def finish(spec: RunSpec, result: tuple[str, str | None, str]) -> None:
            _record(summary, status, *result)
            epochs.pop(result[0], None)
            bar.update(1)

        def ready(spec: RunSpec) -> bool | None:
            return _ready(spec, status)

        def worker_died(lost: list[RunSpec]) -> None:
            """The pool broke: a worker process died. Charge its run (all the runs in flight when the dead one is
            not known), store it as failed after :data:`WORKER_RETRIES` tries, queue the others again, start a
            fresh pool."""
            pool.shutdown(wait=True, cancel_futures=True)
            for fut, spec in list(running.items()):  # every future of a broken pool ends; some may have finished
                running.pop(fut)
                exc = fut.exception()
                if exc is None:
                    finish(spec, fut.result())
                elif isinstance(exc, BrokenProcessPool):
                    lost.append(spec)
                else:
                    raise exc
            drain()
            dead = {pid: p.exitcode for pid, p in list(procs.items()) if p.exitcode != -signal.SIGTERM}
            culprits = {s.run_id for s in lost if worker_of.get(s.run_id) in dead} or {s.run_id for s in lost}
            for spec in reversed(lost):
                rid = spec.run_id
                if rid in culprits:
                    pid = worker_of.get(rid)
                    why = _death(dead[pid] if pid in dead else
                                 next(iter(dead.values())) if len(dead) == 1 else None)
                    deaths.setdefault(rid, []).append(why)
                    n = len(deaths[rid])
                    if n > WORKER_RETRIES:
                        info = {**_base_info(spec, prov, deaths[rid]), "threads": per_run.get(rid, study_threads)}
                        whys = "; ".join(dict.fromkeys(deaths[rid]))
                        finish(spec, _store_failure(store, info, (
                            f"its worker process died {n} times ({whys}); out of memory? train fewer runs at a time "
                            "(--jobs) or give it more memory, then transferscope run --retry-failed")))
                        continue
                    tqdm.write(f"run {rid}: its worker process died ({why}); trying it again ({n} of "
                               f"{WORKER_RETRIES})")
                pending.insert(0, spec)
            worker_of.clear()
            start_pool()

        idle_deaths = 0
        try:
            while pending or running:
                bar.update(_block_orphans(pending, status, summary))
                startable = [s for s in pending if ready(s)]
                if pool is None:
                    if not startable:
                        break
                    spec = startable[0]
                    pending.remove(spec)
                    bar.set_postfix_str(spec.label[:40])
                    try:
                        finish(spec, run_one(spec, store.root, per_run.get(spec.run_id, study_threads), prov,
                                             device=slots[0], deterministic=deterministic))
                    finally:
                        torch.set_num_threads(threads_before)
                    release()
                    continue
                broken: list[RunSpec] = []
                restarted = False
                while startable and len(running) < jobs:
                    spec = startable.pop(0)
                    pending.remove(spec)
                    busy = Counter(device_of.get(f) for f in running)
                    dev = min(dict.fromkeys(slots), key=lambda d: busy[d])  # the least busy device
                    try:
                        fut = pool.submit(run_one, spec, str(store.root), per_run.get(spec.run_id, study_threads),
                                          prov, deaths.get(spec.run_id), dev, deterministic)
                    except BrokenProcessPool:  # a worker died while idle: a fresh pool, and submit again
                        pending.insert(0, spec)
                        idle_deaths += 1
                        if idle_deaths > 3:
                            raise RuntimeError("the worker processes keep dying before they take a run; try "
                                               "--jobs 1") from None
                        worker_died([])
                        restarted = True
                        break
                    running[fut] = spec
                    device_of[fut] = dev
                if not running:
                    if restarted:
                        continue
                    break
                done, _ = cf.wait(running, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    spec = running.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken.append(spec)
                        continue
                    finish(spec, result)
                if broken:
                    worker_died(broken)
                if done:
                    release()
                drain()
            for template, sel in deferred:  # their candidates were blocked
                if not sel.is_winner(template):
                    summary.blocked[_label(template)] = f"the learning-rate candidates of {sel.key} did not run"
                    bar.update(1)
        finally:
            _PROGRESS = None
            bar.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        summary.retried = {rid: d for rid, d in deaths.items() if rid not in summary.failed}
    summary.seconds = time.time() - t0
    return summary
