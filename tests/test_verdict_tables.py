"""Verdicts as data: ``export table`` writes the claims (one row per effect) beside the runs, ``compare --json``
prints the comparison as a document and its help states the exit codes, and the Python API gives both tables as
pandas DataFrames."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest

from transferscope import jsonio
from transferscope.claims import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, Effect, TargetVerdict, Verdict
from transferscope.claims.compare import CLAIMS_FORMAT, compare_verdicts, load_verdicts
from transferscope.claims.stats import UNRELIABLE
from transferscope.cli import build_parser, main
from transferscope.vocab.caveats import Caveat

from .test_report import finished_study  # noqa: F401  the tiny study, trained and analysed once per module

NUMBERS = ("estimate", "low", "high", "level", "n", "bound", "margin", "p_holm", "holm_alpha", "seeds_needed",
           "pretrain_seed")


def _primary(res) -> int:
    from transferscope.api import study_folder

    return study_folder(res)[1].pretrain_seed_list[0]


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def test_claims_table_has_one_row_per_effect(finished_study, tmp_path, capsys):  # noqa: F811
    from transferscope.export import CLAIM_COLUMNS

    out = tmp_path / "t"
    assert main(["export", "table", str(finished_study), "--out", str(out)]) == 0
    assert str(out / "claims.csv") in capsys.readouterr().out.splitlines()
    df = pd.read_csv(out / "claims.csv")
    assert list(df.columns) == list(CLAIM_COLUMNS)
    for c in NUMBERS:  # numbers parse as numbers: a mean over rows is a mean
        assert pd.api.types.is_numeric_dtype(df[c]), (c, df[c].dtype)
    vs = load_verdicts(finished_study)
    expect = [(v, t, e) for v in vs for t in v.targets for e in (t.effects or (None,))]
    assert len(df) == len(expect)
    seed = _primary(finished_study)
    for (v, t, e), (_, row) in zip(expect, df.iterrows(), strict=True):
        assert (row["claim"], row["target"], row["target_outcome"], row["claim_outcome"]) == \
            (v.claim, t.target, t.outcome, v.outcome)
        assert row["pretrain_seed"] == seed
        if e is None:
            assert row["outcome"] == NOT_MEASURED and all(math.isnan(row[c]) for c in ("estimate", "low", "n"))
            continue
        assert row["statistic"] == e.name and row["side"] == e.side
        assert row["counted"] == e.counted if e.counted else pd.isna(row["counted"])
        for c, x in (("estimate", e.value), ("low", e.low), ("high", e.high), ("n", e.n), ("p_holm", e.p_holm),
                     ("holm_alpha", e.holm_alpha), ("bound", e.bound), ("level", e.level)):
            assert _same(float(row[c]), float(x)), (c, row[c], x)
        assert _same(float(row["seeds_needed"]), math.nan if e.seeds_needed is None else float(e.seeds_needed))
    # parquet: the same table
    assert main(["export", "table", str(finished_study), "--out", str(out), "--format", "parquet"]) == 0
    pq = pd.read_parquet(out / "claims.parquet")
    pd.testing.assert_frame_equal(df, pq, check_dtype=False)


def _effect(target: str, name: str, value: float, outcome: str, **kw) -> Effect:
    d = {"target": target, "name": name, "unit": "acc", "value": value, "low": value - 0.1, "high": value + 0.1,
         "level": 0.95, "n": 4, "counted": "seeds", "method": "welch", "side": "above", "bound": 0.0, "margin": 0.0,
         "p_against": 0.5, "outcome": outcome, "why": "because", "p_holm": 0.001, "holm_alpha": 0.025} | kw
    return Effect(**d)


def _write_claims(res, verdicts, pretrained=()):
    (res / "analyses" / "claims.json").write_text(jsonio.dumps({
        "format": CLAIMS_FORMAT, "verdicts": [v.to_dict() for v in verdicts],
        "pretrained": [{"seed": s, "run": "", "verdicts": [v.to_dict() for v in vs]} for s, vs in pretrained]}))


def test_claims_table_shows_unreliable_effects_nan_and_other_pretrained_models(finished_study, tmp_path):  # noqa: F811
    res = shutil.copytree(finished_study, tmp_path / "res")
    seed = _primary(res)
    under = Caveat("underfit", "a", "P-T", "P-T did not fit", "more epochs")
    a = TargetVerdict("a", UNRELIABLE, (_effect("a", "gain", 0.2, HOLDS),
                                        _effect("a", "speed", math.nan, NOT_MEASURED, low=math.nan, high=math.nan, n=0,
                                                p_holm=math.nan, holm_alpha=math.nan)),
                      "why a", (under,), HOLDS)
    b = TargetVerdict("b", INCONCLUSIVE, (_effect("b", "gain", 0.05, INCONCLUSIVE, seeds_needed=9, p_holm=0.2),), "why b")
    c = TargetVerdict("c", NOT_MEASURED, (), "no runs on c")
    v = Verdict("N1", "statement", UNRELIABLE, (a, b, c), "why")
    other = Verdict("N1", "statement", FAILS, (TargetVerdict("a", FAILS, (_effect("a", "gain", -0.3, FAILS),), "w"),),
                    "why")
    _write_claims(res, [v], [(seed, [v]), (seed + 7, [other])])
    out = tmp_path / "t"
    assert main(["export", "table", str(res), "--out", str(out)]) == 0
    text = (out / "claims.csv").read_text()
    assert "nan" not in text.lower().replace("not measured", "")  # NaN is an empty cell
    df = pd.read_csv(out / "claims.csv")
    for c in NUMBERS:
        assert pd.api.types.is_numeric_dtype(df[c]), (c, df[c].dtype)
    mine = df[df["pretrain_seed"] == seed]
    assert list(zip(mine["target"], mine["statistic"].fillna(""), mine["outcome"], strict=True)) == [
        ("a", "gain", UNRELIABLE), ("a", "speed", NOT_MEASURED), ("b", "gain", INCONCLUSIVE), ("c", "", NOT_MEASURED)]
    assert list(mine["target_outcome"]) == [UNRELIABLE, UNRELIABLE, INCONCLUSIVE, NOT_MEASURED]
    assert set(mine["claim_outcome"]) == {UNRELIABLE}
    assert "did not fit" in mine.iloc[0]["caveats"] and pd.isna(mine.iloc[2]["caveats"])
    assert math.isnan(mine.iloc[1]["estimate"]) and math.isnan(mine.iloc[1]["p_holm"]) and mine.iloc[1]["n"] == 0
    assert mine.iloc[2]["seeds_needed"] == 9 and math.isnan(mine.iloc[0]["seeds_needed"])
    assert mine.iloc[0]["estimate"] == 0.2 and mine.iloc[0]["p_holm"] == 0.001
    assert all(math.isnan(mine.iloc[3][c]) for c in NUMBERS if c != "pretrain_seed")
    theirs = df[df["pretrain_seed"] == seed + 7]
    assert list(zip(theirs["target"], theirs["outcome"], theirs["estimate"], strict=True)) == [("a", FAILS, -0.3)]
    # a mean over rows is a mean over numbers
    assert df["estimate"].mean() == pytest.approx((0.2 + 0.05 - 0.3) / 3)


def test_without_verdicts_no_claims_table_and_the_note_says_so(finished_study, tmp_path, capsys):  # noqa: F811
    res = shutil.copytree(finished_study, tmp_path / "res")
    (res / "analyses" / "claims.json").unlink()
    out = tmp_path / "t"
    capsys.readouterr()
    assert main(["export", "table", str(res), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert not (out / "claims.csv").exists() and (out / "runs.csv").exists()
    assert "claims.json" in err and "no claims table" in err, err
    (res / "analyses" / "claims.json").write_text("{]")
    assert main(["export", "table", str(res), "--out", str(tmp_path / "u")]) == 0
    err = capsys.readouterr().err
    assert not (tmp_path / "u" / "claims.csv").exists() and "claims.json" in err and "no claims table" in err, err


def _folder(root, verdicts):
    root.mkdir()
    (root / "study.json").write_text("{}")
    (root / "analyses").mkdir()
    _write_claims(root, verdicts)
    return root


def _v(claim, outcome, **targets):
    return Verdict(claim, "s", outcome, tuple(TargetVerdict(t, o, (), "") for t, o in targets.items()), "why")


def test_compare_json_and_its_exit_codes(tmp_path, capsys):
    a = _folder(tmp_path / "a", [_v("N1", HOLDS, x=HOLDS, y=HOLDS), _v("N2", INCONCLUSIVE, x=INCONCLUSIVE)])
    b = _folder(tmp_path / "b", [_v("N1", FAILS, x=FAILS, y=HOLDS), _v("N2", FAILS, x=FAILS)])
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    rows = compare_verdicts(load_verdicts(a), load_verdicts(b))
    assert doc["rows"] == [{"claim": r.claim, "target": r.target, "a": r.a, "b": r.b, "contradiction": r.contradiction,
                            "caveats_a": "", "caveats_b": ""} for r in rows]
    assert doc["counts"] == {"rows": 5, "claims": 2, "contradictions": 2}
    assert (doc["a"], doc["b"]) == (str(a), str(b))
    assert main(["compare", str(a), str(a), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["contradictions"] == 0
    assert main(["compare", str(a), str(tmp_path / "nowhere"), "--json"]) == 2
    got = capsys.readouterr()
    assert got.out == "" and "not a results folder" in got.err


def test_compare_help_states_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--json" in text
    assert "0 no contradiction" in text and "1 at least one contradiction" in text and "2 an error" in text, text


def test_the_analysis_gives_runs_and_effects_as_data_frames(finished_study, tmp_path, monkeypatch):  # noqa: F811
    import sys

    from transferscope.api import analyze_study, tables
    from transferscope.export import CLAIM_COLUMNS, RUN_COLUMNS

    a = analyze_study(finished_study, show_progress=False)
    out = tmp_path / "t"
    assert main(["export", "table", str(finished_study), "--out", str(out)]) == 0
    runs, effects = a.runs_frame(), a.effects_frame()
    assert list(runs.columns[: len(RUN_COLUMNS)]) == list(RUN_COLUMNS) and list(effects.columns) == list(CLAIM_COLUMNS)
    pd.testing.assert_frame_equal(runs, pd.read_csv(out / "runs.csv"))
    pd.testing.assert_frame_equal(effects, pd.read_csv(out / "claims.csv"))
    r2, e2 = tables(finished_study)  # an analysed folder, read without computing anything
    pd.testing.assert_frame_equal(r2, runs)
    pd.testing.assert_frame_equal(e2, effects)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'transferscope\[tables\]'"):
        a.effects_frame()
