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
from transferscope.study import execute, make_plan, results_table

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
    rows = results_table(plan, store)
    assert all(row["P-T"].n == 2 and row["RI-T"].n == 2 for row in rows)
    # each row's test images are the target's test split, and one run's test noise is the binomial sd on them
    import math

    from transferscope.study.artefacts import domain_data
    from transferscope.study.summary import test_noise

    n = len(domain_data(plan.config.targets[0], plan.config.data).test)
    for row in rows:
        a = sum(s.test_acc for arm in ("P-T", "RI-T") for s in row[arm].per_seed) / 4
        assert row["n_test"] == n and test_noise(row) == pytest.approx(math.sqrt(a * (1 - a) / n))
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


def test_one_standard_error_rule_takes_the_smallest_rate_within_noise_of_the_best(tmp_path, folders):
    from dataclasses import replace

    from transferscope.store import write_json
    from transferscope.study.tuning import choose

    plan = _plan(tmp_path, folders, overrides=["scratch.lr_grid=[0.01, 0.02, 0.03]"])
    sel = plan.selections[0]
    assert sel.rule == "best"
    store = Store(tmp_path / "res")
    n_val = sel.candidates[0].domain.n_val_per_class * 3  # 3 classes: 12 validation images
    se = (0.75 * 0.25 / n_val) ** 0.5
    figures = {0.01: 0.75 - 1.2 * se, 0.02: 0.75 - 0.8 * se, 0.03: 0.75}
    for cand in sel.candidates:
        with store.new_run(cand.run_id) as d:
            write_json(d, "metrics.json", {"val_acc": figures[cand.train.lr], "val_loss": 1.0, "num_classes": 3})
            write_json(d, "run.json", {"run_id": cand.run_id, "status": "done"})
    assert choose(sel, store).lr == 0.03
    c = choose(replace(sel, rule="one-se"), store)
    assert c.lr == 0.02 and c.best == 0.03  # 0.01 lies more than one SE below the best
    assert c.edge == "largest"  # the best candidate is the grid's largest: the optimum may lie above it
    # a candidate within noise of the best that did not fit its training data is passed over
    d = store.run_dir(sel.candidates[1].run_id)
    write_json(d, "metrics.json", {"val_acc": figures[0.02], "val_loss": 1.0, "num_classes": 3, "train_acc_final": 0.5})
    assert choose(replace(sel, rule="one-se"), store).lr == 0.03
    one_se = make_plan(load_config(tmp_path / "study.toml", ["scratch.lr_grid=[0.01, 0.02]", "lr_rule=\"one-se\""]))
    assert {s.rule for s in one_se.selections} == {"one-se"}


# ---------------------------------------------------------------- issue 10: what a run records, and the flags


def _small_plan(tmp_path, folders, *overrides):
    return _plan(tmp_path, folders, overrides=["block_sizes=[16]", "seeds=[0]", "basin.checkpoint_epochs=[]",
                                               *overrides])


def test_final_train_accuracy_equals_the_saved_weights_on_the_train_split(tmp_path, folders):
    from transferscope.data import load_domain
    from transferscope.models import to_input
    from transferscope.study.runner import load_run_model

    plan = _plan(tmp_path, folders, overrides=["seeds=[0]", "basin.checkpoint_epochs=[]"])
    store = Store(tmp_path / "res")
    execute(plan, store, jobs=1, threads=1, show_progress=False)
    for spec in plan.runs:
        m = store.read_json(spec.run_id, "metrics.json")
        data = load_domain(spec.domain, spec.data)
        if spec.arm != "P":
            data = data.shuffled(spec.block_size, spec.data.shuffle_seed)
        model = load_run_model(store, spec).eval()
        with torch.no_grad():
            logits = torch.cat([model(to_input(data.train.x[i : i + 50])) for i in range(0, len(data.train), 50)])
        assert m["train_acc_final"] == pytest.approx((logits.argmax(1) == data.train.y).double().mean().item(),
                                                     abs=1e-6), spec.run_id
        assert m["train_loss_final"] == pytest.approx(
            torch.nn.functional.cross_entropy(logits, data.train.y).item(), rel=1e-4)
        assert m["num_classes"] == data.num_classes and "train_acc_last_epoch" in m


