"""`transferscope run --until-decided` on a tiny real study: rounds that add ordinary seeds to the cells undecided
effects read, judged at the levels of the design, resumable from the last finished round, refusing to change the
design or to look again at a study judged at fixed seeds."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from transferscope import jsonio
from transferscope.api import analyze_study, decide_study, run_study
from transferscope.cli import main
from transferscope.config import ConfigError, load_config
from transferscope.store import Store
from transferscope.study import execute, make_plan
from transferscope.study.decide import RoundUnfinished, cell_seeds, check_design
from transferscope.study.looks import read_record

from .conftest import make_imagefolder, tiny_study_toml

ANALYSIS = """
[analysis]
groups = ["neyshabur"]
cka_batch_size = 8
barrier_points = 3
criticality_alphas = [0.0, 1.0]
criticality_examples = 20
criticality_s_tol = 0.05
scores_source_examples = 20
"""
DESIGN = {"looks": 3, "max_seeds": 5}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("decide")
    src = make_imagefolder(root / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(root / "tgt", n_classes=3, per_class=24, seed=2)
    path = root / "study.toml"
    # fine-tuning rates from a grid: the runs of a round wait for the choice the first round made
    path.write_text(tiny_study_toml(src, tgt).replace("seeds = [0, 1]", "seeds = [0, 1, 2]")
                    .replace("lr = 0.02", "lr_grid = [0.02, 0.05]") + ANALYSIS)
    cfg = load_config(path, [f'data.cache_dir="{root / "cache"}"'])
    return root, cfg


def _decide(cfg, results, **kw):
    said = []
    out = decide_study(cfg, results, threads=1, show_progress=False, say=said.append, **{**DESIGN, **kw})
    return out, said


@pytest.fixture(scope="module")
def decided(tiny):
    root, cfg = tiny
    out, said = _decide(cfg, root / "decided")
    return out, said, Store(root / "decided")


def _weights(store: Store, rid: str) -> str:
    return hashlib.sha256((store.run_dir(rid) / "weights.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_rounds_add_seeds_to_the_cells_undecided_effects_read_and_say_why(decided):
    out, said, store = decided
    rec = out.record
    assert len(rec.rounds) >= 2, said  # the tiny study has effects a seed or two away: a round is added
    assert rec.stopped == out.stopped and out.stopped
    first = rec.rounds[0]
    assert first.added == [] and first.judged and first.runs_trained > 0
    plan_text = next(s for s in said if s.startswith("round 2 (look 2 of 3"))
    assert "seeds (for" in plan_text and "runs; estimated" in plan_text and "why:" in plan_text
    # the estimate reads the seconds of the runs already trained in the cells that grow (their rates chosen)
    assert all(r.plan["estimated_train_s"] > 0 and r.plan["runs"] > 0 for r in rec.rounds[1:])
    # the cells grown are exactly the cells of the effects the round was for, at most max_seeds each
    claims = json.loads((store.root / "analyses" / "claims.json").read_text())
    cells_of = {f"{v['claim']} / {t['target']} / {e['name']}": {(c["arm"], c["target"], c["block"], c["checkpoint"])
                                                                 for c in e["cells"]}
                for v in claims["verdicts"] for t in v["targets"] for e in t["effects"]}
    for r in rec.rounds[1:]:
        grown = {(a["arm"], a["target"], a["block_size"], a["checkpoint"]) for a in r.added}
        wanted = set().union(*(cells_of[k] for k in r.plan["effects"]))
        assert grown == wanted and grown, (r.look, grown, wanted)
    plan = make_plan(_study_config_of(store), check=False)
    assert max(cell_seeds(plan).values()) <= DESIGN["max_seeds"]
    assert len(set(cell_seeds(plan).values())) > 1  # only some cells grew


def _study_config_of(store: Store):
    from transferscope.api import study_folder

    return study_folder(store.root)[1]


@pytest.mark.slow
def test_each_look_is_judged_at_its_level_and_recorded(decided):
    out, _, store = decided
    rec = out.record
    levels = rec.levels
    assert sum(levels) == pytest.approx(0.025) and len(levels) == 3 and levels[0] < levels[-1]  # O'Brien-Fleming
    claims = jsonio.read(store.root / "analyses" / "claims.json")
    k = len(rec.rounds)
    assert claims["rule"]["looks"]["look"] == k and claims["rule"]["looks"]["alpha"] == levels[k - 1]
    effects = [e for v in claims["verdicts"] for t in v["targets"] for e in t["effects"]]
    for e in effects:
        assert [x["look"] for x in e["looks"]] == list(range(1, k + 1))
        assert [x["alpha"] for x in e["looks"]] == list(levels[:k])
        for x in e["looks"]:  # a look's decision is Holm at its own level, never at the fixed design's
            if x["outcome"] in ("holds", "does not hold"):
                assert x["p_holm"] <= x["holm_alpha"] <= x["alpha"]
    decided_at = {f"{v['claim']} / {t['target']} / {e['name']}": next(
        (x["look"] for x in e["looks"] if x["outcome"] in ("holds", "does not hold")), None)
        for v in claims["verdicts"] for t in v["targets"] for e in t["effects"]}
    for r in rec.rounds:
        assert all(decided_at[k2] == r.look for k2 in r.decided_here)
    assert sum(len(r.decided_here) for r in rec.rounds) == rec.rounds[-1].decisive
    assert all((store.root / "analyses" / "looks" / f"look-{r.look}.json").is_file() for r in rec.rounds)


@pytest.mark.slow
def test_seeds_added_by_rounds_are_the_runs_of_a_study_run_at_once_bitwise(tiny, decided):
    root, cfg = tiny
    _, _, grown = decided
    at_once = Store(root / "at-once")
    s = execute(make_plan(replace(cfg, seeds=list(range(DESIGN["max_seeds"])))), at_once, threads=1,
                show_progress=False)
    assert not s.failed
    ours = set(grown.list_runs())
    assert ours <= set(at_once.list_runs()) and len(ours) > 0
    added = [rid for rid in ours if json.loads((grown.run_dir(rid) / "run.json").read_text())["spec"]["seed"] >= 3]
    assert added  # seeds 3 and 4 of some cells
    for rid in ours:
        assert _weights(grown, rid) == _weights(at_once, rid), rid


@pytest.mark.slow
def test_a_stopped_study_goes_on_from_its_last_finished_round(tiny, decided):
    root, cfg = tiny
    full, _, _ = decided
    results = root / "interrupted"
    calls = []
    import transferscope.study.decide as dmod

    real = dmod.run_until_decided

    def stop_in_round_2(cfg_, store, *, train, **kw):
        def train2(plan):
            calls.append(plan.size())
            if len(calls) == 2:
                raise KeyboardInterrupt
            return train(plan)
        return real(cfg_, store, train=train2, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dmod, "run_until_decided", stop_in_round_2)
        with pytest.raises(KeyboardInterrupt):
            _decide(cfg, results)
    rec = read_record(Store(results))
    assert len(rec.rounds) == 2 and rec.rounds[0].judged and not rec.rounds[1].judged and not rec.stopped
    out, said = _decide(cfg, results)  # the same command again
    assert not any(s.startswith("deciding in rounds") for s in said)  # round 1 is not started again
    assert out.record.rounds[0].runs_trained == full.record.rounds[0].runs_trained
    assert [r.added for r in out.record.rounds] == [r.added for r in full.record.rounds]
    assert [r.decisive for r in out.record.rounds] == [r.decisive for r in full.record.rounds]
    assert out.stopped == full.stopped
    assert [v.to_dict() for v in out.verdicts] == [v.to_dict() for v in full.verdicts]
    # once stopped, a call says so and trains nothing
    again, said = _decide(cfg, results)
    assert any("this study stopped" in s for s in said) and again.record.to_dict() == out.record.to_dict()


def test_the_design_is_fixed_before_any_result(tiny, tmp_path):
    _, cfg = tiny
    store = Store(tmp_path / "r")
    cfg2, rec = check_design(cfg, store, looks=2, max_seeds=6)
    assert rec.looks == 2 and rec.design["max_seeds"] == 6 and cfg2.decide.looks == 2
    from transferscope.study.looks import write_record

    store.root.mkdir(parents=True)
    write_record(store, rec)
    _, same = check_design(cfg, store)  # a resumed call takes the folder's design
    assert same.design == rec.design
    with pytest.raises(ConfigError, match="looks = 3, but .* decides in rounds with looks = 2"):
        check_design(cfg, store, looks=3)
    with pytest.raises(ConfigError, match="decide.spending = 'equal'"):
        check_design(cfg, store, spending="equal")
    with pytest.raises(ConfigError, match="started its rounds with seeds"):
        check_design(replace(cfg, seeds=[0, 1]), store)
    with pytest.raises(ConfigError, match="--max-seeds 2: the study starts with 3 seeds"):
        check_design(cfg, Store(tmp_path / "other"), max_seeds=2)
    with pytest.raises(ConfigError, match="budget"):
        _checked_with(cfg, budget="soon")


def _checked_with(cfg, **decide):
    from transferscope.config import check_config

    check_config(replace(cfg, decide=replace(cfg.decide, **decide)))


def test_a_study_judged_at_fixed_seeds_cannot_start_deciding_in_rounds(tiny, tmp_path):
    _, cfg = tiny
    store = Store(tmp_path / "judged")
    (store.root / "analyses").mkdir(parents=True)
    (store.root / "analyses" / "claims.json").write_text("{}")
    with pytest.raises(ConfigError, match="judged at a fixed number of seeds"):
        check_design(cfg, store)


@pytest.mark.slow
def test_a_folder_that_decides_in_rounds_refuses_a_plain_run_and_an_early_judgement(tiny, decided, tmp_path,
                                                                                      capsys):
    root, cfg = tiny
    _, _, store = decided
    with pytest.raises(ConfigError, match="decides in rounds .* --until-decided"):
        run_study(cfg, store.root, threads=1, show_progress=False)
    # a round planned but not trained: analyze computes, but does not judge a look the design did not plan
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    rec = read_record(Store(copy))
    from transferscope.study.looks import Round, write_record

    before = (copy / "analyses" / "claims.json").read_bytes()
    extra = {"arm": "RI-T", "target": "tgt", "block_size": 4, "checkpoint": -1.0, "seeds": [7]}
    rec.rounds.append(Round(len(rec.rounds) + 1, [extra]))
    rec.stopped = ""
    write_record(Store(copy), rec)
    study = json.loads((copy / "study.json").read_text())
    study["decide"]["added"].append(extra)
    (copy / "study.json").write_text(json.dumps(study))
    with pytest.raises(RoundUnfinished, match="1 runs still to train"):
        analyze_study(copy, show_progress=False)
    assert (copy / "analyses" / "claims.json").read_bytes() == before
    assert main(["analyze", str(copy), "--no-progress", "--jobs", "1"]) == 2
    assert "not judged" in capsys.readouterr().err


def test_the_design_flags_go_with_until_decided(tiny, tmp_path, capsys):
    root, _ = tiny
    assert main(["run", str(root / "study.toml"), "--results", str(tmp_path / "r"), "--looks", "2"]) == 2
    assert "--until-decided" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_until_decided_prints_each_rounds_plan_and_the_rounds(tiny, tmp_path, capsys):
    root, _ = tiny
    rc = main(["run", str(root / "study.toml"), "--results", str(tmp_path / "r"), "--until-decided", "--looks", "2",
               "--max-seeds", "4", "--jobs", "1", "--threads", "1", "--no-progress", "--set",
               f'data.cache_dir="{root / "cache"}"'])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "deciding in rounds: at most 2 looks" in out.err and "look 1:" in out.err
    assert "rounds:\n  look 1:" in out.out and "stopped: " in out.out and "N1 " in out.out
    rec = read_record(Store(tmp_path / "r"))
    assert rec.looks == 2 and rec.design["max_seeds"] == 4 and rec.stopped


@pytest.mark.slow
def test_the_report_shows_how_each_verdict_was_reached(decided, tmp_path):
    from transferscope.api import render

    out, _, store = decided
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    html = render(copy).read_text()
    assert "how the verdicts were reached" in html and "decided at look" in html
    assert f"at most {DESIGN['looks']} looks" in html and out.stopped in html
    for r in out.record.rounds:
        assert f"{r.decisive} of {r.effects}" in html


def _criticality_files(root) -> dict[str, bytes]:
    import re

    return {p.name: re.sub(rb'"seconds": [0-9.e+-]+', b'"seconds": 0', p.read_bytes())
            for p in (root / "analyses").glob("criticality-*.json")}


@pytest.mark.slow
def test_a_round_computes_only_the_models_it_adds(decided, tmp_path, monkeypatch):
    """An analysis of single models keeps each model's row (analyses/rows/): a target's job that gains models in a
    round reads the others back. Read back or computed afresh, the result is the same, byte for byte."""
    import transferscope.study.adapters as adapters

    _, _, store = decided
    index = json.loads((store.root / "analyses" / "index.json").read_text())
    current = Path(index["results"]["criticality/tgt"]).name
    want = {current: _criticality_files(store.root)[current]}  # the job of the last round (earlier ones are kept)
    rows = list((store.root / "analyses" / "rows" / "criticality").glob("*.json"))
    final = json.loads(want[current])["result"]["models"]
    assert len(rows) == len(final) > 6  # one row per model, each computed once over the rounds
    # from the rows alone: no model is loaded
    reuse = tmp_path / "reuse"
    shutil.copytree(store.root, reuse)
    for name in _criticality_files(reuse):
        (reuse / "analyses" / name).unlink()

    def no_model(*a, **k):
        raise AssertionError("a model was loaded where its row was kept")

    with monkeypatch.context() as mp:
        mp.setattr(adapters, "_load_model", no_model)
        analyze_study(reuse, show_progress=False)
    assert _criticality_files(reuse) == want
    # and from scratch, without the rows
    fresh = tmp_path / "fresh"
    shutil.copytree(store.root, fresh)
    shutil.rmtree(fresh / "analyses" / "rows")
    for name in _criticality_files(fresh):
        (fresh / "analyses" / name).unlink()
    analyze_study(fresh, show_progress=False)
    assert _criticality_files(fresh) == want


@pytest.mark.slow
def test_a_kept_row_is_not_read_for_other_settings(decided, tmp_path):
    """Rows are keyed by the analysis' settings (and the run's files): other settings compute every row again."""
    _, _, store = decided
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    rows = copy / "analyses" / "rows" / "criticality"
    before = {p.name for p in rows.glob("*.json")}
    study = json.loads((copy / "study.json").read_text())
    study["analysis"]["criticality_examples"] = 15
    (copy / "study.json").write_text(json.dumps(study))
    analyze_study(copy, show_progress=False)
    after = {p.name for p in rows.glob("*.json")}
    assert before < after and len(after) == 2 * len(before)


# ------------------------------------------------------------------------------------------------ the parts
def test_cells_count_the_seeds_of_each_arm_block_and_basin_checkpoint(tiny):
    from transferscope.config import AddedSeeds
    from transferscope.vocab.arms import PT, RIT, Cell

    _, cfg = tiny
    grown = replace(cfg, decide=replace(cfg.decide, added=[AddedSeeds("RI-T", "tgt", 4, -1.0, [3, 4]),
                                                           AddedSeeds("P-T", "tgt", 16, 1.0, [3])]))
    have = cell_seeds(make_plan(grown, check=False))
    assert have == {Cell(PT, "tgt", 16): 3, Cell(RIT, "tgt", 16): 3, Cell(PT, "tgt", 4): 3, Cell(RIT, "tgt", 4): 5,
                    Cell(PT, "tgt", 16, 1.0): 4}


def test_the_estimate_of_a_round(tiny):
    from transferscope.study import decide as d
    from transferscope.vocab.arms import PT, RIT, Cell

    assert d.side_by_side(300.0, 100.0) == 3.0 and d.side_by_side(50.0, 100.0) == 1.0
    assert d.side_by_side(50.0, 0.0) == 1.0
    assert d._fmt_s(89) == "89 s" and d._fmt_s(90) == "1.5 min"
    a, b, c = Cell(PT, "a", 28), Cell(RIT, "a", 28), Cell(PT, "b", 28)
    cost = object.__new__(d._Cost)
    cost.cell, cost.arm = {a: 10.0}, {PT: 20.0, RIT: 30.0}
    cost.side_by_side, cost.analysis_per, cost.pretrains = 2.0, 1.5, 1
    cost.have = {a: 4, b: 4, c: 4}
    want = {a: 6, b: 5}  # target a grows, b does not
    assert cost.runs(want) == 3
    assert cost.train(want) == pytest.approx((2 * 10.0 + 1 * 30.0) / 2)  # a cell's own runs, else its arm's
    assert cost.analysis(want) == pytest.approx(1.5 * (6 + 5))  # the seeds of the targets that grow, after growing
    assert cost(want) == pytest.approx(25.0 + 16.5)


def test_a_first_round_that_trained_nothing_estimates_its_analyses_as_they_ran(tiny, tmp_path):
    """Round 1 of a folder whose runs were trained before it (copied, or a plain `run`) trains nothing: the runs'
    side-by-side is unmeasured. Where that round computed its analyses, the recorded compute seconds are spread
    over as many jobs side by side as it measured (here 600 s of jobs in 300 s of wall: 2), not taken as one job at
    a time; where it computed none (all cached, from before), they still are (the estimate errs long)."""
    from transferscope import jsonio
    from transferscope.study import decide as d
    from transferscope.study.looks import Record, Round, design_of
    from transferscope.study.plan import make_plan

    _, cfg = tiny
    plan = make_plan(cfg, check=False)
    store = Store(tmp_path / "r")
    (store.root / "analyses").mkdir(parents=True)
    for i, sec in enumerate((350.0, 250.0)):
        (store.root / "analyses" / f"job{i}.json").write_text(jsonio.dumps({"seconds": sec, "result": {}}))
    have = d.cell_seeds(plan)
    design = design_of(2, "obrien-fleming", 8, "", float("inf"), cfg.seeds)
    measured = d._Cost(plan, store, Record(design, [Round(1, analysis_s=300.0, analysis_job_s=600.0)]), have)
    assert measured.analysis_side_by_side == pytest.approx(2.0)
    assert measured.analysis_per * sum(have.values()) == pytest.approx(300.0)  # not 600: two ran at once
    cached = d._Cost(plan, store, Record(design, [Round(1, analysis_s=5.0, analysis_job_s=0.0)]), have)
    assert cached.analysis_side_by_side == 1.0
    assert cached.analysis_per * sum(have.values()) == pytest.approx(600.0)  # nothing measured: one at a time
    slow = d._Cost(plan, store, Record(design, [Round(1, analysis_s=900.0, analysis_job_s=600.0)]), have)
    assert slow.analysis_per * sum(have.values()) == pytest.approx(900.0)  # the wall it took, when that is longer


@pytest.mark.parametrize("at_once", [None, 1, 2, 3])  # None: runs of an older version, that recorded no times
def test_runs_trained_before_the_rounds_say_how_many_trained_side_by_side(tiny, tmp_path, at_once):
    """With no run trained by a round (a folder trained by a plain `run`, or copied), how many runs trained side by
    side is read from the runs' own start and end times: their seconds over the span they cover. A gap in that
    span only lowers it (the estimate errs long)."""
    from transferscope.store import write_json
    from transferscope.study import decide as d
    from transferscope.study.looks import Record, Round, design_of
    from transferscope.study.plan import make_plan

    _, cfg = tiny
    plan = make_plan(cfg, check=False)
    store = Store(tmp_path / f"r{at_once}")
    ri = [r for r in plan.runs if r.arm == "RI-T"]
    assert len(ri) % (2 * 3) == 0  # every batch of at_once runs is full
    for i, r in enumerate(ri):
        start = 1000.0 + 10.0 * (i // (at_once or 1))  # at_once runs at a time, 10 s each
        times = {"started": start, "finished": start + 10.0} if at_once else {}
        with store.new_run(r.run_id) as folder:
            write_json(folder, "metrics.json", {"num_classes": 3})
            write_json(folder, "run.json", {"run_id": r.run_id, "status": "done", "seconds": 10.0, **times})
    design = design_of(2, "obrien-fleming", 8, "", float("inf"), cfg.seeds)
    cost = d._Cost(plan, store, Record(design, [Round(1)]), d.cell_seeds(plan))
    assert cost.side_by_side == pytest.approx(at_once or 1)
    if at_once == 1:  # P trained beside them the whole time (P counts: it held a worker): 2 at a time
        span = 10.0 * len(ri)
        with store.new_run(plan.pretrain().run_id) as folder:
            write_json(folder, "metrics.json", {"num_classes": 4})
            write_json(folder, "run.json", {"run_id": plan.pretrain().run_id, "status": "done", "seconds": span,
                                            "started": 1000.0, "finished": 1000.0 + span})
        assert d._Cost(plan, store, Record(design, [Round(1)]), d.cell_seeds(plan)).side_by_side == pytest.approx(2)
    # a round that trained runs measures it itself (10 runs of 10 s in 25 s of wall: 4 at a time)
    rounds = Record(design, [Round(1), Round(2, runs_trained=10, train_s=25.0)])
    assert d._Cost(plan, store, rounds, d.cell_seeds(plan)).side_by_side == pytest.approx(4.0)


def test_the_effects_decided_before_a_look(tmp_path):
    from transferscope.claims import decide
    from transferscope.claims.sequential import spending_levels
    from transferscope.study.decide import _decided_keys
    from transferscope.study.looks import LookState, Record, Round, design_of, write_look, write_record

    from .test_claims_sequential import _claim

    store = Store(tmp_path / "r")
    (store.root / "analyses").mkdir(parents=True)
    vs = decide([_claim([0.9, 0.91, 0.92, 0.9], [0.5, 0.52, 0.51, 0.5])], None, alpha=0.01)
    rec = Record(design_of(2, "equal", 8, "", float("inf"), [0, 1, 2]), [Round(1, judged=True), Round(2)])
    write_record(store, rec)
    write_look(store, LookState(1, 2, 0.0125, "equal", spending_levels(2, "equal")), {0: vs})
    assert _decided_keys(rec, store, 1) == set()
    assert _decided_keys(rec, store, 2) == {"X / t / gain"}


def test_seeds_added_by_hand_are_checked_against_the_study(tiny):
    from transferscope.config import AddedSeeds

    _, cfg = tiny

    def added(*a):
        return replace(cfg, decide=replace(cfg.decide, added=list(a)))

    with pytest.raises(ConfigError, match=r"decide.added\[0\].target: 'nope' is not a target"):
        make_plan(added(AddedSeeds("P-T", "nope", 16, -1.0, [5])))
    with pytest.raises(ConfigError, match=r"decide.added\[0\].block_size: 8 is not one of block_sizes"):
        make_plan(added(AddedSeeds("P-T", "tgt", 8, -1.0, [5])))
    with pytest.raises(ConfigError, match=r"decide.added\[0\]: a cell of the basin sweep is P-T at block 16"):
        make_plan(added(AddedSeeds("RI-T", "tgt", 16, 1.0, [5])))
    with pytest.raises(ConfigError, match=r"decide.added\[0\]: a cell of the basin sweep"):
        make_plan(added(AddedSeeds("P-T", "tgt", 16, 0.5, [5])))
    with pytest.raises(ConfigError, match=r"decide.added\[0\].seeds: \[1\] are already seeds"):
        make_plan(added(AddedSeeds("P-T", "tgt", 16, -1.0, [1, 5])))
    with pytest.raises(ConfigError, match=r"decide.added\[1\].seeds: \[5\] are already seeds"):
        make_plan(added(AddedSeeds("P-T", "tgt", 16, -1.0, [5]), AddedSeeds("P-T", "tgt", 16, -1.0, [5])))
    ok = make_plan(added(AddedSeeds("P-T", "tgt", 16, -1.0, [5]), AddedSeeds("P-T", "tgt", 4, -1.0, [5]),
                         AddedSeeds("P-T", "tgt", 16, 1.0, [5])))
    assert ok.size() == make_plan(cfg).size() + 3


@pytest.mark.slow
def test_a_run_of_a_folder_that_decides_in_rounds_is_repaired_with_rerun(decided, tmp_path):
    """The command `status` prints for a damaged run: the folder's own study, with the seeds its rounds added."""
    _, _, store = decided
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    rec = read_record(Store(copy))
    added = next(a for r in rec.rounds for a in r.added)
    rid = next(r for r in Store(copy).list_runs()
               if json.loads((copy / "runs" / r / "run.json").read_text())["spec"]["seed"] == added["seeds"][0])
    before = _weights(Store(copy), rid)
    assert main(["run", "--results", str(copy), "--rerun", rid, "--no-progress", "--jobs", "1"]) == 0
    assert _weights(Store(copy), rid) == before  # trained again, bitwise


