"""Study configuration: frozen nested dataclasses loaded from TOML.

A study is declared in one TOML file. Loading refuses unknown keys and wrong types with a message that
names the dotted key and what was expected, before anything is trained. Semantic checks that need the
domain and model registries (a domain that does not exist, a block size that does not divide the image
size) live in :func:`transferscope.study.plan.validate`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ConfigError",
    "DataConfig",
    "DomainConfig",
    "ModelConfig",
    "TrainConfig",
    "PretrainConfig",
    "BasinConfig",
    "AnalysisConfig",
    "StudyConfig",
    "load_config",
    "builtin_study",
    "BUILTIN_STUDIES",
    "from_dict",
    "to_dict",
    "apply_overrides",
]


class ConfigError(ValueError):
    """A study configuration is invalid. The message names the key and what was expected."""


@dataclass(frozen=True)
class DataConfig:
    """How every domain of a study is brought to one tensor format."""

    image_size: int = 32
    """Images are padded to a square and resized to ``image_size`` x ``image_size``."""
    channels: Literal[1, 3] = 1
    """1: grey, 3: RGB. Every domain of a study is converted to this."""
    split_seed: int = 0
    """Seed of the train/val/test splits and of the ``n_per_class`` subsample."""
    shuffle_seed: int = 0
    """Seed of the block-shuffle permutation (one per block size, shared by every image of a domain)."""
    cache_dir: str = ""
    """Where decoded domains are cached. Empty: ``$TRANSFERSCOPE_CACHE`` or ``~/.cache/transferscope``."""


@dataclass(frozen=True)
class DomainConfig:
    """One image domain: a registered name, or ``imagefolder`` / ``csv`` with a ``path``."""

    name: str
    path: str = ""
    """For ``imagefolder`` (one subfolder per class) and ``csv`` (``path,label`` rows)."""
    label: str = ""
    """Name shown in tables and reports; defaults to ``name``."""
    n_per_class: int = 0
    """Training images per class (a low-data target); 0 keeps all."""
    n_val_per_class: int = 50
    """Validation images per class, taken from the training pool."""
    n_test_per_class: int = 0
    """Test images per class; 0 means the domain's official test split, or 20% of its pool."""
    max_pixels: int = 4_000_000
    """Image files larger than this are skipped (and counted), never decoded."""
    distance: float = -1.0
    """How far this target is from the source, for the claims about ordering (N1, N2): any non-negative scale,
    larger is farther. Declared on every target, it is used as given; otherwise (negative: not declared) the
    distance is measured (the MMD between P's features of source and target images). Changes no run."""

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet"
    """The architecture: a built-in model (``resnet``); a factory ``"package.module:function"`` (called with
    ``kwargs``, returning an ``nn.Module``); the name of a plugin of the entry-point group ``transferscope.models``;
    or ``"torchvision:NAME"`` / ``"timm:NAME"`` through those libraries (when installed)."""
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    """Residual blocks per stage (built-in resnet)."""
    width: int = 16
    """Channels of the first stage; each later stage doubles it (built-in resnet)."""
    norm: Literal["none", "batchnorm", "groupnorm"] = "groupnorm"
    """``groupnorm`` and ``none`` (Fixup-style) keep no batch statistics, so weight interpolation is exact
    (built-in resnet)."""
    kwargs: dict = field(default_factory=dict)
    """Keyword arguments of a factory (a TOML table)."""
    weights: str = ""
    """Pre-trained weights of the model (safetensors, or ``.pt``/``.pth`` read with ``weights_only=True``): P is
    this model and pre-training is skipped. Empty: P is pre-trained on the source."""
    weights_sha256: str = ""
    """The sha256 of ``weights``, pinned when the study is planned (a given value must match the file): P's run id
    hashes the content of its weights, not their path."""
    head: str = ""
    """The module (by name, e.g. ``fc`` or ``classifier.2``) that classifies: an ``nn.Linear``, replaced by a fresh
    one with the target's class count. Empty: ``head`` for the built-in resnet; else the first of ``fc``,
    ``head``, ``classifier`` that is an ``nn.Linear``."""
    layers: list[str] = field(default_factory=list)
    """Modules (by name, as in ``named_modules()``) whose outputs the per-layer analyses read (CKA, ...), input to
    output. Empty: the built-in resnet's own layers; for other models the top-level children but the head."""
    mean: list[float] = field(default_factory=list)
    """Input normalisation: per-channel mean of images scaled to [0, 1] (one value, or one per channel). Empty:
    0.5, which with ``std`` 0.5 maps images to [-1, 1] (the built-in default)."""
    std: list[float] = field(default_factory=list)
    """Input normalisation: per-channel standard deviation (see ``mean``). Empty: 0.5."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    """Linear warm-up of the learning rate from 0 over this many epochs (then the schedule)."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this (0: off)."""
    speed_epochs: int = 2
    """k of the optimisation-speed figure (a): mean training accuracy over the first k epochs."""
    speed_fraction: float = 0.9
    """The fraction of the optimisation-speed figure (b): steps to reach it of the final accuracy."""
    eval_every: int = 1
    """Evaluate the validation split (and the test split, with ``test_every_epoch``) and record the weight deviation
    every this many epochs, and always at the start and the end. The learning-rate choice reads the final figures."""
    test_every_epoch: bool = False
    """Evaluate the test split after every epoch too (a test curve in the history). Off: the validation split
    after every epoch, the test split once at the end (it is never used to choose anything)."""
    lr_grid: list[float] = field(default_factory=list)
    """Candidate learning rates. Non-empty: ``lr`` is chosen per target on validation accuracy (see
    ``StudyConfig.lr_selection``); one run per candidate with the first seed, and the winner's run is kept as
    that seed's run. Empty: ``lr`` as given."""
    checkpoint_epochs: list[float] = field(default_factory=list)
    """Points of the trajectory (in epochs; fractions allowed) whose weights are kept (``checkpoints/``), e.g. for
    the gradient-stability analysis along training. The initial and final weights are always kept."""


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    checkpoint_epochs: list[float] = field(default_factory=lambda: [0.0])
    """Points of the pre-training trajectory (in epochs; fractions allowed) whose weights are kept.
    The final weights are always kept."""


