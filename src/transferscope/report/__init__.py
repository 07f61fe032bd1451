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

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..claims import OUTCOMES
from ..config import to_dict
from ..store import StoreError, write_error, writing
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
    the HTML path.

    The page and its figures are drawn into a hidden folder inside ``out`` and moved into place only once all of
    them are written, the page last: a disk that cannot take them (full, read-only) is a :class:`StoreWriteError`
    naming the file, with no partial file left and the report already there as it was."""
    formats = _figure_formats(figures)
    root = Path(results)
    r = Reader(root)
    out = Path(out) if out else root / "report"
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".partial-"))
    try:
        with _written_as(staging, out):
            _draw(r, root, staging, formats)
        for f in sorted(staging.iterdir(), key=lambda f: f.name == "index.html"):  # the page last
            f.replace(out / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


@contextlib.contextmanager
def _written_as(staging: Path, out: Path) -> Iterator[None]:
    """A disk that cannot take a file of ``staging`` as a :class:`StoreWriteError` naming the file it was to be."""
    try:
        yield
    except OSError as e:
        name = Path(e.filename).name if e.filename else ""
        err = write_error(e, out / name if name and Path(e.filename).parent == staging else e.filename or out,
                          elsewhere="another --out folder")
        if err is e:
            raise
        raise err from None


def _draw(r: Reader, root: Path, out: Path, formats: tuple[str, ...]) -> None:
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
    (out / "index.html").write_text(html, encoding="utf-8")


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
        except OSError as e:
            if write_error(e, out) is not e:  # a disk that cannot take the figures: no section can be drawn
                raise
            got = _not_drawn(title, e)
        except Exception as e:  # one broken section must not lose the report
            got = _not_drawn(title, e)
        sections.extend(got if isinstance(got, list) else [got])
    return sections


def _not_drawn(title: str, e: Exception) -> Section:
    """A section that could not be drawn: one console line saying why (the traceback under ``--verbose``), and a
    note in the page."""
    known = isinstance(e, StoreError | ReportError | ValueError | KeyError)
    log.warning("report section %s: not drawn: %s: %s%s", title, type(e).__name__, " ".join(str(e).split()),
                "" if known else " (--verbose shows where)")
    log.debug("report section %s", title, exc_info=True)
    got = Section(file_safe(title), title)
    got.missing(f"this section could not be drawn: {type(e).__name__}: {e}")
    return got
