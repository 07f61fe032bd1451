"""transferscope run --tensorboard: each run's event file holds its history.json curves, step by step, its learning
rate at every step, and its hyperparameters and final test figure for TensorBoard's hparams dashboard."""

import json
import math
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hp_meta

from transferscope.cli import main
from transferscope.tblog import ENV

from .conftest import tiny_study_toml

HPARAMS = ["arm", "target", "block_size", "seed", "lr", "pretrain_run", "pretrain_checkpoint"]


def read_hparams(acc: EventAccumulator) -> tuple[dict, list[str], list[str], int | None]:
    """What the hparams plugin reads from a run: its hyperparameters (name -> value), the experiment's hyperparameter
    names and metric tags, and the session's end status (None when it has not ended)."""
    content = acc.PluginTagToContent(hp_meta.PLUGIN_NAME)
    ssi = hp_meta.parse_session_start_info_plugin_data(content[hp_meta.SESSION_START_INFO_TAG])
    exp = hp_meta.parse_experiment_plugin_data(content[hp_meta.EXPERIMENT_TAG])
    end = content.get(hp_meta.SESSION_END_INFO_TAG)
    values = {k: getattr(v, v.WhichOneof("kind")) for k, v in ssi.hparams.items()}
    return (values, [h.name for h in exp.hparam_infos], [m.name.tag for m in exp.metric_infos],
            None if end is None else hp_meta.parse_session_end_info_plugin_data(end).status)


def schedule(train: dict, spe: int) -> list[float]:
    """The learning rate after each step 0..epochs x spe of a run's [train] table, computed here: linear warm-up, then
    constant or cosine to 0."""
    total, warmup = train["epochs"] * spe, round(train["warmup_epochs"] * spe)
    out = []
    for s in range(total + 1):
        w = min(1.0, (s + 1) / warmup) if warmup else 1.0
        out.append(train["lr"] * (w * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
                                  if train["schedule"] == "cosine" else w))
    return out


