"""Export a run's model for use elsewhere: its weights as safetensors, and a JSON file beside them that says what
they are (the run's spec, the classes, the input the model expects, the sha256 of the weights written).

A model that transferscope wraps (:class:`transferscope.models.Hooked`: a model from a factory, a plugin or an
adapter, or a built-in model with a configured input normalisation) keeps its parameters under ``net.``; the
export strips that prefix, so that the weights load into the user's own module (``load_state_dict(...,
strict=True)``), and says so in the JSON (``"prefix_stripped": "net."``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import replace
from pathlib import Path

from . import __version__, jsonio
from .config import ConfigError
from .metrics import metric_of
from .store import (
    RUN_DONE,
    RUN_FAILED,
    Store,
    atomic_write_bytes,
    atomic_write_text,
    file_sha256,
    read_analysis_index,
    rerun_hint,
)

__all__ = ["ExportError", "export_model", "export_tables", "WRAPPED_PREFIX", "RUN_COLUMNS", "ANALYSIS_COLUMNS",
           "CLAIM_COLUMNS", "CLAIM_NUMBERS", "ROLES", "run_roles", "run_rows", "claim_rows",
           "data_frame", "runs_frame"]

WRAPPED_PREFIX = "net."
"""Where :class:`~transferscope.models.Hooked` keeps the wrapped module's parameters."""


class ExportError(ConfigError):
    """A model cannot be exported as asked (the message names the input at fault)."""


def _store_of(results: Path) -> Store:
    if not (results / "study.json").is_file():
        raise ExportError(f"{results}: no study.json; is this a results folder written by 'transferscope run'?")
    store = Store(results)
    store.check_format()
    return store


def _checked_run(store: Store, run_id: str) -> dict:
    """The run.json of a finished run whose files still match their recorded hashes."""
    info = store.run_info(run_id)
    if info is None:
        runs = store.list_runs()
        close = difflib.get_close_matches(run_id, runs, n=5, cutoff=0.5)
        hint = (f"close matches: {', '.join(close)}" if close else
                f"the folder holds {len(runs)} runs (transferscope status {store.root} --runs lists them)")
        raise ExportError(f"run {run_id!r}: no such run in {store.root}; {hint}")
    status = info.get("status")
    if status != RUN_DONE:
        why = ""
        if status == RUN_FAILED:
            why = f" (it failed: {(info.get('reason') or '?').splitlines()[0]}; 'transferscope run --retry-failed' " \
                  "runs it again)"
        raise ExportError(f"run {run_id!r} in {store.root} is not finished{why}; only a finished run can be exported")
    changed = store.verify_run(run_id)
    if changed:
        raise ExportError(f"run {run_id!r} in {store.root}: {', '.join(changed)} changed since the run ended (its "
                          f"recorded sha256 no longer matches); {rerun_hint(store.root, run_id)}")
    return info


def _weights_file(store: Store, run_id: str, which: str) -> Path:
    """The stored weights ``which`` names: ``weights``, ``init`` or ``epoch_<e>`` (a kept checkpoint)."""
    stored = store.artefact_hashes(run_id)
    names = {}
    for path in stored:
        if path in ("weights.safetensors", "init.safetensors"):
            names[path.removesuffix(".safetensors")] = path
        elif path.startswith("checkpoints/epoch_") and path.endswith(".safetensors"):
            names[path.removeprefix("checkpoints/").removesuffix(".safetensors")] = path
    if which not in names:
        order = sorted(names, key=lambda n: (n != "weights", n != "init", n))
        raise ExportError(f"--which {which!r}: run {run_id!r} has no such weights; it has {', '.join(order)}")
    return store.run_dir(run_id) / names[which]


def _input_of(spec: dict) -> dict:
    """What the exported module takes (the wrapper's normalisation is not part of the weights)."""
    data, model = spec.get("data", {}), spec.get("model", {})
    channels = int(data.get("channels", 1))

    def per_channel(values: list) -> list[float]:
        v = [float(x) for x in values] or [0.5]
        return v * channels if len(v) == 1 else v

    return {"channels": channels, "image_size": int(data.get("image_size", 0)),
            "mean": per_channel(model.get("mean", [])), "std": per_channel(model.get("std", [])),
            "note": "images (N, channels, image_size, image_size) with pixels scaled to [0, 1], then (x - mean) / std "
                    "per channel"}


