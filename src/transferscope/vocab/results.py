"""The typed results of the analyses, torch-free: what ``analyses/<key>.json`` holds, as frozen dataclasses.

Two layers:

* the result of one analysis on one model or one pair of models (:class:`MistakesResult`, :class:`CKAResult`,
  :class:`DistanceResult`, :class:`BarrierResult`, :class:`CriticalityResult`, :class:`FlatnessResult`,
  :class:`StabilityResult`, :class:`PrincipalGradientResult`, :class:`TransferabilityResult`; defined here and
  re-exported by the modules of :mod:`transferscope.analyses` that compute them), plus the per-run records that
  only the study computes (:class:`DeviationResult`, :class:`StabilityCurve`, :class:`PairMistakes`);
* the result of an analysis over a study's target (one ``analyses/<key>.json``): :class:`PairsResult`
  (mistakes, CKA, distance, barrier: one :class:`PairRow` per pair), :class:`ModelsResult` (criticality,
  flatness, deviation, stability, principal: one :class:`ModelRow` per model), :class:`TransferResult`,
  :class:`BasinResult`, :class:`ScoresResult` and :class:`RelateResult`. :data:`RESULT_TYPES` maps each analysis
  name to its type.

Every record has ``to_dict()`` (the JSON-able dict written under ``"result"``) and ``from_dict()`` (its inverse).
Files are written and read with :mod:`transferscope.jsonio` (non-finite floats as ``"NaN"``/``"Infinity"``); a
``null`` in a float field (a file written before that encoding) is read as NaN. This module imports neither
torch nor anything that does: the report and the claims read these records.

A record's ``schema_version`` is bumped here when its fields change meaning.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import jsonio

__all__ = ["Result", "MistakesResult", "PairMistakes", "CKAResult", "DistanceResult", "BarrierResult", "CriticalityResult",
           "FlatnessResult", "StabilityResult", "StabilityPoint", "StabilityCurve", "PrincipalGradientResult",
           "TransferabilityResult", "DeviationResult", "read_float", "restore_nan"]


def read_float(x: Any) -> float:
    """A float field read from JSON: ``null`` (no number, or NaN in a file written before jsonio) is NaN."""
    return math.nan if x is None else float(x)


def restore_nan(v: Any) -> Any:
    """A ``null`` in a numeric field of a file written before :mod:`transferscope.jsonio`: NaN."""
    if v is None:
        return math.nan
    if isinstance(v, list):
        return [restore_nan(x) for x in v]
    if isinstance(v, dict):
        return {k: restore_nan(x) for k, x in v.items()}
    return v


_NUMERIC: dict[type, frozenset[str]] = {}


def _numeric_fields(cls: type) -> frozenset[str]:
    """The fields of ``cls`` whose type holds floats (``float``, ``list[float]``, ``dict[str, float]`` ...)."""
    if cls not in _NUMERIC:
        hints = typing.get_type_hints(cls)
        _NUMERIC[cls] = frozenset(k for k, tp in hints.items() if tp is float or "float" in str(tp))
    return _NUMERIC[cls]


class Result:
    """Mixin for frozen result dataclasses.

    ``to_dict`` / ``from_dict``: a JSON-able dict and back (unknown keys are ignored, so derived keys may be
    added; ``null`` in a float field is NaN). ``save(stem)`` writes ``stem.json`` and, for the fields named in
    ``array_fields``, ``stem.npz``; ``load(stem)`` reads them back.
    """

    array_fields: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        numeric = _numeric_fields(cls)
        return cls(**{k: restore_nan(v) if k in numeric else v for k, v in d.items() if k in names})

    def save(self, stem: str | Path) -> list[Path]:
        """Write ``stem.json`` (+ ``stem.npz`` when the result has array fields). Returns the paths written."""
        stem = Path(stem)
        d = self.to_dict()
        arrays = {k: np.asarray(d.pop(k)) for k in self.array_fields}
        d["_result_type"] = type(self).__name__
        d["_arrays"] = sorted(arrays)
        paths = [stem.with_suffix(".json")]
        paths[0].write_text(jsonio.dumps(d))
        if arrays:
            paths.append(stem.with_suffix(".npz"))
            np.savez(paths[1], **arrays)
        return paths

    @classmethod
    def load(cls, stem: str | Path):
        stem = Path(stem)
        d = jsonio.read(stem.with_suffix(".json"))
        if d.get("_result_type") not in (None, cls.__name__):
            raise ValueError(f"{stem.with_suffix('.json')}: holds a {d['_result_type']}, not a {cls.__name__}")
        if d.get("_arrays"):
            with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
                for k in d["_arrays"]:
                    d[k] = z[k].tolist()
        return cls.from_dict(d)


# ------------------------------------------------------------------------------------------------ one model or pair

@dataclass(frozen=True)
class MistakesResult(Result):
    n: int
    common: int
    """Examples both models classify wrongly."""
    uncommon: int
    """Examples exactly one model classifies wrongly."""
    only_a_wrong: list[int]
    """Positions in the test set that model a gets wrong and model b right."""
    only_b_wrong: list[int]
    seed: int = 0
    """The seed of the sample of test images (``cka_examples``); 0 on the whole test split, which draws nothing."""
    args: dict = field(default_factory=dict)
    schema_version: int = 1
    unit: str = "example"
    """What a mistake is counted on: ``example`` (single-label: the arg-max class against the label) or
    ``example-label`` (multi-label: one decision per known (example, label), present where sigmoid(logit) >=
    ``threshold``). ``n``, ``common`` and ``uncommon`` count units; ``only_a_wrong`` / ``only_b_wrong`` are always
    positions of EXAMPLES (for ``example-label``: the examples with at least one such decision)."""
    threshold: float = 0.0
    """The probability at or above which a multi-label model says a label is present; 0 (none) for ``example``."""
    n_examples: int = -1
    """Examples compared (-1 in files written before multi-label targets: then ``n``)."""
    n_labels: int = 0
    """Labels per example for ``example-label`` (0 for ``example``)."""
    only_a_wrong_decisions: list[int] = field(default_factory=list)
    """``example-label`` only: row-major positions ``example * n_labels + label`` of the decisions model a gets
    wrong and model b right (empty for ``example``)."""
    only_b_wrong_decisions: list[int] = field(default_factory=list)

    array_fields = ("only_a_wrong", "only_b_wrong", "only_a_wrong_decisions", "only_b_wrong_decisions")

    @property
    def examples(self) -> int:
        return self.n if self.n_examples < 0 else self.n_examples

    @property
    def common_fraction(self) -> float:
        return self.common / self.n if self.n else float("nan")

    @property
    def uncommon_fraction(self) -> float:
        return self.uncommon / self.n if self.n else float("nan")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "common_fraction": self.common_fraction, "uncommon_fraction": self.uncommon_fraction}


@dataclass(frozen=True)
class PairMistakes(MistakesResult):
    """The mistakes of a pair of a study's runs, with the test split's ``test_index`` of the stored predictions
    (``only_a_wrong`` and ``only_b_wrong`` are positions in it)."""

    test_index: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, m: MistakesResult, test_index: list[int]) -> PairMistakes:
        return cls(**{f.name: getattr(m, f.name) for f in dataclasses.fields(m)}, test_index=list(test_index))


@dataclass(frozen=True)
class CKAResult(Result):
    layers: list[str]
    full: list[float]
    """Full-data linear CKA per layer (NaN where undefined)."""
    minibatch: list[float]
    """Minibatch linear CKA per layer, unbiased HSIC_1 averaged over minibatches of ``batch_size``."""
    batch_size: int
    n_examples: int
    n_minibatches: int
    seed: int = 0
    """The seed of the sample of test images (``cka_examples``); 0 on the whole test split, which draws nothing."""
    args: dict = field(default_factory=dict)
    schema_version: int = 1

    def to_dict(self) -> dict:
        d = super().to_dict()
        for k in ("full", "minibatch"):
            d[k] = [None if not math.isfinite(v) else v for v in d[k]]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CKAResult:
        d = dict(d)
        for k in ("full", "minibatch"):
            d[k] = [float("nan") if v is None else float(v) for v in d[k]]
        return super().from_dict(d)

    @property
    def has_full(self) -> bool:
        """Whether the full-data estimate was computed (``full=False`` leaves only the minibatch one)."""
        return any(math.isfinite(v) for v in self.full)


@dataclass(frozen=True)
class DistanceResult(Result):
    total: float
    """||theta_a - theta_b||_2 over the counted tensors."""
    per_module: dict[str, float]
    counted: list[str]
    """The parameter tensors that count (weights and biases; normalisation buffers are not parameters)."""
    excluded: dict[str, str]
    """Parameters left out, with the reason (e.g. a head whose shape differs)."""
    seed: int = 0
    """The seed of the sample of test images (``cka_examples``); 0 on the whole test split, which draws nothing."""
    args: dict = field(default_factory=dict)
    schema_version: int = 1


@dataclass(frozen=True)
class BarrierResult(Result):
    lambdas: list[float]
    loss: list[float]
    error: list[float]
    barrier_error: float
    barrier_loss: float
    bn_policy: str
    """``exact`` for nets without batch statistics, else the policy used."""
    n_examples: int
    seed: int = 0
    """Draws the training examples on which ``recompute`` re-estimates BatchNorm statistics (balanced over the
    classes); no effect for the other policies and for nets without batch statistics."""
    args: dict = field(default_factory=dict)
    schema_version: int = 2
    error_metric: str = "acc"
    """What ``error`` and ``barrier_error`` are one minus: ``acc`` (top-1 accuracy: the test error) or ``auc``
    (multi-label: 1 - the mean AUC over labels, computed on all of the split's logits at each point)."""
    auc_excluded: list[str] = field(default_factory=list)
    """``auc`` only: the labels left out of the mean AUC (no known positive or no known negative example in the
    split; the same at every point)."""


@dataclass(frozen=True)
class CriticalityResult(Result):
    modules: list[str]
    criticality: list[float]
    """Per module: min over a of a^2 d^2 / s^2 at the boundary estimate s (the bracket's midpoint); 0 where the
    module can be fully rewound (a = 0) within the threshold or did not move (d = 0, see ``degenerate``); inf
    where no a is feasible."""
    best_a: list[float]
    best_s: list[float]
    """The boundary estimate (bracket midpoint) at ``best_a``; NaN where no a is feasible."""
    distance: list[float]
    """||theta_i^F - theta_i^0||_F per module."""
    alphas: list[float]
    rewind_loss: list[list[float]]
    """[module][a]: training loss with the module at theta_i^a and no noise (the rewinding curve)."""
    rewind_acc: list[list[float]]
    """[module][a]: the training accuracy on the rewinding curve; the mean AUC for multi-label (``metric``)."""
    boundary_s: list[list[float]]
    """[module][a]: the largest feasible noise scale s at that a, as the midpoint of its bracket (0: infeasible
    even without noise). The feasible region of the (a, s) plane per module: the picture behind the criticality."""
    eps: float
    final_loss: float
    tolerance: float
    samples: int
    seed: int
    method: str
    """``bisection`` (relative ``s_tol``) or ``grid``."""
    boundary_width: list[list[float]] = field(default_factory=list)
    """[module][a]: the width hi - lo of the bracket of ``boundary_s`` (0 where it is exact: s_max feasible, or
    infeasible at s = 0)."""
    best_s_low: list[float] = field(default_factory=list)
    """Lower end of the bracket at ``best_a`` (feasible; 0 when only s = 0 was found feasible)."""
    best_s_high: list[float] = field(default_factory=list)
    """Upper end of the bracket at ``best_a`` (infeasible, or s_max)."""
    criticality_low: list[float] = field(default_factory=list)
    """min over a of a^2 d^2 / hi^2: a lower bound of the criticality (over these a) given the brackets."""
    criticality_high: list[float] = field(default_factory=list)
    """min over a of a^2 d^2 / lo^2: an upper bound (inf where lo = 0 at every a with a > 0)."""
    degenerate: list[bool] = field(default_factory=list)
    """True where d = 0: the module did not move between theta^0 and theta^F, so its criticality 0 is trivial."""
    args: dict = field(default_factory=dict)
    schema_version: int = 2
    metric: str = "acc"
    """What ``rewind_acc`` holds: ``acc`` (accuracy) or ``auc`` (multi-label: the mean AUC). The loss (``eps``,
    ``final_loss``, ``rewind_loss``) is the cross-entropy, or for multi-label the binary cross-entropy per label
    averaged over an example's known labels."""
    layers_without_parameters: list[str] = field(default_factory=list)
    """The configured layers (config ``model.layers``) that hold no parameters (a ReLU, a pooling), so that
    ``modules`` are other modules than those layers; empty in files written before it was recorded."""
    note: str = ""
    """Why ``modules`` differ from the configured layers (naming both); empty when they do not."""

    array_fields = ("rewind_loss", "rewind_acc", "boundary_s", "boundary_width")


@dataclass(frozen=True)
class FlatnessResult(Result):
    loss: float
    """Mean training loss at the model (over the examples used)."""
    top_eigenvalue: float
    """Largest (algebraic) eigenvalue of the Hessian of that loss (the sharpness); negative only where the Hessian
    has no positive eigenvalue. Before schema 2 this was the largest-magnitude eigenvalue."""
    iterations: int
    converged: bool
    tolerance: float
    radii: list[float]
    """Relative perturbation sizes r."""
    loss_increase: list[float]
    """Mean over ``samples`` draws of L(theta + delta) - L(theta), per r."""
    loss_increase_std: list[float]
    samples: int
    n_examples: int
    seed: int = 0
    args: dict = field(default_factory=dict)
    schema_version: int = 2


@dataclass(frozen=True)
class StabilityResult(Result):
    lr: float
    ks: list[float]
    loss: float
    grad_norm: float
    loss_change: list[float]
    """L(theta - eta k g) - L(theta), per k."""
    grad_change: list[float]
    """||g(theta - eta k g) - g||, per k."""
    loss_lipschitz: list[float]
    """|loss change| / ||eta k g||. (Losses and gradients in float64 since schema 2.)"""
    grad_lipschitz: list[float]
    """||grad change|| / ||eta k g||: the local smoothness (beta) along the gradient."""
    n_examples: int
    seed: int = 0
    args: dict = field(default_factory=dict)
    schema_version: int = 2


@dataclass(frozen=True)
class StabilityPoint(StabilityResult):
    """:class:`StabilityResult` at one saved point of a run's training (``epoch``; 0: its start)."""

    epoch: float = 0.0

    @classmethod
    def of(cls, r: StabilityResult, epoch: float) -> StabilityPoint:
        return cls(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)}, epoch=float(epoch))


