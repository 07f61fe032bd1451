"""Loading a domain into fixed train / val / test splits of in-memory uint8 tensors, with a disk cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig, DomainConfig, to_dict
from .images import conversion_record, describe_conversion
from .registry import DomainError, RawDomain, get_domain_info
from .shuffle import block_shuffle

log = logging.getLogger(__name__)

__all__ = ["Split", "DomainData", "load_domain", "check_split", "split_indices", "split_multilabel", "cache_dir"]

LOADER_VERSION = 3
"""Part of the cache key: bumped when decoding, splitting or the cache's contents change, so old caches are not
reused (2: the conversion record; 3: the cache holds its key; duplicate CSV rows dropped, empty class folders and
symlinks out of the data root skipped)."""
CACHE_ARRAYS = ("key", "conversion") + tuple(f"{s}_{a}" for s in ("train", "val", "test") for a in ("x", "y", "index"))


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    """uint8 images (N, C, S, S)."""
    y: torch.Tensor
    """int64 labels (N,); multi-label: float32 (N, L), 1.0 present, 0.0 absent, NaN unknown."""
    index: np.ndarray
    """(N,) index of each image in the domain's pool, for tracing an example back to its file."""

    def __len__(self) -> int:
        return len(self.y)

    def sample(self, n: int, seed: int = 0) -> Split:
        """``n`` examples balanced over the classes (seeded): a class-stratified round robin over a seeded shuffle
        of each class. Splits are stored class by class, so ``x[:n]`` would see only the first classes.

        Multi-label (``y`` of shape (N, L)): in a seeded shuffle, first the first positive of each label (so that
        every label with a positive in the split has one in the sample once ``n`` >= the number of labels), then
        the shuffle's order: a near-uniform sample, whose label shares and share of images without any label stay
        those of the split (the losses, curvatures and gradients measured on it are the split's). The index tensors
        are made on the split's device."""
        if n <= 0 or n >= len(self):
            return self
        device = self.y.device
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g, device="cpu").to(device)
        if self.y.ndim == 2:
            return self._take(_round_robin_multilabel(perm, self.y, n), device)
        labels = self.y[perm]
        per_class = [perm[labels == c] for c in torch.unique(self.y)]
        rounds = []
        for r in range(max(len(p) for p in per_class)):
            rounds.extend(int(p[r]) for p in per_class if len(p) > r)
            if len(rounds) >= n:
                break
        return self._take(rounds[:n], device)

    def _take(self, rows: list[int], device: torch.device) -> Split:
        idx = torch.tensor(rows, dtype=torch.int64, device=device)
        return Split(self.x[idx.to(self.x.device)], self.y[idx], self.index[idx.cpu().numpy()])


def _round_robin_multilabel(perm: torch.Tensor, y: torch.Tensor, n: int) -> list[int]:
    """``n`` rows of a multi-label ``y``: the first positive of each label (in the order of ``perm``; at most one
    row per label, fewer where one row is the first positive of several), then the rest of ``perm`` in its order.
    Only one positive per label is reserved, so rare labels are not inflated and rows without any label keep their
    share."""
    order = perm.cpu().tolist()
    positive = (y == 1).cpu().numpy()
    taken: list[int] = []
    seen: set[int] = set()
    for k in range(positive.shape[1]):
        first = next((i for i in order if positive[i, k]), None)
        if first is not None and first not in seen:
            seen.add(first)
            taken.append(first)
            if len(taken) == n:
                return taken
    for i in order:
        if i not in seen:
            taken.append(i)
            if len(taken) == n:
                break
    return taken


