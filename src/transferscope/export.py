"""Export a run's model for use elsewhere: its weights as safetensors, and a JSON file beside them that says what
they are (the run's spec, the classes, the input the model expects, the sha256 of the weights written).

A model that transferscope wraps (:class:`transferscope.models.Hooked`: a model from a factory, a plugin or an
adapter, or a built-in model with a configured input normalisation) keeps its parameters under ``net.``; the
export strips that prefix, so that the weights load into the user's own module (``load_state_dict(...,
strict=True)``), and says so in the JSON (``"prefix_stripped": "net."``).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from . import __version__, jsonio
from .config import ConfigError
from .store import RUN_DONE, RUN_FAILED, Store, atomic_write_bytes, atomic_write_text, file_sha256, rerun_hint

__all__ = ["ExportError", "export_model", "WRAPPED_PREFIX"]

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