def export_model(results: str | Path, run_id: str, out: str | Path, which: str = "weights") -> tuple[Path, Path]:
    """Write the weights ``which`` (``weights``: final, ``init``: step 0, or ``epoch_<e>``: a pre-training checkpoint)
    of the finished run ``run_id`` of the results folder ``results`` to ``out`` (safetensors), and its description to
    ``out`` with the suffix ``.json``. Returns (weights path, JSON path).

    Raises:
        ExportError: ``results`` is not a results folder, the run is unknown, not finished or changed since it
            ended, ``which`` names no stored weights, or ``out`` cannot be written.
    """
    from safetensors.torch import load_file, save

    results, out = Path(results), Path(out)
    store = _store_of(results)
    info = _checked_run(store, run_id)
    source = _weights_file(store, run_id, which)
    config_path = out.with_suffix(".json")
    if config_path == out:
        raise ExportError(f"--out {out}: the weights file must not end in .json (the config is written to FILE with "
                          "the suffix .json); use e.g. model.safetensors")
    if out.is_dir():
        raise ExportError(f"--out {out}: is a folder; give the path of the weights file to write")

    state = load_file(str(source))
    # create_model returns a registered built-in model (whose parameters are never under "net.") or a Hooked, whose
    # parameters all are: the prefix says which, without importing the user's model code
    wrapped = bool(state) and all(k.startswith(WRAPPED_PREFIX) for k in state)
    if wrapped:
        state = {k.removeprefix(WRAPPED_PREFIX): v for k, v in state.items()}
    spec = info.get("spec", {})
    meta = {"format": "pt", "transferscope": __version__, "run_id": run_id, "which": which,
            "prefix_stripped": WRAPPED_PREFIX if wrapped else ""}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, save(state, metadata=meta))
        digest = file_sha256(out)
        config = {
            "transferscope": __version__,
            "run_id": run_id,
            "arm": info.get("arm", spec.get("arm")),
            "seed": info.get("seed", spec.get("seed")),
            "spec": spec,
            "which": which,
            "source_file": source.relative_to(store.run_dir(run_id)).as_posix(),
            "weights_file": out.name,
            "sha256": digest,
            "prefix_stripped": WRAPPED_PREFIX if wrapped else "",
            "num_classes": info.get("num_classes"),
            "classes": list(info.get("classes") or []),
            "input": _input_of(spec),
        }
        if "imported_from" in info:
            config["imported_from"] = info["imported_from"]
        atomic_write_text(config_path, jsonio.dumps(config))
    except OSError as e:
        raise ExportError(f"--out {out}: cannot be written ({e.strerror or e})") from None
    return out, config_path


# ------------------------------------------------------------------------------------------------ tables

TABLE_FORMATS = ("csv", "parquet")

RUN_COLUMNS = ("run_id", "status", "role", "arm", "domain", "target", "block_size", "seed", "pretrain_seed", "parent",
               "parent_checkpoint", "model", "lr", "epochs", "batch_size", "momentum", "weight_decay", "schedule",
               "warmup_epochs", "grad_clip", "eval_every", "speed_epochs", "speed_fraction", "metric")
"""The leading columns of the runs table (from each run's spec; ``role``: what the run is to the study, one of
:data:`ROLES`; ``lr``: the rate the run trains at, a learning-rate candidate's own; ``metric``: what the run is
judged by, ``acc`` or ``auc`` for a multi-label target, also for runs stored before metrics.json said it); the
metrics of ``metrics.json`` follow under their own names (``test_acc`` or ``test_auc`` ...; a multi-label run's
per-label test AUC as ``test_auc[<label>]``, its excluded labels as one ``test_auc_excluded`` text, ``; ``-separated),
then ``run_seconds`` (the run's wall time, run.json ``seconds``) and the other scalars of run.json."""

_TRAIN_COLUMNS = RUN_COLUMNS[RUN_COLUMNS.index("lr"):]
"""The columns read from the run's training settings (``metric`` is none of them: None until the run is done)."""

ROLE_PRETRAIN, ROLE_CHOSEN, ROLE_CANDIDATE, ROLE_BASIN, ROLE_OUTSIDE = (
    "pretrain", "chosen", "candidate", "basin", "not in the study")
