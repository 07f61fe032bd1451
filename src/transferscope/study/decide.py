"""A study that decides in rounds: train, analyse, judge at the look's level, add seeds where they are needed.

:func:`run_until_decided` is ``transferscope run --until-decided``. Round 1 trains the study's ``seeds``. After each
round it analyses (cached: only the jobs whose runs changed are computed) and judges every claim at the level its
look spends (:mod:`transferscope.claims.sequential`); then :func:`~transferscope.claims.sequential.plan_seeds`
picks the undecided effects whose projected seeds are within ``max_seeds`` and whose round fits the time left, and
the next round adds those seeds to exactly the cells of runs those effects read (P-T and RI-T of a target and block
size; the basin sweep's P-T runs from a checkpoint). It stops when every effect is decided, when none can be within
the limits, when the budget is spent or when the last look is done, and says which.

Seeds added are ordinary seeds: the study's config records them (``decide.added``), the plan makes their runs as
for any seed, and their run ids are those of a study that had them from the start. ``decide.json`` records the
design and each round (:mod:`.looks`); a study stopped in the middle goes on from its last finished round.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import jsonio
from ..claims import Verdict
from ..claims.sequential import SeedPlan, plan_seeds, settled
from ..claims.stats import FAILS, HOLDS
from ..config import AddedSeeds, ConfigError, DecideConfig, StudyConfig
from ..config.checks import parse_duration
from ..store import RUN_DONE, Store
from ..vocab.arms import PT, RIT, Cell
from .looks import LookState, Record, Round, design_of, look_state, read_record, write_record
from .plan import Plan, RunSpec, make_plan

if TYPE_CHECKING:
    from .analyze import AnalysisRun

__all__ = ["run_until_decided", "DecideSummary", "analyze_and_judge", "check_design", "RoundUnfinished",
           "DEFAULT_LOOKS", "cell_seeds"]

DEFAULT_LOOKS = 3
"""Looks of ``--until-decided`` when neither the flags nor the config's ``[decide]`` table set them."""


class RoundUnfinished(ConfigError):
    """``analyze`` of a study that decides in rounds whose current round still has runs to train."""


@dataclass
class DecideSummary:
    """What :func:`run_until_decided` did: the record (design, rounds, why it stopped) and the last verdicts."""

    record: Record
    verdicts: list[Verdict]
    claims: Path | None
    stopped: str


def check_design(cfg: StudyConfig, store: Store, looks: int | None = None, max_seeds: int | None = None,
                 budget: str | None = None, spending: str | None = None) -> tuple[StudyConfig, Record]:
    """The study's config with the design of its rounds and the seeds its rounds added, and the folder's record
    (a new one, not yet written, for a new study).

    The design is fixed before any result: a folder's own design wins where nothing else is asked; a flag or a
    ``[decide]`` table that asks for another is refused, and so is a folder whose verdicts were judged at a fixed
    design (``analyses/claims.json`` without ``decide.json``: looking again in rounds now would spend its error
    rate twice)."""
    asked = {k: v for k, v in (("looks", looks), ("max_seeds", max_seeds), ("budget", budget),
                               ("spending", spending)) if v is not None}
    declared = cfg.decide.looks > 0  # a [decide] table of the config: its values are asked for too
    if declared:
        for k in ("looks", "max_seeds", "budget", "spending"):
            asked.setdefault(k, getattr(cfg.decide, k))
    rec = read_record(store)
    if rec is None:
        if (store.root / "analyses" / "claims.json").is_file():
            raise ConfigError(f"{store.root}: its verdicts were judged at a fixed number of seeds "
                              "(analyses/claims.json); deciding in rounds must be fixed before any result, so it "
                              "cannot start here: run it in a new folder (--results), where its first round trains "
                              "the same seeds again")
        d = replace(cfg.decide, **asked)
        if d.looks < 1:
            d = replace(d, looks=DEFAULT_LOOKS)
        budget_s = parse_duration(d.budget) if d.budget else math.inf
        if budget_s is None:
            raise ConfigError(f"--budget {d.budget!r}: expected a duration such as '90s', '30m' or '1.5h'")
        if d.max_seeds < len(cfg.seeds):
            raise ConfigError(f"--max-seeds {d.max_seeds}: the study starts with {len(cfg.seeds)} seeds "
                              f"({cfg.seeds}); give at least that many")
        rec = Record(design_of(d.looks, d.spending, d.max_seeds, d.budget, budget_s, list(cfg.seeds)))
        return replace(cfg, decide=replace(d, added=[])), rec
    design = rec.design
    for k, v in asked.items():
        if design.get(k) != v and not (k == "budget" and (design.get(k) or "") == (v or "")):
            raise ConfigError(f"decide.{k} = {v!r}, but {store.root} decides in rounds with {k} = {design.get(k)!r} "
                              f"({store.root / 'decide.json'}): the design is fixed before any result; go on with "
                              "it (leave the flag out), or start another study in a new folder")
    if list(cfg.seeds) != list(design.get("initial_seeds", cfg.seeds)):
        raise ConfigError(f"seeds = {cfg.seeds}, but {store.root} started its rounds with seeds "
                          f"{design.get('initial_seeds')}; give the study its own seeds")
    added = [AddedSeeds(**a) for r in rec.rounds for a in r.added]
    d = DecideConfig(int(design["looks"]), int(design["max_seeds"]), str(design.get("budget") or ""),
                     str(design["spending"]), added)
    return replace(cfg, decide=d), rec


