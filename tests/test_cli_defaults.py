"""What the command line decides before a study trains: the runs side by side (--jobs) follow the chosen device,
what `run --executor ray` says it does, the claim timings of the Ray executor (flags, validation); and the run id
of a given pre-trained model, which no training setting of this study changes."""

from __future__ import annotations

import os

import pytest
import torch

from transferscope import cli
from transferscope.cli import main
from transferscope.config import ConfigError, load_config
from transferscope.store import CLAIM_HEARTBEAT_S, CLAIM_STALE_S, Store
from transferscope.study import make_plan

from .conftest import tiny_study_toml


class _Stop(KeyboardInterrupt):
    """Raised by a stand-in executor once it has seen its arguments (main answers 130, as to Ctrl-C)."""


def _config(tmp_path, folders):
    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    return str(p)


@pytest.fixture
def six_cores_and_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)


def test_default_jobs_follow_the_device_not_the_machine(six_cores_and_a_gpu, monkeypatch):
    assert cli._default_jobs("cpu") == 4  # the cores, at most 4, although CUDA is there
    assert cli._default_jobs("CPU ") == 4
    assert cli._default_jobs("mps") == 4
    assert cli._default_jobs("cuda") == 1 and cli._default_jobs("cuda:1") == 1
    assert cli._default_jobs("auto") == 1 and cli._default_jobs(None) == 1  # auto takes the GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli._default_jobs("auto") == 4


def test_run_device_cpu_on_a_gpu_machine_trains_runs_side_by_side(six_cores_and_a_gpu, monkeypatch, tmp_path,
                                                                  folders, capsys):
    import transferscope.study as study

    seen = {}

    def fake_execute(plan, store, **kw):
        seen.update(kw)
        raise _Stop

    monkeypatch.setattr(study, "execute", fake_execute)
    cfg = _config(tmp_path, folders)
    assert main(["run", cfg, "--results", str(tmp_path / "r"), "--device", "cpu", "--no-progress"]) == 130
    assert seen["jobs"] == 4 and seen["device"] == "cpu"
    assert "(4 at a time)" in capsys.readouterr().err
    # the study's own device counts when there is no --device
    assert main(["run", cfg, "--results", str(tmp_path / "r"), "--set", 'device=cpu', "--no-progress"]) == 130
    assert seen["jobs"] == 4
    assert main(["run", cfg, "--results", str(tmp_path / "r"), "--no-progress"]) == 130  # auto: the GPU
    assert seen["jobs"] == 1


