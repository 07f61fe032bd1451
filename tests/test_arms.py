"""The pairs of models that the analyses compare, formed in one place."""

from collections import Counter
from types import SimpleNamespace

import pytest

from transferscope.vocab.arms import (
    PT,
    PT_P,
    PT_PT,
    PT_RIT,
    RIT,
    RIT_RI,
    RIT_RIT,
    across,
    balanced,
    pairs_of,
    within,
)


def runs(arm, seeds):
    return [SimpleNamespace(arm=arm, seed=s, run_id=f"{arm}-{s}") for s in seeds]


def test_pairs_of_a_target():
    pt, ri = runs(PT, [2, 0, 1]), runs(RIT, [0, 1, 2, 3])
    p = pairs_of(pt, ri)
    assert [x.seeds for x in p[PT_PT]] == [(0, 1), (0, 2), (1, 2)]
    assert [x.seeds for x in p[RIT_RIT]] == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert len(p[PT_RIT]) == 12 and all(x.a.arm == PT and x.b.arm == RIT for x in p[PT_RIT])
    assert all(x.a.arm == x.b.arm == PT and x.a.seed != x.b.seed for x in p[PT_PT])
    assert all(x.a is x.b and x.which_b == "init" and x.a.arm == PT for x in p[PT_P])
    assert all(x.a is x.b and x.which_b == "init" and x.a.arm == RIT for x in p[RIT_RI])



@pytest.mark.parametrize("n", range(1, 13))
@pytest.mark.parametrize("per_seed", [0, 1, 2, 3, 4, 5])
def test_balanced_pairs_within_an_arm(n, per_seed):
    """Every seed in the same number of pairs (per_seed; one more when per_seed and n are odd), no pair twice,
    no seed with itself, lower seed first; all pairs when per_seed is 0 or at least n - 1."""
    rs = runs(PT, [3 * s + 1 for s in range(n)])
    got = balanced(PT_PT, rs, None, per_seed, seed=7)
    keys = [p.seeds for p in got]
    assert len(keys) == len(set(keys)) and all(a < b for a, b in keys)
    if per_seed == 0 or per_seed >= n - 1:
        assert keys == [p.seeds for p in within(PT_PT, rs)]
        return
    degree = Counter(s for k in keys for s in k)
    want = per_seed + (per_seed % 2 and n % 2)
    assert set(degree) == {r.seed for r in rs} and set(degree.values()) == {want}
    assert len(keys) == n * want // 2


@pytest.mark.parametrize("n", range(2, 11))
@pytest.mark.parametrize("per_seed", [1, 2, 3, 4])
def test_balanced_pairs_across_arms(n, per_seed):
    """Each run of either arm in per_seed pairs (equal arms), never a seed with the same seed of the other arm
    unless every pair is taken, and every pair when per_seed >= n."""
    a, b = runs(PT, range(n)), runs(RIT, range(n))
    got = balanced(PT_RIT, a, b, per_seed, seed=3)
    keys = [p.seeds for p in got]
    assert len(keys) == len(set(keys)) and all(p.a.arm == PT and p.b.arm == RIT for p in got)
    if per_seed >= n:
        assert keys == [p.seeds for p in across(PT_RIT, a, b)]
        return
    assert set(Counter(k[0] for k in keys).values()) == {per_seed}
    assert set(Counter(k[1] for k in keys).values()) == {per_seed}
    assert all(x != y for x, y in keys)


def test_balanced_pairs_are_drawn_from_the_seed_and_the_same_for_both_arms():
    pt, ri = runs(PT, range(8)), runs(RIT, range(8))
    p = pairs_of(pt, ri, per_seed=2, seed=0)
    assert [x.seeds for x in p[PT_PT]] == [x.seeds for x in p[RIT_RIT]] == \
        [x.seeds for x in pairs_of(pt[::-1], ri, per_seed=2, seed=0)[PT_PT]]  # not the order given
    draws = {tuple(x.seeds for x in pairs_of(pt, ri, per_seed=2, seed=s)[PT_PT]) for s in range(20)}
    assert len(draws) > 5  # the seed draws the design
    assert len(p[PT_PT]) == 8 and len(p[PT_RIT]) == 16
    assert pairs_of(pt, ri)[PT_RIT] == pairs_of(pt, ri, per_seed=0, seed=5)[PT_RIT] and len(pairs_of(pt, ri)[PT_RIT]) == 64


def test_three_seeds_keep_every_pair_at_the_default_bound():
    """The quick study's former design (3 seeds, every pair) is what the default bound gives at 3 seeds."""
    pt, ri = runs(PT, range(3)), runs(RIT, range(3))
    assert pairs_of(pt, ri, per_seed=3, seed=11) == pairs_of(pt, ri)


def test_the_pair_analyses_take_the_studys_design(monkeypatch):
    """The jobs of the pair analyses are formed with the study's pairs_per_seed and analysis seed (an adapter that
    took every pair, or seed 0, fails here)."""
    from transferscope.config import AnalysisConfig
    from transferscope.study import adapters as ad

    pt, ri = runs(PT, range(6)), runs(RIT, range(6))
    monkeypatch.setattr(ad, "_arm_runs", lambda ctx, target, block, arm, ckpt=-1.0: pt if arm == PT else ri)
    config = SimpleNamespace(data=SimpleNamespace(image_size=28))

    def pairs(settings):
        ctx = SimpleNamespace(plan=SimpleNamespace(config=config), settings=settings)
        return ad._target_pairs(ctx, "t", {}, (PT_PT, RIT_RIT, PT_RIT))

    want = pairs_of(pt, ri, per_seed=2, seed=5)
    got = pairs(AnalysisConfig(pairs_per_seed=2, seed=5))
    assert got == want[PT_PT] + want[RIT_RIT] + want[PT_RIT] and len(got) == 6 + 6 + 12
    assert got != pairs(AnalysisConfig(pairs_per_seed=2, seed=0))
    every = pairs_of(pt, ri)
    assert pairs(AnalysisConfig(pairs_per_seed=0, seed=5)) == every[PT_PT] + every[RIT_RIT] + every[PT_RIT]