ROLES = (ROLE_PRETRAIN, ROLE_CHOSEN, ROLE_CANDIDATE, ROLE_BASIN, ROLE_OUTSIDE)
"""What a run is to the study (the runs table's ``role``): ``pretrain``, a pre-trained model P; ``chosen``, a run
the verdicts and the results table read (P-T or RI-T from the final P: the learning-rate candidate that was chosen,
every seed trained at the chosen rate, or a run of a fixed rate); ``candidate``, a learning-rate candidate that was
not chosen (or whose choice is not made yet); ``basin``, P-T from an earlier pre-training checkpoint; ``not in the
study``, a stored run the study no longer plans (e.g. of a seed taken out). A mean over the rows of role ``chosen``
at a target and block size is the mean the tool reports there."""

CLAIM_COLUMNS = ("claim", "target", "statistic", "unit", "estimate", "low", "high", "level", "n", "counted", "side",
                 "bound", "margin", "outcome", "target_outcome", "claim_outcome", "p_holm", "holm_alpha",
                 "seeds_needed", "pretrain_seed", "caveats", "why")
"""The columns of the claims table: one row per effect (``statistic``: its name; ``estimate``, ``low``, ``high``:
the statistic and its interval at confidence ``level``; ``n``: what it counted, ``counted``; ``side``, ``bound``,
``margin``: what the claim says of it; ``outcome``: the effect's outcome as the report shows it, ``unreliable`` for
a decisive one on runs that did not fit or whose files changed; ``p_holm``, ``holm_alpha``: the p-value Holm's
correction judged and the level it met; ``seeds_needed``: for an undecided one, about how many seeds would decide
it; ``pretrain_seed``: the pre-trained model P the verdict is conditional on; ``caveats``: those of the target, in
a few words; ``why``: the effect's sentence), and one row per target measured by no effect (its numbers empty)."""

CLAIM_NUMBERS = ("estimate", "low", "high", "level", "n", "bound", "margin", "p_holm", "holm_alpha", "seeds_needed",
                 "pretrain_seed")
"""The numeric columns of the claims table (NaN, or empty in a CSV file, where there is no number)."""

ANALYSIS_COLUMNS = ("analysis", "target", "pretrain_seed", "block_size", "checkpoint", "group", "seed_a", "run_a",
                    "seed_b", "run_b", "which_b", "field", "i", "at_i", "j", "at_j", "value")
"""The columns of every analysis table (long format: one number per row). ``group``: the pair's kind (``P-T/RI-T``),
the model's arm, or a correlation's ``<score>/<gain>``; ``seed_a``/``run_a`` (and ``seed_b``/``run_b``/``which_b``
for a pair): the runs; ``field``: the record's field; ``i``/``j``: positions along the field's axes, ``at_i``/
``at_j`` what is there (a layer or module name, a lambda, a radius, an epoch ...); ``value``: the number."""

_AXES: dict[str, dict[str, tuple[str, ...]]] = {
    "cka": dict.fromkeys(("full", "minibatch"), ("layers",)),
    "barrier": dict.fromkeys(("loss", "error"), ("lambdas",)),
    "criticality": dict.fromkeys(("criticality", "best_a", "best_s", "distance", "best_s_low", "best_s_high",
                                  "criticality_low", "criticality_high", "degenerate"), ("modules",))
    | dict.fromkeys(("rewind_loss", "rewind_acc", "boundary_s", "boundary_width"), ("modules", "alphas")),
    "flatness": dict.fromkeys(("loss_increase", "loss_increase_std"), ("radii",)),
    "stability": dict.fromkeys(("loss_change", "grad_change", "loss_lipschitz", "grad_lipschitz"), ("ks",)),
    "principal": dict.fromkeys(("fraction", "random_fraction"), ("weights", "top_k")) | {"grad_norm": ("weights",)},
    "deviation": {"deviation": ("epochs", "modules")},
}
"""Per analysis, the record fields whose positions are named by another field of the record (e.g. CKA's ``full``
per ``layers``)."""

_SKIP = frozenset({"args", "schema_version", "seed"})  # the settings, not results (the job's params say them)


def _scalar(v) -> bool:
    return v is None or isinstance(v, bool | int | float | str)


