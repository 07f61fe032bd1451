"""The four models of Neyshabur et al. and the pairs the analyses compare: spelled once, here.

* ``P``: pre-trained on the source; ``RI``: a random initialisation (the ``init`` weights of an RI-T run);
* ``P-T``: P fine-tuned on a target; ``RI-T``: trained on a target from RI.

Pairs know the seeds of their two models, so that statistics over pairs can resample seeds, not pairs:

* within an arm (``P-T/P-T``, ``RI-T/RI-T``): every pair of distinct seeds;
* across arms (``P-T/RI-T``): every (P-T seed, RI-T seed), all n x m;
* to the start (``P-T/P``, ``RI-T/RI``): each trained model with the weights it started from (one seed).

This module imports no torch: the claims and the report use its names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations, product
from typing import Any

__all__ = ["P", "RI", "PT", "RIT", "TRAINED", "PT_PT", "RIT_RIT", "PT_RIT", "PT_P", "RIT_RI", "P_PT", "Pair",
           "within", "across", "to_start", "pairs_of"]

P, RI, PT, RIT = "P", "RI", "P-T", "RI-T"
TRAINED = (PT, RIT)
"""The arms trained on a target, with several seeds."""
PT_PT, RIT_RIT, PT_RIT = f"{PT}/{PT}", f"{RIT}/{RIT}", f"{PT}/{RIT}"
PT_P, RIT_RI, P_PT = f"{PT}/{P}", f"{RIT}/{RI}", f"{P}/{PT}"
START = {PT: P, RIT: RI}
"""The model each trained arm starts from."""


@dataclass(frozen=True)
class Pair:
    """Two models compared by a pair analysis; ``a`` and ``b`` are run specs (or anything with ``seed``)."""

    kind: str
    a: Any
    b: Any
    which_b: str = "weights"
    """Which weights of ``b``'s run: ``weights`` (final) or ``init`` (the start: P's body + a new head, or RI)."""

    @property
    def seeds(self) -> tuple[int, int]:
        return (int(self.a.seed), int(self.b.seed))


def within(kind: str, runs: Sequence[Any]) -> list[Pair]:
    """Every pair of distinct seeds of one arm (seed order)."""
    runs = sorted(runs, key=lambda r: r.seed)
    return [Pair(kind, a, b) for a, b in combinations(runs, 2)]


def across(kind: str, runs_a: Sequence[Any], runs_b: Sequence[Any]) -> list[Pair]:
    """Every (a, b) of two arms: n x m pairs."""
    return [Pair(kind, a, b) for a, b in product(sorted(runs_a, key=lambda r: r.seed), sorted(runs_b, key=lambda r: r.seed))]


def to_start(kind: str, runs: Sequence[Any]) -> list[Pair]:
    """Each run with the weights it started from (``init``)."""
    return [Pair(kind, r, r, which_b="init") for r in sorted(runs, key=lambda r: r.seed)]


def pairs_of(pt: Sequence[Any], rit: Sequence[Any]) -> dict[str, list[Pair]]:
    """The pairs of a target: P-T/P-T, RI-T/RI-T, P-T/RI-T, P-T/P and RI-T/RI."""
    return {PT_PT: within(PT_PT, pt), RIT_RIT: within(RIT_RIT, rit), PT_RIT: across(PT_RIT, pt, rit),
            PT_P: to_start(PT_P, pt), RIT_RI: to_start(RIT_RI, rit)}

