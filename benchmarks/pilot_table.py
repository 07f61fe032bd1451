"""The pilot table: what a design of the default study is chosen by (P's gain and its spread per target), for
finished pilot studies side by side.

Run by hand on pilot results folders (seeds a confirmatory study does not use), one folder per design:

    .venv/bin/python benchmarks/pilot_table.py results/pilot-a results/pilot-b [--block 28] [--markdown]

Per design and target, at one block size (default: unshuffled):

- ``P-T``, ``RI-T``: test accuracy, mean +- sd over seeds (the seed-to-seed spread);
- ``gain``: P-T minus RI-T, and ``d``: the gain over the pooled per-seed sd, sqrt((sd_PT^2 + sd_RIT^2) / 2),
  the standardised effect a number of seeds has to resolve;
- ``n80``: seeds per arm for 80 % power of a two-sided test at 0.05 / 75 (a Bonferroni share of the default's
  family of about 75 effects; Holm's first steps are as strict), ``(z_a + z_0.8)^2 * 2 / d^2``, at least 2;
- ``test sd``: one run's test noise, sqrt(a (1 - a) / n_test) at the arms' mean accuracy, to set against the
  seed spread;
- ``MMD2``: the squared MMD (Gaussian kernel, median bandwidth) between P's pooled features of source test images
  and of the target's training images (the input distance the study's ``scores`` analysis measures);
- per design: P's test accuracy and the training cost (run-seconds per arm, summed over runs).

The rule the default's design is chosen by (README, "The quick study") reads ``d`` and the cost only: never a
verdict.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from scipy import stats

from transferscope.analyses.kernels import scores
from transferscope.api import study_folder
from transferscope.devices import cpu_sample
from transferscope.study import make_plan
from transferscope.study.artefacts import domain_data, load_run_model
from transferscope.study.summary import results_table, test_noise
from transferscope.study.tuning import resolve

FAMILY = 75
"""About the number of effects the default study judges together (Holm over the whole family)."""


def seeds_for_power(d: float, alpha: float = 0.05 / FAMILY, power: float = 0.8) -> float:
    """Seeds per arm for a two-sided two-sample test at ``alpha`` to reach ``power`` at standardised effect ``d``
    (normal approximation)."""
    if not math.isfinite(d) or d == 0:
        return math.inf
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(2.0, 2 * z * z / (d * d))


def design_rows(folder: Path, block: int) -> tuple[dict, list[dict]]:
    store, cfg = study_folder(folder)
    plan = make_plan(cfg, check=False)
    p_spec = plan.pretrain()
    p_metrics = store.read_json(p_spec.run_id, "metrics.json")
    runs = resolve(plan, store).runs  # the learning-rate choice made: the runs the study kept
    cost: dict[str, float] = {}
    for r in runs:
        try:
            cost[r.arm] = cost.get(r.arm, 0.0) + float(store.read_json(r.run_id, "run.json")["seconds"])
        except (FileNotFoundError, KeyError):
            continue
    head = {"design": cfg.name, "folder": str(folder), "P test acc": p_metrics["test_acc"],
            "P epochs": cfg.pretrain.epochs, "width": cfg.model.width, "seeds": len(cfg.seeds),
            **{f"{arm} run-s": s for arm, s in sorted(cost.items())}}
    p_model = load_run_model(store, p_spec, "weights", "cpu")
    src = cpu_sample(domain_data(cfg.source, cfg.data).test, 300, 0).x
    rows = []
    for row in results_table(plan, store):
        if row["block_size"] != block:
            continue
        pt, ri = row["P-T"], row["RI-T"]
        sd = math.sqrt((pt.acc_std ** 2 + ri.acc_std ** 2) / 2)
        d = row["gain"] / sd if sd > 0 else math.nan
        t = next(t for t in cfg.targets if t.display == row["target"])
        sc = scores(p_model, p_model, domain_data(t, cfg.data), seed=0, source_x=src, layer="pool")
        rows.append({"target": row["target"], "P-T": (pt.acc_mean, pt.acc_std), "RI-T": (ri.acc_mean, ri.acc_std),
                     "gain": row["gain"], "d": d, "n80": seeds_for_power(d), "n_test": row["n_test"],
                     "test sd": test_noise(row), "MMD2": sc.mmd2_rbf,
                     "LEEP": sc.leep})
    return head, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="finished pilot results folders, one per design")
    ap.add_argument("--block", type=int, default=28, help="the block size to tabulate (default 28: unshuffled)")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (for the README)")
    args = ap.parse_args()
    out = []
    for f in args.folders:
        head, rows = design_rows(f, args.block)
        out.append((head, rows))
        print("design {design}: P {P epochs} epochs, width {width}, P test acc {P test acc:.3f}, {seeds} seeds; "
              "run-seconds {cost}".format(**head, cost=", ".join(f"{k[:-6]} {v:.0f}" for k, v in head.items()
                                                                   if k.endswith(" run-s"))))
    cols = ["design", "target", "P-T", "RI-T", "gain", "d", "n80", "test sd", "n_test", "MMD2", "LEEP"]
    fmt = {"P-T": lambda v: f"{v[0]:.3f} ± {v[1]:.3f}", "RI-T": lambda v: f"{v[0]:.3f} ± {v[1]:.3f}",
           "gain": lambda v: f"{v:+.3f}", "d": lambda v: f"{v:+.2f}", "n80": lambda v: f"{v:.0f}",
           "test sd": lambda v: f"{v:.3f}", "n_test": str, "MMD2": lambda v: f"{v:.3f}",
           "LEEP": lambda v: f"{v:.2f}"}
    lines = [[h["design"], r["target"], *(fmt[c](r[c]) for c in cols[2:])] for h, rs in out for r in rs]
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for ln in lines:
            print("| " + " | ".join(ln) + " |")
        return
    widths = [max(len(c), *(len(ln[i]) for ln in lines)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for ln in lines:
        print("  ".join(x.ljust(w) for x, w in zip(ln, widths, strict=True)))
    ds = {h["design"]: np.mean([r["d"] for r in rs]) for h, rs in out}
    print("\nmean d over targets: " + ", ".join(f"{k} {v:+.2f}" for k, v in ds.items()))


if __name__ == "__main__":
    main()