def _flatten(analysis: str, d: dict, base: dict) -> list[dict]:
    """Rows of the numbers of one record dict (a result of one model or pair, a point of a curve ...)."""
    axes = _AXES.get(analysis, {})
    rows: list[dict] = []

    def at(names: tuple[str, ...], k: int, pos: int):
        if k < len(names):
            lab = d.get(names[k])
            if isinstance(lab, list) and pos < len(lab):
                return str(lab[pos])
        return None

    for name, v in d.items():
        if name in _SKIP or isinstance(v, str):
            continue
        names = axes.get(name, ())
        if isinstance(v, bool | int | float) or v is None:
            rows.append({**base, "field": name, "value": v})
        elif isinstance(v, dict):
            for pos, (key, x) in enumerate(v.items()):
                if isinstance(x, bool | int | float) or x is None:
                    rows.append({**base, "field": name, "i": pos, "at_i": str(key), "value": x})
        elif isinstance(v, list):
            for pos, x in enumerate(v):
                if isinstance(x, dict):  # a point of a curve (stability): its numbers, at this position
                    point = {**base, "i": pos, "at_i": None if x.get("epoch") is None else str(x["epoch"])}
                    for r in _flatten(analysis, x, {}):
                        if "i" in r:
                            r["j"], r["at_j"] = r.pop("i"), r.pop("at_i", None)
                        rows.append({**point, **r})
                elif isinstance(x, list):
                    for q, y in enumerate(x):
                        if isinstance(y, bool | int | float) or y is None:
                            rows.append({**base, "field": name, "i": pos, "at_i": at(names, 0, pos), "j": q,
                                         "at_j": at(names, 1, q), "value": y})
                elif isinstance(x, bool | int | float) or x is None:
                    rows.append({**base, "field": name, "i": pos, "at_i": at(names, 0, pos), "value": x})
    return rows


def analysis_rows(name: str, result: dict, pretrain_seed: int | None) -> list[dict]:
    """The long rows of one stored analysis result (``name``: ``<analysis>/<target>``; ``result``: the record's
    dict, what ``analyses/<file>.json`` holds under ``result``, as its record type reads it)."""
    analysis, _, target = name.partition("/")
    base = {"analysis": analysis, "target": None if target == "all" else target, "pretrain_seed": pretrain_seed}
    rows: list[dict] = []
    if "pairs" in result:
        for p in result["pairs"]:
            seeds, runs = p.get("seeds") or [None, None], p.get("runs") or [None, None]
            rows += _flatten(analysis, p["result"], {**base, "group": p["kind"], "seed_a": seeds[0], "seed_b": seeds[1],
                                                     "run_a": runs[0], "run_b": runs[1], "which_b": p.get("which_b")})
    elif "models" in result:
        for m in result["models"]:
            rows += _flatten(analysis, m["result"], {**base, "group": m["arm"], "seed_a": m["seed"], "run_a": m["run"]})
    elif analysis == "transfer":
        for r in result["rows"]:
            at = {**base, "target": r["target"], "block_size": r["block_size"]}
            rows.append({**at, "field": "gain", "value": r["gain"]})
            for arm in ("P-T", "RI-T"):
                for k, v in r.items():
                    if k.startswith(f"{arm}_") and _scalar(v) and not isinstance(v, str):
                        rows.append({**at, "group": arm, "field": k.removeprefix(f"{arm}_"), "value": v})
                for s in r.get(f"{arm}_per_seed", []):
                    rows += [{**at, "group": arm, "seed_a": s["seed"], "field": k, "value": v}
                             for k, v in s.items() if k != "seed"]
        rows += _flatten(analysis, {k: v for k, v in result.items() if k != "rows"}, base)
    elif analysis == "basin":
        for r in result["rows"]:
            at = {**base, "block_size": result.get("block_size"), "checkpoint": r["checkpoint"], "group": "P-T",
                  "seed_a": r["seed"], "run_a": r["run"]}
            rows += [{**at, "field": k, "value": v} for k, v in r.items() if k not in ("checkpoint", "seed", "run")]
        rows.append({**base, "block_size": result.get("block_size"), "field": "final_checkpoint",
                     "value": result.get("final_checkpoint")})
    elif analysis == "scores":
        for b, r in result["blocks"].items():
            rows += _flatten(analysis, r, {**base, "block_size": int(b)})
    elif analysis == "relate":
        for p in result["points"]:
            at = {**base, "target": p["target"], "block_size": p["block_size"]}
            rows += [{**at, "field": k, "value": v} for k, v in p.items() if k not in ("target", "block_size")]
        for key, c in result["correlations"].items():
            rows += [{**base, "group": key, "field": k, "value": v} for k, v in c.items()]
    else:  # an analysis this version does not know the shape of: its numbers, generically
        rows += _flatten(analysis, result, base)
    return [{c: r.get(c) for c in ANALYSIS_COLUMNS} for r in rows]


