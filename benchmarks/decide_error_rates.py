"""Deciding in rounds: the error rate under repeated looks, and the power, by simulation with the project's own code.

Each simulated study is a family the make-up of the default study's (three targets; per target 11 Welch contrasts,
2 means, 11 pair statistics jackknifed over seeds, 2 claims of sameness), judged after each round by
``claims.decide`` at the level its look spends and grown by ``claims.sequential.plan_seeds`` (the seeds the next
round adds to the cells the undecided effects read), from 4 seeds per cell up to ``--max-seeds``.

* Under the null (every true effect on its claim's bound, or on the edge of its margin of sameness) any decisive
  outcome is wrong: the table gives the fraction of studies with at least one, with its 95% (Wilson) interval, for
  each spending function and, to show what the spending prevents, for the fixed design's level at every look.
* The power: the fraction of effects decisive (and the studies with one on the wrong side) when every true effect
  lies d per-seed standard deviations on the claim's side, at the sizes the default study observes (``--from
  RESULTS``: the quartiles of |estimate - bound| / per-seed sd over its effects; else 0.5, 1, 1.5, 2), for the
  study in rounds and for fixed designs of the first round's seeds and of ``--max-seeds`` seeds, with the seeds
  per cell each used.

    .venv/bin/python benchmarks/decide_error_rates.py [--studies 2000] [--from results/quick]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from transferscope.claims.simulate import simulate_sequential
from transferscope.claims.stats import ALPHA

PER_TARGET = {"welch": 11, "mean": 2, "jackknife": 11, "within": 2}
"""The default study's 75 effects over its three targets (as benchmarks/error_rate.py counts them), per target."""
TARGETS = 3


def observed(results: Path) -> tuple[float, list[float]]:
    """From a study's claims.json: the median per-seed sd of its effects in accuracy (what the margins of sameness
    are in), and the quartiles of its effects' sizes |estimate - bound| / per-seed sd."""
    d = json.loads((results / "analyses" / "claims.json").read_text())
    sds, sizes = [], []
    for v in d["verdicts"]:
        for t in v["targets"]:
            for e in t["effects"]:
                se, n = e.get("se"), e.get("n", 0)
                if not (isinstance(se, float) and math.isfinite(se) and se > 0 and n >= 2):
                    continue
                sd = se * math.sqrt(n / 2 if "Welch" in e["method"] else n)
                sizes.append(abs(e["value"] - e["bound"]) / sd)
                if "accuracy" in e["unit"]:
                    sds.append(sd)
    return float(np.median(sds)) if sds else 0.03, [float(q) for q in np.quantile(sizes, [0.25, 0.5, 0.75])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=2000, help="simulated studies per row under the null")
    ap.add_argument("--power-studies", type=int, default=200, help="simulated studies per row of the power table")
    ap.add_argument("--seeds", type=int, default=4, help="seeds per cell of the first round")
    ap.add_argument("--max-seeds", type=int, default=8)
    ap.add_argument("--looks", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--from", dest="results", type=Path, help="a default study's results folder (its claims.json)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sd, sizes = observed(args.results) if args.results else (0.03, [0.5, 1.0, 1.5, 2.0])
    m = TARGETS * sum(PER_TARGET.values())
    print(f"simulated studies of {m} effects ({TARGETS} targets x {PER_TARGET}), {args.seeds} seeds per cell first, "
          f"at most {args.max_seeds}; per-seed sd {sd:.3g}" + (f" (median of {args.results})" if args.results else ""))
    print(f"\nunder the null ({args.studies} studies each): studies with any wrong decisive outcome")
    print(f"{'looks':>5} {'spending':<28} {'any wrong':>9} {'95% interval':>16} {'seeds/cell':>10} {'looks used':>10} "
          f"{'s':>6}")
    for k in args.looks:
        for spending in ("obrien-fleming", "pocock", "equal", None):
            t = time.perf_counter()
            r = simulate_sequential(args.studies, TARGETS, args.seeds, args.max_seeds, k, kinds=PER_TARGET, sd=sd,
                                    seed=args.seed, **({"spending": spending} if spending else
                                                       {"levels": (ALPHA,) * k}))
            lo, hi = r.interval()
            name = spending or "none (0.025 at every look)"
            print(f"{k:>5} {name:<28} {r.any_wrong:>9.4f} [{lo:.4f}, {hi:.4f}] {r.seeds_per_cell:>10.2f} "
                  f"{r.looks_per_study:>10.2f} {time.perf_counter() - t:>6.0f}", flush=True)
    print(f"\npower ({args.power_studies} studies each): the fraction of the {m} effects decisive, the studies with one "
          "on the wrong side, the seeds per cell")
    print(f"{'d (sd)':>7} {'design':<34} {'decisive':>8} {'wrong side':>10} {'seeds/cell':>10}")
    designs = [(f"fixed, {args.seeds} seeds", args.seeds, args.seeds, 1, "obrien-fleming"),
               (f"fixed, {args.max_seeds} seeds", args.max_seeds, args.max_seeds, 1, "obrien-fleming")]
    designs += [(f"rounds, {k} looks, {sp}", args.seeds, args.max_seeds, k, sp) for k in args.looks
                for sp in ("obrien-fleming", "equal")]
    for d in sizes:
        for name, n0, mx, k, sp in designs:
            r = simulate_sequential(args.power_studies, TARGETS, n0, mx, k, kinds=PER_TARGET, sd=sd, shift=d,
                                    spending=sp, seed=args.seed + 1)
            print(f"{d:>7.2f} {name:<34} {r.decisive_per_study / m:>8.3f} {r.any_wrong:>10.3f} "
                  f"{r.seeds_per_cell:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
