"""The claims of Neyshabur et al. (N1-N9) and Liu et al. (L1-L5) as tested objects, judged with uncertainty.

``judge(evidence)`` returns one :class:`Verdict` per claim, by the one decision rule of :mod:`.stats`. This
package imports no torch.
"""

from ..vocab.evidence import Evidence, PerPair, PerSeed, ScoreCell, TargetEvidence
from .across import DEPENDS, Across, across_pretrained
from .base import Claim, Effect, Measure, TargetVerdict, Verdict, decide
from .liu import LIU
from .neyshabur import NEYSHABUR
from .stats import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, OUTCOMES

__all__ = ["Claim", "Effect", "Measure", "TargetVerdict", "Verdict", "decide", "Evidence", "PerPair", "PerSeed",
           "ScoreCell", "TargetEvidence", "CLAIMS", "get_claim", "judge", "HOLDS", "FAILS", "INCONCLUSIVE",
           "NOT_MEASURED", "OUTCOMES", "DEPENDS", "Across", "across_pretrained"]

CLAIMS: tuple[Claim, ...] = NEYSHABUR + LIU
assert len({c.id for c in CLAIMS}) == len(CLAIMS)


def get_claim(claim_id: str) -> Claim:
    for c in CLAIMS:
        if c.id == claim_id:
            return c
    raise KeyError(f"claim {claim_id!r}: unknown; claims are {', '.join(c.id for c in CLAIMS)}")


def judge(evidence: Evidence, claims: tuple[Claim, ...] = CLAIMS, **look) -> list[Verdict]:
    """Every claim's verdict on ``evidence``, with Holm's correction over the whole family; ``look``: the
    ``alpha``, ``look`` and ``earlier`` effects of a study that decides in rounds (:func:`.base.decide`)."""
    return decide(claims, evidence, evidence.conditional_on, **look)