@dataclass(frozen=True)
class DomainData:
    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    block_size: int
    meta: dict = field(default_factory=dict)

    @property
    def multilabel(self) -> bool:
        """Whether the labels are multi-label: ``train.y`` of shape (N, L), one column per entry of ``classes``."""
        return self.train.y.ndim == 2

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    def shuffled(self, block_size: int, seed: int) -> DomainData:
        """The same domain with every image block-shuffled by one permutation (train, val, test alike)."""
        if block_size == self.image_shape[-1] and block_size == self.image_shape[-2]:
            return replace(self, block_size=block_size)
        return replace(
            self,
            block_size=block_size,
            train=replace(self.train, x=block_shuffle(self.train.x, block_size, seed)),
            val=replace(self.val, x=block_shuffle(self.val.x, block_size, seed)),
            test=replace(self.test, x=block_shuffle(self.test.x, block_size, seed)),
            meta={**self.meta, "shuffle_seed": seed},
        )


def split_indices(labels: np.ndarray, is_test: np.ndarray | None, cfg: DomainConfig, seed: int,
                  classes: list[str] | None = None) -> dict[str, np.ndarray]:
    """Stratified train / val / test indices, fixed by ``seed``.

    Per class: the test set is ``n_test_per_class`` images (0: the official test split, or 20% of the pool);
    the validation set is ``n_val_per_class`` images of the rest; the training set is ``n_per_class`` of
    what remains (0: all of it). The three never overlap. With ``classes``, every class named there must have
    images (a class without any is an error, not an empty class of the model). When a class has too few images,
    the error says how many it has for train + val (what the test split leaves) and how many were asked, and what
    to ask for instead (:func:`_advice`).
    """
    out = {"train": [], "val": [], "test": []}
    n_classes = len(classes) if classes else (int(labels.max()) + 1 if len(labels) else 0)
    for k in range(n_classes):
        rng = np.random.default_rng([seed, k])
        idx = np.flatnonzero(labels == k)
        name = classes[k] if classes else str(k)
        official = 0 if is_test is None else int(is_test[idx].sum())
        if is_test is not None and cfg.n_test_per_class == 0:
            test = idx[is_test[idx]]
            pool = rng.permutation(idx[~is_test[idx]])
            aside = f"the {len(test)} of the official test split are kept for test"
        else:
            pool = rng.permutation(idx if is_test is None else idx[~is_test[idx]])
            n_test = cfg.n_test_per_class or max(1, round(0.2 * len(pool)))
            if cfg.n_test_per_class and len(pool) < n_test:
                outside = f" outside the official test split ({official} there, unused when n_test_per_class " \
                          "is set)" if is_test is not None else ""
                raise DomainError(
                    f"domain {cfg.display!r}: class {name!r} has {_n(len(pool), 'image')}{outside}, too few for the "
                    f"{n_test} asked for test (n_test_per_class={n_test}) and any for train + val"
                    + _advice(cfg, len(pool) - n_test, n_test, is_test is not None)
                )
            test, pool = pool[:n_test], pool[n_test:]
            rule = f"{'20%, ' if not cfg.n_test_per_class else ''}n_test_per_class={cfg.n_test_per_class}"
            aside = f"{len(test)} are set aside for test ({rule})"
            if official:
                aside += f" and the {official} of the official test split are not used"
        need = cfg.n_val_per_class + max(cfg.n_per_class, 1)
        if len(pool) < need:
            asked = (f"n_per_class={cfg.n_per_class} + n_val_per_class={cfg.n_val_per_class}" if cfg.n_per_class
                     else f"n_val_per_class={cfg.n_val_per_class} + 1 to train on, n_per_class=0 taking the rest")
            hint = _advice(cfg, len(pool), len(test) if cfg.n_test_per_class else 0, is_test is not None,
                           drawn=not (is_test is not None and cfg.n_test_per_class == 0))
            raise DomainError(
                f"domain {cfg.display!r}: class {name!r} has {_n(len(pool), 'image')} for train + val, too few for the "
                f"{need} asked ({asked}); it has {len(idx)} in all, of which {aside}{hint}"
            )
        val, rest = pool[: cfg.n_val_per_class], pool[cfg.n_val_per_class :]
        train = rest[: cfg.n_per_class] if cfg.n_per_class else rest
        out["train"].append(train)
        out["val"].append(val)
        out["test"].append(np.sort(test))
    return {s: np.concatenate(v) if v else np.zeros(0, np.int64) for s, v in out.items()}


