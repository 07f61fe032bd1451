"""The work of one run, wherever it trains: train it (or import given weights) and store it in the results folder.

:func:`run_one` is what every backend of the scheduler (:mod:`.scheduler`) calls, in this process, in a worker
process of the local pool (:mod:`.pool`) or in a Ray task (:mod:`.ray_executor`). It never raises for a failed run:
a run whose loss diverges, or that raises, is stored as failed with its reason. Where its epochs are reported is
set with :func:`report_to` (the pool's queue, the progress bar of this process, or nowhere).
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from .. import __version__, tblog
from ..devices import describe, library_versions, resolve_device, set_deterministic
from ..metrics import AUC, is_multilabel, key, metric_of
from ..models import ModelError, create_model
from ..store import RUN_DONE, RUN_FAILED, RunDamaged, Store, hash_artefacts, write_json, write_npz
from ..train import TrainingDiverged, learning_rates, train
from .artefacts import checkpoint_name, domain_data, load_state, save_state
from .plan import RunSpec

log = logging.getLogger(__name__)

__all__ = ["run_one", "provenance", "store_failure", "report_to", "KILL_ENV"]

KILL_ENV = "TRANSFERSCOPE_TEST_KILL_WORKER"
"""Tests only: ``RUN_ID:TIMES:FOLDER`` makes the worker process of that run kill itself with SIGKILL after its first
epoch, the first TIMES times (counted by files in FOLDER), as the kernel does when memory runs out."""


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
            name = "checkpoints/" + checkpoint_name(spec.parent_checkpoint)
        model.load_state_dict(load_state(store, spec.parent, name))
        model.reset_head(num_classes, generator=torch.Generator().manual_seed(spec.seed))
    return model.to(device)




_SINK: Callable[[tuple], None] | None = None  # where run_one reports (report_to)
_IN_WORKER = False  # this process is a worker of the local pool


def report_to(sink: Callable[[tuple], None] | None, *, worker: bool = False) -> None:
    """Where :func:`run_one` reports, in this process: ``("start", run_id, pid)`` when a run starts and
    ``("epoch", run_id, epoch, epochs, figure)`` after each epoch (the validation figure in the run's metric:
    accuracy, or the mean AUC of a multi-label target); None: nowhere. ``worker``: this process is a worker
    process of the local pool (where the test hook of :data:`KILL_ENV` acts)."""
    global _SINK, _IN_WORKER
    _SINK, _IN_WORKER = sink, worker


def _test_kill(run_id: str) -> None:
    """The test hook of :data:`KILL_ENV`."""
    rid, _, rest = os.environ.get(KILL_ENV, "").partition(":")
    if rid != run_id or not _IN_WORKER:
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
    if _SINK is not None:
        _SINK(("start", spec.run_id, os.getpid()))
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
    clock = time.perf_counter
    timing: dict[str, float] = {}  # where the run's seconds went (run.json "timing")
    tb = None
    try:
        t = clock()
        data = domain_data(spec.domain, spec.data)
        if spec.arm != "P":
            data = data.shuffled(spec.block_size, spec.data.shuffle_seed)
        timing["data"] = clock() - t
        t = clock()
        model = _initial_model(spec, store, data.num_classes, dev)
        init = {k: v.detach().clone() for k, v in model.state_dict().items()}
        timing["model"] = clock() - t
        spe = -(-len(data.train) // spec.train.batch_size)
        ckpt_steps = {round(e * spe): e for e in spec.train.checkpoint_epochs}

        # None unless --tensorboard; the run's hyperparameters for the hparams dashboard, its learning rate per step
        tb = tblog.run_log(root, run_id, spe, lrs=lambda: learning_rates(spec.train, spe),
                           hparams=tblog.hparams(spec.arm, spec.domain.display, spec.block_size, spec.seed,
                                                 spec.train.lr, spec.parent, spec.parent_checkpoint))

        def progress(epoch: int, figs: dict) -> None:
            if tb is not None:
                tb.epoch(epoch, figs)
            # the validation figure in the run's metric: accuracy, or the mean AUC of a multi-label target
            if _SINK is not None:
                _SINK(("epoch", run_id, epoch, spec.train.epochs,
                       figs.get("val_acc", figs.get("val_auc", float("nan")))))
                _test_kill(run_id)

        # fp32, the default, is train's own default: passed only when off it
        prec = {"precision": spec.train.precision} if spec.train.precision != "fp32" else {}
        t = clock()
        result = train(model, data, spec.train, seed=spec.seed, checkpoint_steps=list(ckpt_steps), progress=progress,
                       **prec)
        timing["train"] = clock() - t
        timing["steps"] = result.metrics["train_seconds"]
        if tb is not None:
            tb.finish(result.history, result.metrics)
    except TrainingDiverged as e:
        if tb is not None:
            tb.close()  # its hparams session ends failed
        return _store_failure(store, info, f"diverged: {e}")
    except RunDamaged as e:  # the run it starts from is damaged: store nothing, it trains once that one is repaired
        return run_id, None, str(e)
    except Exception as e:  # a run's failure must not stop the study; the reason is kept
        if tb is not None:
            tb.close()
        log.debug("run %s failed", run_id, exc_info=True)
        return _store_failure(store, info, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}")
    t = clock()
    with store.new_run(run_id) as d:
        save_state(init, d / "init.safetensors")
        save_state(model.state_dict(), d / "weights.safetensors")
        if result.checkpoints:
            (d / "checkpoints").mkdir()  # 0777 less the umask
            for step, state in result.checkpoints.items():
                save_state(state, d / "checkpoints" / checkpoint_name(ckpt_steps[step]))
        write_npz(d / "predictions.npz", test_logits=result.test_logits, test_labels=result.test_labels,
                  test_index=data.test.index)
        write_json(d, "metrics.json", result.metrics)
        write_json(d, "history.json", {**result.history, "steps_per_epoch": result.steps_per_epoch})
        info.update(status=RUN_DONE, num_classes=data.num_classes, classes=list(data.classes),
                    n_train=len(data.train), n_val=len(data.val), n_test=len(data.test),
                    domain_meta=data.meta, artefacts=hash_artefacts(d))  # what was written; verify_run checks it
        # seconds: the whole run; timing: its parts (data: load and block-shuffle the domain; model: build or load
        # the starting weights; train: the trainer, of which steps: the optimiser steps, the rest evaluation and
        # bookkeeping; write: the files, their hashes), what the throughput benchmark reads
        timing["write"] = clock() - t
        info.update(finished=time.time(), seconds=time.time() - t0, timing=timing)
        write_json(d, "run.json", info)  # written last: a run folder with run.json is whole
    return run_id, RUN_DONE, ""


def _import_pretrained(spec: RunSpec, store: Store, info: dict, t0: float, dev: torch.device | str = "cpu"
                       ) -> tuple[str, str, str]:
    """P given as weights (``[model] weights``): stored as a finished run without training. Its head keeps the
    size of the weights; where it matches the source's classes, P is evaluated on the source's test split."""
    from ..models import Hooked, check_shapes, load_weights
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
            check_shapes(body, state, key, path)  # names the tensors and both shapes (load_state_dict raises a wall)
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
            data = domain_data(spec.domain, spec.data)
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
        save_state(model.state_dict(), d / "init.safetensors")
        save_state(model.state_dict(), d / "weights.safetensors")
        if checkpoints:
            (d / "checkpoints").mkdir()
            for e, ck in checkpoints.items():
                save_state(ck, d / "checkpoints" / checkpoint_name(e))
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


def store_failure(store: Store, spec: RunSpec, reason: str, *, prov: dict | None = None,
                  worker_deaths: list[str] | None = None, threads: int = 0) -> tuple[str, str, str]:
    """Store ``spec`` as failed with ``reason``, without training it (e.g. its worker process kept dying): what
    :func:`run_one` returns for it. ``threads``: the count it would have trained with (0: this process's)."""
    info = _base_info(spec, prov, worker_deaths)
    if threads:
        info["threads"] = threads
    return _store_failure(store, info, reason)


def _store_failure(store: Store, info: dict, reason: str) -> tuple[str, str, str]:
    with store.new_run(info["run_id"]) as d:
        info.update(status=RUN_FAILED, reason=reason, finished=time.time(), seconds=time.time() - info["started"])
        write_json(d, "run.json", info)
    return info["run_id"], RUN_FAILED, reason.splitlines()[0]

