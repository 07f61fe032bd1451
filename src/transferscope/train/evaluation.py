"""The figures of a model on a split: the mean loss (:func:`transferscope.task.loss`, the trainer's), the score it is
judged by (top-1 accuracy, or the mean AUC of a multi-label target) and the logits, on the model's device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .. import metrics as M
from .. import task
from ..data import Split
from ..models import to_input
from .device import autocast_for, choose_memory_format, model_device, to_device

__all__ = ["evaluate"]


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
    autocast = autocast_for(dev, precision)
    fmt = memory_format if memory_format is not None else choose_memory_format(model)
    was_training = model.training
    model.eval()
    logits = []
    try:
        for i in range(0, len(split), batch_size):
            xb = to_input(to_device(split.x[i : i + batch_size], dev)).contiguous(memory_format=fmt)
            with autocast():
                logits.append(model(xb).float())
    finally:
        model.train(was_training)
    if not logits:
        return float("nan"), float("nan"), np.zeros((0, 0), np.float32)
    out = torch.cat(logits)
    y = to_device(split.y, dev)
    loss = task.loss(out, y).item()
    if M.is_multilabel(split.y):
        scores = out.cpu().numpy()
        return loss, M.score(scores, split.y.numpy()), scores
    acc = (out.argmax(1) == y).float().mean().item()
    return loss, acc, out.cpu().numpy()