def test_tensorboard_logs_equal_each_runs_history(tmp_path, folders, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    text = tiny_study_toml(*folders).replace("seeds = [0, 1]", "seeds = [0]").replace("block_sizes = [16, 4]",
                                                                                       "block_sizes = [16]")
    (tmp_path / "s.toml").write_text(text)
    res = tmp_path / "res"
    assert main(["run", str(tmp_path / "s.toml"), "--results", str(res), "--jobs", "2", "--no-progress",
                 "--tensorboard"]) == 0
    assert ENV not in os.environ  # the flag does not outlive the command
    runs = sorted(p.name for p in (res / "runs").iterdir())
    assert sorted(p.name for p in (res / "tensorboard").iterdir()) == runs and len(runs) >= 4
    starts = set()
    for rid in runs:
        h = json.loads((res / "runs" / rid / "history.json").read_text())
        spec = json.loads((res / "runs" / rid / "run.json").read_text())["spec"]
        metrics = json.loads((res / "runs" / rid / "metrics.json").read_text())
        spe = h["steps_per_epoch"]
        # one event file in the run's own folder: the hparams are not written into a sub-folder of their own
        files = list((res / "tensorboard" / rid).iterdir())
        assert len(files) == 1 and files[0].is_file() and files[0].name.startswith("events.out.tfevents"), files
        acc = EventAccumulator(str(res / "tensorboard" / rid))
        acc.Reload()
        got = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
        steps, accs = h["step_loss"], h["step_acc"]

        def means(v, spe=spe):  # the mean of each epoch's per-step values, computed here from history.json
            return [((e + 1) * spe, float(np.mean(v[e * spe:(e + 1) * spe]))) for e in range(len(v) // spe)]

        want = {"loss/train_step": list(enumerate(steps, 1)), "accuracy/train_step": list(enumerate(accs, 1)),
                "loss/train": means(steps), "accuracy/train": means(accs),
                "accuracy/val": [(e * spe, v) for e, v in zip(h["epoch"], h["val_acc"], strict=True)],
                "loss/val": [(e * spe, v) for e, v in zip(h["epoch"], h["val_loss"], strict=True)],
                "accuracy/test": [(e * spe, v) for e, v in zip(h["test_epoch"], h["test_acc"], strict=True)],
                "loss/test": [(e * spe, v) for e, v in zip(h["test_epoch"], h["test_loss"], strict=True)],
                "hparams/test_metric": [(len(steps), metrics["test_acc"])]}
        assert len(want["loss/train"]) == len(h["epoch"]) - 1 >= 1
        assert set(want) | {"lr"} <= set(got), (rid, sorted(got))
        assert not any(t.startswith("auc/") for t in got)  # single-label targets have no AUC curve
        for tag, points in want.items():
            assert [s for s, _ in got[tag]] == [s for s, _ in points], (rid, tag)
            # event files hold float32
            assert [v for _, v in got[tag]] == [float(np.float32(v)) for _, v in points], (rid, tag)
        # the learning rate after every optimiser step (the schedule is per step), from step 0 to the last; at the
        # evaluated epochs' ends it is history.json's
        lr = dict(got["lr"])
        assert list(lr) == list(range(len(steps) + 1)) and len(steps) == spec["train"]["epochs"] * spe
        assert [lr[e * spe] for e in h["epoch"]] == [float(np.float32(v)) for v in h["lr"]]
        assert list(lr.values()) == pytest.approx(schedule(spec["train"], spe), rel=1e-6)
        assert len(set(lr.values())) > spe  # the cosine schedule moves at every step, not once an epoch
        # the hparams dashboard: the run's hyperparameters, its final test figure the metric, the session ended
        values, names, metric_tags, status = read_hparams(acc)
        ckpt = spec["parent_checkpoint"]
        assert values == {"arm": spec["arm"], "target": spec["domain"]["label"] or spec["domain"]["name"],
                          "block_size": spec["block_size"], "seed": spec["seed"], "lr": spec["train"]["lr"],
                          "pretrain_run": spec["parent"] or "none",
                          "pretrain_checkpoint": "none" if not spec["parent"] else "final" if ckpt < 0 else f"epoch {ckpt:g}"}
        assert names == HPARAMS and metric_tags == ["hparams/test_metric"] and status == api_pb2.STATUS_SUCCESS
        starts.add((values["arm"], values["pretrain_checkpoint"]))
        if values["pretrain_run"] != "none":
            assert values["pretrain_run"] in runs
    assert starts == {("P", "none"), ("P-T", "final"), ("P-T", "epoch 1"), ("RI-T", "none")}


def test_each_epoch_is_logged_as_it_ends(tmp_path):
    """The trainer's progress figures of every epoch reach the event file at once (not only when the run ends),
    under the tags of their figure, for a single-label and a multi-label target alike."""
    from transferscope.config import DataConfig, DomainConfig, ModelConfig, TrainConfig
    from transferscope.data import load_domain
    from transferscope.models import create_model
    from transferscope.tblog import RunLog
    from transferscope.train import train

    from .conftest import make_imagefolder
    from .test_train_multilabel import multilabel_domain

    root = make_imagefolder(tmp_path / "d", n_classes=3, per_class=20, size=16)
    single = load_domain(DomainConfig("imagefolder", path=str(root), n_val_per_class=4, n_test_per_class=4),
                         DataConfig(image_size=16, cache_dir=str(tmp_path / "c")))
    for data, word in ((single, "accuracy"), (multilabel_domain(), "auc")):
        m = create_model(ModelConfig(blocks=[1, 1], width=4), data.image_shape[0], data.num_classes, seed=0)
        cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, speed_epochs=1, test_every_epoch=True)
        log = RunLog(tmp_path / "res", f"run-{word}", -(-len(data.train) // 16))
        seen = []

        def progress(epoch, figs, log=log, seen=seen):
            log.epoch(epoch, figs)
            seen.append((epoch, dict(figs)))

        r = train(m, data, cfg, seed=0, progress=progress)
        acc = EventAccumulator(str(log.dir))
        acc.Reload()  # before finish: what a live viewer sees
        got = {t: {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}
        h, spe = r.history, r.steps_per_epoch
        metric = "auc" if word == "auc" else "acc"
        assert [e for e, _ in seen] == [0, 1, 2]
        for e, figs in seen:
            assert figs["val_loss"] == h["val_loss"][e] and figs[f"val_{metric}"] == h[f"val_{metric}"][e]
            assert figs[f"test_{metric}"] == h[f"test_{metric}"][e] and figs["lr"] == h["lr"][e]
            assert got[f"{word}/val"][e * spe] == np.float32(h[f"val_{metric}"][e])
            assert got["loss/test"][e * spe] == np.float32(h["test_loss"][e])
            assert got["lr"][e * spe] == np.float32(h["lr"][e])
            if e:
                assert figs["train_loss"] == float(np.mean(h["step_loss"][(e - 1) * spe:e * spe]))
                assert got["loss/train"][e * spe] == np.float32(figs["train_loss"])
            else:
                assert "train_loss" not in figs
            if metric == "acc" and e:
                assert figs["train_acc"] == float(np.mean(h["step_acc"][(e - 1) * spe:e * spe]))
            if metric == "auc":
                assert figs["train_auc"] == h["train_auc"][e]
                assert got["auc/train"][e * spe] == np.float32(h["train_auc"][e])
        log.finish(h)
        acc = EventAccumulator(str(log.dir))
        acc.Reload()
        after = {t: [e.step for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
        assert after["loss/train_step"] == list(range(1, 2 * spe + 1))
        assert all(len(v) == len(set(v)) for v in after.values())  # nothing written twice
        if metric == "auc":
            assert "accuracy/train_step" not in after and after["auc/train"] == [0, spe, 2 * spe]


def test_hparams_are_written_when_the_run_starts_and_a_failed_run_ends_failed(tmp_path):
    """A running run is in the hparams dashboard already (its hyperparameters at once, no metric yet; the learning
    rate of each epoch's steps as the epoch ends); one that stops without finishing ends with the status failure."""
    from transferscope.tblog import RunLog, hparams

    hp = hparams("RI-T", "tgt", 4, 1, 0.05)
    assert hp == {"arm": "RI-T", "target": "tgt", "block_size": 4, "seed": 1, "lr": 0.05, "pretrain_run": "none",
                  "pretrain_checkpoint": "none"}
    lrs = [0.05 * (1 - s / 6) for s in range(7)]  # 2 epochs of 3 steps
    log = RunLog(tmp_path, "r", 3, hparams=hp, lrs=lrs)
    log.epoch(0, {"val_loss": 1.0, "lr": lrs[0]})
    log.epoch(1, {"val_loss": 0.9, "lr": lrs[3]})
    acc = EventAccumulator(str(log.dir))
    acc.Reload()
    values, names, metrics, status = read_hparams(acc)
    assert values == hp and names == HPARAMS and metrics == ["hparams/test_metric"] and status is None
    assert [(e.step, e.value) for e in acc.Scalars("lr")] == [(s, float(np.float32(v))) for s, v in enumerate(lrs[:4])]
    assert "hparams/test_metric" not in acc.Tags()["scalars"]
    log.close()  # as the worker does when the run fails
    acc = EventAccumulator(str(log.dir))
    acc.Reload()
    assert read_hparams(acc)[3] == api_pb2.STATUS_FAILURE
    assert hparams("P-T", "tgt", 16, 0, 0.02, "P-src-b16-s0-abc", 1.0)["pretrain_checkpoint"] == "epoch 1"
    assert hparams("P-T", "tgt", 16, 0, 0.02, "P-src-b16-s0-abc", -1.0)["pretrain_run"] == "P-src-b16-s0-abc"


def test_without_the_flag_no_logs_are_written(tmp_path, folders, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    text = tiny_study_toml(*folders).replace("seeds = [0, 1]", "seeds = [0]").replace("block_sizes = [16, 4]",
                                                                                       "block_sizes = [16]")
    text = text.replace("[basin]\ncheckpoint_epochs = [1]\n", "")
    (tmp_path / "s.toml").write_text(text)
    assert main(["run", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r"), "--jobs", "1",
                 "--no-progress"]) == 0
    assert not (tmp_path / "r" / "tensorboard").exists()
