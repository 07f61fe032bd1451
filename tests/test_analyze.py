import json

from transferscope.cli import main
from transferscope.config import AnalysisConfig, load_config
from transferscope.store import Store
from transferscope.study import execute, make_plan
from transferscope.study.analyze import analyze, judge_claims, judge_liu_claims

from .conftest import tiny_study_toml

FAST = AnalysisConfig(cka_batch_size=8, barrier_points=3, criticality_alphas=[0.0, 1.0], criticality_examples=20,
                        criticality_s_tol=0.05, flatness_examples=20, flatness_iters=5, flatness_samples=2,
                        stability_examples=20, principal_examples=20, scores_source_examples=20)


def test_analyze_caches_and_judges_every_claim(tmp_path, folders):
    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    plan = make_plan(load_config(p))
    store = Store(tmp_path / "res")
    execute(plan, store, jobs=1, show_progress=False)
    first = analyze(plan, store, FAST, show_progress=False)
    assert not first.missing, first.missing
    names = {k.split("/")[0] for k in first.results}
    assert names == {"transfer", "mistakes", "cka", "distance", "barrier", "criticality", "basin", "flatness",
                     "deviation", "stability", "principal", "scores", "relate"}
    # the same analyses again come from the cache
    second = analyze(plan, store, FAST, show_progress=False)
    assert second.computed == [] and len(second.cached) == len(first.computed)
    assert json.dumps(second.results, sort_keys=True) == json.dumps(first.results, sort_keys=True)
    # the P-T/P-T pair and P/P-T are analysed with the right models: CKA of a P-T model with itself would be 1
    cka = first.results["cka/tgt"]
    assert any(v < 0.9999 for v in cka["P-T/P-T"]["full"] if v is not None)
    assert first.results["barrier/tgt"]["P-T/P-T"]["bn_policy"] == "exact"
    claims = judge_claims(plan, first.results)
    assert [c["claim"] for c in claims] == list(range(1, 10))
    assert all(c["verdict"] in ("holds", "does not hold", "partly") for c in claims), claims
    liu = judge_liu_claims(plan, first.results)
    assert [c["claim"] for c in liu] == ["L1", "L2", "L3", "L4", "L5"]
    # one target, two block sizes: L4 has its 2 points (too few for a rank correlation: not measured); the rest judged
    assert all(c["verdict"] in ("holds", "does not hold", "partly") for c in liu if c["claim"] != "L4"), liu
    assert len(first.results["relate/all"]["points"]) == 2
    # the deviation figures are the trainer's: P-T starts at 0 deviation from P (its own start) at epoch 0
    dev = first.results["deviation/tgt"]["P-T"]
    assert dev["epochs"][0] == 0 and all(v == 0 for v in dev["mean"][0] if v is not None)
    st = first.results["stability/tgt"]
    assert [r["epoch"] for r in st["P-T"]] == [0.0, 2.0]  # init and final (no intermediate checkpoints here)


def test_analyze_with_missing_runs_says_what_is_missing(tmp_path, folders):
    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    plan = make_plan(load_config(p))
    store = Store(tmp_path / "res")
    run = analyze(plan, store, FAST, show_progress=False)
    assert "pairs-tgt" in run.missing
    claims = judge_claims(plan, run.results)
    assert {c["verdict"] for c in claims} == {"not measured"}


def test_cli_analyze(tmp_path, folders, capsys):
    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    res = str(tmp_path / "r")
    assert main(["run", str(p), "--results", res, "--jobs", "1", "--no-progress"]) == 0
    assert main(["analyze", res, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "claim 9:" in out and (tmp_path / "r" / "analyses" / "claims.json").is_file()