def _cell_of(r: RunSpec, primary: str) -> Cell | None:
    """The cell of a P-T (of the primary P, run id ``primary``) or RI-T run; None for any other run."""
    if r.arm not in (PT, RIT) or (r.arm == PT and r.parent != primary):
        return None
    return Cell(r.arm, r.domain.display, r.block_size, r.parent_checkpoint)  # checkpoint -1: from the final P


def cell_seeds(plan: Plan) -> dict[Cell, int]:
    """Seeds per cell of runs of the primary P: P-T and RI-T by target and block size, and the basin sweep's P-T
    runs by checkpoint (runs waiting for a learning-rate choice count)."""
    p = plan.pretrain().run_id
    out: dict[Cell, set[int]] = {}
    for r in plan.runs + [t for t, _ in plan.deferred]:
        cell = _cell_of(r, p)
        if cell is not None:
            out.setdefault(cell, set()).add(r.seed)
    return {c: len(s) for c, s in out.items()}


def _new_seeds(cfg: StudyConfig, cell: Cell) -> list[int]:
    """The seeds a cell would take next: the next integers after every seed the study uses anywhere (so that a seed
    means the same draw everywhere; seed k of one cell grown alone is seed k of a study run with it at once)."""
    have = set(cfg.seeds) | {s for a in cfg.decide.added if (a.arm, a.target, a.block_size, a.checkpoint) ==
                             (cell.arm, cell.target, cell.block, cell.checkpoint) for s in a.seeds}
    start = max(cfg.seeds) + 1
    return [s for s in range(start, start + 10_000) if s not in have]


def _added(cfg: StudyConfig, have: Mapping[Cell, int], want: Mapping[Cell, int]) -> list[AddedSeeds]:
    out = []
    for c in sorted(want):
        n = want[c] - have.get(c, 0)
        if n > 0:
            out.append(AddedSeeds(c.arm, c.target, c.block, c.checkpoint, _new_seeds(cfg, c)[:n]))
    return out


def side_by_side(run_seconds: float, wall_seconds: float) -> float:
    """How many runs trained at once, as the earlier rounds measured it: their runs' seconds over the wall seconds
    they took (at least 1; 1 before anything was measured)."""
    return max(1.0, run_seconds / wall_seconds) if wall_seconds > 0 else 1.0


