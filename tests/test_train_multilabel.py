"""Multi-label targets in the trainer, the learning-rate choice and the study tables: BCE per label, mean AUC."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from transferscope.config import ModelConfig, TrainConfig
from transferscope.data import DomainData, Split
from transferscope.models import create_model
from transferscope.train import auc_speed, evaluate, speed_subset, train

NAMES = ("rows", "columns", "diagonals", "never")
"""Labels "rows", "columns", "diagonals": channel 0, 1 or 2 of the image holds stripes of that orientation (else
noise). "never": present on a third of the training
and validation images (at random), never on a test image, so its test AUC is undefined."""

MODEL = ModelConfig(blocks=[1, 1], width=4)
CFG = TrainConfig(epochs=4, batch_size=16, lr=0.05, speed_epochs=2)


def _split(n: int, rng: np.random.Generator, offset: int, never: bool, unknown: float) -> Split:
    y = (rng.random((n, 4)) < 0.5).astype(np.float32)
    y[:, 3] = (rng.random(n) < 0.33) if never else 0.0
    yy, xx = np.mgrid[0:16, 0:16]
    stripes = np.stack([(yy // 2) % 2, (xx // 2) % 2, ((xx + yy) // 2) % 2])  # one orientation per channel
    present = stripes * 160 + rng.integers(0, 80, size=(n, 3, 16, 16))
    absent = rng.integers(0, 240, size=(n, 3, 16, 16))
    x = np.where(y[:, :3, None, None] == 1, present, absent).astype(np.uint8)
    if unknown:
        y[rng.random((n, 4)) < unknown] = np.nan  # not known: ignored by the loss and the AUC
    return Split(torch.from_numpy(x), torch.from_numpy(y), np.arange(offset, offset + n))


def multilabel_domain(seed: int = 0) -> DomainData:
    """A tiny hand-built multi-label domain (160 training, 40 validation, 60 test images of 3x16x16)."""
    rng = np.random.default_rng(seed)
    return DomainData("ml", NAMES, _split(160, rng, 0, True, 0.1), _split(40, rng, 160, True, 0.05),
                      _split(60, rng, 200, False, 0.0), 16)


@pytest.fixture(scope="module")
def data():
    return multilabel_domain()


def _run(data, seed=0, cfg=CFG, **kw):
    m = create_model(MODEL, 3, data.num_classes, seed=0)
    return m, train(m, data, cfg, seed=seed, **kw)


@pytest.fixture(scope="module")
def run(data):
    return _run(data)


def _bce(logits: np.ndarray, y: np.ndarray) -> float:
    """The mean over examples of each example's mean BCE-with-logits over its known labels, in float64."""
    x = logits.astype(np.float64)
    each = np.maximum(x, 0) - x * np.nan_to_num(y) + np.log1p(np.exp(-np.abs(x)))
    known = ~np.isnan(y)
    return float((np.where(known, each, 0).sum(1) / np.maximum(known.sum(1), 1)).mean())


def _sklearn_auc(scores: np.ndarray, y: np.ndarray) -> list[float]:
    out = []
    for j in range(y.shape[1]):
        k = ~np.isnan(y[:, j])
        t = y[k, j]
        out.append(roc_auc_score(t, scores[k, j]) if 0 < t.sum() < len(t) else math.nan)
    return out


def test_learns_and_records_auc(data, run):
    m, r = run
    spe = r.steps_per_epoch
    assert r.metrics["metric"] == "auc"
    assert r.metrics["test_auc"] > 0.8, r.metrics  # chance is 0.5; the rule is a channel's texture
    # "never" is random outside test (AUC about 0.5 there) and pulls the mean of the other splits down
    assert r.metrics["val_auc"] > 0.65 and r.metrics["train_auc_final"] > 0.65
    assert "test_acc" not in r.metrics and "val_acc" not in r.metrics and "step_acc" not in r.history
    assert len(r.history["step_loss"]) == 4 * spe and len(r.history["train_auc"]) == 5  # epochs 0..4
    assert r.history["train_auc"][-1] > r.history["train_auc"][0]
    assert r.metrics["test_auc"] == r.history["test_auc"][-1] and r.metrics["val_auc"] == r.history["val_auc"][-1]
    assert r.test_logits.shape == (60, 4) and r.test_labels.shape == (60, 4)
    assert r.test_pred.dtype == bool and np.array_equal(r.test_pred, r.test_logits >= 0)
    assert r.metrics["num_labels"] == 4 and r.metrics["speed_examples"] == 160


