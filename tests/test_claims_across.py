"""A claim under several pre-trained models: holds / does not hold only when every P agrees; 'depends on P'."""

import pytest

from transferscope.claims import DEPENDS, FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, Verdict, across_pretrained
from transferscope.claims.across import Across


def v(claim: str, outcome: str) -> Verdict:
    return Verdict(claim, f"statement {claim}", outcome, (), "why")


def one(outcomes: dict[int, str]) -> Across:
    (a,) = across_pretrained({s: [v("N1", o)] for s, o in outcomes.items()})
    return a


@pytest.mark.parametrize("outcomes, expected", [
    ({0: HOLDS, 1: HOLDS, 2: HOLDS}, HOLDS),
    ({0: FAILS, 1: FAILS}, FAILS),
    ({0: HOLDS, 1: FAILS}, DEPENDS),
    ({0: FAILS, 1: INCONCLUSIVE, 2: HOLDS}, DEPENDS),
    ({0: HOLDS, 1: INCONCLUSIVE}, INCONCLUSIVE),
    ({0: FAILS, 1: INCONCLUSIVE}, INCONCLUSIVE),
    ({0: HOLDS, 1: NOT_MEASURED}, INCONCLUSIVE),
    ({0: FAILS, 1: NOT_MEASURED}, INCONCLUSIVE),
    ({0: NOT_MEASURED, 1: NOT_MEASURED}, NOT_MEASURED),
    ({0: INCONCLUSIVE, 1: INCONCLUSIVE}, INCONCLUSIVE),
])
def test_outcome_together(outcomes, expected):
    a = one(outcomes)
    assert a.outcome == expected and a.outcomes == outcomes


@pytest.mark.parametrize("o", [HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED])
def test_one_pretrained_model_keeps_its_outcome_and_says_it_rests_on_one(o):
    a = one({3: o})
    assert a.outcome == o and "one pre-trained model (seed 3)" in a.why


def test_the_sentence_names_the_seeds_that_disagree():
    a = one({0: HOLDS, 5: FAILS})
    assert "holds under P of seed 0" in a.why and "does not hold under P of seed 5" in a.why


def test_every_claim_in_order_and_round_trip():
    by = {0: [v("N1", HOLDS), v("N2", FAILS)], 1: [v("N1", HOLDS), v("N2", HOLDS)]}
    out = across_pretrained(by)
    assert [a.claim for a in out] == ["N1", "N2"] and [a.outcome for a in out] == [HOLDS, DEPENDS]
    assert [Across.from_dict(a.to_dict()) for a in out] == out
    assert across_pretrained({}) == []


def test_a_claim_missing_under_one_p_is_not_measured_there():
    by = {0: [v("N1", HOLDS)], 1: []}
    (a,) = across_pretrained(by)
    assert a.outcomes == {0: HOLDS, 1: NOT_MEASURED} and a.outcome == INCONCLUSIVE
