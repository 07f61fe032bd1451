"""Tables of a study's results, read from the store (no torch needed).

Every run is read in its own metric (:func:`transferscope.metrics.value`): top-1 accuracy, or the mean AUC over
labels of a multi-label target. The fields keep the accuracy's names (``test_acc``, ``acc_mean``) for both; a
row's ``metric`` says which it holds."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import metrics as M
from ..store import RUN_DONE, RUN_FAILED, Store, rerun_hint
from ..vocab.records import ArmCell, SeedResult
from ..vocab.results import read_float
from .plan import Plan
from .tuning import UNDERFIT_TRAIN_ACC, choices, fits, resolve  # the threshold lives where the learning-rate rule reads it

__all__ = ["ArmCell", "SeedResult", "results_table", "test_noise", "format_table", "status_counts", "checkpoint_gains", "Flag",
           "flags", "format_flags", "uninformative_threshold", "UNDERFIT_TRAIN_ACC", "UNINFORMATIVE_CHANCE_MULTIPLE"]


UNINFORMATIVE_CHANCE_MULTIPLE = 2.0
"""A target on which P-T's mean test accuracy, unshuffled, stays under this multiple of chance (1 / classes) tells
little about transfer. With two classes twice chance is 1, so the threshold is capped at halfway between chance and
1: ``min(2 / K, (1 + 1 / K) / 2)`` (equal for K = 3)."""


def _mean_std(v: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values; the deviation of one value is undefined (NaN, shown
    as n/a), not 0."""
    a = np.asarray([x for x in v if x is not None and math.isfinite(x)], dtype=float)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def results_table(plan: Plan, store: Store, pretrain: int | None = None) -> list[dict]:
    """One row per (target, block size): P-T and RI-T test accuracy, or mean AUC for a multi-label target (mean,
    std over seeds), and speed figures.

    In a study with several pre-trained models, P-T counts the runs from the P of pre-training seed ``pretrain``
    (None: the primary P).

    Each row: ``target``, ``block_size``, ``P-T`` and ``RI-T`` (:class:`ArmCell`, with the figures of every seed in
    ``per_seed``), ``gain`` (P-T's mean test figure minus RI-T's), ``metric`` (``acc`` or ``auc``, of the runs
    read; ``acc`` when none is) and ``n_test`` (the test images each run is scored on; 0 before any is done).

    Only the main P-T runs (from the final pre-training weights) count here; the checkpoint sweep is separate.
    """
    rows: dict[tuple[str, int], dict[str, list[tuple[int, dict]]]] = {}
    n_test: dict[tuple[str, int], int] = {}
    for r in resolve(plan.for_pretrain(pretrain), store).runs:
        if r.arm == "P" or r.parent_checkpoint >= 0:
            continue
        cell = rows.setdefault((r.domain.display, r.block_size), {"P-T": [], "RI-T": []})
        if store.run_status(r.run_id) == RUN_DONE:
            cell[r.arm].append((r.seed, store.read_json(r.run_id, "metrics.json")))
            if (r.domain.display, r.block_size) not in n_test:
                n_test[r.domain.display, r.block_size] = int(store.run_info(r.run_id).get("n_test") or 0)
    out = []
    for (target, b), arms in rows.items():
        row = {"target": target, "block_size": b, "n_test": n_test.get((target, b), 0)}
        metric = M.ACC
        for arm, seeded in arms.items():
            ms = [x for _, x in seeded]
            metric = next((M.metric_of(x) for x in ms), metric)
            m, s = _mean_std([M.value(x, "test") for x in ms])
            k, _ = _mean_std([x["speed_mean_acc_k"] for x in ms])
            st, _ = _mean_std([x["speed_steps_to_frac"] for x in ms])
            per_seed = tuple(sorted(SeedResult(seed, M.value(x, "test"), read_float(x.get("speed_mean_acc_k")),
                                               read_float(x.get("speed_steps_to_frac"))) for seed, x in seeded))
            row[arm] = ArmCell(len(ms), m, s, k, st, per_seed)
        row["gain"] = row["P-T"].acc_mean - row["RI-T"].acc_mean
        row["metric"] = metric
        out.append(row)
    return out


def test_noise(row: dict) -> float:
    """One run's test noise on a row's target: the binomial standard deviation sqrt(a (1 - a) / n) of an accuracy
    ``a`` (the mean of the two arms) measured on ``n`` test images; NaN for a mean AUC or before any run is done. It
    is part of each seed's spread (``acc_std``), which it should be small against."""
    a = (row["P-T"].acc_mean + row["RI-T"].acc_mean) / 2
    n = row.get("n_test", 0)
    if row.get("metric", M.ACC) != M.ACC or not n or not math.isfinite(a):
        return float("nan")
    return math.sqrt(a * (1 - a) / n)


