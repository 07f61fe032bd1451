"""The runs table and ``status --runs`` tell the runs the verdicts read from the learning-rate candidates that lost:
a ``role`` column (pretrain, chosen, candidate, basin, not in the study) and each run's own learning rate, so that a
mean over the chosen rows is the mean the tool reports."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import pandas as pd
import pytest

from transferscope.cli import main

from .conftest import make_imagefolder, tiny_study_toml

GRID = (0.005, 0.05)


@pytest.fixture(scope="module")
def lr_study(tmp_path_factory):
    """One target at the unshuffled block size, two seeds, P-T's rate chosen from two candidates, RI-T's fixed,
    and a basin run per seed from P's epoch-1 checkpoint, at a rate chosen from the same two candidates fine-tuned
    from that checkpoint (basin.lr = "own")."""
    root = tmp_path_factory.mktemp("roles")
    src = make_imagefolder(root / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(root / "tgt", n_classes=3, per_class=24, seed=2)
    text = (tiny_study_toml(src, tgt).replace("block_sizes = [16, 4]", "block_sizes = [16]")
            .replace("lr = 0.02", f"lr_grid = [{GRID[0]}, {GRID[1]}]")
            .replace("[data]\n", f'[data]\ncache_dir = "{root / "cache"}"\n'))
    (root / "s.toml").write_text(text)
    res = root / "res"
    assert main(["run", str(root / "s.toml"), "--results", str(res), "--jobs", "1", "--no-progress"]) == 0
    return res


def _plan_store(res):
    from transferscope.api import study_folder
    from transferscope.study import make_plan

    store, cfg = study_folder(res)
    return make_plan(cfg, check=False), store


def test_the_chosen_rows_average_to_what_the_tool_reports(lr_study, tmp_path):
    from transferscope.study import results_table
    from transferscope.study.tuning import choices

    out = tmp_path / "t"
    assert main(["export", "table", str(lr_study), "--out", str(out)]) == 0
    df = pd.read_csv(out / "runs.csv")
    assert list(df.columns[:3]) == ["run_id", "status", "role"]
    # one losing candidate per choice: the final P-T's and the basin checkpoint's
    assert df["role"].value_counts().to_dict() == {"chosen": 4, "basin": 2, "pretrain": 1, "candidate": 2}
    plan, store = _plan_store(lr_study)
    c, cb = sorted(choices(plan, store), key=lambda ch: ch.selection.start)
    assert c.state == cb.state == "chosen" and c.selection.arm == cb.selection.arm == "P-T"
    assert (c.selection.start, cb.selection.start) == (-1.0, 1.0)
    pt = df[(df["arm"] == "P-T") & (df["target"] == "tgt") & (df["block_size"] == 16)]
    chosen = pt[pt["role"] == "chosen"]
    (row,) = [r for r in results_table(plan, store) if (r["target"], r["block_size"]) == ("tgt", 16)]
    assert len(chosen) == row["P-T"].n == 2
    assert chosen["test_acc"].mean() == pytest.approx(row["P-T"].acc_mean, rel=0, abs=1e-12)
    # over every P-T row there (the losing candidate and the basin runs too) the mean is another one
    others = pt[pt["role"] != "chosen"]["test_acc"]
    if not (others == row["P-T"].acc_mean).all():
        assert pt["test_acc"].mean() != pytest.approx(row["P-T"].acc_mean, rel=0, abs=1e-12)
    # each row's own rate: a swap of roles would show here
    cand = pt[pt["role"] == "candidate"]
    assert set(chosen["lr"]) == {c.lr} and set(cand[cand["parent_checkpoint"] != 1]["lr"]) == set(GRID) - {c.lr}
    assert set(cand[cand["parent_checkpoint"] == 1]["lr"]) == set(GRID) - {cb.lr}
    assert set(pt[pt["role"] == "basin"]["lr"]) == {cb.lr} and (pt[pt["role"] == "basin"]["parent_checkpoint"] == 1).all()
    winner = next(x.run_id for x in c.selection.candidates if x.train.lr == c.lr)
    assert df.set_index("run_id").loc[winner, "role"] == "chosen"
    ri = df[df["arm"] == "RI-T"]
    assert (ri["role"] == "chosen").all() and set(ri["lr"]) == {plan.config.scratch.lr}
    assert (df[df["arm"] == "P"]["role"] == "pretrain").all()


def test_runs_outside_the_plan_and_pending_ones_have_their_role_and_rate(lr_study, tmp_path):
    from transferscope.export import run_rows
    from transferscope.study import make_plan
    from transferscope.study.tuning import choices

    res = tmp_path / "res"
    shutil.copytree(lr_study, res)
    plan, store = _plan_store(res)
    c = next(ch for ch in choices(plan, store) if ch.selection.start < 0)  # the final P-T's (not the basin's)
    # a study that no longer has seed 1: its runs are stored, not in the study
    rows = run_rows(store, make_plan(replace(plan.config, seeds=[0]), check=False))
    outside = [r for r in rows if r["role"] == "not in the study"]
    assert sorted((r["arm"], r["seed"]) for r in outside) == [("P-T", 1), ("P-T", 1), ("RI-T", 1)]
    # a chosen run not trained (yet): pending, with the rate it will train at
    pt1 = next(r for r in plan.deferred if r[0].seed == 1 and r[0].parent_checkpoint < 0)[0]
    from transferscope.study.tuning import concrete

    rid = concrete(pt1, c.lr).run_id
    shutil.rmtree(store.run_dir(rid))
    row = next(r for r in run_rows(store, plan) if r["run_id"] == rid)
    assert (row["status"], row["role"], row["arm"], row["lr"], row["seed"]) == ("pending", "chosen", "P-T", c.lr, 1)


def _rewrite(d, **metrics):
    from transferscope.store import hash_artefacts

    m = json.loads((d / "metrics.json").read_text())
    (d / "metrics.json").write_text(json.dumps({**m, **metrics}))
    info = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**info, "artefacts": hash_artefacts(d)}))


def test_status_runs_has_headers_roles_rates_and_names_the_one_se_rule(lr_study, tmp_path, capsys):
    from transferscope.study.tuning import choices

    plan, store = _plan_store(lr_study)
    c = next(ch for ch in choices(plan, store) if ch.selection.start < 0)  # the final P-T's (not the basin's)
    capsys.readouterr()
    assert main(["status", str(lr_study), "--runs"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = next(x for x in lines if "run id" in x)
    for word in ("status", "role", "run id", "target", "block", "seed", "lr", "test figure", "notes"):
        assert word in head, word
    for cand in c.selection.candidates:
        line = next(x for x in lines if cand.run_id in x)
        mark = "chosen*" if cand.train.lr == c.lr else "candidate"
        assert line.split()[:2] == ["done", mark] and f"{cand.train.lr:g}" in line.split(), line
    assert "one-se" not in out  # the rule is 'best': it picked the highest score
    # the one-SE rule picks the smaller rate within one standard error of the best: named, with both rates
    res = tmp_path / "res"
    shutil.copytree(lr_study, res)
    study = json.loads((res / "study.json").read_text())
    (res / "study.json").write_text(json.dumps({**study, "lr_rule": "one-se"}))
    se = math.sqrt(0.75 * 0.25 / 12)  # 3 classes x 4 validation images
    for cand in c.selection.candidates:
        _rewrite(res / "runs" / cand.run_id, val_acc=0.75 if cand.train.lr == GRID[1] else 0.75 - 0.5 * se,
                 train_acc_final=1.0)
    assert main(["status", str(res), "--runs"]) == 0
    out = capsys.readouterr().out
    assert f"one-se: chose {GRID[0]:g}, within one standard error of the best {GRID[1]:g}" in out, out
    small = next(x.run_id for x in c.selection.candidates if x.train.lr == GRID[0])
    assert next(x for x in out.splitlines() if small in x).split()[:2] == ["done", "chosen*"]
