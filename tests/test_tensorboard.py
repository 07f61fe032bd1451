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
        want = {"train/loss": list(enumerate(h["step_loss"], 1)), "train/acc": list(enumerate(h["step_acc"], 1)),
                "val/acc": [(e * spe, v) for e, v in zip(h["epoch"], h["val_acc"], strict=True)],
                "val/loss": [(e * spe, v) for e, v in zip(h["epoch"], h["val_loss"], strict=True)],
                "test/acc": [(e * spe, v) for e, v in zip(h["test_epoch"], h["test_acc"], strict=True)],
                "lr": [(e * spe, v) for e, v in zip(h["epoch"], h["lr"], strict=True)]}
        for tag, points in want.items():
            assert [s for s, _ in got[tag]] == [s for s, _ in points], (rid, tag)
            # event files hold float32
            assert [v for _, v in got[tag]] == [float(np.float32(v)) for _, v in points], (rid, tag)


def test_without_the_flag_no_logs_are_written(tmp_path, folders, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    text = tiny_study_toml(*folders).replace("seeds = [0, 1]", "seeds = [0]").replace("block_sizes = [16, 4]",
                                                                                       "block_sizes = [16]")
    text = text.replace("[basin]\ncheckpoint_epochs = [1]\n", "")
    (tmp_path / "s.toml").write_text(text)
    assert main(["run", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r"), "--jobs", "1",
                 "--no-progress"]) == 0
    assert not (tmp_path / "r" / "tensorboard").exists()