def test_run_on_ray_says_what_ray_does_and_passes_the_claim_timings(monkeypatch, tmp_path, folders, capsys, caplog):
    from transferscope.study import ray_executor

    seen = {}

    def fake_execute_ray(plan, store, **kw):
        seen.update(kw)
        raise _Stop

    monkeypatch.setattr(ray_executor, "execute_ray", fake_execute_ray)
    cfg = _config(tmp_path, folders)
    assert main(["run", cfg, "--results", str(tmp_path / "r"), "--executor", "ray", "--address", "10.0.0.1:6379",
                 "--jobs", "3", "--claim-heartbeat", "2.5", "--claim-stale", "30", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "3 at a time" not in err
    assert "each a Ray task on 10.0.0.1:6379" in err and "the cluster's free CPUs allow" in err
    assert "--jobs 3 is ignored with --executor ray" in caplog.text
    assert seen["heartbeat"] == 2.5 and seen["stale_after"] == 30.0 and seen["address"] == "10.0.0.1:6379"
    # the defaults: the store's
    assert main(["run", cfg, "--results", str(tmp_path / "r"), "--executor", "ray", "--no-progress"]) == 130
    assert (seen["heartbeat"], seen["stale_after"]) == (CLAIM_HEARTBEAT_S, CLAIM_STALE_S)


@pytest.mark.parametrize("flags, named", [
    (["--claim-heartbeat", "10", "--claim-stale", "20"], "--claim-stale 20: must be more than twice --claim-heartbeat"),
    (["--claim-stale", "15"], "--claim-stale 15: must be more than twice --claim-heartbeat (10 s)"),
    (["--claim-heartbeat", "0"], "--claim-heartbeat 0.0: must be a positive"),
    (["--claim-stale", "-5"], "--claim-stale -5.0: must be a positive"),
    (["--claim-heartbeat", "nan"], "--claim-heartbeat nan: must be a positive"),
])
def test_claim_timings_are_validated_before_anything_is_written(tmp_path, folders, capsys, flags, named):
    cfg = _config(tmp_path, folders)
    res = tmp_path / "r"
    assert main(["run", cfg, "--results", str(res), "--executor", "ray", "--no-progress", *flags]) == 2
    assert named in capsys.readouterr().err
    assert not (res / "runs").exists() and not (res / "study.json").exists()


def test_execute_ray_refuses_bad_claim_timings_before_joining_a_cluster(tmp_path, folders):
    import ray

    from transferscope.study.ray_executor import check_claim_timing, execute_ray

    plan = make_plan(load_config(_config(tmp_path, folders)))
    store = Store(tmp_path / "r")
    with pytest.raises(ConfigError, match=r"--claim-stale 20: must be more than twice --claim-heartbeat \(10 s\)"):
        execute_ray(plan, store, heartbeat=10, stale_after=20, address="127.0.0.1:1", show_progress=False)
    assert not ray.is_initialized() and not (store.root / "runs").exists()
    check_claim_timing(10, 20.5)  # just above twice the period
    check_claim_timing(0.2, 1)


def _given_weights(tmp_path, folders):
    from tests.test_byo_model import FACTORY, _study, _weights

    _, w = _weights(tmp_path)
    model = f'[model]\nname = "{FACTORY}"\nhead = "classifier"\nweights = "{w}"\nkwargs = {{width = 6}}\n'
    return _study(tmp_path, folders, model)


PRECISION = [f"{t}.precision=bf16" for t in ("pretrain", "finetune", "scratch")]  # what --precision bf16 sets


def test_precision_does_not_change_the_id_of_a_given_pretrained_model(tmp_path, folders):
    """A given P (model.weights) is not trained here: --precision leaves its id, as [pretrain] does; the runs this
    study trains (P-T, RI-T) get their own ids off fp32."""
    path = _given_weights(tmp_path, folders)
    fp32, bf16 = make_plan(load_config(path)), make_plan(load_config(path, PRECISION))
    assert fp32.pretrain().run_id == bf16.pretrain().run_id
    assert make_plan(load_config(path, ["pretrain.precision=fp16"])).pretrain().run_id == fp32.pretrain().run_id
    a, b = ({r.label: r.run_id for r in p.runs if r.arm != "P"} for p in (fp32, bf16))
    assert a.keys() == b.keys() and all(a[k] != b[k] for k in a)


def test_precision_changes_the_id_of_a_pretrained_model_trained_here(tmp_path, folders):
    path = _config(tmp_path, folders)
    fp32, bf16 = make_plan(load_config(path)), make_plan(load_config(path, PRECISION))
    assert fp32.pretrain().run_id != bf16.pretrain().run_id
    assert make_plan(load_config(path, ["finetune.precision=bf16"])).pretrain().run_id == fp32.pretrain().run_id


@pytest.fixture
def ray_calls(monkeypatch):
    """A stand-in for the Ray executor: the keywords of its last call; it returns "ray summary"."""
    from transferscope.study import ray_executor

    seen = {}

    def fake_execute_ray(plan, store, **kw):
        seen.clear()
        seen.update(kw)
        return "ray summary"

    monkeypatch.setattr(ray_executor, "execute_ray", fake_execute_ray)
    return seen


def test_the_python_api_passes_the_claim_timings_to_ray(tmp_path, folders, ray_calls):
    from transferscope.study import runner

    plan = make_plan(load_config(_config(tmp_path, folders)))
    store = Store(tmp_path / "r")
    assert runner.execute(plan, store, executor="ray", heartbeat=3.0, stale_after=40.0) == "ray summary"
    assert (ray_calls["heartbeat"], ray_calls["stale_after"]) == (3.0, 40.0)
    runner.execute(plan, store, executor="ray")
    assert "heartbeat" not in ray_calls and "stale_after" not in ray_calls  # execute_ray's own defaults


def test_run_study_in_python_takes_the_executor(tmp_path, folders, ray_calls):
    from transferscope import api

    out = api.run_study(_config(tmp_path, folders), tmp_path / "r", executor="ray", address="127.0.0.1:1",
                        heartbeat=2.0, stale_after=30.0, show_progress=False)
    assert out == "ray summary"
    assert (ray_calls["address"], ray_calls["heartbeat"], ray_calls["stale_after"]) == ("127.0.0.1:1", 2.0, 30.0)


def test_a_folder_that_is_not_a_study_is_checked_once_with_one_message(monkeypatch, tmp_path, capsys):
    """One check of a study folder (api.study_folder), shared by the command line and the API: `analyze` checks
    the folder once (in analyze_study), and every command that reads a folder says the same."""
    from transferscope import api

    calls = []
    check = api.study_folder
    monkeypatch.setattr(api, "study_folder", lambda results: calls.append(results) or check(results))
    empty = tmp_path / "empty"
    empty.mkdir()
    said = f"error: {empty}: no study.json; is this a results folder written by 'transferscope run'?"
    assert main(["analyze", str(empty), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == said and len(calls) == 1
    assert main(["status", str(empty)]) == 2
    assert capsys.readouterr().err.strip() == said
    assert main(["run", "--results", str(empty), "--rerun", "x", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == said
    with pytest.raises(ConfigError, match="no study.json"):
        api.analyze_study(empty)
