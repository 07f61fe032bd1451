"""What a run records as it trains, and what it returns: the per-step losses (and single-label accuracies) kept on the
device until the end, the per-epoch evaluations and weight deviations, the checkpoints asked for, the look for a
diverged loss every few dozen steps, and the final figures of a :class:`TrainResult`. The loop itself
(:func:`transferscope.train.train`) stays a short sequence of steps; this holds its bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from .. import metrics as M
from ..config import TrainConfig
from ..data import DomainData, Split
from .device import model_device
from .evaluation import evaluate
from .measures import auc_speed, optimisation_speed, relative_deviation, speed_subset

__all__ = ["TrainingDiverged", "TrainResult", "RunRecord"]

CHECK_EVERY = 64
"""Steps between two looks at the training losses for NaN or infinity (each look waits for the device)."""


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


class RunRecord:
    """The bookkeeping of one :func:`~transferscope.train.train` call on ``model`` (already in its memory format, on
    its device, in train mode, with its optimiser ``opt`` made): the history, the step figures, the checkpoints."""

    def __init__(self, model: nn.Module, data: DomainData, cfg: TrainConfig, opt: torch.optim.Optimizer, *,
                 seed: int, precision: str, fmt: torch.memory_format, steps_per_epoch: int,
                 checkpoint_steps: Sequence[int], progress: Callable[[int, dict], None] | None) -> None:
        n = len(data.train)
        dev = model_device(model)
        self.model, self.data, self.cfg, self.opt = model, data, cfg, opt
        self.precision, self.fmt, self.steps_per_epoch, self.progress = precision, fmt, steps_per_epoch, progress
        self.multilabel = M.is_multilabel(data.train.y)
        self.metric = M.AUC if self.multilabel else M.ACC
        self.val_key, self.test_key = M.key("val", self.metric), M.key("test", self.metric)
        total = steps_per_epoch * cfg.epochs
        self.keep = set(int(s) for s in checkpoint_steps)
        self.checkpoints: dict[int, dict[str, torch.Tensor]] = {}
        self.initial = {k: v.detach().clone() for k, v in model.named_parameters()}
        # the per-step figures stay on the device until the end: reading them each step (.item()) would make the host
        # wait for the device every step
        self.step_loss = torch.zeros(total, dtype=torch.float32, device=dev)
        self.step_correct = torch.zeros(total, dtype=torch.int64, device=dev)
        self.batch = torch.tensor([min(cfg.batch_size, n - i) for i in range(0, n, cfg.batch_size)] * cfg.epochs,
                                  dtype=torch.float64, device="cpu")
        if self.multilabel:
            self.hist: dict[str, list] = {k: [] for k in ("step_loss", "epoch", "val_loss", "val_auc", "test_epoch",
                                                          "test_loss", "test_auc", "lr", "deviation", "train_auc")}
            sub = speed_subset(n, cfg.speed_examples, seed)
            self.train_subset = Split(data.train.x[sub], data.train.y[sub], np.asarray(data.train.index)[sub.numpy()])
        else:
            self.hist = {k: [] for k in ("step_loss", "step_acc", "epoch", "val_loss", "val_acc", "test_epoch",
                                         "test_loss", "test_acc", "lr", "deviation")}
        self.last_logits: list[np.ndarray] = []
        self.last_val_logits: list[np.ndarray] = []
        self.steps = self.checked = 0

    def epoch_train_figures(self, epoch: int) -> dict[str, float]:
        """The training figures of an epoch for ``progress`` (read only when someone listens)."""
        figs: dict[str, float] = {}
        if epoch > 0:
            a, b = (epoch - 1) * self.steps_per_epoch, epoch * self.steps_per_epoch
            figs["train_loss"] = float(np.mean(self.step_loss[a:b].tolist()))
            if not self.multilabel:  # as history's step_acc: the exact fraction of each batch
                figs["train_acc"] = float(np.mean((self.step_correct[a:b].cpu().double() / self.batch[a:b]).tolist()))
        if self.multilabel:
            figs["train_auc"] = self.hist["train_auc"][epoch]
        return figs

    def record_epoch(self, epoch: int) -> None:
        """After epoch ``epoch`` (0: before training): the multi-label training curve, and every ``eval_every``
        epochs (and at the start and the end) the validation (and test) figures, the rate and the deviation."""
        model, data, cfg, hist, precision, fmt = self.model, self.data, self.cfg, self.hist, self.precision, self.fmt
        if self.multilabel:  # every epoch: the training curve of the speed figures
            hist["train_auc"].append(evaluate(model, self.train_subset, precision=precision, memory_format=fmt)[1])
        if epoch % cfg.eval_every and epoch != cfg.epochs:
            return  # evaluated every eval_every epochs, and always at the start and the end
        vl, va, val_logits = evaluate(model, data.val, precision=precision, memory_format=fmt)
        self.last_val_logits[:] = [val_logits]
        hist["epoch"].append(epoch)
        hist["val_loss"].append(vl)
        hist[self.val_key].append(va)
        figs = {"val_loss": vl, self.val_key: va}
        if cfg.test_every_epoch or epoch == cfg.epochs:
            tl, ta, logits = evaluate(model, data.test, precision=precision, memory_format=fmt)
            self.last_logits[:] = [logits]
            hist["test_epoch"].append(epoch)
            hist["test_loss"].append(tl)
            hist[self.test_key].append(ta)
            figs.update({"test_loss": tl, self.test_key: ta})
        hist["lr"].append(self.opt.param_groups[0]["lr"])
        hist["deviation"].append(relative_deviation(model, self.initial))
        if self.progress:
            self.progress(epoch, {**self.epoch_train_figures(epoch), **figs, "lr": hist["lr"][-1]})

    def maybe_keep(self, step: int) -> None:
        if step in self.keep:
            self.checkpoints[step] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def check_finite(self) -> None:
        """Look at the losses of the steps since the last look (waits for the device)."""
        start, stop = self.checked, self.steps
        bad = torch.nonzero(~torch.isfinite(self.step_loss[start:stop])).flatten()
        if len(bad):
            s = start + int(bad[0])
            raise TrainingDiverged(f"training loss is {self.step_loss[s].item()} at step {s} "
                                   f"(epoch {s // self.steps_per_epoch + 1}, lr {self.cfg.lr})")
        self.checked = stop

    def step_done(self, loss: torch.Tensor, logits: torch.Tensor, yb: torch.Tensor) -> None:
        """Record an optimiser step's loss (and correct count), look for divergence every :data:`CHECK_EVERY`
        steps, and keep the weights if that step was asked for."""
        step = self.steps
        self.step_loss[step] = loss.detach()
        if not self.multilabel:
            self.step_correct[step] = (logits.argmax(1) == yb).sum()
        self.steps = step + 1
        if self.steps - self.checked >= CHECK_EVERY:
            self.check_finite()
        self.maybe_keep(self.steps)

    def finish(self) -> tuple[float, float]:
        """The per-step history read back, and the final model's loss and score on the whole training split."""
        self.hist["step_loss"] = self.step_loss.tolist()
        if not self.multilabel:
            self.hist["step_acc"] = (self.step_correct.cpu().double() / self.batch).tolist()
        # did the run fit its training data? the final model on the whole training split, in eval mode (the running
        # mean over the last epoch's batches mixes the weights of a whole epoch and train-mode normalisation)
        train_loss, train_score, _ = evaluate(self.model, self.data.train, precision=self.precision,
                                              memory_format=self.fmt)
        return train_loss, train_score

    def result(self, train_loss: float, train_score: float, seconds: float, step_seconds: float) -> TrainResult:
        """The :class:`TrainResult`, once :meth:`finish` has read the training split."""
        cfg, data = self.cfg, self.data
        logits = self.last_logits[0]
        figures, speed = (self._multilabel_figures if self.multilabel else self._figures)(train_loss, train_score)
        metrics = {
            **figures,
            **speed,
            "speed_k": cfg.speed_epochs,
            "speed_fraction": cfg.speed_fraction,
            "steps": self.steps,
            "seconds": seconds,
            "train_seconds": step_seconds,
            "images_per_s": len(data.train) * cfg.epochs / step_seconds,
            "metric": self.metric,
        }
        return TrainResult(self.hist, metrics, logits.astype(np.float32), data.test.y.numpy(), self.steps_per_epoch,
                           self.checkpoints)

    def _figures(self, train_loss: float, train_score: float) -> tuple[dict, dict[str, float]]:
        """A single-label run's final figures, and its speed figures from the per-step accuracy."""
        cfg, hist, steps_per_epoch = self.cfg, self.hist, self.steps_per_epoch
        speed = optimisation_speed(hist["step_acc"], steps_per_epoch, cfg.speed_epochs, cfg.speed_fraction)
        figures = {
            "test_acc": hist["test_acc"][-1],
            "test_loss": hist["test_loss"][-1],
            "val_acc": hist["val_acc"][-1],
            "val_loss": hist["val_loss"][-1],
            "train_acc_final": train_score,
            "train_loss_final": train_loss,
            "train_acc_last_epoch": float(np.mean(hist["step_acc"][-steps_per_epoch:])),
            "num_classes": self.data.num_classes,
        }
        return figures, speed

    def _multilabel_figures(self, train_loss: float, train_score: float) -> tuple[dict, dict[str, float]]:
        """A multi-label run's final figures (mean AUC, per label), and its speed figures from the per-epoch mean
        AUC on the training subset."""
        cfg, hist, data = self.cfg, self.hist, self.data
        speed = auc_speed(hist["train_auc"][1:], self.steps_per_epoch, cfg.speed_epochs, cfg.speed_fraction)
        detail = M.auc_detail(self.last_logits[0], data.test.y.numpy(), data.classes)
        figures = {
            "test_auc": hist["test_auc"][-1],
            "test_loss": hist["test_loss"][-1],
            "val_auc": hist["val_auc"][-1],
            "val_auc_se": M.mean_auc_se(self.last_val_logits[0], data.val.y.numpy()),  # for the one-SE rule
            "val_loss": hist["val_loss"][-1],
            "train_auc_final": train_score,
            "train_loss_final": train_loss,
            "train_auc_subset_final": hist["train_auc"][-1],
            "test_auc_per_label": detail["per_label"],
            "test_auc_labels_used": detail["labels_used"],
            "test_auc_excluded": detail["excluded"],
            "num_classes": data.num_classes,
            "num_labels": data.num_classes,
            "speed_examples": len(self.train_subset),
        }
        return figures, speed
