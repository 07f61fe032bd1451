"""Study configuration: frozen nested dataclasses loaded from TOML.

A study is declared in one TOML file. Loading refuses unknown keys, wrong types and values outside each field's
range (declared on the field as a :class:`Check`) with a message that names the dotted key, the value and what is
allowed, before anything is trained. Semantic checks that need the domain and model registries (a domain that
does not exist, a block size that does not divide the image size) and the memory a study needs live in
:func:`transferscope.study.plan.validate`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
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
    "Check",
    "check_config",
    "field_check",
    "describe",
    "resolve_paths",
]


class ConfigError(ValueError):
    """A study configuration is invalid. The message names the key and what was expected."""


# --------------------------------------------------------------------------------------------------
# What each field allows beyond its type: declared on the field (``field(metadata=...)``), checked by
# :func:`check_config` when a study is loaded and when it is planned.

SEED_MAX = 2**32 - 1
"""Seeds are non-negative and fit numpy's legacy seeding (32 bits)."""
COUNT_MAX = 10_000_000
"""Images per class, examples of an analysis: far above any study that fits in memory, low enough to catch a typo."""
EPOCHS_MAX = 10_000
NAME_MAX = 100


@dataclass(frozen=True)
class Check:
    """What a field allows beyond its type. Numbers: ``lo``/``hi`` bounds (``None``: none), open or closed, and
    finite (floats always); strings: ``text`` (``name``: one folder name; ``label``: shown in tables and used in file
    names; ``text``: no control characters; ``sha256``); lists: ``items`` (the check of each element), ``nonempty``,
    ``distinct``, ``max_items``, or ``choices`` for strings; ``typed``: the type says it all (booleans, choices)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    finite: bool = True
    text: str = ""
    items: Check | None = None
    nonempty: bool = False
    distinct: bool = False
    max_items: int = 0
    choices: tuple[str, ...] = ()
    typed: str = ""


def _meta(check: Check) -> dict:
    return {"check": check}


def _int(lo: int, hi: int) -> dict:
    return _meta(Check(lo, hi))


def _num(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> dict:
    return _meta(Check(lo, hi, lo_open, hi_open))


def _text(kind: str) -> dict:
    return _meta(Check(text=kind))


def _list(items: Check, *, nonempty: bool = False, distinct: bool = False, max_items: int = 1000) -> dict:
    return _meta(Check(items=items, nonempty=nonempty, distinct=distinct, max_items=max_items))


def _typed(why: str) -> dict:
    return _meta(Check(typed=why))


SEED = Check(0, SEED_MAX)
TYPED = _typed("its type: the values it lists, or true/false")


def field_check(f: dataclasses.Field) -> Check | None:
    """The :class:`Check` declared on a config field (None: none declared)."""
    return f.metadata.get("check")


@dataclass(frozen=True)
class DataConfig:
    """How every domain of a study is brought to one tensor format."""

    image_size: int = field(default=32, metadata=_int(4, 4096))
    """Images are padded to a square and resized to ``image_size`` x ``image_size``."""
    channels: Literal[1, 3] = field(default=1, metadata=TYPED)
    """1: grey, 3: RGB. Every domain of a study is converted to this."""
    split_seed: int = field(default=0, metadata=_meta(SEED))
    """Seed of the train/val/test splits and of the ``n_per_class`` subsample."""
    shuffle_seed: int = field(default=0, metadata=_meta(SEED))
    """Seed of the block-shuffle permutation (one per block size, shared by every image of a domain)."""
    cache_dir: str = field(default="", metadata=_text("path"))
    """Where decoded domains are cached. Empty: ``$TRANSFERSCOPE_CACHE`` or ``~/.cache/transferscope``."""


@dataclass(frozen=True)
class DomainConfig:
    """One image domain: a registered name, or ``imagefolder`` / ``csv`` with a ``path``."""

    name: str = field(metadata=_text("text"))
    path: str = field(default="", metadata=_text("path"))
    """For ``imagefolder`` (one subfolder per class) and ``csv`` (``path,label`` rows; a header row
    ``path,<label>,<label>,...`` makes it multi-label)."""
    label: str = field(default="", metadata=_text("label"))
    """Name shown in tables and reports; defaults to ``name``."""
    n_per_class: int = field(default=0, metadata=_int(0, COUNT_MAX))
    """Training images per class (a low-data target); 0 keeps all. Multi-label: per label, times the number of
    labels."""
    n_val_per_class: int = field(default=50, metadata=_int(1, COUNT_MAX))
    """Validation images per class, taken from the training pool. Multi-label: per label, times the number of
    labels."""
    n_test_per_class: int = field(default=0, metadata=_int(0, COUNT_MAX))
    """Test images per class; 0 means the domain's official test split, or 20% of its pool. Multi-label: per
    label, times the number of labels."""
    max_pixels: int = field(default=4_000_000, metadata=_int(1, 1_000_000_000))
    """Image files larger than this are skipped (and counted), never decoded."""
    uncertain: Literal["ignore", "zero", "one"] = field(default="ignore", metadata=TYPED)
    """Multi-label ``csv`` domains: how an uncertain label (``-1``) is read: ``ignore`` (unknown: left out of the
    loss, the AUC and the mistakes), ``zero`` (absent) or ``one`` (present): U-Ignore, U-Zeros and U-Ones of the
    CheXpert papers."""
    blank: Literal["zero", "ignore"] = field(default="zero", metadata=TYPED)
    """Multi-label ``csv`` domains: how an empty cell is read: ``zero`` (not mentioned: absent, as CheXpert's
    labeller means it) or ``ignore`` (unknown)."""
    distance: float = field(default=-1.0, metadata=_num(None, None))
    """How far this target is from the source, for the claims about ordering (N1, N2): any non-negative scale,
    larger is farther. Declared on every target, it is used as given; otherwise (negative: not declared) the
    distance is measured (the MMD between P's features of source and target images). Changes no run."""

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(default="resnet", metadata=_meta(Check(text="text", nonempty=True)))
    """The architecture: a built-in model (``resnet``); a factory ``"package.module:function"`` (called with
    ``kwargs``, returning an ``nn.Module``); the name of a plugin of the entry-point group ``transferscope.models``;
    or ``"torchvision:NAME"`` / ``"timm:NAME"`` through those libraries (when installed)."""
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1], metadata=_list(Check(1, 64), nonempty=True,
                                                                                    max_items=16))
    """Residual blocks per stage (built-in resnet)."""
    width: int = field(default=16, metadata=_int(1, 1024))
    """Channels of the first stage; each later stage doubles it (built-in resnet)."""
    norm: Literal["none", "batchnorm", "groupnorm"] = field(default="groupnorm", metadata=TYPED)
    """``groupnorm`` and ``none`` (Fixup-style) keep no batch statistics, so weight interpolation is exact
    (built-in resnet)."""
    kwargs: dict = field(default_factory=dict, metadata=_typed("a table, passed to the factory as it is"))
    """Keyword arguments of a factory (a TOML table)."""
    weights: str = field(default="", metadata=_text("path"))
    """Pre-trained weights of the model (safetensors, or ``.pt``/``.pth`` read with ``weights_only=True``): P is
    this model and pre-training is skipped. Empty: P is pre-trained on the source."""
    weights_sha256: str = field(default="", metadata=_text("sha256"))
    """The sha256 of ``weights``, pinned when the study is planned (a given value must match the file): P's run id
    hashes the content of its weights, not their path."""
    head: str = field(default="", metadata=_text("text"))
    """The module (by name, e.g. ``fc`` or ``classifier.2``) that classifies: an ``nn.Linear``, replaced by a fresh
    one with the target's class count. Empty: ``head`` for the built-in resnet; else the first of ``fc``,
    ``head``, ``classifier`` that is an ``nn.Linear``."""
    layers: list[str] = field(default_factory=list, metadata=_list(Check(text="text"), distinct=True))
    """Modules (by name, as in ``named_modules()``) whose outputs the per-layer analyses read (CKA, ...), input to
    output. Empty: the built-in resnet's own layers; for other models the top-level children but the head."""
    mean: list[float] = field(default_factory=list, metadata=_list(Check(None, None), max_items=3))
    """Input normalisation: per-channel mean of images scaled to [0, 1] (one value, or one per channel). Empty:
    0.5, which with ``std`` 0.5 maps images to [-1, 1] (the built-in default)."""
    std: list[float] = field(default_factory=list, metadata=_list(Check(0, None, lo_open=True), max_items=3))
    """Input normalisation: per-channel standard deviation (see ``mean``). Empty: 0.5."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=10, metadata=_int(1, EPOCHS_MAX))
    batch_size: int = field(default=64, metadata=_int(1, 65536))
    lr: float = field(default=0.1, metadata=_num(0, None, lo_open=True))
    momentum: float = field(default=0.9, metadata=_num(0, 1, hi_open=True))
    weight_decay: float = field(default=5e-4, metadata=_num(0, 1))
    schedule: Literal["cosine", "constant"] = field(default="cosine", metadata=TYPED)
    warmup_epochs: float = field(default=0.0, metadata=_num(0, EPOCHS_MAX))
    """Linear warm-up of the learning rate from 0 over this many epochs (then the schedule)."""
    grad_clip: float = field(default=0.0, metadata=_num(0, None))
    """Clip the global gradient norm to this (0: off)."""
    speed_epochs: int = field(default=2, metadata=_int(1, EPOCHS_MAX))
    """k of the optimisation-speed figure (a): mean training accuracy over the first k epochs."""
    speed_fraction: float = field(default=0.9, metadata=_num(0, 1, lo_open=True))
    """The fraction of the optimisation-speed figure (b): steps to reach it of the final accuracy."""
    speed_examples: int = field(default=1000, metadata=_int(1, COUNT_MAX))
    """Multi-label targets: training examples (a fixed, seeded subset) on which the mean AUC is measured after every
    epoch for the optimisation-speed figures (an AUC over one batch is too noisy). Single-label targets use the
    per-step accuracy and ignore it."""
    eval_every: int = field(default=1, metadata=_int(1, EPOCHS_MAX))
    """Evaluate the validation split (and the test split, with ``test_every_epoch``) and record the weight deviation
    every this many epochs, and always at the start and the end. The learning-rate choice reads the final figures."""
    test_every_epoch: bool = field(default=False, metadata=TYPED)
    """Evaluate the test split after every epoch too (a test curve in the history). Off: the validation split
    after every epoch, the test split once at the end (it is never used to choose anything)."""
    lr_grid: list[float] = field(default_factory=list, metadata=_list(Check(0, None, lo_open=True), distinct=True,
                                                                      max_items=100))
    """Candidate learning rates. Non-empty: ``lr`` is chosen per target on validation accuracy (see
    ``StudyConfig.lr_selection``); one run per candidate with the first seed, and the winner's run is kept as
    that seed's run. Empty: ``lr`` as given."""
    checkpoint_epochs: list[float] = field(default_factory=list, metadata=_list(Check(0, EPOCHS_MAX), distinct=True))
    """Points of the trajectory (in epochs; fractions allowed) whose weights are kept (``checkpoints/``), e.g. for
    the gradient-stability analysis along training. The initial and final weights are always kept."""
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata=TYPED)
    """The arithmetic of training: ``fp32``, or autocast to ``bf16`` / ``fp16`` (fp16 with a gradient scaler).
    It changes what a run computes, so a run off ``fp32`` has its own run id (``--precision`` sets it for every
    table)."""


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    checkpoint_epochs: list[float] = field(default_factory=lambda: [0.0],
                                           metadata=_list(Check(0, EPOCHS_MAX), distinct=True))
    """Points of the pre-training trajectory (in epochs; fractions allowed) whose weights are kept.
    The final weights are always kept."""


