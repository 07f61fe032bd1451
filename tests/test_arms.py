"""The pairs of models that the analyses compare, formed in one place."""

from types import SimpleNamespace

from transferscope.vocab.arms import PT, PT_P, PT_PT, PT_RIT, RIT, RIT_RI, RIT_RIT, pairs_of


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

