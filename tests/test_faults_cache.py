"""The analysis cache (issue: faults 14 and 15): a target's label is a name, not a computation, so renaming a target
recomputes nothing and every cached result speaks of the new name; a result computed again is bitwise the one
computed before, whatever ``--jobs``; a run damaged after its results were cached is named by ``analyze``, with
the cached results read from it and the verdicts that rest on them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from transferscope import jsonio
from transferscope.cli import main

from .test_report import EVIL, finished_study  # noqa: F401  the tiny study, trained and analysed once per module


def _results(folder: Path) -> dict[str, object]:
    """Every cached analysis result of a folder, by file name (the ``result`` only: ``seconds`` is a timing)."""
    return {p.name: jsonio.read(p)["result"] for p in sorted((folder / "analyses").glob("*.json"))
            if p.name not in ("index.json", "claims.json") and not p.name.startswith("index-")}


def _copy(finished_study, tmp_path) -> Path:  # noqa: F811
    return shutil.copytree(finished_study, tmp_path / "res", ignore=shutil.ignore_patterns("report"))


def test_renaming_a_target_recomputes_nothing_and_every_result_takes_the_new_name(finished_study, tmp_path,  # noqa: F811
                                                                                  capsys):
    folder = _copy(finished_study, tmp_path)
    before = json.loads((folder / "analyses" / "claims.json").read_text())
    cfg = tmp_path / "renamed.toml"
    cfg.write_text((finished_study.parent / "study.toml").read_text().replace(EVIL, "renamed"))
    assert main(["run", str(cfg), "--results", str(folder), "--jobs", "1", "--no-progress"]) == 0
    assert "0 runs trained" in capsys.readouterr().out
    assert main(["analyze", str(folder), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "analyses: 0 computed, 13 cached, 0 missing" in out, out
    index = json.loads((folder / "analyses" / "index.json").read_text())
    assert not [k for k in index["results"] if EVIL in k] and "cka/renamed" in index["results"]
    assert "renamed" in index["images"] and EVIL not in index["images"]
    transfer = jsonio.read(folder / "analyses" / index["results"]["transfer/all"])["result"]
    assert {r["target"] for r in transfer["rows"]} == {"renamed"}
    relate = jsonio.read(folder / "analyses" / index["results"]["relate/all"])["result"]
    assert EVIL not in json.dumps(relate)
    after = json.loads((folder / "analyses" / "claims.json").read_text())
    # the same verdicts, every estimate and interval the same, under the new name
    text = json.dumps(before["verdicts"]).replace(json.dumps(EVIL)[1:-1], "renamed")
    assert json.loads(text.replace(str(finished_study), str(folder))) == after["verdicts"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_result_computed_again_is_bitwise_the_one_computed_before(finished_study, tmp_path, capsys,  # noqa: F811
                                                                    jobs):
    folder = _copy(finished_study, tmp_path)
    before = _results(folder)
    shutil.rmtree(folder / "analyses")
    assert main(["analyze", str(folder), "--no-progress", "--jobs", jobs]) == 0
    cap = capsys.readouterr()
    assert "13 computed, 0 cached" in cap.out
    if jobs == "1":  # --no-progress: no bar, so each job says when it starts and ends, with its time (workers too)
        started = re.findall(r"^analysis (\S+): started \(\d\d:\d\d:\d\d\)$", cap.err, re.M)
        ended = re.findall(r"^analysis (\S+): done in \d+\.\d s$", cap.err, re.M)
        assert len(started) == 13 and sorted(started) == sorted(ended), cap.err
    after = _results(folder)
    assert after.keys() == before.keys()
    assert [k for k in before if before[k] != after[k]] == []


def _damage(folder: Path, prefix: str) -> str:
    run = next(p for p in sorted((folder / "runs").iterdir()) if p.name.startswith(prefix))
    with open(run / "weights.safetensors", "ab") as f:
        f.write(b"\0")
    return run.name


@pytest.mark.parametrize("prefix", ["P-imagefolder", "P-T-imagefolder-b16-s1", "RI-T-imagefolder-b4-s0"])
def test_a_run_damaged_after_its_results_were_cached_is_named_with_what_rests_on_it(finished_study, tmp_path,  # noqa: F811
                                                                                    capsys, prefix):
    folder = _copy(finished_study, tmp_path)
    run_id = _damage(folder, prefix)
    capsys.readouterr()
    assert main(["analyze", str(folder), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "0 computed, 13 cached" in out
    line = next(x for x in out.splitlines() if x.strip().startswith(f"{run_id}: "))
    assert "weights.safetensors changed; cached results from it: " in line
    assert f"transferscope run --results {folder} --rerun {run_id}" in line
    rest = next(x for x in out.splitlines() if x.startswith("verdicts that rest on runs whose files changed"))
    claims = json.loads((folder / "analyses" / "claims.json").read_text())
    flagged = {v["claim"] for v in claims["verdicts"] for t in v["targets"]
               if any(c["kind"] == "changed-artefacts" and run_id in c["message"] for c in t.get("caveats", ()))}
    assert flagged and all(f"{c} (" in rest for c in flagged)
    if prefix.startswith("P-imagefolder"):  # P underlies every P-T run and L3's pre-trained weights
        assert {"N1", "N5", "L3"} <= flagged
    if prefix.startswith("RI-T"):
        assert "L3" not in flagged and "N9" not in flagged  # neither reads RI-T's trained runs


def test_labels_follow_the_data_when_two_targets_swap_names():
    """The names in a cached result follow each target's data, not its position or its old name."""
    from types import SimpleNamespace

    from transferscope.config import DomainConfig
    from transferscope.study.jobs import relabel, target_ids

    def plan(*targets):
        return SimpleNamespace(config=SimpleNamespace(targets=list(targets)))

    x, y = DomainConfig("imagefolder", path="/data/x", label="a"), DomainConfig("imagefolder", path="/data/y", label="b")
    before = plan(x, y)
    stored = {"target": "all", "labels": target_ids(before),
              "result": {"rows": [{"target": "a", "gain": 1.0}, {"target": "b", "gain": 2.0}, {"target": "c"}]}}
    assert relabel(stored, before) is None  # nothing renamed: the file stays as it is
    swapped = plan(DomainConfig("imagefolder", path="/data/y", label="a"),
                   DomainConfig("imagefolder", path="/data/x", label="b", distance=0.5))  # distance: not the data
    got = relabel(stored, swapped)
    assert [r["target"] for r in got["result"]["rows"]] == ["b", "a", "c"]  # x's gain 1.0 now under x's name, "b"
    assert [r["gain"] for r in got["result"]["rows"][:2]] == [1.0, 2.0] and got["labels"] == target_ids(swapped)
    assert relabel(got, swapped) is None
    other = plan(DomainConfig("imagefolder", path="/data/z", label="a"))  # other data under an old name
    assert relabel(stored, other) is None