def _advice(cfg: DomainConfig, left: int, n_test: int, official: bool, drawn: bool = True) -> str:
    """What to ask for instead when a class is too small for its split: ``left`` images are what the test split
    leaves for train + val (below zero: the test split asked for more than the class holds), ``n_test`` the images
    ``n_test_per_class`` takes for test (0 when it is not set: the official test split, or 20%), ``official``
    whether the domain has an official test split (the counts are then of the images outside it), ``drawn`` whether
    the test images come out of the class's pool (then at least one).

    Each setting that, lowered alone, makes the split fit, with the most it may be while the others stay as asked
    (``; ask for at most n_per_class=6 with n_val_per_class=4, or at most n_val_per_class=2 with n_per_class=8``);
    when none does alone, the most their sum may be; when the class is too small for any split, the fewest images
    it needs."""
    n_val, n_train = cfg.n_val_per_class, cfg.n_per_class
    need = n_val + max(n_train, 1)  # n_per_class = 0 takes the rest: at least one image
    ways = []
    if n_train and left - n_val >= 1:
        ways.append(f"n_per_class={left - n_val} with n_val_per_class={n_val}")
    if left - max(n_train, 1) >= 1:
        ways.append(f"n_val_per_class={left - max(n_train, 1)}" + (f" with n_per_class={n_train}" if n_train else ""))
    if n_test and n_test + left - need >= 1:
        ways.append(f"n_test_per_class={n_test + left - need}")
    if ways:
        return "; ask for at most " + ", or at most ".join(ways)
    if left + n_test >= 2 + bool(n_test):
        names = "n_per_class + n_val_per_class" + (" + n_test_per_class" if n_test else "")
        return f"; {names} can be at most {left + n_test} together"
    outside = " outside the official test split" if official else ""
    return (f"; the class needs at least 3{outside} (one image each for train, val and test)" if drawn else
            f"; the class needs at least 2{outside} (one image each for train and val)")


MULTILABEL_SALT = 0x6D6C
"""Mixed into the split seed of multi-label splits (so they draw other numbers than the per-class ones)."""


