"""Each claim judged on hand-built evidence: one case where it holds, one where it does not, one inconclusive.

Evidence is built by hand (no study, no torch), so that the judges and the decision rule are tested alone."""

from __future__ import annotations

import math
from itertools import combinations, product

import pytest

from transferscope.claims import (
    CLAIMS,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURED,
    Evidence,
    PerPair,
    PerSeed,
    ScoreCell,
    TargetEvidence,
    Verdict,
    get_claim,
    judge,
)
from transferscope.claims.base import ALL
from transferscope.claims.neyshabur import depth_rank_correlation
from transferscope.vocab.arms import PT, PT_PT, PT_RIT, RIT, RIT_RIT

SEEDS = (0, 1, 2, 3, 4)
JITTER = (-0.02, 0.01, 0.0, -0.01, 0.02)
FULL, SMALL = 28, 2


def per_seed(mean: float, spread: float = 1.0, n: int = 5) -> PerSeed:
    return PerSeed({s: mean + spread * JITTER[i] for i, s in enumerate(SEEDS[:n])})


def within(mean: float, spread: float = 1.0, n: int = 5, phase: int = 0) -> PerPair:
    pairs = list(combinations(SEEDS[:n], 2))
    return PerPair({p: mean + spread * JITTER[(i * 3 + phase) % 5] * 0.5 for i, p in enumerate(pairs)})


def across(mean: float, spread: float = 1.0, n: int = 5) -> PerPair:
    pairs = list(product(SEEDS[:n], SEEDS[:n]))
    return PerPair({p: mean + spread * JITTER[i % 5] * 0.5 for i, p in enumerate(pairs)})


def one(claim: str, ev: Evidence) -> Verdict:
    (v,) = judge(ev, (get_claim(claim),))
    return v


def target(name="t", **kw) -> TargetEvidence:
    return TargetEvidence(name, **kw)


def acc(pt_full, ri_full, pt_small=None, ri_small=None, spread=1.0, n=5):
    d = {(PT, FULL): per_seed(pt_full, spread, n), (RIT, FULL): per_seed(ri_full, spread, n)}
    if pt_small is not None:
        d[(PT, SMALL)] = per_seed(pt_small, spread, n)
        d[(RIT, SMALL)] = per_seed(ri_small, spread, n)
    return d


def ev(*targets, **kw) -> Evidence:
    return Evidence(targets=tuple(targets), full_block=FULL, blocks=(FULL, SMALL), speed_epochs=2, **kw)


def outcomes(v: Verdict) -> dict[str, str]:
    return {t.target: t.outcome for t in v.targets}


# -- the claims are registered once, each with its statement --------------------------------------------------------
def test_every_claim_of_science_md_is_registered_once():
    assert [c.id for c in CLAIMS] == [f"N{i}" for i in range(1, 10)] + [f"L{i}" for i in range(1, 6)]
    assert all(c.statement and c.needs for c in CLAIMS)
    with pytest.raises(KeyError, match="N10"):
        get_claim("N10")


# -- N1 ---------------------------------------------------------------------------------------------------------------
def test_n1_holds_when_pt_wins_everywhere_and_most_on_the_nearest_target():
    near = target("near", distance=1.0, distance_source="declared", accuracy=acc(0.80, 0.50))
    far = target("far", distance=2.0, distance_source="declared", accuracy=acc(0.62, 0.55))
    v = one("N1", ev(near, far))
    assert v.outcome == HOLDS, v.why
    assert outcomes(v) == {"near": HOLDS, "far": HOLDS, ALL: HOLDS}
    gain = next(e for e in v.effects if e.target == "near")
    assert gain.value == pytest.approx(0.30) and gain.low < 0.30 < gain.high and gain.n == 5


def test_n1_ordering_follows_the_distance_not_the_order_of_the_targets():
    near = target("near", distance=2.0, accuracy=acc(0.80, 0.50))   # the big gain is on the FARTHER target now
    far = target("far", distance=1.0, accuracy=acc(0.62, 0.55))
    v = one("N1", ev(near, far))
    assert outcomes(v)[ALL] == FAILS and v.outcome == FAILS


def test_n1_does_not_hold_when_ri_t_wins():
    v = one("N1", ev(target("a", accuracy=acc(0.50, 0.80))))
    assert outcomes(v)["a"] == FAILS and v.outcome == FAILS
    # one target: the ordering, part of the claim, cannot be measured, and the verdict says so
    assert outcomes(v)[ALL] == INCONCLUSIVE and "at least two" in v.targets[-1].why


def test_n1_cannot_hold_without_its_ordering():
    v = one("N1", ev(target("a", accuracy=acc(0.80, 0.50)), target("b", distance=1.0, accuracy=acc(0.80, 0.50))))
    assert outcomes(v) == {"a": HOLDS, "b": HOLDS, ALL: INCONCLUSIVE} and v.outcome == INCONCLUSIVE


