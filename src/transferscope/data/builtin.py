"""The built-in domains: real datasets installed on the machine by Debian and PyPI packages, plus the
generic ``imagefolder`` and ``csv`` domains for a user's own data. Nothing is downloaded at run time.

Importing this module registers them all; :mod:`transferscope.data` imports it, so whoever reaches the registry
finds them, and the registry (:mod:`transferscope.data.registry`) imports no loader back. The loaders live by what
they read: :mod:`~transferscope.data.packaged` (the datasets of installed packages) and
:mod:`~transferscope.data.user` (a user's folder or CSV list), both on :mod:`~transferscope.data.reading`. Their names
are imported from those modules.
"""

from __future__ import annotations

from . import packaged, user  # noqa: F401  (importing them registers their domains)

__all__: list[str] = []
