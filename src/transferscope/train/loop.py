"""The training loop: one :func:`train` for pre-training (P), fine-tuning (P-T) and training from scratch (RI-T),
straight-line code in the manner of nanoGPT's ``train.py``: SGD with momentum and its schedule, the seeded data
order, and one optimiser step after another. What a run records as it goes is :class:`~.record.RunRecord`'s.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from .. import task
from ..config import TrainConfig
from ..data import DomainData
from ..models import to_input
from .device import autocast_for, choose_memory_format, grad_scaler, keep_freed_memory, model_device, to_device
from .record import RunRecord, TrainResult

__all__ = ["train", "learning_rates"]


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


def _optimiser(model: nn.Module, cfg: TrainConfig, dev: torch.device, scaled: bool, steps_per_epoch: int
               ) -> tuple[list[nn.Parameter], torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """The parameters to clip, the optimiser (no weight decay on biases and normalisation weights) and its schedule
    per step: linear warm-up over ``cfg.warmup_epochs``, then constant or cosine to 0 at the last step."""
    total = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    opt = _sgd([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], cfg,
               dev, scaled=scaled)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)

    def lr_factor(s: int) -> float:
        w = min(1.0, (s + 1) / warmup) if warmup else 1.0
        if cfg.schedule == "cosine":
            return w * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        return w

    return params, opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)


def learning_rates(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate after each step ``k`` = 0 .. ``steps_per_epoch x cfg.epochs`` of a run (element ``k`` is the
    rate step ``k + 1`` uses; the last, after the last step, is used by none): the trainer's own schedule
    (:func:`_optimiser`) replayed on a parameter without gradient, so equal to what its optimiser holds after ``k``
    steps, the ``lr`` that the history records at the evaluated epochs' ends. For the per-step ``lr`` curve of
    TensorBoard logs (:mod:`transferscope.tblog`)."""
    _, opt, sched = _optimiser(nn.Linear(1, 1, bias=False), cfg, torch.device("cpu"), False, steps_per_epoch)
    opt.step()  # no gradient: nothing moves (and the schedule does not warn of a step before the optimiser's)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps_per_epoch * cfg.epochs):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def _step(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, opt: torch.optim.SGD,
          sched: torch.optim.lr_scheduler.LambdaLR, scaler: torch.amp.GradScaler | None, autocast: Callable,
          params: list[nn.Parameter], grad_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch; returns its loss and logits (on the device, not read back)."""
    with autocast():
        logits = model(xb)
        # the loss in float32 under any precision; autocast computes cross-entropy in float32 anyway, so the cast
        # changes no bit of a single-label run (tests/test_train_loss.py)
        loss = task.loss(logits.float(), yb)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()  # a step whose gradients hold inf/NaN is skipped by scaler.step
    if grad_clip > 0:
        if scaler is not None:
            scaler.unscale_(opt)  # clip the true gradients
        nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
    if scaler is None:
        opt.step()
        sched.step()
    else:
        scaler.step(opt)
        scaler.update()
        with warnings.catch_warnings():  # a skipped step is no optimiser step; the schedule counts it
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before")
            sched.step()
    return loss, logits


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
    dev = model_device(model)
    autocast, scaler = autocast_for(dev, precision), grad_scaler(dev, precision)
    if dev.type == "cpu":
        keep_freed_memory()
    fmt = memory_format if memory_format is not None else choose_memory_format(model)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    model.to(memory_format=fmt)
    model.train()
    params, opt, sched = _optimiser(model, cfg, dev, scaler is not None, steps_per_epoch)
    g = torch.Generator(device="cpu").manual_seed(seed)
    rec = RunRecord(model, data, cfg, opt, seed=seed, precision=precision, fmt=fmt, steps_per_epoch=steps_per_epoch,
                    checkpoint_steps=checkpoint_steps, progress=progress)
    t0, step_seconds = time.perf_counter(), 0.0
    rec.record_epoch(0)
    rec.maybe_keep(0)
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=g, device="cpu")
        t_epoch = time.perf_counter()
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb = to_input(to_device(data.train.x, dev, idx)).contiguous(memory_format=fmt)
            yb = to_device(data.train.y, dev, idx)
            loss, logits = _step(model, xb, yb, opt, sched, scaler, autocast, params, cfg.grad_clip)
            rec.step_done(loss, logits, yb)
        rec.check_finite()  # also waits for the device: the epoch's time is its steps' time
        step_seconds += time.perf_counter() - t_epoch
        rec.record_epoch(epoch)
    seconds = time.perf_counter() - t0
    train_loss, train_score = rec.finish()
    model.to(memory_format=torch.contiguous_format)
    return rec.result(train_loss, train_score, seconds, step_seconds)