def test_n1_inconclusive_with_noise_and_with_two_seeds():
    v = one("N1", ev(target("a", accuracy=acc(0.55, 0.54, spread=5.0))))
    assert v.outcome == INCONCLUSIVE
    eff = v.targets[0].effects[0]
    assert eff.low < 0 < eff.high and eff.seeds_needed and eff.seeds_needed > 5
    assert "seeds would decide it" in eff.why
    v2 = one("N1", ev(target("a", accuracy=acc(0.90, 0.10, n=2))))   # a huge effect, but n < 3: by rule
    assert v2.outcome == INCONCLUSIVE and "by rule" in v2.targets[0].effects[0].why


def test_not_measured_names_what_is_missing():
    v = one("N1", ev(target("a")))
    assert v.outcome == NOT_MEASURED and "block 28" in v.why


# -- N2 ---------------------------------------------------------------------------------------------------------------
def test_n2_holds_when_both_drop_and_the_gain_shrinks_except_on_the_farthest():
    near = target("near", distance=1.0, accuracy=acc(0.80, 0.60, 0.50, 0.45))
    # on the farthest target the gain grows: exempt by the claim, so it still holds
    far = target("far", distance=3.0, accuracy=acc(0.70, 0.60, 0.60, 0.40))
    v = one("N2", ev(near, far))
    assert v.outcome == HOLDS, v.why
    names = [e.name for e in v.effects if e.target == "far"]
    assert not any("gain at block" in n for n in names)


def test_n2_does_not_hold_when_the_gain_grows_with_shuffling():
    t = target("a", distance=1.0, accuracy=acc(0.80, 0.70, 0.60, 0.30))
    far = target("far", distance=2.0, accuracy=acc(0.80, 0.70, 0.60, 0.30))
    v = one("N2", ev(t, far))
    assert v.outcome == FAILS
    assert [e.outcome for e in v.effects if e.target == "a"] == [HOLDS, HOLDS, FAILS]
    assert outcomes(v)["far"] == HOLDS  # exempt from the shrinking gain


def test_n2_without_distances_exempts_no_one_and_cannot_hold():
    v = one("N2", ev(target("a", accuracy=acc(0.80, 0.60, 0.50, 0.45)), target("b", accuracy=acc(0.80, 0.60, 0.50, 0.45))))
    assert v.outcome == INCONCLUSIVE and all("most distant" in e.why for e in v.effects if "gain at" in e.name)


def test_n2_does_not_hold_when_shuffling_raises_accuracy():
    v = one("N2", ev(target("a", accuracy=acc(0.50, 0.40, 0.70, 0.40))))
    assert v.effects[0].outcome == FAILS and v.outcome == FAILS


def test_n2_inconclusive_when_noisy():
    v = one("N2", ev(target("a", accuracy=acc(0.60, 0.55, 0.59, 0.55, spread=4.0))))
    assert v.outcome == INCONCLUSIVE


def test_n2_needs_a_small_block():
    e = Evidence(targets=(target("a", accuracy=acc(0.8, 0.6)),), full_block=FULL, blocks=(FULL,))
    assert one("N2", e).outcome == NOT_MEASURED


# -- N3 ---------------------------------------------------------------------------------------------------------------
def speed(pt, ri, spread=1.0):
    return {(PT, SMALL): per_seed(pt, spread), (RIT, SMALL): per_seed(ri, spread)}


def test_n3_holds_does_not_hold_inconclusive():
    assert one("N3", ev(target("a", speed=speed(0.6, 0.4)))).outcome == HOLDS
    assert one("N3", ev(target("a", speed=speed(0.3, 0.5)))).outcome == FAILS
    assert one("N3", ev(target("a", speed=speed(0.41, 0.40, spread=5)))).outcome == INCONCLUSIVE
    v = one("N3", ev(target("a", speed={(PT, FULL): per_seed(0.6), (RIT, FULL): per_seed(0.4)})))
    assert v.outcome == NOT_MEASURED  # measured at the full block only: the claim is about the smallest


# -- N4 ---------------------------------------------------------------------------------------------------------------
def test_n4_holds_when_pt_pairs_disagree_less():
    v = one("N4", ev(target("a", uncommon={PT_PT: within(0.10), RIT_RIT: within(0.30)})))
    assert v.outcome == HOLDS
    e = v.effects[0]
    assert e.value == pytest.approx(-0.20) and e.high < 0 and e.n == 5
    assert "10 P-T/P-T" in e.counted and e.counted.startswith("seeds")


def test_n4_does_not_hold_when_pt_pairs_disagree_more():
    v = one("N4", ev(target("a", uncommon={PT_PT: within(0.30), RIT_RIT: within(0.10)})))
    assert v.outcome == FAILS


