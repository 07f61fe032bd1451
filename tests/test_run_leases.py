"""Per-run claims of a results folder (Store.claim): an exclusive create, a heartbeat, a stale timeout."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import time

from transferscope.store import Store


def _claim_in_child(root: str, run_id: str, q) -> None:
    q.put(Store(root).claim(run_id) is not None)


def test_one_claim_per_run(tmp_path):
    store = Store(tmp_path)
    c = store.claim("r1", owner="node-a")
    assert c is not None and c.owned()
    assert store.claim("r1") is None  # held and fresh
    assert store.claim("r2") is not None  # other runs are free
    h = store.claim_holder("r1")
    assert h["owner"] == "node-a" and h["pid"] == os.getpid() and not h["stale"]
    assert store.claimed_live("r1")
    c.release()
    assert store.claim_holder("r1") is None and not store.claimed_live("r1")
    assert store.claim("r1") is not None


def test_claims_race_between_processes(tmp_path):
    """Several processes claim the same run at once: exactly one gets it."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_child, args=(str(tmp_path), "r", q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(results) == [False, False, False, True]


def test_stale_claim_is_taken_over(tmp_path):
    store = Store(tmp_path)
    old = store.claim("r")
    assert store.claim("r", stale_after=60) is None
    past = time.time() - 120
    os.utime(old.path, (past, past))  # its holder stopped beating two minutes ago
    assert store.claim_holder("r", stale_after=60)["stale"]
    new = store.claim("r", stale_after=60)
    assert new is not None and new.owned()
    assert not old.owned()  # the dead holder's claim is gone: it can neither touch nor release the new one
    assert not old.touch()
    old.release()
    assert new.owned()
    assert not list(store.claims.glob(".stale-*"))


def test_heartbeat_keeps_a_claim_fresh(tmp_path):
    store = Store(tmp_path)
    c = pickle.loads(pickle.dumps(store.claim("r")))  # what another process (the trainer) gets
    past = time.time() - 100
    os.utime(c.path, (past, past))
    with c.heartbeat(every=0.05):
        time.sleep(0.3)
    assert time.time() - c.path.stat().st_mtime < 5
    assert store.claim("r", stale_after=60) is None


def test_clean_tmp_keeps_folders_of_live_claims(tmp_path):
    store = Store(tmp_path)
    store.runs.mkdir(parents=True)
    (store.runs / ".tmp-abc-def-0123abcd").mkdir()
    (store.runs / ".tmp-xyz-4567abcd").mkdir()
    (store.runs / ".tmp-removed-xyz-89abcdef").mkdir()
    store.claim("abc-def")
    assert store.clean_tmp(live=store.claimed_live) == 2
    assert [p.name for p in store.runs.glob(".tmp-*")] == [".tmp-abc-def-0123abcd"]


def _plan(tmp_path, folders):
    from transferscope.config import load_config
    from transferscope.study import make_plan

    from .conftest import tiny_study_toml

    cfg = tmp_path / "s.toml"
    cfg.write_text(tiny_study_toml(*folders))
    return make_plan(load_config(cfg, ["seeds=[0]", "block_sizes=[16]"]))


def test_local_study_refused_while_a_ray_study_claims_runs(tmp_path, folders):
    """The local executor (and analyze: both hold the folder's lock) refuses a folder whose runs are claimed by a
    live process; a stale claim (its holder died) does not stop it."""
    import pytest

    from transferscope.store import StoreLocked
    from transferscope.study import execute

    plan = _plan(tmp_path, folders)
    store = Store(tmp_path / "res")
    c = store.claim("some-run", owner="ray driver on node7 (pid 12)")
    with pytest.raises(StoreLocked, match="node7"):
        execute(plan, store, jobs=1, threads=1, show_progress=False)
    assert not store.list_runs()
    past = time.time() - 1000
    os.utime(c.path, (past, past))
    s = execute(plan, store, jobs=1, threads=1, show_progress=False)
    assert s.done and not s.failed


def test_ray_study_refused_while_a_local_study_holds_the_folder(tmp_path, folders):
    import pytest

    # the check comes before Ray joins a cluster (there is none at this address)
    from transferscope.store import StoreLocked
    from transferscope.study import execute

    plan = _plan(tmp_path, folders)
    store = Store(tmp_path / "res")
    with store.lock(), pytest.raises(StoreLocked, match="another process"):
        execute(plan, store, threads=1, show_progress=False, executor="ray", address="127.0.0.1:1")
    assert not store.list_runs() and not store.claims.exists()