def _recorded_analysis_s(store: Store) -> float:
    """The compute seconds of the analysis records in a results folder (``analyses/*.json``, ``seconds``)."""
    total = 0.0
    for f in (store.root / "analyses").glob("*.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            sec = jsonio.loads(f.read_text(encoding="utf-8")).get("seconds")
            total += float(sec) if isinstance(sec, (int, float)) and math.isfinite(sec) else 0.0
    return total


def _job_seconds(run: AnalysisRun) -> float:
    """The compute seconds of the analysis jobs an ``analyze`` computed (under every P), not of those cached."""
    return sum(run.seconds.values()) + sum(_job_seconds(r) for r in run.pretrained.values())


class _Cost:
    """Seconds a round would take: the runs it adds (each cell's mean seconds of its finished runs, else its arm's,
    spread over the runs trained side by side as the earlier rounds were) and the analyses (the first round's
    seconds per cell-seed, for the targets it changes)."""

    def __init__(self, plan: Plan, store: Store, rec: Record, have: Mapping[Cell, int]) -> None:
        from .tuning import resolve

        per_cell: dict[Cell, list[float]] = {}
        per_arm: dict[str, list[float]] = {}
        spans: list[tuple[float, float, float]] = []  # (started, finished, seconds) of each finished run
        p = plan.pretrain().run_id
        done = resolve(plan, store)  # the runs whose learning rate was chosen from a grid, and its candidates
        for r in {x.run_id: x for x in done.runs + done.tuning}.values():
            if store.run_status(r.run_id) != RUN_DONE:
                continue
            info = store.run_info(r.run_id) or {}
            sec = float(info.get("seconds") or math.nan)
            if not math.isfinite(sec):
                continue
            with contextlib.suppress(KeyError, TypeError, ValueError):  # every run, P's too: it trained beside them
                spans.append((float(info["started"]), float(info["finished"]), sec))
            c = _cell_of(r, p)
            if c is None:
                continue
            per_cell.setdefault(c, []).append(sec)
            per_arm.setdefault(r.arm, []).append(sec)
        self.cell = {c: sum(v) / len(v) for c, v in per_cell.items()}
        self.arm = {a: sum(v) / len(v) for a, v in per_arm.items()}
        # how many ran side by side: the runs the rounds trained (at the runs' mean seconds) over the rounds' wall
        # time; with no run trained by a round (a folder trained by a plain `run`, or copied), the runs' own seconds
        # over the span from the first start to the last end (a span with gaps only lowers it), else 1: the estimate
        # errs long, never short
        n = sum(len(v) for v in per_cell.values())
        mean_run = sum(sum(v) for v in per_cell.values()) / n if n else 0.0
        trained = sum(r.runs_trained for r in rec.rounds)
        if trained:
            self.side_by_side = side_by_side(mean_run * trained, sum(r.train_s for r in rec.rounds))
        else:
            first_start = min((x[0] for x in spans), default=0.0)
            last_end = max((x[1] for x in spans), default=0.0)
            self.side_by_side = side_by_side(sum(x[2] for x in spans), last_end - first_start)
        # the analyses: the first round's seconds; when it trained nothing (its analyses may have been found cached,
        # computed before it), the seconds the analysis records on disk took, as many side by side as the rounds'
        # computed jobs ran (their compute seconds over their wall time), else as the runs (1 when unmeasured)
        first = rec.rounds[0] if rec.rounds else None
        total = sum(have.values()) or 1
        seconds = first.analysis_s if first else 0.0
        computed = [r for r in rec.rounds if r.analysis_job_s > 0]
        self.analysis_side_by_side = (side_by_side(sum(r.analysis_job_s for r in computed),
                                                   sum(r.analysis_s for r in computed)) if computed
                                      else self.side_by_side)
        if first is not None and not first.runs_trained:
            seconds = max(seconds, _recorded_analysis_s(store) / self.analysis_side_by_side)
        self.analysis_per = seconds / total
        self.have = dict(have)
        self.pretrains = len(plan.pretrains())

    def runs(self, want: Mapping[Cell, int]) -> int:
        return sum(max(0, n - self.have.get(c, 0)) * (self.pretrains if c.arm == PT else 1) for c, n in want.items())

    def train(self, want: Mapping[Cell, int]) -> float:
        s = 0.0
        for c, n in want.items():
            k = max(0, n - self.have.get(c, 0)) * (self.pretrains if c.arm == PT else 1)
            s += k * self.cell.get(c, self.arm.get(c.arm, 0.0))
        return s / self.side_by_side

    def analysis(self, want: Mapping[Cell, int]) -> float:
        grown = {c.target for c, n in want.items() if n > self.have.get(c, 0)}
        seeds = sum(max(n, want.get(c, 0)) for c, n in self.have.items() if c.target in grown)
        return self.analysis_per * seeds

    def __call__(self, want: Mapping[Cell, int]) -> float:
        return self.train(want) + self.analysis(want)


def _fmt_s(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def format_plan(k: int, rec: Record, plan: SeedPlan, have: Mapping[Cell, int], cost: _Cost) -> str:
    """What the next round will do, and why: the claims and cells, the runs, the estimated time; what it leaves."""
    lines = [f"round {k} (look {k} of {rec.looks}, one-sided level {rec.levels[k - 1]:.3g} per direction):"]
    claims = sorted({p.claim for p in plan.chosen})
    lines.append(f"  for {len(plan.chosen)} undecided effects of claims {', '.join(claims)}, whose projected seeds "
                 f"are within --max-seeds {rec.design['max_seeds']}:")
    for c in sorted(plan.cells):
        readers = sorted({p.claim for p in plan.chosen if c in p.effect.cells})
        lines.append(f"    {c.label}: {have.get(c, 0)} -> {plan.cells[c]} seeds (for {', '.join(readers)})")
    for p in plan.chosen:
        lines.append(f"    why: {p.claim} {p.effect.target}: {p.effect.name}: {p.why}")
    lines.append(f"  {cost.runs(plan.cells)} runs; estimated {_fmt_s(plan.cost)} "
                 f"(training {_fmt_s(cost.train(plan.cells))}, analyses {_fmt_s(cost.analysis(plan.cells))})")
    for what, picks in (("beyond the limits", plan.out_of_reach), ("not a question of seeds", plan.not_seeds),
                        ("not within the time left", plan.over_budget)):
        if picks:
            names = sorted({f"{p.claim} {p.effect.target}" for p in picks})
            lines.append(f"  left undecided, {what}: {len(picks)} effects ({'; '.join(names[:8])}"
                         f"{'; ...' if len(names) > 8 else ''})")
            for why in sorted({p.why for p in picks})[:3]:
                lines.append(f"    ({why})")
    return "\n".join(lines)


def analyze_and_judge(plan: Plan, store: Store, **analyze_options: Any):
    """Analyse a study (cached) and judge it at its look: returns ``(run, verdicts by P, claims.json, look)``.

    A study that decides in rounds whose current round still has runs to train keeps its verdicts (those of the
    previous look) and raises :class:`RoundUnfinished` after the analyses are computed: judging it now would
    be a look its design did not plan."""
    from .analyze import analyze
    from .summary import status_counts
    from .verdicts import verdicts_by_pretrain, write_claims

    with store.lock():
        run = analyze(plan, store, **analyze_options)
        look = look_state(store)
        if look is not None:
            pending = status_counts(plan, store)["pending"]
            if pending:
                raise RoundUnfinished(
                    f"{store.root}: round {look.look} of this study that decides in rounds has {pending} runs still "
                    "to train, so it is not judged (its verdicts stay those of the last look, in "
                    f"analyses/claims.json; the analyses computed now are kept); go on with: transferscope run "
                    f"--until-decided --results {store.root}")
        by_p = verdicts_by_pretrain(plan, run, store, look)
        path = write_claims(store, next(iter(by_p.values())), by_p, plan, look)
    return run, by_p, path, look


def run_until_decided(cfg: StudyConfig, store: Store, *, train: Callable[[Plan], Any],
                      analyze_options: dict[str, Any], looks: int | None = None, max_seeds: int | None = None,
                      budget: str | None = None, spending: str | None = None,
                      say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> DecideSummary:
    """Run ``cfg`` in rounds into ``store`` (see the module's docstring). ``train(plan)`` trains a plan's unfinished
    runs (the local pool or Ray: :func:`~.runner.execute`); ``analyze_options``: those of :func:`~.analyze.analyze`
    (backend, device, threads, images). ``looks``, ``max_seeds``, ``budget``, ``spending``: the design (None: the
    config's ``[decide]`` table, the folder's own, or the defaults)."""
    cfg, rec = check_design(cfg, store, looks, max_seeds, budget, spending)
    budget_s = rec.design.get("budget_s") or math.inf
    vs: list[Verdict] = []
    claims: Path | None = None
    if rec.stopped:
        say(f"this study stopped at look {rec.rounds[-1].look}: {rec.stopped}")
        from ..claims.compare import load_verdicts

        return DecideSummary(rec, load_verdicts(store.root), store.root / "analyses" / "claims.json", rec.stopped)
    if not rec.rounds:
        rec.rounds.append(Round(1, plan={"why": f"the study's seeds {cfg.seeds}"}))
        say(f"deciding in rounds: at most {rec.looks} looks ({rec.design['spending']} spending: one-sided levels "
            f"{', '.join(f'{a:.3g}' for a in rec.levels)} per direction), at most {rec.design['max_seeds']} seeds per "
            f"cell, budget {rec.design.get('budget') or 'none'}; round 1 trains the seeds {cfg.seeds}")
        write_record(store, rec)  # the design, fixed before any result
    while True:
        r = rec.rounds[-1]
        plan = make_plan(cfg)
        if not r.judged:
            t0 = time.time()
            summary = train(plan)
            r.train_s += time.time() - t0
            r.runs_trained += len(getattr(summary, "done", ()))
            write_record(store, rec)
            t0 = time.time()
            ran, by_p, claims, _look = analyze_and_judge(plan, store, **analyze_options)
            r.analysis_s += time.time() - t0
            r.analysis_job_s += _job_seconds(ran)
            vs = next(iter(by_p.values()))
            before = _decided_keys(rec, store, r.look)
            now = {f"{v.claim} / {e.target} / {e.name}" for v in vs for e in v.effects if e.outcome in (HOLDS, FAILS)}
            r.decided_here = sorted(now - before)
            r.judged, r.decisive, r.effects = True, settled(vs), sum(len(v.effects) for v in vs)
            write_record(store, rec)
            say(f"look {r.look}: {r.decisive} of {r.effects} effects decisive ({len(r.decided_here)} new), "
                f"{sum(v.outcome in (HOLDS, FAILS) for v in vs)} of {len(vs)} claims; round {r.look}: "
                f"{r.runs_trained} runs trained, {_fmt_s(r.seconds)}")
        elif not vs:
            from ..claims.compare import load_verdicts

            vs, claims = load_verdicts(store.root), store.root / "analyses" / "claims.json"
        stop = ""
        if r.decisive == r.effects:
            stop = "every effect is decided"
        elif r.look >= rec.looks:
            stop = f"the last look ({rec.looks} of {rec.looks}) is done"
        elif rec.seconds >= budget_s:
            stop = f"the budget is spent ({_fmt_s(rec.seconds)} of {rec.design.get('budget')})"
        if not stop:
            have = cell_seeds(plan)
            cost = _Cost(plan, store, rec, have)
            k = r.look + 1
            nxt = plan_seeds(vs, have, max_seeds=int(rec.design["max_seeds"]), alpha=rec.levels[k - 2],
                             next_alpha=rec.levels[k - 1], cost=cost, budget=budget_s - rec.seconds)
            if not nxt.cells:
                stop = ("none of the undecided effects can be decided within the limits: "
                        f"{len(nxt.out_of_reach)} beyond --max-seeds {rec.design['max_seeds']}, "
                        f"{len(nxt.not_seeds)} not a question of seeds, {len(nxt.over_budget)} not within the time "
                        "left")
            else:
                say(format_plan(k, rec, nxt, have, cost))
                added = _added(cfg, have, nxt.cells)
                rec.rounds.append(Round(k, [asdict(a) for a in added],
                                        plan={"effects": [f"{p.claim} / {p.effect.target} / {p.effect.name}"
                                                          for p in nxt.chosen],
                                              "cells": {c.label: n for c, n in nxt.cells.items()},
                                              "runs": cost.runs(nxt.cells), "estimated_s": nxt.cost,
                                              "estimated_train_s": cost.train(nxt.cells),
                                              "estimated_analysis_s": cost.analysis(nxt.cells),
                                              "left_beyond_limits": len(nxt.out_of_reach),
                                              "left_not_seeds": len(nxt.not_seeds),
                                              "left_over_budget": len(nxt.over_budget)}))
                write_record(store, rec)  # before any run of the round: a resumed study goes on with it
                cfg = replace(cfg, decide=replace(cfg.decide, added=[*cfg.decide.added, *added]))
                continue
        rec.stopped = stop
        write_record(store, rec)
        say(f"stopped after look {r.look}: {stop}")
        return DecideSummary(rec, vs, claims, stop)


def _decided_keys(rec: Record, store: Store, look: int) -> set[str]:
    """The effects decisive at the looks before ``look`` (primary P), as ``claim / target / name``."""
    if look <= 1:
        return set()
    state: LookState | None = look_state(store)
    if state is None:
        return set()
    first = next(iter(state.earlier.values()), {})
    return {f"{k[0]} / {k[1]} / {k[2]}" for k, e in first.items() if e.outcome in (HOLDS, FAILS)}
