"""Study configuration: frozen nested dataclasses loaded from TOML.

A study is declared in one TOML file. Loading refuses unknown keys, wrong types and values outside each field's
range (declared on the field as a :class:`Check`) with a message that names the dotted key, the value and what is
allowed, before anything is trained. Semantic checks that need the domain and model registries (a domain that
does not exist, a block size that does not divide the image size) and the memory a study needs live in
:func:`transferscope.study.plan.validate`.

The package keeps one job per module: :mod:`~transferscope.config.schema` (the tables and their fields),
:mod:`~transferscope.config.checks` (what a field allows, and the check), :mod:`~transferscope.config.convert`
(dicts to dataclasses and back) and :mod:`~transferscope.config.load` (files, overrides, paths). Every name is
imported from here, ``transferscope.config``, as when the package was one module.
"""

from .checks import NAME_MAX, PATH_MAX, TEXT_MAX, Check, ConfigError, check_config, describe, field_check
from .convert import from_dict, to_dict
from .load import BUILTIN_STUDIES, apply_overrides, builtin_study, load_config, resolve_paths
from .schema import (
    COUNT_MAX,
    EPOCHS_MAX,
    SEED,
    SEED_MAX,
    TYPED,
    AddedSeeds,
    AnalysisConfig,
    BasinConfig,
    DataConfig,
    DecideConfig,
    DomainConfig,
    ModelConfig,
    PretrainConfig,
    StudyConfig,
    TrainConfig,
)
from .trust import (
    FOLDER_ENV,
    TRUST_ENV,
    check_trusted,
    factory_folder,
    is_factory,
    trust_factory,
    trusted_factories,
    untrusted_message,
)

__all__ = [
    "TRUST_ENV",
    "FOLDER_ENV",
    "factory_folder",
    "check_trusted",
    "is_factory",
    "trust_factory",
    "trusted_factories",
    "untrusted_message",
    "ConfigError",
    "DataConfig",
    "DomainConfig",
    "ModelConfig",
    "TrainConfig",
    "PretrainConfig",
    "BasinConfig",
    "AnalysisConfig",
    "DecideConfig",
    "AddedSeeds",
    "StudyConfig",
    "load_config",
    "builtin_study",
    "BUILTIN_STUDIES",
    "from_dict",
    "to_dict",
    "apply_overrides",
    "Check",
    "check_config",
    "field_check",
    "describe",
    "resolve_paths",
    "SEED_MAX",
    "COUNT_MAX",
    "EPOCHS_MAX",
    "NAME_MAX",
    "TEXT_MAX",
    "PATH_MAX",
    "SEED",
    "TYPED",
]
