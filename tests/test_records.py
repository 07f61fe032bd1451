"""The typed analysis records: every one round-trips through the project's JSON encoding (NaN and infinities
included), a record built from a real analysis survives the round trip, the registry covers every analysis, and
the records import without torch."""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from transferscope import jsonio
from transferscope.vocab import records as rec
from transferscope.vocab.records import ArmCell, SeedResult

NAN, INF = math.nan, math.inf


def same(a, b) -> bool:
    """Equal, with NaN equal to NaN (a record's dataclass equality compares floats with ==)."""
    if type(a) is not type(b):
        return isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) and same(float(a), float(b))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if hasattr(a, "__dataclass_fields__"):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


def through_json(r):
    return type(r).from_dict(jsonio.loads(jsonio.dumps(r.to_dict())))


def mistakes_pair():
    return rec.PairMistakes(n=4, common=1, uncommon=2, only_a_wrong=[0], only_b_wrong=[3], seed=0,
                            args={"batch_size": 2}, test_index=[10, 11, 12, 13])


def cka():
    return rec.CKAResult(["stem", "pool"], [0.9, NAN], [0.8, 0.7], 8, 30, 3)


def distance():
    return rec.DistanceResult(2.5, {"stem": 1.0, "head": INF}, ["stem.w"], {"head.w": "shape differs"})


def barrier():
    return rec.BarrierResult([0.0, 0.5, 1.0], [0.1, INF, 0.2], [0.0, NAN, 0.1], 0.3, INF, "exact", 30, seed=2)


def criticality():
    return rec.CriticalityResult(
        modules=["stem", "head"], criticality=[0.5, INF], best_a=[0.5, NAN], best_s=[0.1, NAN], distance=[1.0, 0.0],
        alphas=[0.0, 1.0], rewind_loss=[[0.1, NAN], [0.2, 0.3]], rewind_acc=[[1.0, 0.5], [0.4, 0.3]],
        boundary_s=[[0.0, 0.2], [0.0, 0.0]], eps=0.1, final_loss=0.05, tolerance=0.1, samples=2, seed=0,
        method="bisection", boundary_width=[[0.0, 0.01], [0.0, 0.0]], best_s_low=[0.09, NAN], best_s_high=[0.11, NAN],
        criticality_low=[0.4, INF], criticality_high=[0.6, INF], degenerate=[False, True])


def flatness():
    return rec.FlatnessResult(0.2, 12.5, 5, False, 1e-3, [0.01, 0.1], [0.001, NAN], [0.0, INF], 2, 24)


def stability_point(epoch):
    return rec.StabilityPoint(0.05, [0.5, 1.0], 0.3, 1.2, [-0.01, NAN], [0.1, 0.2], [0.1, INF], [1.0, 2.0], 24,
                              epoch=epoch)


def principal():
    return rec.PrincipalGradientResult(["stem.weight"], [1, 3], [[0.5, NAN]], [[0.01, 0.09]], [1.5], 0.4, 24)


def scores():
    return rec.TransferabilityResult(-1.1, NAN, 0.3, INF, 0.01, 1.0, 72, 20, "pool", note="")


def arm(n, acc):
    return ArmCell(n, acc, 0.01, NAN, 120.0, tuple(SeedResult(s, acc, NAN, INF) for s in range(n)))


def pair_row(kind, result):
    return rec.PairRow(kind, (0, 1), ("a", "b"), "weights", result)


def model_row(arm_, seed, result):
    return rec.ModelRow(arm_, seed, f"{arm_}-{seed}", result)


EXAMPLES = {
    "mistakes": rec.MistakesPairs((pair_row("P-T/P-T", mistakes_pair()),
                                   pair_row("P-T/RI-T", rec.PairMistakes(0, 0, 0, [], [])))),  # n = 0: NaN fractions
    "cka": rec.CKAPairs((pair_row("P-T/P-T", cka()), rec.PairRow("P/P-T", (0, 0), ("a", "a"), "init", cka()))),
    "distance": rec.DistancePairs((pair_row("P-T/P", distance()),)),
    "barrier": rec.BarrierPairs((pair_row("RI-T/RI-T", barrier()),)),
    "criticality": rec.CriticalityModels((model_row("P-T", 0, criticality()), model_row("RI-T", 1, criticality()))),
    "flatness": rec.FlatnessModels((model_row("P-T", 0, flatness()),)),
    "deviation": rec.DeviationModels((model_row("RI-T", 2, rec.DeviationResult([1, 2], ["stem", "head"],
                                                                              [[0.1, NAN], [0.2, 0.3]])),)),
    "stability": rec.StabilityModels((model_row("P-T", 0, rec.StabilityCurve([stability_point(0.0),
                                                                              stability_point(2.0)])),)),
    "principal": rec.PrincipalModels((model_row("P-T", 0, principal()),)),
    "scores": rec.ScoresResult({16: scores(), 4: scores()}),
    "transfer": rec.TransferResult((rec.TransferRow("tgt", 16, NAN, arm(2, 0.8), arm(3, 0.6)),), 1, 0.9),
    "basin": rec.BasinResult((rec.BasinRow(2.0, 0, "r0", 0.8, NAN, INF, 0.0, 0.0),
                              rec.BasinRow(1.0, 0, "r1", 0.7, 0.5, 100.0, 0.1, INF)), 16, 2.0),
    "relate": rec.RelateResult((rec.RelatePoint("tgt", 16, 0.1, NAN, -1.0, 0.5, 0.2, INF),),
                               {"leep/gain": rec.Correlation(NAN, NAN, NAN, 1, NAN),
                                "logme/gain": rec.Correlation(0.5, 0.1, 0.9, 4, 0.3, 0.9)}, "a note"),
}


