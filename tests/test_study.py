import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from transferscope.cli import main
from transferscope.config import load_config
from transferscope.store import Store, StoreLocked
from transferscope.study import execute, make_plan

from .conftest import tiny_study_toml


def _plan(tmp_path, folders, extra="", overrides=()):
    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders, extra=extra))
    return make_plan(load_config(p, list(overrides)))


def _weights(store, run_id):
    return load_file(str(store.run_dir(run_id) / "weights.safetensors"))


def test_plan_has_parents_first_and_every_arm(tmp_path, folders):
    plan = _plan(tmp_path, folders)
    ids = [r.run_id for r in plan.runs]
    for r in plan.runs:
        if r.parent:
            assert ids.index(r.parent) < ids.index(r.run_id)
    # 1 P + (P-T, RI-T) x 2 blocks x 2 seeds + basin: 1 checkpoint x 2 seeds
    assert len(plan.runs) == 1 + 8 + 2
    assert sum(r.parent_checkpoint == 1.0 for r in plan.runs) == 2


def test_study_runs_then_skips_finished_runs(tmp_path, folders):
    plan = _plan(tmp_path, folders)
    store = Store(tmp_path / "res")
    s1 = execute(plan, store, jobs=1, show_progress=False)
    assert len(s1.done) == len(plan.runs) and not s1.failed
    info = store.run_info(plan.runs[1].run_id)
    assert info["provenance"]["transferscope"] and info["spec"]["seed"] == plan.runs[1].seed
    mtimes = {r: (store.run_dir(r) / "run.json").stat().st_mtime_ns for r in store.list_runs()}
    s2 = execute(plan, store, jobs=1, show_progress=False)
    assert s2.done == [] and len(s2.skipped) == len(plan.runs)
    assert mtimes == {r: (store.run_dir(r) / "run.json").stat().st_mtime_ns for r in store.list_runs()}
    # P-T starts from P (body equal to P's final weights, new head); RI-T from its seeded init
    pt = next(r for r in plan.runs if r.arm == "P-T" and r.parent_checkpoint < 0)
    init = load_file(str(store.run_dir(pt.run_id) / "init.safetensors"))
    p_final = _weights(store, plan.runs[0].run_id)
    assert all(torch.equal(init[k], p_final[k]) for k in init if not k.startswith("head."))
    basin = next(r for r in plan.runs if r.parent_checkpoint == 1.0)
    init_b = load_file(str(store.run_dir(basin.run_id) / "init.safetensors"))
    ckpt = load_file(str(store.run_dir(plan.runs[0].run_id) / "checkpoints" / "epoch_1.safetensors"))
    assert all(torch.equal(init_b[k], ckpt[k]) for k in init_b if not k.startswith("head."))
    assert not all(torch.equal(init_b[k], p_final[k]) for k in init_b if not k.startswith("head."))


def test_diverged_run_is_failed_and_study_goes_on(tmp_path, folders):
    plan = _plan(tmp_path, folders, overrides=["scratch.lr=1e12", "model.norm=\"batchnorm\""])
    store = Store(tmp_path / "res")
    s = execute(plan, store, jobs=1, show_progress=False)
    ri = [r.run_id for r in plan.runs if r.arm == "RI-T"]
    assert set(s.failed) == set(ri)
    assert all("diverged" in store.run_info(r)["reason"] for r in ri)
    assert {r.run_id for r in plan.runs if r.arm != "RI-T"} == set(s.done)
    # failed runs are not retried unless asked
    assert execute(plan, store, jobs=1, show_progress=False).done == []


def test_failed_parent_blocks_its_children(tmp_path, folders):
    plan = _plan(tmp_path, folders, overrides=["pretrain.lr=1e12", "model.norm=\"batchnorm\""])
    s = execute(plan, Store(tmp_path / "res"), jobs=1, show_progress=False)
    assert list(s.failed) == [plan.runs[0].run_id]
    assert set(s.blocked) == {r.run_id for r in plan.runs if r.arm == "P-T"}


def test_lock_refuses_a_second_writer(tmp_path, folders):
    plan = _plan(tmp_path, folders)
    store = Store(tmp_path / "res")
    with store.lock(), pytest.raises(StoreLocked, match=r"being written by another process \(pid \d+\)"):
        execute(plan, Store(tmp_path / "res"), jobs=1, show_progress=False)


