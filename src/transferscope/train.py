"""One training loop for pre-training (P), fine-tuning (P-T) and training from scratch (RI-T).

Straight-line code in the manner of nanoGPT's ``train.py``: SGD with momentum on in-memory uint8 images,
a per-step record of the training loss and accuracy, a per-epoch evaluation on validation and test data,
the optimisation-speed figures of Neyshabur et al., and the per-example test predictions of the final model.

Both kinds of target are trained and evaluated on one loss, :func:`transferscope.task.loss`, which the labels'
shape picks: single-label targets (int64 labels (N,)) with cross-entropy, judged by top-1 accuracy; multi-label
targets (float32 labels (N, L), NaN = unknown; see :mod:`transferscope.metrics`) with a sigmoid and binary
cross-entropy per label, judged by the mean AUC over labels. A batch's AUC
means little, so a multi-label run records no per-step figure but the loss; its training curve is the mean AUC of
the model after every epoch on a fixed seeded subset of the training split (``TrainConfig.speed_examples``).
Every step runs on the model's device, in float32 or under autocast (``precision``); the host waits for the device
only every few dozen steps and at the end of each epoch.
Randomness comes only from ``seed``: same seed, same machine, same thread count, same precision: bitwise-identical
weights on the CPU. (On CUDA, some kernels are nondeterministic unless PyTorch's deterministic algorithms are on.)
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from . import metrics as M
from . import task
from .config import TrainConfig
from .data import DomainData, Split
from .models import to_input

__all__ = ["TrainResult", "TrainingDiverged", "train", "evaluate", "optimisation_speed", "relative_deviation",
           "choose_memory_format", "model_device", "keep_freed_memory", "PRECISIONS", "auc_speed", "speed_subset"]

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainResult:
    history: dict[str, list]
    """step_loss, step_acc (per step; the accuracy as the exact fraction of the batch); epoch, val_loss, val_acc,
    test_loss, test_acc, lr (per epoch, epoch 0 = before training); deviation (per epoch: {module: ||W - W0||_F / ||W0||_F}).

    Multi-label: no step_acc; val_auc, test_auc in place of val_acc, test_acc; train_auc (one per epoch, 0 to
    ``epochs`` whatever ``eval_every``: the mean AUC of the model, in eval mode, on the fixed training subset)."""
    metrics: dict
    """Final figures: metric ("acc" or "auc"); test_acc, test_loss, val_acc, val_loss; train_acc_final,
    train_loss_final (the final model on the whole training split, in eval mode); train_acc_last_epoch (running mean
    over the last epoch's batches); num_classes; the two speed figures (``speed_mean_acc_k``,
    ``speed_steps_to_frac``, see :func:`optimisation_speed`); time.

    Multi-label: test_auc, val_auc, train_auc_final in place of the *_acc figures; train_auc_subset_final (the last
    point of the history's train_auc); test_auc_per_label (NaN where undefined), test_auc_labels_used,
    test_auc_excluded (the names of the labels without a positive or a negative known test example, left out of
    the mean); num_labels; the speed figures, under the same keys, are those of :func:`auc_speed` (in mean AUC)."""
    test_logits: np.ndarray
    """(n_test, num_classes) float32 logits of the final model (multi-label: (n_test, num_labels))."""
    test_labels: np.ndarray
    steps_per_epoch: int
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Weights kept at the requested steps (step -> state dict), on the model's device."""

    @property
    def multilabel(self) -> bool:
        return M.is_multilabel(self.test_labels)

    @property
    def test_pred(self) -> np.ndarray:
        """The final model's test decisions: the arg-max class (N,), or multi-label a bool (N, L) per label, present
        where the logit is >= 0 (sigmoid >= :data:`transferscope.metrics.THRESHOLD`)."""
        if self.multilabel:
            return self.test_logits >= 0
        return self.test_logits.argmax(1)


PRECISIONS = ("fp32", "bf16", "fp16")
"""Arithmetic of :func:`train` and :func:`evaluate`: float32, or autocast to bfloat16 or float16 (float16 with a
gradient scaler)."""

_CHECK_EVERY = 64
"""Steps between two looks at the training losses for NaN or infinity (each look waits for the device)."""


def choose_memory_format(model: nn.Module) -> torch.memory_format:
    """The trainer's memory format for ``model``: channels_last for a convolutional net, except

    - with GroupNorm: PyTorch's channels-last GroupNorm is slow on the CPU (forward about 10x, backward about 4x
      the contiguous kernel at 16 channels, torch 2.13 on 2 cores of an AMD EPYC) and on CUDA it has none (the
      input is made contiguous, a copy per layer), so the whole net stays contiguous: the quick study's ResNet
      trained 1.2x faster so in float32 (1,705 against 1,427 images/s) and 2.5x in bfloat16;
    - when a convolution has fewer than 8 output channels: oneDNN's 1x1 backward-weights kernel was seen to hang on
      those in channels_last.

    Channels_last made a Fixup ResNet-8 about 1.45x faster on a CPU.
    """
    mods = list(model.modules())
    convs = [m for m in mods if isinstance(m, nn.Conv2d)]
    if not convs or min(m.out_channels for m in convs) < 8 or any(isinstance(m, nn.GroupNorm) for m in mods):
        return torch.contiguous_format
    return torch.channels_last


def model_device(model: nn.Module) -> torch.device:
    """The one device holding ``model``'s parameters and buffers (the CPU for a model without any).

    Raises:
        ValueError: they are spread over several devices (the trainer moves nothing on its own).
    """
    devs = {t.device for t in (*model.parameters(), *model.buffers())}
    if len(devs) > 1:
        raise ValueError(f"the model's parameters and buffers are on {', '.join(sorted(map(str, devs)))}: "
                         "train and evaluate run on one device; move the model there first (model.to(device))")
    return devs.pop() if devs else torch.device("cpu")


def _autocast(dev: torch.device, precision: str) -> Callable[[], AbstractContextManager]:
    """A factory of the autocast context of ``precision`` on ``dev`` (fp32: none).

    Raises:
        ValueError: an unknown precision, or one that PyTorch's autocast does not run on ``dev`` (PyTorch would only
            warn and compute in float32: refused instead).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "fp16" and dev.type == "cpu":
        _warn_fp16_cpu()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if not torch.amp.is_autocast_available(dev.type):
        raise ValueError(f"precision {precision!r}: PyTorch has no autocast on {dev.type}; use precision 'fp32'")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "... not supported. Disabling autocast." would be a silent fallback
        try:
            torch.autocast(dev.type, dtype=dtype)
        except (Warning, RuntimeError) as e:
            raise ValueError(f"precision {precision!r} is not supported on {dev}: {e}") from None
    return functools.partial(torch.autocast, dev.type, dtype=dtype)


@functools.cache
def _warn_fp16_cpu() -> None:
    log.warning("precision fp16 on the CPU: PyTorch runs it, but CPUs without float16 arithmetic run it slowly (the "
                "quick study's model trained at about a tenth of fp32's images/s on an AMD EPYC); bf16 is the CPU's "
                "fast lower precision")


def _grad_scaler(dev: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16's gradient scaler on ``dev`` (None for fp32 and bf16, whose exponent range needs none)."""
    if precision != "fp16":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "GradScaler is enabled, but ... is not available. Disabling."
        try:
            return torch.amp.GradScaler(dev.type)
        except (Warning, RuntimeError) as e:
            raise ValueError(f"precision 'fp16' needs a gradient scaler, which PyTorch lacks on {dev}: {e}") from None


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc, once per process, to keep freed memory for reuse rather than hand it back to the
    operating system after every training step: its thresholds are fixed at the largest values its own adaptive
    rule reaches (blocks under 32 MiB from the heap; up to 64 MiB of free heap kept). Under that rule a CPU training
    step of the quick study's model faulted 1,000 to 6,000 fresh pages back in (4-24 MB zeroed by the kernel per
    step of about 35 ms); with these, under 50. The process keeps at most 64 MiB more than it would. Returns whether
    the setting took (False where the C library is not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 64 << 20))


