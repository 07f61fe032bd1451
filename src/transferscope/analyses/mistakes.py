"""Common and uncommon mistakes of two models on the same test set (Neyshabur et al., Section 3.2)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch.nn as nn

from ..data import Split
from ..study.records import MistakesResult

__all__ = ["MistakesResult", "mistakes", "model_mistakes"]


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
    )


def model_mistakes(model_a: nn.Module, model_b: nn.Module, split: Split, batch_size: int = 512) -> MistakesResult:
    """:func:`mistakes` of two models on a split (models evaluated in eval mode, their mode restored)."""
    from ..train import evaluate

    _, _, la = evaluate(model_a, split, batch_size)
    _, _, lb = evaluate(model_b, split, batch_size)
    return replace(mistakes(la.argmax(1), lb.argmax(1), split.y.numpy()), args={"batch_size": batch_size})
