"""Studies: a config expanded into runs (plan), run locally (execute), summarised from the store."""

from .execute import ExecutionSummary, execute, load_run_model, run_one
from .plan import ARMS, Plan, RunSpec, make_plan, validate
from .summary import format_table, results_table, status_counts

__all__ = ["ARMS", "Plan", "RunSpec", "make_plan", "validate", "execute", "run_one", "load_run_model",
           "ExecutionSummary", "results_table", "format_table", "status_counts"]
