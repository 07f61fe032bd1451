"""Several pre-trained models P in one study: the plan, the runs, the analyses and the verdicts under each P."""

import json
from dataclasses import replace

import pytest

from transferscope.cli import main
from transferscope.config import ConfigError, load_config
from transferscope.study.plan import make_plan

from .conftest import tiny_study_toml


def _config(tmp_path, folders, pretrain: str = "pretrain_seeds = [0, 1]", grid: bool = False):
    text = tiny_study_toml(*folders).replace("\nseeds = [0, 1]\n", f"\nseeds = [0, 1]\n{pretrain}\n", 1)
    if grid:
        text = text.replace("lr = 0.02", "lr_grid = [0.01, 0.02]").replace("[scratch]\n", "[scratch]\nlr_grid = [0.01, 0.02]\n")
    p = tmp_path / "study.toml"
    p.write_text(text)
    return load_config(p)


def test_each_p_gets_its_own_p_t_runs_and_ri_t_is_shared(tmp_path, folders):
    cfg = _config(tmp_path, folders)
    plan = make_plan(cfg)
    single = make_plan(replace(cfg, pretrain_seeds=[]))
    ps = plan.pretrains()
    assert [p.seed for p in ps] == [0, 1] and ps[0].run_id == single.pretrain().run_id
    pt = [r for r in plan.runs if r.arm == "P-T"]
    rit = [r for r in plan.runs if r.arm == "RI-T"]
    assert {r.parent for r in pt} == {p.run_id for p in ps}
    assert len(pt) == 2 * len([r for r in single.runs if r.arm == "P-T"])
    assert sorted(r.run_id for r in rit) == sorted(r.run_id for r in single.runs if r.arm == "RI-T")
    # the runs under the primary P keep the ids of the study with that one P (the P seed is display, not hashed)
    assert {r.run_id for r in pt if r.parent == ps[0].run_id} == {r.run_id for r in single.runs if r.arm == "P-T"}
    assert all(r.label.endswith(f"-P{r.pretrain_seed}") for r in pt)
    assert len({r.label for r in plan.runs}) == len(plan.runs)
    # every run comes after its parent
    seen = set()
    for r in plan.runs:
        assert not r.parent or r.parent in seen
        seen.add(r.run_id)


def test_a_view_per_p_holds_that_p_its_p_t_and_every_ri_t(tmp_path, folders):
    plan = make_plan(_config(tmp_path, folders))
    for p in plan.pretrains():
        view = plan.for_pretrain(p.seed)
        assert view.pretrains() == [p] and view.pretrain() == p and view.config.pretrain_seed == p.seed
        assert all(r.parent == p.run_id for r in view.runs if r.arm == "P-T")
        assert [r for r in view.runs if r.arm == "RI-T"] == [r for r in plan.runs if r.arm == "RI-T"]
    assert plan.for_pretrain() == plan.for_pretrain(0)
    with pytest.raises(ValueError, match="seed 7"):
        plan.for_pretrain(7)
    one = make_plan(replace(plan.config, pretrain_seeds=[]))
    assert one.for_pretrain() is one


def test_each_p_chooses_its_own_fine_tuning_rate(tmp_path, folders):
    plan = make_plan(_config(tmp_path, folders, grid=True))
    keys = sorted(s.key for s in plan.selections if s.arm == "P-T")
    # and each P's basin checkpoint its own (basin.lr = "own")
    assert keys == ["P-T/tgt/b16/P0", "P-T/tgt/b16/P0/from1", "P-T/tgt/b16/P1", "P-T/tgt/b16/P1/from1"]
    assert len([s for s in plan.selections if s.arm == "RI-T"]) == 1
    for s in plan.selections:
        if s.arm == "P-T":
            assert {c.parent for c in s.candidates} == {plan.pretrains()[s.pretrain_seed].run_id}


@pytest.mark.parametrize("line, match", [("pretrain_seeds = [1, 1]", "pretrain_seeds: expected distinct"),
                                         ("pretrain_seed = 3\npretrain_seeds = [0, 1]", "one of them")])
def test_bad_pretrain_seeds_are_refused(tmp_path, folders, line, match):
    with pytest.raises(ConfigError, match=match):
        make_plan(_config(tmp_path, folders, pretrain=line))


def test_run_analyze_report_with_two_pretrained_models(tmp_path, folders, capsys):
    cfg = _config(tmp_path, folders)
    res = tmp_path / "r"
    toml = tmp_path / "study.toml"
    assert main(["run", str(toml), "--results", str(res), "--jobs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "P-T from the pre-trained model of seed 0" in out and "P-T from the pre-trained model of seed 1" in out
    assert main(["analyze", str(res), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "under P of seed 1" in out and "under each pre-trained model (P of seed 0, 1)" in out
    d = json.loads((res / "analyses" / "claims.json").read_text())
    plan = make_plan(cfg)
    assert [x["seed"] for x in d["pretrained"]] == [0, 1]
    assert [x["run"] for x in d["pretrained"]] == [p.run_id for p in plan.pretrains()]
    assert d["pretrained"][0]["verdicts"] == d["verdicts"]
    for x, p in zip(d["pretrained"], plan.pretrains(), strict=True):
        assert all(p.run_id in v["conditional_on"] for v in x["verdicts"])  # each verdict names its P
    # each P's verdicts read that P's P-T runs: the accuracy gain equals one computed from the runs' own metrics
    from transferscope.store import Store

    store = Store(res)

    def acc(r):
        return store.read_json(r.run_id, "metrics.json")["test_acc"]

    ri = [acc(r) for r in plan.runs if r.arm == "RI-T" and r.block_size == 16]
    gains = []
    for x, p in zip(d["pretrained"], plan.pretrains(), strict=True):
        pt = [acc(r) for r in plan.runs if r.arm == "P-T" and r.parent == p.run_id and r.block_size == 16
              and r.parent_checkpoint < 0]
        effect = next(e for v in x["verdicts"] for t in v["targets"] for e in t["effects"]
                      if e["name"] == "P-T minus RI-T test accuracy")
        assert effect["value"] == pytest.approx(sum(pt) / len(pt) - sum(ri) / len(ri))
        gains.append(effect["value"])
    assert gains[0] != gains[1]
    assert len(d["across_pretrained"]) == 14 and all(set(a["outcomes"]) == {"0", "1"} for a in d["across_pretrained"])
    assert (res / "analyses" / "index-P1.json").is_file()
    assert main(["report", str(res)]) == 0
    html = (res / "report" / "index.html").read_text()
    assert "under P of seed 1" in html and "each claim under every pre-trained model" in html