def test_bitwise_reproducible_at_a_fixed_seed(data, run):
    m1, r1 = run
    m2, r2 = _run(data, seed=0)
    m3, r3 = _run(data, seed=1)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert r1.history["step_loss"] == r2.history["step_loss"] and r1.history["train_auc"] == r2.history["train_auc"]
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_recorded_loss_is_the_masked_bce_of_the_batch(data):
    """One step of a whole-batch epoch: the recorded loss is the BCE of the initial model's logits on the batch,
    computed here in numpy, unknown labels left out."""
    cfg = TrainConfig(epochs=1, batch_size=len(data.train), lr=0.05, speed_epochs=1)
    m = create_model(MODEL, 3, 4, seed=0)
    ref = create_model(MODEL, 3, 4, seed=0)
    _, r = m, train(m, data, cfg, seed=3)
    from transferscope.models import to_input

    ref.train()
    with torch.no_grad():
        logits = ref(to_input(data.train.x)).numpy()
    y = data.train.y.numpy()
    assert np.isnan(y).any()  # the unknown labels are really there
    assert r.history["step_loss"][0] == pytest.approx(_bce(logits, y), rel=1e-5)
    # the evaluation's loss likewise, on the test split
    loss, _, out = evaluate(m, data.test)
    assert loss == pytest.approx(_bce(out, data.test.y.numpy()), rel=1e-5)


def test_evaluate_auc_is_sklearns_per_label_mean(data, run):
    m, r = run
    for split in (data.val, data.test):
        _, auc, out = evaluate(m, split)
        per = _sklearn_auc(out, split.y.numpy())
        assert auc == pytest.approx(np.nanmean(per), abs=1e-12)
    assert r.metrics["test_auc_per_label"][:3] == pytest.approx(_sklearn_auc(r.test_logits, data.test.y.numpy())[:3])


def test_a_label_without_positives_in_test_is_excluded_and_named(run):
    _, r = run
    assert r.metrics["test_auc_excluded"] == ["never"]
    assert r.metrics["test_auc_labels_used"] == 3
    assert math.isnan(r.metrics["test_auc_per_label"][3])
    assert r.metrics["test_auc"] == pytest.approx(np.mean(r.metrics["test_auc_per_label"][:3]))


def test_speed_figures_by_hand_from_the_per_epoch_auc(data, run):
    m, r = run
    auc, spe = r.history["train_auc"], r.steps_per_epoch
    assert CFG.speed_epochs == 2
    frac = CFG.speed_fraction
    assert r.metrics["speed_mean_acc_k"] == pytest.approx((auc[1] + auc[2]) / 2)  # epochs 1 and 2
    first = next(e for e in range(1, 5) if auc[e] >= frac * auc[4])
    assert r.metrics["speed_steps_to_frac"] == first * spe
    # the curve's last point is the final model on the fixed subset (the whole training split here)
    assert auc[-1] == evaluate(m, data.train)[1] == r.metrics["train_auc_subset_final"]
    # by hand on a made-up curve: 0.6, 0.8, 0.9, 1.0 with fraction 0.85 -> epoch 3 (0.9 >= 0.85), 3 x 7 steps
    s = auc_speed([0.6, 0.8, 0.9, 1.0], 7, k=2, fraction=0.85)
    assert s == {"speed_mean_acc_k": pytest.approx(0.7), "speed_steps_to_frac": 21.0}
    assert math.isnan(auc_speed([0.6, math.nan], 7, 1, 0.9)["speed_steps_to_frac"])
    assert math.isnan(auc_speed([], 7, 1, 0.9)["speed_mean_acc_k"])


