"""Claims L1-L5 of Liu, Wang, Long and Jordan (2019), as SCIENCE.md states them, each with its judge."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from ..vocab.arms import PT, RIT, Cell
from ..vocab.evidence import Evidence, PerSeed, figure, one_scale
from .base import ABOVE, ALL, BELOW, Claim, Measure, missing
from .stats import LEVEL, contrast_interval, fisher_z

__all__ = ["LIU", "INPUT_SCORE", "LABEL_SCORE"]

INPUT_SCORE = "neg_mmd2_rbf"
"""L4, similarity of inputs: minus the MMD^2 between P's features of source and target images."""
LABEL_SCORE = "leep"
"""L4, similarity of labels: LEEP, from P's source-class predictions against the target labels."""
SEEDS = "seeds per arm"
MIN_CELLS = 6
"""L4: at least this many (target, block size) cells; below it the Fisher-z interval of a rank correlation is too
permissive (at 4-5 cells a perfect rank order arises by chance with probability 1/24 and 1/120 per sign)."""


def _arm_contrasts(ev: Evidence, parts: list[tuple[str, str, str]]):
    """Per target, P-T minus RI-T of each (evidence field, name, unit), claim side below 0. A target with some parts
    measured and others not keeps the missing ones as unmeasured parts (it cannot hold); none: not measured."""
    ms, notes = [], {}
    for t in ev.targets:
        got = []
        for field, name, unit in parts:
            per: dict[str, PerSeed] = getattr(t, field)
            pt, ri = per.get(PT), per.get(RIT)
            if pt and ri and pt.values and ri.values:
                got.append(Measure(t.name, f"{name}: P-T minus RI-T", unit,
                                   contrast_interval([(1.0, pt.list()), (-1.0, ri.list())]), BELOW, SEEDS,
                                   cells=(Cell(PT, t.name, ev.full_block), Cell(RIT, t.name, ev.full_block))))
            else:
                got.append(missing(t.name, f"{name}: P-T minus RI-T", unit, BELOW, f"needs the {name} of P-T and RI-T"))
        if all(not math.isfinite(m.estimate.value) and m.estimate.n == 0 for m in got):
            notes[t.name] = "needs the " + " and the ".join(n for _, n, _ in parts) + " of P-T and RI-T models"
        else:
            ms += got
    return ms, notes


def _arm_contrast(ev: Evidence, field: str, name: str, unit: str):
    return _arm_contrasts(ev, [(field, name, unit)])


def _judge_l1(ev: Evidence):
    return _arm_contrasts(ev, [("top_eigenvalue", "top Hessian eigenvalue of the training loss", "eigenvalue"),
                               ("deviation", "mean relative weight deviation ||W - W0|| / ||W0|| (body)", "ratio")])


def _judge_l2(ev: Evidence):
    return _arm_contrast(ev, "grad_lipschitz", "local Lipschitz constant of the gradient along training",
                         "|delta g| / |delta theta|")


def _judge_l3(ev: Evidence):
    return _arm_contrast(ev, "principal", "initial gradient's energy on the top singular direction (pre-trained "
                         "vs random weights)", "fraction of energy")


def _judge_l4(ev: Evidence):
    if not ev.cells:
        return [], {ALL: "needs the transferability scores of P and the measured gains"}
    ms = []
    cells, left_out = one_scale(ev.cells)
    for score, what in ((INPUT_SCORE, "inputs (minus MMD^2 of P's features)"), (LABEL_SCORE, "labels (LEEP)")):
        pts = [(c.scores[score], c.gain) for c in cells
               if math.isfinite(c.scores.get(score, math.nan)) and math.isfinite(c.gain)]
        name = f"Spearman's rho between the similarity of {what} and the gain"
        if len(pts) <= 2:  # no rank correlation at all: say how many cells there are, not a NaN
            ms.append(missing(ALL, name, "rank correlation", ABOVE,
                              f"only {len(pts)} cell{'s' if len(pts) != 1 else ''} (target, block size) with both the "
                              f"score and a gain, of the at least {MIN_CELLS} it needs: add targets or block sizes"
                              + (f"; {left_out}" if left_out else "")))
            continue
        r = float(sps.spearmanr([x for x, _ in pts], [g for _, g in pts]).statistic) if len(pts) > 2 else math.nan
        ms.append(Measure(ALL, name, "rank correlation", fisher_z(r, len(pts)), ABOVE, "(target, block size) cells",
                          min_n=MIN_CELLS, unit_n="cells",
                          note="the unit is the (target, block size) cell, not the seed; cells of one target share P "
                               "and its model, so they are not independent" + (f"; {left_out}" if left_out else "")))
    return ms, {}


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
        acc = {e: t.basin[e].list() for e in order}
        peak = max(interior, key=lambda e: float(np.nanmean(acc[e])) if np.isfinite(acc[e]).any() else -math.inf)
        # the inner checkpoint is chosen as the best of K: each contrast is tested at 1 - alpha / K (Bonferroni)
        level = 1 - (1 - LEVEL) / len(interior)
        note = (f"the best inner checkpoint: {peak:g}"
                + (f", the best of {len(interior)} inner ones, tested at {level:.2%}" if len(interior) > 1 else ""))
        bb = t.basin_block or ev.full_block

        def cell(e: float, t=t, bb=bb) -> Cell:
            return Cell(PT, t.name, bb, -1.0 if e == t.basin_final else float(e))

        for other, what in ((order[0], "the first"), (order[-1], "the final one")):
            # the name does not carry the checkpoint chosen, so that the effect is the same one from look to look;
            # it reads every inner checkpoint (the choice among them) and the one it is compared with
            ms.append(Measure(t.name, f"test {figure(t, 'word')} from the best inner checkpoint minus from "
                              f"{what} ({other:g})", figure(t, "test"),
                              contrast_interval([(1.0, acc[peak]), (-1.0, acc[other])]), ABOVE, SEEDS, level=level,
                              note=note, cells=tuple(cell(e) for e in (*interior, other))))
    if not ms and not notes:
        notes[ALL] = "the study has no pre-training checkpoint sweep (basin.checkpoint_epochs)"
    return ms, notes


LIU = (
    Claim("L1", "Fine-tuned models sit in flatter minima than models trained from scratch, and their weights stay close "
          "to the pre-trained ones.", ("top_eigenvalue", "deviation"), _judge_l1, source="Liu et al. 2019"),
    Claim("L2", "Pre-trained weights make the loss landscape smoother: the gradient is more Lipschitz along training.",
          ("grad_lipschitz",), _judge_l2, source="Liu et al. 2019"),
    # L3 reads the models at their start (P's weights and RI's): how their runs trained does not bear on it, whether
    # P's files are intact does
    Claim("L3", "In pre-trained weights the gradient's principal component is suppressed.", ("principal",), _judge_l3,
          source="Liu et al. 2019", arms=("P",)),
    Claim("L4", "Transferability follows the similarity of both inputs and labels between source and target.",
          ("cells",), _judge_l4, source="Liu et al. 2019"),
    Claim("L5", "Transferability changes along pre-training: it first rises and then falls.", ("basin",), _judge_l5,
          source="Liu et al. 2019", arms=("P-T", "basin")),
)