def test_n4_inconclusive_when_close():
    v = one("N4", ev(target("a", uncommon={PT_PT: within(0.20, 4.0), RIT_RIT: within(0.205, 4.0, phase=2)})))
    assert v.outcome == INCONCLUSIVE


def test_pair_statistics_resample_seeds_not_pairs():
    # one seed's pairs are all off: the jackknife over seeds sees it; pairs counted as independent would not
    vals = {p: 0.10 for p in combinations(SEEDS, 2)}
    for p in vals:
        if 4 in p:
            vals[p] = 0.40
    v = one("N4", ev(target("a", uncommon={PT_PT: PerPair(vals), RIT_RIT: within(0.30, 0.0)})))
    e = v.effects[0]
    assert e.value == pytest.approx(0.22 - 0.30)
    assert e.low < 0 < e.high and e.outcome == INCONCLUSIVE  # the interval is wide: one seed drives it


# -- N5 ---------------------------------------------------------------------------------------------------------------
def cka(pt_layers, ri_layers, spread=1.0):
    return {PT_PT: tuple(within(x, spread) for x in pt_layers), RIT_RIT: tuple(within(x, spread, phase=2) for x in ri_layers)}


def test_n5_holds_at_every_layer_most_at_the_lower_ones():
    v = one("N5", ev(target("a", cka_layers=("l1", "l2", "l3", "l4"), cka=cka([0.95, 0.9, 0.8, 0.7], [0.6, 0.6, 0.6, 0.6]))))
    assert v.outcome == HOLDS, v.why
    assert [e.value for e in v.effects[:4]] == pytest.approx([0.35, 0.3, 0.2, 0.1]) and "at l4" in v.effects[3].name
    assert v.effects[4].value == pytest.approx(0.325 - 0.15)


def test_n5_does_not_hold_when_ri_t_pairs_are_more_similar():
    v = one("N5", ev(target("a", cka_layers=("l1", "l2"), cka=cka([0.5, 0.5], [0.9, 0.9]))))
    assert v.effects[0].outcome == FAILS and v.outcome == FAILS


def test_n5_one_layer_against_is_enough_to_fail_every_layer():
    v = one("N5", ev(target("a", cka_layers=("l1", "l2"), cka=cka([0.9, 0.5], [0.6, 0.8]))))
    assert [e.outcome for e in v.effects[:2]] == [HOLDS, FAILS] and v.effects[1].value == pytest.approx(-0.3)
    assert v.outcome == FAILS


def test_n5_does_not_hold_when_the_upper_layers_gain_most():
    v = one("N5", ev(target("a", cka_layers=("l1", "l2"), cka=cka([0.7, 0.95], [0.6, 0.6]))))
    assert [e.outcome for e in v.effects] == [HOLDS, HOLDS, FAILS] and v.outcome == FAILS


def test_n5_with_one_layer_cannot_hold():
    v = one("N5", ev(target("a", cka_layers=("l1",), cka=cka([0.9], [0.5]))))
    assert [e.outcome for e in v.effects] == [HOLDS, NOT_MEASURED] and v.outcome == INCONCLUSIVE


def test_n5_inconclusive():
    v = one("N5", ev(target("a", cka_layers=("l1", "l2"), cka=cka([0.61, 0.6], [0.6, 0.6], spread=4))))
    assert v.outcome == INCONCLUSIVE


# -- N6 ---------------------------------------------------------------------------------------------------------------
def dist(pp, rr, pstart, rstart, spread=1.0):
    return dict(param_distance={PT_PT: within(pp, spread), RIT_RIT: within(rr, spread, phase=2)},
                start_distance={PT: per_seed(pstart, spread), RIT: per_seed(rstart, spread)})


def test_n6_holds_does_not_hold_inconclusive():
    assert one("N6", ev(target("a", **dist(2.0, 9.0, 1.0, 7.0)))).outcome == HOLDS
    v = one("N6", ev(target("a", **dist(2.0, 9.0, 7.0, 1.0))))  # close to each other but far from P
    assert [e.outcome for e in v.effects] == [HOLDS, FAILS] and v.outcome == FAILS
    v = one("N6", ev(target("a", **dist(9.0, 2.0, 1.0, 7.0))))
    assert [e.outcome for e in v.effects] == [FAILS, HOLDS] and v.outcome == FAILS
    assert one("N6", ev(target("a", **dist(5.0, 5.01, 5.0, 5.01, spread=40)))).outcome == INCONCLUSIVE


# -- N7 ---------------------------------------------------------------------------------------------------------------
def barrier(pp, rr, pr, spread=1.0):
    return {PT_PT: within(pp, spread), RIT_RIT: within(rr, spread), PT_RIT: across(pr, spread)}


