"""The report's section of verdicts: the rule fixed before any result, one verdict per claim with its caveats, the
verdicts under each pre-trained model, every effect behind them, their forest plot, and the checks of the runs.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..claims import stats as claim_stats
from ..claims.compare import load_across
from ..config import ConfigError
from ..study.looks import Record, read_record
from ..study.summary import flags
from ..vocab.caveats import summary as caveat_summary
from .page import Section
from .reader import NO_ANALYSES, Reader

__all__ = ["claims_section"]


def claims_section(r: Reader, out: Path) -> Section:
    sec = Section("claims", "Verdicts: the claims of Neyshabur et al. (N1-N9) and Liu et al. (L1-L5)",
                  "Each claim on each target at a glance, then one forest plot per claim; the rule the verdicts follow "
                  "is stated below them.")
    rule = (f"The rule, fixed before any result: the statistical unit is the seed (an independent run). A "
            f"per-seed statistic gets a Welch t-interval; a statistic over pairs of models is averaged over every "
            f"pair and gets a leave-one-seed-out jackknife interval (seeds, not pairs, are resampled). One error "
            f"control in both directions: an effect is decisive only when its p-value survives Holm's correction "
            f"over all claims x targets x effects; it then holds when its {claim_stats.LEVEL:.0%} interval lies "
            f"on the claim's side of the bound and does not hold when it lies on the other side; otherwise it "
            f"is inconclusive (so a wrong decisive outcome, either way, has at most a 5% chance per study). "
            f"Fewer than {claim_stats.MIN_SEEDS} seeds is inconclusive by rule. Claims of sameness are "
            f"equivalence tests with a stated margin. A claim about every target holds when every target holds "
            f"and does not hold when any target does not. A decisive outcome that rests on runs that did not "
            f"fit their training data (or whose files changed) is unreliable, never decisive; other caveats of "
            f"the runs are listed beside the verdicts.")
    if r.claims is None:
        sec.missing(r.claims_error or NO_ANALYSES)
        return sec
    if r.claims and r.claims[0].conditional_on:
        sec.note(f"Every verdict below is conditional on {r.claims[0].conditional_on}.")
    _at_a_glance(r, sec, out)
    sec.note(rule)
    try:
        across = load_across(r.root)
    except (FileNotFoundError, ValueError) as e:
        across = []
        sec.missing(f"the verdicts under each pre-trained model: {e}")
    seeds = list(across[0].outcomes) if across else []
    if len(seeds) > 1:
        sec.note(f"The study has {len(seeds)} pre-trained models P (seeds {', '.join(map(str, seeds))}); the tables "
                 f"below are the verdicts under the first. A claim holds (does not hold) free of P only when it holds "
                 f"(does not hold) under every P; one that holds under one P and not under another depends on P.")
        sec.table(["claim", *[f"under P of seed {s}" for s in seeds], "together", "why"],
                  [[a.claim, *[a.outcomes.get(s, "") for s in seeds], a.outcome, a.why] for a in across],
                  caption="each claim under every pre-trained model")
    elif across:
        sec.note("The study has one pre-trained model P: whether a verdict depends on it is not measured "
                 "(set pretrain_seeds to several seeds to measure it).")
    sec.table(["claim", "statement", "outcome", "caveats", "why"],
              [[v.claim, v.statement, v.outcome, caveat_summary(v.caveats) or "none", v.why] for v in r.claims],
              caption="one verdict per claim, with the caveats of the runs it rests on",
              tints=[v.outcome for v in r.claims])
    rec = _rounds(r, sec)
    cav_rows = [[v.claim, t.target, t.outcome, t.statistical_outcome or t.outcome,
                 f"{c.kind}{' (blocking)' if c.blocking else ''}", c.message, c.remedy]
                for v in r.claims for t in v.targets for c in t.caveats]
    if cav_rows:
        sec.table(["claim", "target", "outcome", "the statistics alone", "caveat", "what", "way out"], cav_rows,
                  caption="what each verdict rests on: a blocking caveat (runs that did not fit, changed files) makes "
                          "a decisive outcome unreliable", fold=True)
    rows, tints = [], []
    for v in r.claims:
        for t in v.targets:
            if not t.effects:
                rows.append([v.claim, t.target, "", "not measured", "", "", "", "", t.why]
                            + ([""] if rec else []))
                tints.append(t.outcome)
            for e in t.effects:
                shown = t.shown(e)  # a decisive effect on runs that did not fit is not cited as decisive
                rows.append([v.claim, t.target, f"{e.name} ({e.unit})", _estimate(e), e.claim_side,
                             f"{e.n} ({e.counted})" if e.n else "", _p(e.p_holm),
                             "" if e.seeds_needed is None else e.seeds_needed, shown,
                             e.why + (f" (The statistics alone: {e.outcome}.)" if shown != e.outcome else "")]
                            + ([str(e.decided_at or "")] if rec else []))
                tints.append(shown)
    sec.table(["claim", "target", "effect (unit)", "estimate [95% interval]", "claim says", "n (counted)",
               "p (Holm-scaled)", "seeds to decide", "outcome", "why"] + (["decided at look"] if rec else []), rows,
              caption="every effect behind the verdicts; the statistical method is in claims.json"
                      + ("; a decisive effect is shown as its deciding look measured it" if rec else ""),
              fold=True, tints=tints)
    try:
        fl = flags(r.base_plan, r.store)
    except Exception as e:  # flags read every run; a damaged one must not lose the verdicts
        fl = []
        sec.missing(f"the checks of the runs could not be made: {type(e).__name__}: {e}")
    if fl:
        sec.table(["check", "what"], [[x.kind, x.message] for x in fl],
                  caption="runs and targets to look at before citing a verdict")
    return sec


def _estimate(e) -> str:
    """An effect's estimate and interval, or why there is none: never ``+nan [+nan, +nan]``."""
    if not math.isfinite(e.value):
        return "not measured"
    if e.n < 2 or not (math.isfinite(e.low) and math.isfinite(e.high)):
        return f"{e.value:+.3g} [n/a: {'one seed' if e.n == 1 else 'no interval'}]"
    return f"{e.value:+.3g} [{e.low:+.3g}, {e.high:+.3g}]"


