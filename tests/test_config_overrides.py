"""``--set`` overrides: a list element by index (``targets.0.x`` or ``targets[0].x``), and an override that is wrong
blamed on the command line, not on the study file."""

from __future__ import annotations

import pytest

from transferscope.cli import main
from transferscope.config import ConfigError, apply_overrides, load_config

from .conftest import tiny_study_toml


def _study(tmp_path, folders) -> str:
    path = tmp_path / "study.toml"
    path.write_text(tiny_study_toml(*folders))
    return str(path)


@pytest.mark.parametrize("key", ["targets.0.n_per_class", "targets[0].n_per_class"])
def test_a_list_element_is_reached_by_index_either_spelling(tmp_path, folders, key):
    cfg = load_config(_study(tmp_path, folders), [f"{key}=5"])
    assert cfg.targets[0].n_per_class == 5
    assert cfg.source.n_per_class == 0  # nothing else moved


def test_indexing_sets_an_element_of_a_list_of_values_and_a_path_in_a_table(tmp_path, folders):
    src, tgt = folders
    other = tmp_path / "elsewhere"
    cfg = load_config(_study(tmp_path, folders), ["seeds[1]=7", "block_sizes.0=8", f'targets[0].path="{other}"',
                                                  "targets[0].classes=['class0', 'class1']"])
    assert cfg.seeds == [0, 7] and cfg.block_sizes == [8, 4]
    assert cfg.targets[0].path == str(other) and cfg.targets[0].classes == ["class0", "class1"]
    assert apply_overrides({"model": {"kwargs": {}}}, ["model.kwargs.0=1"]) == {"model": {"kwargs": {"0": 1}}}


@pytest.mark.parametrize("override, message", [
    ("targets[1].n_per_class=5", "--set targets[1].n_per_class=5: targets[1]: index 1 is out of range; targets has "
                                 "1 item (indices 0 to 0)"),
    ("targets.3.n_per_class=5", "--set targets.3.n_per_class=5: targets[3]: index 3 is out of range; targets has "
                                "1 item (indices 0 to 0)"),
    ("targets[-1].n_per_class=5", "--set targets[-1].n_per_class=5: targets[-1]: a negative index; indices count "
                                  "from 0 (targets has 1 item)"),
    ("targets.-1.n_per_class=5", "--set targets.-1.n_per_class=5: targets[-1]: a negative index; indices count "
                                 "from 0 (targets has 1 item)"),
    ("finetune[0].lr=1", "--set finetune[0].lr=1: finetune[0]: finetune is a table, not a list; name its keys, "
                         "e.g. finetune.lr"),
    ("finetune.0.lr=1", "--set finetune.0.lr=1: finetune[0]: finetune is a table, not a list; name its keys, "
                        "e.g. finetune.lr"),
    ("targets.n_per_class=5", "--set targets.n_per_class=5: targets.n_per_class: targets is a list of tables; give "
                              "an index, e.g. targets[0].n_per_class"),
    ("targets[0].bogus=1", "--set targets[0].bogus=1: targets[0].bogus: unknown key; valid keys of targets[0] are "
                           "blank, classes, distance, label, max_pixels, n_per_class, n_test_per_class, "
                           "n_val_per_class, name, path, uncertain"),
    ("finetune.lrr=1", "--set finetune.lrr=1: finetune.lrr: unknown key; valid keys of finetune are"),
    ("targets[x].n_per_class=5", "--set targets[x].n_per_class=5: 'targets[x]': expected a key, or an index "
                                 "written [N] or .N"),
    ("seeds.0.x=1", "--set seeds.0.x=1: seeds[0]: 0 is not a table"),
    ("data.image_size.x=1", "--set data.image_size.x=1: data.image_size: 16 is not a table"),
])
def test_a_wrong_override_is_one_line_blaming_the_command_line(tmp_path, folders, override, message):
    path = _study(tmp_path, folders)
    with pytest.raises(ConfigError) as e:
        load_config(path, [override])
    msg = str(e.value)
    assert msg.startswith(message), msg
    assert path not in msg and "\n" not in msg


def test_a_value_set_by_an_override_is_refused_naming_the_override(tmp_path, folders):
    path = _study(tmp_path, folders)
    with pytest.raises(ConfigError) as e:
        load_config(path, ["targets[0].n_per_class=-1"])
    assert str(e.value) == (f"{path}: targets[0].n_per_class: expected an integer in [0, 10000000], got -1 "
                            "(set by --set targets[0].n_per_class=-1)")
    with pytest.raises(ConfigError) as e:
        load_config(path, ["finetune.lr=0.1", "data.image_size=3"])
    assert str(e.value).endswith("data.image_size: expected an integer in [4, 4096], got 3 "
                                 "(set by --set data.image_size=3)")
    bad = tmp_path / "bad.toml"  # a value of the file itself is the file's, whatever else is overridden
    bad.write_text(tiny_study_toml(*folders).replace("image_size = 16", "image_size = 3"))
    with pytest.raises(ConfigError) as e:
        load_config(bad, ["finetune.lr=0.1"])
    assert str(e.value) == f"{bad}: data.image_size: expected an integer in [4, 4096], got 3"


def test_the_dry_run_takes_an_indexed_override_and_blames_a_wrong_one(tmp_path, folders, capsys):
    path = _study(tmp_path, folders)
    res = str(tmp_path / "r")
    assert main(["run", path, "--results", res, "--dry-run", "--set", "targets[0].n_per_class=5"]) == 0
    capsys.readouterr()
    assert main(["run", path, "--results", res, "--dry-run", "--set", "targets.0.n_per_class=5"]) == 0
    capsys.readouterr()
    assert main(["run", path, "--results", res, "--dry-run", "--set", "targets[0].bogus=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set targets[0].bogus=1: targets[0].bogus: unknown key"), err
    assert err.strip().count("\n") == 0 and path not in err, err
