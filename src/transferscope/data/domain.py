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
from .registry import DomainError, get_domain_info
from .shuffle import block_shuffle

log = logging.getLogger(__name__)

__all__ = ["Split", "DomainData", "load_domain", "split_indices", "cache_dir"]

LOADER_VERSION = 2  # bump when decoding or splitting changes, so old caches are not reused (2: the conversion record)


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    """uint8 images (N, C, S, S)."""
    y: torch.Tensor
    """int64 labels (N,)."""
    index: np.ndarray
    """(N,) index of each image in the domain's pool, for tracing an example back to its file."""

    def __len__(self) -> int:
        return len(self.y)

    def sample(self, n: int, seed: int = 0) -> Split:
        """``n`` examples balanced over the classes (seeded): a class-stratified round robin over a seeded shuffle
        of each class. Splits are stored class by class, so ``x[:n]`` would see only the first classes."""
        if n <= 0 or n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g)
        labels = self.y[perm]
        per_class = [perm[labels == c] for c in torch.unique(self.y)]
        rounds = []
        for r in range(max(len(p) for p in per_class)):
            rounds.extend(int(p[r]) for p in per_class if len(p) > r)
            if len(rounds) >= n:
                break
        idx = torch.tensor(rounds[:n])
        return Split(self.x[idx], self.y[idx], self.index[idx.numpy()])


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
    what remains (0: all of it). The three never overlap.
    """
    out = {"train": [], "val": [], "test": []}
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    for k in range(n_classes):
        rng = np.random.default_rng([seed, k])
        idx = np.flatnonzero(labels == k)
        name = classes[k] if classes else str(k)
        if is_test is not None and cfg.n_test_per_class == 0:
            test = idx[is_test[idx]]
            pool = rng.permutation(idx[~is_test[idx]])
        else:
            pool = rng.permutation(idx if is_test is None else idx[~is_test[idx]])
            n_test = cfg.n_test_per_class or max(1, round(0.2 * len(pool)))
            test, pool = pool[:n_test], pool[n_test:]
            if cfg.n_test_per_class and len(test) < cfg.n_test_per_class:
                pool = pool[:0]
        need = cfg.n_val_per_class + max(cfg.n_per_class, 1)
        if len(pool) < need or (cfg.n_test_per_class and len(test) < cfg.n_test_per_class):
            raise DomainError(
                f"domain {cfg.display!r}: class {name!r} has {len(idx)} usable images, too few for "
                f"n_test_per_class={cfg.n_test_per_class}, n_val_per_class={cfg.n_val_per_class}, "
                f"n_per_class={cfg.n_per_class}"
            )
        val, rest = pool[: cfg.n_val_per_class], pool[cfg.n_val_per_class :]
        train = rest[: cfg.n_per_class] if cfg.n_per_class else rest
        out["train"].append(train)
        out["val"].append(val)
        out["test"].append(np.sort(test))
    return {s: np.concatenate(v) if v else np.zeros(0, np.int64) for s, v in out.items()}


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


def load_domain(cfg: DomainConfig, data: DataConfig, *, use_cache: bool = True) -> DomainData:
    """Load a domain, split it and hold every image in memory as uint8 (no block shuffle applied).

    Decoded splits are cached on disk (numpy ``.npz``, no pickle) under a key of the domain config,
    the image format, the split seed and a fingerprint of the underlying files.

    Every image is converted to ``data.channels`` and ``data.image_size``; what that changed (colour modes, original
    sizes, padding: :func:`~transferscope.data.images.conversion_record`; empty when nothing) is the domain's
    ``meta["conversion"]``, stored with the cache, and logged (INFO) once per call when not empty.
    """
    info = get_domain_info(cfg.name)
    if info.needs_path and not cfg.path:
        raise DomainError(f"domain {cfg.display!r}: the {cfg.name} domain needs a path")
    raw = info.loader(cfg, data.image_size, data.channels)
    key_src = json.dumps({"domain": to_dict(cfg), "size": data.image_size, "channels": data.channels,
                          "split_seed": data.split_seed, "files": raw.fingerprint, "v": LOADER_VERSION},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    path = cache_dir(data) / f"{cfg.name}-{key}.npz"
    arrays = None
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable cache %s: %s", path, e)
        if arrays is not None and "conversion" not in arrays:
            arrays = None  # written without its conversion record: decode again
    if arrays is None:
        idx = split_indices(raw.labels, raw.is_test, cfg, data.split_seed, raw.classes)
        arrays = {}
        for s, i in idx.items():
            arrays[f"{s}_x"] = raw.load(i) if len(i) else np.zeros((0, data.channels, data.image_size,
                                                                    data.image_size), np.uint8)
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
    splits = {
        s: Split(torch.from_numpy(arrays[f"{s}_x"]), torch.from_numpy(arrays[f"{s}_y"]).long(), arrays[f"{s}_index"])
        for s in ("train", "val", "test")
    }
    meta = {**raw.meta, "domain": cfg.name}
    conversion = json.loads(str(arrays["conversion"]))
    if conversion is not None:
        meta["conversion"] = conversion
        if conversion:
            log.info("domain %r: %d of %d images converted to the study's format: %s", cfg.display,
                     conversion["converted"], conversion["images"], describe_conversion(conversion))
    return DomainData(cfg.display, tuple(raw.classes), splits["train"], splits["val"], splits["test"],
                      block_size=data.image_size, meta=meta)
