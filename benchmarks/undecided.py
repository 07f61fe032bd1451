"""Why each claim a study left undecided stays so: the seeds its undecided effects would need.

Run by hand on an analysed results folder:

    .venv/bin/python benchmarks/undecided.py results/quick [--within 12] [--markdown]

For each claim that is neither "holds" nor "does not hold", per target whose outcome is not decisive, the
inconclusive effects and the seeds per arm each would need to decide at its observed effect and spread and at the
Holm level it faced (``seeds_needed`` of ``claims.json``: the interval's half-width shrinks as 1 / sqrt(n)). An
effect that no number of seeds up to 1,000 would decide (its estimate sits on the bound, or it has no spread) shows
as ``-``. A target is *within reach* when one of its inconclusive effects would decide within ``--within`` seeds,
which ``run --until-decided --max-seeds N`` can add; the claim's last column names the targets beyond it.

A claim holds only where it holds on every target, so one target beyond reach keeps it from holding; it can still
be found not to hold on another. The table reads the verdicts as they are: it chooses nothing.
"""

from __future__ import annotations

import argparse

from transferscope.claims.compare import load_verdicts
from transferscope.claims.stats import FAILS, HOLDS

DECISIVE = {HOLDS, FAILS}


def rows(results: str, within: int) -> list[tuple[str, str, str, str]]:
    out = []
    for v in load_verdicts(results):
        if v.outcome in DECISIVE:
            continue
        parts, beyond = [], []
        for t in v.targets:
            if t.outcome in DECISIVE:
                continue
            need = [e.seeds_needed for e in t.effects if e.outcome not in DECISIVE]
            known = sorted(n for n in need if n is not None)
            text = ", ".join(map(str, known)) + (", " if known and None in need else "") + \
                ("-" if None in need else "")
            parts.append(f"{t.target}: {text or 'n/a'}")
            if not (known and known[0] <= within):
                beyond.append(t.target)
        out.append((v.claim, v.outcome, "; ".join(parts), ", ".join(beyond) or "none"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("--within", type=int, default=12, help="seeds per arm a round may add (default 12)")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    table = rows(a.results, a.within)
    head = ("claim", "outcome", "seeds per arm its undecided effects would need, per undecided target",
            f"targets beyond {a.within} seeds")
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("| " + " | ".join("---" for _ in head) + " |")
        for r in table:
            print("| " + " | ".join(r) + " |")
        return
    for r in table:
        print(f"{r[0]:<4} {r[1]:<13} {r[2]}\n{'':<18} beyond {a.within} seeds: {r[3]}")


if __name__ == "__main__":
    main()
