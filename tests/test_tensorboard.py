"""transferscope run --tensorboard: each run's event file holds its history.json curves, step by step."""

import json
import os

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from transferscope.cli import main
from transferscope.tblog import ENV

from .conftest import tiny_study_toml


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
    for rid in runs:
        h = json.loads((res / "runs" / rid / "history.json").read_text())
        spe = h["steps_per_epoch"]
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
                "lr": [(e * spe, v) for e, v in zip(h["epoch"], h["lr"], strict=True)]}
        assert len(want["loss/train"]) == len(h["epoch"]) - 1 >= 1
        assert set(want) <= set(got), (rid, sorted(got))
        assert not any(t.startswith("auc/") for t in got)  # single-label targets have no AUC curve
        for tag, points in want.items():
            assert [s for s, _ in got[tag]] == [s for s, _ in points], (rid, tag)
            # event files hold float32
            assert [v for _, v in got[tag]] == [float(np.float32(v)) for _, v in points], (rid, tag)


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

def test_without_the_flag_no_logs_are_written(tmp_path, folders, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    text = tiny_study_toml(*folders).replace("seeds = [0, 1]", "seeds = [0]").replace("block_sizes = [16, 4]",
                                                                                       "block_sizes = [16]")
    text = text.replace("[basin]\ncheckpoint_epochs = [1]\n", "")
    (tmp_path / "s.toml").write_text(text)
    assert main(["run", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r"), "--jobs", "1",
                 "--no-progress"]) == 0
    assert not (tmp_path / "r" / "tensorboard").exists()