def test_artefact_hashes_recorded_and_verified(tmp_path, folders, capsys):
    import hashlib

    from transferscope.store import RESULTS_FORMAT

    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    res = tmp_path / "r"
    args = ["--set", "block_sizes=[16]", "--set", "seeds=[0]", "--set", "basin.checkpoint_epochs=[]"]
    assert main(["run", str(p), "--results", str(res), "--jobs", "1", "--no-progress", *args]) == 0
    assert (res / "FORMAT").read_text().strip() == str(RESULTS_FORMAT)
    store = Store(res)
    plan = make_plan(load_config(p, [a for a in args if a != "--set"]))
    pre = plan.runs[0]
    hashes = store.artefact_hashes(pre.run_id)
    assert set(hashes) == {"init.safetensors", "weights.safetensors", "checkpoints/epoch_0.safetensors",
                           "checkpoints/epoch_1.safetensors", "metrics.json", "history.json", "predictions.npz"}
    for name, digest in hashes.items():
        assert hashlib.sha256((store.run_dir(pre.run_id) / name).read_bytes()).hexdigest() == digest
    assert all(store.verify_run(r.run_id) == [] for r in plan.runs)
    capsys.readouterr()
    # a truncated weights file and a changed checkpoint: the run is named as needing a re-run, with the files
    w = store.run_dir(pre.run_id) / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    (store.run_dir(pre.run_id) / "checkpoints" / "epoch_0.safetensors").unlink()
    assert store.verify_run(pre.run_id) == ["checkpoints/epoch_0.safetensors", "weights.safetensors"]
    assert store.artefact_hashes(pre.run_id) == hashes  # the record is what the run wrote, not what is there now
    assert main(["status", str(res), "--runs"]) == 0
    out = capsys.readouterr().out
    assert f"{pre.run_id}: checkpoints/epoch_0.safetensors, weights.safetensors changed since the run ended" in out
    assert "NEEDS RE-RUN" in out and "[changed-artefacts]" in out
    assert store.verify_run("no-such-run") == [] and store.artefact_hashes("no-such-run") == {}


