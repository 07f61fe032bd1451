"""Targets are shown by their labels; run ids do not depend on labels; one folder under two labels plans."""

import pytest

from transferscope.cli import main
from transferscope.config import ConfigError, load_config
from transferscope.study.plan import make_plan

from .conftest import tiny_study_toml

SECOND = """
[[targets]]
name = "imagefolder"
label = "{label}"
path = "{path}"
n_per_class = {n}
n_val_per_class = 4
n_test_per_class = 8
"""


def _toml(tmp_path, folders, label="tgt-small", n=4, first="tgt"):
    text = tiny_study_toml(*folders).replace('label = "tgt"', f'label = "{first}"')
    text = text.replace("[pretrain]", SECOND.format(label=label, path=folders[1], n=n) + "\n[pretrain]")
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_one_folder_under_two_labels_plans_and_relabelling_keeps_every_id(tmp_path, folders):
    plan = make_plan(load_config(_toml(tmp_path, folders)))
    targets = {r.domain.display for r in plan.runs if r.arm != "P"}
    assert targets == {"tgt", "tgt-small"}
    relabelled = make_plan(load_config(_toml(tmp_path, folders, label="other", first="renamed")))
    assert [r.run_id for r in relabelled.runs] == [r.run_id for r in plan.runs]
    assert {r.label.split("-b")[0] for r in relabelled.runs if r.arm == "P-T"} == {"P-T-renamed", "P-T-other"}


def test_the_same_data_under_two_labels_is_named(tmp_path, folders):
    with pytest.raises(ConfigError, match=r"targets\[1\] \('tgt-copy'\) is the same data as targets\[0\] \('tgt'\)"):
        make_plan(load_config(_toml(tmp_path, folders, label="tgt-copy", n=8)))


def test_listings_show_the_labels(tmp_path, folders, capsys):
    p = _toml(tmp_path, folders)
    assert main(["run", str(p), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(P-T-tgt-small-b16-s0)" in out and "(RI-T-tgt-b4-s1)" in out
