"""Verdicts under several pre-trained models P: does a claim's outcome depend on the P it is conditional on?

Every P-T model descends from one P, so a verdict (:func:`transferscope.claims.judge`) is conditional on that P.
A study with several P (``pretrain_seeds``) judges every claim once per P; this module puts the verdicts side by
side, per claim:

* ``holds`` when it holds under every P, ``does not hold`` when it does not hold under every P (each verdict at
  its own level: an intersection-union test, so no further correction is needed);
* ``depends on P`` when it holds under one P and does not hold under another: the pre-training seed decides the
  outcome, and no verdict free of P can be given;
* ``unreliable`` when it is unreliable under every P (decisive only on runs that did not fit);
* ``not measured`` when it was measured under no P; ``inconclusive`` otherwise (some P undecided).

With one P the outcome is that P's, and the sentence says it rests on one pre-trained model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import Verdict
from .stats import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, UNRELIABLE

__all__ = ["DEPENDS", "Across", "across_pretrained"]

DEPENDS = "depends on P"
"""The claim holds under one pre-trained model and does not hold under another."""


@dataclass(frozen=True)
class Across:
    """One claim's outcomes under each pre-trained model (by pre-training seed) and what they say together."""

    claim: str
    outcomes: dict[int, str] = field(default_factory=dict)
    outcome: str = NOT_MEASURED
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "outcomes": {str(k): v for k, v in self.outcomes.items()},
                "outcome": self.outcome, "why": self.why}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Across:
        return cls(d["claim"], {int(k): v for k, v in d["outcomes"].items()}, d["outcome"], d["why"])


def _seeds(seeds: Sequence[int]) -> str:
    return ", ".join(map(str, seeds))


def across_pretrained(by_seed: Mapping[int, Sequence[Verdict]]) -> list[Across]:
    """Per claim (in the order of the first P's verdicts), its outcome under each P and together."""
    if not by_seed:
        return []
    order = [v.claim for v in next(iter(by_seed.values()))]
    out = []
    for claim in order:
        outcomes = {seed: next((v.outcome for v in vs if v.claim == claim), NOT_MEASURED)
                    for seed, vs in by_seed.items()}
        k = len(outcomes)
        where = {o: [s for s, x in outcomes.items() if x == o]
                 for o in (HOLDS, FAILS, INCONCLUSIVE, UNRELIABLE, NOT_MEASURED)}
        if k == 1:
            (seed, only), = outcomes.items()
            out.append(Across(claim, outcomes, only, f"{only} under the one pre-trained model (seed {seed}); a second "
                                                     "P would show whether it depends on it"))
        elif where[HOLDS] and where[FAILS]:
            out.append(Across(claim, outcomes, DEPENDS, f"holds under P of seed {_seeds(where[HOLDS])} and does not "
                                                        f"hold under P of seed {_seeds(where[FAILS])}"))
        elif len(where[HOLDS]) == k:
            out.append(Across(claim, outcomes, HOLDS, f"holds under each of the {k} pre-trained models"))
        elif len(where[FAILS]) == k:
            out.append(Across(claim, outcomes, FAILS, f"does not hold under any of the {k} pre-trained models"))
        elif len(where[UNRELIABLE]) == k:
            out.append(Across(claim, outcomes, UNRELIABLE, f"unreliable under each of the {k} pre-trained models"))
        elif len(where[NOT_MEASURED]) == k:
            out.append(Across(claim, outcomes, NOT_MEASURED, f"not measured under any of the {k} pre-trained models"))
        else:
            parts = [f"{o} under P of seed {_seeds(s)}" for o, s in where.items() if s]
            out.append(Across(claim, outcomes, INCONCLUSIVE, "; ".join(parts)))
    return out