def test_n7_holds_when_pt_pairs_share_a_basin_and_the_others_do_not():
    v = one("N7", ev(target("a", barrier=barrier(0.0, 0.3, 0.4))))
    assert v.outcome == HOLDS, v.why
    assert v.effects[0].side == "within" and v.effects[0].claim_side == "within 0 +- 0.02"


def test_n7_does_not_hold_when_pt_pairs_have_a_barrier():
    v = one("N7", ev(target("a", barrier=barrier(0.3, 0.3, 0.4))))
    assert v.effects[0].outcome == FAILS and v.outcome == FAILS


def test_n7_does_not_hold_when_ri_t_pairs_have_no_barrier():
    v = one("N7", ev(target("a", barrier=barrier(0.0, 0.0, 0.4, spread=0.2))))
    assert [e.outcome for e in v.effects] == [HOLDS, FAILS, HOLDS]


def test_n7_inconclusive_when_the_pt_barrier_straddles_the_margin():
    v = one("N7", ev(target("a", barrier=barrier(0.02, 0.3, 0.4))))
    assert v.effects[0].outcome == INCONCLUSIVE and v.outcome == INCONCLUSIVE


# -- N8 ---------------------------------------------------------------------------------------------------------------
def crit(per_seed_values):
    return dict(criticality_modules=("m1", "m2", "m3", "m4"), criticality={PT: dict(enumerate(per_seed_values))})


def test_n8_holds_when_criticality_rises_with_depth():
    v = one("N8", ev(target("a", **crit([(0.1, 0.2, 0.5, 2.0)] * 3 + [(0.0, 0.3, 0.4, 5.0), (0.1, 0.2, 0.3, 0.35)]))))
    assert v.outcome == HOLDS and v.effects[0].value == pytest.approx(1.0)


def test_n8_interval_stays_within_the_range_of_a_correlation():
    """A mean of per-seed rank correlations near 1 with some spread: its t-interval would run past 1; the interval
    is clipped to [-1, 1] (it loses no coverage), the estimate, p-values and outcome are those of the t-interval."""
    from transferscope.claims.stats import mean_interval

    per_seed = [(0.1, 0.2, 0.5, 2.0)] * 3 + [(0.1, 0.3, 0.2, 5.0)]  # rho 1, 1, 1, 0.8
    v = one("N8", ev(target("a", **crit(per_seed))))
    (e,) = v.targets[0].effects
    raw = mean_interval([1.0, 1.0, 1.0, 0.8])
    lo, hi = raw.interval(e.level)
    assert hi > 1 and e.high == 1.0 and e.low == pytest.approx(lo) and -1 <= e.low < e.value < e.high
    assert e.value == pytest.approx(0.95) and e.p_against == pytest.approx(raw.p_below(0.0))


def test_n8_does_not_hold_when_lower_modules_are_more_critical():
    v = one("N8", ev(target("a", **crit([(2.0, 0.5, 0.2, 0.1)] * 4 + [(3.0, 0.4, 0.5, 0.1)]))))
    assert v.outcome == FAILS and v.effects[0].value < -0.9


def test_n8_inconclusive_and_all_zero_is_no_counter_example():
    mixed = [(0.1, 0.2, 0.5, 2.0), (2.0, 0.5, 0.2, 0.1), (0.1, 0.3, 0.2, 0.4), (0.4, 0.1, 0.3, 0.2)]
    assert one("N8", ev(target("a", **crit(mixed)))).outcome == INCONCLUSIVE
    # an all-zero criticality ranks nothing: left out, never counted against the claim
    assert math.isnan(depth_rank_correlation((0.0, 0.0, 0.0, 0.0)))
    v = one("N8", ev(target("a", **crit([(0.0, 0.0, 0.0, 0.0)] * 5))))
    assert v.outcome == NOT_MEASURED
    v = one("N8", ev(target("a", **crit([(0.1, 0.2, 0.5, 2.0)] * 4 + [(0.0, 0.0, 0.0, 0.0)]))))
    assert v.outcome == HOLDS and v.effects[0].n == 4 and "left out" in v.effects[0].method


def test_n8_depth_correlation_reads_modules_input_to_output():
    assert depth_rank_correlation((1.0, 2.0, 3.0)) == pytest.approx(1.0)
    assert depth_rank_correlation((3.0, 2.0, 1.0)) == pytest.approx(-1.0)
    assert math.isnan(depth_rank_correlation((1.0, 2.0)))  # too few modules to rank
    assert depth_rank_correlation((1.0, float("inf"), 3.0)) == pytest.approx(0.5)  # infeasible: the most critical
    # a module that did not move (NaN) is left out, its depth kept: the others still rank by depth
    assert depth_rank_correlation((3.0, float("nan"), 2.0, 1.0)) == pytest.approx(-1.0)
    assert math.isnan(depth_rank_correlation((1.0, float("nan"), 3.0)))