@dataclass(frozen=True)
class StabilityCurve(Result):
    """Gradient stability of one run at each of its saved points, in the order of training."""

    points: list[StabilityPoint]

    def to_dict(self) -> dict:
        return {"points": [p.to_dict() for p in self.points]}

    @classmethod
    def from_dict(cls, d: dict) -> StabilityCurve:
        return cls([StabilityPoint.from_dict(p) for p in d["points"]])


@dataclass(frozen=True)
class PrincipalGradientResult(Result):
    weights: list[str]
    """Parameter names of the weight matrices (ndim >= 2)."""
    top_k: list[int]
    fraction: list[list[float]]
    """[weight][k]: ||U_k^T G V_k||_F^2 / ||G||_F^2."""
    random_fraction: list[list[float]]
    """[weight][k]: the same for an isotropic random gradient, k^2 / (out x rest) (the chance level)."""
    grad_norm: list[float]
    loss: float
    n_examples: int
    seed: int = 0
    args: dict = field(default_factory=dict)
    schema_version: int = 2
    modules: list[str] = field(default_factory=list)
    """[weight]: the module it belongs to (the model's ``module_of``; ``head`` for the classifier), where known."""


@dataclass(frozen=True)
class TransferabilityResult(Result):
    leep: float
    logme: float
    h_score: float
    mmd2_rbf: float
    """Between P's penultimate features of source and target images (input similarity; lower: more similar).
    NaN when no source images were given (see ``note``)."""
    mmd2_linear: float
    bandwidth: float
    n_target: int
    n_source: int
    feature_layer: str
    seed: int = 0
    args: dict = field(default_factory=dict)
    note: str = ""
    """Why a score is missing (e.g. no source images: no MMD), else empty."""
    schema_version: int = 2
    not_applicable: dict[str, str] = field(default_factory=dict)
    """Score name -> why it is NaN by definition for this target (e.g. LEEP and H-score of a multi-label target:
    ``not applicable to multi-label targets``); empty for single-label targets."""
    logme_per_label: list[float] = field(default_factory=list)
    """Multi-label only: LogME of each label as a two-class problem on its known examples (NaN for a label
    without a known positive or negative example); ``logme`` is their mean over the defined ones. Empty for
    single-label targets."""
    logme_excluded: list[int] = field(default_factory=list)
    """Multi-label only: the labels left out of ``logme`` (no known positive or no known negative example)."""


@dataclass(frozen=True)
class DeviationResult(Result):
    """Relative weight deviation ||W - W0||_F / ||W0||_F per module of one run along its training (its history)."""

    epochs: list[float]
    modules: list[str]
    deviation: list[list[float]]
    """[epoch][module] (NaN where the history has no value)."""

    def body_mean(self, epoch: int = -1) -> float:
        """The mean over the modules other than the head, at ``epoch`` (default the last); NaN without any."""
        if not self.deviation:
            return math.nan
        v = [x for x, m in zip(self.deviation[epoch], self.modules, strict=False)
             if not m.startswith("head") and math.isfinite(x)]
        return float(np.mean(v)) if v else math.nan
