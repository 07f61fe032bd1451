"""`analyze --jobs N`: the analysis jobs in N worker processes of this machine, side by side, each once the analyses
it needs have ended, writing the same files as one process at the same thread count (byte for byte but the
timings), and a worker that dies costs only its job (reported missing, computed by the next `analyze`)."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import pytest

from transferscope.api import analysis_backend
from transferscope.config import ConfigError
from transferscope.store import Store
from transferscope.study import jobs as jobs_mod
from transferscope.study.analyze import analyze
from transferscope.study.jobs import LocalAnalyses, Pending, take_ready
from transferscope.study.registry import SPECS

from . import test_analyze_ray
from .test_analyze import FAST
from .test_analyze_ray import _files

trained = test_analyze_ray.trained  # the tiny study of two seeds, trained once per module


def test_jobs_side_by_side_write_the_files_of_one_process(trained, tmp_path, monkeypatch):
    plan, store = trained
    one, two = (Store(shutil.copytree(store.root, tmp_path / n)) for n in ("one", "two"))
    a = analyze(plan, one, FAST, show_progress=False, threads=1)
    assert not a.missing, a.missing

    def not_here(*args, **kw):
        raise AssertionError("a job computed in the driver")

    monkeypatch.setattr(jobs_mod, "compute_local", not_here)
    b = analyze(plan, two, FAST, show_progress=False, threads=1, backend=LocalAnalyses(jobs=2))
    assert b.computed == a.computed and b.missing == a.missing and list(b.results) == list(a.results)
    assert {k.split("/")[0] for k in b.results} == set(SPECS)
    assert _files(one) == _files(two)
    # relate started once the jobs it needs had ended (their files are older than its own)
    adir = two.root / "analyses"
    when = {k: (adir / f).stat().st_mtime_ns for k, f in b.files.items()}
    assert when["relate/all"] >= max(t for k, t in when.items() if k.split("/")[0] in SPECS["relate"].needs)


def _die_in_flatness(ctx, spec, job, results, path):
    """compute_job, except that the worker computing flatness dies as the kernel kills it."""
    if spec.name == "flatness":
        os._exit(9)
    return jobs_mod.compute_job(ctx, spec, job, results, path)


def test_a_worker_that_dies_costs_its_job_and_the_next_analyze_computes_it(trained, tmp_path, monkeypatch):
    plan, store = trained
    s = Store(shutil.copytree(store.root, tmp_path / "s"))
    monkeypatch.setattr(jobs_mod, "compute_job", _die_in_flatness)  # pickled by name: the workers see it too
    a = analyze(plan, s, FAST, show_progress=False, threads=1, backend=LocalAnalyses(jobs=2))
    assert "flatness-tgt" in a.missing and "worker process died" in a.missing["flatness-tgt"]
    assert "flatness/tgt" not in a.results and len(a.results) >= 2  # the fresh pool computed the rest
    for name in (f"{s}/tgt" for s in SPECS if s not in ("transfer", "relate")):  # every job: a result or a reason
        assert (name in a.results) != (name.replace("/", "-") in a.missing), name
    monkeypatch.undo()
    b = analyze(plan, s, FAST, show_progress=False, threads=1, backend=LocalAnalyses(jobs=2))
    assert not b.missing and "flatness/tgt" in b.results
    assert set(b.cached) >= {k for k in a.computed}


def test_jobs_below_one_are_refused():
    with pytest.raises(ConfigError, match="--jobs 0: must be at least 1"):
        analysis_backend("local", jobs=0)
    assert analysis_backend("local", jobs=3) == LocalAnalyses(3)


def test_a_job_waits_for_the_analyses_it_needs():
    """take_ready, what the pool and Ray submit next: relate only once no transfer or scores job is waiting or
    running; a job whose needs can never end is an error, not a hang."""
    jobs = [Pending(SPECS[n], None, None) for n in ("transfer", "scores", "relate", "cka")]
    waiting = dict(enumerate(jobs))
    assert [i for i, _ in take_ready(waiting, [], jobs)] == [0, 1, 3] and list(waiting) == [2]
    assert take_ready(waiting, [1], jobs) == [] and list(waiting) == [2]  # scores still running
    assert [i for i, _ in take_ready(waiting, [3], jobs)] == [2] and not waiting
    a, b = (Pending(SimpleNamespace(name=n, needs=(m,)), None, None) for n, m in (("a", "b"), ("b", "a")))
    with pytest.raises(RuntimeError, match="wait for each other"):
        take_ready({0: a, 1: b}, [], [a, b])


_KILLED_PARENT = """
import concurrent.futures as cf, multiprocessing as mp, os, signal, sys, time
from transferscope.study.jobs import _job_threads
if __name__ == "__main__":
    pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_job_threads, initargs=(1,))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)  # a long job in flight
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)  # analyze killed, as by the OOM killer or kill -9
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc; the death signal is Linux's")
def test_a_worker_dies_with_analyze_when_analyze_is_killed(tmp_path):
    """A worker of the analysis pool does not go on computing, an orphan, when ``analyze`` is killed: it gets the
    parent-death signal its initializer sets."""
    import subprocess
    import sys
    import time

    script = tmp_path / "killed.py"
    script.write_text(_KILLED_PARENT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr
    worker = int(out.stdout.split()[0])
    end = time.monotonic() + 20
    while _alive(worker) and time.monotonic() < end:
        time.sleep(0.1)
    alive = _alive(worker)
    if alive:
        os.kill(worker, 9)
    assert not alive, "the analysis worker outlived analyze"
