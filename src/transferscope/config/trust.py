"""Which model factories this process may run.

A factory (``[model] name = "package.module:function"``) is code: building the model imports the module and calls the
function. It runs when the user said so: their own study config names it (a file they pass, a built-in study, a
:class:`~transferscope.config.StudyConfig` they build, a ``--set``), or they trust it by name (``--trust-factory NAME``,
:func:`trust_factory`). A results folder, or a run's record, that names a factory is data someone else may have
written: reading, analysing or repairing it never runs a factory it alone names (as the project never unpickles).

The trusted names live in this process's environment (:data:`TRUST_ENV`, comma-separated), so that the worker
processes it starts inherit them; a Ray task is given them with its arguments.

A factory's module is imported from the folder of the study config that names it (``mymodels/cnn.py`` beside the
study file, named ``mymodels.cnn:small_cnn``), as a script imports the modules beside it, then from the Python path.
The folder is recorded by the loading of the user's own config (:func:`trust_factory` with ``folder``, in
:data:`FOLDER_ENV`, which worker processes inherit too); a folder that only a results folder records is never
one.
"""

from __future__ import annotations

import json
import os

__all__ = ["TRUST_ENV", "FOLDER_ENV", "is_factory", "trust_factory", "trusted_factories", "factory_folder",
           "untrusted_message", "check_trusted"]

TRUST_ENV = "TRANSFERSCOPE_TRUSTED_FACTORIES"
FOLDER_ENV = "TRANSFERSCOPE_FACTORY_FOLDERS"
"""The folder each factory is imported from first: a JSON object, factory name to the folder of the study config
that named it."""
SAFE_LIBRARIES = ("torchvision", "timm")
"""``torchvision:NAME`` and ``timm:NAME`` build a model registered in that library by name: no code is named."""


def is_factory(name: str) -> bool:
    """Whether a model name is a factory ``package.module:function`` (code to import and call)."""
    lib, sep, _ = name.partition(":")
    return bool(sep) and lib not in SAFE_LIBRARIES


def trusted_factories() -> frozenset[str]:
    return frozenset(n for n in os.environ.get(TRUST_ENV, "").split(",") if n)


def _folders() -> dict[str, str]:
    try:
        folders = json.loads(os.environ.get(FOLDER_ENV) or "{}")
    except ValueError:
        return {}
    return {k: v for k, v in folders.items() if isinstance(v, str)} if isinstance(folders, dict) else {}


def factory_folder(name: str) -> str:
    """The folder of the study config that named the factory ``name`` (in this process, or in the one that started
    it), where its module is looked for first; empty when none did (a factory trusted by name only)."""
    return _folders().get(name, "")


def trust_factory(*names: str, folder: str = "") -> None:
    """Let this process (and the workers it starts) run these factories. ``folder``: the folder of the user's own
    study config that names them, from which their modules are imported (before the Python path); the last one
    given for a name holds."""
    new = trusted_factories() | {n for n in names if n and is_factory(n)}
    if new:
        os.environ[TRUST_ENV] = ",".join(sorted(new))
    named = [n for n in names if n and is_factory(n)]
    if folder and named:
        os.environ[FOLDER_ENV] = json.dumps({**_folders(), **dict.fromkeys(named, os.path.abspath(folder))},
                                            sort_keys=True)


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
