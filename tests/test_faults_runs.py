"""Faults of runs and of the results folder: a second writer, a resume, a worker killed, damaged or corrupt stored
files, a full or read-only disk, file modes. Each gets a one-line error naming what is wrong and how to recover,
or a recovery, and nothing already written is lost."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transferscope.cli import main
from transferscope.config import load_config
from transferscope.store import Store, StoreError, atomic_write_text
from transferscope.study import execute, make_plan

from .conftest import make_imagefolder, tiny_study_toml

SMALL = ["block_sizes=[16]", "seeds=[0]", "basin.checkpoint_epochs=[]"]


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished 3-run study (P, P-T, RI-T), trained once; tests work on copies (:func:`_copy`)."""
    root = tmp_path_factory.mktemp("faults")
    src = make_imagefolder(root / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(root / "tgt", n_classes=3, per_class=24, seed=2)
    cfg = root / "study.toml"
    cfg.write_text(tiny_study_toml(src, tgt))
    overrides = [*SMALL, f'data.cache_dir="{root / "cache"}"']
    res = root / "res"
    assert main(["run", str(cfg), "--results", str(res), "--jobs", "1", "--threads", "1", "--no-progress",
                 *_sets(overrides)]) == 0
    plan = make_plan(load_config(cfg, overrides))
    return cfg, overrides, res, plan


def _copy(study, tmp_path) -> tuple[Path, Store]:
    res = tmp_path / "res"
    shutil.copytree(study[2], res)
    return res, Store(res)


def _ids(plan):
    pre = plan.runs[0].run_id
    pt = next(r.run_id for r in plan.runs if r.arm == "P-T")
    ri = next(r.run_id for r in plan.runs if r.arm == "RI-T")
    return pre, pt, ri


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns,
                                               p.stat().st_mode)
            for p in sorted(folder.rglob("*"))}


def _one_line(err: str) -> str:
    """The one error line of a command's stderr (``run`` also prints what it is about to do)."""
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------------ 1. the lock