@dataclass(frozen=True)
class BasinConfig:
    """Fine-tuning from earlier pre-training checkpoints (claim 9 of Neyshabur et al.)."""

    checkpoint_epochs: list[float] = field(default_factory=list, metadata=_list(Check(0, EPOCHS_MAX), distinct=True))
    """Checkpoints to fine-tune from; each must be one of ``pretrain.checkpoint_epochs``."""
    targets: list[str] = field(default_factory=list, metadata=_list(Check(text="label"), distinct=True))
    """Target names (their ``display`` name) to run the sweep on; empty: the first target."""
    block_size: int = field(default=0, metadata=_int(0, 4096))
    """Block size of the sweep; 0: the image size (no shuffle)."""
    checkpoints: list[str] = field(default_factory=list, metadata=_list(Check(text="path")))
    """When P is given (``model.weights``): files of P's earlier weights, in the order they were saved during its
    pre-training (same formats as ``model.weights``). The sweep fine-tunes from each; they stand at positions 1 to
    K of the sweep and the given weights at K + 1 (``checkpoint_epochs`` is then left empty)."""
    checkpoints_sha256: list[str] = field(default_factory=list, metadata=_list(Check(text="sha256")))
    """The sha256 of each of ``checkpoints``, pinned when the study is planned (as ``model.weights_sha256``)."""


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of ``transferscope analyze`` (each analysis's cached result is keyed by the ones it uses)."""

    cka_batch_size: int = field(default=100, metadata=_int(4, 100_000))
    """Minibatch size of the unbiased minibatch CKA estimator (HSIC_1 needs at least 4 examples)."""
    barrier_points: int = field(default=11, metadata=_int(2, 1001))
    """Points on the line between two models (ends included)."""
    criticality_alphas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0],
                                            metadata=_list(Check(0, 1), nonempty=True, distinct=True))
    criticality_samples: int = field(default=2, metadata=_int(1, 1000))
    """Noise draws per (a, s) point."""
    criticality_examples: int = field(default=100, metadata=_int(1, COUNT_MAX))
    criticality_tolerance: float = field(default=0.1, metadata=_num(0, 100, lo_open=True))
    """eps = (1 + tolerance) x the final training loss."""
    criticality_s_tol: float = field(default=0.02, metadata=_num(0, 1, lo_open=True))
    flatness_examples: int = field(default=200, metadata=_int(1, COUNT_MAX))
    """Training examples of the loss whose Hessian is probed."""
    flatness_iters: int = field(default=20, metadata=_int(1, 10_000))
    """At most this many power iterations (the result records how many were used and whether they converged)."""
    flatness_tol: float = field(default=1e-2, metadata=_num(0, 1, lo_open=True))
    """Relative change of the eigenvalue estimate at which the power iteration stops."""
    flatness_radii: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1],
                                        metadata=_list(Check(0, 10, lo_open=True), nonempty=True, distinct=True))
    flatness_samples: int = field(default=3, metadata=_int(1, 1000))
    stability_ks: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0],
                                      metadata=_list(Check(0, 1000, lo_open=True), nonempty=True, distinct=True))
    """Steps theta - eta k g probed (eta: the run's learning rate)."""
    stability_examples: int = field(default=200, metadata=_int(1, COUNT_MAX))
    principal_top_k: list[int] = field(default_factory=lambda: [1, 3],
                                       metadata=_list(Check(1, 10_000), nonempty=True, distinct=True))
    principal_examples: int = field(default=200, metadata=_int(1, COUNT_MAX))
    multilabel_threshold: float = field(default=0.5, metadata=_num(0, 1, lo_open=True, hi_open=True))
    """Multi-label targets: the probability at or above which a model says a label is present; the mistakes
    (common/uncommon) are counted per (example, label) decision at this threshold."""
    scores_source_examples: int = field(default=300, metadata=_int(2, COUNT_MAX))
    """Source test images whose features are compared with the target's (MMD)."""
    groups: list[str] = field(default_factory=lambda: ["neyshabur", "liu"],
                              metadata=_list(Check(choices=("neyshabur", "liu")), distinct=True))
    """Families of analyses to run: ``neyshabur`` (claims 1-9) is always run; ``liu`` adds claims L1-L5."""
    seed: int = field(default=0, metadata=_meta(SEED))


