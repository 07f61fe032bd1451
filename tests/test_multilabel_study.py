"""A whole study on the built-in multi-label target (fashion-multi): run, analyze, claims and report read the mean
AUC everywhere the single-label code reads accuracy, and each analysis records that it worked on multi-label data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytestmark = pytest.mark.slow

STUDY = """
name = "ml"
seeds = [0, 1, 2]
block_sizes = [16, 4]

[data]
image_size = 16
cache_dir = "{cache}"

[model]
blocks = [1, 1]
width = 8

[source]
name = "fashion-mnist"
n_per_class = 30
n_val_per_class = 5
n_test_per_class = 10

[[targets]]
name = "fashion-multi"
n_per_class = 12
n_val_per_class = 4
n_test_per_class = 16

[pretrain]
epochs = 2
speed_epochs = 1
batch_size = 32
checkpoint_epochs = [1]

[basin]
checkpoint_epochs = [1]

[finetune]
epochs = 3
speed_epochs = 1
batch_size = 16
lr = 0.05

[scratch]
epochs = 3
speed_epochs = 1
batch_size = 16
lr = 0.05

[analysis]
barrier_points = 3
criticality_examples = 20
criticality_alphas = [0.0, 1.0]
flatness_examples = 20
flatness_iters = 3
stability_ks = [1.0]
stability_examples = 20
principal_examples = 20
scores_source_examples = 30
"""


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    from transferscope.api import analyze_study, run_study

    tmp = tmp_path_factory.mktemp("ml")
    (tmp / "study.toml").write_text(STUDY.format(cache=tmp / "cache"))
    run_study(tmp / "study.toml", tmp / "res", show_progress=False)
    return tmp / "res", analyze_study(tmp / "res", show_progress=False)


def _result(res, name: str) -> dict:
    index = json.loads((res / "analyses" / "index.json").read_text())["results"]
    return json.loads((res / "analyses" / index[f"{name}/fashion-multi"]).read_text())["result"]


def test_the_runs_are_judged_by_their_mean_auc(analysed):
    from transferscope.metrics import mean_auc
    from transferscope.store import Store

    res, _ = analysed
    store = Store(res)
    for d in sorted((res / "runs").iterdir()):
        if not d.name.startswith(("P-T-", "RI-T-")):
            continue
        m = store.read_json(d.name, "metrics.json")
        z = store.read_npz(d.name)
        assert m["metric"] == "auc" and z["test_labels"].shape[1] == 5
        assert m["test_auc"] == pytest.approx(mean_auc(z["test_logits"], z["test_labels"]), abs=1e-9)


def test_every_analysis_worked_on_the_labels_decisions(analysed):
    res, _ = analysed
    mistakes = _result(res, "mistakes")
    row = mistakes["pairs"][0]["result"]
    assert row["unit"] == "example-label" and row["threshold"] == 0.5
    # 16 test canvases per label x 5 labels, each with 5 decisions, every one known in fashion-multi
    assert row["n"] == 80 * 5 and row["n_examples"] == 80 and row["n_labels"] == 5
    assert row["common_fraction"] == pytest.approx(row["common"] / row["n"])
    barrier = _result(res, "barrier")
    assert {r["result"]["error_metric"] for r in barrier["pairs"]} == {"auc"}
    scores = _result(res, "scores")["blocks"]
    for cell in scores.values():
        assert math.isnan(float(cell["leep"])) and math.isnan(float(cell["h_score"]))
        assert "multi-label" in json.dumps(cell["not_applicable"]) and math.isfinite(cell["logme"])
        assert len(cell["logme_per_label"]) == 5


def test_the_claims_are_stated_in_mean_auc(analysed):
    _, analysis = analysed
    by_id = {v.claim: v for v in analysis.primary}
    n1 = [e for t in by_id["N1"].targets for e in t.effects if e.target == "fashion-multi"]
    assert n1 and n1[0].unit == "test mean AUC" and "mean AUC" in n1[0].name
    n7 = [e for t in by_id["N7"].targets for e in t.effects if e.target == "fashion-multi"]
    assert n7 and {e.unit for e in n7} == {"1 - test mean AUC"}
    n4 = [e for t in by_id["N4"].targets for e in t.effects if e.target == "fashion-multi"]
    assert n4 and n4[0].unit == "fraction of (test example, label) decisions"
    # the effect is the mean AUC contrast of the runs themselves: P-T minus RI-T over seeds at the full block
    from transferscope.store import Store

    res, _ = analysed
    store = Store(res)
    auc = {"P-T": [], "RI-T": []}
    for d in (res / "runs").iterdir():
        arm = d.name.split("-fashion-multi-")[0]
        if arm in auc and "-b16-" in d.name and "-from" not in d.name:  # not the checkpoint sweep's runs
            auc[arm].append(store.read_json(d.name, "metrics.json")["test_auc"])
    assert len(auc["P-T"]) == len(auc["RI-T"]) == 3
    assert n1[0].value == pytest.approx(np.mean(auc["P-T"]) - np.mean(auc["RI-T"]), abs=1e-9)


def test_the_report_says_mean_auc(analysed, tmp_path):
    from transferscope.api import render

    res, _ = analysed
    page = render(res, tmp_path / "rep").read_text()
    assert "test mean AUC" in page and "AUC per label" in page
    assert "could not be drawn" not in page  # every section drew on multi-label data
    assert "<th>test mean AUC</th>" in page and "P-T test mean AUC (mean over seeds) minus RI-T" in page  # the sweep
    assert "per (test example, label) decision" in page and "at least 0.5" in page  # the mistakes explained
    assert "LEEP and H-score assume one label per image and are not applicable" in page
    # the sample and mistake images' captions name the labels present, "+"-joined (the image files hold them; the
    # captions are drawn by the report from the analyses' images file)
    from transferscope.report.page import label_caption as _label_caption

    names = ["T-shirt/top", "Trouser", "Dress", "Sandal", "Bag"]
    assert _label_caption(np.array([0, 1, np.nan, 1, 0], np.float32), names) == "Trouser+Sandal"
    assert _label_caption(np.zeros(5, np.float32), names) == "none" and _label_caption(np.int64(2), names) == "Dress"
    for label in ("T-shirt/top", "Trouser", "Dress", "Sandal", "Bag"):
        assert label in page


def test_a_multilabel_source_pretrains_p_and_its_leep_is_not_applicable(tmp_path):
    """P pre-trained on the multi-label domain (a sigmoid per label), a single-label target: P is judged by its mean
    AUC, the target's runs by accuracy, and LEEP (which needs P's outputs to be a distribution over one label) is
    not applicable; the feature-based scores are computed."""
    from transferscope.api import analyze_study, run_study
    from transferscope.store import Store

    study = STUDY.format(cache=tmp_path / "cache").replace('name = "ml"', 'name = "mlsrc"')
    study = study.replace('[source]\nname = "fashion-mnist"\nn_per_class = 30',
                          '[source]\nname = "fashion-multi"\nn_per_class = 12')
    study = study.replace('[[targets]]\nname = "fashion-multi"\nn_per_class = 12\nn_val_per_class = 4\n'
                          'n_test_per_class = 16', '[[targets]]\nname = "mnist-digits"\nn_per_class = 12\n'
                          'n_val_per_class = 4\nn_test_per_class = 10')
    assert 'name = "fashion-multi"' in study and 'name = "mnist-digits"' in study
    (tmp_path / "study.toml").write_text(study)
    res = tmp_path / "res"
    run_study(tmp_path / "study.toml", res, show_progress=False)
    analyze_study(res, show_progress=False)
    store = Store(res)
    runs = sorted(d.name for d in (res / "runs").iterdir() if not d.name.startswith("."))
    p = next(r for r in runs if r.startswith("P-fashion-multi-"))
    assert store.read_json(p, "metrics.json")["metric"] == "auc"
    assert all(store.read_json(r, "metrics.json")["metric"] == "acc" for r in runs if r.startswith(("P-T-", "RI-T-")))
    index = json.loads((res / "analyses" / "index.json").read_text())["results"]
    scores = json.loads((res / "analyses" / index["scores/mnist-digits"]).read_text())["result"]["blocks"]
    for cell in scores.values():
        assert math.isnan(float(cell["leep"])) and "source is multi-label" in cell["not_applicable"]["leep"]
        assert math.isfinite(float(cell["logme"])) and math.isfinite(float(cell["h_score"]))
