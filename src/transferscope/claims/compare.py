"""Two studies' verdicts side by side, and every contradiction between them (holds in one, does not hold in the other).

An ``unreliable`` outcome (decisive only on runs that did not fit) contradicts nothing; the caveats of each side are
shown under its row."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store import StoredFileError, read_stored_json
from ..vocab.caveats import KINDS, Caveat, summary
from .across import DEPENDS, Across
from .base import ABOVE, BELOW, WITHIN, Verdict
from .stats import FAILS, HOLDS, NOT_MEASURED, OUTCOMES

__all__ = ["Row", "compare_verdicts", "load_verdicts", "load_across", "load_by_pretrain", "format_comparison", "format_brief",
           "CLAIMS_FORMAT", "check_stored"]

CLAIMS_FORMAT = 1
"""The version of ``analyses/claims.json``'s layout (its ``"format"``): a file of another version, or of none, is
refused by name with the way out (analyze again), never read as if it fitted."""

_WORDS = {"outcome": (*OUTCOMES, DEPENDS), "outcomes": OUTCOMES, "statistical_outcome": ("", *OUTCOMES),
          "side": (ABOVE, BELOW, WITHIN),
          "kind": KINDS}
"""The fields whose value is one of a few words, and those words (``kind``: a caveat's)."""


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


def _read_claims(results: str | Path) -> tuple[Path, dict[str, Any]]:
    """``analyses/claims.json`` of a results folder, its format checked: (path, contents)."""
    path = Path(results) / "analyses" / "claims.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no verdicts; run 'transferscope analyze {results}' first")
    again = f"run 'transferscope analyze {results}' again"
    try:
        d = read_stored_json(path, f"remove it: transferscope analyze {results} writes it again")
    except StoredFileError as e:  # names the file and the recovery
        raise ValueError(str(e)) from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a verdict file (it holds a {type(d).__name__}, not an object); {again}")
    if d.get("format") != CLAIMS_FORMAT:
        got = "no format (written by an earlier transferscope)" if "format" not in d else f"format {d['format']!r}"
        raise ValueError(f"{path}: verdict file of {got}; this transferscope reads format {CLAIMS_FORMAT}: run "
                         f"'transferscope analyze {results}' again")
    return path, d


def check_stored(obj: Any, where: str) -> None:
    """Every field of the dataclass ``obj`` (and of those it holds) of the type it declares: a string, a number (a
    float is also NaN or infinite, read from the file's ``"NaN"``, ``"Infinity"``), a whole number, a tuple of
    such, one of the few words of :data:`_WORDS`. :class:`ValueError` naming the first field that is not."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        _check_value(getattr(obj, f.name), hints[f.name], f"{where}.{f.name}", f.name)


def _check_value(v: Any, tp: Any, where: str, name: str) -> None:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return
        tp, origin, args = args[0], typing.get_origin(args[0]), typing.get_args(args[0])
    ok = True
    if dataclasses.is_dataclass(tp):
        if not isinstance(v, tp):
            raise ValueError(f"{where}: expected an object, got {v!r}")
        check_stored(v, where)
    elif origin is tuple:
        ok = isinstance(v, tuple)
        for k, x in enumerate(v if ok else ()):
            _check_value(x, args[0], f"{where}[{k}]", name)
    elif origin is dict:
        ok = isinstance(v, dict)
        for k, x in (v.items() if ok else ()):
            _check_value(k, args[0], f"{where} key {k!r}", name)
            _check_value(x, args[1], f"{where}[{k!r}]", name)
    elif tp is float:
        ok = isinstance(v, int | float) and not isinstance(v, bool)
    elif tp is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif tp is str:
        ok = isinstance(v, str) and (name not in _WORDS or v in _WORDS[name])
        if ok is False and isinstance(v, str):
            raise ValueError(f"{where}: {v!r} is not one of {', '.join(map(repr, _WORDS[name]))}")
    if not ok:
        want = {float: "a number", int: "a whole number", str: "a string"}.get(tp, f"a {getattr(origin, '__name__', tp)}")
        raise ValueError(f"{where}: expected {want}, got {v!r}")


def load_verdicts(results: str | Path) -> list[Verdict]:
    """The verdicts a results folder holds (``analyses/claims.json``, written by ``transferscope analyze``). The
    whole file is checked (:func:`check_stored`: the verdicts, each P's, and those across P): a file of another
    format, or one edited into values that do not fit, is a :class:`ValueError` naming the file, the field and the
    way out."""
    _results_folder(results)
    return _load(results)[0]


def load_across(results: str | Path) -> list[Across]:
    """Each claim's outcomes under every pre-trained model of a study (``across_pretrained`` of claims.json);
    empty when the file has none. Errors as :func:`load_verdicts`."""
    return _load(results)[2]


def load_by_pretrain(results: str | Path, primary: int) -> dict[int, list[Verdict]]:
    """The verdicts under each pre-trained model, by its seed, the primary's first (``primary``: its seed; its
    verdicts are the file's ``verdicts``), the whole file checked as :func:`load_verdicts` checks it."""
    _results_folder(results)
    verdicts, pretrained, _ = _load(results)
    return {primary: verdicts, **{s: vs for s, vs in pretrained if s != primary}}


def _load(results: str | Path) -> tuple[list[Verdict], list[tuple[int, list[Verdict]]], list[Across]]:
    """(the primary P's verdicts, each P's by seed, the claims across P) of ``claims.json``, every field checked."""
    path, d = _read_claims(results)
    verdicts = _checked(path, results, d, "verdicts", Verdict)
    pretrained = d.get("pretrained", [])
    if not isinstance(pretrained, list) or not all(isinstance(p, dict) and isinstance(p.get("seed"), int)
                                                   and not isinstance(p.get("seed"), bool) for p in pretrained):
        raise ValueError(f"{path}: does not fit a verdict file (pretrained: expected a list of objects, each with a "
                         f"whole-number seed, got {pretrained!r}); run 'transferscope analyze {results}' again")
    by_p = [(p["seed"], _checked(path, results, {f"pretrained[{k}].verdicts": p.get("verdicts", [])},
                                 f"pretrained[{k}].verdicts", Verdict)) for k, p in enumerate(pretrained)]
    across = _checked(path, results, {"across_pretrained": d.get("across_pretrained", [])}, "across_pretrained",
                      Across)
    return verdicts, by_p, across


def _checked(path: Path, results: str | Path, d: dict[str, Any], key: str, cls: type) -> list:
    out = []
    try:
        items = d[key]
        if not isinstance(items, list):
            raise ValueError(f"{key}: expected a list, got {items!r}")
        for k, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValueError(f"{key}[{k}]: expected an object, got {item!r}")
            obj = cls.from_dict(item)
            check_stored(obj, f"{key}[{k}]")
            out.append(obj)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else " ".join(str(e).split())
        raise ValueError(f"{path}: does not fit a verdict file ({what}); run 'transferscope analyze {results}' "
                         "again (the analyses are cached: only the verdicts are judged again)") from None
    return out


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
