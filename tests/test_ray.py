"""The Ray executor, for real: a two-node Ray cluster on the loopback of this machine (a head and a worker node, each
``ray start --block`` in its own process group and temp dir), started and stopped here. A study spread over both
nodes equals one run locally (sha256 of every run's weights); a worker node killed in the middle of a study costs
only its runs in flight, and the study completes after a resume with the same results."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from transferscope.cli import main
from transferscope.config import ConfigError, load_config
from transferscope.store import Store
from transferscope.study import execute, make_plan

from .conftest import make_imagefolder, tiny_study_toml

RAY = Path(sys.executable).with_name("ray")
SETS = ["seeds=[0]", "block_sizes=[16, 4]"]


def test_ray_missing_says_what_to_install(monkeypatch, tmp_path, folders, capsys):
    from transferscope.study import ray_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'transferscope\[ray\]'"):
        ray_executor.import_ray()
    cfg = tmp_path / "s.toml"
    cfg.write_text(tiny_study_toml(*folders))
    assert main(["run", str(cfg), "--results", str(tmp_path / "r"), "--executor", "ray", "--no-progress"]) == 2
    assert "pip install 'transferscope[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "r" / "runs").exists()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Node:
    def __init__(self, args: list[str], env: dict, log: Path) -> None:
        self.temp = tempfile.mkdtemp(prefix="tsr", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([str(RAY), "start", *args, "--node-ip-address=127.0.0.1", "--num-cpus=1",
                                      "--num-gpus=0", f"--temp-dir={self.temp}", "--object-store-memory=80000000",
                                      "--disable-usage-stats", "--block"],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def pids(self) -> list[int]:
        """The processes of this node: its session (Ray's worker processes have process groups of their own)."""
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    zombie = (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # dead, not reaped yet
                    if not zombie and os.getsid(int(d.name)) == self.proc.pid:
                        out.append(int(d.name))
                except OSError:
                    pass
        return out

    def training(self) -> bool:
        """Whether a run is training on this node (a worker process titled ray::_train)."""
        for pid in self.pids():
            try:
                if b"ray::_train" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
            except OSError:
                pass
        return False

    def kill(self, sig=signal.SIGKILL) -> None:
        """Signal every process of the node (the node dies at once with SIGKILL)."""
        for pid in [self.proc.pid, *self.pids()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        deadline = time.time() + 10
        while self.pids() and time.time() < deadline:
            self.kill(signal.SIGKILL)  # whatever is left of it
            time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


class _Cluster:
    """A Ray cluster of two nodes of one CPU each on the loopback: a head and a worker node (which a test may kill;
    :meth:`two_nodes` starts a fresh one)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TRANSFERSCOPE_CACHE": str(root / "node-cache")}
        port = _port()
        self.address = f"127.0.0.1:{port}"
        self.nodes: list[_Node] = []
        self.head = self._start(["--head", f"--port={port}", "--include-dashboard=false",
                                 f"--ray-client-server-port={_port()}"])
        time.sleep(3)
        self.worker = self._start([f"--address={self.address}"])
        self._wait()

    def _start(self, args: list[str]) -> _Node:
        node = _Node(args, self.env, self.root / f"node{len(self.nodes)}.log")
        self.nodes.append(node)
        return node

    def _wait(self) -> None:
        import ray

        ray.init(address=self.address, logging_level="WARNING", log_to_driver=False)
        try:
            deadline = time.time() + 120
            while sum(n["Alive"] for n in ray.nodes()) < 2:
                assert time.time() < deadline, "the Ray cluster did not come up: " + \
                    (self.root / f"node{len(self.nodes) - 1}.log").read_text()[-2000:]
                time.sleep(0.5)
        finally:
            ray.shutdown()

    def two_nodes(self) -> None:
        """A live worker node again, when a test killed the last one."""
        if self.worker.proc.poll() is not None or not self.worker.pids():
            self.worker.stop()
            self.worker = self._start([f"--address={self.address}"])
            self._wait()

    def stop(self) -> None:
        for n in reversed(self.nodes):
            n.stop()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny study's config and its results trained locally (the reference)."""
    root = tmp_path_factory.mktemp("raystudy")
    src = make_imagefolder(root / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(root / "tgt", n_classes=3, per_class=24, seed=2)
    cfg = root / "study.toml"
    cfg.write_text(tiny_study_toml(src, tgt))
    sets = [*SETS, f'data.cache_dir="{root / "cache"}"']
    plan = make_plan(load_config(cfg, sets))
    local = Store(root / "local")
    s = execute(plan, local, jobs=1, threads=1, show_progress=False)
    assert not s.failed and not s.blocked
    return cfg, sets, plan, local


def _weights(store: Store) -> dict[str, dict[str, str]]:
    """sha256 of every weights file of every run (final, initial, checkpoints)."""
    return {rid: {k: v for k, v in store.artefact_hashes(rid).items() if k.endswith(".safetensors")}
            for rid in store.list_runs()}


def _clean(store: Store) -> None:
    assert not list(store.claims.iterdir())  # every claim released
    assert not list(store.runs.glob(".tmp-*"))


@pytest.mark.slow
def test_study_across_two_nodes_equals_local(cluster, study, tmp_path):
    addr = cluster.address
    _, _, plan, local = study
    store = Store(tmp_path / "ray")
    s = execute(plan, store, threads=1, show_progress=False, executor="ray", address=addr)
    assert not s.failed and not s.blocked
    assert sorted(s.done) == local.list_runs() == store.list_runs()
    assert len(set(s.nodes.values())) == 2  # the runs went to both nodes
    assert _weights(store) == _weights(local)
    assert all(len(h) >= 2 for h in _weights(store).values())
    _clean(store)
    # a second call finds everything stored: nothing is trained again
    again = execute(plan, store, threads=1, show_progress=False, executor="ray", address=addr)
    assert not again.done and sorted(again.skipped) == store.list_runs()


@pytest.mark.slow
def test_run_claimed_elsewhere_is_not_trained_twice(cluster, study, tmp_path):
    """A run claimed by another live process (another driver) is waited for, not trained here; once that process
    stores it and lets go, this call counts it and goes on with what needs it."""
    addr = cluster.address
    _, _, plan, local = study
    store = Store(tmp_path / "ray")
    pre = plan.runs[0].run_id
    other = store.claim(pre, owner="another driver")
    import threading

    def the_other_driver() -> None:  # trains P in this process, then releases its claim
        from transferscope.study.runner import run_one

        with other.heartbeat(0.2):
            run_one(plan.runs[0], store.root, threads=1)
        other.release()

    t = threading.Timer(2.0, the_other_driver)
    t.start()
    try:
        s = execute(plan, store, threads=1, show_progress=False, executor="ray", address=addr)
    finally:
        t.join(timeout=120)
    assert s.elsewhere == [pre] and pre not in s.done and pre not in s.nodes
    assert not s.failed and not s.blocked
    assert _weights(store) == _weights(local)
    _clean(store)


@pytest.mark.slow
def test_worker_node_killed_midway_run_retried_elsewhere(cluster, study, tmp_path):
    """The command line, and the worker node killed (every process of it, SIGKILL) while it trains a run: Ray tries
    the run again on the head node, and the study completes with the same weights as a local run (a resume then
    trains nothing)."""
    cluster.two_nodes()
    addr, worker = cluster.address, cluster.worker
    cfg, sets, _, local = study
    res = tmp_path / "ray"
    cmd = [sys.executable, "-c", "import sys; from transferscope.cli import main; sys.exit(main(sys.argv[1:]))",
           "run", str(cfg), "--results", str(res), "--threads", "1", "--executor", "ray", "--address", addr,
           "--no-progress", *[a for s in sets for a in ("--set", s)]]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while not worker.training():
            assert driver.poll() is None, "the study ended before a run trained on the worker node: " + \
                driver.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "no run started on the worker node"
            time.sleep(0.05)
        worker.kill()
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
    store = Store(res)
    first = set(store.list_runs())
    print(out.decode()[-3000:])
    # resume: whatever the kill left undone is trained now
    assert main(cmd[3:]) == 0
    assert set(store.list_runs()) >= first
    assert _weights(store) == _weights(local)
    assert all(store.run_status(r) == "done" for r in store.list_runs())
    _clean(store)


def _lost(s) -> dict[str, str]:
    return {r: why for r, why in s.blocked.items() if "Ray task was lost" in why}


@pytest.mark.slow
def test_worker_node_killed_midway_then_resume_equals_local(cluster, study, tmp_path):
    """With no tries left (max_retries=0), the run in flight on the killed node is left unstored, nothing else is
    lost, and a resume (``transferscope run`` again) completes the study with the same weights as a local run."""
    import threading

    from transferscope.study.ray_executor import execute_ray

    cluster.two_nodes()
    cfg, sets, plan, local = study
    store = Store(tmp_path / "ray")
    out = {}

    def drive() -> None:
        try:
            out["summary"] = execute_ray(plan, store, address=cluster.address, threads=1, show_progress=False,
                                         max_retries=0)
        except BaseException as e:  # reported by the test below
            out["error"] = e

    t = threading.Thread(target=drive, daemon=True)
    t.start()
    deadline = time.time() + 180
    while not cluster.worker.training():
        assert t.is_alive(), f"the study ended before a run trained on the worker node: {out}"
        assert time.time() < deadline, "no run started on the worker node"
        time.sleep(0.05)
    cluster.worker.kill()
    t.join(timeout=300)
    assert not t.is_alive() and "error" not in out, out
    s = out["summary"]
    lost = _lost(s)
    assert lost and not s.failed
    assert not set(lost) & set(store.list_runs())  # the lost runs are not stored; no claim or part of them is left
    _clean(store)
    assert set(s.done) == set(store.list_runs()) and s.done
    # resume: the study's own command, on what is left of the cluster (the head)
    assert main(["run", str(cfg), "--results", str(store.root), "--threads", "1", "--executor", "ray", "--address",
                 cluster.address, "--no-progress", *[a for x in sets for a in ("--set", x)]]) == 0
    assert set(lost) <= set(store.list_runs())
    assert _weights(store) == _weights(local)
    _clean(store)
