"""`analyze --executor ray`: every analysis job a Ray task on a two-node cluster of this machine's loopback (the
cluster of tests/test_ray.py), in the order of what each analysis needs, writing the same files as the local
executor: byte for byte but the timings, and the same verdicts."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from transferscope import jsonio
from transferscope.api import analysis_backend, decide_study
from transferscope.cli import main
from transferscope.config import ConfigError, load_config
from transferscope.report.strips import write_image_strips
from transferscope.store import Store
from transferscope.study import execute, make_plan
from transferscope.study import jobs as jobs_mod
from transferscope.study.analyze import analyze
from transferscope.study.jobs import inputs_of
from transferscope.study.ray_executor import RayAnalyses
from transferscope.study.registry import SPECS, AnalysisSpec, register

from .conftest import make_imagefolder, tiny_study_toml
from .test_analyze import FAST
from .test_decide import DESIGN, decided, tiny  # noqa: F401  (fixtures)


def test_needs_are_declared_and_ordered():
    assert set(SPECS["relate"].needs) == {"transfer", "scores"}
    order = list(SPECS)
    for name, spec in SPECS.items():  # the local loop's order is a valid order of the needs
        assert all(order.index(n) < order.index(name) for n in spec.needs), name
    with pytest.raises(ValueError, match="needs 'nothing-such', which is not registered before it"):
        register(AnalysisSpec("x-test", "", 1, lambda c, m: [], lambda s, c, j, r: None, dict, needs=("nothing-such",)))
    assert "x-test" not in SPECS
    results = {"transfer/all": 1, "scores/tgt": 2, "cka/tgt": 3}
    assert inputs_of(SPECS["relate"], results) == {"transfer/all": 1, "scores/tgt": 2}
    assert inputs_of(SPECS["cka"], results) == {}


def test_unknown_executor_is_refused(tmp_path, folders):
    p = tmp_path / "s.toml"
    p.write_text(tiny_study_toml(*folders))
    with pytest.raises(ConfigError, match="--executor 'dask'"):
        analysis_backend("dask")
    with pytest.raises(ConfigError, match="--threads -1"):
        analyze(make_plan(load_config(p)), Store(tmp_path / "r"), threads=-1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny study of two seeds (every pair analysis has pairs), trained once locally."""
    root = tmp_path_factory.mktemp("anray")
    src = make_imagefolder(root / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(root / "tgt", n_classes=3, per_class=24, seed=2)
    cfg = root / "study.toml"
    cfg.write_text(tiny_study_toml(src, tgt))
    plan = make_plan(load_config(cfg, [f'data.cache_dir="{root / "cache"}"']))
    store = Store(root / "trained")
    s = execute(plan, store, jobs=1, threads=1, show_progress=False)
    assert not s.failed and not s.blocked
    return plan, store


def _copy(store: Store, to) -> Store:
    shutil.copytree(store.root, to)
    return Store(to)


_SECONDS = re.compile(rb'"seconds": [0-9.e+-]+')


def _files(store: Store) -> dict[str, bytes]:
    """Every JSON file of analyses/, its timing (the one field that holds a time) blanked."""
    return {p.name: _SECONDS.sub(b'"seconds": 0', p.read_bytes()) for p in (store.root / "analyses").glob("*.json")}


def _images(store: Store) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for p in (store.root / "analyses").glob("*.npz"):
        with np.load(p) as z:
            out[p.name] = {k: z[k] for k in z.files}
    return out


@pytest.mark.slow
def test_analyses_on_two_nodes_equal_the_local_ones(cluster, trained, tmp_path, monkeypatch, caplog):
    plan, store = trained
    local, remote = _copy(store, tmp_path / "local"), _copy(store, tmp_path / "ray")
    a = analyze(plan, local, FAST, show_progress=False, threads=1, images=write_image_strips)
    assert not a.missing, a.missing

    def not_here(*args, **kw):
        raise AssertionError("a job computed in the driver")

    monkeypatch.setattr(jobs_mod, "compute_job", not_here)  # the Ray workers import their own
    with caplog.at_level("INFO", logger="transferscope.study.ray_executor"):
        b = analyze(plan, remote, FAST, show_progress=False, threads=1, backend=RayAnalyses(cluster.address),
                    images=write_image_strips)
    assert f"analyses on Ray: {len(a.computed)} jobs computed on 2 nodes" in caplog.text  # spread over both
    assert b.computed == a.computed and not b.cached and b.missing == a.missing
    assert list(b.results) == list(a.results) and list(b.files) == list(a.files)
    assert {k.split("/")[0] for k in b.results} == set(SPECS)
    ours, theirs = _files(local), _files(remote)
    assert sorted(ours) == sorted(theirs) and len(ours) == len(a.computed) + 1  # + index.json
    for name in ours:
        assert ours[name] == theirs[name], name
    assert all(b'"seconds": 0' in v for k, v in ours.items() if k != "index.json")
    im_a, im_b = _images(local), _images(remote)
    assert im_a.keys() == im_b.keys() and im_a
    for name, arrays in im_a.items():
        assert arrays.keys() == im_b[name].keys() and all(np.array_equal(v, im_b[name][k]) for k, v in arrays.items())
    # relate started once every job it needs had ended (and written its file)
    adir = remote.root / "analyses"
    written = {k.split("/")[0]: (adir / f).stat().st_mtime for k, f in b.files.items()}
    needed = [(adir / f).stat().st_mtime for k, f in b.files.items() if k.split("/")[0] in ("transfer", "scores")]
    assert len(needed) == 2 and written["relate"] >= max(needed)
    # a second call reads everything from the cache
    c = analyze(plan, remote, FAST, show_progress=False, threads=1, backend=RayAnalyses(cluster.address))
    assert not c.computed and sorted(c.cached) == sorted(a.computed)


@pytest.mark.slow
def test_cli_analyze_on_ray_gives_the_local_verdicts_and_skips_what_is_missing(cluster, trained, tmp_path):
    """The command line, with a run missing (RI-T of seed 1, unshuffled): the pair analyses of the
    target are skipped with the same reason on both executors, the rest is computed; claims.json is the same."""
    plan, store = trained
    gone = next(r.run_id for r in plan.runs if r.arm == "RI-T" and r.seed == 1 and r.block_size == 16)
    folders = []
    for name in ("local", "ray"):
        s = _copy(store, tmp_path / name)
        shutil.rmtree(s.runs / gone)
        s.root.joinpath("study.json").write_text(
            jsonio.dumps({**jsonio.read(s.root / "study.json"),
                          "analysis": {**jsonio.read(s.root / "study.json")["analysis"], **_fast()}}))
        folders.append(s)
    assert main(["analyze", str(folders[0].root), "--no-progress", "--threads", "1"]) == 0
    assert main(["analyze", str(folders[1].root), "--no-progress", "--threads", "1", "--executor", "ray",
                 "--address", cluster.address]) == 0
    ours, theirs = _files(folders[0]), _files(folders[1])
    assert ours == theirs
    index = jsonio.loads(ours["index.json"])
    assert "pairs-tgt" in index["missing"] and "needs 2 finished P-T and RI-T runs" in index["missing"]["pairs-tgt"]
    claims = jsonio.loads(ours["claims.json"])
    assert claims["verdicts"] and claims == jsonio.loads(theirs["claims.json"])


def _fast() -> dict:
    from transferscope.config import to_dict

    return to_dict(FAST)


@pytest.mark.slow
def test_deciding_in_rounds_on_ray_equals_the_local_rounds(cluster, tiny, decided, tmp_path):  # noqa: F811
    """`run --until-decided --executor ray`: the runs and the analysis jobs of every round as Ray tasks; the rounds,
    the seeds they add and the verdicts are those of the local study."""
    _, cfg = tiny
    local, _, _ = decided
    out = decide_study(cfg, tmp_path / "ray", threads=1, show_progress=False, executor="ray",
                       address=cluster.address, say=lambda s: None, **DESIGN)
    assert [r.added for r in out.record.rounds] == [r.added for r in local.record.rounds]
    assert [r.decisive for r in out.record.rounds] == [r.decisive for r in local.record.rounds]
    assert out.stopped == local.stopped and len(out.record.rounds) >= 2
    assert [v.to_dict() for v in out.verdicts] == [v.to_dict() for v in local.verdicts]
