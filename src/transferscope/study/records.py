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
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from .. import jsonio
from .arms import PT, RIT
from .summary import ArmCell, SeedResult

__all__ = ["Result", "MistakesResult", "PairMistakes", "CKAResult", "DistanceResult", "BarrierResult",
           "CriticalityResult", "FlatnessResult", "StabilityResult", "StabilityPoint", "StabilityCurve",
           "PrincipalGradientResult", "TransferabilityResult", "DeviationResult", "PairRow", "PairsResult",
           "MistakesPairs", "CKAPairs", "DistancePairs", "BarrierPairs", "ModelRow", "ModelsResult",
           "CriticalityModels", "FlatnessModels", "DeviationModels", "StabilityModels", "PrincipalModels",
           "TransferRow", "TransferResult", "BasinRow", "BasinResult", "ScoresResult", "Correlation", "RelatePoint",
           "RelateResult", "RESULT_TYPES", "result_from_dict"]


def _num(x: Any) -> float:
    """A float field read from JSON: ``null`` (no number, or NaN in a file written before jsonio) is NaN."""
    return math.nan if x is None else float(x)


def _restore(v: Any) -> Any:
    """A ``null`` in a numeric field of a file written before :mod:`transferscope.jsonio`: NaN."""
    if v is None:
        return math.nan
    if isinstance(v, list):
        return [_restore(x) for x in v]
    if isinstance(v, dict):
        return {k: _restore(x) for k, x in v.items()}
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
        return cls(**{k: _restore(v) if k in numeric else v for k, v in d.items() if k in names})

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
    """No randomness: recorded for the common result contract."""
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
    """No randomness: recorded for the common result contract."""
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
    """No randomness: recorded for the common result contract."""
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


# ------------------------------------------------------------------------------------------------ study level

R = TypeVar("R")


@dataclass(frozen=True)
class PairRow(Generic[R]):
    """One pair of a study's runs and its result. ``kind``: e.g. ``P-T/P-T`` (see :mod:`transferscope.study.arms`);
    ``runs``: model a's and model b's run; ``which_b``: which weights of run b (``weights``, or ``init``: its start)."""

    kind: str
    seeds: tuple[int, int]
    runs: tuple[str, str]
    which_b: str
    result: R

    def to_dict(self) -> dict:
        return {"kind": self.kind, "seeds": list(self.seeds), "runs": list(self.runs), "which_b": self.which_b,
                "result": self.result.to_dict()}  # type: ignore[attr-defined]

    @classmethod
    def of(cls, pair: dict, result: R) -> PairRow[R]:
        """The row of a job's pair (a dict of the job's parameters) with its result."""
        return cls(pair["kind"], tuple(int(s) for s in pair["seeds"]), tuple(pair["runs"]),  # type: ignore[arg-type]
                   pair.get("which_b", "weights"), result)

    @classmethod
    def from_dict(cls, d: dict, result_type: type) -> PairRow:
        return cls.of(d, result_type.from_dict(d["result"]))


@dataclass(frozen=True)
class PairsResult(Generic[R]):
    """An analysis of pairs of runs on one target: one :class:`PairRow` per pair, in the order of the job."""

    pairs: tuple[PairRow[R], ...]

    inner: ClassVar[type] = Result
    """The type of each pair's result (set by each subclass)."""

    def of_kind(self, kind: str) -> tuple[PairRow[R], ...]:
        return tuple(p for p in self.pairs if p.kind == kind)

    def first(self, kind: str) -> R | None:
        """The result of the first pair of ``kind`` (the lowest seeds), or None."""
        return next((p.result for p in self.pairs if p.kind == kind), None)

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(p.kind for p in self.pairs))

    def to_dict(self) -> dict:
        return {"pairs": [p.to_dict() for p in self.pairs]}

    @classmethod
    def from_dict(cls, d: dict):
        return cls(tuple(PairRow.from_dict(p, cls.inner) for p in d["pairs"]))


@dataclass(frozen=True)
class MistakesPairs(PairsResult[PairMistakes]):
    inner: ClassVar[type] = PairMistakes


@dataclass(frozen=True)
class CKAPairs(PairsResult[CKAResult]):
    inner: ClassVar[type] = CKAResult


@dataclass(frozen=True)
class DistancePairs(PairsResult[DistanceResult]):
    inner: ClassVar[type] = DistanceResult


@dataclass(frozen=True)
class BarrierPairs(PairsResult[BarrierResult]):
    inner: ClassVar[type] = BarrierResult


@dataclass(frozen=True)
class ModelRow(Generic[R]):
    """One run of an arm (its seed and run id) and its result."""

    arm: str
    seed: int
    run: str
    result: R

    def to_dict(self) -> dict:
        return {"arm": self.arm, "seed": self.seed, "run": self.run,
                "result": self.result.to_dict()}  # type: ignore[attr-defined]

    @classmethod
    def of(cls, model: dict, result: R) -> ModelRow[R]:
        """The row of a job's model (a dict of the job's parameters) with its result."""
        return cls(model["arm"], int(model["seed"]), model["run"], result)

    @classmethod
    def from_dict(cls, d: dict, result_type: type) -> ModelRow:
        return cls.of(d, result_type.from_dict(d["result"]))