def test_a_second_run_on_a_folder_being_written_is_refused_and_writes_nothing(study, tmp_path, capsys):
    cfg, overrides, _, _ = study
    res, _ = _copy(study, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom transferscope.store import Store\n"
         f"with Store({str(res)!r}).lock():\n    print('locked', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _snapshot(res)
        time.sleep(0.01)  # an mtime written now would differ
        # another study's settings: had it written study.json, the bytes would differ
        rc = main(["run", str(cfg), "--results", str(res), "--no-progress", "--jobs", "1",
                   *_sets([*overrides, "finetune.lr=0.03"])])
        line = _one_line(capsys.readouterr().err)
        assert rc == 2
        assert f"is being written by another process (pid {holder.pid})" in line
        assert _snapshot(res) == before
        rc = main(["run", "--results", str(res), "--rerun", _ids(study[3])[1], "--no-progress"])
        assert rc == 2 and f"(pid {holder.pid})" in _one_line(capsys.readouterr().err)
        assert _snapshot(res) == before
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------------------ 2. resume

def test_resume_is_bitwise_identical_at_the_thread_count_the_study_ran_with(study, tmp_path, monkeypatch):
    """The first call fixes the threads of every run (from the plan and the cores, not from how many runs happen to
    be in flight); a run trained again later, alone and in this process, uses the same count and gives the same
    bytes."""
    cfg, overrides, _, plan = study
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    store = Store(tmp_path / "res")
    s = execute(plan, store, jobs=2, show_progress=False)
    assert not s.failed and len(s.done) == 3
    threads = {r.run_id: store.run_info(r.run_id)["threads"] for r in plan.runs}
    assert set(threads.values()) == {3}  # 6 cores // 2 runs at a time, for every run, whatever ran beside it
    pre, pt, ri = _ids(plan)
    weights = {r: _sha(store.run_dir(r) / "weights.safetensors") for r in (pt, ri)}
    for r in (pt, ri):  # as if killed before these ended
        shutil.rmtree(store.run_dir(r))
    s = execute(plan, store, jobs=1, show_progress=False)
    assert sorted(s.done) == sorted([pt, ri])
    for r in (pt, ri):
        assert store.run_info(r)["threads"] == 3
        assert _sha(store.run_dir(r) / "weights.safetensors") == weights[r], r


# ------------------------------------------------------------------------------------------------ 3. a worker killed

def _kill_env(monkeypatch, run_id: str, times: int, tmp_path: Path) -> None:
    marks = tmp_path / "kills"
    marks.mkdir()
    monkeypatch.setenv("TRANSFERSCOPE_TEST_KILL_WORKER", f"{run_id}:{times}:{marks}")


def test_a_killed_worker_s_run_is_run_again_and_the_others_go_on(study, tmp_path, monkeypatch, capsys):
    cfg, overrides, _, plan = study
    pre, pt, ri = _ids(plan)
    _kill_env(monkeypatch, ri, 1, tmp_path)
    store = Store(tmp_path / "res")
    s = execute(plan, store, jobs=2, threads=1, show_progress=False)
    assert not s.failed and sorted(s.done) == sorted([pre, pt, ri])
    assert len(list((tmp_path / "kills").iterdir())) == 1  # it was killed once
    assert set(s.retried) == {ri} and "killed by SIGKILL" in s.retried[ri][0]
    assert store.run_info(ri)["worker_deaths"] == s.retried[ri]
    assert store.verify_run(ri) == []
    capsys.readouterr()
    assert main(["status", str(store.root), "--runs"]) == 0
    out = capsys.readouterr().out
    assert "3 done, 0 failed" in out
    line = next(x for x in out.splitlines() if ri in x)
    assert "its worker process died before (killed by SIGKILL" in line and "ran again" in line


def test_a_run_whose_worker_dies_every_time_fails_after_bounded_retries(study, tmp_path, monkeypatch, capsys):
    from transferscope.study.runner import WORKER_RETRIES

    cfg, overrides, _, plan = study
    pre, pt, ri = _ids(plan)
    _kill_env(monkeypatch, ri, 99, tmp_path)
    store = Store(tmp_path / "res")
    s = execute(plan, store, jobs=2, threads=1, show_progress=False)
    assert sorted(s.done) == sorted([pre, pt]) and list(s.failed) == [ri]
    assert len(list((tmp_path / "kills").iterdir())) == 1 + WORKER_RETRIES
    assert f"its worker process died {1 + WORKER_RETRIES} times (killed by SIGKILL" in s.failed[ri]
    info = store.run_info(ri)
    assert info["status"] == "failed" and "killed by SIGKILL" in info["reason"] and "--jobs" in info["reason"]
    capsys.readouterr()
    assert main(["status", str(store.root), "--runs"]) == 0
    out = capsys.readouterr().out
    assert "2 done, 1 failed" in out and f"its worker process died {1 + WORKER_RETRIES} times" in out


# ------------------------------------------------------------------------------------------------ 4. artefact hashes

def test_damaged_weights_are_named_never_loaded_and_run_again_on_request(study, tmp_path, capsys):
    from transferscope.study.jobs import Context
    from transferscope.study.registry import SPECS
    from transferscope.study.runner import load_run_model

    cfg, overrides, _, plan = study
    res, store = _copy(study, tmp_path)
    pre, pt, ri = _ids(plan)
    good = {r: _sha(store.run_dir(r) / "weights.safetensors") for r in (pt, ri)}
    w = store.run_dir(pt) / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-100])  # truncated
    w = store.run_dir(ri) / "weights.safetensors"
    b = bytearray(w.read_bytes())
    b[-5] ^= 0x40  # one byte of a weight garbled: still a valid file
    w.write_bytes(bytes(b))
    by_id = plan.by_id()
    for r in (pt, ri):
        with pytest.raises(StoreError) as e:
            load_run_model(store, by_id[r])
        assert str(e.value) == (f"run {r}: weights.safetensors does not match the sha256 recorded when the run ended "
                                f"(truncated, changed or corrupted); it needs to be trained again: transferscope run "
                                f"--results {res} --rerun {r}")
    # an analysis that reads them names the run and the file, and computes nothing from them
    ctx = Context(plan, res, plan.config.analysis)
    (job,) = SPECS["flatness"].jobs(ctx, {})
    with pytest.raises(StoreError, match=f"run {pt}: weights.safetensors does not match"):
        SPECS["flatness"].run(ctx, job, {})
    capsys.readouterr()
    assert main(["status", str(res), "--runs"]) == 0
    out = capsys.readouterr().out
    for r in (pt, ri):
        line = next(x for x in out.splitlines() if x.startswith("  done") and r in x)
        assert "NEEDS RE-RUN: weights.safetensors changed since it ended" in line
        assert f"transferscope run --results {res} --rerun {r}" in out
    # the recovery, as printed: both trained again, identical to what they were
    assert main(["run", "--results", str(res), "--rerun", pt, "--rerun", ri, "--no-progress"]) == 0
    assert "2 runs trained, 1 already there" in capsys.readouterr().out
    for r in (pt, ri):
        assert store.verify_run(r) == [] and _sha(store.run_dir(r) / "weights.safetensors") == good[r]
    assert main(["run", "--results", str(res), "--rerun", "no-such-run", "--no-progress"]) == 2
    assert "--rerun no-such-run: no such run" in _one_line(capsys.readouterr().err)


