"""The two metrics a run is judged by, as names and as words: the one place the words are made.

``acc`` (top-1 accuracy, single-label targets) and ``auc`` (the mean AUC over labels, multi-label targets).
Torch-free and numpy-free, so that the vocabulary (the evidence's units and notes) names them the way the tables,
the report and the command line do; :mod:`transferscope.metrics` re-exports these and computes the metrics.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ACC", "AUC", "metric_label", "metric_labels"]

ACC = "acc"
AUC = "auc"

_LABELS = {ACC: "accuracy", AUC: "mean AUC"}
_SHORT = {ACC: "acc", AUC: "AUC"}


def metric_label(metric: str, short: bool = False) -> str:
    """How a metric is named in tables and figures: "accuracy" or "mean AUC"; ``short``, as a column head does:
    "acc" or "AUC". The one place these words are made."""
    return (_SHORT if short else _LABELS).get(metric, metric)


def metric_labels(metrics: Iterable[str], sep: str = " or ", short: bool = False) -> str:
    """The names (:func:`metric_label`) of the metrics found in ``metrics``, each once, accuracy first, joined by
    ``sep``: "accuracy or mean AUC" for a study whose targets mix them; the accuracy's name when there is none."""
    present = set(metrics)  # once: ``metrics`` may be a generator
    return sep.join(metric_label(m, short) for m in (ACC, AUC) if m in present) or metric_label(ACC, short)
