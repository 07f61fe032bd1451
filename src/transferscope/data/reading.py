"""Reading a domain's files into a :class:`~transferscope.data.registry.RawDomain`: the steps every built-in loader
shares. Finding a package's data; turning any failure to read a file into a one-line error that names it; checking
labels; images held in an array, or decoded from files only when a split selects them; walking a data root without
following symlinks out of it. Kept apart from the loaders so that the domains of installed packages
(:mod:`transferscope.data.packaged`) and the user's own (:mod:`transferscope.data.user`) share one copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import DomainConfig
from .images import pil_to_array, resize_array
from .registry import DomainError, RawDomain

__all__ = ["LOGGER", "IMAGE_SUFFIXES", "DECODE_ERRORS", "package_dir", "require", "stat_fingerprint", "first_line",
           "reading_file", "check_labels", "array_domain", "files_domain", "inside", "images_under", "plural",
           "say_outside"]

LOGGER = "transferscope.data.builtin"
"""The one logger of the built-in loaders, named after the module they were split from: users' logging settings
(and the tests) pick their warnings by that name."""
log = logging.getLogger(LOGGER)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, zlib.error,
                 Image.DecompressionBombError)
"""What Pillow raises for a file whose header reads but whose image data does not decode."""


def package_dir(package: str, domain: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DomainError(f"domain {domain!r}: needs the Python package {package!r}; install it with: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def require(path: Path, domain: str, install: str) -> Path:
    if not path.exists():
        raise DomainError(f"domain {domain!r}: {path} does not exist; install it with: {install}")
    return path


def stat_fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


@contextmanager
def reading_file(path: Path, cfg: DomainConfig, install: str = "") -> Iterator[None]:
    """Any failure to read or parse ``path`` (truncated, garbled, a refused pickle) becomes a one-line
    DomainError that names the file."""
    try:
        yield
    except DomainError:
        raise
    except Exception as e:  # a garbled file can fail in any way: gzip, zlib, unpickling, reshaping, parsing
        again = f"; reinstall it: {install}" if install and not cfg.path else ""
        raise DomainError(f"domain {cfg.display!r}: cannot read {path}: {first_line(e)}{again}") from e


def check_labels(cfg: DomainConfig, x: np.ndarray, y: np.ndarray, classes: list[str], files) -> None:
    where = ", ".join(str(f) for f in files)
    if len(x) != len(y):
        raise DomainError(f"domain {cfg.display!r}: {len(x)} images but {len(y)} labels in {where}")
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise DomainError(f"domain {cfg.display!r}: labels from {y.min()} to {y.max()} in {where}, expected "
                          f"0 to {len(classes) - 1}")


def array_domain(x, y, classes, size, channels, *, is_test=None, files=(), meta=None, modes=None) -> RawDomain:
    """Images in an array (N, H, W) or (N, C, H, W); ``modes``: their colour modes as stored when ``x`` was already
    converted (default: grey for one channel, RGB for three)."""
    x = np.asarray(x, dtype=np.uint8)
    if modes is None:
        modes = np.full(len(x), "L" if x.ndim == 3 or x.shape[1] == 1 else "RGB")
    sizes = np.tile(np.array([[x.shape[-1], x.shape[-2]]], dtype=np.int64), (len(x), 1))
    arr = resize_array(x, size, channels)
    return RawDomain(
        classes=list(classes),
        labels=np.asarray(y, dtype=np.int64),
        load=lambda idx: arr[np.asarray(idx)],
        is_test=is_test,
        fingerprint=stat_fingerprint(list(files)),
        meta=dict(meta or {}),
        modes=np.asarray(modes),
        sizes=sizes,
    )


def files_domain(files: list[Path], labels, classes: list[str], cfg: DomainConfig, size: int,
                  channels: int, meta: dict, skipped: dict | None = None) -> RawDomain:
    """Images in files: sizes are read from headers (cheap); decoding waits until a split selects them.

    Files whose header does not read, or over ``cfg.max_pixels``, are skipped and counted (``meta["skipped"]``,
    which adds the counts of ``skipped``); a class left without any image is an error naming it. A file whose
    header reads but whose image data does not decode is an error naming the file, when a split selects it.
    ``labels``: a class index per file, or multi-label rows (n, L) of 1, 0 and NaN (the per-class check is then
    the caller's, on the labels of the files kept: ``RawDomain.labels``)."""
    keep, modes, sizes = [], [], []
    skipped = {"too_large": 0, "unreadable": 0, **(skipped or {})}
    for i, f in enumerate(files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    w, h = im.size
                    mode = im.mode
        except Image.DecompressionBombError:
            skipped["too_large"] += 1
            continue
        except DECODE_ERRORS:
            skipped["unreadable"] += 1
            continue
        if w * h > cfg.max_pixels:
            skipped["too_large"] += 1
            continue
        keep.append(i)
        modes.append(mode)
        sizes.append((w, h))
    keep_files = [files[i] for i in keep]
    if skipped["too_large"] or skipped["unreadable"]:
        log.info("domain %s: skipped %d files over %d pixels and %d unreadable files", cfg.name,
                 skipped["too_large"], cfg.max_pixels, skipped["unreadable"])
    if not keep_files:
        raise DomainError(f"domain {cfg.display!r}: no readable image among {len(files)} files")
    multilabel = np.ndim(labels) == 2
    if multilabel:
        keep_labels = np.asarray(labels, dtype=np.float32)[np.asarray(keep, dtype=np.int64)]
    else:
        keep_labels = np.asarray([labels[i] for i in keep], dtype=np.int64)
        listed = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
        kept = np.bincount(keep_labels, minlength=len(classes))
        for k in np.flatnonzero(kept == 0):
            why = (f"all {listed[k]} of its files were skipped (unreadable, or over max_pixels={cfg.max_pixels})"
                   if listed[k] else "no image file")
            raise DomainError(f"domain {cfg.display!r}: class {classes[k]!r} has no usable image: {why}")

    def load(idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), channels, size, size), dtype=np.uint8)
        for j, i in enumerate(np.asarray(idx)):
            try:
                with Image.open(keep_files[i]) as im:
                    out[j] = pil_to_array(im, size, channels)
            except DECODE_ERRORS as e:  # the header was read; the image data is truncated or garbled
                raise DomainError(f"domain {cfg.display!r}: cannot decode {keep_files[i]}: {first_line(e)}; "
                                  "replace or remove the file") from e
        return out

    return RawDomain(classes, keep_labels, load,
                     fingerprint=stat_fingerprint(keep_files),
                     meta={**meta, "files": len(files), "skipped": skipped}, modes=np.array(modes),
                     sizes=np.array(sizes, dtype=np.int64))


