"""The default study's throughput: runs per minute, seconds per phase, and where a run's seconds go, before and after
a change, at several seed counts.

Run by hand (never part of the tests):

    .venv/bin/python benchmarks/study_throughput.py [--before REV] [--seeds 3,8] [--sides before,after]
        [--out DIR] [--table-only]

For each side (``before``: the source of git revision ``--before``, exported with ``git archive``; ``after``: this
checkout's source) and each seed count, the quick study with ``seeds = [0, .., n-1]`` is trained (``run_study``,
two one-thread workers, as ``transferscope run`` on 2 cores), analysed (``analyze_study``, as ``transferscope
analyze`` on 2 cores: two worker processes where the revision has them, else one process) and reported
(``render``), each side in a fresh process of its own source and a fresh results folder, with the data cache
filled beforehand (the cost of preparing the data is not the study's). The configurations run interleaved (3 seeds
before, 3 after, 8 before, 8 after): a machine that slows down meanwhile slows both sides of a seed count alike.
Each configuration's figures are kept in ``--out`` (``<side>-<seeds>.json``), so a long benchmark can be run in
parts, and the table is printed from every file there (``--table-only``: print it, run nothing).

The table: runs, the wall seconds of the training phase and runs per minute; the run-seconds of P, P-T and RI-T
(the sum of their ``seconds`` in ``run.json``: two workers share the wall time); the analyses in all and by name;
the report. Then the per-run profile, per arm, as medians over the runs: the whole run; its optimiser steps (and
their images per second); the evaluations and other bookkeeping while it trains; and the rest: the final model on
the whole training split ("did it fit?"), building the model, loading the data, writing and hashing the files (the
parts as the run recorded them in ``run.json``'s ``timing``, which revisions before it lack).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh process with the side's source first on sys.path; prints one JSON line. Uses only the public
# API that both sides have (run_study, analyze_study, render) and the files a run writes.
DRIVER = r"""
import json, os, sys, time
from pathlib import Path
from transferscope.api import analyze_study, render, run_study
results, seeds = sys.argv[1], int(sys.argv[2])
over = ["seeds=[" + ",".join(str(s) for s in range(seeds)) + "]"]
t0 = time.perf_counter()
run_study("quick", results, overrides=over, jobs=2, show_progress=False)
t1 = time.perf_counter()
try:  # as `transferscope analyze` on 2 cores: jobs side by side where the side has them (--jobs)
    a = analyze_study(results, show_progress=False, jobs=2)
except TypeError:  # a revision before analyze --jobs: every job in one process, as its command did
    a = analyze_study(results, show_progress=False)
t2 = time.perf_counter()
render(results)
t3 = time.perf_counter()
by_name = {}
for name, s in a.run.seconds.items():
    by_name[name.split("/")[0]] = by_name.get(name.split("/")[0], 0.0) + s
runs = []
for d in sorted(Path(results, "runs").iterdir()):
    info = json.loads((d / "run.json").read_text()) if (d / "run.json").is_file() else None
    if info is None or info.get("status") != "done":
        continue
    m = json.loads((d / "metrics.json").read_text())
    runs.append({"run_id": info["run_id"], "arm": info["arm"], "seconds": info["seconds"],
                 "trainer": m.get("seconds"), "steps": m.get("train_seconds"), "images_per_s": m.get("images_per_s"),
                 "timing": info.get("timing")})
print(json.dumps({"run_s": t1 - t0, "analyze_s": t2 - t1, "report_s": t3 - t2, "analyses": by_name, "runs": runs,
                  "load_after": os.getloadavg()[0]}))
"""

WARM = r"""
from transferscope.config import load_config
from transferscope.data import load_domain
cfg = load_config("quick")
for d in [cfg.source, *cfg.targets]:
    load_domain(d, cfg.data)
