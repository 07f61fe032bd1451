"""Caveats travel with verdicts: a decisive outcome that rests on runs that did not fit is 'unreliable'.

Hand-built evidence (no study): the rule of claims/caveats.py, broken on purpose by feeding a caveat under another
target's name, another arm, or a kind that does not block."""

from __future__ import annotations

import json

from transferscope.claims import FAILS, HOLDS, INCONCLUSIVE, Verdict, across_pretrained
from transferscope.claims.base import ALL
from transferscope.claims.compare import compare_verdicts, format_brief, format_comparison
from transferscope.claims.stats import UNRELIABLE
from transferscope.vocab.caveats import Caveat

from .test_claims import acc, cells, ev, one, outcomes, target

UNDERFIT_RIT = Caveat("underfit", "a", "RI-T", "3 of 3 RI-T runs on a did not fit", "train RI-T longer")


def near_far(caveats=()):
    near = target("a", distance=1.0, distance_source="declared", accuracy=acc(0.80, 0.50))
    far = target("b", distance=2.0, distance_source="declared", accuracy=acc(0.62, 0.55))
    return ev(near, far, caveats=tuple(caveats))


def test_a_decisive_outcome_on_runs_that_did_not_fit_is_unreliable():
    assert one("N1", near_far()).outcome == HOLDS
    v = one("N1", near_far([UNDERFIT_RIT]))
    assert outcomes(v) == {"a": UNRELIABLE, "b": HOLDS, ALL: UNRELIABLE}  # the ordering reads every target
    a = v.targets[0]
    assert a.statistical_outcome == HOLDS and a.caveats == (UNDERFIT_RIT,)
    assert "RI-T did not fit its training data" in a.why and "train RI-T longer" in a.why
    assert v.outcome == UNRELIABLE and "statistics alone say it holds" in v.why
    assert v.targets[1].statistical_outcome == "" and v.targets[1].caveats == ()


def test_a_caveat_of_another_target_or_arm_or_a_non_blocking_one_does_not_change_the_outcome():
    other = Caveat("underfit", "z", "RI-T")  # a target the study does not have
    assert one("N1", near_far([other])).outcome == HOLDS
    # N8 reads P-T models only: RI-T's fit does not bear on it; L3 reads models at their start
    assert one("N8", ev(target("a"), caveats=(UNDERFIT_RIT,))).targets[0].caveats == ()
    edge = Caveat("lr-at-edge", "a", "RI-T", "RI-T's rate is the smallest of its grid")
    v = one("N1", near_far([edge]))
    assert v.outcome == HOLDS and v.targets[0].caveats == (edge,) and "Caveats:" in v.targets[0].why
    assert not edge.blocking and UNDERFIT_RIT.blocking


def test_unreliable_targets_never_hide_a_reliable_failure_and_never_decide_alone():
    ri_wins = target("c", distance=3.0, accuracy=acc(0.50, 0.80))
    v = one("N1", ev(*near_far([UNDERFIT_RIT]).targets, ri_wins, caveats=(UNDERFIT_RIT,)))
    assert outcomes(v)["c"] == FAILS and v.outcome == FAILS  # c's failure rests on runs that fit
    only = one("N1", ev(target("c", accuracy=acc(0.50, 0.80)),
                        caveats=(Caveat("underfit", "c", "P-T"),)))
    assert outcomes(only)["c"] == UNRELIABLE and only.outcome != FAILS
    noisy = one("N1", ev(target("a", accuracy=acc(0.55, 0.54, spread=5.0)), caveats=(UNDERFIT_RIT,)))
    assert outcomes(noisy)["a"] == INCONCLUSIVE and noisy.targets[0].caveats == (UNDERFIT_RIT,)


def test_caveats_survive_json_and_show_in_compare_and_status():
    v = one("N1", near_far([UNDERFIT_RIT]))
    back = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and back.caveats == (UNDERFIT_RIT,)
    assert json.loads(json.dumps(v.to_dict()))["targets"][0]["caveats"][0]["blocking"] is True
    clean = one("N1", near_far())
    rows = compare_verdicts([clean], [v])
    assert not any(r.contradiction for r in rows)  # unreliable contradicts nothing
    text = format_comparison(rows, "A", "B")
    assert "caveats in B: RI-T did not fit its training data (a)" in text
    assert "UNRELIABLE" in format_brief([v]) and "caveats:" in format_brief([v])
    (a,) = across_pretrained({0: [v], 1: [v]})
    assert a.outcome == UNRELIABLE


def test_n2_and_l4_say_why_a_one_target_study_cannot_measure_them():
    one_t = target("a", distance=0.3, distance_source="measured: MMD^2",
                   accuracy=acc(0.8, 0.5, 0.6, 0.45))
    v = one("N2", ev(one_t))
    why = " ".join(e.why for e in v.effects)
    assert "only target" in why and "0.3" in why and "without a distance" not in why
    two = one("N2", ev(one_t, target("b", accuracy=acc(0.7, 0.5, 0.6, 0.45))))
    assert "none for b" in " ".join(e.why for e in two.effects)
    l4 = one("L4", ev(one_t, cells=cells(1.0, n=2)))
    assert "only 2 cells" in l4.effects[0].why and "at least 6" in l4.effects[0].why


def test_analyze_prints_each_caveat_once_by_number_and_no_nan_interval():
    from transferscope.study.verdicts import format_verdicts

    edge = Caveat("lr-at-edge", "b", "P-T", "P-T's rate is the largest of its grid", "extend finetune.lr_grid")
    vs = [one("N1", near_far([UNDERFIT_RIT, edge])), one("N4", near_far([UNDERFIT_RIT, edge]))]
    text = format_verdicts(vs)
    assert text.count("3 of 3 RI-T runs on a did not fit") == 1 and text.count("[1]! RI-T did not fit") >= 2
    assert "[2] P-T learning rate at a grid edge" in text and "way out: train RI-T longer" in text
    assert "UNRELIABLE (the statistics alone: holds)" in text
    one_target = format_verdicts([one("N1", ev(target("a", accuracy=acc(0.8, 0.5))))])
    assert "nan" not in one_target and "not measured: " in one_target
