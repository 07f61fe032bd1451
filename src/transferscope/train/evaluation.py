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

__all__ = ["evaluate", "eval_batch_size"]

CPU_BATCH = 32
"""Examples per forward pass of an evaluation on the CPU. Small batches keep each layer's activations in the
core's cache: for the quick study's ResNet-8 on 28x28 images, one thread of an AMD EPYC (Zen 4) evaluated 1,100
target images in 0.38 s at batch 32 against 0.73 s at 512, and 10,000 source images in 4.4 s against 8.5 s, with
bitwise the same logits (``benchmarks/study_throughput.py`` measures the study around it)."""


def eval_batch_size(device: torch.device) -> int:
    """The evaluation's examples per forward pass on ``device``: :data:`CPU_BATCH` on the CPU, 512 elsewhere."""
    return CPU_BATCH if device.type == "cpu" else 512


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int | None = None, *, precision: str = "fp32",
             memory_format: torch.memory_format | None = None) -> tuple[float, float, np.ndarray]:
    """Mean loss, score and logits (N, K) of ``model`` on a split, on the model's device, ``batch_size`` examples
    at a time (None: :func:`eval_batch_size`; evaluation mode, so the figures do not depend on it beyond the last
    bits of floating-point sums), under the autocast of ``precision`` (logits returned as float32), inputs in
    ``memory_format`` (None: the trainer's choice, :func:`choose_memory_format`). Restores the model's train/eval
    mode.

    Single-label: the mean cross-entropy and the top-1 accuracy. Multi-label (labels (N, L)): the mean over examples
    of the binary cross-entropy averaged over each example's known labels (:func:`transferscope.task.loss`) and the
    mean AUC over the labels that have a positive and a negative known example (:func:`transferscope.metrics.score`;
    NaN when none has)."""
    dev = model_device(model)
    batch_size = batch_size or eval_batch_size(dev)
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