def _to_device(x: torch.Tensor, dev: torch.device, idx: torch.Tensor | None = None) -> torch.Tensor:
    """``x[idx]`` (``x`` whole if ``idx`` is None), a CPU tensor, on ``dev``. On CUDA the rows are gathered into
    pinned memory and copied without blocking the host: the host goes on queueing work while the copy runs (the
    caching host allocator keeps a pinned block until the copy that reads it has finished)."""
    if dev.type == "cpu":
        return x if idx is None else x[idx]
    if dev.type != "cuda":
        return (x if idx is None else x[idx]).to(dev)
    shape = (len(x) if idx is None else len(idx), *x.shape[1:])
    buf = torch.empty(shape, dtype=x.dtype, device="cpu", pin_memory=True)
    if idx is None:
        buf.copy_(x)
    else:
        torch.index_select(x, 0, idx, out=buf)
    return buf.to(dev, non_blocking=True)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 512, *, precision: str = "fp32",
             memory_format: torch.memory_format | None = None) -> tuple[float, float, np.ndarray]:
    """Mean loss, score and logits (N, K) of ``model`` on a split, on the model's device, under the
    autocast of ``precision`` (logits returned as float32), inputs in ``memory_format`` (None: the trainer's choice,
    :func:`choose_memory_format`). Restores the model's train/eval mode.

    Single-label: the mean cross-entropy and the top-1 accuracy. Multi-label (labels (N, L)): the mean over examples
    of the binary cross-entropy averaged over each example's known labels (:func:`transferscope.task.loss`) and the
    mean AUC over the labels that have a positive and a negative known example (:func:`transferscope.metrics.score`;
    NaN when none has)."""
    dev = model_device(model)
    autocast = _autocast(dev, precision)
    fmt = memory_format if memory_format is not None else choose_memory_format(model)
    was_training = model.training
    model.eval()
    logits = []
    try:
        for i in range(0, len(split), batch_size):
            xb = to_input(_to_device(split.x[i : i + batch_size], dev)).contiguous(memory_format=fmt)
            with autocast():
                logits.append(model(xb).float())
    finally:
        model.train(was_training)
    if not logits:
        return float("nan"), float("nan"), np.zeros((0, 0), np.float32)
    out = torch.cat(logits)
    y = _to_device(split.y, dev)
    loss = task.loss(out, y).item()
    if M.is_multilabel(split.y):
        scores = out.cpu().numpy()
        return loss, M.score(scores, split.y.numpy()), scores
    acc = (out.argmax(1) == y).float().mean().item()
    return loss, acc, out.cpu().numpy()