def split_multilabel(labels: np.ndarray, is_test: np.ndarray | None, cfg: DomainConfig, seed: int,
                     classes: list[str] | None = None) -> dict[str, np.ndarray]:
    """Train / val / test indices of a multi-label pool (``labels`` (N, L) float: 1 present, 0 absent, NaN
    unknown), fixed by ``seed``.

    The per-class counts are read per label, times the number of labels L: the test set is
    ``n_test_per_class * L`` images (0: the official test split, or 20% of the pool), the validation set
    ``n_val_per_class * L`` and the training set ``n_per_class * L`` (0: all that remains). Train and val are drawn
    from one seeded shuffle of the pool outside the official test split; test too when the domain has no official
    test split, and otherwise from a seeded shuffle of the official test split (all of it with
    ``n_test_per_class = 0``): a domain's test images stay its test images (``fashion-multi``'s test canvases are
    made of Fashion-MNIST test images only, which no pre-training on Fashion-MNIST has seen). Each split first
    takes, label by label (the rarest first), the first image of its shuffle positive for that label when none of
    its images so far is (train first, then test, then val); each then fills up in its shuffle's order. So a label
    with at least one known positive in the pool has one in the training set, and one in test and in val when it
    has three. The three never overlap; each is sorted. A split left without a known positive or negative for a
    label is named in a warning (its AUC is undefined there and excluded); a pool too small for the counts asked
    is an error.
    """
    labels = np.asarray(labels)
    n_labels = labels.shape[1]
    names = list(classes) if classes else [str(k) for k in range(n_labels)]
    rng = np.random.default_rng([seed, MULTILABEL_SALT])
    every = np.arange(len(labels))
    official = is_test is not None and cfg.n_test_per_class == 0
    pool = rng.permutation(every if is_test is None else every[~is_test])
    # the test images: the official test split (shuffled: a draw of n_test_per_class * L of it), else the pool
    test_pool = pool if is_test is None else rng.permutation(np.flatnonzero(is_test))
    positive = labels == 1
    sizes = {"test": len(test_pool) if official else
             (cfg.n_test_per_class * n_labels or max(1, round(0.2 * len(pool)))),
             "val": cfg.n_val_per_class * n_labels, "train": cfg.n_per_class * n_labels}
    if is_test is not None and len(test_pool) < sizes["test"]:
        raise DomainError(
            f"domain {cfg.display!r}: its official test split has {_n(len(test_pool), 'image')}, too few for the "
            f"{sizes['test']} asked for test (n_test_per_class={cfg.n_test_per_class}, times the {n_labels} labels); "
            f"ask for at most n_test_per_class={len(test_pool) // n_labels}, or 0 for all of it")
    need = (sizes["test"] if is_test is None else 0) + sizes["val"] + max(sizes["train"], 1)
    if len(pool) < need:
        rules = ([f"n_test_per_class={cfg.n_test_per_class} (test: {_n(sizes['test'], 'image')})"]
                 if is_test is None else [])
        rules += [f"n_val_per_class={cfg.n_val_per_class} (val: {_n(sizes['val'], 'image')})",
                  f"n_per_class={cfg.n_per_class} (train: " + (f"{_n(sizes['train'], 'image')})" if sizes["train"]
                                                             else "the rest, at least 1)")]
        outside = " outside the official test split" if is_test is not None else ""
        raise DomainError(
            f"domain {cfg.display!r}: multi-label pool of {_n(len(pool), 'image')}{outside}, too few for the {need} "
            f"asked: {', '.join(rules)}; multi-label counts are per label, times the {n_labels} labels")
    rarest = np.argsort(positive[pool].sum(0), kind="stable")
    taken = np.zeros(len(labels), bool)
    chosen: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    source = {"train": pool, "val": pool, "test": test_pool}
    if official:
        chosen["test"] = sorted(int(i) for i in test_pool)
    for s in ("train", "test", "val"):
        if s == "test" and official:
            continue
        quota = sizes[s] or len(source[s])
        for k in rarest:
            if len(chosen[s]) >= quota or positive[chosen[s], k].any():
                continue
            free = source[s][positive[source[s], k] & ~taken[source[s]]]
            if len(free):
                chosen[s].append(int(free[0]))
                taken[free[0]] = True
    for s in ("test", "val", "train"):
        if s == "test" and official:
            continue
        free = source[s][~taken[source[s]]]
        more = free[: max(sizes[s] - len(chosen[s]), 0)] if sizes[s] else free
        taken[more] = True
        chosen[s] += [int(i) for i in more]
    out = {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in chosen.items()}
    _warn_undefined_auc(out, labels, names, cfg)
    return out


def _warn_undefined_auc(splits: dict[str, np.ndarray], labels: np.ndarray, names: list[str], cfg: DomainConfig) -> None:
    """Name, per split, the labels without a known positive or negative there (their AUC is undefined)."""
    for s, i in splits.items():
        for what, value in (("positive", 1), ("negative", 0)):
            lacking = [names[k] for k in range(labels.shape[1]) if not (labels[i, k] == value).any()]
            if lacking:
                log.warning("domain %r: the %s split (%s) has no known %s for %s: %s; its AUC there is undefined "
                            "(excluded)", cfg.display, s, _n(len(i), "image"), what,
                            _n(len(lacking), "label"), ", ".join(lacking))


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cache_dir(data: DataConfig) -> Path:
    return Path(data.cache_dir or os.environ.get("TRANSFERSCOPE_CACHE") or Path.home() / ".cache" / "transferscope")


