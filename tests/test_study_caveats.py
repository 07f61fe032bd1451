"""The caveats of a study's verdicts read from its stored runs (study/caveats.py), and the verdicts they feed."""

from __future__ import annotations

import shutil

from transferscope.claims import HOLDS, judge
from transferscope.claims.stats import UNRELIABLE
from transferscope.store import Store
from transferscope.study.caveats import study_caveats

from .test_claims import acc
from .test_study import _fake_done, _plan

GOOD = {"train_acc_final": 0.95, "test_acc": 0.9, "speed_mean_acc_k": 0.5, "speed_steps_to_frac": 3.0}


def _study(tmp_path, folders, train_acc):
    """Every run stored by hand; ``train_acc(run)`` gives its final training accuracy."""
    plan = _plan(tmp_path, folders)
    store = Store(tmp_path / "res")
    for r in plan.runs:
        _fake_done(store, r, {**GOOD, "train_acc_final": train_acc(r)})
    return plan, store


def test_runs_that_did_not_fit_become_a_blocking_caveat_of_their_arm_and_target(tmp_path, folders):
    plan, store = _study(tmp_path, folders, lambda r: 0.5 if r.arm == "RI-T" and r.parent_checkpoint < 0 else 0.95)
    cs = study_caveats(plan, store)
    (c,) = cs
    assert (c.kind, c.target, c.arm, c.blocking) == ("underfit", "tgt", "RI-T", True)
    assert "2 of 2 RI-T runs on tgt" in c.message and "seeds 0, 1" in c.message and "0.500" in c.message
    assert "scratch.epochs" in c.remedy and "scratch.lr_grid" in c.remedy


def test_a_basin_run_that_did_not_fit_is_a_caveat_of_the_basin_not_of_p_t(tmp_path, folders):
    plan, store = _study(tmp_path, folders, lambda r: 0.5 if r.parent_checkpoint >= 0 else 0.95)
    assert {(c.kind, c.arm) for c in study_caveats(plan, store)} == {("underfit", "basin")}


def test_failed_and_missing_runs_are_named(tmp_path, folders):
    plan, store = _study(tmp_path, folders, lambda r: 0.95)
    assert study_caveats(plan, store) == ()
    gone = next(r for r in plan.runs if r.arm == "P-T" and r.seed == 1)
    shutil.rmtree(store.run_dir(gone.run_id))
    (c,) = study_caveats(plan, store)
    assert (c.kind, c.arm, c.blocking) == ("missing-runs", "P-T", False) and "seeds 1" in c.message


def test_the_caveats_a_study_reads_reach_its_verdicts(tmp_path, folders):
    """Evidence of a clear gain on 'tgt' with the study's own caveats: unreliable while RI-T did not fit, decisive
    once it does; another target's name on the same evidence carries nothing."""
    from .test_claims import ev, target

    plan, store = _study(tmp_path, folders, lambda r: 0.5 if r.arm == "RI-T" else 0.95)
    cs = study_caveats(plan, store)
    (v,) = [x for x in judge(ev(target("tgt", accuracy=acc(0.8, 0.5)), caveats=cs)) if x.claim == "N1"]
    assert v.targets[0].outcome == UNRELIABLE and v.targets[0].statistical_outcome == HOLDS
    (w,) = [x for x in judge(ev(target("other", accuracy=acc(0.8, 0.5)), caveats=cs)) if x.claim == "N1"]
    assert w.targets[0].outcome == HOLDS and not w.caveats