def format_table(rows: list[dict], speed_k: int, speed_fraction: float) -> str:
    """A plain-text table (what ``transferscope run`` prints at the end): accuracy, ``AUC`` (mean AUC) for
    multi-label targets, ``acc/AUC`` when the table holds both."""
    word = M.metric_labels((r.get("metric", M.ACC) for r in rows), "/", short=True)
    head = (f"{'target':<20} {'block':>5}  {'P-T ' + word:>13}  {'RI-T ' + word:>13}  {'gain':>6}  "
            f"{word + '@' + str(speed_k) + 'ep P-T/RI-T':>19}  "
            f"{'steps->' + format(speed_fraction, 'g') + ' P-T/RI-T':>19}")
    lines = [head, "-" * len(head)]

    def f(x: float, fmt: str) -> str:
        return "n/a" if x is None or not math.isfinite(x) else format(x, fmt)

    for r in rows:
        p, ri = r["P-T"], r["RI-T"]
        lines.append(
            f"{r['target'][:20]:<20} {r['block_size']:>5}  {f(p.acc_mean, '.3f'):>6}±{f(p.acc_std, '.3f'):<6}"
            f"  {f(ri.acc_mean, '.3f'):>6}±{f(ri.acc_std, '.3f'):<6}  {f(r['gain'], '+.3f'):>6}  "
            f"{f(p.speed_mean_acc_k, '.3f'):>9}/{f(ri.speed_mean_acc_k, '.3f'):<9}  "
            f"{f(p.speed_steps_to_frac, '.0f'):>9}/{f(ri.speed_steps_to_frac, '.0f'):<9}"
        )
    return "\n".join(lines)


def status_counts(plan: Plan, store: Store) -> dict[str, int]:
    """Runs done, failed, blocked (every learning-rate candidate they wait for failed) and still to train (runs
    waiting for a learning-rate choice count as pending)."""
    from .tuning import choose

    c = {"done": 0, "failed": 0, "blocked": 0, "pending": 0}
    total = plan.size()
    resolved = resolve(plan, store)
    for rid in {r.run_id for r in resolved.tuning + resolved.runs}:
        st = store.run_status(rid)
        if st in (RUN_DONE, RUN_FAILED):
            c["done" if st == RUN_DONE else "failed"] += 1
    failed = {sel.key for sel in plan.selections if choose(sel, store).state == "failed"}
    c["blocked"] = sum(1 for t, sel in plan.deferred if sel.key in failed and not sel.is_winner(t))
    c["pending"] = max(0, total - c["done"] - c["failed"] - c["blocked"])
    return c


