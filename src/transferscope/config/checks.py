"""What a config field allows beyond its type, and the check of a config against it.

A field declares its :class:`Check` in its metadata (``field(metadata=...)``, see :mod:`transferscope.config.schema`);
:func:`check_config` holds every field of a loaded (or hand-built) config to it when a study is loaded and when it
is planned, and :func:`describe` says in words what a field allows, for the messages. Kept apart from the tables
themselves so that the rules read in one place and every other part of the package raises the one
:class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigError", "Check", "field_check", "describe", "check_config", "parse_duration", "NAME_MAX", "TEXT_MAX",
           "PATH_MAX"]


class ConfigError(ValueError):
    """A study configuration is invalid. The message names the key and what was expected."""


NAME_MAX = 100


@dataclass(frozen=True)
class Check:
    """What a field allows beyond its type. Numbers: ``lo``/``hi`` bounds (``None``: none), open or closed, and
    finite (floats always); strings: ``text`` (``name``: one folder name; ``label``: shown in tables and used in file
    names; ``text``: no control characters; ``sha256``); lists: ``items`` (the check of each element), ``nonempty``,
    ``distinct``, ``max_items``, or ``choices`` for strings; ``typed``: the type says it all (booleans, choices)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    finite: bool = True
    text: str = ""
    items: Check | None = None
    nonempty: bool = False
    distinct: bool = False
    max_items: int = 0
    choices: tuple[str, ...] = ()
    typed: str = ""


def field_check(f: dataclasses.Field) -> Check | None:
    """The :class:`Check` declared on a config field (None: none declared)."""
    return f.metadata.get("check")


# --------------------------------------------------------------------------------------------------
# Checking every field against what it declares (:class:`Check`).

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
TEXT_MAX = 1000
PATH_MAX = 4096


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _bounds(c: Check) -> str:
    if c.lo is not None and c.hi is not None:
        return f"in {'(' if c.lo_open else '['}{_fmt(c.lo)}, {_fmt(c.hi)}{')' if c.hi_open else ']'}"
    if c.lo is not None:
        return f"{'>' if c.lo_open else '>='} {_fmt(c.lo)}"
    if c.hi is not None:
        return f"{'<' if c.hi_open else '<='} {_fmt(c.hi)}"
    return ""


_TEXTS = {
    "name": (f"a study name of 1 to {NAME_MAX} letters, digits, '-', '_' or '.', not beginning with '.' or '-' "
             "(it names the results folder)", "study names"),
    "label": (f"a label of at most {NAME_MAX} characters, none of them a control character, and not blank",
              f"labels (at most {NAME_MAX} characters, no control character, not blank)"),
    "path": ("a path without control characters", "paths without control characters"),
    "sha256": ("64 lower-case hexadecimal digits (or empty)", "sha256 digests (64 lower-case hexadecimal digits)"),
    "duration": ("a duration such as '90s', '30m' or '1.5h' (or empty: no limit)", "durations ('90s', '30m', '1.5h')"),
    "device": ("one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'", "devices ('auto', 'cpu', 'cuda', 'cuda:N', 'mps')"),
    "text": (f"text of at most {TEXT_MAX} characters without control characters",
             f"texts of at most {TEXT_MAX} characters without control characters"),
}


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*")
_UNIT_S = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds in a duration written ``90s``, ``30m``, ``1.5h`` (a bare number: seconds); None when it is not one
    or is not above zero."""
    m = _DURATION.fullmatch(text)
    if not m:
        return None
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    return seconds if 0 < seconds < math.inf else None


def describe(c: Check, tp: Any, plural: bool = False) -> str:
    """What a field (or, ``plural``, each element of a list field) allows, in words."""
    if c.choices:
        return ("values among " if plural else "one of ") + ", ".join(repr(x) for x in c.choices)
    if c.text:
        one, many = _TEXTS[c.text]
        if c.nonempty and not plural:
            one = "non-empty " + one.removeprefix("a ").removeprefix("an ")
        return many if plural else one
    if tp is int:
        noun = "integers" if plural else "an integer"
    elif c.lo is not None and c.hi is not None:
        noun = "numbers" if plural else "a number"
    else:
        noun = "finite numbers" if plural else "a finite number"
    b = _bounds(c)
    return f"{noun} {b}" if b else noun


def _text_ok(v: str, c: Check) -> bool:
    if c.choices:
        return v in c.choices
    if c.text == "name":
        return len(v) <= NAME_MAX and bool(_FOLDER_NAME.fullmatch(v))
    if c.text == "sha256":
        return not v or bool(_SHA256.fullmatch(v))
    if c.text == "device":
        return bool(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v))
    if c.text == "duration":
        return not v or parse_duration(v) is not None
    if _CONTROL.search(v):
        return False
    if c.text == "label":
        return len(v) <= NAME_MAX and (not v or bool(v.strip()))
    if c.text == "path":
        return len(v) <= PATH_MAX
    return len(v) <= TEXT_MAX and (bool(v) or not c.nonempty)


def _check_value(v: Any, c: Check, tp: Any, key: str) -> None:
    if c.typed:
        return
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(v, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {v!r}")
        if c.max_items and len(v) > c.max_items:
            raise ConfigError(f"{key}: expected at most {c.max_items} items, got {len(v)}")
        if c.items is not None:
            for i, x in enumerate(v):
                _check_value(x, c.items, inner, f"{key}[{i}]")
        seen: set = set()
        dup = next((x for x in v if x in seen or seen.add(x)), None) if c.distinct and c.items is not None else None
        if (c.nonempty and not v) or dup is not None:
            what = ("a non-empty list of " if c.nonempty else "") + ("distinct " if c.distinct else "")
            what += describe(c.items, inner, plural=True) if c.items is not None else "items"
            raise ConfigError(f"{key}: expected {what}, got {list(v)!r}" + (f" ({dup!r} twice)" if dup is not None
                                                                             else ""))
        return
    if tp is str or c.text or c.choices:
        if not (isinstance(v, str) and _text_ok(v, c)):
            raise ConfigError(f"{key}: expected {describe(c, tp)}, got {v!r}")
        return
    is_int = tp is int
    ok = isinstance(v, int) and not isinstance(v, bool) if is_int else \
        isinstance(v, int | float) and not isinstance(v, bool)
    if ok and not is_int and not math.isfinite(v):
        ok = False
    if ok and c.lo is not None:
        ok = v > c.lo if c.lo_open else v >= c.lo
    if ok and c.hi is not None:
        ok = v < c.hi if c.hi_open else v <= c.hi
    if not ok:
        raise ConfigError(f"{key}: expected {describe(c, tp)}, got {v!r}")


def check_config(obj: Any, prefix: str = "") -> None:
    """Check every field of a config dataclass (and of the tables in it) against what it declares; the first
    violation is a :class:`ConfigError` naming the dotted key, the value and what is allowed. Changes nothing. Tables
    a study does not use are left alone (``[pretrain]`` when P is given: see ``StudyConfig.unused_tables``)."""
    hints = typing.get_type_hints(type(obj))
    unused = obj.unused_tables() if hasattr(obj, "unused_tables") else ()
    for f in dataclasses.fields(obj):
        if f.name in unused:
            continue
        key, v = prefix + f.name, getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            check_config(v, key + ".")
            continue
        c = field_check(f)
        if c is not None:
            _check_value(v, c, hints[f.name], key)
        if isinstance(v, list | tuple):
            for i, x in enumerate(v):
                if dataclasses.is_dataclass(x):
                    check_config(x, f"{key}[{i}].")
