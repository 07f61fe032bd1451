"""The README's Python block runs as printed, and the folder it writes works with every command."""

import os
import re
import subprocess
import sys
from pathlib import Path

from transferscope.cli import main

from .conftest import tiny_study_toml

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet() -> str:
    text = README.read_text()
    m = re.search(r"<!-- python-api -->\n```python\n(.*?)```", text, re.S)
    assert m, "README: the Python block after <!-- python-api --> is gone"
    return m.group(1)


def test_the_readme_python_block_runs_as_printed(tmp_path, folders, capsys):
    (tmp_path / "my_study.toml").write_text(tiny_study_toml(*folders))
    (tmp_path / "snippet.py").write_text(_snippet())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "N1 " in p.stdout and "index.html" in p.stdout
    res = tmp_path / "results" / "my_study"
    assert (res / "study.json").is_file() and (res / "analyses" / "claims.json").is_file()
    # every command works on the folder the API wrote
    for argv in (["status", str(res)], ["analyze", str(res), "--no-progress"], ["report", str(res)],
                 ["compare", str(res), str(res)]):
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "0 computed" in out  # analyze found everything the API computed
    _caveats_match_the_flags(res)


def _caveats_match_the_flags(res: Path) -> None:
    """The verdicts in claims.json carry the study's own flags: each underfit run's (target, arm) is a blocking caveat
    of every claim reading that arm on that target, and no outcome resting on one is decisive."""
    from transferscope.claims import FAILS, HOLDS
    from transferscope.claims.compare import load_verdicts
    from transferscope.config import StudyConfig, from_dict
    from transferscope.store import Store
    from transferscope.study import make_plan
    from transferscope.study.summary import flags

    store = Store(res)
    plan = make_plan(from_dict(StudyConfig, store.read_study()), check=False)
    basin = {r.run_id for r in plan.runs if r.parent_checkpoint >= 0}  # P-T from an earlier checkpoint: N9, L5
    under = {(f.target, "basin" if f.run_id in basin else f.arm) for f in flags(plan, store) if f.kind == "underfit"}
    for v in load_verdicts(res):
        for t in v.targets:
            got = {(c.target, c.arm) for c in t.caveats if c.kind == "underfit"}
            if v.claim == "N1" and t.target != "all targets":  # N1 reads P-T and RI-T of its own target
                assert got == {(tt, a) for tt, a in under if tt == t.target and a != "basin"}, (v.claim, t.target)
            if any(c.blocking for c in t.caveats):
                assert t.outcome not in (HOLDS, FAILS), (v.claim, t.target)


def test_execute_writes_the_study_it_runs(tmp_path, folders):
    from transferscope.config import from_dict, load_config
    from transferscope.jsonio import read
    from transferscope.store import Store
    from transferscope.study import execute, make_plan

    p = tmp_path / "s.toml"
    p.write_text(tiny_study_toml(*folders).replace("epochs = 2", "epochs = 1"))
    cfg = load_config(p, ["seeds=[0]", "block_sizes=[16]", "basin.checkpoint_epochs=[]"])
    plan = make_plan(cfg)
    execute(plan, Store(tmp_path / "r"), jobs=1, show_progress=False)
    assert from_dict(type(cfg), read(tmp_path / "r" / "study.json")) == plan.config
    assert main(["status", str(tmp_path / "r")]) == 0
