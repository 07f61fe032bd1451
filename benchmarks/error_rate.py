"""The decision rule's error rates, by simulation with the project's own decision code.

Under true null effects (every effect exactly on its claim's bound, or on the edge of its margin of sameness), any
decisive outcome is wrong. For a family the size and make-up of the default study's (75 effects), this prints the
fraction of simulated studies with at least one wrong decisive outcome, either way, under the rule in force (Holm
over the family in both directions) and under the former one (an uncorrected 95% interval for "holds", Holm only
before "does not hold"), at 3 and 8 seeds; and, for the price paid, the share of true effects (3 sd on the claim's
side) each rule calls "holds".

    .venv/bin/python benchmarks/error_rate.py [--studies 2000]
"""

from __future__ import annotations

import argparse
import time

from transferscope.claims.simulate import simulate

# the default study's family as it measures it: 34 Welch contrasts (two of them claims of sameness), 36 pair statistics
# (jackknife; three of sameness, counted with the Welch ones here), 3 one-sample means and 2 rank correlations (as means)
FAMILY = {"welch": 32, "mean": 5, "jackknife": 33, "within": 5}  # the make-up of the default study's 75 effects


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    m = sum(FAMILY.values())
    print(f"{args.studies} simulated studies of {m} effects ({', '.join(f'{v} {k}' for k, v in FAMILY.items())})")
    print(f"{'rule':<34} {'seeds':>5} {'any wrong':>10} {'+-se':>6} {'wrong holds':>12} {'wrong fails':>12} "
          f"{'power (3 sd)':>13} {'s':>6}")
    for rule, label in (("asymmetric", "before: holds uncorrected"), ("holm-both", "after: Holm both ways")):
        for n in (3, 8):
            t = time.perf_counter()
            null = simulate(args.studies, FAMILY, n, seed=args.seed, rule=rule)
            alt = simulate(max(args.studies // 10, 50), FAMILY, n, seed=args.seed + 1, shift=3.0, rule=rule)
            print(f"{label:<34} {n:>5} {null.any_wrong:>10.3f} {null.se:>6.3f} {null.any_wrong_holds:>12.3f} "
                  f"{null.any_wrong_fails:>12.3f} {alt.decisive_per_study / m:>13.3f} {time.perf_counter() - t:>6.1f}")


if __name__ == "__main__":
    main()
