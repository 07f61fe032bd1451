"""Command line: ``transferscope run | status | analyze | compare | report | export | domains``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .api import study_folder
from .config import BUILTIN_STUDIES, ConfigError, check_trusted, load_config
from .store import CLAIM_HEARTBEAT_S, CLAIM_STALE_S

log = logging.getLogger("transferscope")


def _default_jobs(device: str | None = None) -> int:
    """Runs side by side when --jobs is not given: 1 on CUDA (the runner spreads them over the GPUs with
    --runs-per-device), else the cores, at most 4. Follows the device the runs train on (``device``: --device or
    the study's), not whether the machine has a GPU."""
    import torch

    dev = (device or "auto").strip().lower()
    if dev.startswith("cuda") or (dev == "auto" and torch.cuda.is_available()):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 4))


@contextlib.contextmanager
def _tensorboard(on: bool):
    """--tensorboard: the runs trained inside (in this process and its workers) write TensorBoard logs."""
    from . import tblog

    if not on:
        yield
        return
    try:
        tblog.check_available()
    except ImportError as e:
        raise ConfigError(str(e)) from None
    before = os.environ.get(tblog.ENV)
    os.environ[tblog.ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(tblog.ENV, None)
        else:
            os.environ[tblog.ENV] = before


def cmd_run(args: argparse.Namespace) -> int:
    from .store import Store
    from .study import execute, make_plan
    from .study.summary import flags, format_flags
    from .study.tuning import choices, format_choices, resolve

    own = Path(args.results or Path("results") / "quick")
    prec = [f"{t}.precision={args.precision}" for t in ("pretrain", "finetune", "scratch")] if args.precision else []
    if args.rerun and not args.config and args.results:
        # repairing runs of a folder: its own study (what the --rerun hint of a damaged run prints)
        if args.set:
            raise ConfigError("--set with --rerun and no CONFIG: the study is the folder's own (study.json); give "
                              "the study's CONFIG to change it")
        cfg = study_folder(args.results)[1]
        check_trusted(cfg.model.name, str(Path(args.results) / "study.json"))  # a folder's own factory: never run
    elif not args.config and args.profile is None and (own / "study.json").is_file():
        # no study named: the folder's own (with any --set, checked as a config file's), never the built-in one
        from .config import apply_overrides, check_config, from_dict
        from .config.schema import StudyConfig

        try:
            cfg = from_dict(StudyConfig, apply_overrides(study_folder(own)[0].read_study(), prec + args.set))
            check_config(cfg)
        except ConfigError as e:
            raise ConfigError(f"{own / 'study.json'}{' with --set' if args.set else ''}: {e}") from None
        check_trusted(cfg.model.name, str(own / "study.json"))
    else:
        cfg = load_config(args.config or args.profile, prec + args.set)
    results = Path(args.results or Path("results") / cfg.name)
    from .api import refuse_other_study

    refuse_other_study(results, cfg.name)
    store = Store(results)
    store.check_format()  # before anything is written or listed: a folder of an older format is refused
    design = (args.looks, args.max_seeds, args.budget, args.spending)
    if not args.until_decided and any(x is not None for x in design):
        raise ConfigError("--looks, --max-seeds, --budget and --spending go with --until-decided")
    repair = bool(args.rerun and not args.config)  # the folder's own study, the seeds its rounds added included
    if args.until_decided or (cfg.decide.looks > 0 and not repair):
        if args.rerun:
            raise ConfigError("--rerun repairs runs of a folder: give it with --results and without --until-decided "
                              "or a config")
        return _run_until_decided(args, cfg, store)
    if not repair:
        from .api import refuse_fixed_run

        refuse_fixed_run(store)
    plan = make_plan(cfg)  # validates everything before any training
    if args.dry_run:
        resolved = resolve(plan, store)
        for r in {r.run_id: r for r in resolved.tuning + resolved.runs}.values():
            print(f"{store.run_status(r.run_id) or 'pending':<8} {r.run_id}  ({r.label})")
        for t, sel in resolved.deferred:
            print(f"{'waits':<8} {t.label}: lr chosen by {sel.key}")
        return 0
    if args.executor == "ray":
        from .study.ray_executor import check_claim_timing, execute_ray

        check_claim_timing(args.claim_heartbeat, args.claim_stale)  # before anything is written
        if args.jobs:
            log.warning("--jobs %d is ignored with --executor ray: the cluster's free CPUs (and GPUs) set how many "
                        "runs train at once", args.jobs)
        where = args.address or os.environ.get("RAY_ADDRESS") or "a Ray instance started here"
        print(f"study {cfg.name!r}: {plan.size()} runs into {results} (each a Ray task on {where}; as many at a time "
              f"as the cluster's free CPUs{' and GPUs' if str(args.device or cfg.device).startswith('cuda') else ''} "
              "allow)", file=sys.stderr)
        with _tensorboard(args.tensorboard):
            summary = execute_ray(plan, store, address=args.address, threads=args.threads,
                                  retry_failed=args.retry_failed, show_progress=not args.no_progress,
                                  rerun=args.rerun, device=args.device, runs_per_device=args.runs_per_device,
                                  deterministic=args.deterministic, heartbeat=args.claim_heartbeat,
                                  stale_after=args.claim_stale)
        print(f"\nRay: {summary.jobs} CPUs in the cluster, {summary.threads} per run, on "
              f"{len(set(summary.nodes.values()))} nodes", file=sys.stderr)
    else:
        jobs = args.jobs or _default_jobs(args.device or cfg.device)
        print(f"study {cfg.name!r}: {plan.size()} runs into {results} ({jobs} at a time)", file=sys.stderr)
        with _tensorboard(args.tensorboard):  # the runs' TensorBoard logs, where asked
            summary = execute(plan, store, jobs=jobs, threads=args.threads, retry_failed=args.retry_failed,
                              show_progress=not args.no_progress, rerun=args.rerun, device=args.device,
                              runs_per_device=args.runs_per_device, deterministic=args.deterministic)
    print(f"\n{len(summary.done)} runs trained, {len(summary.skipped)} already there, "
          f"{len(summary.failed)} failed, {len(summary.blocked)} blocked, in {summary.seconds:.0f} s\n")
    for rid, why in summary.retried.items():
        print(f"run {rid}: its worker process died ({'; '.join(why)}); it was trained again")
    _print_tables(plan, store)
    if plan.deferred:
        print("\n" + format_choices(choices(plan, store)))
    for rid, why in {**summary.failed, **summary.blocked}.items():
        print(f"not done: {rid}: {why}")
    warnings = format_flags(flags(plan, store))
    if warnings:
        print("\n" + warnings)
    print(f"\nresults: {results.resolve()}")
    return 1 if summary.failed or summary.blocked else 0


def _run_until_decided(args: argparse.Namespace, cfg, store) -> int:
    from .api import decide_study
    from .study import make_plan
    from .study.decide import check_design

    if args.dry_run:  # the runs of the current round, and the design
        cfg, rec = check_design(cfg, store, args.looks, args.max_seeds, args.budget, args.spending)
        plan = make_plan(cfg)
        print(f"deciding in rounds: looks {rec.looks}, levels {', '.join(f'{a:.3g}' for a in rec.levels)}, "
              f"max seeds {rec.design['max_seeds']}, budget {rec.design.get('budget') or 'none'}; "
              f"round {len(rec.rounds) or 1}: {plan.size()} runs")
        return 0
    if args.executor == "ray":
        from .study.ray_executor import check_claim_timing

        check_claim_timing(args.claim_heartbeat, args.claim_stale)
    jobs = args.jobs or _default_jobs(args.device or cfg.device)
    with _tensorboard(args.tensorboard):
        out = decide_study(cfg, store.root, looks=args.looks, max_seeds=args.max_seeds, budget=args.budget,
                           spending=args.spending, jobs=jobs, analysis_jobs=_default_jobs("cpu"), threads=args.threads,
                           retry_failed=args.retry_failed, show_progress=not args.no_progress, device=args.device,
                           runs_per_device=args.runs_per_device, deterministic=args.deterministic,
                           executor=args.executor, address=args.address, heartbeat=args.claim_heartbeat,
                           stale_after=args.claim_stale)
    from .claims.compare import format_brief

    print("\nrounds:")
    for r in out.record.rounds:
        print(f"  look {r.look}: {r.runs_trained} runs trained, {r.seconds / 60:.1f} min, "
              f"{r.decisive} of {r.effects} effects decisive ({len(r.decided_here)} decided at this look)")
    print(f"stopped: {out.stopped}\n\nverdicts ({out.claims}):\n" + format_brief(out.verdicts))
    print(f"\nresults: {store.root.resolve()}")
    return 0


def _print_tables(plan, store) -> None:
    """The results table, once per pre-trained model P when the study has several."""
    from .study import format_table, results_table

    cfg, ps = plan.config, plan.pretrains()
    for p in ps:
        if len(ps) > 1:
            print(f"P-T from the pre-trained model of seed {p.seed} ({p.run_id}):")
        print(format_table(results_table(plan, store, p.seed), cfg.finetune.speed_epochs, cfg.finetune.speed_fraction))


def _print_verdicts(results: Path) -> None:
    """The verdicts of the last ``analyze``, with their caveats (nothing when the study was not analysed)."""
    from .claims.compare import format_brief, load_verdicts

    if not (results / "analyses" / "claims.json").is_file():
        return
    try:
        vs = load_verdicts(results)
    except (FileNotFoundError, ValueError) as e:
        print(f"\n(verdicts not shown: {e})")
        return
    print(f"\nverdicts of the last analysis ({results / 'analyses' / 'claims.json'}; 'transferscope analyze' "
          f"updates them):\n" + format_brief(vs))


def cmd_status(args: argparse.Namespace) -> int:
    from .export import ROLES, run_roles
    from .store import RUN_DONE, RUN_FAILED, RunDamaged, StoreError
    from .study import make_plan, status_counts
    from .study.summary import flags, format_flags
    from .study.tuning import choices, format_choices, resolve

    results = Path(args.results)
    store, cfg = study_folder(results)
    plan = make_plan(cfg, check=False)  # as it was validated when it ran (its weights may have moved since)
    c = status_counts(plan, store)
    print(f"study {cfg.name!r} in {results}: {c['done']} done, {c['failed']} failed, {c['blocked']} blocked, "
          f"{c['pending']} pending "
          f"of {plan.size()} runs")
    damaged: dict[str, str] = {}  # run id -> why it needs to be trained again
    resolved = resolve(plan, store)
    roles = run_roles(plan, store)
    candidates = {r.run_id for r in resolved.tuning}
    table = []  # with --runs: one row per run, its notes last
    for r in {r.run_id: r for r in resolved.tuning + resolved.runs}.values():
        st = store.run_status(r.run_id)
        extra = ""
        figure = ""
        if st == RUN_DONE:
            changed = [f for f in store.verify_run(r.run_id) if f != "run.json"]  # run.json: recorded no hashes
            if changed:
                damaged[r.run_id] = f"{', '.join(changed)} changed since it ended"
            try:
                from . import metrics as M

                m = store.read_json(r.run_id, "metrics.json")
                figure = f"test_{M.metric_of(m)}={M.value(m, 'test'):.3f}"  # accuracy, or a multi-label mean AUC
            except RunDamaged as e:
                damaged.setdefault(r.run_id, str(e).split("; it needs")[0].removeprefix(f"run {r.run_id}: "))
            if r.run_id in damaged:
                extra += f"  NEEDS RE-RUN: {damaged[r.run_id]}"
            deaths = store.run_info(r.run_id).get("worker_deaths")
            if deaths:
                extra += f"  (its worker process died before ({'; '.join(deaths)}); ran again)"
        elif st == RUN_FAILED:
            extra = store.run_info(r.run_id).get("reason", "").splitlines()[0]
        role = roles.get(r.run_id, "") + ("*" if r.run_id in candidates and roles.get(r.run_id) == "chosen" else "")
        where = ([f"from epoch {r.parent_checkpoint:g} of P"] if r.parent_checkpoint >= 0 else []) + \
                ([f"P of seed {r.pretrain_seed}"] if r.pretrain_seed >= 0 else [])
        table.append([st or "pending", role, r.run_id, "-" if r.arm == "P" else r.domain.display, str(r.block_size),
                      str(r.seed), f"{r.train.lr:g}", figure or "-",
                      "  ".join(x for x in (", ".join(where), extra.strip()) if x)])
    for rid, role in roles.items():  # stored runs the study no longer plans (e.g. of a seed taken out)
        if role == "not in the study":
            table.append([store.run_status(rid) or "?", role, rid, "", "", "", "", "", "stored, not planned"])
    if args.runs:
        head = ["status", "role", "run id", "target", "block", "seed", "lr", "test figure", "notes"]
        widths = [max(len(x) for x in col) for col in zip(head, *table, strict=True)]
        for row in [head, *table]:
            print(("  " + "  ".join(x.ljust(w) for x, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1])
                  .rstrip())
        print(f"  (role: {', '.join(ROLES)}; chosen*: the learning-rate candidate chosen, a run the verdicts read)")
        for ch in choices(plan, store):  # where the one-SE rule did not take the highest validation score
            if ch.state == "chosen" and ch.selection.rule == "one-se" and ch.lr != ch.best:
                print(f"  {ch.selection.key}: one-se: chose {ch.lr:g}, within one standard error of the best "
                      f"{ch.best:g} (validation {ch.metric_label} {ch.val_acc[ch.lr]:.3f} against "
                      f"{ch.val_acc[ch.best]:.3f}); the smallest rate within noise of it")
    if damaged:
        print(f"\n{len(damaged)} runs need to be trained again (their files are damaged):")
        for rid, why in damaged.items():
            print(f"  {rid}: {why}")
        print(f"  train them again: transferscope run --results {results} "
              + " ".join(f"--rerun {rid}" for rid in damaged))
    print()
    for what, show in (("results table", lambda: _print_tables(plan, store)),
                       ("learning-rate choices",
                        lambda: plan.deferred and print("\n" + format_choices(choices(plan, store)))),
                       ("warnings", lambda: (w := format_flags(flags(plan, store))) and print("\n" + w)),
                       ("verdicts", lambda: _print_verdicts(results))):
        try:
            show()
        except StoreError as e:  # named above, with its recovery
            print(f"({what} not shown: {e})")
    return 0


def _print_stale(stale: dict[str, dict[str, tuple[str, ...]]], results: str) -> None:
    """The cached results read from runs damaged since: per run, its changed files, those results and the repair."""
    by_run: dict[str, tuple[tuple[str, ...], list[str]]] = {}
    for name, bad in stale.items():
        for rid, files in bad.items():
            by_run.setdefault(rid, (files, []))[1].append(name)
    if by_run:
        print("  runs whose files changed since they ended (nothing is computed again from them; the cached results "
              "read from them were computed before the change):")
    for rid, (files, names) in by_run.items():
        print(f"    {rid}: {', '.join(files)} changed; cached results from it: {', '.join(names)}; repair: "
              f"transferscope run --results {results} --rerun {rid}, then analyze again")


def cmd_analyze(args: argparse.Namespace) -> int:
    from .api import analyze_study
    from .study.verdicts import format_verdicts

    if args.jobs and args.executor == "ray":
        log.warning("--jobs %d is ignored with --executor ray: each analysis job is a Ray task", args.jobs)
    jobs = args.jobs or (1 if args.executor == "ray" else _default_jobs(args.device))
    a = analyze_study(args.results, show_progress=not args.no_progress, device=args.device,
                      executor=args.executor, address=args.address, threads=args.threads, jobs=jobs)
    run = a.run
    for seed, sub in [(None, run), *run.pretrained.items()]:
        under = "" if seed is None else f" (under P of seed {seed})"
        print(f"analyses{under}: {len(sub.computed)} computed, {len(sub.cached)} cached, {len(sub.missing)} missing")
        for k, why in sub.missing.items():
            print(f"  missing {k}: {why}")
        if sub.seconds:
            print("  computed in " + ", ".join(f"{k} {v:.1f} s" for k, v in sub.seconds.items()))
        _print_stale(sub.stale, args.results)
    print()
    print(format_verdicts(a.primary, a.verdicts))
    rest = list(dict.fromkeys(f"{v.claim} ({t.target})" for vs in a.verdicts.values() for v in vs
                              for t in v.targets if any(c.kind == "changed-artefacts" for c in t.caveats)))
    if rest:
        print(f"\nverdicts that rest on runs whose files changed (results computed before the change; decisive ones "
              f"are reported unreliable): {', '.join(rest)}")
    print(f"\nanalyses: {a.claims.parent.resolve()}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .claims.compare import compare_verdicts, format_comparison, load_verdicts

    try:
        a, b = load_verdicts(args.results_a), load_verdicts(args.results_b)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    rows = compare_verdicts(a, b)
    bad = sum(r.contradiction for r in rows)
    if args.json:  # the same rows as a document (target "": the claim's overall outcome)
        import json

        from .vocab.caveats import summary

        print(json.dumps({"a": str(args.results_a), "b": str(args.results_b),
                          "rows": [{"claim": r.claim, "target": r.target, "a": r.a, "b": r.b,
                                    "contradiction": r.contradiction, "caveats_a": summary(r.caveats_a),
                                    "caveats_b": summary(r.caveats_b)} for r in rows],
                          "counts": {"rows": len(rows), "claims": len({r.claim for r in rows}), "contradictions": bad}},
                         indent=2))
    else:
        print(format_comparison(rows, str(args.results_a), str(args.results_b)))
    return 1 if bad else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import render_report

    path = render_report(args.results, args.out, figures=args.figures)
    print(f"report: {path.resolve()}")
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    from .data import get_domain_info, list_domains

    for name in list_domains():
        info = get_domain_info(name)
        src = f" [{info.package}; {info.licence}]" if info.package else ""
        print(f"{name:<20} {info.summary}{src}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model

    if args.what == "model":
        weights, config = export_model(args.results, args.run_id, args.out, args.which)
        print(f"weights: {weights}\nconfig:  {config}")
    elif args.what == "table":
        from .export import export_tables

        paths, note = export_tables(args.results, args.out, args.format)
        for path in paths:
            print(path)
        if note:
            print(note, file=sys.stderr)
    return 0


def _add_trust(p) -> None:
    p.add_argument("--trust-factory", action="append", default=[], metavar="NAME",
                   help="run the model factory NAME ('package.module:function') that the results folder names; "
                        "without it, a factory named only by a folder (not by your own study config) is refused, "
                        "never imported (repeatable)")


def _add_run(sub) -> None:
    r = sub.add_parser("run", help="train every unfinished run of a study (resumable)")
    r.add_argument("config", nargs="?", help="study TOML file (default: the built-in quick study)")
    r.add_argument("--profile", choices=BUILTIN_STUDIES, default=None,
                   help="built-in study when no CONFIG (default: the --results folder's own study if it holds one, "
                        "else quick)")
    r.add_argument("--results", help="results folder (default: results/<study name>)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set finetune.lr=0.01 (repeatable)")
    r.add_argument("--jobs", type=int, default=0,
                   help="runs side by side (default: cores, at most 4; 1 when the runs train on CUDA); ignored "
                        "with --executor ray")
    r.add_argument("--threads", type=int, default=0,
                   help="torch threads per run (default: the count the study's first run fixed, so that results "
                        "are bitwise identical; for a first run, the cores shared out among --jobs)")
    r.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    r.add_argument("--rerun", action="append", default=[], metavar="RUN_ID",
                   help="train this run again (e.g. one whose files are damaged; repeatable); without CONFIG, the "
                        "study is the one the --results folder holds")
    r.add_argument("--dry-run", action="store_true", help="list the runs and their state; train nothing")
    d = r.add_argument_group("deciding in rounds", "train, analyse and judge in rounds, adding seeds where undecided "
                             "effects need them, with the error rate shared among the looks (README: 'Deciding in "
                             "rounds'); the design is fixed by the first call and kept by a resumed one")
    d.add_argument("--until-decided", action="store_true",
                   help="run the study in rounds until every effect is decided, none can be within the limits, "
                        "the budget is spent or the last look is done (a [decide] table in the config does the same)")
    d.add_argument("--max-seeds", type=int, metavar="N", help="the most seeds per cell of runs (default 12)")
    d.add_argument("--budget", metavar="DURATION", help="the most wall time of the rounds together, e.g. 30m, 1.5h "
                                                        "(default: none)")
    d.add_argument("--looks", type=int, metavar="K", help="the most rounds judged, the first on the study's seeds "
                                                          "(default 3)")
    d.add_argument("--spending", choices=("obrien-fleming", "pocock", "equal"),
                   help="how the error rate is shared among the looks (default obrien-fleming: little early)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: each run a Ray task on a cluster "
                        "(pip install 'transferscope[ray]'; the results folder must be on a path every node shares)")
    r.add_argument("--address", metavar="HOST:PORT|auto",
                   help="with --executor ray: the Ray cluster to join (default: RAY_ADDRESS, else a Ray started here)")
    r.add_argument("--claim-heartbeat", type=float, default=CLAIM_HEARTBEAT_S, metavar="SECONDS",
                   help="with --executor ray: how often a run's claim (runs/.claims/<run_id>) is touched while it "
                        f"trains (default {CLAIM_HEARTBEAT_S:g})")
    r.add_argument("--claim-stale", type=float, default=CLAIM_STALE_S, metavar="SECONDS",
                   help="with --executor ray: a claim untouched this long is taken for dead and its run trained "
                        f"elsewhere (default {CLAIM_STALE_S:g}); more than twice --claim-heartbeat, and more than "
                        "the clock difference between the nodes")
    r.add_argument("--device", metavar="auto|cpu|cuda|cuda:N|mps",
                   help="where the runs train (default: the study's device, auto: CUDA, else MPS, else the CPU; "
                        "with --executor ray, auto is CUDA when the cluster has a GPU, else the CPU); one that is "
                        "not there is an error. Not part of the run ids")
    r.add_argument("--runs-per-device", type=int, default=1, metavar="N",
                   help="on CUDA: runs trained side by side on each GPU (small runs share one); cuda or auto spread "
                        "the runs over every GPU of the machine (default 1)")
    r.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                   help="training arithmetic for every table (default: the study's, fp32); off fp32 it is part of "
                        "the run ids. Overrides the config; --set pretrain.precision=... sets one table")
    r.add_argument("--deterministic", action="store_true",
                   help="on a GPU: PyTorch's deterministic algorithms (slower); the CPU is bitwise reproducible "
                        "as it is")
    r.add_argument("--tensorboard", action="store_true",
                   help="TensorBoard logs of each run's curves in RESULTS/tensorboard/<run_id> (watch live: "
                        "tensorboard --logdir RESULTS/tensorboard; needs pip install 'transferscope[tensorboard]')")
    _add_trust(r)
    r.set_defaults(fn=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="transferscope", description="What is being transferred in transfer learning.")
    p.add_argument("--version", action="version", version=f"transferscope {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    _add_run(sub)

    s = sub.add_parser("status", help="what is done, failed and pending in a results folder")
    s.add_argument("results", nargs="?", default="results/quick")
    s.add_argument("--runs", action="store_true",
                   help="list every run: its status, role (chosen: read by the verdicts; candidate: a learning rate "
                        "not chosen; basin; pretrain), target, block size, seed, learning rate and test figure")
    s.set_defaults(fn=cmd_status)

    a = sub.add_parser("analyze", help="compute the missing analyses of a study and judge the paper's claims")
    a.add_argument("results", nargs="?", default="results/quick")
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    a.add_argument("--device", metavar="auto|cpu|cuda|cuda:N|mps",
                   help="where every analysis computes (default: the study's device, auto: CUDA, else MPS, else "
                        "the CPU; with --executor ray, auto is CUDA when the cluster has a GPU, else the CPU); one "
                        "that is not there is an error")
    a.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: on this machine (default; see --jobs); ray: each analysis job a Ray task on a "
                        "cluster, after the analyses it reads (the results folder must be on a path every node "
                        "shares). The files and verdicts are the same")
    a.add_argument("--address", metavar="HOST:PORT|auto",
                   help="with --executor ray: the Ray cluster to join (default: RAY_ADDRESS, else a Ray started here)")
    a.add_argument("--jobs", type=int, default=0,
                   help="local, on the CPU: analysis jobs side by side, each in a worker process (default: cores, "
                        "at most 4; 1: every job in this process); ignored with --executor ray")
    a.add_argument("--threads", type=int, default=0,
                   help="torch threads per analysis job (default: local, the cores shared out among --jobs, or "
                        "torch's own count with --jobs 1; ray, the count the study's runs were trained with, else "
                        "1); on the CPU, results are bitwise the same for the same count on either executor")
    _add_trust(a)
    a.set_defaults(fn=cmd_analyze)

    c = sub.add_parser("compare", help="two studies' verdicts side by side; exit 1 if any contradicts the other",
                       description="Two analysed studies' verdicts side by side, per claim and target; a "
                                   "contradiction is a claim (or target) that holds in one and does not hold in the "
                                   "other (an unreliable or inconclusive outcome contradicts nothing).",
                       epilog="exit status: 0 no contradiction, 1 at least one contradiction, 2 an error (e.g. not "
                              "a results folder, or no verdicts: run 'transferscope analyze' first)")
    c.add_argument("results_a", help="results folder judged by 'transferscope analyze'")
    c.add_argument("results_b", help="the other results folder")
    c.add_argument("--json", action="store_true",
                   help="print a JSON document instead of the table: rows (claim, target: '' for the claim's overall "
                        "outcome, a, b, contradiction, caveats_a, caveats_b) and counts (rows, claims, "
                        "contradictions); the exit status is the same")
    c.set_defaults(fn=cmd_compare)

    rp = sub.add_parser("report", help="render the HTML report (and PNG figures) of a study's stored results")
    rp.add_argument("results", nargs="?", default="results/quick")
    rp.add_argument("--out", help="folder for index.html and the figures (default: RESULTS/report)")
    rp.add_argument("--figures", default="png", metavar="png,svg,pdf",
                    help="formats to save each figure in (default png); the page shows the PNG (else the SVG) and "
                         "links the others")
    _add_trust(rp)
    rp.set_defaults(fn=cmd_report)

    d = sub.add_parser("domains", help="list the registered image domains")
    d.set_defaults(fn=cmd_domains)

    e = sub.add_parser("export", help="write what a study made for use elsewhere (export model: a run's weights; "
                                          "export table: CSV/Parquet tables)")
    what = e.add_subparsers(dest="what", required=True)
    em = what.add_parser("model", help="a run's weights as safetensors, and FILE.json beside them (spec, classes, "
                                       "input, sha256)")
    em.add_argument("results", help="results folder")
    em.add_argument("run_id", help="the run (transferscope status RESULTS --runs lists them)")
    em.add_argument("--out", required=True, metavar="FILE", help="weights file to write, e.g. model.safetensors")
    em.add_argument("--which", default="weights", metavar="weights|init|epoch_<e>",
                    help="final weights (default), the weights at step 0, or a kept pre-training checkpoint")
    _add_trust(em)
    em.set_defaults(fn=cmd_export)
    et = what.add_parser("table", help="the runs (one row each, with its role and learning rate), the claims (one "
                                       "row per effect of the verdicts) and each analysis (long format) as CSV or "
                                       "Parquet tables")
    et.add_argument("results", help="results folder")
    et.add_argument("--format", choices=("csv", "parquet"), default="csv",
                    help="csv (needs nothing) or parquet (needs pyarrow: pip install 'transferscope[tables]')")
    et.add_argument("--out", metavar="DIR", help="folder for runs.<format>, claims.<format> and <analysis>.<format> "
                                                 "(default: RESULTS/tables)")
    et.set_defaults(fn=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .store import StoreError, write_error

    try:
        if getattr(args, "trust_factory", None):
            from .config import trust_factory

            trust_factory(*args.trust_factory)
        code = args.fn(args)
        sys.stdout.flush()  # a reader that went away (| head) is met here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        # the output was cut short by its reader (status | head): quietly, as a command in a pipe does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as e:
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            e = write_error(e, e.filename or "a file")  # a full or read-only disk: one line, not a traceback
        # the domain registry imports torch: only a command that loaded it can raise its errors
        registry = sys.modules.get("transferscope.data.registry")
        user_errors = (ConfigError, StoreError) + ((registry.DomainError,) if registry else ())
        if not isinstance(e, user_errors):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to go on", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
