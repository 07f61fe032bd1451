"""A registry of named image domains (in the manner of timm's ``register_model`` / ``list_models``).

It imports no loader: the built-in ones register themselves when :mod:`transferscope.data` imports
:mod:`transferscope.data.builtin`, which happens before any module of the package, this one included, can be used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..config import DomainConfig

__all__ = ["RawDomain", "DomainInfo", "register_domain", "get_domain_info", "list_domains", "DomainError"]


class DomainError(ValueError):
    """A domain cannot be found or read. The message names the domain and what was expected."""


@dataclass
class RawDomain:
    """What a domain loader returns: labels of every image, and a function that decodes some of them.

    Images are decoded only when selected by a split, so a large folder with a low-data target costs
    only the images it uses.
    """

    classes: list[str]
    labels: np.ndarray
    """(n,) int64 class index of every image of the pool; a multi-label domain: (n, L) float32, one column per
    entry of ``classes``, 1.0 present, 0.0 absent, NaN unknown."""
    load: Callable[[np.ndarray], np.ndarray]
    """indices (k,) -> uint8 images (k, C, S, S) at the requested size and channels."""
    is_test: np.ndarray | None = None
    """(n,) bool: the domain's official test split, where it has one."""
    fingerprint: str = ""
    """Identifies the underlying files (paths, sizes, mtimes): part of the cache key."""
    meta: dict = field(default_factory=dict)
    """Provenance: package, licence, path, skipped files."""
    modes: np.ndarray | None = None
    """(n,) str: the colour mode of every image as stored (Pillow's names: ``L``, ``RGB``, ``RGBA``, ``P``, ...);
    with ``sizes``, what :func:`~transferscope.data.load_domain` records and logs as the domain's conversion to the
    study's channels and image size. None: the loader does not say (no conversion is recorded)."""
    sizes: np.ndarray | None = None
    """(n, 2) int: the width and height of every image as stored (see ``modes``)."""


Loader = Callable[[DomainConfig, int, int], RawDomain]


@dataclass(frozen=True)
class DomainInfo:
    name: str
    loader: Loader
    summary: str
    package: str = ""
    licence: str = ""
    needs_path: bool = False


_REGISTRY: dict[str, DomainInfo] = {}


def register_domain(name: str, *, summary: str, package: str = "", licence: str = "", needs_path: bool = False):
    """Decorator registering a loader ``(cfg, size, channels) -> RawDomain`` under ``name``."""

    def wrap(fn: Loader) -> Loader:
        if name in _REGISTRY:
            raise ValueError(f"domain {name!r} is registered twice")
        _REGISTRY[name] = DomainInfo(name, fn, summary, package, licence, needs_path)
        return fn

    return wrap


def get_domain_info(name: str) -> DomainInfo:
    if name not in _REGISTRY:
        raise DomainError(f"domain {name!r}: unknown; registered domains are {', '.join(list_domains())}")
    return _REGISTRY[name]


def list_domains() -> list[str]:
    return sorted(_REGISTRY)