def test_n8_says_why_the_modules_are_not_the_configured_layers():
    """Layers without parameters (ReLUs) left criticality two other modules, and N8 said only that it needed 3."""
    note = ("model.layers act0 (ReLU), act1 (ReLU) have no parameters of their own, so criticality cannot move them; "
            "it was measured on the modules holding the parameters instead: features_in, body_conv, head")
    t = target("a", criticality_modules=("features_in", "body_conv"), criticality_note=note,
               criticality={PT: {s: (0.1, 0.2 + s) for s in range(5)}})
    v = one("N8", ev(t))
    assert v.outcome == NOT_MEASURED
    why = v.targets[0].why
    assert "at least 3 modules" in why and note in why and "features_in, body_conv" in why
    # without a note the reason is as it was
    assert one("N8", ev(target("a", **crit([(0.0, 0.0, 0.0, 0.0)] * 5)))).targets[0].why.endswith("one value")


# -- N9 ---------------------------------------------------------------------------------------------------------------
def basin(accs: dict[float, float], spread=1.0, final=2.0):
    return dict(basin={e: per_seed(a, spread) for e, a in accs.items()}, basin_final=final)


def test_n9_holds_when_an_earlier_checkpoint_matches_the_final_one():
    v = one("N9", ev(target("a", **basin({0.0: 0.5, 1.0: 0.7, 2.0: 0.7}, spread=0.2))))
    assert v.outcome == HOLDS, v.why
    assert [e.outcome for e in v.effects] == [FAILS, HOLDS]


def test_n9_does_not_hold_when_every_earlier_checkpoint_is_worse():
    v = one("N9", ev(target("a", **basin({0.0: 0.5, 1.0: 0.6, 2.0: 0.7}, spread=0.2))))
    assert v.outcome == FAILS


def test_n9_inconclusive_and_not_measured():
    v = one("N9", ev(target("a", **basin({0.0: 0.5, 1.0: 0.69, 2.0: 0.7}, spread=2.0))))
    assert v.outcome == INCONCLUSIVE
    assert one("N9", ev(target("a"))).outcome == NOT_MEASURED
    assert one("N9", ev(target("a", **basin({2.0: 0.7})))).outcome == NOT_MEASURED


# -- L1-L3 ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("claim,field", [("L1", "top_eigenvalue"), ("L2", "grad_lipschitz"), ("L3", "principal")])
def test_liu_arm_contrasts(claim, field):
    def with_(pt, ri, spread=1.0):
        kw = {field: {PT: per_seed(pt, spread), RIT: per_seed(ri, spread)}}
        if claim == "L1":
            kw["deviation"] = {PT: per_seed(0.1), RIT: per_seed(0.9)}
        return ev(target("a", **kw))

    assert one(claim, with_(1.0, 3.0)).outcome == HOLDS
    assert one(claim, with_(3.0, 1.0)).outcome == FAILS
    assert one(claim, with_(1.0, 1.01, spread=30)).outcome == INCONCLUSIVE
    assert one(claim, ev(target("a"))).outcome == NOT_MEASURED


def test_l1_deviation_part():
    t = target("a", top_eigenvalue={PT: per_seed(1.0), RIT: per_seed(3.0)}, deviation={PT: per_seed(0.9), RIT: per_seed(0.1)})
    v = one("L1", ev(t))
    assert [e.outcome for e in v.effects] == [HOLDS, FAILS] and v.outcome == FAILS


# -- L4 ---------------------------------------------------------------------------------------------------------------
def cells(sign: float, n: int = 9):
    return tuple(ScoreCell(f"t{i % 3}", i, gain=0.05 * i, scores={"neg_mmd2_rbf": sign * i + 0.1 * (i % 2), "leep": sign * i})
                 for i in range(n))


def test_l4_rank_correlations():
    v = one("L4", ev(target("a"), cells=cells(1.0)))
    assert v.outcome == HOLDS and all(e.value > 0.9 and e.n == 9 and "cells" in e.counted for e in v.effects)
    assert one("L4", ev(target("a"), cells=cells(-1.0))).outcome == FAILS
    v = one("L4", ev(target("a"), cells=cells(1.0, n=3)))
    assert v.outcome == INCONCLUSIVE  # 3 cells: no interval by rule
    noisy = tuple(ScoreCell("t", i, gain=g, scores={"neg_mmd2_rbf": i, "leep": i})
                  for i, g in enumerate([0.1, 0.3, 0.0, 0.2, 0.25, 0.05]))
    assert one("L4", ev(target("a"), cells=noisy)).outcome == INCONCLUSIVE
    assert one("L4", ev(target("a"))).outcome == NOT_MEASURED


