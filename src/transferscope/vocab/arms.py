"""The four models of Neyshabur et al. and the pairs the analyses compare: spelled once, here.

* ``P``: pre-trained on the source; ``RI``: a random initialisation (the ``init`` weights of an RI-T run);
* ``P-T``: P fine-tuned on a target; ``RI-T``: trained on a target from RI.

Pairs know the seeds of their two models, so that statistics over pairs can resample seeds, not pairs:

* within an arm (``P-T/P-T``, ``RI-T/RI-T``): every pair of distinct seeds;
* across arms (``P-T/RI-T``): every (P-T seed, RI-T seed), all n x m;
* to the start (``P-T/P``, ``RI-T/RI``): each trained model with the weights it started from (one seed).

With ``per_seed`` (the analysis setting ``pairs_per_seed``), the pairs within and across arms are a bounded,
balanced design instead of all of them (:func:`balanced`): every seed's model is in the same number of pairs, so
their count grows linearly with the seeds, not with their square; which pairs is drawn from the analysis seed,
before any result is read.

This module imports no torch: the claims and the report use its names.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations, product
from typing import Any

__all__ = ["P", "RI", "PT", "RIT", "TRAINED", "PT_PT", "RIT_RIT", "PT_RIT", "PT_P", "RIT_RI", "P_PT", "Pair",
           "within", "across", "to_start", "balanced", "pairs_of", "Cell"]

P, RI, PT, RIT = "P", "RI", "P-T", "RI-T"
TRAINED = (PT, RIT)
"""The arms trained on a target, with several seeds."""
PT_PT, RIT_RIT, PT_RIT = f"{PT}/{PT}", f"{RIT}/{RIT}", f"{PT}/{RIT}"
PT_P, RIT_RI, P_PT = f"{PT}/{P}", f"{RIT}/{RI}", f"{P}/{PT}"
START = {PT: P, RIT: RI}
"""The model each trained arm starts from."""


@dataclass(frozen=True, order=True)
class Cell:
    """The runs of one trained arm on one target at one block size, one per seed: what a statistic over seeds reads
    and where more seeds can be added. ``checkpoint``: for P-T, the pre-training checkpoint it starts from (the
    basin sweep); -1, the final P."""

    arm: str
    target: str
    block: int
    checkpoint: float = -1.0

    @property
    def label(self) -> str:
        where = f" from checkpoint {self.checkpoint:g}" if self.checkpoint >= 0 else ""
        return f"{self.arm} on {self.target} at block {self.block}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "target": self.target, "block": self.block, "checkpoint": self.checkpoint}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        return cls(str(d["arm"]), str(d["target"]), int(d["block"]), float(d.get("checkpoint", -1.0)))


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


def _seed_order(runs: Sequence[Any], order: dict[int, int]) -> list[Any]:
    return sorted(runs, key=lambda r: order[int(r.seed)])


def balanced(kind: str, runs_a: Sequence[Any], runs_b: Sequence[Any] | None, per_seed: int, seed: int) -> list[Pair]:
    """A bounded, balanced set of pairs: within one arm (``runs_b`` None) or across two.

    The seeds (of both arms together) are put in an order drawn from ``seed`` (``random.Random``, the same on
    every platform), each arm's runs in that order, and the pairs taken along the circle it makes:

    * within an arm of n runs: each run with the runs 1, 2, ..., ``per_seed // 2`` places after it, and, when
      ``per_seed`` is odd, with the run opposite it (n even) or the next one along (n odd); so every run is in
      ``per_seed`` pairs (one more when ``per_seed`` and n are odd). ``per_seed >= n - 1``: every pair (:func:`within`).
    * across arms (n runs of a, m of b): a's i-th run with b's runs i + 1, ..., i + ``per_seed`` (mod m): every run
      of a is in ``per_seed`` pairs, every run of b in ``per_seed`` x n / m; the i-th of b, often the same seed
      as a's i-th (same data order), is paired with it no more often than in the full design: never unless
      ``per_seed >= m``, which takes every pair (:func:`across`).

    ``per_seed`` 0: every pair. A pair within an arm is listed lower seed first, as :func:`within` lists it; the
    pairs come in the order of their seeds."""
    if runs_b is None:
        n = len(runs_a)
        if per_seed <= 0 or per_seed >= n - 1:
            return within(kind, runs_a)
    elif per_seed <= 0 or per_seed >= len(runs_b):
        return across(kind, runs_a, runs_b)
    seeds = sorted({int(r.seed) for r in (*runs_a, *(runs_b or ()))})
    random.Random(seed).shuffle(seeds)
    order = {s: i for i, s in enumerate(seeds)}
    a = _seed_order(runs_a, order)
    if runs_b is None:
        edges = {(i, (i + k) % n) for i in range(n) for k in range(1, per_seed // 2 + 1)}
        if per_seed % 2 and n % 2 == 0:
            edges |= {(i, i + n // 2) for i in range(n // 2)}
        elif per_seed % 2:  # no run is opposite another: one more step along the circle
            edges |= {(i, (i + per_seed // 2 + 1) % n) for i in range(n)}
        ends = {tuple(sorted((i, j), key=lambda x: a[x].seed)) for i, j in edges}
        return sorted((Pair(kind, a[i], a[j]) for i, j in ends), key=lambda p: p.seeds)
    b = _seed_order(runs_b, order)
    m = len(b)
    return sorted((Pair(kind, a[i], b[(i + k) % m]) for i in range(len(a)) for k in range(1, per_seed + 1)),
                  key=lambda p: p.seeds)


def pairs_of(pt: Sequence[Any], rit: Sequence[Any], per_seed: int = 0, seed: int = 0) -> dict[str, list[Pair]]:
    """The pairs of a target: P-T/P-T, RI-T/RI-T, P-T/RI-T, P-T/P and RI-T/RI. ``per_seed``: the within- and
    across-arm pairs are :func:`balanced` ones, drawn from ``seed``; 0: all of them."""
    return {PT_PT: balanced(PT_PT, pt, None, per_seed, seed), RIT_RIT: balanced(RIT_RIT, rit, None, per_seed, seed),
            PT_RIT: balanced(PT_RIT, pt, rit, per_seed, seed), PT_P: to_start(PT_P, pt),
            RIT_RI: to_start(RIT_RI, rit)}

