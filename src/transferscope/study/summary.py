"""Tables of a study's results, read from the store (no torch needed)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..store import RUN_DONE, RUN_FAILED, Store
from .plan import Plan
from .tuning import resolve

__all__ = ["ArmCell", "results_table", "format_table", "status_counts", "checkpoint_gains"]


@dataclass(frozen=True)
class ArmCell:
    n: int
    acc_mean: float
    acc_std: float
    speed_mean_acc_k: float
    speed_steps_to_frac: float


def _mean_std(v: list[float]) -> tuple[float, float]:
    a = np.asarray([x for x in v if x is not None and math.isfinite(x)], dtype=float)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def results_table(plan: Plan, store: Store) -> list[dict]:
    """One row per (target, block size): P-T and RI-T test accuracy (mean, std over seeds) and speed figures.

    Only the main P-T runs (from the final pre-training weights) count here; the checkpoint sweep is separate.
    """
    rows: dict[tuple[str, int], dict[str, list[dict]]] = {}
    for r in resolve(plan, store).runs:
        if r.arm == "P" or r.parent_checkpoint >= 0:
            continue
        cell = rows.setdefault((r.domain.display, r.block_size), {"P-T": [], "RI-T": []})
        if store.run_status(r.run_id) == RUN_DONE:
            cell[r.arm].append(store.read_json(r.run_id, "metrics.json"))
    out = []
    for (target, b), arms in rows.items():
        row = {"target": target, "block_size": b}
        for arm, ms in arms.items():
            m, s = _mean_std([x["test_acc"] for x in ms])
            k, _ = _mean_std([x["speed_mean_acc_k"] for x in ms])
            st, _ = _mean_std([x["speed_steps_to_frac"] for x in ms])
            row[arm] = ArmCell(len(ms), m, s, k, st)
        row["gain"] = row["P-T"].acc_mean - row["RI-T"].acc_mean
        out.append(row)
    return out


def format_table(rows: list[dict], speed_k: int, speed_fraction: float) -> str:
    """A plain-text table (what ``transferscope run`` prints at the end)."""
    head = (f"{'target':<20} {'block':>5}  {'P-T acc':>13}  {'RI-T acc':>13}  {'gain':>6}  "
            f"{'acc@' + str(speed_k) + 'ep P-T/RI-T':>19}  {'steps->' + format(speed_fraction, 'g') + ' P-T/RI-T':>19}")
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


def checkpoint_gains(results: dict[str, dict]) -> dict[str, list[tuple[float, float]]]:
    """Per target of the checkpoint sweep: (checkpoint, P-T test accuracy from it, mean over seeds, minus RI-T's at
    the sweep's block size), from the ``transfer/all`` and ``basin/<target>`` analysis results."""
    table = {(r["target"], r["block_size"]): r for r in results.get("transfer/all", {}).get("rows", [])}
    out = {}
    for key, b in results.items():
        if not key.startswith("basin/"):
            continue
        t = key.split("/", 1)[1]
        base = table.get((t, b["block_size"]))
        ri = base.get("RI-T_acc_mean") if base else None
        if ri is None or not math.isfinite(ri):
            continue
        per: dict[float, list[float]] = {}
        for r in b["rows"]:
            per.setdefault(r["checkpoint"], []).append(r["test_acc"])
        out[t] = [(e, float(np.mean(v)) - ri) for e, v in sorted(per.items())]
    return out