def optimisation_speed(step_acc: Sequence[float], steps_per_epoch: int, k: int, fraction: float) -> dict[str, float]:
    """The two optimisation-speed figures of Neyshabur et al. from the per-step training accuracy (single-label
    targets; a multi-label target's, in mean AUC per epoch, are :func:`auc_speed`'s).

    (a) ``speed_mean_acc_k``: the mean training accuracy over the first ``k`` epochs.
    (b) ``speed_steps_to_frac``: the first step at which the running mean of the training accuracy over one
        epoch's steps reaches ``fraction`` of its final value (the mean over the last epoch); NaN if never.
    """
    acc = np.asarray(step_acc, dtype=np.float64)
    if len(acc) == 0:
        return {"speed_mean_acc_k": float("nan"), "speed_steps_to_frac": float("nan")}
    mean_k = float(acc[: k * steps_per_epoch].mean())
    w = max(1, min(steps_per_epoch, len(acc)))
    running = np.convolve(acc, np.ones(w) / w, mode="valid")  # running[i] = mean of acc[i : i + w]
    final = running[-1]
    hit = np.flatnonzero(running >= fraction * final)
    steps = float(hit[0] + w) if len(hit) else float("nan")
    return {"speed_mean_acc_k": mean_k, "speed_steps_to_frac": steps}


