"""The report of a study: one self-contained HTML page and its PNG figures, from the results folder alone.

``render_report(results)`` reads ``study.json``, the runs and ``analyses/`` (written by ``transferscope
analyze``) and writes ``results/report/index.html`` with the figures beside it. It does not import torch, so
a study run on a cluster can be rendered anywhere. Every name that comes from a user (domain, run, layer,
module names) is HTML-escaped by the template engine (Jinja2 autoescaping). A figure whose inputs are
missing is replaced by a note that says what is missing; the rest of the report is still written.

One module per job: :mod:`~transferscope.report.reader` reads the folder, :mod:`~transferscope.report.page` holds
the parts of the page, and the sections are drawn by :mod:`~transferscope.report.study_sections` (1-3, the runs),
:mod:`~transferscope.report.analysis_sections` (4-9, the analyses) and :mod:`~transferscope.report.verdict_section`
(the verdicts); :mod:`~transferscope.report.figures` draws, :mod:`~transferscope.report.template` writes the HTML.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from ..claims import OUTCOMES
from ..config import to_dict
from ..study.plan import file_safe
from .analysis_sections import (
    barrier_section,
    basin_section,
    criticality_section,
    liu_section,
    mistakes_section,
    similarity_section,
)
from .figures import FIGURE_FORMATS, figure_formats
from .page import Section
from .reader import Reader, ReportError
from .study_sections import study_section, transfer_sections
from .template import render_html
from .verdict_section import claims_section

log = logging.getLogger(__name__)

__all__ = ["render_report", "ReportError"]


def _figure_formats(figures: str | Sequence[str]) -> tuple[str, ...]:
    """The formats to save each figure in, the one the HTML shows first: the PNG, else the SVG (a PNG is added
    where only PDF is asked: a browser shows no PDF in a page)."""
    asked = [f.strip().lower() for f in (figures.split(",") if isinstance(figures, str) else figures) if f.strip()]
    bad = [f for f in asked if f not in FIGURE_FORMATS]
    if bad or not asked:
        raise ReportError(f"--figures {','.join(asked)!r}: a comma-separated list of {', '.join(FIGURE_FORMATS)}"
                          + (f" ({', '.join(bad)} is not one)" if bad else ""))
    shown = "png" if "png" in asked or "svg" not in asked else "svg"
    return (shown, *dict.fromkeys(f for f in asked if f != shown))


def render_report(results: str | Path, out: str | Path | None = None,
                  figures: str | Sequence[str] = ("png",)) -> Path:
    """Write ``<out>/index.html`` (default ``<results>/report``) and its figures, each in every format of
    ``figures`` (``png``, ``svg``, ``pdf``; the page shows the PNG, else the SVG, and links the others). Returns
    the HTML path."""
    formats = _figure_formats(figures)
    root = Path(results)
    r = Reader(root)
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    with figure_formats(formats):
        sections = _sections(r, out)
    for s in sections:
        for it in s.items:
            if it["kind"] == "figure":
                stem = Path(it["file"])
                it["links"] = [(f.upper(), stem.with_suffix(f".{f}").name) for f in formats[1:]
                               if (out / stem.with_suffix(f".{f}").name).is_file()]
    html = render_html(title=f"transferscope report: {r.cfg.name}", sections=sections, study=to_dict(r.cfg),
                       outcomes=list(OUTCOMES),
                       generated=time.strftime("%Y-%m-%d %H:%M:%S"), root=str(root.resolve().name))
    path = out / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def _sections(r: Reader, out: Path) -> list[Section]:
    builders = [lambda: claims_section(r, out), lambda: study_section(r, out), lambda: transfer_sections(r, out),
                lambda: mistakes_section(r, out), lambda: similarity_section(r, out), lambda: barrier_section(r, out),
                lambda: criticality_section(r, out), lambda: basin_section(r, out), lambda: liu_section(r, out)]
    titles = ["Verdicts", "1. The study", "2-3. Transfer gain and block shuffle", "4. Mistakes", "5. Feature similarity",
              "6. Performance barrier", "7. Module criticality", "8. Pre-training checkpoints", "9. Liu et al."]
    sections: list[Section] = []
    for build, title in zip(builders, titles, strict=True):
        try:
            got = build()
        except Exception as e:  # one broken section must not lose the report
            log.warning("report section %s failed", title, exc_info=True)
            got = Section(file_safe(title), title)
            got.missing(f"this section could not be drawn: {type(e).__name__}: {e}")
        sections.extend(got if isinstance(got, list) else [got])
    return sections