def test_a_child_of_a_damaged_parent_is_not_trained_from_it(study, tmp_path):
    cfg, overrides, _, plan = study
    res, store = _copy(study, tmp_path)
    pre, pt, ri = _ids(plan)
    shutil.rmtree(store.run_dir(pt))
    w = store.run_dir(pre) / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    s = execute(plan, store, jobs=1, threads=1, show_progress=False)
    assert s.done == [] and pt in s.blocked
    assert f"run {pre}: weights.safetensors does not match" in s.blocked[pt] and f"--rerun {pre}" in s.blocked[pt]
    assert store.run_status(pt) is None  # nothing stored: it trains once P is trained again


def test_damaged_predictions_and_metrics_are_named(study, tmp_path):
    cfg, overrides, _, plan = study
    res, store = _copy(study, tmp_path)
    pre, pt, ri = _ids(plan)
    p = store.run_dir(pt) / "predictions.npz"
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(StoreError, match=f"run {pt}: predictions.npz does not match .* --rerun {pt}$"):
        store.read_npz(pt)
    (store.run_dir(ri) / "metrics.json").unlink()
    with pytest.raises(StoreError, match=f"run {ri}: metrics.json is missing; it needs to be trained again"):
        store.read_json(ri, "metrics.json")


# ------------------------------------------------------------------------------------------------ 5. corrupt JSON

def test_corrupt_run_json_names_the_file_and_the_recovery(study, tmp_path, capsys):
    cfg, overrides, _, plan = study
    res, store = _copy(study, tmp_path)
    pre, pt, ri = _ids(plan)
    (store.run_dir(ri) / "run.json").write_text('{"run_id": "x", "sta')
    capsys.readouterr()
    for argv in (["status", str(res)], ["run", str(cfg), "--results", str(res), "--no-progress",
                                         *_sets(overrides)]):
        assert main(argv) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert line.startswith(f"error: run {ri}: {store.run_dir(ri) / 'run.json'} is not valid JSON (")
        assert line.endswith(f"it needs to be trained again: transferscope run --results {res} --rerun {ri}")
    assert main(["run", "--results", str(res), "--rerun", ri, "--no-progress"]) == 0
    assert store.run_status(ri) == "done"


def test_corrupt_metrics_json_is_named(study, tmp_path, capsys):
    cfg, overrides, _, plan = study
    res, store = _copy(study, tmp_path)
    pre, pt, ri = _ids(plan)
    (store.run_dir(pt) / "metrics.json").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(StoreError, match=f"run {pt}: metrics.json does not match"):
        store.read_json(pt, "metrics.json")
    info = store.run_info(pt)
    del info["artefacts"]  # a run that recorded no hashes: the JSON itself is checked
    (store.run_dir(pt) / "run.json").write_text(__import__("json").dumps(info))
    with pytest.raises(StoreError, match=rf"run {pt}: .*metrics.json is not valid JSON \(.*\); it needs to be "
                                         rf"trained again: transferscope run --results {res} --rerun {pt}"):
        store.read_json(pt, "metrics.json")
    capsys.readouterr()
    assert main(["status", str(res), "--runs"]) == 0  # status still lists every run, and says what it cannot show
    out = capsys.readouterr().out
    assert "3 done" in out and "metrics.json is not valid JSON" in out and f"--rerun {pt}" in out


def test_corrupt_study_json_is_named(study, tmp_path, capsys):
    res, store = _copy(study, tmp_path)
    (res / "study.json").write_text("{\n  \"name\": \"tiny\",\n  oops\n")
    capsys.readouterr()
    for argv in (["status", str(res)], ["analyze", str(res), "--no-progress"], ["report", str(res)],
                 ["run", "--results", str(res), "--rerun", _ids(study[3])[1], "--no-progress"]):
        assert main(argv) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert line.startswith(f"error: {res / 'study.json'} is not valid JSON (Expecting property name enclosed in "
                               "double quotes at line 3 column 3)"), argv
        assert f"transferscope run STUDY.toml --results {res}" in line, argv