def test_parallel_jobs_equal_sequential(tmp_path, folders):
    """Worker processes change nothing but the speed (each run pins its own thread count)."""
    plan = _plan(tmp_path, folders)
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    execute(plan, a, jobs=1, threads=1, show_progress=False)
    execute(plan, b, jobs=2, threads=1, show_progress=False)
    for r in plan.runs:
        wa, wb = _weights(a, r.run_id), _weights(b, r.run_id)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), r.run_id
        ma = json.loads((a.run_dir(r.run_id) / "metrics.json").read_text())
        mb = json.loads((b.run_dir(r.run_id) / "metrics.json").read_text())
        assert ma["test_acc"] == mb["test_acc"]


def test_kill9_mid_study_then_resume(tmp_path, folders):
    """SIGKILL a running study; the next run keeps what was finished, retrains the rest, and the
    results equal those of an uninterrupted study."""
    cfg_path = tmp_path / "study.toml"
    cfg_path.write_text(tiny_study_toml(*folders).replace("epochs = 2\nspeed_epochs = 1\nbatch_size = 8",
                                                            "epochs = 6\nspeed_epochs = 1\nbatch_size = 8"))
    res = tmp_path / "res"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    def cmd_for(results):
        return [sys.executable, "-m", "transferscope.cli", "run", str(cfg_path), "--results", str(results),
                "--jobs", "1", "--threads", "1", "--no-progress"]

    cmd = cmd_for(res)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plan = make_plan(load_config(cfg_path))
    store = Store(res)
    deadline = time.time() + 120
    while time.time() < deadline and len([r for r in store.list_runs()]) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {r: (store.run_dir(r) / "run.json").stat().st_mtime_ns for r in store.list_runs()}
    assert 3 <= len(finished) < len(plan.runs), "the kill should land mid-study"
    assert all(store.run_status(r) == "done" for r in finished)

    rc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    assert not list((res / "runs").glob(".tmp-*"))
    assert all(store.run_status(r.run_id) == "done" for r in plan.runs)
    for r, t in finished.items():  # not retrained
        assert (store.run_dir(r) / "run.json").stat().st_mtime_ns == t
    assert f"{len(plan.runs) - len(finished)} runs trained, {len(finished)} already there" in rc.stdout

    clean = tmp_path / "clean"
    rc2 = subprocess.run(cmd_for(clean), env=env, capture_output=True, text=True, timeout=300)
    assert rc2.returncode == 0, rc2.stderr
    for r in plan.runs:
        wa, wb = _weights(store, r.run_id), _weights(Store(clean), r.run_id)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), r.run_id