@dataclass(frozen=True)
class BasinConfig:
    """Fine-tuning from earlier pre-training checkpoints (claim 9 of Neyshabur et al.)."""

    checkpoint_epochs: list[float] = field(default_factory=list)
    """Checkpoints to fine-tune from; each must be one of ``pretrain.checkpoint_epochs``."""
    targets: list[str] = field(default_factory=list)
    """Target names (their ``display`` name) to run the sweep on; empty: the first target."""
    block_size: int = 0
    """Block size of the sweep; 0: the image size (no shuffle)."""
    checkpoints: list[str] = field(default_factory=list)
    """When P is given (``model.weights``): files of P's earlier weights, in the order they were saved during its
    pre-training (same formats as ``model.weights``). The sweep fine-tunes from each; they stand at positions 1 to
    K of the sweep and the given weights at K + 1 (``checkpoint_epochs`` is then left empty)."""
    checkpoints_sha256: list[str] = field(default_factory=list)
    """The sha256 of each of ``checkpoints``, pinned when the study is planned (as ``model.weights_sha256``)."""


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of ``transferscope analyze`` (each analysis's cached result is keyed by the ones it uses)."""

    cka_batch_size: int = 100
    """Minibatch size of the unbiased minibatch CKA estimator."""
    barrier_points: int = 11
    """Points on the line between two models (ends included)."""
    criticality_alphas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    criticality_samples: int = 2
    """Noise draws per (a, s) point."""
    criticality_examples: int = 100
    criticality_tolerance: float = 0.1
    """eps = (1 + tolerance) x the final training loss."""
    criticality_s_tol: float = 0.02
    flatness_examples: int = 200
    """Training examples of the loss whose Hessian is probed."""
    flatness_iters: int = 20
    """At most this many power iterations (the result records how many were used and whether they converged)."""
    flatness_tol: float = 1e-2
    """Relative change of the eigenvalue estimate at which the power iteration stops."""
    flatness_radii: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1])
    flatness_samples: int = 3
    stability_ks: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])
    """Steps theta - eta k g probed (eta: the run's learning rate)."""
    stability_examples: int = 200
    principal_top_k: list[int] = field(default_factory=lambda: [1, 3])
    principal_examples: int = 200
    scores_source_examples: int = 300
    """Source test images whose features are compared with the target's (MMD)."""
    groups: list[str] = field(default_factory=lambda: ["neyshabur", "liu"])
    """Families of analyses to run: ``neyshabur`` (claims 1-9) is always run; ``liu`` adds claims L1-L5."""
    seed: int = 0


