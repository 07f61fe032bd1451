"""`report` on a damaged study and on a full disk (issue: faults 4 and 5).

A run damaged after the analysis leaves the sections that read it "Missing" in the page and one console line per
section, not a traceback; a disk that cannot take the report is one line naming the path, a non-zero exit, no
temporary file left, and the report already there intact (figures included)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import pytest

from transferscope.cli import main

from .test_report import finished_study  # noqa: F401  the tiny study, trained and analysed once per module


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _damage_a_transfer_run(folder: Path) -> str:
    """Cut one fine-tuned run's ``run.json`` short (as a crash while copying the folder does); the run's id."""
    run = next(p for p in sorted((folder / "runs").iterdir()) if p.name.startswith("P-T"))
    (run / "run.json").write_text('{"run_id": "')
    return run.name


def test_a_damaged_run_is_one_line_per_section_not_a_traceback(finished_study, tmp_path, capsys,  # noqa: F811
                                                               caplog):
    folder = shutil.copytree(finished_study, tmp_path / "res")
    shutil.rmtree(folder / "report", ignore_errors=True)
    run_id = _damage_a_transfer_run(folder)
    capsys.readouterr()
    with caplog.at_level(logging.INFO):
        assert main(["report", str(folder), "--out", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    console = captured.err + captured.out + caplog.text
    assert "Traceback" not in console and not any(r.exc_info for r in caplog.records), console
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "section" in r.getMessage()]
    assert failed, "no section said it was not drawn"
    for line in failed:
        assert "\n" not in line and run_id in line, line
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Missing:" in page and run_id in page


def _full_disk_under(monkeypatch, root: Path):
    """Every file opened for writing under ``root`` is created, then its writes fail with ENOSPC (as on a disk that
    fills up): what matplotlib, Pillow and ``Path.write_text`` write goes through ``open``."""
    import builtins
    import io

    real_open = builtins.open

    def full_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        if any(c in mode for c in "wax+") and str(os.path.abspath(file)).startswith(str(root)):
            def refuse(*_a, **_k):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
            f.write = refuse  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)


@pytest.mark.parametrize("before", ["no report", "a report"])
def test_a_full_disk_is_one_line_a_failure_and_keeps_the_old_report(finished_study, tmp_path, capsys,  # noqa: F811
                                                                    monkeypatch, caplog, before):
    folder = shutil.copytree(finished_study, tmp_path / "res")
    out = tmp_path / "rep"
    if before == "a report":
        assert main(["report", str(folder), "--out", str(out)]) == 0
    old = _files(out) if out.exists() else {}
    capsys.readouterr()
    _full_disk_under(monkeypatch, out)
    with caplog.at_level(logging.INFO):
        code = main(["report", str(folder), "--out", str(out)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err + caplog.text, err + caplog.text
    assert lines[0].startswith(f"error: cannot write {out}") and "(ENOSPC)" in lines[0], lines[0]
    assert (_files(out) if out.exists() else {}) == old  # the old report, figures and all, as it was
    assert not list(out.glob(".partial*")) and not list(out.rglob("*.tmp")) if out.exists() else True