@dataclass(frozen=True)
class ModelsResult(Generic[R]):
    """An analysis of single runs on one target: one :class:`ModelRow` per run."""

    models: tuple[ModelRow[R], ...]

    inner: ClassVar[type] = Result

    def of_arm(self, arm: str) -> tuple[ModelRow[R], ...]:
        return tuple(m for m in self.models if m.arm == arm)

    def first(self, arm: str) -> R | None:
        """The result of the arm's lowest seed, or None."""
        rows = sorted(self.of_arm(arm), key=lambda m: m.seed)
        return rows[0].result if rows else None

    def arms(self) -> list[str]:
        return list(dict.fromkeys(m.arm for m in self.models))

    def to_dict(self) -> dict:
        return {"models": [m.to_dict() for m in self.models]}

    @classmethod
    def from_dict(cls, d: dict):
        return cls(tuple(ModelRow.from_dict(m, cls.inner) for m in d["models"]))


@dataclass(frozen=True)
class CriticalityModels(ModelsResult[CriticalityResult]):
    inner: ClassVar[type] = CriticalityResult


@dataclass(frozen=True)
class FlatnessModels(ModelsResult[FlatnessResult]):
    inner: ClassVar[type] = FlatnessResult


@dataclass(frozen=True)
class DeviationModels(ModelsResult[DeviationResult]):
    inner: ClassVar[type] = DeviationResult


@dataclass(frozen=True)
class StabilityModels(ModelsResult[StabilityCurve]):
    inner: ClassVar[type] = StabilityCurve


@dataclass(frozen=True)
class PrincipalModels(ModelsResult[PrincipalGradientResult]):
    inner: ClassVar[type] = PrincipalGradientResult


_ARM_FIGURES = ("n", "acc_mean", "acc_std", "speed_mean_acc_k", "speed_steps_to_frac")


def _cell_to_dict(arm: str, c: ArmCell) -> dict:
    return {f"{arm}_{k}": getattr(c, k) for k in _ARM_FIGURES} | {f"{arm}_per_seed": [s._asdict() for s in c.per_seed]}


def _cell_from_dict(arm: str, d: dict) -> ArmCell:
    per = tuple(SeedResult(int(s["seed"]), *(_num(s[k]) for k in SeedResult._fields[1:]))
                for s in d.get(f"{arm}_per_seed", []))
    return ArmCell(int(d[f"{arm}_n"]), *(_num(d[f"{arm}_{k}"]) for k in _ARM_FIGURES[1:]), per)


@dataclass(frozen=True)
class TransferRow:
    """One target and block size: each arm's figures (over its finished seeds, and per seed) and the gain."""

    target: str
    block_size: int
    gain: float
    """P-T's mean test accuracy minus RI-T's."""
    pt: ArmCell
    rit: ArmCell
    metric: str = "acc"
    """What the figures are in: ``acc`` (test accuracy; speed in training accuracy) or ``auc`` (mean AUC over the
    labels of a multi-label target; speed in the per-epoch mean AUC on a fixed training subset)."""

    def arm(self, arm: str) -> ArmCell:
        return {PT: self.pt, RIT: self.rit}[arm]

    def to_dict(self) -> dict:
        # single-label rows are written as before the metric existed (their cached files keep their bytes)
        return ({"target": self.target, "block_size": self.block_size, "gain": self.gain}
                | ({"metric": self.metric} if self.metric != "acc" else {})
                | _cell_to_dict(PT, self.pt) | _cell_to_dict(RIT, self.rit))

    @classmethod
    def from_dict(cls, d: dict) -> TransferRow:
        return cls(d["target"], int(d["block_size"]), _num(d["gain"]), _cell_from_dict(PT, d), _cell_from_dict(RIT, d),
                   str(d.get("metric", "acc")))


@dataclass(frozen=True)
class TransferResult:
    """Test accuracy and optimisation speed of P-T and RI-T per target and block size (``transfer/all``)."""

    rows: tuple[TransferRow, ...]
    speed_k: int
    """Speed (a) is the mean training accuracy over the first ``speed_k`` epochs."""
    speed_fraction: float
    """Speed (b) is the steps to reach this fraction of the final training accuracy."""

    def row(self, target: str, block_size: int) -> TransferRow | None:
        return next((r for r in self.rows if r.target == target and r.block_size == block_size), None)

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows], "speed_k": self.speed_k,
                "speed_fraction": self.speed_fraction}

    @classmethod
    def from_dict(cls, d: dict) -> TransferResult:
        return cls(tuple(TransferRow.from_dict(r) for r in d["rows"]), int(d["speed_k"]), _num(d["speed_fraction"]))