def test_the_speed_subset_is_fixed_seeded_and_leaves_the_data_order_alone(data):
    a, b, c = speed_subset(160, 50, 0), speed_subset(160, 50, 0), speed_subset(160, 50, 1)
    assert torch.equal(a, b) and not torch.equal(a, c) and len(a) == 50 and len(set(a.tolist())) == 50
    assert torch.equal(speed_subset(160, 1000, 0), torch.arange(160))
    first_epoch = torch.randperm(160, generator=torch.Generator().manual_seed(0))  # the trainer's order, epoch 1
    assert not torch.equal(a, first_epoch[:50].sort().values)  # no prefix of the data order
    small = TrainConfig(epochs=2, batch_size=16, lr=0.05, speed_epochs=1, speed_examples=50)
    full = TrainConfig(epochs=2, batch_size=16, lr=0.05, speed_epochs=1)
    m1, r1 = _run(data, cfg=small)
    m2, r2 = _run(data, cfg=full)
    # the subset changes what is measured, never what is trained: same steps, same weights
    assert r1.history["step_loss"] == r2.history["step_loss"]
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())
    assert r1.metrics["speed_examples"] == 50 and r1.history["train_auc"] != r2.history["train_auc"]
    sub = speed_subset(160, 50, 0)
    assert r1.history["train_auc"][-1] == evaluate(m1, Split(data.train.x[sub], data.train.y[sub],
                                                             data.train.index[sub.numpy()]))[1]


@pytest.mark.parametrize("precision", ["bf16"])
def test_lower_precision_trains_multilabel(data, precision):
    m, r = _run(data, precision=precision)
    _, r2 = _run(data, precision=precision)
    assert r.history["step_loss"] == r2.history["step_loss"]
    assert r.metrics["test_auc"] > 0.8


def test_progress_reports_the_epochs_figures(data):
    seen = []
    _, r = _run(data, cfg=TrainConfig(epochs=2, batch_size=16, lr=0.05, speed_epochs=1),
                progress=lambda e, f: seen.append((e, f)))
    assert [e for e, _ in seen] == [0, 1, 2]
    assert set(seen[0][1]) == {"train_auc", "val_loss", "val_auc", "lr"}
    assert set(seen[2][1]) == {"train_loss", "train_auc", "val_loss", "val_auc", "test_loss", "test_auc", "lr"}
    assert seen[2][1]["test_auc"] == r.metrics["test_auc"]


# ---------------------------------------------------------------- the learning-rate choice and the tables


def _store_runs(store, runs: dict) -> None:
    from transferscope.store import write_json

    for rid, metrics in runs.items():
        with store.new_run(rid) as d:
            write_json(d, "metrics.json", metrics)
            write_json(d, "run.json", {"run_id": rid, "status": "done"})


def _auc_metrics(val: float, test: float = 0.7, loss: float = 1.0) -> dict:
    return {"metric": "auc", "val_auc": val, "val_loss": loss, "test_auc": test, "test_loss": 0.5,
            "train_auc_final": 0.95, "num_classes": 4, "speed_mean_acc_k": 0.6, "speed_steps_to_frac": 10.0}


