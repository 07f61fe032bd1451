"""The study-level records, torch-free: what one ``analyses/<key>.json`` holds, and an arm's figures over seeds.

* :class:`SeedResult` and :class:`ArmCell`: one seed's figures of an arm, and an arm's mean/std over seeds;
* the result of an analysis over a study's target: :class:`PairsResult` (mistakes, CKA, distance, barrier: one
  :class:`PairRow` per pair), :class:`ModelsResult` (criticality, flatness, deviation, stability, principal: one
  :class:`ModelRow` per model), :class:`TransferResult`, :class:`BasinResult`, :class:`ScoresResult` and
  :class:`RelateResult`. :data:`RESULT_TYPES` maps each analysis name to its type.

The one-model results these rows carry are in :mod:`transferscope.vocab.results` (re-exported here, so that one
import reads any record). Every record has ``to_dict()`` (the JSON-able dict written under ``"result"``) and
``from_dict()`` (its inverse); a ``null`` in a float field (a file written before :mod:`transferscope.jsonio`
encoded non-finite floats) is read as NaN. This module imports neither torch nor anything that does: the
report and the claims read these records.

A record's ``schema_version`` is bumped here when its fields change meaning.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from .arms import PT, RIT
from .results import (
    BarrierResult,
    CKAResult,
    CriticalityResult,
    DeviationResult,
    DistanceResult,
    FlatnessResult,
    MistakesResult,
    PairMistakes,
    PrincipalGradientResult,
    Result,
    StabilityCurve,
    StabilityPoint,
    StabilityResult,
    TransferabilityResult,
    read_float,
)

__all__ = ["Result", "MistakesResult", "PairMistakes", "CKAResult", "DistanceResult", "BarrierResult", "CriticalityResult",
           "FlatnessResult", "StabilityResult", "StabilityPoint", "StabilityCurve", "PrincipalGradientResult",
           "TransferabilityResult", "DeviationResult", "SeedResult", "ArmCell", "PairRow", "PairsResult", "MistakesPairs",
           "CKAPairs", "DistancePairs", "BarrierPairs", "ModelRow", "ModelsResult", "CriticalityModels", "FlatnessModels",
           "DeviationModels", "StabilityModels", "PrincipalModels", "TransferRow", "TransferResult", "BasinRow",
           "BasinResult", "ScoresResult", "scores_at", "Correlation", "RelatePoint", "RelateResult", "RESULT_TYPES",
           "result_from_dict"]


class SeedResult(NamedTuple):
    """One seed's figures of an arm (NaN where the run recorded none), in the run's metric (``test_acc`` is the
    mean AUC of a multi-label run)."""

    seed: int
    test_acc: float
    speed_mean_acc_k: float
    speed_steps_to_frac: float


@dataclass(frozen=True)
class ArmCell:
    n: int
    acc_mean: float
    acc_std: float
    speed_mean_acc_k: float
    speed_steps_to_frac: float
    per_seed: tuple[SeedResult, ...] = ()
    """Each finished seed's figures, by seed, for statistics over seeds."""


# ------------------------------------------------------------------------------------------------ study level

R = TypeVar("R")


@dataclass(frozen=True)
class PairRow(Generic[R]):
    """One pair of a study's runs and its result. ``kind``: e.g. ``P-T/P-T`` (see :mod:`transferscope.vocab.arms`);
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
    per = tuple(SeedResult(int(s["seed"]), *(read_float(s[k]) for k in SeedResult._fields[1:]))
                for s in d.get(f"{arm}_per_seed", []))
    return ArmCell(int(d[f"{arm}_n"]), *(read_float(d[f"{arm}_{k}"]) for k in _ARM_FIGURES[1:]), per)


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
        return cls(d["target"], int(d["block_size"]), read_float(d["gain"]), _cell_from_dict(PT, d), _cell_from_dict(RIT, d),
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
        return cls(tuple(TransferRow.from_dict(r) for r in d["rows"]), int(d["speed_k"]), read_float(d["speed_fraction"]))


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
        return cls(read_float(d["checkpoint"]), int(d["seed"]), d["run"], *(read_float(d.get(k)) for k in (
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
        final = read_float(d["final_checkpoint"]) if "final_checkpoint" in d else \
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


def scores_at(results: dict[str, Any], target: str, block_size: int) -> TransferabilityResult | None:
    """The transferability scores of P on ``target`` at ``block_size`` from a study's results by name
    (``scores/<target>``), or None."""
    sc: ScoresResult | None = results.get(f"scores/{target}")
    return sc.at(block_size) if sc else None


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
        return cls(read_float(d["rho"]), read_float(d["low"]), read_float(d["high"]), int(d["n"]), read_float(d["p_value"]),
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
        return cls(d["target"], int(d["block_size"]), *(read_float(d[k]) for k in ("gain", "speed_gain") + SCORE_NAMES))


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
