"""Two studies' verdicts side by side, and every contradiction between them (holds in one, does not hold in the other).

An ``unreliable`` outcome (decisive only on runs that did not fit) contradicts nothing; the caveats of each side are
shown under its row."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..store import StoredFileError, read_stored_json
from ..vocab.caveats import Caveat, summary
from .across import Across
from .base import Verdict
from .stats import FAILS, HOLDS, NOT_MEASURED

__all__ = ["Row", "compare_verdicts", "load_verdicts", "load_across", "format_comparison", "format_brief"]


@dataclass(frozen=True)
class Row:
    claim: str
    target: str
    """A target's name, or ``""`` for the claim's overall outcome."""
    a: str
    b: str
    caveats_a: tuple[Caveat, ...] = field(default=(), compare=False)
    caveats_b: tuple[Caveat, ...] = field(default=(), compare=False)

    @property
    def contradiction(self) -> bool:
        return {self.a, self.b} == {HOLDS, FAILS}


def _results_folder(results: str | Path) -> None:
    """A :class:`FileNotFoundError` saying that ``results`` is not a results folder: missing, a file, or a folder
    without the ``study.json`` that ``transferscope run`` writes."""
    p = Path(results)
    what = ("does not exist" if not p.exists() else "is a file" if not p.is_dir()
            else "has no study.json" if not (p / "study.json").is_file() else "")
    if what:
        raise FileNotFoundError(f"{results}: not a results folder ({what}); give a folder written by "
                                "'transferscope run' and judged by 'transferscope analyze'")


def load_verdicts(results: str | Path) -> list[Verdict]:
    """The verdicts a results folder holds (``analyses/claims.json``, written by ``transferscope analyze``)."""
    _results_folder(results)
    path = Path(results) / "analyses" / "claims.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no verdicts; run 'transferscope analyze {results}' first")
    try:
        d = read_stored_json(path, f"remove it: transferscope analyze {results} writes it again")
        return [Verdict.from_dict(v) for v in d["verdicts"]]
    except StoredFileError as e:  # names the file and the recovery
        raise ValueError(str(e)) from None
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a verdict file of this version ({type(e).__name__}: {e}); run "
                         f"'transferscope analyze {results}' again") from None


def load_across(results: str | Path) -> list[Across]:
    """Each claim's outcomes under every pre-trained model of a study (``across_pretrained`` of claims.json);
    empty when the file has none (written before several P were supported). Errors as :func:`load_verdicts`."""
    path = Path(results) / "analyses" / "claims.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no verdicts; run 'transferscope analyze {results}' first")
    try:
        d = read_stored_json(path, f"remove it: transferscope analyze {results} writes it again")
        return [Across.from_dict(a) for a in d.get("across_pretrained", [])]
    except StoredFileError as e:
        raise ValueError(str(e)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: not a verdict file of this version ({type(e).__name__}: {e}); run "
                         f"'transferscope analyze {results}' again") from None


def compare_verdicts(a: list[Verdict], b: list[Verdict]) -> list[Row]:
    """One row per claim (overall) and per (claim, target) present in either study, in claim order."""
    by_a, by_b = {v.claim: v for v in a}, {v.claim: v for v in b}
    rows = []
    for claim in list(by_a) + [c for c in by_b if c not in by_a]:
        va, vb = by_a.get(claim), by_b.get(claim)
        rows.append(Row(claim, "", va.outcome if va else NOT_MEASURED, vb.outcome if vb else NOT_MEASURED))
        ta = {t.target: t for t in va.targets} if va else {}
        tb = {t.target: t for t in vb.targets} if vb else {}
        for t in list(ta) + [t for t in tb if t not in ta]:
            x, y = ta.get(t), tb.get(t)
            rows.append(Row(claim, t, x.outcome if x else NOT_MEASURED, y.outcome if y else NOT_MEASURED,
                            x.caveats if x else (), y.caveats if y else ()))
    return rows


def format_comparison(rows: list[Row], name_a: str, name_b: str) -> str:
    w = max([len(name_a), len(name_b), 13])
    lines = [f"{'claim':<6} {'target':<24} {name_a[:w]:<{w}} {name_b[:w]:<{w}}", "-" * (32 + 2 * w)]
    for r in rows:
        mark = "  <- CONTRADICTION" if r.contradiction else ""
        lines.append(f"{r.claim:<6} {(r.target or '(overall)')[:24]:<24} {r.a:<{w}} {r.b:<{w}}{mark}")
        for name, cs in ((name_a, r.caveats_a), (name_b, r.caveats_b)):
            if cs:
                lines.append(f"{'':<6} {'':<24} caveats in {name}: {summary(cs)}")
    bad = [r for r in rows if r.contradiction]
    lines.append("")
    lines.append(f"{len(bad)} contradiction(s)" + (": " + "; ".join(f"{r.claim} {r.target or 'overall'}" for r in bad)
                                                    if bad else ""))
    return "\n".join(lines)


def format_brief(vs: list[Verdict]) -> str:
    """One line per claim (its outcome, and per target the outcomes that are decisive or unreliable), then the
    caveats each claim carries: what ``status`` shows of a study's verdicts."""
    lines = []
    for v in vs:
        marks = [f"{t.target}: {t.outcome}" + (f" (statistics alone: {t.statistical_outcome})"
                                               if t.statistical_outcome else "")
                 for t in v.targets if t.outcome not in (NOT_MEASURED,)]
        lines.append(f"  {v.claim:<4} {v.outcome.upper():<14} " + "; ".join(marks))
        if v.caveats:
            lines.append(f"  {'':<4} {'':<14} caveats: {summary(v.caveats)}")
    return "\n".join(lines)