def test_tuning_picks_the_best_validation_auc(tmp_path, folders):
    from dataclasses import replace

    from transferscope.store import Store
    from transferscope.study.tuning import choose, format_choices

    from .test_study import _plan

    plan = _plan(tmp_path, folders, overrides=["scratch.lr_grid=[0.01, 0.02, 0.03]"])
    sel = plan.selections[0]
    aucs = {0.01: 0.9, 0.02: 0.6, 0.03: 0.7}
    # a stale val_acc that would point elsewhere: the choice must read the run's own metric
    _store_runs(Store(tmp_path / "a"), {c.run_id: {**_auc_metrics(aucs[c.train.lr]), "val_acc": 1 - aucs[c.train.lr]}
                                        for c in sel.candidates})
    c = choose(sel, Store(tmp_path / "a"))
    assert c.lr == 0.01 and c.metric == "auc" and c.val_acc == aucs
    assert "validation mean AUC" in format_choices([c]) and "accuracy" not in format_choices([c])
    assert choose(replace(sel, rule="one-se"), Store(tmp_path / "a")).lr == 0.01
    # the same runs with the AUCs of 0.01 and 0.03 swapped: the choice swaps
    swapped = {0.01: 0.7, 0.02: 0.6, 0.03: 0.9}
    _store_runs(Store(tmp_path / "b"), {c.run_id: _auc_metrics(swapped[c.train.lr]) for c in sel.candidates})
    assert choose(sel, Store(tmp_path / "b")).lr == 0.03


def test_summary_reads_each_runs_auc(tmp_path, folders):
    from transferscope.store import Store
    from transferscope.study import results_table
    from transferscope.study.summary import flags, format_table

    from .test_study import _plan

    plan = _plan(tmp_path, folders)
    store = Store(tmp_path / "res")
    runs = {}
    for r in plan.runs + plan.tuning:
        if r.arm == "P":
            runs[r.run_id] = {"test_acc": 0.9, "val_acc": 0.9, "num_classes": 3, "speed_mean_acc_k": 0.5,
                              "speed_steps_to_frac": 5.0, "train_acc_final": 1.0}
        else:  # P-T at 0.8 + seed/100, RI-T at 0.6 + seed/100; a stale test_acc that must not be read
            t = (0.8 if r.arm == "P-T" else 0.6) + r.seed / 100
            runs[r.run_id] = {**_auc_metrics(0.7, test=t), "test_acc": 0.1,
                              "train_auc_final": 0.5 if r.arm == "RI-T" else 0.95}
    _store_runs(store, runs)
    rows = results_table(plan, store)
    assert rows and all(row["metric"] == "auc" for row in rows)
    for row in rows:
        assert row["P-T"].acc_mean == pytest.approx(np.mean([0.8 + s.seed / 100 for s in row["P-T"].per_seed]))
        assert [s.test_acc for s in row["RI-T"].per_seed] == pytest.approx([0.6 + s.seed / 100
                                                                             for s in row["RI-T"].per_seed])
        assert row["gain"] == pytest.approx(0.2)
    text = format_table(rows, 2, 0.9)
    assert "P-T AUC" in text and "P-T acc" not in text
    fs = flags(plan, store)
    under = [f for f in fs if f.kind == "underfit"]
    assert under and all(f.arm == "RI-T" and "training mean AUC 0.500" in f.message for f in under)
    assert not [f for f in fs if f.kind == "uninformative-target"]  # 0.8 is over the AUC's bar of 0.75


# ---------------------------------------------------------------- a whole study on a multi-label csv target