def auc_speed(epoch_auc: Sequence[float], steps_per_epoch: int, k: int, fraction: float) -> dict[str, float]:
    """The two optimisation-speed figures for a multi-label target, from its per-epoch training curve:
    ``epoch_auc[e - 1]`` is the mean AUC of the model after epoch ``e`` (1, 2, ...) on the fixed seeded subset of
    the training split (``TrainConfig.speed_examples``). Kept under the keys of :func:`optimisation_speed`.

    (a) ``speed_mean_acc_k``: the mean of ``epoch_auc`` over the first ``k`` epochs (epochs 1 to ``k``; fewer when
        the run is shorter), in mean AUC.
    (b) ``speed_steps_to_frac``: ``e x steps_per_epoch`` for the first epoch ``e`` whose AUC reaches ``fraction``
        times the final one (``epoch_auc[-1]``), so counted in optimiser steps, with the resolution of an epoch;
        NaN if never reached, or when the curve holds NaN where it is read (every label excluded from the subset).

    The fraction applies to the AUC itself, as to the accuracy: with chance at 0.5, a final AUC of 0.9 and the
    default fraction 0.9 ask for 0.81.
    """
    auc = np.asarray(epoch_auc, dtype=np.float64)
    if len(auc) == 0:
        return {"speed_mean_acc_k": float("nan"), "speed_steps_to_frac": float("nan")}
    mean_k = float(auc[: max(1, k)].mean())
    final = auc[-1]
    hit = np.flatnonzero(auc >= fraction * final)  # NaN compares False
    steps = float((hit[0] + 1) * steps_per_epoch) if len(hit) and np.isfinite(final) else float("nan")
    return {"speed_mean_acc_k": mean_k, "speed_steps_to_frac": steps}


SPEED_SUBSET_SALT = 0x5EED5
"""Mixed into the run's seed for the speed subset's generator, so that the subset is no prefix of the data order."""


def speed_subset(n: int, size: int, seed: int) -> torch.Tensor:
    """The indices (sorted) of the fixed training subset of a multi-label run: ``size`` of ``n`` examples drawn by
    a generator of its own seeded with the run's seed (all of them when ``size >= n``); the data order's
    generator is not touched."""
    if size >= n or size <= 0:
        return torch.arange(n, device="cpu")
    # salted: seeded with ``seed`` alone, it would be the first examples of epoch 1's order (the same randperm)
    g = torch.Generator(device="cpu").manual_seed(seed ^ SPEED_SUBSET_SALT)
    return torch.randperm(n, generator=g, device="cpu")[:size].sort().values


def _module_groups(model: nn.Module) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    module_of = getattr(model, "module_of", None)
    for name, _ in model.named_parameters():
        key = module_of(name) if module_of else name.rsplit(".", 1)[0]
        groups.setdefault(key, []).append(name)
    return groups


def relative_deviation(model: nn.Module, initial: dict[str, torch.Tensor]) -> dict[str, float]:
    """||W - W0||_F / ||W0||_F per module, over the parameters present in ``initial`` with equal shapes.

    A module whose initial weights are all zero reports NaN (the ratio has no meaning there). Computed on the
    model's device, read back in one transfer.
    """
    params = dict(model.named_parameters())
    groups = {module: [n for n in names if n in initial and initial[n].shape == params[n].shape]
              for module, names in _module_groups(model).items()}
    names = [n for ns in groups.values() for n in ns]
    if not names:
        return {}
    with torch.no_grad():
        sq = torch.stack([t for n in names for t in ((params[n] - initial[n]).pow(2).sum(), initial[n].pow(2).sum())])
    it = iter(sq.tolist())
    sums = {n: (next(it), next(it)) for n in names}
    out = {}
    for module, ns in groups.items():
        num = den = 0.0
        for n in ns:
            num += sums[n][0]
            den += sums[n][1]
        if den > 0:
            out[module] = math.sqrt(num / den)
        elif num > 0:
            out[module] = float("nan")
    return out