def _atomic_savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path, key: str, idx: dict[str, np.ndarray], labels: np.ndarray,
                shape: tuple[int, int, int]) -> tuple[dict | None, str]:
    """The arrays of a domain cache and ``""``, or None and what is wrong with it: unreadable (a truncated or
    garbled file, a pickle, an object array), another key, a missing array, images of another shape, or indices
    and labels that are not those of the split (``idx``) and of the domain (``labels``). Never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in CACHE_ARRAYS if k not in z.files]
            if missing:
                return None, f"no {', '.join(missing)}"
            arrays = {k: z[k] for k in CACHE_ARRAYS}
        conversion = json.loads(str(arrays["conversion"]))
    except Exception as e:  # BadZipFile, EOFError, a CRC error, a pickle, an object array, ...: rebuilt
        return None, f"{type(e).__name__}: {_first_line(e)}"
    if str(arrays["key"]) != key:
        return None, f"written for key {str(arrays['key'])[:40]!r}, not {key!r}"
    if conversion is not None and not isinstance(conversion, dict):
        return None, "its conversion record is not a mapping"
    for s, i in idx.items():
        x, y, index = arrays[f"{s}_x"], arrays[f"{s}_y"], arrays[f"{s}_index"]
        if x.dtype != np.uint8 or x.shape != (len(i), *shape):
            return None, f"{s}_x is {x.dtype} {tuple(x.shape)}, expected uint8 {(len(i), *shape)}"
        if index.shape != i.shape or not np.array_equal(index, i):
            return None, f"{s}_index is not the {s} split's"
        if labels.ndim == 2:  # multi-label: float32 (n, L), NaN (unknown) compared equal to NaN
            if y.dtype != np.float32 or y.shape != (len(i), labels.shape[1]) or not np.array_equal(
                    y, labels[i], equal_nan=True):
                return None, f"{s}_y is not the multi-label labels of the {s} split"
        elif y.shape != i.shape or not np.array_equal(y, labels[i]):
            return None, f"{s}_y is not the labels of the {s} split"
    return arrays, ""


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _multilabel_labels(labels: np.ndarray, classes: list[str], cfg: DomainConfig) -> np.ndarray:
    """A loader's multi-label labels as float32 (N, L), checked: one column per class, values 1, 0 or NaN."""
    y = np.asarray(labels, dtype=np.float32)
    if y.shape[1] != len(classes):
        raise DomainError(f"domain {cfg.display!r}: {y.shape[1]} label columns but {len(classes)} labels named")
    bad = ~(np.isnan(y) | (y == 0) | (y == 1))
    if bad.any():
        r, k = np.argwhere(bad)[0]
        raise DomainError(f"domain {cfg.display!r}: multi-label value {y[r, k]} for label {classes[k]!r} of image "
                          f"{r}; expected 1, 0 or NaN (unknown)")
    return y


def select_classes(raw: RawDomain, cfg: DomainConfig) -> RawDomain:
    """The images of ``cfg.classes`` only, labelled 0, 1, ... in that order (the other images are never decoded).
    A class the domain does not have, or a multi-label domain, is a :class:`DomainError` naming it."""
    if np.asarray(raw.labels).ndim != 1:
        raise DomainError(f"domain {cfg.display!r}: classes selects classes of a single-label domain; "
                          f"{cfg.name} has several labels per image")
    unknown = [c for c in cfg.classes if c not in raw.classes]
    if unknown:
        raise DomainError(f"domain {cfg.display!r}: classes {unknown} are not classes of {cfg.name}; its classes are "
                          + ", ".join(repr(c) for c in raw.classes))
    old = [raw.classes.index(c) for c in cfg.classes]
    keep = np.flatnonzero(np.isin(raw.labels, old))
    relabel = np.full(len(raw.classes), -1, dtype=np.int64)
    relabel[old] = np.arange(len(old))

    def load(idx: np.ndarray, base=raw.load, keep=keep) -> np.ndarray:
        return base(keep[np.asarray(idx, dtype=np.int64)])

    def sub(a):
        return None if a is None else np.asarray(a)[keep]

    return replace(raw, classes=list(cfg.classes), labels=relabel[np.asarray(raw.labels)[keep]],
                               load=load, is_test=sub(raw.is_test), modes=sub(raw.modes), sizes=sub(raw.sizes),
                               meta={**raw.meta, "classes_selected": list(cfg.classes)})


