"""The typed evidence that claims are judged on: numbers per seed and per pair of seeds, per target.

Built from a study's analysis results by :func:`transferscope.study.evidence.gather_evidence`, or by hand in tests.
Arms and pair kinds are the names of :mod:`transferscope.vocab.arms`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .caveats import Caveat
from .metric import ACC, AUC, metric_label

__all__ = ["figure", "one_scale", "PerSeed", "PerPair", "TargetEvidence", "ScoreCell", "Evidence"]


@dataclass(frozen=True)
class PerSeed:
    """One number per seed of one arm (a per-seed statistic)."""

    values: Mapping[int, float] = field(default_factory=dict)

    def list(self) -> list[float]:
        return [float(v) for _, v in sorted(self.values.items())]

    @property
    def seeds(self) -> list[int]:
        return sorted(self.values)


@dataclass(frozen=True)
class PerPair:
    """One number per pair of seeds: within an arm (seed_a < seed_b), or across two arms (seed of a, seed of b)."""

    values: Mapping[tuple[int, int], float] = field(default_factory=dict)

    def mean(self, kept: frozenset[int] | None = None) -> float:
        """Mean over the pairs whose two seeds are both in ``kept`` (every pair: None)."""
        v = [x for (a, b), x in self.values.items() if kept is None or (a in kept and b in kept)]
        return float(sum(v) / len(v)) if v else math.nan

    @property
    def seeds(self) -> list[int]:
        return sorted({s for ab in self.values for s in ab})


@dataclass(frozen=True)
class TargetEvidence:
    """What a study measured on one target. Keys: arm (``P-T``, ``RI-T``) or pair kind (``P-T/P-T`` ...)."""

    name: str
    num_classes: int = 0
    distance: float = math.nan
    """Distance of the target from the source (larger: farther); NaN if neither measured nor declared."""
    distance_source: str = ""
    metric: str = "acc"
    """What the target's runs are judged by: ``acc`` (top-1 accuracy) or ``auc`` (the mean AUC over the labels of
    a multi-label target). ``accuracy``, ``speed``, ``basin`` and ``barrier`` are then in that metric (the barrier
    in 1 - mean AUC), ``uncommon``/``common`` are fractions of (example, label) decisions, and every claim is
    judged on it with the same uncertainty rules."""
    accuracy: Mapping[tuple[str, int], PerSeed] = field(default_factory=dict)
    """(arm, block size) -> test accuracy (or mean AUC) per seed (main runs, from P's final weights)."""
    speed: Mapping[tuple[str, int], PerSeed] = field(default_factory=dict)
    """(arm, block size) -> mean training accuracy over the first k epochs, per seed."""
    uncommon: Mapping[str, PerPair] = field(default_factory=dict)
    """Pair kind -> fraction of test examples exactly one of the two models gets wrong."""
    common: Mapping[str, PerPair] = field(default_factory=dict)
    """Pair kind -> fraction of test examples both models get wrong."""
    cka_layers: tuple[str, ...] = ()
    cka: Mapping[str, tuple[PerPair, ...]] = field(default_factory=dict)
    """Pair kind -> linear CKA per layer (``cka_layers``, input to output)."""
    param_distance: Mapping[str, PerPair] = field(default_factory=dict)
    """Pair kind (``P-T/P-T``, ``RI-T/RI-T``) -> l2 distance between the two models' parameters."""
    start_distance: Mapping[str, PerSeed] = field(default_factory=dict)
    """Arm -> l2 distance of each trained model to the weights it started from (P-T: P, RI-T: RI)."""
    barrier: Mapping[str, PerPair] = field(default_factory=dict)
    """Pair kind -> error barrier on the straight line between the two models."""
    criticality_modules: tuple[str, ...] = ()
    criticality: Mapping[str, Mapping[int, tuple[float, ...]]] = field(default_factory=dict)
    """Arm -> seed -> criticality per module (``criticality_modules``, input to output, head excluded); ``inf``: no
    rewinding feasible, NaN: the module did not move in training (its criticality means nothing)."""
    criticality_note: str = ""
    """Why ``criticality_modules`` are not the configured layers (e.g. layers without parameters, and the modules
    used instead); empty when they are."""
    basin: Mapping[float, PerSeed] = field(default_factory=dict)
    """Pre-training checkpoint (epochs) -> test accuracy of P-T fine-tuned from it, per seed (the final one too)."""
    basin_final: float = math.nan
    basin_block: int = 0
    """The block size of the basin sweep's runs (the final checkpoint's are the P-T runs at that block size)."""
    top_eigenvalue: Mapping[str, PerSeed] = field(default_factory=dict)
    """Arm -> top Hessian eigenvalue of the training loss at the end of training."""
    deviation: Mapping[str, PerSeed] = field(default_factory=dict)
    """Arm -> mean over body modules of ||W - W0|| / ||W0|| at the end of training."""
    grad_lipschitz: Mapping[str, PerSeed] = field(default_factory=dict)
    """Arm -> the gradient's local Lipschitz constant, mean over the points of training probed."""
    principal: Mapping[str, PerSeed] = field(default_factory=dict)
    """Arm -> fraction of the initial gradient's energy on the top singular direction (mean over body weights);
    ``P-T``: pre-trained weights, ``RI-T``: random ones."""


@dataclass(frozen=True)
class ScoreCell:
    """A (target, block size) cell: the gain measured there and the similarity scores computed from P alone."""

    target: str
    block_size: int
    gain: float
    scores: Mapping[str, float] = field(default_factory=dict)
    """Score name -> value, oriented so that larger means more similar (an MMD enters negated)."""
    metric: str = "acc"
    """What the gain is in: ``acc`` (test accuracy) or ``auc`` (mean AUC of a multi-label target)."""


def one_scale(cells: Sequence[ScoreCell]) -> tuple[list[ScoreCell], str]:
    """The cells whose gains are on one scale, and what was left out: when accuracy and mean-AUC gains are mixed,
    the metric of most cells (accuracy on a tie) is kept and the others are named, since ranking a gain in
    accuracy against one in AUC compares two scales."""
    metrics = [c.metric for c in cells]
    if len(set(metrics)) <= 1:
        return list(cells), ""
    keep = max(sorted(set(metrics)), key=lambda m: (metrics.count(m), m == ACC))
    out = [c for c in cells if c.metric != keep]
    return [c for c in cells if c.metric == keep], (
        f"{len(out)} (target, block size) cell{'s' if len(out) != 1 else ''} of targets judged by "
        f"{metric_label(out[0].metric)} left out ({', '.join(sorted({c.target for c in out}))}): their "
        f"gains are not on the scale of the {metric_label(keep)} gains of the others")


@dataclass(frozen=True)
class Evidence:
    targets: tuple[TargetEvidence, ...] = ()
    full_block: int = 0
    """The block size that leaves images unshuffled (the image size)."""
    blocks: tuple[int, ...] = ()
    speed_epochs: int = 0
    cells: tuple[ScoreCell, ...] = ()
    conditional_on: str = ""
    """What every verdict is conditional on (the one pre-trained model P, its seed and run)."""
    caveats: tuple[Caveat, ...] = ()
    """What the runs behind the evidence are flagged for (runs that did not fit, ...): they go with the verdicts of
    the claims that read those runs (see :mod:`transferscope.vocab.caveats`)."""

    def target(self, name: str) -> TargetEvidence:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)


def figure(t: TargetEvidence, what: str) -> str:
    """How a measure on target ``t`` names its figure, in the target's metric: ``what`` is ``test`` (the test
    figure), ``train`` (the training figure of the speed measure), ``error`` (the barrier's unit) or ``mistakes``
    (what the common/uncommon fractions count)."""
    auc = t.metric == AUC
    return {
        "test": "test mean AUC" if auc else "test accuracy (fraction)",
        "train": "mean AUC on a fixed training subset, per epoch" if auc else "training accuracy (fraction)",
        "error": "1 - test mean AUC" if auc else "test error (fraction)",
        "mistakes": "fraction of (test example, label) decisions" if auc else "fraction of test examples",
        "word": metric_label(AUC if auc else ACC),
    }[what]