@dataclass(frozen=True)
class StudyConfig:
    name: str
    source: DomainConfig = field(default_factory=lambda: DomainConfig(""))
    """The source P is pre-trained on. Optional when P is given (``model.weights``): the analyses that need source
    images (the source-target MMD, L4's input similarity, measured target distances) then say "not measured"."""
    targets: list[DomainConfig] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    block_sizes: list[int] = field(default_factory=lambda: [32])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    pretrain_seed: int = 0
    """The seed of the pre-trained model P (a study with one P)."""
    pretrain_seeds: list[int] = field(default_factory=list)
    """Several pre-trained models P, one per seed (instead of ``pretrain_seed``): every P-T run and every verdict is
    then repeated for each P, and the report shows whether a verdict depends on the P it is conditional on. RI-T does
    not depend on P and is trained once."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(lr=0.01))
    scratch: TrainConfig = field(default_factory=TrainConfig)
    basin: BasinConfig = field(default_factory=BasinConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    lr_rule: Literal["best", "one-se"] = "best"
    """How a learning rate is chosen from its candidates' final validation accuracy: ``best``, the highest; or
    ``one-se``, the smallest rate within one standard error (sqrt(p (1 - p) / n_val)) of the highest, the
    one-standard-error rule (Hastie et al.), which does not let noise between near-ties decide."""
    lr_selection: Literal["per-target", "per-target-and-block"] = "per-target"
    """Where ``finetune.lr_grid`` / ``scratch.lr_grid`` are swept: on each target unshuffled (the choice then holds
    for every block size), or on each target at each block size."""

    @property
    def has_source(self) -> bool:
        """Whether the study names a source domain (``[source]``)."""
        return bool(self.source.name)

    @property
    def pretrain_seed_list(self) -> list[int]:
        """The seeds of the pre-trained models: ``pretrain_seeds``, or ``[pretrain_seed]``. The first is the
        primary P (the one the report's analysis sections show)."""
        return list(self.pretrain_seeds) or [self.pretrain_seed]


# --------------------------------------------------------------------------------------------------
# Generic, strict conversion between dicts (TOML / JSON) and the dataclasses above.


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


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> StudyConfig:
    """Load a study from a TOML file (or a built-in profile name), applying dotted overrides.

    Args:
        source: a path to a TOML file, a built-in profile name (``quick``, ``paper``), or None for ``quick``.
        overrides: ``key=value`` strings, e.g. ``["finetune.lr=0.01", "seeds=[0,1,2]"]``.
    """
    if source is None or (isinstance(source, str) and source in BUILTIN_STUDIES):
        text, where = builtin_study(source or "quick"), f"built-in study {source or 'quick'}"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config {str(path)!r}: no such file")
        text, where = path.read_text(), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from e
    data = apply_overrides(data, overrides or [])
    try:
        return from_dict(StudyConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e
