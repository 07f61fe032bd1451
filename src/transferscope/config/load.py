"""Loading a study: a TOML file or a built-in profile, dotted overrides (``key.sub=value``, ``targets[0].key=value``),
and its paths made absolute (relative to the study file's folder, or to the working directory for overrides), then
converted and checked field by field (:func:`load_config`).
"""

from __future__ import annotations

import dataclasses
import os
import re
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


_SEGMENT = re.compile(r"([^.\[\]]+)?((?:\[[^\[\]]*\])*)")
_INDEX = re.compile(r"\s*(-?\d+)\s*")


def _steps(key: str, item: str) -> list[tuple[str, Any]]:
    """The steps of an override's key, in order: ``("key", name)``, ``("index", n)`` (written ``[n]``) or
    ``("digits", text)`` (a dotted ``.n``: an index into a list, a key of a free table such as ``model.kwargs``)."""
    steps: list[tuple[str, Any]] = []
    for n, seg in enumerate(key.split(".")):
        m = _SEGMENT.fullmatch(seg)
        indices = re.findall(r"\[([^\[\]]*)\]", m.group(2)) if m else []
        if not m or not seg or (n == 0 and not m.group(1)) or any(not _INDEX.fullmatch(i) for i in indices):
            raise ConfigError(f"--set {item}: {seg!r}: expected a key, or an index written [N] or .N "
                              "(e.g. finetune.lr, targets[0].n_per_class or targets.0.n_per_class)")
        if m.group(1):
            steps.append(("digits" if _INDEX.fullmatch(m.group(1)) else "key", m.group(1)))
        steps += [("index", int(i)) for i in indices]
    return steps


def _items(n: int) -> str:
    return f"{n} item{'' if n == 1 else 's'}"


def _set(out: dict[str, Any], item: str, steps: list[tuple[str, Any]], value: Any, cls: type | None) -> str:
    """Set ``value`` at ``steps`` in ``out`` (tables made as needed; list elements only where they are), checking each
    key against the config's tables when ``cls`` is given. Returns the key as the messages write it
    (``targets[0].n_per_class``); a wrong step is one :class:`ConfigError` naming the override."""
    node: Any = out
    tp: Any = cls  # the type ``node`` has in the config; None: not checked (a free table, e.g. model.kwargs)
    path = ""

    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"--set {item}: {key}: {why}")

    for n, (kind, v) in enumerate(steps):
        last = n == len(steps) - 1
        if kind == "digits":  # .N: an index, but a key of a free table (and of the top level: no such key)
            free = isinstance(node, dict) and (not dataclasses.is_dataclass(tp) or not path)
            kind, v = ("key", v) if free else ("index", int(v))
        if kind == "key":
            key = f"{path}.{v}" if path else v
            if isinstance(node, list):
                tables = (typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0])) or \
                    any(isinstance(x, dict) for x in node)
                rest = "".join(f".{s}" if k != "index" else f"[{s}]" for k, s in steps[n:])
                raise fail(key, f"{path} is a list{' of tables' if tables else ''}; give an index, e.g. {path}[0]"
                                + (rest if tables else ""))
            if not isinstance(node, dict):
                raise fail(path, f"{node!r} is not a table")
            child: Any = None
            if dataclasses.is_dataclass(tp):
                fields = {f.name for f in dataclasses.fields(tp)}
                if v not in fields:
                    raise fail(key, f"unknown key; valid keys{' of ' + path if path else ''} are "
                                    + ", ".join(sorted(fields)))
                child = typing.get_type_hints(tp)[v]
            if last:
                node[v] = value
                return key
            if v not in node:  # a missing table is made; a missing list has no element to set
                if child is not None and child is not dict and not dataclasses.is_dataclass(child) \
                        and typing.get_origin(child) is not list:
                    raise fail(key, "a value, not a table")
                node[v] = [] if typing.get_origin(child) is list else {}
            node, tp, path = node[v], child, key
            continue
        key = f"{path}[{v}]"
        if not isinstance(node, list):
            if isinstance(node, dict):
                rest = ".".join(str(s) for k, s in steps[n + 1:] if k != "index")
                raise fail(key, f"{path} is a table, not a list; name its keys"
                                + (f", e.g. {path}.{rest}" if rest else ""))
            raise fail(key, f"{path} is {node!r}, not a list")
        if v < 0:
            raise fail(key, f"a negative index; indices count from 0 ({path} has {_items(len(node))})")
        if v >= len(node):
            raise fail(key, f"index {v} is out of range; {path} has "
                            + (f"{_items(len(node))} (indices 0 to {len(node) - 1})" if node else "no items"))
        child = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        if last:
            node[v] = value
            return key
        node, tp, path = node[v], child, key
    raise AssertionError("an override without a key")  # pragma: no cover - _steps gives at least one step