"""


def export(rev: str, into: Path) -> Path:
    """The ``src`` tree of git revision ``rev``, written under ``into``."""
    blob = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def measure(src: Path, results: Path, seeds: int, env: dict) -> dict:
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, "-c", DRIVER, str(results), str(seeds)], check=True, capture_output=True,
                         text=True, env={**env, "PYTHONPATH": str(src)})
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    fig["load_before"] = load
    return fig


def _median(xs: list) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def table(out: Path) -> str:
    figs = {}
    for p in sorted(out.glob("*.json")):
        side, _, seeds = p.stem.rpartition("-")
        figs[(int(seeds), 0 if side == "before" else 1, side)] = json.loads(p.read_text())
    if not figs:
        return f"no figures in {out}"
    cols = sorted(figs)
    head = [f"{side} {seeds} seeds" for seeds, _, side in cols]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn, fmt: str = "{:.0f}") -> None:
        cells = []
        for c in cols:
            try:
                v = fn(figs[c])
                missing = v is None or (isinstance(v, float) and math.isnan(v))
                cells.append("-" if missing else fmt.format(v))
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                cells.append("-")
        rows.append((label, cells))

    def arm_sum(f: dict, arm: str) -> float:
        return sum(r["seconds"] for r in f["runs"] if r["arm"] == arm)

    row("machine load (1 min) before / after", lambda f: f"{f['load_before']:.1f} / {f['load_after']:.1f}", "{}")
    row("runs trained", lambda f: len(f["runs"]))
    row("training phase, wall s", lambda f: f["run_s"])
    row("runs per minute", lambda f: len(f["runs"]) / f["run_s"] * 60, "{:.2f}")
    for arm in ("P", "P-T", "RI-T"):
        row(f"  {arm}: run-seconds (count)", lambda f, a=arm: f"{arm_sum(f, a):.0f} "
            f"({sum(r['arm'] == a for r in f['runs'])})", "{}")
    row("analyses, wall s", lambda f: f["analyze_s"])
    names = sorted({n for f in figs.values() for n in f.get("analyses", {})})
    for n in names:
        row(f"  {n}", lambda f, n=n: f["analyses"].get(n), "{:.1f}")
    row("report, wall s", lambda f: f["report_s"])
    row("study in all, wall s", lambda f: f["run_s"] + f["analyze_s"] + f["report_s"])
    for arm in ("P", "P-T", "RI-T"):
        rows.append((f"per {arm} run (median)", [""] * len(cols)))

        def runs(f: dict, a: str = arm) -> list[dict]:
            return [r for r in f["runs"] if r["arm"] == a]

        row("  whole run, s", lambda f: _median([r["seconds"] for r in runs(f)]), "{:.2f}")
        row("  optimiser steps, s", lambda f: _median([r["steps"] for r in runs(f)]), "{:.2f}")
        row("  steps' images/s", lambda f: _median([r["images_per_s"] for r in runs(f)]), "{:.0f}")
        row("  evaluations while training, s",
            lambda f: _median([r["trainer"] - r["steps"] for r in runs(f) if r["steps"] is not None]), "{:.2f}")
        row("  the rest (start, final evaluation, files), s",
            lambda f: _median([r["seconds"] - r["trainer"] for r in runs(f) if r["trainer"] is not None]), "{:.2f}")
        row("    of which the final evaluation on the training split, s",
            lambda f: _median([(r["timing"] or {}).get("train", math.nan) - r["trainer"] for r in runs(f)]), "{:.2f}")
        for part, what in (("data", "loading the data"), ("model", "building the model"), ("write", "the files")):
            row(f"    of which {what}, s",
                lambda f, p=part: _median([(r["timing"] or {}).get(p) for r in runs(f)]), "{:.2f}")
    width = max(len(label) for label, _ in rows)
    cw = max(12, *(len(h) for h in head))
    lines = [" " * width + " | " + " | ".join(h.rjust(cw) for h in head)]
    lines += [label.ljust(width) + " | " + " | ".join(c.rjust(cw) for c in cells) for label, cells in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="c77b68f", help="git revision of the 'before' side (default: c77b68f, the "
                    "code before the throughput work)")
    ap.add_argument("--seeds", default="3,8", help="seed counts, comma-separated")
    ap.add_argument("--sides", default="before,after")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "study_throughput")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env = {**os.environ, "TRANSFERSCOPE_CACHE": str(tmp / "cache")}
            srcs = {"after": ROOT / "src"}
            if "before" in args.sides:
                srcs["before"] = export(args.before, tmp / "before")
            subprocess.run([sys.executable, "-c", WARM], check=True, env={**env, "PYTHONPATH": str(ROOT / "src")})
            for seeds in (int(s) for s in args.seeds.split(",")):
                for side in args.sides.split(","):
                    print(f"{side}, {seeds} seeds ...", file=sys.stderr, flush=True)
                    fig = measure(srcs[side], tmp / f"{side}-{seeds}", seeds, env)
                    (args.out / f"{side}-{seeds}.json").write_text(json.dumps(fig))
    print(table(args.out))


if __name__ == "__main__":
    main()
