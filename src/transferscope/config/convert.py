"""Generic, strict conversion between dicts (TOML / JSON) and the config dataclasses: unknown keys, missing keys and
wrong types are refused with a message naming the dotted key (:func:`from_dict`); :func:`to_dict` is the way back,
with the option run ids hash (defaults left out).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from .checks import ConfigError

__all__ = ["from_dict", "to_dict"]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {_type_name(inner)}"
    if dataclasses.is_dataclass(tp):
        return f"a table ({tp.__name__})"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp) and type(value) is type(typing.get_args(tp)[0]):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (types.UnionType, typing.Union):
        raise TypeError("unions are not used in configs")
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a developer error, not a user error
        raise TypeError(f"unsupported config type {tp!r} at {key}")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from ``data``, refusing unknown keys, missing keys and wrong types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    dotted = (prefix + ".") if prefix else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{dotted}{unknown[0]}: unknown key; valid keys{' of ' + prefix if prefix else ''} are "
            + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], dotted + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{dotted}{name}: missing; expected {_type_name(hints[name])}")
    return cls(**kwargs)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def to_dict(obj: Any, *, skip_defaults: bool = False) -> Any:
    """Plain JSON/TOML-able form of a config dataclass (every field, defaults included).

    ``skip_defaults=True`` leaves out, at every level, each field whose value equals its dataclass default (fields
    without a default are always kept): what run ids hash, so that a new field with a default changes no id.
    """
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if skip_defaults:
                d = _default(f)
                if d is not dataclasses.MISSING and to_dict(v) == to_dict(d):
                    continue
            out[f.name] = to_dict(v, skip_defaults=skip_defaults)
        return out
    if isinstance(obj, list | tuple):
        return [to_dict(v, skip_defaults=skip_defaults) for v in obj]
    return obj