def _apply(data: dict[str, Any], overrides: list[str], cls: type | None) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`apply_overrides`, and the key each override set (as the messages write it) with the override."""
    import copy

    out = copy.deepcopy(data)
    keys: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. finetune.lr=0.01")
        key, text = item.split("=", 1)
        keys[_set(out, item, _steps(key.strip(), item), _parse_value(text.strip()), cls)] = item
    return out, keys


def apply_overrides(data: dict[str, Any], overrides: list[str], cls: type | None = StudyConfig) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values in TOML syntax) to a raw config dict, returning a copy.

    A key names a table's key (``finetune.lr``; a missing table is made) or a list's element by its index, written
    ``targets[0].n_per_class`` or ``targets.0.n_per_class`` (an element that is there: a list is not extended).
    Each key is checked against the tables of ``cls`` (None: not checked): an unknown key, an index into what is
    not a list, a negative index or one past the end is one :class:`ConfigError` that names the override
    (``--set targets[0].bogus=1: targets[0].bogus: unknown key; ...``)."""
    return _apply(data, overrides, cls)[0]


def _blame(message: str, keys: dict[str, str]) -> str:
    """The override (``--set KEY=VALUE``) that set the key a message is about (it begins ``key: ...``), or ''."""
    about = message.split(": ", 1)[0]
    for key, item in reversed(list(keys.items())):
        if any(a == b or a.startswith(b + ".") or a.startswith(b + "[") for a, b in ((about, key), (key, about))):
            return item
    return ""


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
    relative to the working directory. A model factory the study names (``[model] name = "mymodels.cnn:f"``) is
    trusted, and its module imported from the file's folder first (one named by an override: from the working
    directory; :func:`~transferscope.config.trust_factory`).

    An override that does not fit the study's tables (an unknown key, an index out of range) is a
    :class:`ConfigError` that names it (``--set KEY=VALUE: ...``); a value it sets that is refused names it too
    (``FILE: key: expected ..., got ... (set by --set KEY=VALUE)``).

    Args:
        source: a path to a TOML file, a built-in profile name (``quick``, ``paper``), or None for ``quick``.
        overrides: ``key=value`` strings, e.g. ``["finetune.lr=0.01", "seeds=[0,1,2]", "targets[0].n_per_class=5"]``
            (see :func:`apply_overrides`).
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
    data, keys = _apply(data, overrides or [], StudyConfig)  # a wrong key: "--set KEY=VALUE: ...", not the file's
    # paths set by overrides: from the working directory (a study file's, made absolute; a built-in's, as given)
    data = resolve_paths(data, os.getcwd() if folder is not None else None)
    try:
        cfg = from_dict(StudyConfig, data)
        check_config(cfg)
    except ConfigError as e:
        item = _blame(str(e), keys)
        raise ConfigError(f"{where}: {e}" + (f" (set by --set {item})" if item else "")) from e
    # the user's own study names it: theirs to run (a results folder's never is), imported from the folder of the
    # file that names it (a factory named by --set: from the working directory, as a path given there)
    set_on_command_line = bool(_blame("model.name: ", keys))
    trust_factory(cfg.model.name, folder=os.getcwd() if set_on_command_line else folder or "")
    return cfg
