"""Loading a study: a TOML file or a built-in profile, dotted overrides (``key.sub=value``), and its paths made
absolute (relative to the study file's folder, or to the working directory for overrides), then converted and
checked field by field (:func:`load_config`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from importlib import resources
from pathlib import Path
from typing import Any

from .checks import ConfigError, check_config, field_check
from .convert import from_dict
from .schema import StudyConfig
from .trust import trust_factory

__all__ = ["load_config", "apply_overrides", "builtin_study", "BUILTIN_STUDIES", "resolve_paths"]


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values in TOML syntax) to a raw config dict, returning a copy."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. finetune.lr=0.01")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {p} is not a table")
        node[parts[-1]] = _parse_value(text.strip())
    return out


BUILTIN_STUDIES = ("quick", "paper")


def builtin_study(name: str) -> str:
    """TOML text of an embedded study (``quick`` or ``paper``)."""
    if name not in BUILTIN_STUDIES:
        raise ConfigError(f"profile {name!r}: unknown; expected one of {', '.join(BUILTIN_STUDIES)}")
    return resources.files("transferscope").joinpath("studies", f"{name}.toml").read_text()


def _is_path_field(f: dataclasses.Field) -> tuple[bool, bool]:
    """(a path, a list of paths): whether ``f`` declares ``text="path"`` on itself or on its items."""
    c = field_check(f)
    if c is None:
        return False, False
    return c.text == "path", c.items is not None and c.items.text == "path"


def _resolve_one(value: str, base: Path | None) -> str:
    if not value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return value  # empty: not set; a control character: left as written, for the check to refuse by name
    p = os.path.expanduser(value)
    if base is None or os.path.isabs(p):
        return p  # an absolute path is kept exactly as written (its run ids are unchanged)
    return os.path.normpath(os.path.join(base, p))


def resolve_paths(data: dict[str, Any], base: str | Path | None, cls: type | None = None) -> dict[str, Any]:
    """A copy of the raw config ``data`` (a TOML table) with every path field (each field that declares
    ``text="path"``: ``data.cache_dir``, ``model.weights``, ``basin.checkpoints``, the ``path`` of ``[source]`` and
    of each ``[[targets]]``) made absolute: a leading ``~`` is expanded, and a relative path is joined to ``base``
    (normalised). Absolute paths are kept as written; empty ones stay empty. ``base`` None: only ``~`` is expanded
    (relative paths stay relative, read from the working directory). Values of the wrong type are left for
    :func:`from_dict` to refuse."""
    cls = cls or StudyConfig
    base = None if base is None else os.path.abspath(base)
    hints = typing.get_type_hints(cls)
    out = dict(data)
    for f in dataclasses.fields(cls):
        if f.name not in out:
            continue
        v, tp = out[f.name], hints[f.name]
        one, many = _is_path_field(f)
        if one and isinstance(v, str):
            out[f.name] = _resolve_one(v, base)
        elif many and isinstance(v, list):
            out[f.name] = [_resolve_one(x, base) if isinstance(x, str) else x for x in v]
        elif dataclasses.is_dataclass(tp) and isinstance(v, dict):
            out[f.name] = resolve_paths(v, base, tp)
        elif typing.get_origin(tp) is list and isinstance(v, list):
            (inner,) = typing.get_args(tp)
            if dataclasses.is_dataclass(inner):
                out[f.name] = [resolve_paths(x, base, inner) if isinstance(x, dict) else x for x in v]
    return out


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> StudyConfig:
    """Load a study from a TOML file (or a built-in profile name), applying dotted overrides.

    Paths in a study file (``model.weights``, ``basin.checkpoints``, the ``path`` of ``[source]`` and
    ``[[targets]]``, ``data.cache_dir``) are relative to the file's folder, whatever the working directory; paths
    given in ``overrides`` are relative to the working directory (where the command is typed). Both are recorded
    absolute (:func:`resolve_paths`); ``~`` is the home folder. A built-in study's paths (set by overrides) stay
    relative to the working directory.

    Args:
        source: a path to a TOML file, a built-in profile name (``quick``, ``paper``), or None for ``quick``.
        overrides: ``key=value`` strings, e.g. ``["finetune.lr=0.01", "seeds=[0,1,2]"]``.
    """
    folder: str | None = None  # the study file's folder: its relative paths are read from there
    if source is None or (isinstance(source, str) and source in BUILTIN_STUDIES):
        text, where = builtin_study(source or "quick"), f"built-in study {source or 'quick'}"
    else:
        path = Path(source)
        if path.is_dir():
            raise ConfigError(f"config {str(path)!r}: a folder, not a file; expected a study's TOML file")
        if not path.is_file():
            raise ConfigError(f"config {str(path)!r}: no such file")
        where = str(path)
        folder = os.path.dirname(os.path.abspath(path))
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"config {where!r}: cannot be read: {e.strerror or e}") from None
        try:
            text = raw.decode("utf-8-sig")  # a byte-order mark, as some editors write, is dropped
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
            raise ConfigError(f"{where}: not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line}, column {column}; "
                              "save the file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from e
    if folder is not None:
        data = resolve_paths(data, folder)  # the file's own paths: from its folder
    data = apply_overrides(data, overrides or [])
    # paths set by overrides: from the working directory (a study file's, made absolute; a built-in's, as given)
    data = resolve_paths(data, os.getcwd() if folder is not None else None)
    try:
        cfg = from_dict(StudyConfig, data)
        check_config(cfg)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e
    trust_factory(cfg.model.name)  # the user's own study names it: theirs to run (a results folder's never is)
    return cfg
