"""One meaning of ``--device`` on Ray, for the runs and the analyses alike (:func:`cluster_device`): the cluster
stands for the machine, so ``auto`` is CUDA when the cluster has a GPU (each task reserving its share of one), else
the CPU; ``cuda`` on a cluster without a GPU is refused before anything is written. Checked on a stand-in for the
``ray`` module, so that a GPU cluster can be pretended on a machine without one."""

from __future__ import annotations

import sys

import pytest

from transferscope.config import ConfigError, load_config
from transferscope.store import Store
from transferscope.study import make_plan
from transferscope.study.ray_executor import RayAnalyses, RayRuns, cluster_device, execute_ray
from transferscope.study.scheduler import Work

from .conftest import tiny_study_toml


class _FakeRay:
    """What the Ray backends ask of the ``ray`` module before a task runs: a cluster of ``gpus`` GPUs; every
    ``options`` a task was given is kept."""

    def __init__(self, gpus: float) -> None:
        self.resources = {"CPU": 4.0, **({"GPU": gpus} if gpus else {})}
        self.options: list[dict] = []
        self.joined = 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **kw) -> None:
        self.joined += 1

    def shutdown(self) -> None:
        self.joined -= 1

    def cluster_resources(self) -> dict:
        return self.resources

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": self.resources}]

    def remote(self, fn):
        fake = self

        class _Task:
            def options(self, **kw):
                fake.options.append(kw)
                return self

        return _Task()


@pytest.fixture
def plan(tmp_path, folders):
    p = tmp_path / "s.toml"
    p.write_text(tiny_study_toml(*folders))
    return make_plan(load_config(p))


@pytest.mark.parametrize(("device", "gpus", "expected"), [
    ("auto", 0, "cpu"), ("auto", 2, "cuda"), (None, 1, "cuda"), (" AUTO ", 1, "cuda"), ("cuda:1", 1, "cuda"),
    ("cuda", 0.5, "cuda"), ("cpu", 2, "cpu"), ("mps", 0, "mps"),
])
def test_runs_and_analyses_take_the_same_device_on_ray(monkeypatch, tmp_path, plan, device, gpus, expected):
    fake = _FakeRay(gpus)
    monkeypatch.setitem(sys.modules, "ray", fake)
    store = Store(tmp_path / "r")
    assert cluster_device(device, gpus) == expected
    with RayAnalyses().session(plan, store, device, 1) as (_, dev):
        assert dev == expected
    runs = RayRuns(device=device or plan.config.device, runs_per_device=2)
    with runs.hold(store):
        runs.start(Work(store.root, {}, 1, {}, False, False, frozenset()))
        runs.close()
    assert runs.task_device == expected
    analyses, trained = fake.options
    # a task on CUDA reserves its share of a GPU: a whole one for an analysis, 1/runs_per_device for a run
    assert (analyses["num_gpus"], trained["num_gpus"]) == ((1, 0.5) if expected == "cuda" else (0, 0.0))
    assert fake.joined == 0  # a Ray joined for the block is left again


@pytest.mark.parametrize(("device", "named"), [
    ("cuda", "device 'cuda': the Ray cluster has no GPU; use --device cpu (or auto)"),
    ("cuda:0", "device 'cuda:0': the Ray cluster has no GPU"),
    ("tpu", "device 'tpu': unknown; one of auto, cpu, cuda, cuda:N, mps"),
])
def test_a_device_the_cluster_lacks_is_refused_alike_before_anything_is_written(monkeypatch, tmp_path, plan, device,
                                                                                 named):
    monkeypatch.setitem(sys.modules, "ray", _FakeRay(0))
    store = Store(tmp_path / "r")
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        execute_ray(plan, store, device=device, show_progress=False)
    assert not (store.root / "study.json").exists() and not store.list_runs()
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")), \
            RayAnalyses().session(plan, store, device, 1):
        pass
    with pytest.raises(ConfigError, match="no GPU" if device != "tpu" else "unknown"):
        cluster_device(device, 0)
