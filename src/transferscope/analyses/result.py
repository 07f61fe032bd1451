"""What every analysis result shares: a plain-dict form for JSON, its inverse, and files (JSON + .npz for arrays).

Every result records the arguments it was computed with (``args``) and its seed (``seed``; analyses without
randomness record the seed they were given, which changes nothing). The mixin and the result types live in the
torch-free :mod:`transferscope.study.records` (the report reads them without torch); this name stays for the
analyses that import it from here.
"""

from __future__ import annotations

from ..study.records import Result

__all__ = ["Result"]