def test_results_folder_of_an_older_format_is_refused(tmp_path, folders, capsys):
    """A folder written before run ids left out default fields (no FORMAT file, runs stored) would look empty:
    run, status and analyze refuse it with a message; nothing is trained or rewritten."""
    from transferscope.config import to_dict
    from transferscope.store import StoreFormatError, dumps, write_json

    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    res = tmp_path / "old"
    old_run = res / "runs" / "P-imagefolder-b16-s0-0123456789"
    old_run.mkdir(parents=True)
    write_json(old_run, "run.json", {"status": "done"})
    (res / "study.json").write_text(dumps(to_dict(load_config(p))))
    study_json = (res / "study.json").read_text()
    capsys.readouterr()
    for argv in (["run", str(p), "--results", str(res), "--no-progress"], ["run", str(p), "--results", str(res),
                 "--dry-run"], ["status", str(res)], ["analyze", str(res), "--no-progress"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"results folder {res} was written by an older version of transferscope" in err, argv
        assert "new results folder" in err
        assert "runs copied from a folder of format 2 need its FORMAT file beside them" in err  # the other way out
    assert Store(res).list_runs() == [old_run.name] and (res / "study.json").read_text() == study_json
    assert not (res / "FORMAT").exists()
    with pytest.raises(StoreFormatError, match="older version"):
        execute(make_plan(load_config(p)), Store(res), jobs=1, show_progress=False)
    (res / "FORMAT").write_text("99\n")
    with pytest.raises(StoreFormatError, match="newer version"):
        Store(res).check_format()
    (res / "FORMAT").write_text("1\n")  # a format named in the folder is not a copy that lost its FORMAT file
    with pytest.raises(StoreFormatError, match=r"format 1;.*wrote it\.$") as e:
        Store(res).check_format()
    assert "FORMAT file beside them" not in str(e.value)
    Store(tmp_path / "fresh").check_format()  # a new (or run-less) folder is fine


def _fake_done(store, spec, metrics, num_classes=3):
    """Store a finished run by hand (metrics only), with its artefact hashes recorded as run_one does."""
    from transferscope.store import hash_artefacts, write_json

    with store.new_run(spec.run_id) as d:
        write_json(d, "metrics.json", {"num_classes": num_classes, **metrics})
        write_json(d, "run.json", {"run_id": spec.run_id, "status": "done", "num_classes": num_classes,
                                   "artefacts": hash_artefacts(d)})


def test_learning_rate_at_the_edge_of_its_grid_is_warned(tmp_path, folders):
    from transferscope.study.summary import flags
    from transferscope.study.tuning import choose, edge_warnings, format_choices

    plan = _plan(tmp_path, folders, overrides=["scratch.lr_grid=[0.01, 0.02, 0.03]", "finetune.lr_grid=[0.01, 0.02]"])
    store = Store(tmp_path / "res")
    ri = next(s for s in plan.selections if s.arm == "RI-T")
    pt = next(s for s in plan.selections if s.arm == "P-T")
    assert edge_warnings(plan, store) == [] and not choose(ri, store).at_edge  # pending: no warning
    for cand, va in zip(ri.candidates, (0.5, 0.8, 0.6), strict=True):  # the middle one wins
        _fake_done(store, cand, {"val_acc": va, "val_loss": 1.0})
    for cand, va in zip(pt.candidates, (0.5, 0.8), strict=True):  # the largest wins
        _fake_done(store, cand, {"val_acc": va, "val_loss": 1.0})
    c_ri, c_pt = choose(ri, store), choose(pt, store)
    assert (c_ri.lr, c_ri.at_edge, c_ri.edge) == (0.02, False, "")
    assert (c_pt.lr, c_pt.at_edge, c_pt.edge) == (0.02, True, "largest") and c_pt.to_dict()["at_edge"] is True
    (w,) = edge_warnings(plan, store)
    assert "P-T on tgt (b16): 0.02 is the largest of its grid [0.01, 0.02]" in w and "finetune.lr_grid" in w
    assert "(the largest of the grid)" in format_choices([c_pt, c_ri])
    assert [(f.kind, f.arm, f.value) for f in flags(plan, store)] == [("lr-at-edge", "P-T", 0.02)]
    # the smallest candidate winning is the other edge
    import shutil
    for cand, va in zip(ri.candidates, (0.9, 0.8, 0.6), strict=True):
        shutil.rmtree(store.run_dir(cand.run_id))
        _fake_done(store, cand, {"val_acc": va, "val_loss": 1.0})
    assert choose(ri, store).edge == "smallest" and len(edge_warnings(plan, store)) == 2
    assert "below it: extend scratch.lr_grid" in "".join(edge_warnings(plan, store))


def test_flags_underfit_runs_and_uninformative_targets(tmp_path, folders):
    """Underfit: final training accuracy under the threshold, unshuffled only; uninformative: P-T's mean test
    accuracy unshuffled under twice chance."""
    from transferscope.study.summary import UNDERFIT_TRAIN_ACC, flags, format_flags, uninformative_threshold

    plan = _plan(tmp_path, folders, overrides=["basin.checkpoint_epochs=[]"])
    store = Store(tmp_path / "res")
    low = {}
    for r in plan.runs:
        acc = 0.5 if r.arm == "RI-T" and r.seed == 1 else 0.95  # RI-T seed 1 underfits, at b16 and at b4
        low[r.run_id] = acc < UNDERFIT_TRAIN_ACC and r.block_size == 16
        test = 0.6 if r.arm == "P-T" else 0.5  # P-T mean 0.6 < 2/3: uninformative with 3 classes
        _fake_done(store, r, {"train_acc_final": acc, "test_acc": test, "speed_mean_acc_k": 0.5,
                              "speed_steps_to_frac": 3.0})
    fs = flags(plan, store)
    under = [f for f in fs if f.kind == "underfit"]
    assert {f.run_id for f in under} == {rid for rid, v in low.items() if v} and len(under) == 1
    assert under[0].value == 0.5 and under[0].threshold == UNDERFIT_TRAIN_ACC and under[0].block_size == 16
    (un,) = [f for f in fs if f.kind == "uninformative-target"]
    assert (un.target, un.value, un.threshold) == ("tgt", pytest.approx(0.6), pytest.approx(2 / 3))
    assert len(fs) == 2 and "[underfit]" in format_flags(fs) and "tells little about transfer" in format_flags(fs)
    assert un.to_dict()["kind"] == "uninformative-target"
    assert uninformative_threshold(10) == pytest.approx(0.2) and uninformative_threshold(2) == pytest.approx(0.75)
    # P-T at 0.7 > 2/3: informative; a stricter threshold flags more runs
    import shutil
    for r in plan.runs:
        if r.arm == "P-T" and r.block_size == 16:
            shutil.rmtree(store.run_dir(r.run_id))
            _fake_done(store, r, {"train_acc_final": 0.95, "test_acc": 0.7})
    assert not [f for f in flags(plan, store) if f.kind == "uninformative-target"]
    assert len([f for f in flags(plan, store, min_train_acc=0.99) if f.kind == "underfit"]) == 4  # P-T, RI-T x 2 seeds


def test_results_table_keeps_each_seed(tmp_path, folders):
    from transferscope.vocab.records import SeedResult

    plan = _plan(tmp_path, folders, overrides=["basin.checkpoint_epochs=[]"])
    store = Store(tmp_path / "res")
    for r in plan.runs:
        if r.arm != "P" and not (r.arm == "RI-T" and r.block_size == 4 and r.seed == 1):  # one run missing
            _fake_done(store, r, {"test_acc": 0.5 + 0.1 * r.seed + (r.arm == "P-T") * 0.2 + r.block_size / 100,
                                  "speed_mean_acc_k": 0.3 + r.seed / 10, "speed_steps_to_frac": None})
    rows = {(x["target"], x["block_size"]): x for x in results_table(plan, store)}
    cell = rows[("tgt", 16)]["P-T"]
    assert cell.per_seed == (SeedResult(0, pytest.approx(0.86), 0.3, pytest.approx(float("nan"), nan_ok=True)),
                             SeedResult(1, pytest.approx(0.96), 0.4, pytest.approx(float("nan"), nan_ok=True)))
    assert cell.acc_mean == pytest.approx(sum(s.test_acc for s in cell.per_seed) / 2) and cell.n == 2
    assert [s.seed for s in rows[("tgt", 4)]["RI-T"].per_seed] == [0] and rows[("tgt", 4)]["RI-T"].n == 1
    seed, acc, k, steps = rows[("tgt", 4)]["RI-T"].per_seed[0]  # a plain tuple too
    assert (seed, acc, k) == (0, pytest.approx(0.54), 0.3)


def test_a_cell_mean_and_spread_read_the_finite_seeds_and_no_spread_from_one():
    """The results table's mean and sample standard deviation (ddof 1) of a cell's seeds: missing and non-finite
    values are left out; one value has no spread (NaN, shown as n/a), computed without numpy's warning."""
    import math
    import warnings

    from transferscope.study.summary import _mean_std

    m, s = _mean_std([1.0, None, 3.0, float("nan")])
    assert (m, s) == (2.0, pytest.approx(math.sqrt(2.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deviation of one value is not computed (and warned about), it is NaN
        m1, s1 = _mean_std([5.0, float("inf")])
    assert m1 == 5.0 and math.isnan(s1)
    assert all(math.isnan(x) for x in _mean_std([None, float("nan")]))