def _per_label(metrics: dict, classes) -> dict:
    """A multi-label run's list figures as scalar columns: ``test_auc[<label>]`` per label (named by run.json's
    ``classes``, else by position) and ``test_auc_excluded`` joined with ``; ``."""
    out: dict = {}
    per = metrics.get("test_auc_per_label")
    if isinstance(per, list):
        names = list(classes) if isinstance(classes, list) and len(classes) == len(per) else range(len(per))
        out.update({f"test_auc[{n}]": (float("nan") if v is None else v) for n, v in zip(names, per, strict=True)})
    excluded = metrics.get("test_auc_excluded")
    if isinstance(excluded, list):
        out["test_auc_excluded"] = "; ".join(map(str, excluded))
    return out


def run_roles(plan, store: Store) -> dict[str, str]:
    """The role (:data:`ROLES`) of every run of ``plan`` (its learning-rate choices made from ``store``) and of every
    run ``store`` holds, by run id: the candidates first, then the runs of the study, then the stored runs it no
    longer plans."""
    return _roles(plan, store)[1]


def _roles(plan, store: Store) -> tuple[dict, dict[str, str]]:
    """(the :class:`~transferscope.study.plan.RunSpec` of each run of the study by run id, its learning-rate choices
    made; the role of each run, stored ones outside the study included), in the order of :func:`run_roles`."""
    from .store import StoreError
    from .study.tuning import concrete, resolve

    try:
        resolved = resolve(plan, store)
    except StoreError:
        # a candidate no longer reads, so the choices are unknown: a stored run that waited for one is one of the
        # study's all the same (at whichever rate it trained); every candidate stays a candidate
        stored = set(store.list_runs()) - {r.run_id for r in plan.tuning}
        maybe = {r.run_id: r for t, sel in plan.deferred for r in (concrete(t, c.train.lr) for c in sel.candidates)}
        resolved = replace(plan, runs=list(plan.runs) + [r for rid, r in maybe.items() if rid in stored])
    roles = dict.fromkeys((r.run_id for r in resolved.tuning), ROLE_CANDIDATE)
    for r in resolved.runs:  # the chosen candidate is one of these too: the verdicts read it
        roles[r.run_id] = ROLE_PRETRAIN if r.arm == "P" else ROLE_BASIN if r.parent_checkpoint >= 0 else ROLE_CHOSEN
    for rid in store.list_runs():
        roles.setdefault(rid, ROLE_OUTSIDE)
    return {r.run_id: r for r in resolved.tuning + resolved.runs}, roles


def run_rows(store: Store, plan) -> list[dict]:
    """One row per run of the study (planned or stored): its spec's settings, the metrics of a finished run, its
    status (``done``, ``failed``, ``pending``; ``damaged`` where a file no longer reads), its role (:data:`ROLES`)
    and its times."""
    from .store import StoreError

    specs, roles = _roles(plan, store)
    rows = []
    for rid, role in roles.items():
        row: dict = {"run_id": rid}
        try:
            info = store.run_info(rid) or {}
        except StoreError as e:
            info, row["status"], row["note"] = {}, "damaged", str(e)
        spec = info.get("spec") or (specs[rid].to_dict() if rid in specs else {})
        row.setdefault("status", info.get("status") or "pending")
        row["role"] = role
        dom, train = spec.get("domain") or {}, spec.get("train") or {}
        row.update(arm=spec.get("arm"), domain=dom.get("label") or dom.get("name"),
                   target=(dom.get("label") or dom.get("name")) if spec.get("arm") not in (None, "P") else None,
                   block_size=spec.get("block_size"), seed=spec.get("seed"), pretrain_seed=spec.get("pretrain_seed"),
                   parent=spec.get("parent") or None, parent_checkpoint=spec.get("parent_checkpoint"),
                   model=(spec.get("model") or {}).get("name"))
        for k in _TRAIN_COLUMNS:
            row[k] = train.get(k)
        if row["status"] == RUN_DONE:
            try:
                metrics = store.read_json(rid, "metrics.json")
            except StoreError as e:
                metrics, row["status"], row["note"] = {}, "damaged", str(e)
            row["metric"] = metric_of(metrics)
            row.update({k: v for k, v in metrics.items() if _scalar(v)})
            row.update(_per_label(metrics, info.get("classes")))
        row["run_seconds"] = info.get("seconds")
        for k, v in info.items():
            if k not in row and k not in ("seconds", "run_id", "spec") and _scalar(v):
                row[k] = v
        rows.append(row)
    return rows


