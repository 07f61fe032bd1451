"""transferscope export table: the runs table equals each run's run.json and metrics.json, an analysis table equals
its record's values, and a folder without analyses still exports its runs."""

import json
import math

import pandas as pd
import pytest

from transferscope.cli import main
from transferscope.export import ANALYSIS_COLUMNS, RUN_COLUMNS

from .conftest import make_imagefolder, tiny_study_toml


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    src = make_imagefolder(root / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(root / "tgt", n_classes=3, per_class=24, seed=2)
    text = tiny_study_toml(src, tgt)  # two seeds: the pair analyses (CKA) need two runs of each arm
    text = text.replace("[data]\n", f'[data]\ncache_dir = "{root / "cache"}"\n')
    (root / "s.toml").write_text(text)
    res = root / "res"
    assert main(["run", str(root / "s.toml"), "--results", str(res), "--jobs", "1", "--no-progress"]) == 0
    return res


def _same(a, b) -> bool:
    if isinstance(b, float) or isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) if (a != a or b != b) else float(a) == float(b)
    return a == b


def test_runs_table_without_analyses(study, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["export", "table", str(study), "--out", str(out)]) == 0
    assert "no analyses" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["runs.csv"]
    for fmt in ("csv", "parquet"):
        if fmt == "parquet":
            assert main(["export", "table", str(study), "--out", str(out), "--format", "parquet"]) == 0
        df = pd.read_csv(out / "runs.csv") if fmt == "csv" else pd.read_parquet(out / "runs.parquet")
        runs = sorted(p.name for p in (study / "runs").iterdir())
        assert sorted(df["run_id"]) == runs
        for rid in runs:
            row = df[df["run_id"] == rid].iloc[0]
            info = json.loads((study / "runs" / rid / "run.json").read_text())
            metrics = json.loads((study / "runs" / rid / "metrics.json").read_text())
            spec = info["spec"]
            assert row["status"] == "done" and row["arm"] == info["arm"] and row["seed"] == info["seed"]
            assert row["block_size"] == spec["block_size"] and row["lr"] == spec["train"]["lr"]
            assert row["epochs"] == spec["train"]["epochs"] and row["pretrain_seed"] == spec["pretrain_seed"]
            assert row["domain"] == (spec["domain"]["label"] or spec["domain"]["name"])
            assert _same(row["run_seconds"], info["seconds"])
            for k, v in metrics.items():
                assert _same(row[k], v), (rid, k)


def test_analysis_tables_equal_the_records(study, tmp_path):
    assert main(["analyze", str(study), "--no-progress"]) == 0
    out = tmp_path / "t"
    assert main(["export", "table", str(study), "--out", str(out), "--format", "parquet"]) == 0
    index = json.loads((study / "analyses" / "index.json").read_text())["results"]
    names = {n.split("/")[0] for n in index}
    assert {p.stem for p in out.iterdir()} == names | {"runs", "claims"}  # the verdicts, one row per effect
    # CKA: one row per pair x layer x field, each the stored number
    cka = pd.read_parquet(out / "cka.parquet")
    assert list(cka.columns) == list(ANALYSIS_COLUMNS)
    stored = json.loads((study / "analyses" / index["cka/tgt"]).read_text())["result"]["pairs"]
    full = cka[cka["field"] == "full"]
    assert len(full) == sum(len(p["result"]["full"]) for p in stored)
    for p in stored:
        rows = full[(full["group"] == p["kind"]) & (full["run_a"] == p["runs"][0]) & (full["run_b"] == p["runs"][1])]
        assert list(rows["at_i"]) == p["result"]["layers"]
        assert [float(v) for v in rows["value"]] == pytest.approx(p["result"]["full"], rel=0, abs=0)
    # transfer: the gain of every target and block size
    tr = pd.read_csv(out / "transfer.csv") if (out / "transfer.csv").exists() else pd.read_parquet(out / "transfer.parquet")
    rows = json.loads((study / "analyses" / index["transfer/all"]).read_text())["result"]["rows"]
    gains = tr[tr["field"] == "gain"]
    assert {(r["target"], r["block_size"], r["gain"]) for r in rows} == \
        {(t, int(b), g) for t, b, g in zip(gains["target"], gains["block_size"], gains["value"], strict=True)}


def test_parquet_without_pyarrow_is_one_line(study, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main(["export", "table", str(study), "--out", str(tmp_path / "t"), "--format", "parquet"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'transferscope[tables]'" in err and len(err.strip().splitlines()) == 1


def test_runs_table_reads_each_run_in_its_metric(study, tmp_path):
    """A multi-label run's figures under their own keys, its per-label test AUC one column per label, named; a
    single-label run says ``acc`` even when stored before metrics.json named its metric."""
    import shutil

    from transferscope.store import hash_artefacts

    res = tmp_path / "res"
    shutil.copytree(study, res)
    runs = sorted(p.name for p in (res / "runs").iterdir() if not p.name.startswith("P-"))
    ml, old = res / "runs" / runs[0], res / "runs" / runs[1]

    def rewrite(d, metrics, **info):  # metrics.json replaced, and its recorded hash with it
        (d / "metrics.json").write_text(json.dumps(metrics))
        i = json.loads((d / "run.json").read_text())
        (d / "run.json").write_text(json.dumps({**i, **info, "artefacts": hash_artefacts(d)}))

    rewrite(ml, {"metric": "auc", "test_auc": 0.8, "val_auc": 0.75, "test_loss": 0.4,
                 "test_auc_per_label": [0.9, 0.7, None], "test_auc_labels_used": 2, "test_auc_excluded": ["never"],
                 "speed_mean_acc_k": 0.6}, classes=["rows", "columns", "never"])
    m = json.loads((old / "metrics.json").read_text())
    m.pop("metric", None)
    rewrite(old, m)
    out = tmp_path / "t"
    assert main(["export", "table", str(res), "--out", str(out)]) == 0
    df = pd.read_csv(out / "runs.csv").set_index("run_id")
    assert list(df.columns[: len(RUN_COLUMNS) - 1]) == list(RUN_COLUMNS[1:])  # run_id is the index; metric among them
    row = df.loc[runs[0]]
    assert row["metric"] == "auc" and row["test_auc"] == 0.8 and row["val_auc"] == 0.75
    assert (row["test_auc[rows]"], row["test_auc[columns]"]) == (0.9, 0.7) and math.isnan(row["test_auc[never]"])
    assert row["test_auc_excluded"] == "never" and row["test_auc_labels_used"] == 2 and math.isnan(row["test_acc"])
    assert (df.drop(index=runs[0])["metric"] == "acc").all()
    assert df.loc[runs[1], "test_acc"] == m["test_acc"] and math.isnan(df.loc[runs[1], "test_auc"])
