"""Are the verdicts stable? The default study with disjoint seed sets and different pre-training seeds (by hand).

    .venv/bin/python benchmarks/verdict_stability.py     # two runs: the profile's seeds / its P, as many other seeds / P + 1
    .venv/bin/python benchmarks/verdict_stability.py --run 0,1,2:0 --run 10,11,12:7 --run 20,21,22:3
    .venv/bin/python benchmarks/verdict_stability.py --existing results/quick --run 5,6,7,8,9:1   # beside make demo's

Each ``--run SEEDS:PRETRAIN_SEED`` trains (or resumes) the study into ``ROOT/<name>-s<seeds>-p<seed>``, analyses
it and judges every claim. It prints claim x run -> outcome, then counts, per claim, the contradictions (holds
in one run, does not hold in another: there must be none) and the inconclusive verdicts, and the number of
decisive (holds / does not hold) outcomes, overall and per target. ``--only-judge`` reads finished folders.
Exit status 1 if any contradiction is found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from transferscope.api import analyze_study
from transferscope.claims import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED
from transferscope.claims.stats import UNRELIABLE
from transferscope.config import StudyConfig, from_dict, load_config, to_dict
from transferscope.store import Store, atomic_write_text, dumps
from transferscope.study import execute, make_plan

SHORT = {HOLDS: "holds", FAILS: "FAILS", INCONCLUSIVE: "incon.", NOT_MEASURED: "n/m", UNRELIABLE: "unrel."}


def _parse(run: str) -> tuple[list[int], int]:
    seeds, _, p = run.partition(":")
    return [int(s) for s in seeds.split(",")], int(p or 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick", help="a built-in study or a TOML file")
    ap.add_argument("--run", action="append", default=None, help="SEEDS:PRETRAIN_SEED, e.g. 0,1,2:0 (repeatable)")
    ap.add_argument("--root", default="results/stability")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only-judge", action="store_true", help="read finished folders, train nothing")
    ap.add_argument("--existing", action="append", default=[],
                    help="a finished results folder (e.g. of `make demo`) to judge beside the runs (repeatable)")
    a = ap.parse_args()
    base = load_config(a.profile)
    other = list(range(max(base.seeds) + 1, max(base.seeds) + 1 + len(base.seeds)))  # as many seeds, none shared
    default = [(list(base.seeds), base.pretrain_seed), (other, base.pretrain_seed + 1)]
    runs = [_parse(r) for r in a.run] if a.run else ([] if a.existing else default)
    table: dict[str, list] = {}
    names = []
    studies = [(Path(f), from_dict(StudyConfig, json.loads((Path(f) / "study.json").read_text())), True)
               for f in a.existing]
    for seeds, pseed in runs:
        cfg = load_config(a.profile, [f"seeds={seeds}", f"pretrain_seed={pseed}"])
        studies.append((Path(a.root) / f"{cfg.name}-s{'_'.join(map(str, seeds))}-p{pseed}", cfg, a.only_judge))
    for folder, cfg, only_judge in studies:
        name = f"{folder.name} (seeds {','.join(map(str, cfg.seeds))}; P seed {cfg.pretrain_seed})"
        names.append(name)
        plan = make_plan(cfg)
        store = Store(folder)
        t0 = time.perf_counter()
        if not only_judge:
            store.root.mkdir(parents=True, exist_ok=True)
            # study.json, as `transferscope run` writes it: status, report and compare then read the folder
            atomic_write_text(store.root / "study.json", dumps(to_dict(cfg)))
            execute(plan, store, jobs=a.jobs, show_progress=False)
        # judged as `transferscope analyze` judges (the caveats of the runs included: an outcome resting on runs that
        # did not fit is unreliable, never decisive), writing the same claims.json
        vs = analyze_study(folder, show_progress=False, jobs=a.jobs).primary
        print(f"{name}: trained and analysed in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for v in vs:
            table.setdefault(v.claim, []).append(v)
    w = max(12, *(len(n) for n in names))
    print("\n".join(f"run {i}: {n}" for i, n in enumerate(names)))
    names = [f"run {i}" for i in range(len(names))]
    w = 12
    print(f"{'claim':<6} " + " ".join(f"{n[:w]:<{w}}" for n in names) + "  contradiction")
    contradictions = inconclusive = decisive = total = 0
    target_rows = []
    for claim, vs in table.items():
        outs = [v.outcome for v in vs]
        bad = HOLDS in outs and FAILS in outs
        contradictions += bad
        inconclusive += outs.count(INCONCLUSIVE)
        decisive += sum(o in (HOLDS, FAILS) for o in outs)
        total += len(outs)
        print(f"{claim:<6} " + " ".join(f"{SHORT[o]:<{w}}" for o in outs) + ("  YES" if bad else ""))
        targets = sorted({t.target for v in vs for t in v.targets})
        for t in targets:
            to = [next((x.outcome for x in v.targets if x.target == t), NOT_MEASURED) for v in vs]
            target_rows.append((claim, t, to, HOLDS in to and FAILS in to))
    print(f"\nper target:\n{'claim':<6} {'target':<20} " + " ".join(f"{n[:w]:<{w}}" for n in names))
    for claim, t, to, bad in target_rows:
        print(f"{claim:<6} {t[:20]:<20} " + " ".join(f"{SHORT[o]:<{w}}" for o in to) + ("  CONTRADICTION" if bad else ""))
    t_contra = sum(bad for *_, bad in target_rows)
    t_dec = sum(o in (HOLDS, FAILS) for _, _, to, _ in target_rows for o in to)
    t_all = sum(len(to) for _, _, to, _ in target_rows)
    print(f"\nclaims: {contradictions} contradictions, {decisive} decisive and {inconclusive} inconclusive of {total} "
          f"outcomes; per target: {t_contra} contradictions, {t_dec} decisive of {t_all}")
    return 1 if contradictions or t_contra else 0


if __name__ == "__main__":
    sys.exit(main())
