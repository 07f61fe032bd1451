"""The one JSON encoding of every file transferscope writes (runs, analyses, verdicts, the study).

JSON has no NaN or infinity. A non-finite float is written as the string ``"NaN"``, ``"Infinity"`` or
``"-Infinity"`` (the spellings of JavaScript and of Python's ``float()``), and :func:`loads` turns these three
strings back into floats wherever they stand, so that a value read equals the value written. ``null`` stays
``None``: it means "no value" (e.g. a criticality that was not computed), never a number. numpy scalars and
arrays are written as numbers and lists, paths as strings.

Files written before this encoding used ``null`` for NaN; readers that accept a missing number read ``None``
as NaN (e.g. :meth:`transferscope.vocab.results.Result.load`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["dumps", "loads", "encode", "decode", "read", "NONFINITE"]

NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
"""The strings that stand for the non-finite floats on disk."""


def _name(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def encode(o: Any) -> Any:
    """``o`` with every non-finite float replaced by its string, numpy values by Python ones, paths by strings."""
    if isinstance(o, float | np.floating):
        x = float(o)
        return x if math.isfinite(x) else _name(x)
    if isinstance(o, dict):
        return {str(k): encode(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [encode(v) for v in o]
    if isinstance(o, np.ndarray):
        return encode(o.tolist())
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return o


def decode(o: Any) -> Any:
    """The inverse of :func:`encode` on parsed JSON: the three strings of :data:`NONFINITE` become floats."""
    if isinstance(o, str):
        return NONFINITE.get(o, o)
    if isinstance(o, dict):
        return {k: decode(v) for k, v in o.items()}
    if isinstance(o, list):
        return [decode(v) for v in o]
    return o


def dumps(obj: Any, indent: int | None = 1) -> str:
    """Standard JSON (no NaN literals) in this encoding."""
    try:
        return json.dumps(encode(obj), indent=indent, allow_nan=False)
    except TypeError as e:
        raise TypeError(f"not JSON-serialisable: {e}") from None


def loads(text: str | bytes) -> Any:
    """Parse JSON written by :func:`dumps` (non-finite numbers restored)."""
    return decode(json.loads(text))


def read(path: str | Path) -> Any:
    """:func:`loads` of a file."""
    return loads(Path(path).read_bytes())