def test_every_analysis_has_a_record_type_and_an_example():
    from transferscope.study.registry import SPECS

    assert set(rec.RESULT_TYPES) == set(SPECS) == set(EXAMPLES)
    for name, spec in SPECS.items():
        assert spec.result is rec.RESULT_TYPES[name] and isinstance(EXAMPLES[name], spec.result)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_record_round_trips_through_json(name):
    r = EXAMPLES[name]
    text = jsonio.dumps(r.to_dict())
    assert "NaN" in text or "Infinity" in text or "null" in text  # the examples carry non-finite numbers
    back = rec.result_from_dict(f"{name}/tgt", jsonio.loads(text))
    assert type(back) is type(r) and same(back, r)
    assert jsonio.dumps(back.to_dict()) == text


def test_the_dict_keeps_the_layout_of_the_files():
    """The JSON shape the report and older readers know: pairs, models, rows, blocks, points."""
    d = jsonio.loads(jsonio.dumps(EXAMPLES["mistakes"].to_dict()))
    p = d["pairs"][0]
    assert list(p) == ["kind", "seeds", "runs", "which_b", "result"] and p["seeds"] == [0, 1]
    assert {"common", "uncommon", "n", "only_a_wrong", "test_index", "common_fraction"} <= set(p["result"])
    t = EXAMPLES["transfer"].to_dict()["rows"][0]
    assert {"P-T_n", "RI-T_acc_mean", "P-T_per_seed", "gain", "block_size"} <= set(t)
    assert t["RI-T_per_seed"][0] == {"seed": 0, "test_acc": 0.6, "speed_mean_acc_k": NAN, "speed_steps_to_frac": INF} \
        or same(t["RI-T_per_seed"][0], {"seed": 0, "test_acc": 0.6, "speed_mean_acc_k": NAN, "speed_steps_to_frac": INF})
    assert list(EXAMPLES["scores"].to_dict()["blocks"]) == ["16", "4"]
    s = EXAMPLES["stability"].to_dict()["models"][0]["result"]["points"][1]
    assert s["epoch"] == 2.0 and "grad_lipschitz" in s
    assert "confidence" not in EXAMPLES["relate"].to_dict()["correlations"]["leep/gain"]


def test_null_in_a_float_field_reads_as_nan():
    """Files written before jsonio held null for NaN."""
    d = jsonio.loads(jsonio.dumps(EXAMPLES["barrier"].to_dict()))
    d["pairs"][0]["result"]["barrier_error"] = None
    d["pairs"][0]["result"]["loss"] = [0.1, None, 0.2]
    r = rec.BarrierPairs.from_dict(d).pairs[0].result
    assert math.isnan(r.barrier_error) and math.isnan(r.loss[1]) and r.loss[2] == 0.2
    b = EXAMPLES["basin"].to_dict()
    b["rows"][0]["test_acc"] = None
    del b["final_checkpoint"]  # an older file: the largest checkpoint
    back = rec.BasinResult.from_dict(b)
    assert math.isnan(back.rows[0].test_acc) and back.final_checkpoint == 2.0


def test_an_old_shape_is_refused_not_misread():
    with pytest.raises((KeyError, TypeError, ValueError)):
        rec.result_from_dict("barrier/tgt", {"rows": []})
    with pytest.raises((KeyError, TypeError, ValueError)):
        rec.result_from_dict("criticality/tgt", {"models": [{"arm": "P-T", "seed": 0, "run": "r",
                                                             "result": {"modules": ["stem"]}}]})


def test_helpers_select_by_kind_and_arm():
    m = EXAMPLES["mistakes"]
    assert [p.kind for p in m.of_kind("P-T/RI-T")] == ["P-T/RI-T"] and m.kinds() == ["P-T/P-T", "P-T/RI-T"]
    assert m.first("RI-T/RI-T") is None and m.first("P-T/P-T").test_index == [10, 11, 12, 13]
    c = EXAMPLES["criticality"]
    assert c.arms() == ["P-T", "RI-T"] and c.first("RI-T") is c.models[1].result and c.of_arm("P") == ()
    assert EXAMPLES["transfer"].row("tgt", 16).arm("RI-T").n == 3 and EXAMPLES["transfer"].row("tgt", 4) is None
    assert EXAMPLES["scores"].at(4).leep == -1.1 and EXAMPLES["scores"].at(8) is None


def test_a_record_from_real_analyses_survives_the_round_trip(small_domain):
    from transferscope.analyses.barrier import interpolate
    from transferscope.analyses.mistakes import model_mistakes

    from .conftest import trained_model

    a, _ = trained_model(small_domain, 0, epochs=1)
    b, _ = trained_model(small_domain, 1, epochs=1)
    res = interpolate(a, b, small_domain.test, points=3)
    m = model_mistakes(a, b, small_domain.test)
    pairs = rec.BarrierPairs((rec.PairRow.of({"kind": "P-T/P-T", "seeds": [0, 1], "runs": ["ra", "rb"],
                                              "which_b": "weights"}, res),))
    back = through_json(pairs)
    assert same(back, pairs) and back.pairs[0].seeds == (0, 1) and back.pairs[0].result.lambdas == [0.0, 0.5, 1.0]
    assert back == pairs or any(not np.isfinite(v) for v in res.loss + res.error)
    mp = rec.MistakesPairs((rec.PairRow.of({"kind": "P-T/RI-T", "seeds": [0, 1], "runs": ["ra", "rb"]},
                                           rec.PairMistakes.of(m, list(range(m.n)))),))
    assert through_json(mp) == mp and mp.pairs[0].which_b == "weights"


def test_records_and_the_report_import_without_torch():
    code = ("import sys\n"
            "import transferscope.vocab.records, transferscope.report, transferscope.report.figures\n"
            "import transferscope.study.summary\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
