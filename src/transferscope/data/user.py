"""A user's own images as a domain: a folder with one subfolder per class (``imagefolder``), or a CSV file that lists
images with a label, or with several labels under a header (``csv``, multi-label). Every path stays inside the data
root given (symlinks that lead out are refused), and an image listed twice is listed once.

Each loader registers itself (:func:`~transferscope.data.registry.register_domain`) when
:mod:`transferscope.data.builtin` imports this module.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DomainConfig
from .reading import IMAGE_SUFFIXES, LOGGER, files_domain, images_under, inside, plural, reading_file, say_outside
from .registry import DomainError, RawDomain, register_domain

__all__ = ["imagefolder", "imagefolder_listing", "ImageFolderListing", "csv_domain", "PRESENT", "ABSENT", "UNCERTAIN"]

log = logging.getLogger(LOGGER)


@dataclass(frozen=True)
class ImageFolderListing:
    """The image files of an ``imagefolder`` domain, as its loader finds them, before any is opened."""

    root: Path
    base: Path
    """``root`` resolved: nothing outside it is read."""
    classes: list[str]
    files: list[Path]
    labels: list[int]
    """The class index of each of ``files``."""
    empty: list[str]
    """Subfolders without image files: not classes."""
    out_dirs: list[str]
    """Class folders that lead out of ``base`` (symlinks): refused."""
    out_files: list[Path]
    """Image files that lead out of ``base``: refused."""


def imagefolder_listing(cfg: DomainConfig) -> ImageFolderListing:
    """The classes and image files of an ``imagefolder`` domain from the file listing alone (no image is opened):
    what :func:`imagefolder` reads, and what the plan counts to check the split before anything is decoded. One class
    per subfolder (hidden ones aside); a path that is not a folder is a :class:`DomainError`."""
    root = Path(cfg.path)
    if not cfg.path or not root.is_dir():
        raise DomainError(f"domain {cfg.display!r} (imagefolder): path {cfg.path!r} is not a folder; expected "
                          "a folder with one subfolder per class")
    base = root.resolve()
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes, files, labels, empty, out_dirs, out_files = [], [], [], [], [], []
    for d in folders:
        if not inside(d, base):
            out_dirs.append(d.name)
            continue
        found = images_under(d, base, out_files)
        if not found:
            empty.append(d.name)
            continue
        labels += [len(classes)] * len(found)
        classes.append(d.name)
        files += found
    return ImageFolderListing(root, base, classes, files, labels, empty, out_dirs, out_files)


@register_domain("imagefolder", summary="Your images: PATH/<class>/<image>, one subfolder per class (the DomainNet layout)",
                 needs_path=True)
def imagefolder(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    """One class per subfolder (hidden ones aside). A subfolder without image files is not a class (skipped with a
    warning naming it); class folders and files that lead out of the folder (symlinks) are refused, counted and
    named in a warning."""
    listing = imagefolder_listing(cfg)
    root, base, classes, files, labels = listing.root, listing.base, listing.classes, listing.files, listing.labels
    empty, out_dirs, out_files = listing.empty, listing.out_dirs, listing.out_files
    say_outside(cfg, "imagefolder", base, out_dirs, out_files)
    if empty:
        log.warning("domain %r (imagefolder): %s: skipped %s without images: %s", cfg.display, root,
                    plural(len(empty), "class folder"), ", ".join(empty))
    if not files:
        raise DomainError(f"domain {cfg.display!r} (imagefolder): no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                          f"in class subfolders of {root}")
    return files_domain(files, labels, classes, cfg, size, channels,
                         {"path": str(root), "skipped_classes": {"empty": empty, "outside_root": out_dirs}},
                         {"outside_root": len(out_files)})


@dataclass(frozen=True)
class _Row:
    line: int
    value: str
    label: str
    """The label; a multi-label row: its values after the policy, ``1``, ``0`` or ``?`` (unknown), comma-separated
    (what the duplicate check compares)."""
    file: Path
    values: tuple[float, ...] = ()
    """A multi-label row: 1.0, 0.0 or NaN (unknown) per label column, after the policy."""


PRESENT, ABSENT, UNCERTAIN = {"1", "1.0"}, {"0", "0.0"}, {"-1", "-1.0"}
NAN = float("nan")


def _csv_header(path: Path, cfg: DomainConfig) -> list[str] | None:
    """The label columns of a multi-label CSV: its first row is ``path,<label>,<label>,...`` with two or more
    labels (distinct, not empty). None for the single-label format (``path,label`` rows, the header optional)."""
    with reading_file(path, cfg), open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if row:
                break
        else:
            return None
    if row[0].strip().lower() != "path" or len(row) < 2:
        return None
    names = [c.strip() for c in row[1:]]
    where = f"domain {cfg.display!r} (csv): {path} line {reader.line_num}"
    if len(names) == 1:
        if names[0].lower() == "label":
            return None  # the single-label format's optional header
        raise DomainError(f"{where}: header {','.join(row)!r} names one label column; a multi-label CSV needs two or "
                          "more (path,<label>,<label>,..., each cell 1, 0, -1 or empty) and a single-label CSV has rows "
                          "path,<class> under an optional header 'path,label': add the other label columns, or name "
                          "the column 'label' to read its values as classes")
    for k, c in enumerate(names):
        if not c:
            raise DomainError(f"{where}: multi-label header path,<label>,...: column {k + 2} has no label name")
        if c in names[:k]:
            raise DomainError(f"{where}: multi-label header path,<label>,...: label {c!r} is named twice "
                              f"(columns {names.index(c) + 2} and {k + 2})")
    return names


def _read_cell(cell: str, cfg: DomainConfig) -> tuple[float, str] | None:
    """A multi-label cell read by the policy: (value, raw kind); None when it is not a label value."""
    c = cell.strip()
    if c in PRESENT:
        return 1.0, "present"
    if c in ABSENT:
        return 0.0, "absent"
    if c in UNCERTAIN:
        return {"ignore": NAN, "zero": 0.0, "one": 1.0}[cfg.uncertain], "uncertain"
    if not c:
        return {"ignore": NAN, "zero": 0.0}[cfg.blank], "blank"
    return None


def _checked_file(where: str, value: str, row: list[str], path: Path, base: Path, form: str) -> Path:
    if not value:
        raise DomainError(f"{where}: empty path in {','.join(row)!r}; each row is {form}")
    if os.path.isabs(value):
        raise DomainError(f"{where}: absolute path {value!r}; paths are relative to the CSV's folder")
    if ".." in Path(value).parts:
        raise DomainError(f"{where}: path with '..' {value!r}; paths stay inside the CSV's folder")
    file = path.parent / value
    if not inside(file, base):
        raise DomainError(f"{where}: path that leads outside the CSV's folder {path.parent} (a symlink): "
                          f"{value!r} -> {file.resolve()}")
    return file


def _csv_rows(path: Path, cfg: DomainConfig, names: list[str] | None = None,
              counts: Counter | None = None) -> list[_Row]:
    """The rows of a CSV domain, each checked: two columns, a path and a label that are not empty, the path
    relative, without ``..``, and not leading out of the CSV's folder (a symlink). Anything else is an error naming
    the file, the line and the value.

    With ``names`` (the label columns of a multi-label header, :func:`_csv_header`): the header row is skipped,
    every row has a path and one cell per label, each ``1``/``1.0`` (present), ``0``/``0.0`` (absent),
    ``-1``/``-1.0`` (uncertain: read by ``cfg.uncertain``) or empty (read by ``cfg.blank``); anything else is an
    error naming the file, the line, the column and the value. The counts of uncertain and empty cells are added
    to ``counts`` when given."""
    base = path.parent.resolve()
    rows = []
    form = "path,label" if names is None else "path," + ",".join(names)
    header = False
    with reading_file(path, cfg), open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for n, row in enumerate(reader, 1):
            if not row:
                continue
            if names is not None and not header:
                header = True  # the first non-empty row: the header
                continue
            if names is None and n == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            where = f"domain {cfg.display!r} (csv): {path} line {reader.line_num}"
            if names is None and len(row) != 2:
                raise DomainError(f"{where}: expected 2 columns path,label, got {row!r} (a multi-label CSV starts "
                                  "with a header row path,<label>,<label>,...)")
            if names is not None and len(row) != 1 + len(names):
                raise DomainError(f"{where}: expected {1 + len(names)} columns {form} as in the header, "
                                  f"got {len(row)}: {row!r}")
            value = row[0].strip()
            if names is None:
                label = row[1].strip()
                if value and not label:
                    raise DomainError(f"{where}: empty label for {value!r}; each row is path,label")
                file = _checked_file(where, value, row, path, base, form)
                rows.append(_Row(reader.line_num, value, label, file))
                continue
            values = []
            for k, cell in enumerate(row[1:]):
                read = _read_cell(cell, cfg)
                if read is None:
                    raise DomainError(f"{where}, column {k + 2} ({names[k]!r}): value {cell!r} for {value!r}; "
                                      "expected 1 (present), 0 (absent), -1 (uncertain) or an empty cell")
                values.append(read[0])
                if counts is not None and read[1] in ("uncertain", "blank"):
                    counts[names[k], read[1]] += 1
            file = _checked_file(where, value, row, path, base, form)
            label = ",".join("?" if v != v else str(int(v)) for v in values)
            rows.append(_Row(reader.line_num, value, label, file, tuple(values)))
    return rows


def _file_hash(file: Path, cfg: DomainConfig) -> str:
    h = hashlib.sha256()
    with reading_file(file, cfg), open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _drop_duplicates(rows: list[_Row], path: Path, cfg: DomainConfig) -> tuple[list[_Row], dict]:
    """The rows without those that list an image again: the same file (its path normalised, symlinks followed),
    then the same content (SHA-256 of the file; only files of a size that another file has are read). The first
    row is kept; the same image under two labels is an error naming both rows."""
    def same(a: _Row, b: _Row, how: str) -> None:
        if a.label != b.label:
            raise DomainError(f"domain {cfg.display!r} (csv): {path}: line {a.line} ({a.value}, label {a.label!r}) "
                              f"and line {b.line} ({b.value}, label {b.label!r}) are the same image{how}; give it "
                              "one label and list it once")

    first: dict = {}
    by_path = []
    for r in rows:
        k = r.file.resolve()
        if k in first:
            same(first[k], r, "")
        else:
            first[k] = r
            by_path.append(r)
    sizes = [r.file.stat().st_size for r in by_path]
    shared = {n for n, c in Counter(sizes).items() if c > 1}  # a file of a size no other has is no duplicate
    first = {}
    kept = []
    for r, n in zip(by_path, sizes, strict=True):
        if n not in shared:
            kept.append(r)
            continue
        k = (n, _file_hash(r.file, cfg))
        if k in first:
            same(first[k], r, " (the same content)")
        else:
            first[k] = r
            kept.append(r)
    record = {"rows": len(rows), "same_path": len(rows) - len(by_path), "same_content": len(by_path) - len(kept),
              "dropped": len(rows) - len(kept)}
    if record["dropped"]:
        log.warning("domain %r (csv): %s: dropped %s (%d repeat a path, %d an image listed under another path); "
                    "%d images remain", cfg.display, path, plural(record["dropped"], "duplicate row"),
                    record["same_path"], record["same_content"], len(kept))
    return kept, record


@register_domain("csv", summary="Your images listed in a CSV file of path,label rows (paths relative to the file); "
                 "a header path,<label>,<label>,... makes it multi-label", needs_path=True)
def csv_domain(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    """Rows path,label (a header row ``path,label`` is optional): see :func:`_csv_rows` for what is refused, and
    :func:`_drop_duplicates` for rows that list an image again (dropped, counted in ``meta["duplicates"]`` and
    logged).

    A header row ``path,<label 1>,<label 2>,...`` (two labels or more) makes the domain multi-label: see
    :func:`_csv_multilabel`."""
    path = Path(cfg.path)
    if not cfg.path or not path.is_file():
        raise DomainError(f"domain {cfg.display!r} (csv): {cfg.path!r} is not a file; expected a CSV of path,label rows")
    names = _csv_header(path, cfg)
    if names is not None:
        return _csv_multilabel(path, names, cfg, size, channels)
    rows = _csv_rows(path, cfg)
    _check_exist(rows, path, cfg)
    rows, duplicates = _drop_duplicates(rows, path, cfg)
    classes = sorted({r.label for r in rows})
    index = {c: k for k, c in enumerate(classes)}
    return files_domain([r.file for r in rows], [index[r.label] for r in rows], classes, cfg, size, channels,
                         {"path": str(path), "duplicates": duplicates})


def _check_exist(rows: list[_Row], path: Path, cfg: DomainConfig) -> None:
    missing = [r for r in rows if not r.file.is_file()]
    if missing:
        raise DomainError(f"domain {cfg.display!r} (csv): {path}: {len(missing)} listed files do not exist, e.g. "
                          f"line {missing[0].line}: {missing[0].file}")


def _csv_multilabel(path: Path, names: list[str], cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    """A multi-label CSV: its labels are the header's label columns, in their order (``classes``), read by the
    policy of ``cfg.uncertain`` and ``cfg.blank`` to 1.0, 0.0 or NaN (unknown). Rows whose labels are all unknown
    are dropped (one warning counting them); duplicates as in the single-label format (the same image with other
    labels, after the policy, is an error). A label without any known positive, or without any known negative, among
    the images kept is named in a warning, not refused: its AUC is undefined and excluded (and counted) wherever
    it is computed. ``meta["multilabel"]``: the policy, the uncertain and empty cells per label in the file, the
    dropped rows, and per label the positives, negatives and unknowns of the images kept."""
    cells: Counter = Counter()
    rows = _csv_rows(path, cfg, names, cells)
    known = [r for r in rows if any(v == v for v in r.values)]
    if len(known) < len(rows):
        log.warning("domain %r (csv): %s: dropped %s whose labels are all unknown (uncertain=%r, blank=%r); "
                    "%d rows remain", cfg.display, path, plural(len(rows) - len(known), "row"), cfg.uncertain,
                    cfg.blank, len(known))
    if not known:
        raise DomainError(f"domain {cfg.display!r} (csv): {path}: no row with a known label (uncertain="
                          f"{cfg.uncertain!r}, blank={cfg.blank!r}); expected rows path,{','.join(names)} of 1, 0, "
                          "-1 or empty cells")
    _check_exist(known, path, cfg)
    kept, duplicates = _drop_duplicates(known, path, cfg)
    values = np.array([r.values for r in kept], dtype=np.float32).reshape(len(kept), len(names))
    raw = files_domain([r.file for r in kept], values, names, cfg, size, channels,
                        {"path": str(path), "duplicates": duplicates})
    y = raw.labels
    counts = {n: {"positive": int((y[:, k] == 1).sum()), "negative": int((y[:, k] == 0).sum()),
                  "unknown": int(np.isnan(y[:, k]).sum()), "uncertain_cells": cells[n, "uncertain"],
                  "empty_cells": cells[n, "blank"]} for k, n in enumerate(names)}
    no_pos = [n for n in names if not counts[n]["positive"]]
    no_neg = [n for n in names if not counts[n]["negative"]]
    for what, lacking in (("positive", no_pos), ("negative", no_neg)):
        if lacking:
            log.warning("domain %r (csv): %s: %s without any known %s among the %d images: %s; its AUC is "
                        "undefined (excluded)", cfg.display, path, plural(len(lacking), "label"), what, len(y),
                        ", ".join(lacking))
    raw.meta["multilabel"] = {"uncertain": cfg.uncertain, "blank": cfg.blank,
                              "dropped_unknown": len(rows) - len(known), "labels": counts,
                              "no_positive": no_pos, "no_negative": no_neg}
    return raw