# -- L5 ---------------------------------------------------------------------------------------------------------------
def test_l5_rises_then_falls():
    assert one("L5", ev(target("a", **basin({0.0: 0.5, 1.0: 0.8, 2.0: 0.6}, spread=0.5)))).outcome == HOLDS
    v = one("L5", ev(target("a", **basin({0.0: 0.5, 1.0: 0.6, 2.0: 0.8}, spread=0.5))))   # rises only
    assert [e.outcome for e in v.effects] == [HOLDS, FAILS] and v.outcome == FAILS
    assert one("L5", ev(target("a", **basin({0.0: 0.6, 1.0: 0.61, 2.0: 0.6}, spread=3)))).outcome == INCONCLUSIVE
    v = one("L5", ev(target("a", **basin({0.0: 0.5, 2.0: 0.6}))))
    assert v.outcome == NOT_MEASURED and "three" in v.why


# -- the rule over the family ---------------------------------------------------------------------------------------
def test_holm_keeps_a_marginal_failure_inconclusive_in_a_large_family():
    # a failure that is clear on its own (p ~ 0.01), but not among many claims x targets
    marginal = target("m", speed=speed(0.40, 0.46, spread=1.3))
    alone = one("N3", ev(marginal))
    assert alone.outcome == FAILS
    # undecided others (no effect): Holm's threshold for the smallest p-value is 0.025 / 31
    others = [target(f"o{i}", speed=speed(0.5, 0.5, spread=3)) for i in range(30)]
    v = one("N3", ev(marginal, *others))
    assert outcomes(v)["m"] == INCONCLUSIVE and "Holm" in v.targets[0].why


def test_holm_applies_to_holds_as_to_does_not_hold():
    """The same error control both ways: an effect as strong on the claim's side as a marginal failure on the other
    is as undecided in a large family, and as decisive alone (the mirror image of the test above)."""
    marginal = target("m", speed=speed(0.46, 0.40, spread=1.3))
    alone = one("N3", ev(marginal))
    assert alone.outcome == HOLDS
    others = [target(f"o{i}", speed=speed(0.5, 0.5, spread=3)) for i in range(30)]
    v = one("N3", ev(marginal, *others))
    m = v.targets[0]
    assert m.outcome == INCONCLUSIVE and "Holm" in m.why and "as the claim says" in m.why
    (e,) = m.effects
    assert e.low > 0 and e.p_holm > e.holm_alpha  # the interval alone would have said "holds"
    # the mirror image in one family: the two get mirrored outcomes and the same p-value
    fail = target("f", speed=speed(0.40, 0.46, spread=1.3))
    both = one("N3", ev(marginal, fail))
    assert outcomes(both) == {"m": HOLDS, "f": FAILS}
    pm, pf = (t.effects[0].p_holm for t in both.targets)
    assert pm == pytest.approx(pf)


def test_verdict_round_trips_through_json():
    import json

    v = one("N1", ev(target("a", distance=0.1, accuracy=acc(0.8, 0.5)),
                     target("b", distance=0.2, accuracy=acc(0.6, 0.59, spread=5))))
    d = json.loads(json.dumps(v.to_dict()))
    assert Verdict.from_dict(d) == v
    e = d["targets"][0]["effects"][0]
    for key in ("name", "unit", "value", "low", "high", "n", "counted", "method", "outcome", "why", "claim_side"):
        assert key in e


def test_verdict_with_undefined_intervals_round_trips_through_the_store_json():
    from transferscope import jsonio
    from transferscope.store import dumps

    v = one("N1", ev(target("a", accuracy=acc(0.8, 0.5, n=1))))   # one seed: no interval (NaN)
    back = Verdict.from_dict(jsonio.loads(dumps(v.to_dict())))
    e = back.effects[0]
    assert math.isnan(e.low) and math.isnan(e.high) and e.value == pytest.approx(0.3) and back.outcome == INCONCLUSIVE


# -- boundaries of the rule -------------------------------------------------------------------------------------------
def test_three_seeds_can_decide_and_two_cannot():
    v = one("N3", ev(target("a", speed={(PT, SMALL): per_seed(0.6, n=3), (RIT, SMALL): per_seed(0.4, n=3)})))
    assert v.outcome == HOLDS and v.effects[0].n == 3 and "by rule" not in v.effects[0].why
    v = one("N3", ev(target("a", speed={(PT, SMALL): per_seed(0.6, n=3), (RIT, SMALL): per_seed(0.4, n=2)})))
    assert v.outcome == INCONCLUSIVE and "n = 2 seeds" in v.effects[0].why