def checkpoint_gains(results: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Per target of the checkpoint sweep: (checkpoint, P-T test accuracy from it, mean over seeds, minus RI-T's at
    the sweep's block size), from the ``transfer/all`` and ``basin/<target>`` analysis records
    (:class:`~transferscope.vocab.records.TransferResult`, :class:`~transferscope.vocab.records.BasinResult`)."""
    transfer = results.get("transfer/all")
    out = {}
    for key, b in results.items():
        if not key.startswith("basin/"):
            continue
        t = key.split("/", 1)[1]
        base = transfer.row(t, b.block_size) if transfer else None
        ri = base.rit.acc_mean if base else math.nan
        if not math.isfinite(ri):
            continue
        per: dict[float, list[float]] = {}
        for r in b.rows:
            per.setdefault(r.checkpoint, []).append(r.test_acc)
        out[t] = [(e, float(np.mean(v)) - ri) for e, v in sorted(per.items())]
    return out


@dataclass(frozen=True)
class Flag:
    """Something in a study's results that weakens what can be read from them (``status`` prints them)."""

    kind: str
    """``underfit`` (a run below :data:`UNDERFIT_TRAIN_ACC` on its training split, unshuffled),
    ``uninformative-target`` (P-T under :data:`UNINFORMATIVE_CHANCE_MULTIPLE` x chance, unshuffled),
    ``lr-at-edge`` (a learning rate chosen at an end of its grid), ``no-fitting-lr`` (a learning rate chosen
    although no candidate of its grid fit its training data: the message says how to widen the grid; see
    :attr:`~transferscope.study.tuning.Choice.fit_warning`), ``changed-artefacts`` (a run's files no longer
    match the hashes recorded when it ended: it needs to be trained again)."""
    message: str
    arm: str = ""
    target: str = ""
    block_size: int = 0
    run_id: str = ""
    """The run concerned (``underfit``, ``changed-artefacts``; for a learning-rate choice, its chosen candidate,
    which tells a basin checkpoint's choice from the final P-T's); empty for a target."""
    value: float = math.nan
    """``train_acc_final`` (underfit), P-T's mean test accuracy (uninformative-target), the chosen learning rate
    (lr-at-edge, no-fitting-lr); NaN for changed-artefacts."""
    threshold: float = math.nan
    """What ``value`` was compared with (NaN for lr-at-edge, no-fitting-lr and changed-artefacts)."""
    files: tuple[str, ...] = ()
    """The mismatching files (changed-artefacts)."""

    def to_dict(self) -> dict:
        return {**asdict(self), "files": list(self.files)}


def _num_classes(store: Store, run_id: str, metrics: dict) -> int | None:
    k = metrics.get("num_classes")
    if k is None:
        k = (store.run_info(run_id) or {}).get("num_classes")
    return int(k) if k else None


def uninformative_threshold(num_classes: int, metric: str = M.ACC) -> float:
    """Mean test accuracy under which a target is uninformative (see :data:`UNINFORMATIVE_CHANCE_MULTIPLE`). For a
    multi-label target (``metric`` ``auc``) chance is an AUC of 0.5 whatever the labels, and the bar is halfway
    between it and 1: 0.75 (the accuracy's rule at two classes)."""
    if metric == M.AUC:
        num_classes = 2
    chance = 1.0 / num_classes
    return min(UNINFORMATIVE_CHANCE_MULTIPLE * chance, (1.0 + chance) / 2)


def flags(plan: Plan, store: Store, *, min_train_acc: float = UNDERFIT_TRAIN_ACC) -> list[Flag]:
    """What to be wary of in a study's stored results: runs that did not fit their training data, uninformative
    targets, learning rates chosen at the edge of their grid or chosen although no candidate of their grid fit its
    training data (judged, as underfit runs are, on ``train_acc_final`` / ``train_auc_final`` under
    :data:`UNDERFIT_TRAIN_ACC`, at every block size a grid is swept at), and runs whose files changed after they
    ended.

    Underfitting and uninformative targets are judged at the unshuffled block size (the image size) only: on
    shuffled images a low accuracy can be the very effect measured. Runs that have not finished are skipped, and
    so are runs that did not record ``train_acc_final`` (older versions). Multi-label runs are judged alike on
    their mean AUC (``train_auc_final`` under ``min_train_acc``; P-T's test mean AUC under 0.75, see
    :func:`uninformative_threshold`).
    """
    out: list[Flag] = []
    resolved = resolve(plan, store)
    unshuffled = plan.config.data.image_size
    pt_acc: dict[str, list[float]] = {}
    classes: dict[str, int] = {}
    metric_of: dict[str, str] = {}
    for r in resolved.runs:
        if r.arm == "P" or r.block_size != unshuffled or store.run_status(r.run_id) != RUN_DONE:
            continue
        m = store.read_json(r.run_id, "metrics.json")
        metric = M.metric_of(m)
        acc = m.get(f"train_{metric}_final")  # train_acc_final, train_auc_final
        if not fits(acc, min_train_acc):  # one rule with the learning-rate choice (float32 figures)
            out.append(Flag("underfit", f"{r.run_id}: training {M.metric_label(metric)} {acc:.3f} of its final model "
                                        f"is under {min_train_acc:g}: it did not fit its training data", r.arm,
                            r.domain.display, r.block_size, r.run_id, float(acc), min_train_acc))
        test = m.get(M.key("test", metric))
        if r.arm == "P-T" and r.parent_checkpoint < 0 and test is not None:
            pt_acc.setdefault(r.domain.display, []).append(test)
            metric_of[r.domain.display] = metric
            k = _num_classes(store, r.run_id, m)
            if k:
                classes[r.domain.display] = k
    for target, accs in pt_acc.items():
        if target not in classes:
            continue
        metric = metric_of.get(target, M.ACC)
        mean, bar = float(np.mean(accs)), uninformative_threshold(classes[target], metric)
        if mean < bar:
            what = (f"{classes[target]} classes, chance {1 / classes[target]:.3f}" if metric == M.ACC else
                    f"{classes[target]} labels, chance 0.5")
            out.append(Flag("uninformative-target",
                            f"target {target}: P-T's mean test {M.metric_label(metric)} unshuffled, {mean:.3f}, is "
                            f"under {bar:.3f} ({what}): it tells little about transfer", "P-T", target, unshuffled, "",
                            mean, bar))
    for c in choices(plan, store):
        s = c.selection
        # the chosen candidate: it says which runs the choice concerns (a basin checkpoint's, or the final P-T's)
        won = next((x.run_id for x in s.candidates if x.train.lr == c.lr), "")
        # with no candidate that fits, where the best validation figure sits says little, and its advice (extend
        # towards it) can contradict the fit warning's (extend towards where training fit best): that one alone
        if c.at_edge and not c.none_fit:
            out.append(Flag("lr-at-edge", c.warning, s.arm, s.target, s.block_size, won, value=c.lr))
        if c.none_fit and c.state == "chosen":
            out.append(Flag("no-fitting-lr", c.fit_warning, s.arm, s.target, s.block_size, won, value=c.lr))
    for rid, r in {x.run_id: x for x in resolved.tuning + resolved.runs}.items():
        bad = store.verify_run(rid)
        if bad:
            out.append(Flag("changed-artefacts", f"{rid}: {', '.join(bad)} changed since the run ended; "
                                                 f"{rerun_hint(store.root, rid)}",
                            r.arm, r.domain.display, r.block_size, rid, files=tuple(bad)))
    return out


def format_flags(fs: list[Flag]) -> str:
    """Plain text, one line per flag (what ``status`` and ``run`` print); empty when there is none."""
    if not fs:
        return ""
    return "\n".join(["warnings:"] + [f"  [{f.kind}] {f.message}" for f in fs])
