"""The Python API of the three steps the command line runs: train a study, analyse it, render its report.

Each takes what the command takes and returns what it computed; the folder it writes works with every command
(``status``, ``analyze``, ``report``, ``compare``, ``export``) and the other way round. Training runs in worker
processes started with the spawn method, so a script that calls :func:`run_study` with ``jobs > 1`` must guard
its top level with ``if __name__ == "__main__":`` (the workers import the script again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import StudyConfig, load_config

__all__ = ["run_study", "decide_study", "analyze_study", "render", "Analysis", "study_folder", "analysis_backend",
           "tables"]


def _config(config: str | Path | StudyConfig | None, overrides: list[str] | None) -> StudyConfig:
    if isinstance(config, StudyConfig):
        if overrides:
            raise ValueError("overrides apply to a config file or a built-in study name, not a StudyConfig")
        from .config import trust_factory

        trust_factory(config.model.name)  # a study the caller built: its factory is the caller's own
        return config
    return load_config(config, overrides)


def study_folder(results: str | Path):
    """The study a results folder holds: ``(store, config)``, the folder's :class:`~transferscope.store.Store`, its
    format checked, and its study (``study.json``). The one check of a study folder, which the command line and
    :func:`analyze_study` share: a folder ``transferscope run`` did not write is a :class:`ConfigError` that says so;
    one of an older format a :class:`~transferscope.store.StoreFormatError` (its run ids differ: its runs would
    look missing)."""
    from .config import ConfigError
    from .store import Store

    results = Path(results)
    if not (results / "study.json").is_file():
        raise ConfigError(f"{results}: no study.json; is this a results folder written by 'transferscope run'?")
    store = Store(results)
    store.check_format()
    return store, store.study_config()


def run_study(config: str | Path | StudyConfig | None = None, results: str | Path | None = None, *,
              overrides: list[str] | None = None, jobs: int = 1, threads: int = 0, retry_failed: bool = False,
              show_progress: bool = True, device: str | None = None, runs_per_device: int = 1,
              deterministic: bool = False, executor: str = "local", address: str | None = None,
              heartbeat: float | None = None, stale_after: float | None = None):
    """Train every unfinished run of a study (a TOML path, a built-in name such as ``"quick"``, or a
    :class:`StudyConfig`) into ``results`` (default ``results/<name>``). Returns the
    :class:`~transferscope.study.runner.ExecutionSummary`. ``device`` (default: the study's ``device``),
    ``runs_per_device`` and ``deterministic``: as ``transferscope run --device/--runs-per-device/--deterministic``.
    The precision is the study's (``pretrain.precision`` etc.; ``overrides`` can set it). ``executor``,
    ``address``, ``heartbeat``, ``stale_after``: as ``transferscope run --executor local|ray --address
    --claim-heartbeat --claim-stale`` (``ray``: each run a Ray task on the cluster at ``address``, the results
    folder on a path every node shares). ``auto``, the device of a study that names none, means the same for the
    runs and the analyses: a GPU where the work runs if there is one (this machine's; with ``executor="ray"``, the
    cluster's: :func:`~transferscope.study.ray_executor.cluster_device`), else MPS (this machine), else the CPU."""
    from .store import Store
    from .study import execute, make_plan

    cfg = _config(config, overrides)
    if cfg.decide.looks > 0:  # a [decide] table: the study decides in rounds
        return decide_study(cfg, results, jobs=jobs, threads=threads, retry_failed=retry_failed,
                            show_progress=show_progress, device=device, runs_per_device=runs_per_device,
                            deterministic=deterministic, executor=executor, address=address, heartbeat=heartbeat,
                            stale_after=stale_after)
    plan = make_plan(cfg)
    store = Store(results or Path("results") / plan.config.name)
    store.check_format()
    refuse_other_study(store.root, cfg.name)
    refuse_fixed_run(store)
    return execute(plan, store, jobs=jobs, threads=threads, retry_failed=retry_failed, show_progress=show_progress,
                   device=device, runs_per_device=runs_per_device, deterministic=deterministic, executor=executor,
                   address=address, heartbeat=heartbeat, stale_after=stale_after)


def refuse_other_study(results: str | Path, name: str) -> None:
    """A folder holds one study: running another there (another name) would overwrite its ``study.json``."""
    from .config import ConfigError
    from .store import Store

    results = Path(results)
    if not (results / "study.json").is_file():
        return
    held = Store(results).read_study()
    held = held.get("name") if isinstance(held, dict) else None
    if held is not None and held != name:
        raise ConfigError(f"{results} holds the study {held!r} (study.json); running {name!r} there would overwrite "
                          f"it: give that study's config, or no config (the folder's own study), or another --results")


def refuse_fixed_run(store) -> None:
    """A folder that decides in rounds is trained by its rounds (``decide.json``): a plain run would rewrite its
    study without the seeds they added."""
    from .config import ConfigError
    from .study.looks import RECORD

    if (store.root / RECORD).is_file():
        raise ConfigError(f"{store.root} decides in rounds ({store.root / RECORD}): go on with "
                          f"'transferscope run --until-decided --results {store.root}'")


def decide_study(config: str | Path | StudyConfig | None = None, results: str | Path | None = None, *,
                 overrides: list[str] | None = None, looks: int | None = None, max_seeds: int | None = None,
                 budget: str | None = None, spending: str | None = None, jobs: int = 1, analysis_jobs: int = 1,
                 threads: int = 0, retry_failed: bool = False, show_progress: bool = True, device: str | None = None,
                 runs_per_device: int = 1, deterministic: bool = False, executor: str = "local",
                 address: str | None = None, heartbeat: float | None = None, stale_after: float | None = None,
                 say=None):
    """Run a study in rounds until its verdicts are decided (``transferscope run --until-decided``): after each
    round it analyses and judges at the level its look spends, then adds seeds to the cells of runs the undecided
    effects read (:mod:`transferscope.study.decide`). ``looks``, ``max_seeds``, ``budget`` (``"30m"``),
    ``spending``: the design (None: the config's ``[decide]`` table, the folder's own, or the defaults), fixed
    before any result. ``analysis_jobs``: analysis worker processes (as ``analyze --jobs``); the other arguments
    as :func:`run_study`. Returns the :class:`~transferscope.study.decide.DecideSummary`; resumes a stopped study
    from its last finished round."""
    from .report.strips import write_image_strips
    from .store import Store
    from .study import execute
    from .study.decide import run_until_decided

    cfg = _config(config, overrides)
    store = Store(results or Path("results") / cfg.name)
    store.check_format()
    backend = analysis_backend(executor, address, analysis_jobs)

    def train(plan):
        return execute(plan, store, jobs=jobs, threads=threads, retry_failed=retry_failed,
                       show_progress=show_progress, device=device, runs_per_device=runs_per_device,
                       deterministic=deterministic, executor=executor, address=address, heartbeat=heartbeat,
                       stale_after=stale_after)

    options = {"show_progress": show_progress, "device": device, "backend": backend, "threads": 0,
               "images": write_image_strips}
    return run_until_decided(cfg, store, train=train, analyze_options=options, looks=looks, max_seeds=max_seeds,
                             budget=budget, spending=spending, **({"say": say} if say else {}))


@dataclass
class Analysis:
    """What :func:`analyze_study` computed: the analyses (``run``), the verdicts under each pre-trained model
    (by pre-training seed, the primary first), the path of ``claims.json`` and the results folder (``results``).
    :meth:`runs_frame` and :meth:`effects_frame` give the runs and the effects as pandas DataFrames."""

    run: Any
    verdicts: dict[int, list]
    claims: Path
    results: Path | None = None

    @property
    def primary(self) -> list:
        """The verdicts under the primary P."""
        return next(iter(self.verdicts.values()))

    def runs_frame(self):
        """The runs of the study as a pandas DataFrame, one row per run: the columns of ``export table``'s
        ``runs.csv`` (:data:`transferscope.export.RUN_COLUMNS`, then each run's metrics), read as pandas reads that
        file. Its ``role`` tells the runs the verdicts read (``chosen``) from the learning-rate candidates that lost
        (``candidate``), the basin runs and P: a mean over the rows of role ``chosen`` at a target and block size is
        the mean the tool reports there. Needs pandas (``pip install 'transferscope[tables]'``)."""
        from .export import runs_frame

        if self.results is None:
            raise ValueError("this Analysis does not name its results folder: tables(results) reads one")
        return runs_frame(self.results)

    def effects_frame(self):
        """Every effect behind the verdicts as a pandas DataFrame: the columns of ``export table``'s ``claims.csv``
        (:data:`transferscope.export.CLAIM_COLUMNS`: one row per effect, and per target no effect measured, under
        each pre-trained model), read as pandas reads that file. Needs pandas (``pip install
        'transferscope[tables]'``)."""
        from .export import CLAIM_COLUMNS, claim_rows, data_frame

        return data_frame(claim_rows(self.verdicts), CLAIM_COLUMNS)


def tables(results: str | Path):
    """The runs and the effects of an analysed results folder as pandas DataFrames, ``(runs, effects)``, as
    :meth:`Analysis.runs_frame` and :meth:`Analysis.effects_frame` give them, read from the folder's files (the
    verdicts of its last ``analyze``, ``analyses/claims.json``) without computing anything. A folder without
    verdicts is a :class:`ConfigError` that says how to make them. Needs pandas (``pip install
    'transferscope[tables]'``)."""
    from .claims.compare import load_by_pretrain
    from .config import ConfigError
    from .export import CLAIM_COLUMNS, claim_rows, data_frame, runs_frame

    _, cfg = study_folder(results)
    try:
        by_p = load_by_pretrain(results, cfg.pretrain_seed_list[0])
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    return runs_frame(results), data_frame(claim_rows(by_p), CLAIM_COLUMNS)


def analyze_study(results: str | Path, *, show_progress: bool = True, device: str | None = None,
                  executor: str = "local", address: str | None = None, threads: int = 0, jobs: int = 1) -> Analysis:
    """Compute the missing analyses of a study folder and judge every claim; writes ``analyses/``. ``device``:
    where the analyses compute (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; default: the study's
    ``device``, ``auto`` unless set; ``auto`` as for :func:`run_study`). ``executor``, ``address``, ``threads``:
    as ``transferscope analyze --executor local|ray --address --threads`` (``ray``: each analysis job a Ray task
    on the cluster at ``address``; the results folder must be on a path every node shares); the files and
    verdicts are the same either way. ``jobs``: as ``transferscope analyze --jobs`` (local: jobs side by side in
    that many worker processes; 1, the default here: every job in this process)."""
    from .report.strips import write_image_strips
    from .study import make_plan
    from .study.decide import analyze_and_judge

    store, cfg = study_folder(results)
    from .config import check_trusted

    check_trusted(cfg.model.name, str(Path(results) / "study.json"))  # its models are built: never a folder's code
    plan = make_plan(cfg, check=False)
    run, by_p, path, _ = analyze_and_judge(plan, store, show_progress=show_progress, device=device,
                                           backend=analysis_backend(executor, address, jobs), threads=threads,
                                           images=write_image_strips)
    return Analysis(run, by_p, path, Path(results))


def analysis_backend(executor: str = "local", address: str | None = None, jobs: int = 1):
    """Where ``analyze`` computes the jobs that are not cached: ``local`` (this machine: this process, or ``jobs``
    worker processes side by side) or ``ray`` (the cluster at ``address``; ``jobs`` is not read)."""
    from .config import ConfigError
    from .study.jobs import LocalAnalyses

    if executor == "ray":
        from .study.ray_executor import RayAnalyses

        return RayAnalyses(address)
    if executor != "local":
        raise ConfigError(f"--executor {executor!r}: one of 'local', 'ray'")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be at least 1")
    return LocalAnalyses(jobs)


def render(results: str | Path, out: str | Path | None = None) -> Path:
    """Render the HTML report of a study folder; returns the path of ``index.html``."""
    from .report import render_report

    return render_report(results, out)
