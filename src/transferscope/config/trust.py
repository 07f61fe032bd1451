"""Which model factories this process may run.

A factory (``[model] name = "package.module:function"``) is code: building the model imports the module and calls the
function. It runs when the user said so: their own study config names it (a file they pass, a built-in study, a
:class:`~transferscope.config.StudyConfig` they build, a ``--set``), or they trust it by name (``--trust-factory NAME``,
:func:`trust_factory`). A results folder, or a run's record, that names a factory is data someone else may have
written: reading, analysing or repairing it never runs a factory it alone names (as the project never unpickles).

The trusted names live in this process's environment (:data:`TRUST_ENV`, comma-separated), so that the worker
processes it starts inherit them; a Ray task is given them with its arguments.
"""

from __future__ import annotations

import os

__all__ = ["TRUST_ENV", "is_factory", "trust_factory", "trusted_factories", "untrusted_message", "check_trusted"]

TRUST_ENV = "TRANSFERSCOPE_TRUSTED_FACTORIES"
SAFE_LIBRARIES = ("torchvision", "timm")
"""``torchvision:NAME`` and ``timm:NAME`` build a model registered in that library by name: no code is named."""


def is_factory(name: str) -> bool:
    """Whether a model name is a factory ``package.module:function`` (code to import and call)."""
    lib, sep, _ = name.partition(":")
    return bool(sep) and lib not in SAFE_LIBRARIES


def trusted_factories() -> frozenset[str]:
    return frozenset(n for n in os.environ.get(TRUST_ENV, "").split(",") if n)


def trust_factory(*names: str) -> None:
    """Let this process (and the workers it starts) run these factories."""
    new = trusted_factories() | {n for n in names if n and is_factory(n)}
    if new:
        os.environ[TRUST_ENV] = ",".join(sorted(new))


def untrusted_message(name: str, where: str = "") -> str:
    return (f"model.name {name!r}{' in ' + where if where else ''}: a model factory named only by a results folder "
            "or a run's record is not run (it is code, and whoever wrote the folder chose it); if you trust it, name "
            f"it in your own study config, or pass --trust-factory {name} (in Python: "
            f"transferscope.config.trust_factory({name!r}))")


def check_trusted(name: str, where: str) -> None:
    """Before a command builds the models of a study it read from ``where`` (a results folder's ``study.json``):
    one :class:`~transferscope.config.ConfigError` naming the factory and how to trust it, when it is not trusted."""
    from .checks import ConfigError

    if is_factory(name) and name not in trusted_factories():
        raise ConfigError(untrusted_message(name, where))
