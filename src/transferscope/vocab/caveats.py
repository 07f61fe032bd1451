"""Caveats: what a verdict rests on that weakens it, carried with the verdict.

A study's stored runs can be flagged (:func:`transferscope.study.summary.flags`): a run that did not fit its
training data, a learning-rate choice at an edge of its grid or one where no candidate fit, a target on which P-T
stays near chance, runs that failed or are missing, files that changed after a run ended. Each flag becomes a
:class:`Caveat` of one target and one arm; :func:`transferscope.claims.decide` attaches to every per-target
outcome the caveats of the arms its claim reads (:attr:`transferscope.claims.Claim.arms`), and to an effect about
every target together (an ordering, a rank correlation) those of every target.

The rule, fixed before any result: a caveat is *blocking* when the numbers behind the outcome cannot be read as
the claim means them — the arm's runs did not fit their training data (``underfit``; ``no-fitting-lr``: no
learning rate of the grid fit) or their files changed since they ended (``changed-artefacts``). A decisive outcome
(holds, does not hold) with a blocking caveat is reported as ``unreliable``, with the way out; an inconclusive one
stays inconclusive, with the caveat beside it. The other kinds (``lr-at-edge``, ``uninformative-target``,
``failed-runs``, ``missing-runs``) are shown beside the verdict and do not change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Caveat", "BLOCKING", "KINDS", "applicable", "blocking", "summary"]

BLOCKING = ("underfit", "no-fitting-lr", "changed-artefacts")
"""Kinds of caveat that keep a decisive outcome from being reported as decisive."""
KINDS = BLOCKING + ("lr-at-edge", "uninformative-target", "failed-runs", "missing-runs")


@dataclass(frozen=True)
class Caveat:
    """One thing a target's evidence rests on that weakens it."""

    kind: str
    """One of :data:`KINDS`."""
    target: str
    arm: str = ""
    """``P-T``, ``RI-T``, ``basin`` (P-T fine-tuned from an earlier pre-training checkpoint), or ``""`` for the
    target as a whole (``uninformative-target``)."""
    message: str = ""
    remedy: str = ""
    """The way out (a wider grid, more epochs, a re-run)."""

    @property
    def blocking(self) -> bool:
        return self.kind in BLOCKING

    @property
    def short(self) -> str:
        """A few words for a table cell: e.g. ``RI-T did not fit its training data``."""
        who = f"{self.arm} " if self.arm else ""
        return {"underfit": f"{who}did not fit its training data",
                "no-fitting-lr": f"no learning rate of {who}fit its training data",
                "changed-artefacts": f"{who}run files changed",
                "lr-at-edge": f"{who}learning rate at a grid edge",
                "uninformative-target": "P-T near chance (uninformative target)",
                "failed-runs": f"{who}runs failed",
                "missing-runs": f"{who}runs missing"}.get(self.kind, f"{who}{self.kind}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "blocking": self.blocking}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Caveat:
        return cls(d["kind"], d["target"], d.get("arm", ""), d.get("message", ""), d.get("remedy", ""))


def applicable(caveats: Iterable[Caveat], targets: Iterable[str], arms: Sequence[str]) -> tuple[Caveat, ...]:
    """The caveats of ``targets`` that bear on a claim reading ``arms``: those of one of its arms, and those of the
    target as a whole (arm ``""``) when the claim reads any arm trained on the target (not only ``P``, the
    pre-trained model, whose caveats are those of its files). In a stable order, without repeats."""
    ts = set(targets)
    trained = [a for a in arms if a != "P"]
    out: dict[Caveat, None] = {}
    for c in caveats:
        if c.target in ts and (c.arm in arms or (not c.arm and trained)):
            out[c] = None
    return tuple(out)


def blocking(caveats: Iterable[Caveat]) -> tuple[Caveat, ...]:
    return tuple(c for c in caveats if c.blocking)


def summary(caveats: Iterable[Caveat]) -> str:
    """The caveats in a few words, joined: ``RI-T did not fit its training data (animals); ...``."""
    by: dict[str, list[str]] = {}
    for c in caveats:
        by.setdefault(c.short, [])
        if c.target not in by[c.short]:
            by[c.short].append(c.target)
    return "; ".join(f"{k} ({', '.join(v)})" for k, v in by.items())