def _sgd(groups: list[dict], cfg: TrainConfig, dev: torch.device, scaled: bool) -> torch.optim.SGD:
    """SGD with momentum as foreach (multi-tensor) kernels: on the CPU bitwise equal to PyTorch's per-parameter loop
    (fused is not: the learning rate is rounded otherwise) and as fast as it matters there (0.18 against 0.25 ms
    per step for the quick study's model, beside 35 ms of forward and backward). On CUDA one fused kernel (fewer
    launches), except under fp16's gradient scaler (``scaled``): PyTorch's fused SGD (2.13) leaves the momentum
    buffer uninitialised when the scaler skips the first step (inf gradients, routine in fp16's first steps), and
    the weights go NaN a few steps later (also seen in LibreYOLO/libreyolo#771). The price of foreach there: the
    scaler reads its inf check on the host, a wait per step."""
    if dev.type == "cuda" and not scaled:
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, fused=True)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, foreach=True)


def train(
    model: nn.Module,
    data: DomainData,
    cfg: TrainConfig,
    *,
    seed: int,
    checkpoint_steps: Sequence[int] = (),
    progress: Callable[[int, dict], None] | None = None,
    precision: str = "fp32",
    memory_format: torch.memory_format | None = None,
) -> TrainResult:
    """Train ``model`` in place, on its device, on ``data.train``; evaluate on ``data.val`` and ``data.test``
    every epoch.

    Args:
        model: any classifier taking inputs from :func:`transferscope.models.to_input`, on one device (the CPU, or
            ``model.to(device)``): every step runs there, and every tensor the trainer makes is made there (the
            data order is drawn on the CPU, and on CUDA batches are staged in pinned CPU memory).
        data: the domain (already block-shuffled if wanted).
        cfg: optimiser, schedule and the parameters of the optimisation-speed figures.
        seed: the data order. (The initialisation is the caller's: it builds or loads the model.)
        checkpoint_steps: steps after which to keep a copy of the weights (0 = before the first step).
        progress: called after every evaluated epoch (and epoch 0, before training) with (epoch, figures): a dict
            of floats ``train_loss`` (the mean of the epoch's step losses) and ``train_acc`` (the mean of its
            ``step_acc``; none at epoch 0), ``val_loss``, ``val_acc``, ``test_loss`` and ``test_acc`` (when the test
            split is evaluated), ``lr``; for a multi-label target ``train_auc`` (on the fixed training subset),
            ``val_auc`` and ``test_auc`` in place of the accuracies. For progress bars and live logs.
        precision: ``fp32``; ``bf16`` (autocast to bfloat16); or ``fp16`` (autocast to float16, with a gradient
            scaler). Evaluation runs under the same autocast. Weights and optimiser state stay float32.
        memory_format: of the model and its inputs while training; None: the trainer's choice
            (:func:`choose_memory_format`). The model is returned contiguous.

    On the CPU it first sets the process's allocator to keep freed memory (:func:`keep_freed_memory`, once per
    process). The checkpoints are kept on the model's device.

    Multi-label targets (``data.train.y`` (N, L)) are trained on :func:`transferscope.task.loss` (BCE per known
    label, computed in float32 under any precision) and, after every epoch, the model's mean AUC is measured on a
    fixed subset of ``cfg.speed_examples`` training examples (:func:`speed_subset`, drawn from ``seed`` by a
    generator of its own: the data order is the same as it would be single-label); the speed figures come from that
    curve (:func:`auc_speed`).

    Raises:
        TrainingDiverged: the loss became NaN or infinite (the message says at which step; it is looked for every
            few dozen steps, so the model is left a few steps past it).
        ValueError: a precision that the model's device cannot run, or a model spread over several devices.
    """
    n = len(data.train)
    if n == 0:
        raise ValueError(f"domain {data.name!r}: the training split is empty")
    multilabel = M.is_multilabel(data.train.y)
    metric = M.AUC if multilabel else M.ACC
    val_key, test_key = M.key("val", metric), M.key("test", metric)
    dev = model_device(model)
    autocast, scaler = _autocast(dev, precision), _grad_scaler(dev, precision)
    if dev.type == "cpu":
        keep_freed_memory()
    fmt = memory_format if memory_format is not None else choose_memory_format(model)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    model.to(memory_format=fmt)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    opt = _sgd([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], cfg,
               dev, scaled=scaler is not None)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)

    def lr_factor(s: int) -> float:
        w = min(1.0, (s + 1) / warmup) if warmup else 1.0
        if cfg.schedule == "cosine":
            return w * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        return w

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    g = torch.Generator(device="cpu").manual_seed(seed)
    keep = set(int(s) for s in checkpoint_steps)
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    # the per-step figures stay on the device until the end: reading them each step (.item()) would make the host
    # wait for the device every step
    step_loss = torch.zeros(total, dtype=torch.float32, device=dev)
    step_correct = torch.zeros(total, dtype=torch.int64, device=dev)
    batch = torch.tensor([min(cfg.batch_size, n - i) for i in range(0, n, cfg.batch_size)] * cfg.epochs,
                         dtype=torch.float64, device="cpu")

    if multilabel:
        hist: dict[str, list] = {k: [] for k in ("step_loss", "epoch", "val_loss", "val_auc", "test_epoch",
                                                 "test_loss", "test_auc", "lr", "deviation", "train_auc")}
        sub = speed_subset(n, cfg.speed_examples, seed)
        train_subset = Split(data.train.x[sub], data.train.y[sub], np.asarray(data.train.index)[sub.numpy()])
    else:
        hist = {k: [] for k in ("step_loss", "step_acc", "epoch", "val_loss", "val_acc", "test_epoch",
                                "test_loss", "test_acc", "lr", "deviation")}

    last_logits: list[np.ndarray] = []
    last_val_logits: list[np.ndarray] = []

    def epoch_train_figures(epoch: int) -> dict[str, float]:
        """The training figures of an epoch for ``progress`` (read only when someone listens)."""
        figs: dict[str, float] = {}
        if epoch > 0:
            a, b = (epoch - 1) * steps_per_epoch, epoch * steps_per_epoch
            figs["train_loss"] = float(np.mean(step_loss[a:b].tolist()))
            if not multilabel:  # as history's step_acc: the exact fraction of each batch
                figs["train_acc"] = float(np.mean((step_correct[a:b].cpu().double() / batch[a:b]).tolist()))
        if multilabel:
            figs["train_auc"] = hist["train_auc"][epoch]
        return figs

    def record_epoch(epoch: int) -> None:
        if multilabel:  # every epoch: the training curve of the speed figures
            hist["train_auc"].append(evaluate(model, train_subset, precision=precision, memory_format=fmt)[1])
        if epoch % cfg.eval_every and epoch != cfg.epochs:
            return  # evaluated every eval_every epochs, and always at the start and the end
        vl, va, val_logits = evaluate(model, data.val, precision=precision, memory_format=fmt)
        last_val_logits[:] = [val_logits]
        hist["epoch"].append(epoch)
        hist["val_loss"].append(vl)
        hist[val_key].append(va)
        figs = {"val_loss": vl, val_key: va}
        if cfg.test_every_epoch or epoch == cfg.epochs:
            tl, ta, logits = evaluate(model, data.test, precision=precision, memory_format=fmt)
            last_logits[:] = [logits]
            hist["test_epoch"].append(epoch)
            hist["test_loss"].append(tl)
            hist[test_key].append(ta)
            figs.update({"test_loss": tl, test_key: ta})
        hist["lr"].append(opt.param_groups[0]["lr"])
        hist["deviation"].append(relative_deviation(model, initial))
        if progress:
            progress(epoch, {**epoch_train_figures(epoch), **figs, "lr": hist["lr"][-1]})

    def maybe_keep(step: int) -> None:
        if step in keep:
            checkpoints[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def check_finite(start: int, stop: int) -> None:
        bad = torch.nonzero(~torch.isfinite(step_loss[start:stop])).flatten()
        if len(bad):
            s = start + int(bad[0])
            raise TrainingDiverged(f"training loss is {step_loss[s].item()} at step {s} "
                                   f"(epoch {s // steps_per_epoch + 1}, lr {cfg.lr})")

    t0 = time.perf_counter()
    step_seconds = 0.0
    record_epoch(0)
    maybe_keep(0)
    step = checked = 0
    x_train, y_train = data.train.x, data.train.y
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=g, device="cpu")
        t_epoch = time.perf_counter()
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb = to_input(_to_device(x_train, dev, idx)).contiguous(memory_format=fmt)
            yb = _to_device(y_train, dev, idx)
            with autocast():
                logits = model(xb)
                # the loss in float32 under any precision; autocast computes cross-entropy in float32 anyway, so the
                # cast changes no bit of a single-label run (tests/test_train_loss.py)
                loss = task.loss(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()  # a step whose gradients hold inf/NaN is skipped by scaler.step
            if cfg.grad_clip > 0:
                if scaler is not None:
                    scaler.unscale_(opt)  # clip the true gradients
                nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
            if scaler is None:
                opt.step()
                sched.step()
            else:
                scaler.step(opt)
                scaler.update()
                with warnings.catch_warnings():  # a skipped step is no optimiser step; the schedule counts it
                    warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before")
                    sched.step()
            step_loss[step] = loss.detach()
            if not multilabel:
                step_correct[step] = (logits.argmax(1) == yb).sum()
            step += 1
            if step - checked >= _CHECK_EVERY:
                check_finite(checked, step)
                checked = step
            maybe_keep(step)
        check_finite(checked, step)  # also waits for the device: the epoch's time is its steps' time
        checked = step
        step_seconds += time.perf_counter() - t_epoch
        record_epoch(epoch)
    seconds = time.perf_counter() - t0
    hist["step_loss"] = step_loss.tolist()
    if not multilabel:
        hist["step_acc"] = (step_correct.cpu().double() / batch).tolist()
    # did the run fit its training data? the final model on the whole training split, in eval mode (the running
    # mean over the last epoch's batches mixes the weights of a whole epoch and train-mode normalisation)
    train_loss, train_score, _ = evaluate(model, data.train, precision=precision, memory_format=fmt)
    model.to(memory_format=torch.contiguous_format)

    logits = last_logits[0]
    if multilabel:
        speed = auc_speed(hist["train_auc"][1:], steps_per_epoch, cfg.speed_epochs, cfg.speed_fraction)
        detail = M.auc_detail(logits, data.test.y.numpy(), data.classes)
        figures = {
            "test_auc": hist["test_auc"][-1],
            "test_loss": hist["test_loss"][-1],
            "val_auc": hist["val_auc"][-1],
            "val_auc_se": M.mean_auc_se(last_val_logits[0], data.val.y.numpy()),  # for the one-SE rule
            "val_loss": hist["val_loss"][-1],
            "train_auc_final": train_score,
            "train_loss_final": train_loss,
            "train_auc_subset_final": hist["train_auc"][-1],
            "test_auc_per_label": detail["per_label"],
            "test_auc_labels_used": detail["labels_used"],
            "test_auc_excluded": detail["excluded"],
            "num_classes": data.num_classes,
            "num_labels": data.num_classes,
            "speed_examples": len(train_subset),
        }
    else:
        speed = optimisation_speed(hist["step_acc"], steps_per_epoch, cfg.speed_epochs, cfg.speed_fraction)
        figures = {
            "test_acc": hist["test_acc"][-1],
            "test_loss": hist["test_loss"][-1],
            "val_acc": hist["val_acc"][-1],
            "val_loss": hist["val_loss"][-1],
            "train_acc_final": train_score,
            "train_loss_final": train_loss,
            "train_acc_last_epoch": float(np.mean(hist["step_acc"][-steps_per_epoch:])),
            "num_classes": data.num_classes,
        }
    metrics = {
        **figures,
        **speed,
        "speed_k": cfg.speed_epochs,
        "speed_fraction": cfg.speed_fraction,
        "steps": step,
        "seconds": seconds,
        "train_seconds": step_seconds,
        "images_per_s": n * cfg.epochs / step_seconds,
        "metric": metric,
    }
    return TrainResult(hist, metrics, logits.astype(np.float32), data.test.y.numpy(), steps_per_epoch, checkpoints)
