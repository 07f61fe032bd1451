"""A model factory in the user's own folder, next to the study config (``mymodels/cnn.py`` named as
``mymodels.cnn:small_cnn``), is imported from the config's folder, whatever the working directory and without
PYTHONPATH; a folder that only a results folder records never becomes an import path."""

from __future__ import annotations

import os
import sys

import pytest

from transferscope.cli import main
from transferscope.config import FOLDER_ENV, ModelConfig, load_config, trust_factory
from transferscope.models import ModelError, create_model

from .conftest import tiny_study_toml

FACTORY = "mymodels.cnn:small_cnn"

CNN = '''
import torch.nn as nn


def small_cnn(width: int = 4, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, classes))
'''


@pytest.fixture
def user_folder(tmp_path, folders, monkeypatch):
    """A study folder with its own ``mymodels`` package and a study config naming its factory; the working directory
    elsewhere, no PYTHONPATH, and no ``mymodels`` imported before (or left behind)."""
    study = tmp_path / "mystudy"
    (study / "mymodels").mkdir(parents=True)
    (study / "mymodels" / "__init__.py").write_text("")
    (study / "mymodels" / "cnn.py").write_text(CNN)
    text = tiny_study_toml(*folders).replace("[model]\nblocks = [1, 1]\nwidth = 4\n",
                                             f'[model]\nname = "{FACTORY}"\nhead = "4"\nkwargs = {{width = 3}}\n')
    text = text.replace("[basin]\ncheckpoint_epochs = [1]\n", "")
    (study / "study.toml").write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv(FOLDER_ENV, raising=False)
    for name in [m for m in sys.modules if m == "mymodels" or m.startswith("mymodels.")]:
        monkeypatch.delitem(sys.modules, name)
    yield study
    for name in [m for m in sys.modules if m == "mymodels" or m.startswith("mymodels.")]:
        del sys.modules[name]


def _forget_mymodels() -> None:
    for name in [m for m in sys.modules if m == "mymodels" or m.startswith("mymodels.")]:
        del sys.modules[name]


def test_a_factory_next_to_the_study_config_is_imported_from_its_folder(user_folder, tmp_path, capsys):
    path_before = list(sys.path)
    assert str(user_folder) not in sys.path and os.getcwd() != str(user_folder)
    assert main(["run", str(user_folder / "study.toml"), "--results", str(tmp_path / "r"), "--dry-run"]) == 0, \
        capsys.readouterr().err
    assert "pending" in capsys.readouterr().out
    assert sys.modules["mymodels.cnn"].__file__ == str(user_folder / "mymodels" / "cnn.py")
    assert sys.path == path_before  # the folder was on the path for the import only


def test_a_folder_only_a_results_folder_records_is_never_an_import_path(user_folder):
    # trusted by name (--trust-factory), as a results folder's study.json would name it: nothing says where it lives,
    # so it is imported from the Python path only, and the study config's folder is not looked in
    trust_factory(FACTORY)
    with pytest.raises(ModelError, match=r"model.name 'mymodels.cnn:small_cnn': cannot import 'mymodels.cnn' "
                                         r"\(No module named 'mymodels'\); a factory's module is imported from the "
                                         r"folder of the study config that names it, or from the Python path"):
        create_model(ModelConfig(name=FACTORY, head="4"), 1, 3, seed=0)
    assert "mymodels" not in sys.modules
    # the user's own config names it: from its folder
    cfg = load_config(user_folder / "study.toml")
    assert create_model(cfg.model, 1, 3, seed=0).head.out_features == 3


def test_a_factory_that_is_not_in_the_folder_says_where_it_was_looked_for(user_folder):
    (user_folder / "mymodels" / "cnn.py").unlink()
    cfg = load_config(user_folder / "study.toml")
    with pytest.raises(ModelError, match=rf"cannot import 'mymodels.cnn' \(No module named 'mymodels.cnn'\); looked "
                                         rf"in the study config's folder {user_folder} and on the Python path"):
        create_model(cfg.model, 1, 3, seed=0)


def test_a_factory_named_on_the_command_line_is_imported_from_the_working_directory(user_folder, tmp_path,
                                                                                    monkeypatch):
    """As a path given with --set: the folder the command is typed in, not the study file's."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "study.toml").write_text((user_folder / "study.toml").read_text().replace(FACTORY, "resnet"))
    sets = [f'model.name="{FACTORY}"']
    with pytest.raises(ModelError, match=rf"looked in the study config's folder {tmp_path / 'elsewhere'} and"):
        create_model(load_config(other / "study.toml", sets).model, 1, 3, seed=0)
    monkeypatch.chdir(user_folder)
    assert create_model(load_config(other / "study.toml", sets).model, 1, 3, seed=0).head.out_features == 3


def test_the_folder_trained_from_the_config_runs_again_from_the_same_config(user_folder, tmp_path, capsys):
    """Worker processes (spawned: a fresh interpreter) find the factory too, and the same config finds it again
    for the folder its first run wrote (study.json there)."""
    cfg = str(user_folder / "study.toml")
    res = tmp_path / "r"
    small = ["--set", "seeds=[0]", "--set", "block_sizes=[16]", "--set", "pretrain.epochs=1", "--set",
             "pretrain.checkpoint_epochs=[0]", "--set", "finetune.epochs=1", "--set", "scratch.epochs=1"]
    assert main(["run", cfg, "--results", str(res), "--jobs", "2", "--no-progress", *small]) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    assert "0 failed" in out, out
    assert (res / "study.json").is_file()
    # a new process, as a later command: nothing recorded, nothing imported
    os.environ.pop(FOLDER_ENV, None)
    _forget_mymodels()
    assert main(["run", cfg, "--results", str(res), "--dry-run", *small]) == 0, capsys.readouterr().err
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("done") for line in lines), lines
