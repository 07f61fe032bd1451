"""Devices: every analysis computes on the device it is given (run under a "meta" default device, where any tensor
created without one has no data, so that one is found), the --device names and their errors, the devices of
the runs trained side by side, what run.json records, and that neither device nor fp32 changes a run id.

No GPU runs here: CUDA paths are covered on the CPU (device names, the spreading of runs over GPUs with the GPU
count given)."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from transferscope.config import ConfigError, ModelConfig, load_config
from transferscope.devices import DeviceError, device_slots, library_versions, resolve_device
from transferscope.models import create_model
from transferscope.study.registry import get_analysis, list_analyses

from .conftest import tiny_study_toml, trained_model
from .test_contract import OPTIONS


@contextlib.contextmanager
def meta_default():
    """Any tensor created without a device lands on "meta" (no data): using it with real tensors raises, and a
    result read from it (``.item()``, ``.numpy()``) fails."""
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


def _json(result) -> str:
    return json.dumps(result.to_dict(), sort_keys=True, default=str)


@pytest.fixture(scope="module")
def models(small_domain):
    a, _ = trained_model(small_domain, 0)
    b, _ = trained_model(small_domain, 1)
    bn, _ = trained_model(small_domain, 2, norm="batchnorm")
    bn2 = create_model(ModelConfig(blocks=[1, 1], width=8, norm="batchnorm"), 1, 3, seed=3)
    return a, b, bn, bn2


def test_the_meta_default_catches_a_tensor_made_without_a_device():
    with meta_default(), pytest.raises((RuntimeError, NotImplementedError)):
        torch.zeros(3).sum().item()
    assert torch.zeros(1).device.type == "cpu"  # restored


@pytest.mark.parametrize("name", [s.name for s in list_analyses() if s.kernel])
def test_every_analysis_computes_on_the_device_given(name, models, small_domain):
    """Each registered analysis (mistakes, CKA, distance, barrier, criticality, flatness/Hessian, gradient
    stability, principal gradient, transferability scores) with device="cpu" under the meta default gives the
    result it gives on the CPU as usual."""
    a, b, _, _ = models
    opts = dict(OPTIONS.get(name, {}))
    if name == "scores":
        opts["source_x"] = small_domain.val.x  # the MMD branch too
    want = get_analysis(name).kernel(a, b, small_domain, seed=3, **opts)
    with meta_default():
        got = get_analysis(name).kernel(a, b, small_domain, seed=3, device="cpu", **opts)
    assert _json(got) == _json(want)
    assert all(p.device.type == "cpu" for m in (a, b) for p in m.parameters())  # the models given are unchanged


@pytest.mark.parametrize("how", ["batchnorm-recompute", "batchnorm-interpolate", "batched"])
def test_every_barrier_path_computes_on_the_device_given(how, models, small_domain):
    from transferscope.analyses.barrier import interpolate

    a, b, bn, bn2 = models
    x, y = (bn, bn2) if how.startswith("batchnorm") else (a, b)
    kw = ({"bn_policy": how.split("-")[1], "bn_batches": 2, "batch_size": 16} if how.startswith("batchnorm")
          else {"batched": True, "chunk_points": 2})
    want = interpolate(x, y, small_domain.test, points=3, train_split=small_domain.train, seed=1, **kw)
    with meta_default():
        got = interpolate(x, y, small_domain.test, points=3, train_split=small_domain.train, seed=1, **kw)
    assert _json(got) == _json(want)
    assert all(v == v for v in got.loss)  # numbers, not NaN from a failed pass


def test_cka_and_power_iteration_helpers_follow_their_inputs(small_domain):
    from transferscope.analyses.cka import LinearCKAAccumulator, linear_cka
    from transferscope.analyses.flatness import power_iteration

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 5, generator=g), torch.randn(40, 7, generator=g)
    want = float(linear_cka(x, y))
    acc = LinearCKAAccumulator(batch_size=8)
    acc.update(x, y)
    ref = {k: float(v) for k, v in acc.compute().items()}
    mat = torch.diag(torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64))
    with meta_default():
        assert float(linear_cka(x, y)) == want
        acc = LinearCKAAccumulator(batch_size=8)
        acc.update(x, y)
        assert {k: float(v) for k, v in acc.compute().items()} == ref
        lam, _, ok = power_iteration(lambda v: mat @ v, 3, iters=200, tol=1e-9, device="cpu")
    assert ok and lam == pytest.approx(3.0, rel=1e-6)


def test_a_device_that_is_not_there_is_an_error_naming_it(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else
                                      torch.device("mps") if torch.backends.mps.is_available() else torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match=f"device '{name}' is not available"):
            resolve_device(name)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="device 'mps' is not available"):
        resolve_device("mps")
    assert resolve_device("auto") == torch.device("cpu")  # auto: the CPU only where there is nothing else
    with pytest.raises(DeviceError, match="device 'gpu0': unknown"):
        resolve_device("gpu0")
    assert issubclass(DeviceError, ConfigError)  # the command line prints it as one line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match="has 2 CUDA devices"):
        resolve_device("cuda:2")


def test_runs_are_spread_over_the_gpus_and_share_them(monkeypatch):
    assert device_slots("cpu", 3) == ["cpu"]  # the CPU's side-by-side runs are --jobs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    slots = device_slots("cuda", 2)
    assert slots == [f"cuda:{i % 3}" for i in range(6)]  # worker i on cuda:(i mod n), two runs per GPU
    assert device_slots("auto", 1) == ["cuda:0", "cuda:1", "cuda:2"]
    assert device_slots("cuda:2", 2) == ["cuda:2", "cuda:2"]  # a named GPU keeps them all
    with pytest.raises(ConfigError, match="runs-per-device 0"):
        device_slots("cuda", 0)


def test_neither_the_device_nor_fp32_changes_a_run_id_and_bf16_does(tmp_path, folders):
    from transferscope.study import make_plan

    src, tgt = folders
    p = tmp_path / "s.toml"
    p.write_text(tiny_study_toml(src, tgt))
    ids = [r.run_id for r in make_plan(load_config(p)).runs]
    assert [r.run_id for r in make_plan(load_config(p, ["device=cpu"])).runs] == ids
    assert [r.run_id for r in make_plan(load_config(p, ["finetune.precision=fp32"])).runs] == ids
    bf = {r.arm: r.run_id for r in make_plan(load_config(p, ["finetune.precision=bf16"])).runs}
    before = {r.arm: r.run_id for r in make_plan(load_config(p)).runs}
    assert bf["P"] == before["P"] and bf["P-T"] != before["P-T"] and bf["RI-T"] == before["RI-T"]
    with pytest.raises(ConfigError, match="device"):
        load_config(p, ["device=gpu"])
    with pytest.raises(ConfigError, match="precision"):
        load_config(p, ["finetune.precision=fp8"])


def test_versions_record_the_libraries():
    v = library_versions()
    import numpy

    assert v["torch"] == torch.__version__ and v["numpy"] == numpy.__version__ and v["python"]
    assert ("cuda" in v) == bool(torch.version.cuda)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny study, trained once (on the CPU, named with --device's API twin) for the tests below."""
    import os

    from transferscope.store import Store
    from transferscope.study import execute, make_plan

    from .conftest import make_imagefolder

    tmp = tmp_path_factory.mktemp("dev")
    src = make_imagefolder(tmp / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(tmp / "tgt", n_classes=3, per_class=24, seed=2)
    p = tmp / "study.toml"
    p.write_text(tiny_study_toml(src, tgt))
    os.environ["TRANSFERSCOPE_CACHE"] = str(tmp / "cache")
    plan = make_plan(load_config(p))
    store = Store(tmp / "res")
    s = execute(plan, store, jobs=1, show_progress=False, device="cpu")
    assert not s.failed and not s.blocked
    return plan, store, tmp


def test_run_json_records_device_precision_and_versions(finished):
    plan, store, _ = finished
    for r in plan.runs:
        info = store.run_info(r.run_id)
        assert info["device"] == "cpu" and info["precision"] == "fp32" and info["deterministic"] is False
        assert info["versions"] == library_versions()


def test_analyze_computes_every_analysis_on_the_device_given(finished, tmp_path):
    """analyze() through the registry of specs, with device="cpu" under the meta default: every spec computes
    (none fails on a tensor made without the device), with the results of an analysis run as usual."""
    import shutil

    from transferscope.store import Store
    from transferscope.study.analyze import analyze

    from .test_analyze import FAST

    plan, store, _ = finished
    ref_store = Store(shutil.copytree(store.root, tmp_path / "ref"))
    ref = analyze(plan, ref_store, FAST, show_progress=False)
    with meta_default():
        got = analyze(plan, store, FAST, show_progress=False, device="cpu")
    assert not any(v.startswith("failed") or v.startswith("not computed") for v in got.missing.values()), got.missing
    assert got.missing == ref.missing and sorted(got.computed) == sorted(ref.computed)
    assert {"cka", "barrier", "criticality", "flatness", "stability", "principal", "distance", "mistakes",
            "scores"} <= {k.split("/")[0] for k in got.results}
    for k, v in ref.results.items():
        assert _json(got.results[k]) == _json(v), k


def test_the_command_line_refuses_a_device_that_is_not_there(finished, monkeypatch, capsys):
    from transferscope.cli import main

    plan, store, tmp = finished
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = sorted(p.name for p in store.root.iterdir())
    assert main(["run", str(tmp / "study.toml"), "--results", str(store.root), "--device", "cuda:1",
                 "--no-progress"]) == 2
    assert "device 'cuda:1' is not available" in capsys.readouterr().err
    assert sorted(p.name for p in store.root.iterdir()) == before  # nothing written
    assert main(["analyze", str(store.root), "--device", "cuda", "--no-progress"]) == 2
    assert "device 'cuda' is not available" in capsys.readouterr().err
    # --device cpu on the finished study: nothing to train, the run ids are the same
    assert main(["run", str(tmp / "study.toml"), "--results", str(store.root), "--device", "cpu",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "0 runs trained" in out


def test_precision_flag_sets_every_table(finished, monkeypatch):
    from transferscope import cli

    plan, store, tmp = finished
    seen = {}

    def fake_execute(plan, store, **kw):
        seen["plan"], seen["kw"] = plan, kw
        raise SystemExit(0)

    monkeypatch.setattr("transferscope.study.execute", fake_execute)
    with pytest.raises(SystemExit):
        cli.main(["run", str(tmp / "study.toml"), "--results", str(tmp / "bf"), "--precision", "bf16",
                  "--deterministic", "--runs-per-device", "2", "--no-progress"])
    cfg = seen["plan"].config
    assert (cfg.pretrain.precision, cfg.finetune.precision, cfg.scratch.precision) == ("bf16",) * 3
    assert {r.run_id for r in seen["plan"].runs}.isdisjoint(r.run_id for r in plan.runs)  # its own run ids
    assert seen["kw"]["deterministic"] is True and seen["kw"]["runs_per_device"] == 2


def test_deterministic_turns_on_deterministic_algorithms_on_a_gpu_only(monkeypatch):
    from transferscope.devices import set_deterministic

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic)
    try:
        set_deterministic("cpu", True)  # the CPU is deterministic as it is: nothing changes
        assert not torch.are_deterministic_algorithms_enabled()
        set_deterministic(torch.device("cuda", 0), False)
        assert not torch.are_deterministic_algorithms_enabled()
        set_deterministic(torch.device("cuda", 0), True)  # sets flags only: no GPU needed to check them
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
        assert torch.backends.cudnn.deterministic
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]