def test_an_effect_exactly_on_its_bound_is_inconclusive():
    flat = {(PT, SMALL): per_seed(0.5, spread=0.0), (RIT, SMALL): per_seed(0.5, spread=0.0)}
    v = one("N3", ev(target("a", speed=flat)))
    assert v.effects[0].low == v.effects[0].high == 0.0 and v.outcome == INCONCLUSIVE
    # sameness: a constant difference exactly at the margin is neither inside nor outside it
    v = one("N9", ev(target("a", **basin({1.0: 0.02, 2.0: 0.0}, spread=0.0))))  # exactly + the margin
    assert v.effects[0].value == 0.02 and v.outcome == INCONCLUSIVE
    v = one("N9", ev(target("a", **basin({1.0: 0.0, 2.0: 0.02}, spread=0.0))))  # exactly - the margin
    assert v.effects[0].value == -0.02 and v.outcome == INCONCLUSIVE
    v = one("N9", ev(target("a", **basin({1.0: 0.51, 2.0: 0.5}, spread=0.0))))
    assert v.outcome == HOLDS
    v = one("N9", ev(target("a", **basin({1.0: 0.47, 2.0: 0.5}, spread=0.0))))
    assert v.outcome == FAILS
    v = one("N9", ev(target("a", **basin({1.0: 0.53, 2.0: 0.5}, spread=0.0))))
    assert v.outcome == FAILS


def test_n9_tests_each_of_several_checkpoints_at_a_bonferroni_level():
    v = one("N9", ev(target("a", **basin({0.0: 0.3, 0.5: 0.4, 1.0: 0.69, 2.0: 0.7}, spread=0.2))))
    assert all(e.level == pytest.approx(1 - 0.05 / 3) for e in v.effects) and "3 checkpoints" in v.effects[0].method
    one_ckpt = one("N9", ev(target("a", **basin({1.0: 0.69, 2.0: 0.7}, spread=0.2))))
    assert one_ckpt.effects[0].level == pytest.approx(0.95)
    assert one_ckpt.effects[0].high - one_ckpt.effects[0].low < v.effects[-1].high - v.effects[-1].low


def test_l1_with_a_part_missing_cannot_hold():
    t = target("a", top_eigenvalue={PT: per_seed(1.0), RIT: per_seed(3.0)})
    v = one("L1", ev(t))
    assert [e.outcome for e in v.effects] == [HOLDS, NOT_MEASURED] and v.outcome == INCONCLUSIVE
    assert [x.target for x in v.targets] == ["a"]


def test_l4_needs_six_cells_and_drops_undefined_ones():
    c = cells(1.0, n=6)
    assert one("L4", ev(target("a"), cells=c)).outcome == HOLDS
    v = one("L4", ev(target("a"), cells=c[:5]))
    assert v.outcome == INCONCLUSIVE and "5 cells" in v.effects[0].why
    nan_cell = ScoreCell("t", 99, gain=float("nan"), scores={"neg_mmd2_rbf": 1.0, "leep": 1.0})
    v = one("L4", ev(target("a"), cells=c + (nan_cell,)))
    assert v.outcome == HOLDS and v.effects[0].n == 6


def test_l5_best_inner_checkpoint_is_tested_at_a_bonferroni_level():
    v = one("L5", ev(target("a", **basin({0.0: 0.5, 0.5: 0.6, 1.0: 0.8, 2.0: 0.6}, spread=0.5))))
    assert v.outcome == HOLDS and all(e.level == pytest.approx(1 - 0.05 / 2) for e in v.effects)
    assert "the best inner checkpoint: 1," in v.effects[0].method and "the best of 2 inner ones" in v.effects[0].method
    single = one("L5", ev(target("a", **basin({0.0: 0.5, 1.0: 0.8, 2.0: 0.6}, spread=0.5))))
    assert single.effects[0].level == pytest.approx(0.95) and "best of" not in single.effects[0].method


def test_pair_statistics_count_the_smaller_arm():
    small = PerPair({(0, 1): 0.1})  # two seeds only
    v = one("N4", ev(target("a", uncommon={PT_PT: small, RIT_RIT: within(0.3)})))
    assert v.effects[0].n == 2 and v.outcome == INCONCLUSIVE and "by rule" in v.effects[0].why


def test_a_holding_claim_names_every_target_it_holds_on():
    v = one("N3", ev(target("a", speed=speed(0.6, 0.4)), target("b", speed=speed(0.6, 0.4))))
    assert v.why == "It holds on every measured target (a, b)."
    v = one("N3", ev(target("a", speed=speed(0.6, 0.4))))
    assert v.why == "It holds on a (a)."


def test_a_target_is_either_measured_or_not():
    from transferscope.claims import Claim, Measure
    from transferscope.claims.base import ABOVE, decide
    from transferscope.claims.stats import mean_interval

    bad = Claim("X", "x", ("x",), lambda e: ([Measure("a", "m", "u", mean_interval([1, 2, 3]), ABOVE, "s")],
                                              {"a": "missing"}))
    with pytest.raises(ValueError, match="both measured and not measured"):
        decide([bad], ev())


def test_depth_correlation_with_ties_is_finite():
    assert depth_rank_correlation((0.0, 0.0, 1.0, 1.0)) > 0.8


