"""One training loop for pre-training (P), fine-tuning (P-T) and training from scratch (RI-T).

Straight-line code in the manner of nanoGPT's ``train.py``: SGD with momentum on in-memory uint8 images,
a per-step record of the training loss and accuracy, a per-epoch evaluation on validation and test data,
the optimisation-speed figures of Neyshabur et al., and the per-example test predictions of the final model.
Randomness comes only from ``seed``: same seed, same machine, same thread count: bitwise-identical weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TrainConfig
from .data import DomainData, Split
from .models import to_input

__all__ = ["TrainResult", "TrainingDiverged", "train", "evaluate", "optimisation_speed", "relative_deviation"]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainResult:
    history: dict[str, list]
    """step_loss, step_acc (per step); epoch, val_loss, val_acc, test_loss, test_acc, lr (per epoch, epoch 0 =
    before training); deviation (per epoch: {module: ||W - W0||_F / ||W0||_F})."""
    metrics: dict[str, float]
    """Final figures: test_acc, test_loss, val_acc, val_loss; train_acc_final, train_loss_final (the final model on
    the whole training split, in eval mode); train_acc_last_epoch (running mean over the last epoch's batches);
    num_classes; the two speed figures; time."""
    test_logits: np.ndarray
    """(n_test, num_classes) float32 logits of the final model."""
    test_labels: np.ndarray
    steps_per_epoch: int
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Weights kept at the requested steps (step -> state dict)."""

    @property
    def test_pred(self) -> np.ndarray:
        return self.test_logits.argmax(1)


def memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last unless a convolution has fewer than 8 output channels: oneDNN's 1x1 backward-weights kernel
    was seen to hang on those in channels_last. (It made a Fixup ResNet-8 about 1.45x faster on a CPU; with
    GroupNorm it changes little: 816 against 826 images/s.)"""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if convs and min(m.out_channels for m in convs) >= 8:
        return torch.channels_last
    return torch.contiguous_format


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 512) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and logits (N, K) of ``model`` on a split, on the model's device.
    Restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    fmt, dev = memory_format(model), _device(model)
    logits = []
    for i in range(0, len(split), batch_size):
        xb = to_input(split.x[i : i + batch_size].to(dev)).contiguous(memory_format=fmt)
        logits.append(model(xb).float().cpu())
    model.train(was_training)
    if not logits:
        return float("nan"), float("nan"), np.zeros((0, 0), np.float32)
    out = torch.cat(logits)
    loss = F.cross_entropy(out, split.y).item()
    acc = (out.argmax(1) == split.y).float().mean().item()
    return loss, acc, out.numpy()


def optimisation_speed(step_acc: Sequence[float], steps_per_epoch: int, k: int, fraction: float) -> dict[str, float]:
    """The two optimisation-speed figures of Neyshabur et al. from the per-step training accuracy.

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


def _module_groups(model: nn.Module) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    module_of = getattr(model, "module_of", None)
    for name, _ in model.named_parameters():
        key = module_of(name) if module_of else name.rsplit(".", 1)[0]
        groups.setdefault(key, []).append(name)
    return groups


def relative_deviation(model: nn.Module, initial: dict[str, torch.Tensor]) -> dict[str, float]:
    """||W - W0||_F / ||W0||_F per module, over the parameters present in ``initial`` with equal shapes.

    A module whose initial weights are all zero reports NaN (the ratio has no meaning there).
    """
    params = dict(model.named_parameters())
    out = {}
    for module, names in _module_groups(model).items():
        num = den = 0.0
        for n in names:
            if n in initial and initial[n].shape == params[n].shape:
                w0 = initial[n]
                num += (params[n].detach() - w0).pow(2).sum().item()
                den += w0.pow(2).sum().item()
        if den > 0:
            out[module] = math.sqrt(num / den)
        elif num > 0:
            out[module] = float("nan")
    return out


def train(
    model: nn.Module,
    data: DomainData,
    cfg: TrainConfig,
    *,
    seed: int,
    checkpoint_steps: Sequence[int] = (),
    progress: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place, on its device, on ``data.train``; evaluate on ``data.val`` and ``data.test``
    every epoch.

    Args:
        model: any classifier taking inputs from :func:`transferscope.models.to_input`.
        data: the domain (already block-shuffled if wanted).
        cfg: optimiser, schedule and the parameters of the optimisation-speed figures.
        seed: the data order. (The initialisation is the caller's: it builds or loads the model.)
        checkpoint_steps: steps after which to keep a copy of the weights (0 = before the first step).
        progress: called after every epoch with (epoch, figures) — for progress bars.

    Raises:
        TrainingDiverged: the loss became NaN or infinite (the message says at which step).
    """
    n = len(data.train)
    if n == 0:
        raise ValueError(f"domain {data.name!r}: the training split is empty")
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    fmt, dev = memory_format(model), _device(model)
    model.to(memory_format=fmt)
    model.train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=cfg.momentum,
    )
    warmup = round(cfg.warmup_epochs * steps_per_epoch)

    def lr_factor(s: int) -> float:
        w = min(1.0, (s + 1) / warmup) if warmup else 1.0
        if cfg.schedule == "cosine":
            return w * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        return w

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    g = torch.Generator().manual_seed(seed)
    keep = set(int(s) for s in checkpoint_steps)
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}

    hist: dict[str, list] = {k: [] for k in ("step_loss", "step_acc", "epoch", "val_loss", "val_acc", "test_epoch",
                                             "test_loss", "test_acc", "lr", "deviation")}

    last_logits: list[np.ndarray] = []

    def record_epoch(epoch: int) -> None:
        if epoch % cfg.eval_every and epoch != cfg.epochs:
            return  # evaluated every eval_every epochs, and always at the start and the end
        vl, va, _ = evaluate(model, data.val)
        hist["epoch"].append(epoch)
        hist["val_loss"].append(vl)
        hist["val_acc"].append(va)
        if cfg.test_every_epoch or epoch == cfg.epochs:
            tl, ta, logits = evaluate(model, data.test)
            last_logits[:] = [logits]
            hist["test_epoch"].append(epoch)
            hist["test_loss"].append(tl)
            hist["test_acc"].append(ta)
        hist["lr"].append(opt.param_groups[0]["lr"])
        hist["deviation"].append(relative_deviation(model, initial))
        if progress:
            progress(epoch, {"val_acc": va})

    def maybe_keep(step: int) -> None:
        if step in keep:
            checkpoints[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    t0 = time.perf_counter()
    step_seconds = 0.0
    record_epoch(0)
    maybe_keep(0)
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=g)
        t_epoch = time.perf_counter()
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb = to_input(data.train.x[idx].to(dev, non_blocking=True)).contiguous(memory_format=fmt)
            yb = data.train.y[idx].to(dev, non_blocking=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"training loss is {loss.item()} at step {step} (epoch {epoch}, lr {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            hist["step_loss"].append(loss.item())
            hist["step_acc"].append((logits.argmax(1) == yb).float().mean().item())
            maybe_keep(step)
        step_seconds += time.perf_counter() - t_epoch
        record_epoch(epoch)
    seconds = time.perf_counter() - t0
    # did the run fit its training data? the final model on the whole training split, in eval mode (the running
    # mean over the last epoch's batches mixes the weights of a whole epoch and train-mode normalisation)
    train_loss, train_acc, _ = evaluate(model, data.train)
    model.to(memory_format=torch.contiguous_format)

    logits = last_logits[0]
    speed = optimisation_speed(hist["step_acc"], steps_per_epoch, cfg.speed_epochs, cfg.speed_fraction)
    metrics = {
        "test_acc": hist["test_acc"][-1],
        "test_loss": hist["test_loss"][-1],
        "val_acc": hist["val_acc"][-1],
        "val_loss": hist["val_loss"][-1],
        "train_acc_final": train_acc,
        "train_loss_final": train_loss,
        "train_acc_last_epoch": float(np.mean(hist["step_acc"][-steps_per_epoch:])),
        "num_classes": data.num_classes,
        **speed,
        "speed_k": cfg.speed_epochs,
        "speed_fraction": cfg.speed_fraction,
        "steps": step,
        "seconds": seconds,
        "train_seconds": step_seconds,
        "images_per_s": n * cfg.epochs / step_seconds,
    }
    return TrainResult(hist, metrics, logits.astype(np.float32), data.test.y.numpy(), steps_per_epoch, checkpoints)
