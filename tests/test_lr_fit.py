"""The learning-rate choice never keeps a candidate that did not fit its training data while another one did; when
none did, the best is kept and the choice, ``status``'s flags and the table say so and how to widen the grid."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transferscope.store import Store

from .test_study import _fake_done, _plan

GRID = [0.01, 0.02, 0.03]


def _selection(tmp_path, folders):
    plan = _plan(tmp_path, folders, overrides=[f"scratch.lr_grid={GRID}"])
    (sel,) = plan.selections
    assert sel.arm == "RI-T" and sel.rule == "best" and [c.train.lr for c in sel.candidates] == GRID
    return plan, sel


def _store(root, sel, val: dict, train: dict | None, **extra) -> Store:
    """Candidates stored as done, with these validation accuracies and final training accuracies (None: a run of an
    older version, without ``train_acc_final``)."""
    store = Store(root)
    for c in sel.candidates:
        lr = c.train.lr
        m = {"val_acc": val[lr], "val_loss": 1.0, **extra}
        if train is not None:
            m["train_acc_final"] = train[lr]
        _fake_done(store, c, m)
    return store


def test_a_candidate_that_did_not_fit_is_passed_over_under_both_rules(tmp_path, folders):
    from transferscope.study.tuning import choose, format_choices

    plan, sel = _selection(tmp_path, folders)
    # 12 validation images: at 0.75 one SE is 0.125 (0.65 is within it); at 0.9 it is 0.087 (0.65 is not)
    val = {0.01: 0.65, 0.02: 0.75, 0.03: 0.9}
    train = {0.01: 0.95, 0.02: 0.92, 0.03: 0.85}  # the best on validation did not fit
    store = _store(tmp_path / "res", sel, val, train)
    c = choose(sel, store)
    assert (c.state, c.lr, c.best, c.none_fit) == ("chosen", 0.02, 0.02, False)
    assert c.train_acc == train and c.fit_warning == ""
    # one-se: the standard error is the best *fitting* candidate's, and the rule runs among the fitting ones
    c1 = choose(replace(sel, rule="one-se"), store)
    assert (c1.lr, c1.best, c1.none_fit) == (0.01, 0.02, False)
    table = format_choices([c])
    assert "0.03: 0.900 (train 0.850)" in table and "0.02: 0.750*" in table and "no candidate fit" not in table
    from transferscope.study.summary import flags
    assert not [f for f in flags(plan, store) if f.kind == "no-fitting-lr"]
    # exactly at the bar counts as fitting (the bar is "under 0.9", as summary.flags reads it)
    at_bar = _store(tmp_path / "bar", sel, val, {**train, 0.03: 0.9})
    assert choose(sel, at_bar).lr == 0.03


@pytest.mark.parametrize("train, side, where", [
    ({0.01: 0.875, 0.02: 0.875, 0.03: 0.788}, "below", "extend scratch.lr_grid below 0.01"),  # falls with the rate
    ({0.01: 0.5, 0.02: 0.7, 0.03: 0.85}, "above", "extend scratch.lr_grid above 0.03"),  # rises with the rate
    ({0.01: 0.5, 0.02: 0.8, 0.03: 0.6}, "", "more epochs rather than another rate"),  # peaks inside the grid
])
def test_when_no_candidate_fits_the_best_is_kept_and_flagged(tmp_path, folders, train, side, where):
    from transferscope.study.summary import flags, format_flags
    from transferscope.study.tuning import choose, fit_warnings, format_choices

    plan, sel = _selection(tmp_path, folders)
    val = {0.01: 0.6, 0.02: 0.7, 0.03: 0.65}
    store = _store(tmp_path / "res", sel, val, train)
    c = choose(sel, store)
    assert (c.state, c.lr, c.none_fit, c.widen_side) == ("chosen", 0.02, True, side)
    assert choose(replace(sel, rule="one-se"), store).none_fit  # one-se falls back alike
    d = c.to_dict()
    assert d["none_fit"] is True and d["train_acc"] == {f"{k:g}": v for k, v in train.items()}
    w = c.fit_warning
    assert w.startswith("learning rate of RI-T on tgt (b16): no candidate of the grid [0.01, 0.02, 0.03] fit")
    assert ", ".join(f"{lr:g}: {a:.3f}" for lr, a in train.items()) in w and "under 0.9" in w
    assert "0.02, the best on validation, is kept" in w and "raise scratch.epochs" in w and where in w
    assert "\n" not in w
    assert fit_warnings(plan, store) == [w]
    assert format_choices([c]).endswith("(no candidate fit its training data)")
    (f,) = [f for f in flags(plan, store) if f.kind == "no-fitting-lr"]
    assert (f.arm, f.target, f.block_size, f.value, f.message) == ("RI-T", "tgt", 16, 0.02, w)
    assert f"[no-fitting-lr] {w}" in format_flags(flags(plan, store))
    # at an edge of the grid on validation, with no candidate that fits: the fit warning alone (the edge's advice
    # would point towards the validation best, which may contradict it)
    edge = _store(tmp_path / "edge", sel, {0.01: 0.8, 0.02: 0.7, 0.03: 0.65}, train)
    ce = choose(sel, edge)
    assert ce.none_fit and ce.at_edge
    assert [f.kind for f in flags(plan, edge) if f.kind in ("lr-at-edge", "no-fitting-lr")] == ["no-fitting-lr"]


def test_when_every_candidate_fits_the_choice_is_unchanged(tmp_path, folders):
    from transferscope.study.tuning import choose

    _, sel = _selection(tmp_path, folders)
    val = {0.01: 0.65, 0.02: 0.75, 0.03: 0.9}
    fit = _store(tmp_path / "fit", sel, val, {0.01: 0.95, 0.02: 0.99, 0.03: 1.0})
    old = _store(tmp_path / "old", sel, val, None)  # runs of an older version: no train_acc_final, they count as fit
    for rule in ("best", "one-se"):
        a, b = choose(replace(sel, rule=rule), fit), choose(replace(sel, rule=rule), old)
        assert (a.lr, a.best, a.none_fit) == (b.lr, b.best, b.none_fit) == (0.03, 0.03, False), rule
        assert b.train_acc == {0.01: None, 0.02: None, 0.03: None} and a.fit_warning == b.fit_warning == ""


def test_multilabel_candidates_are_judged_on_their_training_auc(tmp_path, folders):
    from transferscope.study.summary import flags
    from transferscope.study.tuning import choose

    from .test_train_multilabel import _auc_metrics

    plan, sel = _selection(tmp_path, folders)
    aucs = {0.01: 0.80, 0.02: 0.84, 0.03: 0.88}

    def stored(name, train_auc, se=0.05):
        store = Store(tmp_path / name)
        for c in sel.candidates:
            lr = c.train.lr
            _fake_done(store, c, {**_auc_metrics(aucs[lr]), "train_auc_final": train_auc[lr], "val_auc_se": se,
                                  "train_acc_final": 0.99}, num_classes=4)  # the accuracy is not what counts
        return store

    store = stored("one", {0.01: 0.95, 0.02: 0.93, 0.03: 0.7})
    c = choose(sel, store)
    assert (c.metric, c.lr, c.none_fit) == ("auc", 0.02, False)
    assert choose(replace(sel, rule="one-se"), store).lr == 0.01  # within 0.05 of 0.84, the best fitting one
    store = stored("none", {0.01: 0.6, 0.02: 0.7, 0.03: 0.8})
    c = choose(sel, store)
    assert (c.lr, c.none_fit, c.widen_side) == (0.03, True, "above")
    assert "training mean AUC 0.01: 0.600, 0.02: 0.700, 0.03: 0.800" in c.fit_warning
    assert "extend scratch.lr_grid above 0.03" in c.fit_warning
    assert [(f.kind, f.value) for f in flags(plan, store) if f.kind == "no-fitting-lr"] == [("no-fitting-lr", 0.03)]


def test_each_checkpoint_of_the_basin_sweep_chooses_its_own_rate(tmp_path, folders):
    """basin.lr = "own": the sweep's runs from each pre-training checkpoint get a selection of their own (candidates
    fine-tuned from that checkpoint, seed 0); its winner is that checkpoint's seed-0 run, and the other seeds take
    its rate, not the final P-T's. basin.lr = "final": the sweep takes the final P-T's rate, as one selection."""
    from transferscope.study.tuning import choose, format_choices, resolve

    grid = [0.01, 0.1]
    over = [f"finetune.lr_grid={grid}", "block_sizes=[16]", "seeds=[0,1]"]
    (tmp_path / "own").mkdir()
    (tmp_path / "final").mkdir()
    plan = _plan(tmp_path / "own", folders, overrides=over)
    pt = [s for s in plan.selections if s.arm == "P-T"]
    assert sorted(s.start for s in pt) == [-1.0, 1.0]
    final, basin = sorted(pt, key=lambda s: s.start)
    assert all(c.parent_checkpoint == 1.0 for c in basin.candidates)
    assert all(c.parent_checkpoint == -1.0 for c in final.candidates)
    assert basin.key.endswith("/from1") and final.key != basin.key and "from pre-training epoch 1" in basin.where
    # the final P-T's best rate is 0.01, the basin's 0.1: each waiting run takes its own selection's rate
    store = Store(tmp_path / "own" / "res")
    for sel, best in ((final, 0.01), (basin, 0.1)):
        for c in sel.candidates:
            _fake_done(store, c, {"val_acc": 0.9 if c.train.lr == best else 0.5, "val_loss": 1.0,
                                  "train_acc_final": 1.0})
    assert (choose(final, store).lr, choose(basin, store).lr) == (0.01, 0.1)
    done = resolve(plan, store)
    lrs = {(r.parent_checkpoint, r.seed): r.train.lr for r in done.runs if r.arm == "P-T"}
    assert lrs == {(-1.0, 0): 0.01, (-1.0, 1): 0.01, (1.0, 0): 0.1, (1.0, 1): 0.1}
    # the basin's seed-0 run is its winning candidate itself (no second run of it)
    assert {r.run_id for r in done.runs if r.parent_checkpoint == 1.0 and r.seed == 0} <= \
        {c.run_id for c in basin.candidates}
    table = format_choices([choose(s, store) for s in pt])
    assert "from 1" in table
    # the column and the record name a checkpoint only for the sweep's selections: a table of the final P-T alone has
    # no such column (its line is the same as without a sweep), and its record no checkpoint
    alone = format_choices([choose(final, store)])
    assert "b16   0.01: 0.900*" in alone and "from" not in alone  # the candidates right after the block size
    assert choose(basin, store).to_dict()["checkpoint"] == 1.0 and "checkpoint" not in choose(final, store).to_dict()
    # basin.lr = "final": one P-T selection (unshuffled, from the final P) decides the sweep's rate too
    plan_f = _plan(tmp_path / "final", folders, overrides=over + ['basin.lr="final"'])
    assert [s.start for s in plan_f.selections if s.arm == "P-T"] == [-1.0]
    assert {t.parent_checkpoint for t, s in plan_f.deferred if s.arm == "P-T"} == {-1.0, 1.0}


@settings(max_examples=400, deadline=None)
@given(n=st.one_of(st.integers(1, 200_000), st.integers(1, 2_000).map(lambda m: 100 * m)),  # n where k/n can be the bar
       near=st.one_of(st.integers(-2, 2), st.none()), frac=st.floats(0, 1),
       bar=st.sampled_from([0.5, 0.75, 0.9, 0.95, 0.99]))
def test_fitting_is_the_exact_comparison_of_the_fraction_right_with_the_bar(n, near, frac, bar):
    """The trainer computes an accuracy in float32 (``evaluate``: the mean of a float tensor of hits); fits() says
    fit exactly when k/n is not under the bar, in rational arithmetic: 180 of 200 at a bar of 0.9 fits, though its
    float32 figure, 0.89999998, is under the double 0.9."""
    from fractions import Fraction

    import torch

    from transferscope.study.tuning import fits

    k = min(n, max(0, round(bar * n) + near if near is not None else round(frac * n)))  # at the bar, or anywhere
    hits = torch.zeros(n, dtype=torch.bool)
    hits[:k] = True
    acc = hits.float().mean().item()  # as transferscope.train.evaluation.evaluate computes it
    assert fits(acc, bar) == (Fraction(k, n) >= Fraction(str(bar)))


def test_a_run_exactly_at_the_bar_is_not_flagged_and_one_image_fewer_is(tmp_path, folders):
    """180 of 200 right is stored as 0.8999999761581421: status and the caveats must not call it underfit (the
    learning-rate choice already kept it), and 179 of 200 is."""
    import torch

    from transferscope.study.summary import flags

    plan = _plan(tmp_path, folders, overrides=["basin.checkpoint_epochs=[]"])
    (r,) = [x for x in plan.runs if x.arm == "RI-T" and x.seed == 0 and x.block_size == 16]
    for k, root, flagged in ((180, "at", False), (179, "below", True)):
        store = Store(tmp_path / root)
        acc = (torch.arange(200) < k).float().mean().item()
        _fake_done(store, r, {"train_acc_final": acc, "test_acc": 0.9})
        under = [f for f in flags(plan, store) if f.kind == "underfit"]
        assert [f.run_id for f in under] == ([r.run_id] if flagged else []), (k, acc)