def _runs(store: Store, plan) -> tuple[list[dict], list[str]]:
    """The rows of the runs table and its columns (:data:`RUN_COLUMNS`, then the others of the rows)."""
    rows = run_rows(store, plan)
    columns = list(RUN_COLUMNS)
    for r in rows:
        columns += [k for k in r if k not in columns]
    return rows, columns


def claim_rows(by_pretrain: dict[int, list]) -> list[dict]:
    """The rows of the claims table (:data:`CLAIM_COLUMNS`) of the verdicts under each pre-trained model (by its
    seed, as :attr:`transferscope.api.Analysis.verdicts` and
    :func:`transferscope.claims.compare.load_by_pretrain` give them): one per effect, and
    one per target that no effect measured. An effect decisive on runs with a blocking caveat (that did not fit
    their training data, or whose files changed) shows ``unreliable``, as the report shows it."""
    from .vocab.caveats import summary

    rows = []
    for seed, verdicts in by_pretrain.items():
        for v in verdicts:
            for t in v.targets:
                base = {"claim": v.claim, "target": t.target, "target_outcome": t.outcome, "claim_outcome": v.outcome,
                        "pretrain_seed": seed, "caveats": summary(t.caveats) or None}
                if not t.effects:
                    rows.append({**base, "outcome": t.outcome, "why": t.why or None})
                for e in t.effects:
                    rows.append({**base, "statistic": e.name, "unit": e.unit or None, "estimate": e.value, "low": e.low,
                                 "high": e.high, "level": e.level, "n": e.n, "counted": e.counted or None,
                                 "side": e.side, "bound": e.bound, "margin": e.margin,
                                 "outcome": t.shown(e),
                                 "p_holm": e.p_holm, "holm_alpha": e.holm_alpha, "seeds_needed": e.seeds_needed,
                                 "why": e.why or None})
    return [{c: r.get(c) for c in CLAIM_COLUMNS} for r in rows]


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("the tables as DataFrames need pandas: pip install 'transferscope[tables]'") from None
    return pd


def data_frame(rows: list[dict], columns: list[str] | tuple[str, ...]):
    """``rows`` as a pandas DataFrame of ``columns``: exactly what ``pandas.read_csv`` reads from the CSV file
    :func:`export_tables` writes of them (an empty cell, NaN; a column of numbers, numbers)."""
    import io

    pd = _pandas()
    return pd.read_csv(io.StringIO(_csv_text(rows, list(columns))))


def runs_frame(results: str | Path):
    """The runs table of the results folder ``results`` (as ``runs.csv``) as a pandas DataFrame."""
    from .study.plan import make_plan

    store = _store_of(Path(results))
    return data_frame(*_runs(store, make_plan(store.study_config(), check=False)))


