"""Reading a results folder for the report: the study, its plan with the learning-rate choices made, the analyses'
records (:mod:`transferscope.vocab.records`) and the verdicts, each read once, with what is missing and why.
Torch-free, as the whole report.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .. import jsonio
from .. import metrics as M
from ..claims import Verdict
from ..claims.compare import load_verdicts
from ..config import ConfigError, StudyConfig
from ..store import Store, read_analysis_index
from ..study.plan import make_plan
from ..study.tuning import resolve
from ..vocab.records import ModelsResult, PairsResult, result_from_dict

__all__ = ["Reader", "ReportError", "NO_ANALYSES"]

log = logging.getLogger("transferscope.report")  # the report's one logger, as before its sections had modules


class ReportError(ConfigError):
    """The folder is not a results folder (no study.json)."""


class Reader:
    def __init__(self, root: Path) -> None:
        self.root = root
        study = root / "study.json"
        if not study.is_file():
            raise ReportError(f"{root}: no study.json; is this a results folder written by 'transferscope run'?")
        self.store = Store(root)
        self.cfg: StudyConfig = self.store.study_config()
        self.base_plan = make_plan(self.cfg, check=False)  # learning-rate choices still open
        self.plan = resolve(self.base_plan, self.store)
        adir = root / "analyses"
        idx = adir / "index.json"
        self.index = read_analysis_index(idx, root) if idx.is_file() else None  # checked: files of analyses/ only
        self.results: dict[str, Any] = {}
        """Result name (``<analysis>/<target>``) -> its record (:mod:`transferscope.vocab.records`)."""
        self.unreadable: dict[str, str] = {}
        """Result name -> why its file could not be read (e.g. written by an older version)."""
        self.analysis_seconds = 0.0
        if self.index:
            for name, file in self.index["results"].items():
                p = adir / file
                if not p.is_file():
                    continue
                try:
                    d = jsonio.read(p)
                    self.results[name] = result_from_dict(name, d["result"])
                except (KeyError, TypeError, ValueError, AttributeError) as e:  # the section says what is missing
                    log.warning("%s: unreadable (%s: %s)", p, type(e).__name__, e)
                    self.unreadable[name] = f"{file}: {type(e).__name__}: {e}"
                    continue
                self.analysis_seconds += d.get("seconds", 0.0)
        self.claims: list[Verdict] | None = None
        self.claims_error = ""
        if (adir / "claims.json").is_file():
            try:
                self.claims = load_verdicts(root)
            except ValueError as e:  # a verdict file of an older version, or edited: say so, draw the rest
                self.claims_error = str(e)
                log.warning("verdicts not drawn: %s", e)

    def metric_of(self, target: str) -> str:
        """``acc`` or ``auc``: what a target's runs are judged by (from the transfer record; ``acc`` without one)."""
        tr = self.results.get("transfer/all")
        return next((row.metric for row in tr.rows if row.target == target), M.ACC) if tr else M.ACC

    def images(self, domain: str) -> dict[str, np.ndarray] | None:
        if not self.index or domain not in self.index.get("images", {}):
            return None
        p = self.root / "analyses" / self.index["images"][domain]
        if not p.is_file():
            return None
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def why_missing(self, what: str, analysis: str = "") -> str:
        """What to say where results are missing: analyze was never run, or ``what`` (and which result files of
        ``analysis`` could not be read)."""
        if self.index is None:
            return NO_ANALYSES
        bad = [why for name, why in self.unreadable.items() if analysis and name.split("/", 1)[0] == analysis]
        if bad:
            what += ("; unreadable result files (written by an older version? run `transferscope analyze` again): "
                     + "; ".join(bad))
        return what

    def per_target(self, name: str) -> dict[str, Any]:
        """Per target: the record of analysis ``name`` (e.g. a :class:`~transferscope.vocab.records.PairsResult`)."""
        return {t.display: self.results[f"{name}/{t.display}"] for t in self.cfg.targets
                if f"{name}/{t.display}" in self.results}

    def first_pairs(self, name: str) -> dict[str, dict[str, Any]]:
        """Per target: pair kind -> the result of its first pair (lowest seeds), for the figures."""
        out = {}
        for t, res in self.per_target(name).items():
            if not isinstance(res, PairsResult):
                continue
            kinds = {k: res.first(k) for k in res.kinds()}
            if kinds:
                out[t] = kinds
        return out

    def first_models(self, name: str) -> dict[str, dict[str, Any]]:
        """Per target: arm -> the result of its first seed's model, for the figures."""
        out = {}
        for t, res in self.per_target(name).items():
            if not isinstance(res, ModelsResult):
                continue
            arms_ = {a: res.first(a) for a in sorted(res.arms(), key=lambda a: min(m.seed for m in res.of_arm(a)))}
            if arms_:
                out[t] = arms_
        return out


NO_ANALYSES = "no analyses found: run `transferscope analyze` on this folder first"
