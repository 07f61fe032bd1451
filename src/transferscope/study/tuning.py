"""Learning rates chosen on validation data, per arm and target (Neyshabur et al. tune each arm separately).

A :class:`~transferscope.study.plan.Selection` is decided once all its candidate runs are stored: the candidate
with the highest final validation figure in the run's metric wins (accuracy, or the mean AUC of a multi-label
target: :func:`transferscope.metrics.value`; ties: lower validation loss, then the smaller learning rate);
failed candidates (e.g. diverged) are out, and so is every candidate that did not fit its training data
(:data:`UNDERFIT_TRAIN_ACC`) while another one did. When none fits, the best is still chosen and the
:class:`Choice` says so (:attr:`Choice.none_fit`, :attr:`Choice.fit_warning`). Test data is never looked at.
Reads the store only (no torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .. import metrics as M
from ..store import RUN_DONE, RUN_FAILED, Store
from .plan import Plan, RunSpec, Selection

__all__ = ["Choice", "choose", "concrete", "resolve", "choices", "format_choices", "edge_warnings", "fit_warnings",
           "UNDERFIT_TRAIN_ACC"]

_GRID_KEY = {"P-T": "finetune.lr_grid", "RI-T": "scratch.lr_grid"}
_TABLE = {"P-T": "finetune", "RI-T": "scratch"}

UNDERFIT_TRAIN_ACC = 0.9
"""A run whose final model classifies less than this fraction of its own training split (a multi-label run: whose
training mean AUC is under it) did not fit its training data: the report and ``status`` flag it, and the
learning-rate choice passes over such candidates while another candidate fits."""


def fits(train: float | None, bar: float = UNDERFIT_TRAIN_ACC) -> bool:
    """Whether a run whose final training figure (``train_acc_final``, or ``train_auc_final`` of a multi-label run)
    is ``train`` fit its training data: not under ``bar``. A run that recorded none (an older one) counts as
    fitting, as :func:`transferscope.study.summary.flags` counts it.

    Compared at float32 precision, the precision the trainer computes and stores accuracies in: 180 of 200
    training images right is stored as 0.89999998, which is the float32 of 0.9, not under it. For a fraction k/n
    with n under about 1.6 million and a bar of a few decimals, that comparison is the exact one of k/n with the
    bar."""
    return train is None or not np.float32(train) < np.float32(bar)


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
    train_acc: dict[float, float | None] = field(default_factory=dict)
    """Final training figure per candidate learning rate (``train_acc_final``, or ``train_auc_final`` of a
    multi-label run: in :attr:`metric`); None: not recorded (an older run), failed or pending."""
    none_fit: bool = False
    """No candidate fit its training data (every one's training figure under :data:`UNDERFIT_TRAIN_ACC`): the best
    on validation was chosen all the same, so that the study goes on; :attr:`fit_warning` says how to widen the
    grid."""

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
        return (f"learning rate of {s.arm} on {s.target} ({s.where}): {self.lr:g} is the {self.edge} of its grid "
                f"[{', '.join(f'{x:g}' for x in self.grid)}]; the best rate may lie {beyond} it: extend "
                f"{_GRID_KEY.get(s.arm, 'lr_grid')}")

    @property
    def widen_side(self) -> str:
        """Where the candidates' training figure was highest, when :attr:`none_fit`: ``above`` (it rose with the
        rate: at the largest candidate that trained and not at the smallest), ``below`` (it fell: at the smallest and
        not at the largest), or ``""`` (at neither end alone: inside the grid, flat, or fewer than two figures)."""
        figs = {lr: a for lr, a in self.train_acc.items() if a is not None and math.isfinite(a)}
        if not self.none_fit or len(figs) < 2:
            return ""
        top = max(figs.values())
        at = {lr for lr, a in figs.items() if a == top}
        lo, hi = min(figs), max(figs)
        return "above" if hi in at and lo not in at else "below" if lo in at and hi not in at else ""

    @property
    def fit_warning(self) -> str:
        """A one-line warning when :attr:`none_fit` (the arm, target, block size, grid, the candidates' training
        figures, and how to widen the grid); ``""`` otherwise."""
        if not self.none_fit or self.state != "chosen":
            return ""
        s = self.selection
        word = f"training {self.metric_label}"
        figs = ", ".join(f"{lr:g}: " + ("failed" if a is None and self.val_acc.get(lr) is None else
                                        "not recorded" if a is None else f"{a:.3f}")
                         for lr, a in self.train_acc.items())
        table, grid_key = _TABLE.get(s.arm, "finetune"), _GRID_KEY.get(s.arm, "lr_grid")
        trained = [lr for lr, a in self.train_acc.items() if a is not None and math.isfinite(a)]
        side = self.widen_side
        if side == "above":
            widen = (f"or extend {grid_key} above {max(trained):g} ({word} rose with the rate: a rate too small "
                     "learns too slowly)")
        elif side == "below":
            widen = (f"or extend {grid_key} below {min(trained):g} ({word} fell with the rate: a rate too large "
                     "trains unstably)")
        else:
            widen = f"({word} did not rise towards either end of {grid_key}: more epochs rather than another rate)"
        return (f"learning rate of {s.arm} on {s.target} ({s.where}): no candidate of the grid "
                f"[{', '.join(f'{x:g}' for x in self.grid)}] fit its training data ({word} {figs}; under "
                f"{UNDERFIT_TRAIN_ACC:g}); {self.lr:g}, the best on validation, is kept so that the study goes on; "
                f"widen the grid: raise {table}.epochs {widen}")

    def to_dict(self) -> dict:
        s = self.selection
        return {"arm": s.arm, "target": s.target, "block_size": s.block_size, "pretrain_seed": s.pretrain_seed,
                **({"checkpoint": s.start} if s.start >= 0 else {}), "state": self.state,
                "lr": self.lr, "val_acc": {f"{k:g}": v for k, v in self.val_acc.items()},
                "train_acc": {f"{k:g}": v for k, v in self.train_acc.items()}, "none_fit": self.none_fit,
                "runs": [c.run_id for c in s.candidates], "at_edge": self.at_edge, "edge": self.edge,
                **({"metric": self.metric} if self.metric != M.ACC else {})}


def choose(sel: Selection, store: Store) -> Choice:
    """Decide ``sel`` from the stored candidate runs, on each one's final validation figure in its own metric.

    Only the candidates that fit their training data compete (:func:`fits`: the final training figure,
    ``train_acc_final`` or a multi-label run's ``train_auc_final``, not under :data:`UNDERFIT_TRAIN_ACC`; a run
    without one counts as fitting): a candidate that did not fit is never chosen while another one did. Among them,
    ``best``: the highest validation figure (ties: lower validation loss, then the smaller rate); ``one-se``: the
    smallest rate within one standard error of that best *fitting* candidate, the standard error being that
    candidate's own. When no candidate fits, the same rule runs over all of them (the study goes on) and the choice
    has :attr:`Choice.none_fit` set.

    The one-SE rule's standard error is that of an accuracy (a binomial proportion over the validation images); for
    a multi-label target (mean AUC) that of the best candidate's validation mean AUC as its run recorded it
    (``val_auc_se``: Hanley and McNeil per label, :func:`transferscope.metrics.mean_auc_se`); a run without one
    (an older one) leaves the best candidate chosen."""
    scores: dict[float, tuple[float, float]] = {}
    val_acc: dict[float, float | None] = {}
    train_acc: dict[float, float | None] = {}
    pending = False
    n_val = 0
    ses: dict[float, float] = {}
    metric = M.ACC
    for c in sel.candidates:
        st = store.run_status(c.run_id)
        val_acc[c.train.lr] = train_acc[c.train.lr] = None
        if st == RUN_DONE:
            m = store.read_json(c.run_id, "metrics.json")
            n_val = c.domain.n_val_per_class * int(m.get("num_classes", 0))
            metric = M.metric_of(m)
            train = m.get(f"train_{metric}_final")  # train_acc_final, train_auc_final (as summary.flags reads it)
            train_acc[c.train.lr] = None if train is None else float(train)
            ses[c.train.lr] = float(m.get("val_auc_se") if m.get("val_auc_se") is not None else math.nan)
            acc, loss = M.value(m, "val"), m.get("val_loss")
            if math.isfinite(acc):
                val_acc[c.train.lr] = acc
                scores[c.train.lr] = (acc, loss if loss is not None and math.isfinite(loss) else math.inf)
        elif st != RUN_FAILED:
            pending = True
    if pending:
        return Choice(sel, "pending", val_acc=val_acc, metric=metric, train_acc=train_acc)
    if not scores:
        return Choice(sel, "failed", val_acc=val_acc, metric=metric, train_acc=train_acc)
    # a candidate that did not fit its training data competes only when none did
    pool = {lr: v for lr, v in scores.items() if fits(train_acc[lr])}
    none_fit = not pool
    if none_fit:
        pool = scores
    best = min(pool, key=lambda lr: (-pool[lr][0], pool[lr][1], lr))
    chosen = best
    se = math.nan
    if sel.rule == "one-se" and n_val and metric == M.ACC:
        top = pool[best][0]
        se = math.sqrt(top * (1 - top) / n_val)  # binomial
    elif sel.rule == "one-se" and metric == M.AUC:
        se = ses.get(best, math.nan)  # Hanley-McNeil, recorded by the run (older runs: none, the best is taken)
    if math.isfinite(se):
        # the smallest rate within one standard error of the best, among the same candidates (best is among them)
        top = pool[best][0]
        chosen = min(lr for lr, (acc, _) in pool.items() if acc >= top - se)
    return Choice(sel, "chosen", chosen, val_acc, best, metric, train_acc, none_fit)


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
    """A plain-text table: one line per selection, validation accuracy per candidate, the winner starred; a
    candidate that did not fit its training data shows its training figure (``(train 0.788)``), and a choice made
    although none fit ends in ``(no candidate fit its training data)``."""
    if not cs:
        return ""
    lines = [f"learning rates chosen on validation {M.metric_labels(c.metric for c in cs)} (first seed):"]
    starts = any(c.selection.start >= 0 for c in cs)
    for c in cs:
        s = c.selection
        cells = []
        for lr, acc in c.val_acc.items():
            txt = "failed" if acc is None and c.state != "pending" else "-" if acc is None else f"{acc:.3f}"
            star = "*" if c.state == "chosen" and lr == c.lr else ""
            train = c.train_acc.get(lr)
            unfit = f" (train {train:.3f})" if acc is not None and not fits(train) else ""  # passed over, or none fit
            cells.append(f"{lr:g}: {txt}{star}{unfit}")
        notes = ([f"the {c.edge} of the grid"] if c.at_edge else []) + \
                (["no candidate fit its training data"] if c.none_fit else [])
        if c.state != "chosen":
            notes = [c.state]
        tail = "".join(f"  ({n})" for n in notes)
        start = (f"{f'from {s.start:g}' if s.start >= 0 else '':<8} " if starts else "")  # the basin's checkpoints
        lines.append(f"  {s.arm:<5} {s.target:<20} b{s.block_size:<4} {start}" + "  ".join(cells) + tail)
    return "\n".join(lines)


def edge_warnings(plan: Plan, store: Store) -> list[str]:
    """One warning per learning-rate choice of ``plan`` that fell on the smallest or largest candidate of its grid."""
    return [c.warning for c in choices(plan, store) if c.at_edge]


def fit_warnings(plan: Plan, store: Store) -> list[str]:
    """One warning per learning-rate choice of ``plan`` made although no candidate fit its training data
    (:attr:`Choice.fit_warning`)."""
    return [c.fit_warning for c in choices(plan, store) if c.none_fit]
