"""What every analysis result shares: a plain-dict form for JSON, its inverse, and files (JSON + .npz for arrays).

Every result records the arguments it was computed with (``args``) and its seed (``seed``; analyses without
randomness record the seed they were given, which changes nothing).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = ["Result"]


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _unjson(v: Any) -> Any:
    if v is None:
        return math.nan
    if v in ("inf", "-inf"):
        return float(v)
    if isinstance(v, list):
        return [_unjson(x) for x in v]
    return v


class Result:
    """Mixin for frozen result dataclasses.

    ``to_dict`` / ``from_dict``: a JSON-able dict and back (unknown keys are ignored, so derived keys may be
    added). ``save(stem)`` writes ``stem.json`` and, for the fields named in ``array_fields``, ``stem.npz``;
    ``load(stem)`` reads them back.
    """

    array_fields: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, stem: str | Path) -> list[Path]:
        """Write ``stem.json`` (+ ``stem.npz`` when the result has array fields). Returns the paths written."""
        stem = Path(stem)
        d = self.to_dict()
        arrays = {k: np.asarray(d.pop(k)) for k in self.array_fields}
        d["_result_type"] = type(self).__name__
        d["_arrays"] = sorted(arrays)
        paths = [stem.with_suffix(".json")]
        paths[0].write_text(json.dumps(_jsonable(d), indent=1, allow_nan=False))
        if arrays:
            paths.append(stem.with_suffix(".npz"))
            np.savez(paths[1], **arrays)
        return paths

    @classmethod
    def load(cls, stem: str | Path):
        stem = Path(stem)
        d = json.loads(stem.with_suffix(".json").read_text())
        if d.get("_result_type") not in (None, cls.__name__):
            raise ValueError(f"{stem.with_suffix('.json')}: holds a {d['_result_type']}, not a {cls.__name__}")
        # NaN and infinities were written as null / "inf": restore them in the numeric fields only
        hints = typing.get_type_hints(cls)
        numeric = {k for k, tp in hints.items() if tp is float or "float" in str(tp)}
        d = {k: _unjson(v) if k in numeric else v for k, v in d.items()}
        if d.get("_arrays"):
            with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
                for k in d["_arrays"]:
                    d[k] = z[k].tolist()
        return cls.from_dict(d)
