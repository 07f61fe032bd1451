"""The loss of a target, by the shape of its labels (see :mod:`transferscope.metrics`).

Single-label: cross-entropy of softmax logits against class indices (N,).
Multi-label: binary cross-entropy of a sigmoid per label (``BCEWithLogits``) against (N, L) labels in {0, 1, NaN};
an example's loss is the mean over its *known* labels (NaN = unknown, ignored), so every example weighs the same
and ``reduction="sum"`` adds up per-example losses exactly as for cross-entropy (``mean == sum / N``).

Every function here works on any leading batch shape of the logits' last dimension handled as the classes/labels,
and on any device: nothing is created off the inputs' device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metrics import ACC, AUC, is_multilabel

__all__ = ["loss", "per_example_loss", "metric_for", "decisions", "known"]


def metric_for(y: torch.Tensor) -> str:
    """``"auc"`` for multi-label labels, ``"acc"`` otherwise."""
    return AUC if is_multilabel(y) else ACC


def known(y: torch.Tensor) -> torch.Tensor:
    """Bool mask of the known multi-label decisions (not NaN)."""
    return ~torch.isnan(y)


def per_example_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss of every example, shape ``logits.shape[:-1]``.

    ``logits`` (..., N, K) with single-label ``y`` (N,): cross-entropy (broadcast over leading dimensions).
    ``logits`` (..., N, L) with multi-label ``y`` (N, L): the mean BCE over the example's known labels (0 when it
    has none).
    """
    if is_multilabel(y):
        mask = known(y)
        target = torch.where(mask, y, torch.zeros_like(y)).to(logits.dtype).expand_as(logits)
        each = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        each = torch.where(mask.expand_as(each), each, torch.zeros_like(each))
        count = mask.sum(-1).clamp(min=1).to(each.dtype)
        return each.sum(-1) / count
    if logits.ndim == 2:
        return F.cross_entropy(logits, y, reduction="none")
    lead = logits.shape[:-2]
    flat = logits.reshape(-1, logits.shape[-2], logits.shape[-1])
    out = F.cross_entropy(flat.transpose(1, 2), y.expand(flat.shape[0], -1), reduction="none")
    return out.reshape(*lead, logits.shape[-2])


def loss(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy (single-label) or the masked BCE (multi-label) of ``logits`` (N, K) against ``y``;
    ``reduction`` is "mean", "sum" or "none" (per example)."""
    if not is_multilabel(y):
        return F.cross_entropy(logits, y, reduction=reduction)
    each = per_example_loss(logits, y)
    if reduction == "none":
        return each
    if reduction == "sum":
        return each.sum()
    if reduction == "mean":
        return each.mean()
    raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


def decisions(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """What a model says: the arg-max class (N,) or, multi-label, label present where sigmoid >= 0.5 (N, L) bool."""
    return logits >= 0 if multilabel else logits.argmax(-1)
