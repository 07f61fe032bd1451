"""transferscope compare: two studies' verdicts side by side, every contradiction named."""

from __future__ import annotations

import json

import pytest

from transferscope.claims import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, TargetVerdict, Verdict
from transferscope.claims.compare import CLAIMS_FORMAT, compare_verdicts, format_comparison, load_verdicts


def v(claim, outcome, **targets):
    return Verdict(claim, "s", outcome, tuple(TargetVerdict(t, o, (), "") for t, o in targets.items()), "why")


def test_contradictions_are_holds_against_does_not_hold_only():
    a = [v("N1", HOLDS, x=HOLDS, y=HOLDS), v("N2", INCONCLUSIVE, x=INCONCLUSIVE)]
    b = [v("N1", FAILS, x=FAILS, y=HOLDS), v("N2", FAILS, x=FAILS), v("N3", HOLDS, x=HOLDS)]
    rows = compare_verdicts(a, b)
    bad = [(r.claim, r.target) for r in rows if r.contradiction]
    assert bad == [("N1", ""), ("N1", "x")]
    assert [(r.claim, r.target, r.a, r.b) for r in rows if r.claim == "N3"] == [("N3", "", NOT_MEASURED, HOLDS),
                                                                                ("N3", "x", NOT_MEASURED, HOLDS)]
    text = format_comparison(rows, "A", "B")
    assert "2 contradiction(s): N1 overall; N1 x" in text
    assert compare_verdicts(a, a) and not any(r.contradiction for r in compare_verdicts(a, a))


def test_load_verdicts_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a results folder"):
        load_verdicts(tmp_path)  # no study.json
    (tmp_path / "study.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="claims.json"):
        load_verdicts(tmp_path)
    (tmp_path / "analyses").mkdir()
    (tmp_path / "analyses" / "claims.json").write_text("[{]")
    with pytest.raises(ValueError, match="claims.json"):
        load_verdicts(tmp_path)
    (tmp_path / "analyses" / "claims.json").write_text(json.dumps({"format": CLAIMS_FORMAT,
                                                                    "verdicts": [v("N1", HOLDS, x=HOLDS).to_dict()]}))
    assert load_verdicts(tmp_path)[0].targets[0].target == "x"