def _cell(v):
    """A value as a CSV cell: None and NaN empty, a float as Python writes it (exact), anything else as text."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(v) if isinstance(v, float) else v


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(r.get(k)) for k in columns})
    return buf.getvalue()


def _write_table(rows: list[dict], columns: list[str], path: Path, fmt: str, numbers: tuple[str, ...] = ()) -> Path:
    """``rows`` as the table ``path`` (its suffix ``fmt``); ``numbers``: columns that are floats in a Parquet file
    whatever they hold (whole numbers, or none), as a CSV reader reads them."""
    path = path.with_suffix(f".{fmt}")
    if fmt == "csv":
        atomic_write_text(path, _csv_text(rows, columns))
        return path
    pa, pq = _pyarrow()
    arrays = {}
    for c in columns:
        vals = [r.get(c) for r in rows]
        present = [v for v in vals if v is not None]
        if c in numbers:
            typ, vals = pa.float64(), [None if v is None else float(v) for v in vals]
        elif present and all(isinstance(v, bool) for v in present):
            typ = pa.bool_()
        elif present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            typ = pa.int64()
        elif present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            typ, vals = pa.float64(), [None if v is None else float(v) for v in vals]
        else:
            typ, vals = pa.string(), [None if v is None else str(v) for v in vals]
        arrays[c] = pa.array(vals, type=typ)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.table(arrays), tmp)
    tmp.replace(path)
    return path


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError("--format parquet needs pyarrow: pip install 'transferscope[tables]' (or --format csv, "
                          "which needs nothing)") from None
    return pa, pq


def export_tables(results: str | Path, out: str | Path | None = None, fmt: str = "csv") -> tuple[list[Path], str]:
    """Write the runs table (``runs.<fmt>``, one row per run with its role: :data:`RUN_COLUMNS`), the claims table
    (``claims.<fmt>``, one row per effect of the verdicts of ``analyses/claims.json``: :data:`CLAIM_COLUMNS`) and
    one long table per analysis (``<analysis>.<fmt>``, columns :data:`ANALYSIS_COLUMNS`) of the results folder
    ``results`` into ``out`` (default ``RESULTS/tables``). Returns (the paths written, a note on what is missing:
    empty when the verdicts and every analysis were exported).

    Raises:
        ExportError: ``results`` is not a results folder, ``fmt`` is unknown, pyarrow is missing for parquet, or
            ``out`` cannot be written.
    """
    from .claims.compare import load_by_pretrain
    from .study.plan import make_plan
    from .vocab.records import result_from_dict

    if fmt not in TABLE_FORMATS:
        raise ExportError(f"--format {fmt!r}: one of {', '.join(TABLE_FORMATS)}")
    if fmt == "parquet":
        _pyarrow()  # before anything is read
    results = Path(results)
    store = _store_of(results)
    plan = make_plan(store.study_config(), check=False)
    out = Path(out) if out else results / "tables"
    runs, columns = _runs(store, plan)
    tables: dict[str, list[dict]] = {}
    adir = results / "analyses"
    indexes = sorted(adir.glob("index*.json")) if adir.is_dir() else []
    primary = plan.config.pretrain_seed_list[0]
    unreadable = []
    for idx in indexes:
        seed = int(idx.stem.removeprefix("index-P")) if idx.stem.startswith("index-P") else primary
        for name, file in read_analysis_index(idx, results)["results"].items():
            try:
                stored = jsonio.read(adir / file)["result"]
                record = result_from_dict(name, stored)  # the typed record: a file of another shape is refused
            except (OSError, KeyError, TypeError, ValueError, AttributeError) as e:
                unreadable.append(f"{name} ({file}: {type(e).__name__}: {e})")
                continue
            tables.setdefault(name.split("/", 1)[0], []).extend(
                analysis_rows(name, jsonio.loads(jsonio.dumps(record.to_dict())), seed))
    claims, no_claims = None, ""
    if (adir / "claims.json").is_file():
        try:
            claims = claim_rows(load_by_pretrain(results, primary))
        except (FileNotFoundError, ValueError) as e:
            no_claims = f"no claims table: {e}"
    elif indexes:
        no_claims = (f"no claims table: {adir / 'claims.json'} is missing (transferscope analyze {results} writes the "
                     "verdicts)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = [_write_table(runs, columns, out / "runs", fmt)]
        if claims is not None:
            paths.append(_write_table(claims, list(CLAIM_COLUMNS), out / "claims", fmt, CLAIM_NUMBERS))
        paths += [_write_table(rows, list(ANALYSIS_COLUMNS), out / name, fmt) for name, rows in sorted(tables.items())]
    except OSError as e:
        raise ExportError(f"--out {out}: cannot be written ({e.strerror or e})") from None
    notes = [no_claims] if no_claims else []
    if not indexes:
        notes.append(f"no analyses in {results} (transferscope analyze {results} computes them): "
                     + ("only the runs and claims tables written" if claims is not None else
                        "only the runs table written (no claims table: no analyses/claims.json)"))
    elif unreadable:
        notes.append("not exported, unreadable (run transferscope analyze again): " + "; ".join(unreadable))
    return paths, "\n".join(notes)
