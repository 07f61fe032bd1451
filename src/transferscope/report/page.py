"""The parts of the report's page: a :class:`Section` (figures, tables, notes and what is missing, in order, for the
template), and how the sections write a number or an image's label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Section", "label_caption", "fmt"]


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    items: list[dict[str, Any]] = field(default_factory=list)

    def figure(self, file: str, caption: str) -> None:
        self.items.append({"kind": "figure", "file": file, "caption": caption})

    def table(self, headers: list[str], rows: list[list[Any]], caption: str = "", *, fold: bool = False,
              tints: list[str] | None = None) -> None:
        """A table; ``fold``: folded away under its caption (a click opens it); ``tints``: per row, an outcome whose
        colour tints the row (``""``: none)."""
        self.items.append({"kind": "table", "headers": headers, "rows": rows, "caption": caption, "fold": fold,
                           "tints": [t.replace(" ", "-") for t in tints] if tints else [""] * len(rows)})

    def note(self, text: str) -> None:
        self.items.append({"kind": "note", "text": text})

    def missing(self, text: str) -> None:
        self.items.append({"kind": "missing", "text": text})


def label_caption(y: Any, classes: list[str]) -> str:
    """An image's caption: its class, or for a multi-label image the labels present ("+"-joined; "none")."""
    y = np.asarray(y)
    if y.ndim == 1:  # multi-label: 1 present, 0 absent, NaN unknown
        present = [classes[j] for j in np.flatnonzero(y == 1) if j < len(classes)]
        return "+".join(present) or "none"
    return classes[int(y)] if 0 <= int(y) < len(classes) else str(y)


def fmt(x: Any, fmt: str = ".3f") -> str:
    if x is None:
        return "n/a"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return format(v, fmt) if math.isfinite(v) else ("inf" if v > 0 else "n/a")
