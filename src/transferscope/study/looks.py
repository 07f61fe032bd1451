"""The record of a study that decides in rounds (``decide.json``) and the look its verdicts are judged at.

``decide.json`` holds the design, fixed before any result (looks, spending and the level of each look, the seed
limit, the budget), and one entry per round: the seeds it added per cell, what it planned and why, the runs it
trained, its minutes, and, once judged, its counts of decided effects; and why the study stopped. Each judged look
keeps its verdicts in ``analyses/looks/look-<k>.json``: the next look reads the effects decided there
(:func:`look_state`), so that a decided effect stays decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..claims import Effect, Verdict
from ..claims.sequential import effects_by_key, spending_levels
from ..claims.stats import ALPHA
from ..config import ConfigError
from ..jsonio import loads
from ..store import Store, atomic_write_text, dumps

__all__ = ["RECORD", "LookState", "Round", "Record", "read_record", "write_record", "look_state", "look_file",
           "write_look", "design_of"]

RECORD = "decide.json"


@dataclass
class Round:
    look: int
    added: list[dict] = field(default_factory=list)
    """The cells this round grew: ``{arm, target, block_size, checkpoint, seeds}`` (the first round: none)."""
    plan: dict = field(default_factory=dict)
    """What was planned and why: the effects it is for, the cells, runs, the estimated seconds."""
    runs_trained: int = 0
    train_s: float = 0.0
    analysis_s: float = 0.0
    analysis_job_s: float = 0.0
    """The compute seconds of the analysis jobs this round computed (not those it found cached): over its
    ``analysis_s`` of wall time, how many jobs ran side by side."""
    judged: bool = False
    decisive: int = 0
    """Effects decisive after this look (either way), under the primary P."""
    effects: int = 0
    decided_here: list[str] = field(default_factory=list)
    """The effects first decisive at this look: ``claim / target / name``."""

    @property
    def seconds(self) -> float:
        return self.train_s + self.analysis_s


@dataclass
class Record:
    design: dict
    rounds: list[Round] = field(default_factory=list)
    stopped: str = ""
    """Why the study stopped (empty: it goes on)."""

    @property
    def levels(self) -> tuple[float, ...]:
        return tuple(self.design["levels"])

    @property
    def looks(self) -> int:
        return int(self.design["looks"])

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rounds)

    def to_dict(self) -> dict[str, Any]:
        return {"design": self.design, "rounds": [vars(r) for r in self.rounds], "stopped": self.stopped}


def _path(store: Store) -> Path:
    return store.root / RECORD


def read_record(store: Store) -> Record | None:
    """The folder's ``decide.json``; None when the study does not decide in rounds. A damaged file is a
    :class:`ConfigError` naming it."""
    path = _path(store)
    if not path.is_file():
        return None
    try:
        d = loads(path.read_text(encoding="utf-8"))
        rounds = [Round(**{k: v for k, v in r.items() if k in Round.__dataclass_fields__}) for r in d["rounds"]]
        rec = Record(dict(d["design"]), rounds, str(d.get("stopped", "")))
        if not rec.levels:
            raise ValueError("the design names no levels")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: not a readable record of a study that decides in rounds ({type(e).__name__}: "
                          f"{e}); restore it from a copy, or start the study again in a new results folder") from None
    return rec


def write_record(store: Store, rec: Record) -> None:
    atomic_write_text(_path(store), dumps(rec.to_dict()))


@dataclass(frozen=True)
class LookState:
    """The look a study's verdicts are judged at: its number, the one-sided level it spends, and per pre-trained
    model (by pre-training seed) the effects of the previous look."""

    look: int
    looks: int
    alpha: float
    spending: str
    levels: tuple[float, ...]
    earlier: dict[int, dict[tuple[str, str, str], Effect]] = field(default_factory=dict)

    def options(self, pretrain_seed: int) -> dict[str, Any]:
        """What :func:`transferscope.claims.judge` takes for the verdicts under one P."""
        return {"alpha": self.alpha, "look": self.look, "earlier": self.earlier.get(pretrain_seed)}

    def rule(self) -> dict[str, Any]:
        return {"look": self.look, "looks": self.looks, "spending": self.spending, "levels": list(self.levels),
                "alpha": self.alpha,
                "rule": "each look runs Holm's correction over the whole family at its own one-sided level; the "
                        "levels add up to 0.025 per direction, so by the union bound the chance of any wrong "
                        "decisive outcome at any look is at most 5%; an effect decisive at a look keeps that outcome"}


def look_file(store: Store, look: int) -> Path:
    return store.root / "analyses" / "looks" / f"look-{look}.json"


def write_look(store: Store, state: LookState, by_pretrain: dict[int, list[Verdict]]) -> Path:
    path = look_file(store, state.look)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dumps({"look": state.look, "alpha": state.alpha,
                                   "verdicts": {str(s): [v.to_dict() for v in vs] for s, vs in by_pretrain.items()}}))
    return path


def _read_look(store: Store, look: int) -> dict[int, dict]:
    path = look_file(store, look)
    try:
        d = loads(path.read_text(encoding="utf-8"))
        return {int(s): effects_by_key([Verdict.from_dict(v) for v in vs]) for s, vs in d["verdicts"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: the verdicts of look {look} cannot be read ({type(e).__name__}: {e}); the next "
                          "look needs them to keep what that look decided") from None


def look_state(store: Store) -> LookState | None:
    """The look of the folder's current round (the last in ``decide.json``), with the effects of the previous
    look; None for a study of fixed seeds (one look at the full level)."""
    rec = read_record(store)
    if rec is None or not rec.rounds:
        return None
    k = rec.rounds[-1].look
    levels = rec.levels
    if not 1 <= k <= len(levels):
        raise ConfigError(f"{_path(store)}: round {k} is beyond the design's {len(levels)} looks")
    earlier = _read_look(store, k - 1) if k > 1 else {}
    return LookState(k, len(levels), levels[k - 1], str(rec.design.get("spending", "")), levels, earlier)


def design_of(looks: int, spending: str, max_seeds: int, budget: str, budget_s: float, seeds: list[int]) -> dict:
    """The design ``decide.json`` fixes, with the level of each look."""
    return {"looks": looks, "spending": spending, "levels": list(spending_levels(looks, spending)),
            "alpha_per_direction": ALPHA, "max_seeds": max_seeds, "budget": budget,
            "budget_s": budget_s if math.isfinite(budget_s) else None, "initial_seeds": list(seeds)}
