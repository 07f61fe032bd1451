"""Common and uncommon mistakes of two models on the same test set (Neyshabur et al., Section 3.2).

Single-label: a mistake is an example whose arg-max class is not its label. Multi-label: a mistake is a wrong
decision on one known (example, label): the model says the label is present where sigmoid(logit) >=
``threshold`` (unknown labels, NaN, are not decisions). The common / uncommon counts are taken over those units
(``MistakesResult.unit``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch.nn as nn

from ..data import Split
from ..metrics import THRESHOLD, is_multilabel
from ..vocab.results import MistakesResult

__all__ = ["MistakesResult", "mistakes", "multilabel_mistakes", "mistakes_from_logits", "model_mistakes"]


def mistakes(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> MistakesResult:
    """Common / uncommon mistakes from per-example predictions (n,) of two models and the labels (n,)."""
    pred_a, pred_b, labels = (np.asarray(v).reshape(-1) for v in (pred_a, pred_b, labels))
    if not (len(pred_a) == len(pred_b) == len(labels)):
        raise ValueError(f"mistakes: predictions of lengths {len(pred_a)} and {len(pred_b)} for {len(labels)} labels")
    wa, wb = pred_a != labels, pred_b != labels
    return MistakesResult(
        n=len(labels),
        common=int((wa & wb).sum()),
        uncommon=int((wa ^ wb).sum()),
        only_a_wrong=np.flatnonzero(wa & ~wb).tolist(),
        only_b_wrong=np.flatnonzero(wb & ~wa).tolist(),
        n_examples=len(labels),
    )


def _logit_of(threshold: float) -> float:
    """The logit at which sigmoid equals ``threshold`` (so that p >= threshold <=> logit >= it)."""
    if not 0 < threshold < 1:
        raise ValueError(f"mistakes: threshold must be a probability in (0, 1), got {threshold}")
    return math.log(threshold) - math.log1p(-threshold)


def multilabel_mistakes(logits_a: np.ndarray, logits_b: np.ndarray, labels: np.ndarray,
                        threshold: float = THRESHOLD) -> MistakesResult:
    """Common / uncommon mistakes of two multi-label models per (example, label) decision.

    ``logits_a``, ``logits_b``, ``labels``: (N, L); labels 1.0, 0.0 or NaN (unknown: not a decision). A model says
    label j of example i is present where sigmoid(logit) >= ``threshold``; a decision is wrong where that differs
    from the label. ``n`` is the number of known decisions."""
    za, zb, y = (np.asarray(v, dtype=np.float64) for v in (logits_a, logits_b, labels))
    if not (za.shape == zb.shape == y.shape) or y.ndim != 2:
        raise ValueError(f"mistakes: logits {za.shape} and {zb.shape} and labels {y.shape} must all be (N, L)")
    cut = _logit_of(threshold)
    known = ~np.isnan(y)
    truth = y == 1
    wa = ((za >= cut) != truth) & known
    wb = ((zb >= cut) != truth) & known
    only_a, only_b = wa & ~wb, wb & ~wa
    return MistakesResult(
        n=int(known.sum()),
        common=int((wa & wb).sum()),
        uncommon=int((wa ^ wb).sum()),
        only_a_wrong=np.flatnonzero(only_a.any(1)).tolist(),
        only_b_wrong=np.flatnonzero(only_b.any(1)).tolist(),
        unit="example-label",
        threshold=float(threshold),
        n_examples=int(y.shape[0]),
        n_labels=int(y.shape[1]),
        only_a_wrong_decisions=np.flatnonzero(only_a.reshape(-1)).tolist(),
        only_b_wrong_decisions=np.flatnonzero(only_b.reshape(-1)).tolist(),
    )


def mistakes_from_logits(logits_a: np.ndarray, logits_b: np.ndarray, labels: np.ndarray,
                         threshold: float = THRESHOLD) -> MistakesResult:
    """:func:`mistakes` of the arg-max predictions for single-label ``labels`` (N,), or
    :func:`multilabel_mistakes` at ``threshold`` for multi-label ``labels`` (N, L)."""
    labels = np.asarray(labels)
    if is_multilabel(labels):
        return multilabel_mistakes(logits_a, logits_b, labels, threshold)
    return mistakes(np.asarray(logits_a).argmax(1), np.asarray(logits_b).argmax(1), labels)


def model_mistakes(model_a: nn.Module, model_b: nn.Module, split: Split, batch_size: int = 512,
                   threshold: float = THRESHOLD) -> MistakesResult:
    """:func:`mistakes_from_logits` of two models on a split (models evaluated in eval mode, their mode restored);
    ``threshold`` is used for multi-label splits only."""
    from ..train import evaluate

    _, _, la = evaluate(model_a, split, batch_size)
    _, _, lb = evaluate(model_b, split, batch_size)
    res = mistakes_from_logits(la, lb, split.y.numpy(), threshold)
    multi = {"threshold": float(threshold)} if is_multilabel(split.y) else {}
    return replace(res, args={"batch_size": batch_size, **multi})
