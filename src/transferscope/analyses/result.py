"""What every analysis result shares: a plain-dict form for JSON, and its inverse."""

from __future__ import annotations

import dataclasses
from typing import Any


class Result:
    """Mixin for frozen result dataclasses: ``to_dict`` (JSON-able) and ``from_dict`` (ignores derived keys)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})
