"""The verdict per claim of a study, as text and as ``claims.json``.

:func:`verdicts` judges the evidence (:func:`~transferscope.study.evidence.gather_evidence`) of a study's analysis
results under its primary P, with the caveats of the runs each claim rests on; :func:`verdicts_by_pretrain`
under each P; :func:`format_verdicts` and :func:`write_claims` print and write them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..claims import Verdict, judge, stats
from ..claims.across import across_pretrained
from ..claims.compare import CLAIMS_FORMAT
from ..store import Store, atomic_write_text, dumps
from .caveats import study_caveats
from .evidence import gather_evidence
from .looks import LookState, write_look
from .plan import Plan

if TYPE_CHECKING:
    from .analyze import AnalysisRun

__all__ = ["verdicts", "verdicts_by_pretrain", "format_verdicts", "write_claims"]


def verdicts(plan: Plan, results: dict[str, dict], store: Store | None = None,
             look: LookState | None = None) -> list[Verdict]:
    """The verdict of every claim (N1-N9, L1-L5) on a study's analysis results under its primary P (the results
    of :func:`analyze`'s returned run); with ``store``, each carries the caveats of the runs it rests on. ``look``:
    the look of a study that decides in rounds (:func:`~.looks.look_state`); None: one look at the full level."""
    view = plan.for_pretrain()
    return judge(gather_evidence(view, results, study_caveats(view, store) if store is not None else ()),
                 **(look.options(plan.pretrain().seed) if look else {}))


def verdicts_by_pretrain(plan: Plan, run: AnalysisRun, store: Store | None = None,
                         look: LookState | None = None) -> dict[int, list[Verdict]]:
    """The verdicts under each pre-trained model P of the study, by pre-training seed (the primary first); each is
    conditional on its P, and with ``store`` carries the caveats of its runs.
    :func:`transferscope.claims.across_pretrained` puts them side by side."""
    ps = plan.pretrains()
    out = {ps[0].seed: verdicts(plan, run.results, store, look)}
    for p in ps[1:]:
        sub = run.pretrained.get(p.seed)
        view = plan.for_pretrain(p.seed)
        out[p.seed] = judge(gather_evidence(view, sub.results if sub else {},
                                            study_caveats(view, store) if store is not None else ()),
                            **(look.options(p.seed) if look else {}))
    return out


def format_verdicts(vs: list[Verdict], by_pretrain: dict[int, list[Verdict]] | None = None) -> str:
    """The verdicts as text; with several pre-trained models, each claim's outcome under every P follows."""
    lines = []
    numbers: dict = {}  # caveat -> its number in the list after the verdicts
    for v in vs:
        lines.append(f"claim {v.claim}: {v.statement}\n  -> {v.outcome.upper()}. {v.why}")
        for t in v.targets:
            for e in t.effects:
                if not math.isfinite(e.value):  # a statistic that could not be computed: its reason, no numbers
                    lines.append(f"     {t.target}: {e.name}: not measured: {e.why}")
                    continue
                span = (f"[{e.low:+.3g}, {e.high:+.3g}]" if math.isfinite(e.low) and math.isfinite(e.high)
                        else "[no interval]")
                at = f" at look {e.decided_at}" if e.decided_at and len(e.looks) > 1 else ""
                lines.append(f"     {t.target}: {e.name} = {e.value:+.3g} {span} "
                             f"(claim: {e.claim_side}; n = {e.n} {e.counted}) -> {e.outcome}{at}")
            if not t.effects:
                lines.append(f"     {t.target}: not measured: {t.why}")
            if t.statistical_outcome:
                lines.append(f"     {t.target}: {t.outcome.upper()} (the statistics alone: {t.statistical_outcome})")
            if t.caveats:  # by number: each caveat is written out once, after the verdicts
                refs = [f"[{numbers.setdefault(c, len(numbers) + 1)}]{'!' if c.blocking else ''} {c.short}"
                        for c in t.caveats]
                lines.append(f"     {t.target}: rests on: {'; '.join(refs)}")
    if numbers:
        lines.append("\ncaveats the verdicts rest on ('!': blocking, a decisive outcome resting on it is unreliable):")
        for c, i in numbers.items():
            lines.append(f"  [{i}]{'!' if c.blocking else ''} {c.target}, {c.arm or 'the target'}: [{c.kind}] {c.message}"
                         + (f"; way out: {c.remedy}" if c.remedy else ""))
    if vs and vs[0].conditional_on:
        lines.append(f"every verdict is conditional on {vs[0].conditional_on}")
    last = max((e.looks[-1] for v in vs for e in v.effects if e.looks), key=lambda k: k.look, default=None)
    if last is not None and (last.look > 1 or last.alpha != stats.ALPHA):
        lines.append(f"judged at look {last.look} of a study that decides in rounds, at a one-sided level of "
                     f"{last.alpha:.3g} per direction (decide.json); a decisive effect keeps the outcome of the look "
                     "that decided it")
    if by_pretrain and len(by_pretrain) > 1:
        seeds = list(by_pretrain)
        lines.append(f"\nunder each pre-trained model (P of seed {', '.join(map(str, seeds))}):")
        for a in across_pretrained(by_pretrain):
            per = "  ".join(f"P{s}: {a.outcomes[s]}" for s in seeds)
            lines.append(f"  claim {a.claim}: {a.outcome.upper()}  ({per})")
    return "\n".join(lines)


def write_claims(store: Store, vs: list[Verdict], by_pretrain: dict[int, list[Verdict]] | None = None,
                 plan: Plan | None = None, look: LookState | None = None) -> Path:
    """``analyses/claims.json``: the rule, the verdicts under the primary P (``verdicts``) and, per pre-trained
    model, its verdicts (``pretrained``: seed, run id, verdicts) and the claims' outcomes side by side
    (``across_pretrained``, see :func:`transferscope.claims.across_pretrained`)."""
    path = store.root / "analyses" / "claims.json"
    by_pretrain = by_pretrain or {}
    runs = {p.seed: p.run_id for p in plan.pretrains()} if plan is not None else {}
    atomic_write_text(path, dumps({
        "format": CLAIMS_FORMAT,
        "rule": {"level": stats.LEVEL, "min_seeds": stats.MIN_SEEDS,
                 "correction": "Holm over claims x targets x effects at one-sided 0.025, in both directions: an "
                               "effect holds or does not hold only when the smaller of its one-sided p-values "
                               "(times the Bonferroni factor of its level) survives it",
                 "caveats": "a decisive outcome that rests on runs that did not fit their training data, or whose "
                            "files changed, is 'unreliable'; other caveats are listed beside the verdict",
                 "across_pretrained": "holds (does not hold) when it holds (does not hold) under every P; "
                                      "'depends on P' when it holds under one and does not under another",
                 "looks": look.rule() if look else {"look": 1, "looks": 1, "alpha": stats.ALPHA,
                                                    "rule": "one look (a study of fixed seeds)"}},
        "verdicts": [v.to_dict() for v in vs],
        "pretrained": [{"seed": s, "run": runs.get(s, ""), "verdicts": [v.to_dict() for v in pvs]}
                       for s, pvs in by_pretrain.items()],
        "across_pretrained": [a.to_dict() for a in across_pretrained(by_pretrain)]}))
    if look is not None:  # what the next look keeps decided
        write_look(store, look, by_pretrain or {0: vs})
    return path