# -- multi-label targets: judged on their mean AUC, with the same rules ---------------------------------------------
def test_a_multilabel_target_is_judged_on_its_auc_with_the_same_rules():
    auc = target("auc", distance=1.0, metric="auc", accuracy=acc(0.85, 0.70))
    v = one("N1", ev(auc))
    (gain,) = [e for e in v.effects if e.target == "auc"]
    assert gain.unit == "test mean AUC" and "mean AUC" in gain.name and gain.value == pytest.approx(0.15)
    assert outcomes(v)["auc"] == HOLDS
    # the same numbers as accuracies give the same decision: only the unit differs
    plain = one("N1", ev(target("auc", distance=1.0, accuracy=acc(0.85, 0.70))))
    assert outcomes(plain)["auc"] == HOLDS and plain.effects[0].unit == "test accuracy (fraction)"
    # and an AUC that RI-T wins does not hold
    assert outcomes(one("N1", ev(target("auc", metric="auc", accuracy=acc(0.70, 0.85)))))["auc"] == FAILS


def test_gains_in_accuracy_and_in_auc_are_not_compared_across_targets():
    near = target("near", distance=1.0, distance_source="declared", accuracy=acc(0.80, 0.50))
    far = target("far", distance=2.0, distance_source="declared", metric="auc", accuracy=acc(0.62, 0.55))
    v = one("N1", ev(near, far))
    (whole,) = [e for e in v.effects if e.target == ALL]
    # the ordering is part of the claim: without a comparable one it cannot hold (as without distances)
    assert outcomes(v)[ALL] == INCONCLUSIVE and v.outcome == INCONCLUSIVE
    assert "not on one scale" in whole.why
    # on one metric the comparison is made
    far_acc = target("far", distance=2.0, distance_source="declared", accuracy=acc(0.62, 0.55))
    assert outcomes(one("N1", ev(near, far_acc)))[ALL] == HOLDS


def test_the_barrier_of_a_multilabel_target_is_in_one_minus_mean_auc():
    t = target("m", metric="auc", barrier={PT_PT: within(0.0, 0.1), RIT_RIT: within(0.2), PT_RIT: across(0.3)})
    v = one("N7", ev(t))
    assert {e.unit for e in v.effects if e.target == "m"} == {"1 - test mean AUC"}
    assert outcomes(v)["m"] == HOLDS


def test_l4_ranks_gains_on_one_scale_only():
    """Gains in accuracy and in mean AUC are not ranked together: the cells of the metric most cells have are kept
    (here 9 accuracy cells that agree with the scores), the others left out and named."""
    from dataclasses import replace as _replace

    agree = cells(1.0)
    against = tuple(_replace(c, target="m", block_size=100 + i, gain=-c.gain, metric="auc")
                    for i, c in enumerate(cells(1.0, n=6)))
    v = one("L4", ev(target("a"), cells=agree + against))
    assert v.outcome == HOLDS and all(e.n == 9 for e in v.effects)
    assert "6 (target, block size) cells of targets judged by mean AUC left out (m)" in v.effects[0].method
    # the same cells all in accuracy would be ranked together, and the contradicting ones pull rho down
    mixed = one("L4", ev(target("a"), cells=agree + tuple(_replace(c, metric="acc") for c in against)))
    assert all(e.n == 15 for e in mixed.effects) and mixed.outcome != HOLDS


def test_a_statistic_that_could_not_be_computed_is_not_measured_with_its_reason():
    """Never ``+nan [+nan, +nan] (n = 0) -> inconclusive``: the effect is not measured, with why; a target none of
    whose effects could be computed is not measured; one part missing still keeps a target from holding."""
    from transferscope.claims import Claim, Measure
    from transferscope.claims.base import ABOVE, decide, missing
    from transferscope.claims.stats import mean_interval

    def judge_(e):
        return ([missing("a", "gain", "acc", ABOVE, "no accuracy on a multi-label target"),
                 Measure("b", "gain", "acc", mean_interval([1.0, 1.1, 0.9, 1.05, 0.95]), ABOVE, "s"),
                 missing("b", "drop", "acc", ABOVE, "needs two block sizes")], {})

    (v,) = decide([Claim("X", "x", ("x",), judge_)], ev())
    by = {t.target: t for t in v.targets}
    assert by["a"].outcome == NOT_MEASURED and "no accuracy on a multi-label target" in by["a"].why
    assert [e.outcome for e in by["a"].effects] == [NOT_MEASURED]
    assert [e.outcome for e in by["b"].effects] == [HOLDS, NOT_MEASURED]
    assert by["b"].outcome == INCONCLUSIVE  # a part missing keeps it from holding
    assert v.outcome == INCONCLUSIVE and "not measured on a" in v.why
    assert "could not be computed: needs two block sizes" in by["b"].effects[1].why
