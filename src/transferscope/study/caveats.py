"""The caveats of a study's verdicts, read from its stored runs (no torch).

Each :class:`~transferscope.study.summary.Flag` of the runs the verdicts read becomes a
:class:`~transferscope.vocab.caveats.Caveat` of its target and arm, with the way out; runs of those arms that
failed or are still missing are caveats too. :func:`transferscope.claims.decide` attaches them to the verdicts (the
rule is in :mod:`transferscope.vocab.caveats`).
"""

from __future__ import annotations

from ..store import RUN_DONE, RUN_FAILED, Store
from ..vocab.arms import PT, RIT, P
from ..vocab.caveats import Caveat
from .plan import Plan, RunSpec
from .summary import flags
from .tuning import choices, resolve

__all__ = ["study_caveats", "BASIN"]

BASIN = "basin"
"""The arm name of a caveat on P-T runs fine-tuned from an earlier pre-training checkpoint (claims N9, L5)."""

_EPOCHS = {PT: "finetune.epochs", RIT: "scratch.epochs", BASIN: "finetune.epochs"}
_GRID = {PT: "finetune.lr_grid", RIT: "scratch.lr_grid", BASIN: "finetune.lr_grid"}


def _arm(r: RunSpec | None, arm: str) -> str:
    return BASIN if r is not None and r.arm == PT and r.parent_checkpoint >= 0 else arm


def _seeds(rs: list[RunSpec]) -> str:
    """``0, 1, 2``; for basin runs also their checkpoints: ``0, 1, 2 from checkpoints 1, 2``."""
    seeds = ", ".join(str(s) for s in sorted({r.seed for r in rs}))
    cks = sorted({r.parent_checkpoint for r in rs if r.parent_checkpoint >= 0})
    return seeds + (f" from checkpoints {', '.join(f'{c:g}' for c in cks)}" if cks else "")


def study_caveats(plan: Plan, store: Store) -> tuple[Caveat, ...]:
    """The caveats of the verdicts of ``plan`` (one pre-trained model's view: :meth:`Plan.for_pretrain`) on what
    ``store`` holds now: one per (kind, target, arm), in a stable order."""
    resolved = resolve(plan, store)
    specs = {r.run_id: r for r in resolved.tuning + resolved.runs}
    out: list[Caveat] = []
    underfit: dict[tuple[str, str], list[tuple[RunSpec | None, float, float]]] = {}
    for f in flags(plan, store):
        r = specs.get(f.run_id)
        arm = _arm(r, f.arm)
        if f.kind == "underfit":
            underfit.setdefault((f.target, arm), []).append((r, f.value, f.threshold))
            continue
        remedy = {
            "changed-artefacts": f"train the run again: transferscope run --results {store.root} --rerun {f.run_id}",
            "uninformative-target": "a target on which P-T learns (more training images per class, a P that "
                                    "transfers), or read its verdicts as telling little about transfer",
            "lr-at-edge": f"extend {_GRID.get(arm, 'the lr_grid')} beyond that edge and run again",
            "no-fitting-lr": f"train longer ({_EPOCHS.get(arm, 'epochs')}) or widen {_GRID.get(arm, 'the lr_grid')} "
                             f"as the message says, then run and analyze again",
        }.get(f.kind, "")
        if f.kind == "changed-artefacts" and f.arm == P:  # every P-T run, and every analysis of P, rests on P
            for t in plan.config.targets:
                for a in (P, PT, BASIN):
                    out.append(Caveat(f.kind, t.display, a, f"{f.run_id}, the pre-trained model P that every {PT} "
                                                           f"run on {t.display} starts from: {', '.join(f.files)} "
                                                           "changed since the run ended", remedy))
            continue
        out.append(Caveat(f.kind, f.target, "" if f.kind == "uninformative-target" else arm, f.message, remedy))
    for (target, arm), rows in underfit.items():
        rs = [r for r, _, _ in rows if r is not None]
        figs = ", ".join(f"{v:.3f}" for _, v, _ in rows)
        total = sum(1 for r in resolved.runs if r.domain.display == target and _arm(r, r.arm) == arm
                    and r.block_size == plan.config.data.image_size)
        out.append(Caveat(
            "underfit", target, arm,
            f"{len(rows)} of {total} {arm} runs on {target} (unshuffled{', seeds ' + _seeds(rs) if rs else ''}) did not "
            f"fit their training data: final training figure {figs}, under {rows[0][2]:g}",
            f"train {'P-T (the basin runs)' if arm == BASIN else arm} longer ({_EPOCHS.get(arm, 'epochs')}) or widen "
            f"{_GRID.get(arm, 'its lr_grid')} towards "
            f"the rates at which it fits, then run and analyze again"))
    # runs the verdicts read that failed or are not there yet
    gone: dict[tuple[str, str, str], list[RunSpec]] = {}
    for r in resolved.runs:
        if r.arm not in (PT, RIT):
            continue
        st = store.run_status(r.run_id)
        if st != RUN_DONE:
            gone.setdefault(("failed-runs" if st == RUN_FAILED else "missing-runs", r.domain.display,
                             _arm(r, r.arm)), []).append(r)
    for c in choices(plan, store):
        s = c.selection
        if c.state in ("failed", "pending"):
            kind = "failed-runs" if c.state == "failed" else "missing-runs"
            gone.setdefault((kind, s.target, s.arm), [])
    for (kind, target, arm), rs in gone.items():
        what = (f"{len(rs)} {arm} runs on {target} (seeds {_seeds(rs)}) " if rs else
                f"the learning-rate candidates of {arm} on {target} ")
        if kind == "failed-runs":
            out.append(Caveat(kind, target, arm, what + "failed (e.g. diverged): the verdicts rest on the others",
                              "run the study again with --retry-failed"))
        else:
            out.append(Caveat(kind, target, arm, what + "are not trained yet: the verdicts rest on the others",
                              "transferscope run resumes the study"))
    return tuple(out)
