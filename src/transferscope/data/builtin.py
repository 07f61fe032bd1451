"""The built-in domains: real datasets installed on the machine by Debian and PyPI packages, plus the
generic ``imagefolder`` and ``csv`` domains for a user's own data. Nothing is downloaded at run time.

Importing this module registers them all; :mod:`transferscope.data` imports it, so whoever reaches the registry
finds them, and the registry (:mod:`transferscope.data.registry`) imports no loader back. The loaders live by what
they read: :mod:`~transferscope.data.packaged` (the datasets of installed packages) and
:mod:`~transferscope.data.user` (a user's folder or CSV list), both on :mod:`~transferscope.data.reading`. Their
public names stay importable from here, as before the split.
"""

from __future__ import annotations

from .images import pil_to_array
from .packaged import (
    ANIMAL_CLASSES,
    CLIPART_CLASSES,
    FASHION_CLASSES,
    MULTI_CLASS_IDS,
    MULTI_CLASSES,
    MULTI_ITEMS,
    MULTI_POOL,
    MULTI_SEED,
    MULTI_VERSION,
    TEXTURE_IMAGES,
    TEXTURE_TILE,
    animal_silhouettes,
    clipart,
    compose,
    fashion_mnist,
    fashion_multi,
    fashion_multi_recipe,
    load_numpy_pickle,
    mnist_digits,
    textures,
)
from .reading import DECODE_ERRORS, IMAGE_SUFFIXES
from .user import csv_domain, imagefolder

__all__ = ["IMAGE_SUFFIXES", "DECODE_ERRORS", "FASHION_CLASSES", "MULTI_CLASSES", "MULTI_CLASS_IDS", "MULTI_POOL",
           "MULTI_ITEMS", "MULTI_SEED", "MULTI_VERSION", "ANIMAL_CLASSES", "CLIPART_CLASSES", "TEXTURE_IMAGES",
           "TEXTURE_TILE", "fashion_mnist", "fashion_multi", "fashion_multi_recipe", "compose", "load_numpy_pickle",
           "animal_silhouettes", "clipart", "mnist_digits", "textures", "imagefolder", "csv_domain",
           "pil_to_array"]
