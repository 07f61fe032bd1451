"""`analyses/index.json` names the result files `report` and `export table` read: a damaged index (not JSON, another
shape) or one that names a file outside its folder (an absolute path, ``..``, a link leading out) is refused with one
line that names the index and the way out; nothing it names is read (issue: faults 2 and 3)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from transferscope.cli import main

from .test_report import finished_study  # noqa: F401  the tiny study, trained and analysed once per module

SECRET = "a file outside the results folder"


def _cases(outside):
    return {
        "truncated": '{"results": {"transfer/all": "tra',
        "a list": "[1, 2]",
        "results a number": '{"results": 5}',
        "images a list": '{"results": {}, "images": []}',
        "absolute": json.dumps({"results": {"transfer/all": str(outside)}}),
        "dot-dot": json.dumps({"results": {"transfer/all": "../../../../../../../../" + str(outside).lstrip("/")}}),
        "a link out": json.dumps({"results": {"transfer/all": "leak.json"}}),
        "an image out": json.dumps({"results": {}, "images": {"tgt": "../../x.npz"}}),
    }


@pytest.mark.parametrize("case", list(_cases("/x")))
def test_a_damaged_or_escaping_index_is_refused_by_name(finished_study, tmp_path, capsys, case):  # noqa: F811
    folder = shutil.copytree(finished_study, tmp_path / "res")
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps({"result": SECRET}))
    (folder / "analyses" / "leak.json").symlink_to(outside)
    idx = folder / "analyses" / "index.json"
    idx.write_text(_cases(outside)[case])
    for argv in (["report", str(folder), "--out", str(tmp_path / "rep")],
                 ["export", "table", str(folder), "--out", str(tmp_path / "tab")]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, (case, argv, err)
        assert str(idx) in err and "transferscope analyze" in err and "Traceback" not in err, (case, err)
        assert err.strip().count("\n") == 0, err
        assert SECRET not in err
    assert not (tmp_path / "rep" / "index.html").exists()


def test_a_sound_index_still_reads_every_result(finished_study, tmp_path, capsys):  # noqa: F811
    folder = shutil.copytree(finished_study, tmp_path / "res")
    assert main(["export", "table", str(folder), "--out", str(tmp_path / "tab")]) == 0
    assert any(p.name.startswith("barrier") for p in (tmp_path / "tab").iterdir())
    assert os.path.isfile(tmp_path / "tab" / "runs.csv")


@pytest.mark.parametrize("argv", [["status", "{res}", "--runs"], ["compare", "{res}", "{res}"],
                                  ["run", "--results", "{res}", "--rerun", "x", "--dry-run"], ["domains"]])
def test_output_cut_short_by_its_reader_ends_quietly(finished_study, argv):  # noqa: F811
    """`transferscope status RESULTS | head -1`: when the reader of the output goes away, the command exits 0 with
    nothing on stderr (no BrokenPipeError traceback, during the command or at the interpreter's exit)."""
    import subprocess
    import sys

    args = [a.format(res=finished_study) for a in argv]
    code = "import sys; from transferscope.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 0 and "BrokenPipe" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("kind", ["missing", "empty", "a file"])
def test_compare_says_when_a_side_is_not_a_results_folder(finished_study, tmp_path, capsys, kind):  # noqa: F811
    b = tmp_path / "b"
    if kind == "empty":
        b.mkdir()
    elif kind == "a file":
        b.write_text("x")
    assert main(["compare", str(finished_study), str(b)]) == 2
    err = capsys.readouterr().err
    assert f"{b}: not a results folder" in err and "run 'transferscope analyze" not in err, err


@pytest.mark.parametrize("edit", [{"seeds": "abc"}, {"model": 5}, None])
def test_a_study_json_that_does_not_fit_is_named_with_the_way_out(finished_study, tmp_path, capsys, edit):  # noqa: F811
    folder = shutil.copytree(finished_study, tmp_path / "res")
    study = folder / "study.json"
    d = json.loads(study.read_text())
    study.write_text(json.dumps([d] if edit is None else {**d, **edit}))
    for argv in (["status", str(folder)], ["analyze", str(folder), "--no-progress", "--jobs", "1"],
                 ["report", str(folder), "--out", str(tmp_path / "rep")],
                 ["export", "table", str(folder), "--out", str(tmp_path / "tab")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{study}:" in err and "transferscope run STUDY.toml --results" in err and "Traceback" not in err, err
        assert err.strip().count("\n") == 0, err


def test_a_folder_holding_another_study_is_never_overwritten(finished_study, tmp_path, capsys):  # noqa: F811
    """`run --results X` with no config runs X's own study (never the built-in one over it); a config or profile
    of another study is refused by name; the folder's study.json is unchanged."""
    folder = shutil.copytree(finished_study, tmp_path / "res")
    before = (folder / "study.json").read_bytes()
    name = json.loads(before)["name"]
    assert name != "quick"
    assert main(["run", "--results", str(folder), "--dry-run"]) == 0  # its own study: everything done
    out = capsys.readouterr().out
    assert "pending" not in out and "done" in out
    assert main(["run", "--profile", "quick", "--results", str(folder), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"holds the study {name!r}" in err and "'quick'" in err, err
    from transferscope.api import run_study
    from transferscope.config import ConfigError

    with pytest.raises(ConfigError, match="holds the study"):
        run_study("quick", folder, show_progress=False)
    assert (folder / "study.json").read_bytes() == before


# ------------------------------------------------------------------------------------------------ 11. claims.json

def _edit_claims(folder, edit):
    path = folder / "analyses" / "claims.json"
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
    return path


def _first_effect(d):
    return next(t["effects"][0] for v in d["verdicts"] for t in v["targets"] if t["effects"])


CLAIMS_EDITS = {
    "an outcome 'banana'": lambda d: d["verdicts"][0].update(outcome="banana"),
    "a target's outcome 'banana'": lambda d: d["verdicts"][0]["targets"][0].update(outcome="banana"),
    "an estimate 'NaNx'": lambda d: _first_effect(d).update(value="NaNx"),
    "an interval of a list": lambda d: _first_effect(d).update(low=[1]),
    "n of 2.5 seeds": lambda d: _first_effect(d).update(n=2.5),
    "n true": lambda d: _first_effect(d).update(n=True),
    "a side 'sideways'": lambda d: _first_effect(d).update(side="sideways"),
    "a caveat of an unknown kind": lambda d: d["verdicts"][0]["targets"][0].update(
        caveats=[{"kind": "banana", "target": "x"}]),
    "no format": lambda d: d.pop("format"),
    "format 99": lambda d: d.update(format=99),
    "verdicts an object": lambda d: d.update(verdicts={"N1": 1}),
    "a verdict a number": lambda d: d["verdicts"].append(5),
    "an across outcome 'banana'": lambda d: d.update(across_pretrained=[{"claim": "N1", "outcomes": {"0": "banana"},
                                                                          "outcome": "holds", "why": ""}]),
}


@pytest.mark.parametrize("edit", list(CLAIMS_EDITS))
def test_a_verdict_file_that_does_not_fit_is_refused_by_name(finished_study, tmp_path, capsys, caplog,  # noqa: F811
                                                             edit):
    folder = shutil.copytree(finished_study, tmp_path / "res")
    path = _edit_claims(folder, CLAIMS_EDITS[edit])
    capsys.readouterr()
    assert main(["compare", str(folder), str(finished_study)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.strip().count("\n") == 0, (edit, err)
    assert "transferscope analyze" in err and "Traceback" not in err, err
    assert main(["report", str(folder), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    missing = [line for line in page.splitlines() if "Missing:" in line and "claims.json" in line]
    assert len(missing) == 1 and ("does not fit a verdict file" in missing[0] or "verdict file of" in missing[0])
    assert page.count("banana") <= 1 and page.count("NaNx") <= 1, edit  # named in the note, never shown as a verdict
    assert main(["status", str(folder)]) == 0
    assert f"verdicts not shown: {path}" in capsys.readouterr().out


def test_the_verdict_file_written_reads_back_equal(finished_study):  # noqa: F811
    """What is read back is what was written, field for field (the check refuses nothing a sound file holds)."""
    from transferscope import jsonio
    from transferscope.claims.compare import CLAIMS_FORMAT, load_across, load_by_pretrain, load_verdicts

    text = (finished_study / "analyses" / "claims.json").read_text()
    raw = json.loads(text)  # non-finite numbers stay their strings, as written
    assert raw["format"] == CLAIMS_FORMAT
    vs = load_verdicts(finished_study)
    assert json.loads(jsonio.dumps([v.to_dict() for v in vs])) == raw["verdicts"]
    assert json.loads(jsonio.dumps([a.to_dict() for a in load_across(finished_study)])) == raw["across_pretrained"]
    by_p = load_by_pretrain(finished_study, raw["pretrained"][0]["seed"])
    assert list(by_p) == [p["seed"] for p in raw["pretrained"]]
    assert [json.loads(jsonio.dumps([v.to_dict() for v in pvs])) for pvs in by_p.values()] == \
        [p["verdicts"] for p in raw["pretrained"]]


def test_the_verdicts_under_each_p_are_each_ps_own(finished_study, tmp_path):  # noqa: F811
    """A second P's verdicts are read as that P's, checked as the primary's are (an unknown outcome there refused)."""
    from transferscope.claims.compare import load_by_pretrain

    folder = shutil.copytree(finished_study, tmp_path / "res")
    path = folder / "analyses" / "claims.json"
    d = json.loads(path.read_text())
    primary = d["pretrained"][0]["seed"]
    other = json.loads(json.dumps(d["pretrained"][0]))
    other["seed"] = primary + 7
    other["verdicts"][0]["outcome"] = "holds" if other["verdicts"][0]["outcome"] != "holds" else "inconclusive"
    d["pretrained"].append(other)
    path.write_text(json.dumps(d))
    by_p = load_by_pretrain(folder, primary)
    assert list(by_p) == [primary, primary + 7]
    assert by_p[primary + 7][0].outcome == other["verdicts"][0]["outcome"] != by_p[primary][0].outcome
    other["verdicts"][0]["outcome"] = "banana"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"pretrained\[1\]\.verdicts\[0\]\.outcome: 'banana'"):
        load_by_pretrain(folder, primary)