@dataclass(frozen=True)
class StudyConfig:
    name: str = field(metadata=_text("name"))
    """The study's name: the folder of its results (``results/<name>``), so one folder name."""
    source: DomainConfig = field(default_factory=lambda: DomainConfig(""))
    """The source P is pre-trained on. Optional when P is given (``model.weights``): the analyses that need source
    images (the source-target MMD, L4's input similarity, measured target distances) then say "not measured"."""
    targets: list[DomainConfig] = field(default_factory=list, metadata=_meta(Check(max_items=100)))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    block_sizes: list[int] = field(default_factory=lambda: [32], metadata=_list(Check(1, 4096), nonempty=True,
                                                                                  distinct=True))
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata=_list(SEED, nonempty=True, distinct=True))
    pretrain_seed: int = field(default=0, metadata=_meta(SEED))
    """The seed of the pre-trained model P (a study with one P)."""
    pretrain_seeds: list[int] = field(default_factory=list, metadata=_list(SEED, distinct=True, max_items=100))
    """Several pre-trained models P, one per seed (instead of ``pretrain_seed``): every P-T run and every verdict is
    then repeated for each P, and the report shows whether a verdict depends on the P it is conditional on. RI-T does
    not depend on P and is trained once."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(lr=0.01))
    scratch: TrainConfig = field(default_factory=TrainConfig)
    basin: BasinConfig = field(default_factory=BasinConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    lr_rule: Literal["best", "one-se"] = field(default="best", metadata=TYPED)
    """How a learning rate is chosen from its candidates' final validation accuracy: ``best``, the highest; or
    ``one-se``, the smallest rate within one standard error (sqrt(p (1 - p) / n_val)) of the highest, the
    one-standard-error rule (Hastie et al.), which does not let noise between near-ties decide. A multi-label
    target's candidates are compared on their validation mean AUC, with the standard error of the best one's by
    Hanley and McNeil (per label, combined as independent: a rough scale)."""
    lr_selection: Literal["per-target", "per-target-and-block"] = field(default="per-target", metadata=TYPED)
    """Where ``finetune.lr_grid`` / ``scratch.lr_grid`` are swept: on each target unshuffled (the choice then holds
    for every block size), or on each target at each block size."""
    device: str = field(default="auto", metadata=_text("device"))
    """Where runs train and analyses compute (``--device`` overrides it): ``auto`` (CUDA if there is a GPU, else
    MPS, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. Not part of any run id: the same run on another
    device is the same run (its ``run.json`` records where it ran)."""

    def unused_tables(self) -> tuple[str, ...]:
        """Tables whose settings the study does not use, and so does not check: ``pretrain`` when P is given."""
        return ("pretrain",) if self.model.weights else ()

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


# --------------------------------------------------------------------------------------------------
# Checking every field against what it declares (:class:`Check`).

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
TEXT_MAX = 1000
PATH_MAX = 4096


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _bounds(c: Check) -> str:
    if c.lo is not None and c.hi is not None:
        return f"in {'(' if c.lo_open else '['}{_fmt(c.lo)}, {_fmt(c.hi)}{')' if c.hi_open else ']'}"
    if c.lo is not None:
        return f"{'>' if c.lo_open else '>='} {_fmt(c.lo)}"
    if c.hi is not None:
        return f"{'<' if c.hi_open else '<='} {_fmt(c.hi)}"
    return ""


_TEXTS = {
    "name": (f"a study name of 1 to {NAME_MAX} letters, digits, '-', '_' or '.', not beginning with '.' or '-' "
             "(it names the results folder)", "study names"),
    "label": (f"a label of at most {NAME_MAX} characters, none of them a control character, and not blank",
              f"labels (at most {NAME_MAX} characters, no control character, not blank)"),
    "path": ("a path without control characters", "paths without control characters"),
    "sha256": ("64 lower-case hexadecimal digits (or empty)", "sha256 digests (64 lower-case hexadecimal digits)"),
    "device": ("one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'", "devices ('auto', 'cpu', 'cuda', 'cuda:N', 'mps')"),
    "text": (f"text of at most {TEXT_MAX} characters without control characters",
             f"texts of at most {TEXT_MAX} characters without control characters"),
}


def describe(c: Check, tp: Any, plural: bool = False) -> str:
    """What a field (or, ``plural``, each element of a list field) allows, in words."""
    if c.choices:
        return ("values among " if plural else "one of ") + ", ".join(repr(x) for x in c.choices)
    if c.text:
        one, many = _TEXTS[c.text]
        if c.nonempty and not plural:
            one = "non-empty " + one.removeprefix("a ").removeprefix("an ")
        return many if plural else one
    if tp is int:
        noun = "integers" if plural else "an integer"
    elif c.lo is not None and c.hi is not None:
        noun = "numbers" if plural else "a number"
    else:
        noun = "finite numbers" if plural else "a finite number"
    b = _bounds(c)
    return f"{noun} {b}" if b else noun


def _text_ok(v: str, c: Check) -> bool:
    if c.choices:
        return v in c.choices
    if c.text == "name":
        return len(v) <= NAME_MAX and bool(_FOLDER_NAME.fullmatch(v))
    if c.text == "sha256":
        return not v or bool(_SHA256.fullmatch(v))
    if c.text == "device":
        return bool(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v))
    if _CONTROL.search(v):
        return False
    if c.text == "label":
        return len(v) <= NAME_MAX and (not v or bool(v.strip()))
    if c.text == "path":
        return len(v) <= PATH_MAX
    return len(v) <= TEXT_MAX and (bool(v) or not c.nonempty)


def _check_value(v: Any, c: Check, tp: Any, key: str) -> None:
    if c.typed:
        return
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(v, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {v!r}")
        if c.max_items and len(v) > c.max_items:
            raise ConfigError(f"{key}: expected at most {c.max_items} items, got {len(v)}")
        if c.items is not None:
            for i, x in enumerate(v):
                _check_value(x, c.items, inner, f"{key}[{i}]")
        seen: set = set()
        dup = next((x for x in v if x in seen or seen.add(x)), None) if c.distinct and c.items is not None else None
        if (c.nonempty and not v) or dup is not None:
            what = ("a non-empty list of " if c.nonempty else "") + ("distinct " if c.distinct else "")
            what += describe(c.items, inner, plural=True) if c.items is not None else "items"
            raise ConfigError(f"{key}: expected {what}, got {list(v)!r}" + (f" ({dup!r} twice)" if dup is not None
                                                                             else ""))
        return
    if tp is str or c.text or c.choices:
        if not (isinstance(v, str) and _text_ok(v, c)):
            raise ConfigError(f"{key}: expected {describe(c, tp)}, got {v!r}")
        return
    is_int = tp is int
    ok = isinstance(v, int) and not isinstance(v, bool) if is_int else \
        isinstance(v, int | float) and not isinstance(v, bool)
    if ok and not is_int and not math.isfinite(v):
        ok = False
    if ok and c.lo is not None:
        ok = v > c.lo if c.lo_open else v >= c.lo
    if ok and c.hi is not None:
        ok = v < c.hi if c.hi_open else v <= c.hi
    if not ok:
        raise ConfigError(f"{key}: expected {describe(c, tp)}, got {v!r}")


def check_config(obj: Any, prefix: str = "") -> None:
    """Check every field of a config dataclass (and of the tables in it) against what it declares; the first
    violation is a :class:`ConfigError` naming the dotted key, the value and what is allowed. Changes nothing. Tables
    a study does not use are left alone (``[pretrain]`` when P is given: see ``StudyConfig.unused_tables``)."""
    hints = typing.get_type_hints(type(obj))
    unused = obj.unused_tables() if hasattr(obj, "unused_tables") else ()
    for f in dataclasses.fields(obj):
        if f.name in unused:
            continue
        key, v = prefix + f.name, getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            check_config(v, key + ".")
            continue
        c = field_check(f)
        if c is not None:
            _check_value(v, c, hints[f.name], key)
        if isinstance(v, list | tuple):
            for i, x in enumerate(v):
                if dataclasses.is_dataclass(x):
                    check_config(x, f"{key}[{i}].")


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
    return cfg