def test_corrupt_analysis_files_are_named_with_their_recovery(study, tmp_path, capsys):
    res, store = _copy(study, tmp_path)
    adir = res / "analyses"
    adir.mkdir()
    (adir / "index.json").write_text('{"results": {')
    capsys.readouterr()
    assert main(["report", str(res)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == (f"error: {adir / 'index.json'} is not valid JSON (Expecting property name enclosed in double "
                    f"quotes at line 1 column 14); remove it: transferscope analyze {res} writes it again")
    (adir / "index.json").unlink()
    (adir / "claims.json").write_bytes(b"\x80\x81")
    assert main(["compare", str(res), str(res)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {adir / 'claims.json'} is not valid JSON (not UTF-8") and "analyze" in line


# ------------------------------------------------------------------------------------------------ 6. a full or read-only disk

def _under(path, root: Path) -> bool:
    return str(path).startswith(str(root))


def test_a_full_disk_while_writing_study_json_is_one_line_and_keeps_the_old_file(study, tmp_path, monkeypatch,
                                                                                 capsys):
    cfg, overrides, _, plan = study
    res, store = _copy(study, tmp_path)
    before = _snapshot(res)
    real_fsync = os.fsync

    def full(fd):
        if _under(os.readlink(f"/proc/self/fd/{fd}"), res):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    capsys.readouterr()
    rc = main(["run", str(cfg), "--results", str(res), "--no-progress", *_sets([*overrides, "finetune.lr=0.03"])])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2
    assert line.startswith(f"error: cannot write {res}") and "no space left on device (ENOSPC)" in line
    assert line.endswith("free some space (or use another --results folder) and run the same command again; "
                         "what was written before is kept")
    after = _snapshot(res)
    assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}


def test_a_full_disk_in_the_middle_of_a_study_loses_no_finished_run(study, tmp_path, monkeypatch, capsys):
    cfg, overrides, _, plan = study
    res = tmp_path / "res"
    pre, pt, ri = _ids(plan)
    real_write = os.write

    def full(fd, data):
        if f".tmp-{ri}-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    argv = ["run", str(cfg), "--results", str(res), "--no-progress", "--jobs", "1", "--threads", "1",
            *_sets(overrides)]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write {res / 'runs'}/.tmp-{ri}-") and "(ENOSPC)" in line
    store = Store(res)
    assert store.run_status(ri) is None and not list((res / "runs").glob(".tmp-*"))
    kept = [r for r in (pre, pt) if store.run_status(r) == "done"]
    assert all(store.verify_run(r) == [] for r in kept)
    monkeypatch.undo()
    assert main(argv) == 0
    assert f"{3 - len(kept)} runs trained, {len(kept)} already there" in capsys.readouterr().out


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_results_folder_is_one_line(study, tmp_path, monkeypatch, capsys, code):
    cfg, overrides, _, plan = study
    res, store = _copy(study, tmp_path)
    before = _snapshot(res)
    real_open, real_mkdir = os.open, os.mkdir

    def ro_open(path, flags, *a, **k):
        if _under(os.path.abspath(path), res) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *a, **k)

    def ro_mkdir(path, *a, **k):
        if _under(os.path.abspath(path), res):
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(os, "mkdir", ro_mkdir)
    capsys.readouterr()
    word = {errno.EROFS: "read-only file system (EROFS)", errno.EACCES: "permission denied (EACCES)"}[code]
    for argv in (["run", str(cfg), "--results", str(res), "--no-progress", *_sets(overrides)],
                 ["analyze", str(res), "--no-progress"]):
        assert main(argv) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert line.startswith(f"error: cannot write {res / '.lock'}: {word}"), line
    assert main(["status", str(res)]) == 0  # reading needs no write
    assert _snapshot(res) == before


# ------------------------------------------------------------------------------------------------ 7. the umask

def _modes(folder: Path) -> tuple[set[int], set[int]]:
    files = {stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}
    dirs = {stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")] if p.is_dir()}
    return files, dirs


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_results_follow_the_umask(study, tmp_path, umask):
    cfg, overrides, _, plan = study
    old = os.umask(umask)
    try:
        store = Store(tmp_path / "res")
        s = execute(plan, store, jobs=1, threads=1, show_progress=False)
        assert len(s.done) == 3
        atomic_write_text(store.root / "analyses" / "x.json", "{}")
    finally:
        os.umask(old)
    files, dirs = _modes(store.root)
    assert files == {0o666 & ~umask} and dirs == {0o777 & ~umask}


@pytest.mark.parametrize(("room", "jobs", "expected"), [(None, 4, 4), (10.0, 4, 4), (2.5, 4, 2), (1.5, 4, 1),
                                                          (0.5, 1, 1)])
def test_jobs_are_lowered_to_the_workers_that_fit_in_memory(tmp_path, folders, monkeypatch, caplog, room, jobs,
                                                           expected):
    """Each worker holds the study's domains and its batches (one worker's peak is estimate_memory): --jobs N is
    lowered, with a warning naming the figures, when N workers would not fit."""
    from transferscope.study import plan as plan_mod
    from transferscope.study.pool import jobs_that_fit

    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    plan = make_plan(load_config(p))
    need = plan_mod.estimate_memory(plan.config).total
    monkeypatch.setattr(plan_mod, "available_memory", lambda: None if room is None else int(need * room))
    with caplog.at_level("WARNING"):
        assert jobs_that_fit(plan, jobs) == expected
    warned = [r.getMessage() for r in caplog.records if "--jobs" in r.getMessage()]
    if expected < jobs:
        assert warned and f"--jobs {jobs}" in warned[0] and f"training {expected} run" in warned[0]
    else:
        assert not warned