@pytest.mark.slow
def test_a_folder_trained_before_its_first_round_is_not_estimated_as_free(tiny, tmp_path):
    """Round 1 of a folder whose runs a plain `run` trained (before any judgement) trains nothing in no time: the
    next round's estimate still reads the runs' own seconds (as many at a time as their start and end times show,
    here one: --jobs 1; not the runs over ~0 s of wall time)
    and the analyses' recorded seconds, so that the budget means what it says."""
    root, cfg = tiny
    store = Store(tmp_path / "pre")
    run_study(cfg, tmp_path / "pre", jobs=1, threads=1, show_progress=False)
    out, said = _decide(cfg, tmp_path / "pre")
    rec = out.record
    assert rec.rounds[0].runs_trained == 0 and len(rec.rounds) >= 2, said
    done = [r for r in store.root.joinpath("runs").iterdir() if (r / "run.json").is_file()]
    per_run = sorted(json.loads((r / "run.json").read_text())["seconds"] for r in done)
    nxt = rec.rounds[1].plan
    assert nxt["runs"] > 0
    assert nxt["estimated_train_s"] >= nxt["runs"] * per_run[0] * 0.99  # at least the fastest run, one at a time
    assert nxt["estimated_analysis_s"] > 0
    # round 1 computed every analysis (a plain `run` computes none): it recorded their compute seconds, which the
    # next estimate reads for how many ran side by side
    from transferscope.study.decide import _recorded_analysis_s
    assert 0 < rec.rounds[0].analysis_job_s <= _recorded_analysis_s(store) + 1e-9