@dataclass(frozen=True)
class BasinRow:
    """A P-T run from pre-training checkpoint ``checkpoint`` (epochs): its figures and the barrier to the P-T run
    of the same seed from the final checkpoint (0 for that run itself)."""

    checkpoint: float
    seed: int
    run: str
    test_acc: float
    speed_mean_acc_k: float
    speed_steps_to_frac: float
    barrier_error: float
    barrier_loss: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BasinRow:
        return cls(_num(d["checkpoint"]), int(d["seed"]), d["run"], *(_num(d.get(k)) for k in (
            "test_acc", "speed_mean_acc_k", "speed_steps_to_frac", "barrier_error", "barrier_loss")))


@dataclass(frozen=True)
class BasinResult:
    """The checkpoint sweep of one target (``basin/<target>``)."""

    rows: tuple[BasinRow, ...]
    block_size: int
    final_checkpoint: float

    def checkpoints(self) -> list[float]:
        return sorted({r.checkpoint for r in self.rows})

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows], "block_size": self.block_size,
                "final_checkpoint": self.final_checkpoint}

    @classmethod
    def from_dict(cls, d: dict) -> BasinResult:
        rows = tuple(BasinRow.from_dict(r) for r in d["rows"])
        final = _num(d["final_checkpoint"]) if "final_checkpoint" in d else \
            max((r.checkpoint for r in rows), default=math.nan)
        return cls(rows, int(d["block_size"]), final)


@dataclass(frozen=True)
class ScoresResult:
    """Transferability scores of P on one target, per block size (``scores/<target>``)."""

    blocks: dict[int, TransferabilityResult]

    def at(self, block_size: int) -> TransferabilityResult | None:
        return self.blocks.get(int(block_size))

    def to_dict(self) -> dict:
        return {"blocks": {str(b): r.to_dict() for b, r in self.blocks.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> ScoresResult:
        return cls({int(b): TransferabilityResult.from_dict(r) for b, r in d["blocks"].items()})


@dataclass(frozen=True)
class Correlation:
    """Spearman's rho with a bootstrap interval over ``n`` points (NaN with fewer than three)."""

    rho: float
    low: float
    high: float
    n: int
    p_value: float
    confidence: float | None = None
    """The interval's level; None where no interval was computed."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.confidence is None:
            del d["confidence"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Correlation:
        return cls(_num(d["rho"]), _num(d["low"]), _num(d["high"]), int(d["n"]), _num(d["p_value"]),
                   None if d.get("confidence") is None else float(d["confidence"]))


SCORE_NAMES = ("leep", "logme", "h_score", "mmd2_rbf")
"""The scores of :class:`TransferabilityResult` that are related to the gains."""


@dataclass(frozen=True)
class RelatePoint:
    """One target and block size: P's scores and the measured gains (accuracy, and speed (a))."""

    target: str
    block_size: int
    gain: float
    speed_gain: float
    leep: float
    logme: float
    h_score: float
    mmd2_rbf: float

    def score(self, name: str) -> float:
        if name not in SCORE_NAMES:
            raise KeyError(f"score {name!r}: one of {', '.join(SCORE_NAMES)}")
        return getattr(self, name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RelatePoint:
        return cls(d["target"], int(d["block_size"]), *(_num(d[k]) for k in ("gain", "speed_gain") + SCORE_NAMES))


@dataclass(frozen=True)
class RelateResult:
    """Rank correlations of the scores with the gains over every target and block size (``relate/all``);
    ``correlations`` by ``<score>/<gain>``, e.g. ``leep/gain``."""

    points: tuple[RelatePoint, ...]
    correlations: dict[str, Correlation]
    note: str = ""

    def to_dict(self) -> dict:
        return {"points": [p.to_dict() for p in self.points],
                "correlations": {k: c.to_dict() for k, c in self.correlations.items()}, "note": self.note}

    @classmethod
    def from_dict(cls, d: dict) -> RelateResult:
        return cls(tuple(RelatePoint.from_dict(p) for p in d["points"]),
                   {k: Correlation.from_dict(c) for k, c in d["correlations"].items()}, d.get("note", ""))


RESULT_TYPES: dict[str, type] = {
    "transfer": TransferResult, "mistakes": MistakesPairs, "cka": CKAPairs, "distance": DistancePairs,
    "barrier": BarrierPairs, "criticality": CriticalityModels, "basin": BasinResult, "flatness": FlatnessModels,
    "deviation": DeviationModels, "stability": StabilityModels, "principal": PrincipalModels,
    "scores": ScoresResult, "relate": RelateResult,
}
"""Analysis name -> the type of its study-level result (what ``analyses/<key>.json`` holds under ``result``)."""


def result_from_dict(name: str, d: dict) -> Any:
    """The record of analysis ``name`` (or ``name/target``) from its dict. Raises ``KeyError`` for an unknown
    analysis, and ``KeyError``/``TypeError``/``ValueError`` for a dict of another shape (e.g. an older file)."""
    return RESULT_TYPES[name.split("/", 1)[0]].from_dict(d)
