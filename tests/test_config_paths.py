"""Relative paths in a study file are read from the file's folder, not from the working directory."""

import os
import tomllib
from pathlib import Path

import torch
from safetensors.torch import save_file

from transferscope.config import StudyConfig, from_dict, load_config
from transferscope.study.plan import make_plan

from .byo_models import odd_cnn
from .conftest import make_imagefolder, tiny_study_toml

FACTORY = "tests.byo_models:odd_cnn"


def _byo(tmp_path) -> Path:
    """sub/byo.toml: a given P (``weights`` beside the file, one earlier checkpoint), an imagefolder source one
    folder up, a csv target beside it, and a relative cache folder; the images of the csv are under sub/imgs."""
    sub = tmp_path / "sub"
    make_imagefolder(sub / "imgs", n_classes=3, per_class=24, seed=2)
    make_imagefolder(tmp_path / "src", n_classes=4, per_class=40, seed=1)
    rows = ["path,label"] + [f"imgs/class{k}/img{i:03d}.png,c{k}" for k in range(3) for i in range(24)]
    (sub / "labels.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    net = odd_cnn(width=6, classes=4)
    for f in ("w.safetensors", "c1.safetensors"):
        save_file(net.state_dict(), str(sub / f))
    text = tiny_study_toml(Path("../src"), Path("labels.csv"), name="byo")
    text = text.replace('name = "imagefolder"\nlabel = "tgt"', 'name = "csv"\nlabel = "tgt"', 1)
    text = text.replace("[model]\nblocks = [1, 1]\nwidth = 4\n",
                        f'[model]\nname = "{FACTORY}"\nhead = "classifier"\nweights = "w.safetensors"\n'
                        "kwargs = {width = 6}\n")
    text = text.replace("[data]\nimage_size = 16\n", '[data]\nimage_size = 16\ncache_dir = "cache"\n')
    text = text.replace("[basin]\ncheckpoint_epochs = [1]\n", '[basin]\ncheckpoints = ["c1.safetensors"]\n')
    assert 'weights = "w.safetensors"' in text and 'path = "labels.csv"' in text and 'checkpoints = [' in text
    (sub / "byo.toml").write_text(text)
    return sub / "byo.toml"


def test_relative_paths_are_read_from_the_config_files_folder(tmp_path, monkeypatch):
    cfg_file = _byo(tmp_path)
    sub = cfg_file.parent
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")  # neither the file's folder nor its parent
    cfg = load_config(os.path.join("..", "sub", "byo.toml"))  # a relative config path, as `transferscope run x.toml`
    assert cfg.model.weights == str(sub / "w.safetensors") and Path(cfg.model.weights).is_file()
    assert cfg.basin.checkpoints == [str(sub / "c1.safetensors")]
    assert cfg.targets[0].path == str(sub / "labels.csv") and Path(cfg.targets[0].path).is_file()
    assert cfg.source.path == str(tmp_path / "src")  # "../src", normalised
    assert cfg.data.cache_dir == str(sub / "cache")
    # the plan reads them (pins the weights' hashes, counts the csv's images) from here
    plan = make_plan(cfg)
    assert len(plan.pretrain().model.weights_sha256) == 64 and plan.runs
    # the same study from its own folder: the same paths, so the same runs
    monkeypatch.chdir(sub)
    again = load_config("byo.toml")
    assert again == cfg and [r.run_id for r in make_plan(again).runs] == [r.run_id for r in plan.runs]


def test_override_paths_are_read_from_the_working_directory(tmp_path, monkeypatch):
    cfg_file = _byo(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cfg_file, ['model.weights="mine.safetensors"', 'basin.checkpoints=["~/early.pt"]'])
    assert cfg.model.weights == str(tmp_path / "mine.safetensors")  # typed on the command line: from here
    assert cfg.basin.checkpoints == [os.path.expanduser("~/early.pt")]
    assert cfg.targets[0].path == str(cfg_file.parent / "labels.csv")  # the file's own: from its folder
    # a built-in study has no folder: its paths stay as given, read from the working directory
    quick = load_config("quick", ['model.weights="rel/w.safetensors"'])
    assert quick.model.weights == "rel/w.safetensors"


def test_absolute_and_home_paths(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    text = 'name = "x"\n[model]\nweights = "~/w.safetensors"\n[[targets]]\nname = "csv"\npath = "/data/./t.csv"\n'
    (tmp_path / "s.toml").write_text(text)
    cfg = load_config(tmp_path / "s.toml")
    assert cfg.model.weights == str(home / "w.safetensors")
    assert cfg.targets[0].path == "/data/./t.csv"  # an absolute path is kept exactly as written
    assert cfg.model.name == "resnet" and cfg.source.path == "" and cfg.data.cache_dir == ""  # unset: unchanged


def test_run_ids_of_a_study_with_absolute_paths_are_unchanged(tmp_path, folders, monkeypatch):
    """A study whose paths were absolute already gets the same config, so the same run ids, as it did when paths
    were taken as written (from the working directory), whatever the working directory."""
    text = tiny_study_toml(*folders)
    p = tmp_path / "study.toml"
    p.write_text(text)
    as_written = from_dict(StudyConfig, tomllib.loads(text))
    ids = sorted(r.run_id for r in make_plan(as_written).runs)
    (tmp_path / "elsewhere").mkdir()
    for where in (tmp_path, tmp_path / "elsewhere"):
        monkeypatch.chdir(where)
        cfg = load_config(p)
        assert cfg == as_written
        assert sorted(r.run_id for r in make_plan(cfg).runs) == ids
