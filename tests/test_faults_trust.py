"""No code runs that only a results folder names. A study's ``[model] name`` may be a factory
``package.module:function``; a folder someone else wrote can name any function in ``study.json``. Every command on
such a folder either reads it without building a model or stops with one line naming the factory and how to trust
it; the factory runs only when the user's own config names it or the user passes ``--trust-factory``."""

from __future__ import annotations

import json
import shutil

import pytest

from transferscope.cli import main
from transferscope.config import TRUST_ENV, ConfigError, load_config, trust_factory
from transferscope.models import ModelError, create_model

from .conftest import TEST_FACTORIES, tiny_study_toml

PAYLOAD = "tests.payload_models:make"


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    """A tiny study trained and analysed by a user who trusted the factory (their own config names it)."""
    from .conftest import make_imagefolder

    tmp = tmp_path_factory.mktemp("trust")
    src = make_imagefolder(tmp / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(tmp / "tgt", n_classes=3, per_class=24, seed=2)
    text = tiny_study_toml(src, tgt).replace("[model]\nblocks = [1, 1]\nwidth = 4\n",
                                             f'[model]\nname = "{PAYLOAD}"\nhead = "classifier"\n')
    text = text.replace("[basin]\ncheckpoint_epochs = [1]\n", "")
    (tmp / "study.toml").write_text(text)
    res = tmp / "results"
    mp = pytest.MonkeyPatch()
    mp.setenv("TRANSFERSCOPE_CACHE", str(tmp / "cache"))
    try:
        assert main(["run", str(tmp / "study.toml"), "--results", str(res), "--jobs", "1", "--no-progress"]) == 0
        assert main(["analyze", str(res), "--no-progress", "--jobs", "1"]) == 0
    finally:
        mp.undo()
    return tmp, res


@pytest.fixture
def attacked(victim, tmp_path, monkeypatch):
    """A copy of the folder, handed to a user who never trusted the factory, with the payload armed."""
    _, res = victim
    folder = shutil.copytree(res, tmp_path / "theirs")
    shutil.rmtree(folder / "analyses")  # nothing cached: analyze has every model to build
    mark = tmp_path / "ran.txt"
    monkeypatch.setenv(TRUST_ENV, ",".join(TEST_FACTORIES))  # the suite's own factories, not this one
    monkeypatch.setenv("TS_PAYLOAD_MARK", str(mark))
    return folder, mark


def _a_run(folder) -> str:
    return next(p.name for p in (folder / "runs").iterdir() if p.name.startswith("RI-T"))


def test_no_command_runs_a_factory_only_the_folder_names(attacked, tmp_path, capsys):
    folder, mark = attacked
    refused = [["run", "--results", str(folder), "--rerun", _a_run(folder)],
               ["analyze", str(folder), "--no-progress", "--jobs", "1"],
               ["analyze", str(folder), "--no-progress", "--jobs", "2"]]
    read_only = [["status", str(folder), "--runs"], ["report", str(folder), "--out", str(tmp_path / "rep")],
                 ["export", "table", str(folder), "--out", str(tmp_path / "tab")],
                 ["export", "model", str(folder), _a_run(folder), "--out", str(tmp_path / "m.safetensors")]]
    for argv in refused:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert PAYLOAD in err and f"--trust-factory {PAYLOAD}" in err and "Traceback" not in err, (argv, err)
        assert err.strip().count("\n") == 0, err  # one line
    for argv in read_only:
        main(argv)
        capsys.readouterr()
    assert not mark.exists(), mark.read_text()
    # and in Python: building the folder's model spec refuses before anything is imported
    spec = json.loads((folder / "runs" / _a_run(folder) / "run.json").read_text())["spec"]
    from transferscope.config import ModelConfig, from_dict

    with pytest.raises(ModelError, match="--trust-factory"):
        create_model(from_dict(ModelConfig, spec["model"]), 1, 3, seed=0)
    assert not mark.exists()


def test_the_user_can_trust_it_by_name_or_by_their_own_config(attacked, victim, capsys):
    folder, mark = attacked
    assert main(["analyze", str(folder), "--no-progress", "--jobs", "1", "--trust-factory", PAYLOAD]) == 0
    assert mark.exists()  # trusted: it runs, in this process and in the workers it starts
    mark.unlink()
    shutil.rmtree(folder / "analyses")
    assert main(["analyze", str(folder), "--no-progress", "--jobs", "2", "--trust-factory", PAYLOAD]) == 0
    assert mark.exists()  # the worker processes inherit the trust
    capsys.readouterr()
    tmp, _ = victim
    load_config(tmp / "study.toml")  # the user's own config names it: trusted from then on
    assert main(["run", "--results", str(folder), "--rerun", _a_run(folder), "--jobs", "1", "--no-progress"]) == 0


def test_trust_is_by_exact_name_and_never_for_a_library_by_name(monkeypatch):
    monkeypatch.setenv(TRUST_ENV, "")
    trust_factory("tests.payload_models:mak", "tests.payload_models")  # a near name; not a factory at all
    with pytest.raises(ModelError, match="not run"):
        from transferscope.config import ModelConfig

        create_model(ModelConfig(name=PAYLOAD, head="classifier"), 1, 3, seed=0)
    with pytest.raises(ConfigError, match="not run"):
        from transferscope.config import check_trusted

        check_trusted(PAYLOAD, "somewhere/study.json")