# ------------------------------------------------------------------------- a data root and its symlinks

def inside(p: Path, base: Path) -> bool:
    """Whether ``p``, its symlinks followed, lies in the folder ``base`` (resolved)."""
    try:
        p.resolve().relative_to(base)
    except (ValueError, OSError, RuntimeError):  # outside, or a symlink loop
        return False
    return True


def images_under(folder: Path, base: Path, outside: list[Path]) -> list[Path]:
    """The image files under ``folder`` (sorted) that lie in ``base``; those that lead out of it (symlinks) are
    appended to ``outside``. Symlinked subfolders are not descended into."""
    found = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            (found if inside(p, base) else outside).append(p)
    return found


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def say_outside(cfg: DomainConfig, kind: str, base: Path, folders: list[str], files: list[Path]) -> None:
    if not folders and not files:
        return
    parts = [f"{plural(len(folders), 'class folder')} ({', '.join(folders)})"] if folders else []
    parts += [plural(len(files), "file")] if files else []
    example = files[0] if files else base / folders[0]
    log.warning("domain %r (%s): refused %s that %s outside the data root %s (symlinks), e.g. %s -> %s", cfg.display,
                kind, " and ".join(parts), "leads" if len(folders) + len(files) == 1 else "lead", base, example,
                example.resolve())