def test_cli_status_and_bad_config(tmp_path, folders, capsys):
    plan_path = tmp_path / "study.toml"
    plan_path.write_text(tiny_study_toml(*folders))
    assert main(["run", str(plan_path), "--results", str(tmp_path / "r"), "--jobs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "P-T acc" in out and "tgt" in out
    assert main(["status", str(tmp_path / "r"), "--runs"]) == 0
    assert "11 done, 0 failed, 0 blocked, 0 pending" in capsys.readouterr().out
    assert main(["run", str(plan_path), "--set", "finetune.lr=oops", "--results", str(tmp_path / "r")]) == 2
    assert "finetune.lr: expected a number, got 'oops'" in capsys.readouterr().err


def test_lr_grid_chosen_on_validation_and_winner_reused(tmp_path, folders):
    """Each arm's learning rate is the grid's best on validation accuracy (never test); the winning candidate is
    the first seed's run itself; every seed of every block size uses the chosen rate."""
    from transferscope.study import results_table
    from transferscope.study.tuning import choices, resolve

    plan = _plan(tmp_path, folders, overrides=["finetune.lr_grid=[0.001, 0.05]", "scratch.lr_grid=[0.001, 0.1]",
                                               "basin.checkpoint_epochs=[]"])
    # 2 candidates per arm on the unshuffled target; 8 runs wait for the choice, 2 of which are the winners
    assert len(plan.tuning) == 4 and len(plan.deferred) == 8 and plan.size() == 1 + 4 + 8 - 2
    store = Store(tmp_path / "res")
    summary = execute(plan, store, jobs=1, threads=1, show_progress=False)
    assert not summary.failed and not summary.blocked
    assert len(summary.done) == plan.size()
    resolved = resolve(plan, store)
    assert not resolved.deferred and len(resolved.runs) == 1 + 8
    cs = {c.selection.arm: c for c in choices(plan, store)}
    for arm, c in cs.items():
        assert c.state == "chosen"
        # the chosen rate is the argmax of the stored validation accuracy of the candidates
        accs = {cand.train.lr: store.read_json(cand.run_id, "metrics.json")["val_acc"] for cand in c.selection.candidates}
        assert c.lr == max(accs, key=lambda lr: (accs[lr], -lr))
        main_runs = [r for r in resolved.runs if r.arm == arm]
        assert {r.train.lr for r in main_runs} == {c.lr} and all(not r.train.lr_grid for r in main_runs)
        winner = next(cand for cand in c.selection.candidates if cand.train.lr == c.lr)
        assert winner.run_id in {r.run_id for r in main_runs}
        losers = {cand.run_id for cand in c.selection.candidates} - {winner.run_id}
        assert not losers & {r.run_id for r in main_runs}
    assert all(row["P-T"].n == 2 and row["RI-T"].n == 2 for row in results_table(plan, store))
    # a second call finds everything (choices included) and trains nothing
    again = execute(plan, store, jobs=1, threads=1, show_progress=False)
    assert not again.done and len(again.skipped) == plan.size()


def test_lr_choice_ignores_test_data_and_failed_candidates(tmp_path, folders):
    from transferscope.study.tuning import choose

    plan = _plan(tmp_path, folders, overrides=["scratch.lr_grid=[0.01, 0.02, 0.03]"])
    sel = plan.selections[0]
    store = Store(tmp_path / "res")
    figures = {0.01: (0.5, 1.0, 0.9), 0.02: (0.7, 2.0, 0.1), 0.03: (0.7, 1.5, 0.2)}  # val acc, val loss, test acc
    assert choose(sel, store).state == "pending"
    from transferscope.store import write_json
    for cand in sel.candidates:
        va, vl, ta = figures[cand.train.lr]
        with store.new_run(cand.run_id) as d:
            write_json(d, "metrics.json", {"val_acc": va, "val_loss": vl, "test_acc": ta})
            write_json(d, "run.json", {"run_id": cand.run_id, "status": "done"})
    c = choose(sel, store)
    assert c.state == "chosen" and c.lr == 0.03  # best validation accuracy, tie broken by lower validation loss
    # the winner fails: the next best takes its place; all fail: the choice fails
    import shutil
    shutil.rmtree(store.run_dir(sel.candidates[2].run_id))
    with store.new_run(sel.candidates[2].run_id) as d:
        write_json(d, "run.json", {"run_id": sel.candidates[2].run_id, "status": "failed", "reason": "diverged"})
    assert choose(sel, store).lr == 0.02
    for cand in sel.candidates[:2]:
        shutil.rmtree(store.run_dir(cand.run_id))
        with store.new_run(cand.run_id) as d:
            write_json(d, "run.json", {"run_id": cand.run_id, "status": "failed"})
    assert choose(sel, store).state == "failed"
    summary = execute(plan, store, jobs=1, threads=1, show_progress=False)
    # RI-T at 2 block sizes x 2 seeds, less the first seed's unshuffled slot (that is the failed candidate itself)
    assert len(summary.blocked) == 3
    assert all("RI-T/tgt/b16's grid failed" in why for why in summary.blocked.values())
    assert not summary.failed and len(summary.done) == 1 + 4 + 2
    assert len(summary.done) + len(summary.skipped) + len(summary.blocked) == plan.size()
    from transferscope.study import status_counts
    assert status_counts(plan, store) == {"done": 7, "failed": 3, "blocked": 3, "pending": 0}
    # run again: nothing to train, nothing loaded, the same blocked runs reported
    again = execute(plan, store, jobs=1, threads=1, show_progress=False)
    assert not again.done and len(again.blocked) == 3 and len(again.skipped) == 10
