"""Learning rates chosen on validation data, per arm and target (Neyshabur et al. tune each arm separately).

A :class:`~transferscope.study.plan.Selection` is decided once all its candidate runs are stored: the candidate
with the highest final validation figure in the run's metric wins (accuracy, or the mean AUC of a multi-label
target: :func:`transferscope.metrics.value`; ties: lower validation loss, then the smaller learning rate);
failed candidates (e.g. diverged) are out. Test data is never looked at. Reads the store only (no torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .. import metrics as M
from ..store import RUN_DONE, RUN_FAILED, Store
from .plan import Plan, RunSpec, Selection

__all__ = ["Choice", "choose", "concrete", "resolve", "choices", "format_choices", "edge_warnings"]

_GRID_KEY = {"P-T": "finetune.lr_grid", "RI-T": "scratch.lr_grid"}


@dataclass(frozen=True)
class Choice:
    selection: Selection
    state: str
    """``chosen``; ``pending`` (a candidate is not stored yet); ``failed`` (every candidate failed)."""
    lr: float = math.nan
    val_acc: dict[float, float | None] = field(default_factory=dict)
    """Final validation figure per candidate learning rate, in the runs' metric (:attr:`metric`: accuracy, or mean
    AUC; the name is kept for the stored records); None: that candidate failed or is pending."""
    best: float = math.nan
    """The candidate of the highest validation figure; with ``lr_rule = "one-se"`` the chosen ``lr`` may be a
    smaller one within noise of it."""
    metric: str = M.ACC
    """``acc`` or ``auc``: what :attr:`val_acc` holds (that of the stored candidates)."""

    @property
    def metric_label(self) -> str:
        """"accuracy" or "mean AUC"."""
        return M.metric_label(self.metric)

    @property
    def grid(self) -> tuple[float, ...]:
        """The candidate learning rates, in the order of the config."""
        return tuple(c.train.lr for c in self.selection.candidates)

    @property
    def edge(self) -> str:
        """``smallest`` or ``largest`` when the chosen rate is that end of a grid of two or more candidates (the
        best rate may lie beyond the grid); ``""`` otherwise (inside the grid, or not chosen)."""
        g = self.grid
        if self.state != "chosen" or len(g) < 2:
            return ""
        # the optimum may lie beyond the grid when the best candidate is at an end (under the one-SE rule a smaller
        # rate within noise of an inner best is a deliberate choice, not a sign of a grid too narrow)
        top = self.best if math.isfinite(self.best) else self.lr
        return "smallest" if top == min(g) else "largest" if top == max(g) else ""

    @property
    def at_edge(self) -> bool:
        """Whether the chosen rate is the smallest or largest candidate of its grid (see :attr:`edge`)."""
        return bool(self.edge)

    @property
    def warning(self) -> str:
        """A one-line warning when :attr:`at_edge`; ``""`` otherwise."""
        if not self.at_edge:
            return ""
        s = self.selection
        beyond = "below" if self.edge == "smallest" else "above"
        of_p = f", from P of seed {s.pretrain_seed}" if s.pretrain_seed >= 0 else ""
        return (f"learning rate of {s.arm} on {s.target} (b{s.block_size}{of_p}): {self.lr:g} is the {self.edge} of its grid "
                f"[{', '.join(f'{x:g}' for x in self.grid)}]; the best rate may lie {beyond} it: extend "
                f"{_GRID_KEY.get(s.arm, 'lr_grid')}")

    def to_dict(self) -> dict:
        s = self.selection
        return {"arm": s.arm, "target": s.target, "block_size": s.block_size, "pretrain_seed": s.pretrain_seed,
                "state": self.state,
                "lr": self.lr, "val_acc": {f"{k:g}": v for k, v in self.val_acc.items()},
                "runs": [c.run_id for c in s.candidates], "at_edge": self.at_edge, "edge": self.edge,
                **({"metric": self.metric} if self.metric != M.ACC else {})}


UNDERFIT_TRAIN_ACC = 0.9
"""A run whose final model classifies less than this fraction of its own training split did not fit its training
data (the report and ``status`` flag it; the one-SE learning-rate rule passes over such candidates)."""


def choose(sel: Selection, store: Store) -> Choice:
    """Decide ``sel`` from the stored candidate runs, on each one's final validation figure in its own metric.

    The one-SE rule's standard error is that of an accuracy (a binomial proportion over the validation images); for
    a multi-label target (mean AUC) that of the best candidate's validation mean AUC as its run recorded it
    (``val_auc_se``: Hanley and McNeil per label, :func:`transferscope.metrics.mean_auc_se`); a run without one
    (an older one) leaves the best candidate chosen."""
    scores: dict[float, tuple[float, float]] = {}
    val_acc: dict[float, float | None] = {}
    pending = False
    n_val = 0
    fits: dict[float, bool] = {}
    ses: dict[float, float] = {}
    metric = M.ACC
    for c in sel.candidates:
        st = store.run_status(c.run_id)
        val_acc[c.train.lr] = None
        if st == RUN_DONE:
            m = store.read_json(c.run_id, "metrics.json")
            n_val = c.domain.n_val_per_class * int(m.get("num_classes", 0))
            metric = M.metric_of(m)
            if metric == M.ACC:  # the one-SE rule passes over underfit candidates (by accuracy; AUC has no such bar)
                fits[c.train.lr] = not m.get("train_acc_final", 1.0) < UNDERFIT_TRAIN_ACC
            ses[c.train.lr] = float(m.get("val_auc_se") if m.get("val_auc_se") is not None else math.nan)
            acc, loss = M.value(m, "val"), m.get("val_loss")
            if math.isfinite(acc):
                val_acc[c.train.lr] = acc
                scores[c.train.lr] = (acc, loss if loss is not None and math.isfinite(loss) else math.inf)
        elif st != RUN_FAILED:
            pending = True
    if pending:
        return Choice(sel, "pending", val_acc=val_acc, metric=metric)
    if not scores:
        return Choice(sel, "failed", val_acc=val_acc, metric=metric)
    best = min(scores, key=lambda lr: (-scores[lr][0], scores[lr][1], lr))
    chosen = best
    se = math.nan
    if sel.rule == "one-se" and n_val and metric == M.ACC:
        top = scores[best][0]
        se = math.sqrt(top * (1 - top) / n_val)  # binomial
    elif sel.rule == "one-se" and metric == M.AUC:
        se = ses.get(best, math.nan)  # Hanley-McNeil, recorded by the run (older runs: none, the best is taken)
    if math.isfinite(se):
        # the smallest rate within one standard error of the best, among the candidates that fit their training data
        top = scores[best][0]
        near = [lr for lr, (acc, _) in scores.items() if acc >= top - se and fits.get(lr, True)]
        chosen = min(near) if near else best
    return Choice(sel, "chosen", chosen, val_acc, best, metric)


def concrete(template: RunSpec, lr: float) -> RunSpec:
    """The run a deferred template becomes once its learning rate is chosen."""
    return replace(template, train=replace(template.train, lr=lr, lr_grid=[]))


def resolve(plan: Plan, store: Store) -> Plan:
    """``plan`` with every deferred run whose selection is decided turned into a concrete run (others stay
    deferred). Runs whose selection failed are dropped from the plan (``choices`` reports them)."""
    decided = {sel.key: choose(sel, store) for sel in plan.selections}
    runs = list(plan.runs)
    ids = {r.run_id for r in runs}
    deferred = []
    for template, sel in plan.deferred:
        c = decided[sel.key]
        if c.state == "chosen":
            spec = concrete(template, c.lr)
            if spec.run_id not in ids:
                runs.append(spec)
                ids.add(spec.run_id)
        elif c.state == "pending":
            deferred.append((template, sel))
    return Plan(plan.config, runs, plan.tuning, deferred)


def choices(plan: Plan, store: Store) -> list[Choice]:
    """The state of every learning-rate selection of ``plan``."""
    return [choose(sel, store) for sel in plan.selections]


def format_choices(cs: list[Choice]) -> str:
    """A plain-text table: one line per selection, validation accuracy per candidate, the winner starred."""
    if not cs:
        return ""
    words = sorted({c.metric_label for c in cs})
    lines = [f"learning rates chosen on validation {' or '.join(words)} (first seed):"]
    for c in cs:
        s = c.selection
        cells = []
        for lr, acc in c.val_acc.items():
            txt = "failed" if acc is None and c.state != "pending" else "-" if acc is None else f"{acc:.3f}"
            star = "*" if c.state == "chosen" and lr == c.lr else ""
            cells.append(f"{lr:g}: {txt}{star}")
        tail = f"  (the {c.edge} of the grid)" if c.at_edge else "" if c.state == "chosen" else f"  ({c.state})"
        lines.append(f"  {s.arm:<5} {s.target:<20} b{s.block_size:<4} " + "  ".join(cells) + tail)
    return "\n".join(lines)


def edge_warnings(plan: Plan, store: Store) -> list[str]:
    """One warning per learning-rate choice of ``plan`` that fell on the smallest or largest candidate of its grid."""
    return [c.warning for c in choices(plan, store) if c.at_edge]
