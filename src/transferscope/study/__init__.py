"""Studies: a config expanded into runs (plan), trained by one scheduler on a backend (execute: this machine or a
Ray cluster), summarised from the store.

Names are imported on first use, so that reading a finished study (``summary``, ``tuning``, the report)
does not import torch.
"""

import importlib

_WHERE = {
    "ExecutionSummary": "runner", "execute": "runner", "load_run_model": "artefacts", "run_one": "runner",
    "ARMS": "plan", "Plan": "plan", "RunSpec": "plan", "make_plan": "plan", "validate": "plan",
    "format_table": "summary", "results_table": "summary", "status_counts": "summary",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
