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


def test_a_learning_rate_choice_is_a_caveat_of_the_runs_it_chose_for(tmp_path, folders):
    """basin.lr = "own": the sweep's checkpoint chooses its own rate; a choice where no candidate fit (or one at the
    edge of its grid) is a caveat of the basin when it is the checkpoint's, of P-T when it is the final P's."""
    from transferscope.study.tuning import resolve

    plan = _plan(tmp_path, folders, overrides=["finetune.lr_grid=[0.01, 0.03, 0.1]"])
    sels = {s.start: s for s in plan.selections if s.arm == "P-T"}
    assert set(sels) == {-1.0, 1.0}
    for bad_start, arm in ((1.0, "basin"), (-1.0, "P-T")):
        store = Store(tmp_path / f"res{bad_start}")
        for start, sel in sels.items():
            for c in sel.candidates:  # 0.03 wins on validation; no candidate fits at the bad start
                _fake_done(store, c, {**GOOD, "val_acc": 0.9 if c.train.lr == 0.03 else 0.5, "val_loss": 1.0,
                                      "train_acc_final": 0.5 if start == bad_start else 0.95})
        done = {c.run_id for s in sels.values() for c in s.candidates}
        for r in resolve(plan, store).runs:
            if r.run_id not in done:
                bad = r.arm == "P-T" and r.parent_checkpoint == bad_start
                _fake_done(store, r, {**GOOD, "train_acc_final": 0.5 if bad else 0.95})
        kinds = {(c.kind, c.arm) for c in study_caveats(plan, store)}
        assert ("no-fitting-lr", arm) in kinds and ("underfit", arm) in kinds, kinds
        assert not [k for k in kinds if k[1] != arm], kinds
    # the basin checkpoint's rate chosen at the edge of its grid (every candidate fits): a caveat of the basin alone
    store = Store(tmp_path / "edge")
    for start, sel in sels.items():
        best = 0.1 if start >= 0 else 0.03
        for c in sel.candidates:
            _fake_done(store, c, {**GOOD, "val_acc": 0.9 if c.train.lr == best else 0.5, "val_loss": 1.0})
    done = {c.run_id for s in sels.values() for c in s.candidates}
    for r in resolve(plan, store).runs:
        if r.run_id not in done:
            _fake_done(store, r, GOOD)
    assert {(c.kind, c.arm) for c in study_caveats(plan, store)} == {("lr-at-edge", "basin")}


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
