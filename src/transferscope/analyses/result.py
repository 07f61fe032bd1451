"""What every analysis result shares: a plain-dict form for JSON, its inverse, and files (JSON + .npz for arrays).

Every result records the arguments it was computed with (``args``) and its seed (``seed``; analyses without
randomness record the seed they were given, which changes nothing).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import jsonio

__all__ = ["Result"]


def _restore(v: Any) -> Any:
    """A ``null`` in a numeric field of a file written before :mod:`transferscope.jsonio`: NaN."""
    if v is None:
        return math.nan
    if isinstance(v, list):
        return [_restore(x) for x in v]
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
        paths[0].write_text(jsonio.dumps(d))
        if arrays:
            paths.append(stem.with_suffix(".npz"))
            np.savez(paths[1], **arrays)
        return paths

    @classmethod
    def load(cls, stem: str | Path):
        stem = Path(stem)
        d = jsonio.read(stem.with_suffix(".json"))
        if d.get("_result_type") not in (None, cls.__name__):
            raise ValueError(f"{stem.with_suffix('.json')}: holds a {d['_result_type']}, not a {cls.__name__}")
        # non-finite numbers come back from jsonio; an older file's null in a numeric field is NaN
        hints = typing.get_type_hints(cls)
        numeric = {k for k, tp in hints.items() if tp is float or "float" in str(tp)}
        d = {k: _restore(v) if k in numeric else v for k, v in d.items()}
        if d.get("_arrays"):
            with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
                for k in d["_arrays"]:
                    d[k] = z[k].tolist()
        return cls.from_dict(d)
