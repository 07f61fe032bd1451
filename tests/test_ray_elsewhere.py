"""On Ray, the learning-rate choices wait for their candidate runs wherever those train: candidates that another
driver claimed, and stored while this one waited, release the runs that use the choice. (Before the one scheduler,
such runs were reported blocked: "the learning-rate candidates ... did not run".) Checked on an in-process stand-in
for the ``ray`` module: a task runs when it is submitted."""

from __future__ import annotations

import shutil
import sys
import threading
import types

from transferscope.config import load_config
from transferscope.store import Store
from transferscope.study import execute, make_plan
from transferscope.study.ray_executor import execute_ray

from .conftest import tiny_study_toml


def _in_process_ray() -> types.ModuleType:
    ray = types.ModuleType("ray")

    class RayError(Exception):
        pass

    class RayTaskError(RayError):
        pass

    ray.exceptions = types.SimpleNamespace(RayError=RayError, RayTaskError=RayTaskError)
    state = {"up": False}
    ray.is_initialized = lambda: state["up"]
    ray.init = lambda **kw: state.update(up=True)
    ray.shutdown = lambda: state.update(up=False)
    ray.cluster_resources = lambda: {"CPU": 2.0}
    ray.nodes = lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}]
    ray.get_runtime_context = lambda: types.SimpleNamespace(get_node_id=lambda: "node0")

    class Ref:
        def __init__(self, value=None, error=None):
            self.value, self.error = value, error

    class Task:
        def __init__(self, fn):
            self.fn = fn

        def options(self, **kw):
            return self

        def remote(self, *args):
            try:
                return Ref(self.fn(*args))
            except Exception as e:  # a task's exception, as Ray hands it back
                return Ref(error=e)

    def get(ref):
        if ref.error is not None:
            err = RayTaskError(str(ref.error))
            err.cause = ref.error
            raise err
        return ref.value

    ray.remote = Task
    ray.wait = lambda refs, num_returns=1, timeout=None: (refs[:num_returns], refs[num_returns:])
    ray.get = get
    ray.cancel = lambda ref, force=False: None
    return ray


def test_candidates_another_driver_stores_release_the_runs_that_wait_for_their_choice(monkeypatch, tmp_path, folders):
    p = tmp_path / "s.toml"
    p.write_text(tiny_study_toml(*folders))
    plan = make_plan(load_config(p, ["block_sizes=[16]", "basin.checkpoint_epochs=[]", "finetune.lr_grid=[0.01, 0.05]"]))
    ref = Store(tmp_path / "ref")  # the whole study, trained once: what "the other driver" stores
    assert not execute(plan, ref, jobs=1, threads=1, show_progress=False).failed
    candidates = [c.run_id for c in plan.tuning]
    planned = {r.run_id for r in plan.runs}
    # the runs that use the chosen learning rate: known only once the candidates are stored
    waiting = [rid for rid in ref.list_runs() if rid not in planned and rid not in candidates]
    assert candidates and waiting
    store = Store(tmp_path / "r")
    store.root.mkdir()
    for name in ("FORMAT", "threads.json"):
        shutil.copy(ref.root / name, store.root / name)
    for rid in planned:  # the study as it stands: P stored, the choice's candidates claimed elsewhere
        if rid not in candidates:
            shutil.copytree(ref.run_dir(rid), store.run_dir(rid))
    claims = {rid: store.claim(rid, 60, owner="another driver") for rid in candidates}
    assert all(claims.values())

    def the_other_driver_stores_them():
        for rid, claim in claims.items():
            shutil.copytree(ref.run_dir(rid), store.runs / f".x-{rid}")
            (store.runs / f".x-{rid}").rename(store.run_dir(rid))
            claim.release()

    monkeypatch.setitem(sys.modules, "ray", _in_process_ray())
    timer = threading.Timer(1.0, the_other_driver_stores_them)
    timer.start()
    try:
        s = execute_ray(plan, store, threads=1, show_progress=False, heartbeat=0.2, stale_after=60)
    finally:
        timer.join()
    assert not s.blocked and not s.failed
    assert sorted(s.elsewhere) == sorted(candidates)
    assert set(waiting) <= set(s.done)
    assert sorted(store.list_runs()) == sorted(ref.list_runs())