def _p(p: float) -> str:
    return f"{p:.2g}" if math.isfinite(p) else "n/a"


def _headline(effects):
    """The effect that speaks for a target: a decisive one, else the one nearest to deciding (smallest p)."""
    def key(e):
        return (e.outcome not in ("holds", "does not hold"), not math.isfinite(e.value),
                e.p_holm if math.isfinite(e.p_holm) else math.inf)
    return min(effects, key=key) if effects else None


def _at_a_glance(r: Reader, sec: Section, out: Path) -> None:
    """One row per claim and target (its outcome, the effect that speaks for it with its 95% interval, the seeds),
    tinted by outcome; then the forest plots, one per claim."""
    from .figures import forest_plots

    rows, tints = [], []
    for v in r.claims:
        for t in v.targets:
            e = _headline(t.effects)
            more = f" (+{len(t.effects) - 1} more)" if len(t.effects) > 1 else ""
            rows.append([v.claim, t.target, t.outcome, (e.name + more) if e else "",
                         _estimate(e) if e else "not measured", e.n if e and e.n else "",
                         caveat_summary(t.caveats) or "" if e else t.why])
            tints.append(t.outcome)
    sec.table(["claim", "target", "outcome", "effect", "estimate [95% interval]", "seeds", "caveats / why"], rows,
              caption="at a glance: each claim on each target, with the effect that speaks for it (a decisive one, "
                      "else the nearest to deciding); every effect is in the folded table below", tints=tints)
    for f in forest_plots(out, r.claims):
        sec.figure(f.name, f"{f.stem.split('-', 1)[1]}: each effect with its 95% interval, coloured by outcome (green "
                   "holds, red does not hold, amber inconclusive, purple unreliable, grey not measured); the dashed "
                   "line is the claim's bound, the grey band a margin of sameness")


def _rounds(r: Reader, sec: Section) -> Record | None:
    """A study that decided in rounds: its rule and the table of its rounds (how the verdicts were reached)."""
    try:
        rec = read_record(r.store)
    except ConfigError as e:
        sec.missing(f"the rounds of this study: {e}")
        return None
    if rec is None:
        return None
    levels = ", ".join(f"{a:.3g}" for a in rec.levels)
    sec.note(f"This study decided in rounds, with its design fixed before any result: at most {rec.looks} looks, "
             f"{rec.design.get('spending')} spending (one-sided levels {levels} per direction, which add up to "
             f"{claim_stats.ALPHA:.3g}: by the union bound a wrong decisive outcome at any look has at most a 5% "
             f"chance), at most {rec.design.get('max_seeds')} seeds per cell, budget "
             f"{rec.design.get('budget') or 'none'}. Each look runs the rule above at its own level; an effect "
             f"decisive at a look keeps that outcome, and later rounds add seeds only where undecided effects need "
             f"them. Stopped: {rec.stopped or 'not yet (the study goes on with run --until-decided)'}.")
    rows = []
    for x in rec.rounds:
        seeds = sum(len(a.get("seeds", ())) for a in x.added)
        grown = f"{len(x.added)} cells, {seeds} seeds" if x.added else "the study's seeds"
        rows.append([x.look, f"{rec.levels[x.look - 1]:.3g}", grown, x.runs_trained, f"{x.seconds / 60:.1f}",
                     f"{x.decisive} of {x.effects}" if x.judged else "not judged yet", len(x.decided_here),
                     "; ".join(x.decided_here[:6]) + (" ..." if len(x.decided_here) > 6 else "")])
    sec.table(["look", "level", "seeds added", "runs trained", "minutes", "effects decisive", "decided here",
               "which"], rows, caption="how the verdicts were reached: each round, the level its look spent and "
                                       "what it decided")
    return rec
