"""What a run is judged by, without torch: top-1 accuracy for single-label targets, the mean AUC over labels for
multi-label ones (a sigmoid per label, as chest X-ray targets are judged).

Labels come in two shapes. Single-label: int64 ``(N,)`` class indices. Multi-label: float32 ``(N, L)`` with 1.0
(present), 0.0 (absent) and NaN (not known: a decision that is ignored by the loss, the AUC and the mistakes).

A label's AUC is undefined on a set without a positive or without a negative (known) example: such labels are
excluded from the mean, counted and named (:func:`auc_detail`). The AUC itself is scikit-learn's
``roc_auc_score``, computed per label on that label's known examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .vocab.metric import ACC, AUC, metric_label, metric_labels

__all__ = ["ACC", "AUC", "metric_of", "metric_label", "metric_labels", "key", "value", "is_multilabel", "auc_detail",
           "mean_auc", "mean_auc_se", "score", "THRESHOLD"]

THRESHOLD = 0.5
"""The probability at or above which a multi-label model says a label is present (logit >= 0)."""

def is_multilabel(y) -> bool:
    """Whether labels ``y`` (numpy or torch) are multi-label: two dimensions, one column per label."""
    return getattr(y, "ndim", 1) == 2


def metric_of(metrics_or_y) -> str:
    """``"auc"`` or ``"acc"``: from a run's metrics (its ``metric`` entry; runs without one are single-label) or
    from labels."""
    if isinstance(metrics_or_y, Mapping):
        return str(metrics_or_y.get("metric", ACC))
    return AUC if is_multilabel(metrics_or_y) else ACC


def key(split: str, metric: str) -> str:
    """The metrics/history key of a split's figure: ``key("test", "auc") == "test_auc"``; ``train_final`` (the
    final model on the whole training split) is ``train_auc_final`` / ``train_acc_final``."""
    if split == "train_final":
        return f"train_{metric}_final"
    return f"{split}_{metric}"


def value(metrics: Mapping, split: str) -> float:
    """A run's figure on ``split`` ("test", "val", "train_final") in its own metric; NaN when absent."""
    v = metrics.get(key(split, metric_of(metrics)))
    return float("nan") if v is None else float(v)


def auc_detail(scores: np.ndarray, y: np.ndarray, names: Sequence[str] | None = None) -> dict:
    """Per-label and mean ROC AUC of ``scores`` (N, L) (logits or probabilities: the AUC depends only on the order)
    against multi-label ``y`` (N, L) with NaN for unknown.

    Returns ``{"per_label": [L floats, NaN where undefined], "mean": float, "labels_used": int,
    "excluded": [names of labels without a known positive or negative example]}``; ``mean`` is NaN when every
    label is excluded. Scores that are not all finite (a model that diverged) give NaN for every label they touch and
    so a NaN mean, as a single-label model's NaN loss does: never an error, never a number.
    """
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if scores.shape != y.shape or y.ndim != 2:
        raise ValueError(f"auc_detail: scores {scores.shape} and labels {y.shape} must both be (N, L)")
    names = list(names) if names is not None else [str(j) for j in range(y.shape[1])]
    per, out = [], []
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        t = y[known, j]
        if not (t == 1).any() or not (t == 0).any():
            per.append(float("nan"))
            out.append(j)
            continue
        s = scores[known, j]
        per.append(float(roc_auc_score(t, s)) if np.isfinite(s).all() else float("nan"))
    used = [a for j, a in enumerate(per) if j not in out]  # by position: two labels may share a name
    excluded = [names[j] for j in out]
    mean = float(np.mean(used)) if used else float("nan")  # NaN when a used label's scores were not finite
    return {"per_label": per, "mean": mean, "labels_used": len(used), "excluded": excluded}


def mean_auc_se(scores: np.ndarray, y: np.ndarray) -> float:
    """The standard error of :func:`mean_auc`: each label's AUC standard error by Hanley and McNeil (1982),
    ``var = (A (1 - A) + (P - 1) (Q1 - A^2) + (N - 1) (Q2 - A^2)) / (P N)`` with ``Q1 = A / (2 - A)``,
    ``Q2 = 2 A^2 / (1 + A)`` (P, N: the label's known positives and negatives), combined as for a mean of
    independent estimates, ``sqrt(sum var) / L``. Labels are rarely independent, so it is a rough scale (what the
    learning-rate choice's one-standard-error rule needs), not an interval to report. NaN where the mean is."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d = auc_detail(scores, y)
    if not np.isfinite(d["mean"]):
        return float("nan")
    var = []
    for j, a in enumerate(d["per_label"]):
        if np.isnan(a):
            continue
        t = y[~np.isnan(y[:, j]), j]
        p, n = float((t == 1).sum()), float((t == 0).sum())
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        var.append((a * (1 - a) + (p - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (p * n))
    return float(np.sqrt(np.sum(var)) / len(var))


def mean_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """The mean over labels of the ROC AUC (labels without both classes excluded); NaN when none is left."""
    return auc_detail(scores, y)["mean"]


def score(logits: np.ndarray, y: np.ndarray) -> float:
    """The figure a model is judged by on (logits, labels): top-1 accuracy, or the mean AUC for multi-label."""
    logits = np.asarray(logits)
    y = np.asarray(y)
    if is_multilabel(y):
        return mean_auc(logits, y)
    if len(y) == 0:
        return float("nan")
    return float((logits.argmax(1) == y).mean())
