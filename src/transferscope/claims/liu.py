"""Claims L1-L5 of Liu, Wang, Long and Jordan (2019), as SCIENCE.md states them, each with its judge."""

from __future__ import annotations

from scipy import stats as sps

from ..study.arms import PT, RIT
from .base import ABOVE, ALL, BELOW, Claim, Measure
from .evidence import Evidence, PerSeed
from .stats import contrast_interval, fisher_z

__all__ = ["LIU", "INPUT_SCORE", "LABEL_SCORE"]

INPUT_SCORE = "neg_mmd2_rbf"
"""L4, similarity of inputs: minus the MMD^2 between P's features of source and target images."""
LABEL_SCORE = "leep"
"""L4, similarity of labels: LEEP, from P's source-class predictions against the target labels."""
SEEDS = "seeds per arm"


def _arm_contrast(ev: Evidence, field: str, name: str, unit: str):
    ms, notes = [], {}
    for t in ev.targets:
        per: dict[str, PerSeed] = getattr(t, field)
        pt, ri = per.get(PT), per.get(RIT)
        if not (pt and ri and pt.values and ri.values):
            notes[t.name] = f"needs the {name} of P-T and RI-T models"
            continue
        ms.append(Measure(t.name, f"{name}: P-T minus RI-T", unit, contrast_interval([(1.0, pt.list()), (-1.0, ri.list())]),
                          BELOW, SEEDS))
    return ms, notes


def _judge_l1(ev: Evidence):
    ms, notes = _arm_contrast(ev, "top_eigenvalue", "top Hessian eigenvalue of the training loss", "eigenvalue")
    ms2, notes2 = _arm_contrast(ev, "deviation", "mean relative weight deviation ||W - W0|| / ||W0|| (body)", "ratio")
    for k, v in notes2.items():
        if k in notes:
            notes[k] += f"; {v}"
        elif not any(m.target == k for m in ms):
            notes[k] = v
    return ms + ms2, notes


def _judge_l2(ev: Evidence):
    return _arm_contrast(ev, "grad_lipschitz", "local Lipschitz constant of the gradient along training",
                         "|delta g| / |delta theta|")


def _judge_l3(ev: Evidence):
    return _arm_contrast(ev, "principal", "initial gradient's energy on the top singular direction (pre-trained "
                         "vs random weights)", "fraction of energy")


def _judge_l4(ev: Evidence):
    ms, notes = [], {}
    for score, what in ((INPUT_SCORE, "inputs (minus MMD^2 of P's features)"), (LABEL_SCORE, "labels (LEEP)")):
        pts = [(c.scores.get(score), c.gain) for c in ev.cells if c.scores.get(score) is not None]
        if not pts:
            notes[ALL] = "needs the transferability scores of P and the measured gains"
            continue
        r = float(sps.spearmanr([x for x, _ in pts], [g for _, g in pts]).statistic) if len(pts) > 2 else float("nan")
        ms.append(Measure(ALL, f"Spearman's rho between the similarity of {what} and the gain", "rank correlation",
                          fisher_z(r, len(pts)), ABOVE, "(target, block size) cells", min_n=4,
                          note="the unit is the (target, block size) cell, not the seed; cells of one target share P"))
    return ms, notes


def _judge_l5(ev: Evidence):
    ms, notes = [], {}
    for t in ev.targets:
        if not t.basin:
            continue
        order = sorted(t.basin)
        interior = order[1:-1]
        if not interior or order[-1] != t.basin_final:
            notes[t.name] = "needs P-T runs from at least three pre-training checkpoints, the final one included"
            continue
        peak = max(interior, key=lambda e: sum(t.basin[e].list()) / max(len(t.basin[e].values), 1))
        acc = {e: t.basin[e].list() for e in order}
        ms.append(Measure(t.name, f"test accuracy from checkpoint {peak:g} (the best inner one) minus from the first "
                          f"({order[0]:g})", "test accuracy (fraction)", contrast_interval([(1.0, acc[peak]),
                                                                                           (-1.0, acc[order[0]])]),
                          ABOVE, SEEDS, note="the inner checkpoint is chosen as the best, which favours the claim"))
        ms.append(Measure(t.name, f"test accuracy from checkpoint {peak:g} minus from the final one ({order[-1]:g})",
                          "test accuracy (fraction)", contrast_interval([(1.0, acc[peak]), (-1.0, acc[order[-1]])]),
                          ABOVE, SEEDS, note="the inner checkpoint is chosen as the best, which favours the claim"))
    if not ms and not notes:
        notes[ALL] = "the study has no pre-training checkpoint sweep (basin.checkpoint_epochs)"
    return ms, notes


LIU = (
    Claim("L1", "Fine-tuned models sit in flatter minima than models trained from scratch, and their weights stay close "
          "to the pre-trained ones.", ("top_eigenvalue", "deviation"), _judge_l1, source="Liu et al. 2019"),
    Claim("L2", "Pre-trained weights make the loss landscape smoother: the gradient is more Lipschitz along training.",
          ("grad_lipschitz",), _judge_l2, source="Liu et al. 2019"),
    Claim("L3", "In pre-trained weights the gradient's principal component is suppressed.", ("principal",), _judge_l3,
          source="Liu et al. 2019"),
    Claim("L4", "Transferability follows the similarity of both inputs and labels between source and target.",
          ("cells",), _judge_l4, every_target=False, source="Liu et al. 2019"),
    Claim("L5", "Transferability changes along pre-training: it first rises and then falls.", ("basin",), _judge_l5,
          source="Liu et al. 2019"),
)