def check_split(cfg: DomainConfig, data: DataConfig) -> None:
    """Refuse, before anything is decoded, a split that :func:`load_domain` would refuse with the same
    :class:`DomainError` (a class too small for ``n_per_class``, ``n_val_per_class`` and ``n_test_per_class``, a class
    of ``classes`` the domain does not have), for a domain whose images are counted from the file listing alone:
    ``imagefolder``. Other domains, and a folder that is not there or lists no image (the loading says so), are left
    to the loading. The listing counts files whose header may not read (the loading skips them), so a class it
    passes can still be too small; one it refuses always is."""
    if cfg.name != "imagefolder" or not cfg.path:
        return
    from .user import imagefolder_listing

    try:
        listing = imagefolder_listing(cfg)
    except DomainError:
        return
    if not listing.files:
        return

    def never(idx: np.ndarray) -> np.ndarray:  # pragma: no cover - nothing is decoded here
        raise AssertionError("check_split decodes nothing")

    raw = RawDomain(list(listing.classes), np.asarray(listing.labels, dtype=np.int64), never)
    if cfg.classes:
        raw = select_classes(raw, cfg)
    split_indices(raw.labels, raw.is_test, cfg, data.split_seed, raw.classes)


def load_domain(cfg: DomainConfig, data: DataConfig, *, use_cache: bool = True) -> DomainData:
    """Load a domain, split it and hold every image in memory as uint8 (no block shuffle applied).

    Decoded splits are cached on disk (numpy ``.npz``, no pickle) under a key of the domain config,
    the image format, the split seed and a fingerprint of the underlying files. The cache holds its key; a cache
    that cannot be read, is of another key, or whose shapes, indices or labels are not those of the split is
    decoded again and rewritten, with a warning naming the file.

    Every image is converted to ``data.channels`` and ``data.image_size``; what that changed (colour modes, original
    sizes, padding: :func:`~transferscope.data.images.conversion_record`; empty when nothing) is the domain's
    ``meta["conversion"]``, stored with the cache, and logged (INFO) once per call when not empty.

    A loader whose labels are (N, L) makes a multi-label domain (``DomainData.multilabel``): split by
    :func:`split_multilabel`, labels float32 with NaN for unknown, compared NaN-aware when the cache is read.
    """
    info = get_domain_info(cfg.name)
    if info.needs_path and not cfg.path:
        raise DomainError(f"domain {cfg.display!r}: the {cfg.name} domain needs a path")
    raw = info.loader(cfg, data.image_size, data.channels)
    if cfg.classes:
        raw = select_classes(raw, cfg)
    set_policy = [f"{k} = {getattr(cfg, k)!r}" for k, default in (("uncertain", "ignore"), ("blank", "zero"))
                  if getattr(cfg, k) != default]
    if set_policy and np.asarray(raw.labels).ndim == 1:
        log.warning("domain %r: %s ignored: the label policy applies to multi-label csv domains only (this one has "
                    "one label per image)", cfg.display, " and ".join(set_policy))
    multilabel = raw.labels.ndim == 2
    if multilabel:
        raw.labels = _multilabel_labels(raw.labels, raw.classes, cfg)
    domain = to_dict(cfg)
    if not multilabel:  # the multi-label label policy changes nothing here: single-label cache keys stay as they were
        for k in ("uncertain", "blank"):
            domain.pop(k, None)
    key_src = json.dumps({"domain": domain, "size": data.image_size, "channels": data.channels,
                          "split_seed": data.split_seed, "files": raw.fingerprint, "v": LOADER_VERSION},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    path = cache_dir(data) / f"{cfg.name}-{key}.npz"
    splitter = split_multilabel if multilabel else split_indices
    idx = splitter(raw.labels, raw.is_test, cfg, data.split_seed, raw.classes)
    shape = (data.channels, data.image_size, data.image_size)
    arrays = None
    decoded = False  # the images were decoded (and converted) by this call, not read from the cache
    if use_cache and path.is_file():
        arrays, problem = _read_cache(path, key, idx, raw.labels, shape)
        if problem:
            log.warning("domain cache %s is unusable (%s); decoding the domain again", path, problem)
    if arrays is None:
        decoded = True
        arrays = {"key": np.array(key)}
        for s, i in idx.items():
            arrays[f"{s}_x"] = raw.load(i) if len(i) else np.zeros((0, *shape), np.uint8)
            arrays[f"{s}_y"] = raw.labels[i]
            arrays[f"{s}_index"] = i
        conversion = None
        if raw.modes is not None and raw.sizes is not None:
            loaded = np.concatenate(list(idx.values()))
            conversion = conversion_record(raw.modes[loaded], raw.sizes[loaded], data.channels, data.image_size)
        arrays["conversion"] = np.array(json.dumps(conversion))
        if use_cache:
            try:
                _atomic_savez(path, **arrays)
            except OSError as e:  # a read-only home must not stop a study
                log.warning("could not write domain cache %s: %s", path, e)
    def labels_of(s: str) -> torch.Tensor:
        y = torch.from_numpy(arrays[f"{s}_y"])
        return y.float() if multilabel else y.long()

    splits = {s: Split(torch.from_numpy(arrays[f"{s}_x"]), labels_of(s), arrays[f"{s}_index"])
              for s in ("train", "val", "test")}
    meta = {**raw.meta, "domain": cfg.name}
    conversion = json.loads(str(arrays["conversion"]))
    if conversion is not None:
        meta["conversion"] = conversion
        if conversion:
            lost = reduction(conversion, data) if cfg.name in ("imagefolder", "csv") else ""
            # a user's own images losing their colour or their size: a warning that says how to keep them, when
            # they are converted (once: the cache holds them converted, and says so at INFO after)
            log.log(logging.WARNING if lost and decoded else logging.INFO, "domain %r: %d of %d images converted to the study's "
                    "format: %s%s", cfg.display, conversion["converted"], conversion["images"],
                    describe_conversion(conversion), lost)
    return DomainData(cfg.display, tuple(raw.classes), splits["train"], splits["val"], splits["test"],
                      block_size=data.image_size, meta=meta)


COLOUR_MODES = ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")
"""Pillow's colour modes: an image of one of them made grey loses its colour."""


def reduction(conversion: dict, data: DataConfig) -> str:
    """What a conversion takes away from the images (their colour, their size) and how to keep it, as the end of a
    log line (``"; their colour is lost: set [data] channels = 3 ..."``); empty when it takes nothing away (grey
    made RGB, a smaller image enlarged)."""
    parts = []
    colour = conversion.get("colour", {})
    if colour.get("to") == "L" and any(m in COLOUR_MODES for m in colour.get("from", {})):
        parts.append("their colour is lost (set [data] channels = 3 to keep it)")
    size = conversion.get("size", {})
    larger = [k for k in size.get("from", {}) if max(int(v) for v in k.split("x")) > data.image_size]
    if larger:
        common = max(size.get("from", {}).items(), key=lambda kv: kv[1], default=("", 0))[0]
        parts.append(f"they are shrunk to {data.image_size}x{data.image_size} (most are {common}; set [data] "
                     f"image_size to keep more of them, at a cost in time)")
    return "; " + "; ".join(parts) if parts else ""


