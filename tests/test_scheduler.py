"""The scheduler (:mod:`transferscope.study.scheduler`) over its backends: a study run in rounds equals one run at
once, and the scheduler records what a backend reports, whoever trained the run."""

from __future__ import annotations

from dataclasses import replace

import pytest

from transferscope.config import load_config
from transferscope.store import RUN_DONE, RUN_FAILED, Store, StoreLocked
from transferscope.study import execute, make_plan
from transferscope.study.pool import InProcess, local_backend
from transferscope.study.scheduler import Finished, open_study

from .conftest import tiny_study_toml

SETS = ["seeds=[0, 1]", "block_sizes=[16]"]


def _plan(tmp_path, folders, extra: str = ""):
    p = tmp_path / "s.toml"
    p.write_text(tiny_study_toml(*folders, extra=extra))
    return make_plan(load_config(p, SETS))


def _weights(store: Store) -> dict[str, dict[str, str]]:
    return {rid: {k: v for k, v in store.artefact_hashes(rid).items() if k.endswith(".safetensors")}
            for rid in store.list_runs()}


def test_a_study_run_in_rounds_equals_one_run_at_once(tmp_path, folders):
    """Round 1: P and the runs of seed 0; round 2: the whole plan (what round 1 stored is skipped). The folder is
    held across the rounds, and the runs' weights are those of one call."""
    plan = _plan(tmp_path, folders)
    once = Store(tmp_path / "once")
    assert not execute(plan, once, jobs=1, threads=1, show_progress=False).failed
    store = Store(tmp_path / "rounds")
    first = replace(plan, runs=[r for r in plan.runs if r.arm == "P" or r.seed == 0], tuning=[], deferred=[])
    with open_study(plan, store, local_backend(1, ["cpu"]), threads=1, show_progress=False) as scheduler:
        a = scheduler.run_round(first)
        assert sorted(a.done) == sorted(r.run_id for r in first.runs) and not a.skipped
        with pytest.raises(StoreLocked):  # held between the rounds: a second writer is refused
            execute(plan, store, jobs=1, threads=1, show_progress=False)
        b = scheduler.run_round()
    assert sorted(b.skipped) == sorted(a.done) and not b.failed and not b.blocked
    assert sorted(a.done + b.done) == once.list_runs() == store.list_runs()
    assert _weights(store) == _weights(once)
    assert a.threads == b.threads == 1


def test_a_round_without_the_parent_of_a_run_blocks_it_and_says_why(tmp_path, folders):
    plan = _plan(tmp_path, folders)
    store = Store(tmp_path / "r")
    child = next(r for r in plan.runs if r.arm == "P-T")
    with open_study(plan, store, local_backend(1, ["cpu"]), threads=1, show_progress=False) as scheduler:
        s = scheduler.run_round(replace(plan, runs=[child], tuning=[], deferred=[]))
    assert s.blocked == {child.run_id: f"needs {child.parent}, which is neither stored nor in this round"}
    assert not s.done and not store.list_runs()


class _Reporting(InProcess):
    """A backend that trains nothing: it reports each run as the test says (stored by another process before it
    started, trained elsewhere, failed here)."""

    def __init__(self, store: Store, outcomes: dict[str, Finished]) -> None:
        super().__init__("cpu")
        self.store, self.outcomes = store, outcomes

    def submit(self, spec):
        self.ended.append(self.outcomes.get(spec.run_id) or Finished(spec, RUN_FAILED, "no such luck"))


def test_the_scheduler_records_what_the_backend_reports(tmp_path, folders):
    plan = _plan(tmp_path, folders)
    store = Store(tmp_path / "r")
    p = plan.runs[0]
    backend = _Reporting(store, {p.run_id: Finished(p, RUN_DONE, by="elsewhere")})
    with open_study(plan, store, backend, threads=1, show_progress=False) as scheduler:
        s = scheduler.run_round()
    assert p.run_id not in s.done and p.run_id not in s.skipped and p.run_id not in s.failed
    children = [r.run_id for r in plan.runs if r.parent == p.run_id]
    assert children and all(rid in s.failed for rid in children)  # they started: P was done elsewhere
    assert not s.blocked
    ri = next(r for r in plan.runs if r.arm == "RI-T")
    backend = _Reporting(store, {p.run_id: Finished(p, RUN_FAILED, "failed in another process: see its run.json",
                                                    by="elsewhere"),
                                 ri.run_id: Finished(ri, RUN_DONE, by="before")})
    with open_study(plan, store, backend, threads=1, show_progress=False) as scheduler:
        s = scheduler.run_round()
    assert s.failed[p.run_id] == "failed in another process: see its run.json"
    assert ri.run_id in s.skipped and ri.run_id not in s.done
    assert all(s.blocked[rid] == f"needs {p.run_id}, which failed" for rid in children)