def _multilabel_csv(root, n: int = 120, seed: int = 3):
    """A csv domain of grayscale 16x16 PNGs: labels "rows", "columns", "diagonals" each present (stripes of that
    orientation drawn) on about half of the images, independently."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16]
    stripes = [(yy // 2) % 2, (xx // 2) % 2, ((xx + yy) // 2) % 2]
    (root / "img").mkdir(parents=True)
    lines = ["path,rows,columns,diagonals"]
    for i in range(n):
        y = rng.random(3) < 0.5
        a = rng.integers(0, 60, (16, 16)) + sum(60 * s for s, on in zip(stripes, y, strict=True) if on)
        Image.fromarray(a.astype(np.uint8)).save(root / "img" / f"{i:03d}.png")
        lines.append(f"img/{i:03d}.png," + ",".join("1" if v else "0" for v in y))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


@pytest.fixture(scope="module")
def multilabel_study(tmp_path_factory):
    from transferscope.cli import main

    from .conftest import make_imagefolder, tiny_study_toml

    tmp = tmp_path_factory.mktemp("mlstudy")
    src = make_imagefolder(tmp / "src", n_classes=4, per_class=30, seed=1)
    csv = _multilabel_csv(tmp / "tgt")
    text = tiny_study_toml(src, tmp / "tgt").replace('name = "imagefolder"\nlabel = "tgt"',
                                                     'name = "csv"\nlabel = "tgt"')
    text = text.replace(f'path = "{tmp / "tgt"}"', f'path = "{csv}"').replace("n_per_class = 8\n", "")
    text = text.replace("seeds = [0, 1]", "seeds = [0]").replace("[basin]\ncheckpoint_epochs = [1]\n", "")
    text = text.replace("[data]\n", f'[data]\ncache_dir = "{tmp / "cache"}"\n')
    (tmp / "study.toml").write_text(text)
    res = tmp / "res"
    assert main(["run", str(tmp / "study.toml"), "--results", str(res), "--jobs", "1", "--no-progress"]) == 0
    return res


def test_a_multilabel_study_reads_auc_everywhere(multilabel_study, tmp_path):
    import json

    from transferscope.cli import main
    from transferscope.config import load_config
    from transferscope.store import Store
    from transferscope.study import make_plan, results_table
    from transferscope.study.summary import format_table

    res = multilabel_study
    store = Store(res)
    plan = make_plan(load_config(res.parent / "study.toml"))
    targets = [r for r in plan.runs if r.arm != "P"]
    assert targets
    for r in targets:
        m = store.read_json(r.run_id, "metrics.json")
        assert m["metric"] == "auc" and 0 <= m["test_auc"] <= 1 and "test_acc" not in m
        assert len(m["test_auc_per_label"]) == 3 and m["test_auc_labels_used"] + len(m["test_auc_excluded"]) == 3
        logits = store.read_npz(r.run_id)["test_logits"]
        labels = store.read_npz(r.run_id)["test_labels"]
        assert m["test_auc"] == pytest.approx(np.nanmean(_sklearn_auc(logits, labels)), abs=1e-9)
    p = next(r for r in plan.runs if r.arm == "P")
    assert store.read_json(p.run_id, "metrics.json")["metric"] == "acc"  # the source stays single-label
    rows = results_table(plan, store)
    assert rows and all(x["metric"] == "auc" for x in rows)
    assert "P-T AUC" in format_table(rows, 1, 0.9)
    # the report: the metric named, the per-label table, no accuracy where AUC is meant
    out = tmp_path / "rep"
    assert main(["report", str(res), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "Final test mean AUC" in page and "P-T mean AUC" in page and "test AUC per label" in page
    for label in ("rows", "columns", "diagonals"):
        assert f"<td>{label}</td>" in page
    assert "P-T accuracy" not in page and "Final test accuracy" not in page
    # a label made undefined in one run's test split (as a label without positives is): named and counted
    rid = next(r.run_id for r in targets if r.arm == "P-T" and r.block_size == 16)
    d = res / "runs" / rid
    m = json.loads((d / "metrics.json").read_text())
    m.update(test_auc_per_label=[m["test_auc_per_label"][0], m["test_auc_per_label"][1], None],
             test_auc_excluded=["diagonals"], test_auc_labels_used=2)
    from transferscope.store import hash_artefacts

    (d / "metrics.json").write_text(json.dumps(m))
    info = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**info, "artefacts": hash_artefacts(d)}))
    assert main(["report", str(res), "--out", str(tmp_path / "rep2")]) == 0
    page = (tmp_path / "rep2" / "index.html").read_text()
    assert "AUC undefined: no positive/negative example in the test split for 1 of 3 labels (diagonals)" in page


def test_saved_weights_are_contiguous_cpu_copies(tmp_path):
    """The runner writes what the trainer keeps (weights on the model's device, channels_last) as contiguous CPU
    tensors of the same values; the state dict given is left as it was."""
    from safetensors.torch import load_file

    from transferscope.study.artefacts import save_state as _save

    conv = torch.randn(4, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    view = torch.randn(5, 6).t()
    state = {"conv": conv, "view": view, "param": torch.nn.Parameter(torch.randn(3))}
    assert not conv.is_contiguous() and not view.is_contiguous()
    _save(state, tmp_path / "w.safetensors")
    back = load_file(tmp_path / "w.safetensors")
    assert set(back) == set(state)
    for k, v in back.items():
        assert v.device.type == "cpu" and v.is_contiguous() and torch.equal(v, state[k].detach())
    assert not state["conv"].is_contiguous()


@pytest.mark.parametrize("speed_examples", [1000, 50])  # the whole training split, and a drawn subset
def test_no_tensor_is_made_on_a_default_device_multilabel(data, run, speed_examples):
    """As single-label: with the default device set to meta, any tensor made without a device would be a meta
    tensor and the run would fail; the run equals the plain one."""
    cfg = TrainConfig(**{**CFG.__dict__, "speed_examples": speed_examples})
    m_ref, r_ref = _run(data, cfg=cfg) if speed_examples != CFG.speed_examples else run
    m = create_model(MODEL, 3, data.num_classes, seed=0)
    torch.set_default_device("meta")
    try:
        r = train(m, data, cfg, seed=0)
        loss, auc, logits = evaluate(m, data.test)
    finally:
        torch.set_default_device(None)
    assert r.history["step_loss"] == r_ref.history["step_loss"]
    assert r.history["train_auc"] == r_ref.history["train_auc"]
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in m_ref.state_dict().items())
    assert auc == r.metrics["test_auc"] and np.array_equal(logits, r.test_logits)


def test_status_shows_a_multilabel_runs_auc(multilabel_study, capsys):
    from transferscope.cli import main

    assert main(["status", str(multilabel_study), "--runs"]) == 0
    out = capsys.readouterr().out
    assert "test_auc=" in out and "test_acc=" in out  # the targets' runs in mean AUC, the source's P in accuracy


def test_one_se_on_auc_uses_the_recorded_standard_error(tmp_path, folders):
    """one-se on a multi-label target: the smallest rate whose validation mean AUC is within the best one's
    standard error (recorded by its run); outside it, the best; a run without one (older): the best."""
    from dataclasses import replace

    from transferscope.store import Store
    from transferscope.study.tuning import choose

    from .test_study import _plan

    plan = _plan(tmp_path, folders, overrides=["scratch.lr_grid=[0.01, 0.02, 0.03]"])
    sel = replace(plan.selections[0], rule="one-se")
    aucs = {0.01: 0.86, 0.02: 0.80, 0.03: 0.88}
    for name, se, want in (("near", 0.03, 0.01), ("far", 0.01, 0.03), ("none", None, 0.03)):
        store = Store(tmp_path / name)
        _store_runs(store, {c.run_id: {**_auc_metrics(aucs[c.train.lr]),
                                       **({"val_auc_se": se} if se is not None else {})} for c in sel.candidates})
        assert choose(sel, store).lr == want, name
        assert choose(replace(sel, rule="best"), store).lr == 0.03


def test_the_recorded_auc_standard_error_matches_a_bootstrap(run, data):
    """val_auc_se (Hanley-McNeil per label, combined as independent) is close to the bootstrap standard error of
    the mean AUC over the validation images, an estimate made independently of its formula."""
    from transferscope.metrics import mean_auc, mean_auc_se

    rng = np.random.default_rng(0)
    n, labels = 400, 3
    y = (rng.random((n, labels)) < 0.4).astype(np.float32)
    s = y * 1.0 + rng.normal(size=(n, labels))  # AUC about 0.76 per label, labels independent
    boot = []
    for _ in range(400):
        i = rng.integers(0, n, n)
        boot.append(mean_auc(s[i], y[i]))
    assert mean_auc_se(s, y) == pytest.approx(np.std(boot, ddof=1), rel=0.2)
    m = run[1].metrics
    assert 0 < m["val_auc_se"] < 0.2 and math.isfinite(m["val_auc_se"])
