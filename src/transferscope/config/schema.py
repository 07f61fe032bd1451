"""The tables of a study file, as frozen dataclasses: what each key means, its default and its range.

Each field declares what it allows beyond its type (a :class:`~transferscope.config.checks.Check` in its metadata,
made by the small helpers below); :mod:`transferscope.config.checks` enforces it and
:mod:`transferscope.config.convert` builds these classes from TOML tables. Nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .checks import Check

__all__ = ["DataConfig", "DomainConfig", "ModelConfig", "TrainConfig", "PretrainConfig", "BasinConfig",
           "AnalysisConfig", "DecideConfig", "AddedSeeds", "StudyConfig", "SEED_MAX", "COUNT_MAX", "EPOCHS_MAX", "SEED", "TYPED"]

SEED_MAX = 2**32 - 1
"""Seeds are non-negative and fit numpy's legacy seeding (32 bits)."""
COUNT_MAX = 10_000_000
"""Images per class, examples of an analysis: far above any study that fits in memory, low enough to catch a typo."""
EPOCHS_MAX = 10_000



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
    classes: list[str] = field(default_factory=list, metadata=_list(Check(text="label"), distinct=True))
    """Only these classes of the domain, by name, labelled in this order (empty: every class). Two tables of one
    domain with disjoint classes make a source and a near target of classes P never saw (the A/B split of
    Yosinski et al. 2014). Single-label domains."""
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

    def __hash__(self) -> int:  # a domain is a cache key of its decoded data: its list of classes hashed as a tuple
        return hash(tuple(tuple(v) if isinstance(v, list) else v
                          for v in (getattr(self, f) for f in self.__dataclass_fields__)))


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
    lr: Literal["own", "final"] = field(default="own", metadata=TYPED)
    """The fine-tuning learning rate of the sweep's runs when ``finetune.lr_grid`` is set: ``own``, chosen on
    validation data for each checkpoint as for every arm (the first seed, one run per candidate; a P of fewer
    epochs is further from the target's solution and may need a larger rate to fit the training images in the
    same epochs), or ``final``, the rate chosen for P-T from the final checkpoint (one rate for the whole sweep)."""


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of ``transferscope analyze`` (each analysis's cached result is keyed by the ones it uses)."""

    cka_batch_size: int = field(default=100, metadata=_int(4, 100_000))
    """Minibatch size of the unbiased minibatch CKA estimator (HSIC_1 needs at least 4 examples)."""
    cka_examples: int = field(default=0, metadata=_int(0, COUNT_MAX))
    """Test images CKA reads: a sample balanced over the classes, drawn with ``seed`` (the same images for every
    model); 0: the whole test split. The accuracy figures always read the whole split."""
    barrier_points: int = field(default=11, metadata=_int(2, 1001))
    """Points on the line between two models (ends included)."""
    barrier_examples: int = field(default=0, metadata=_int(0, COUNT_MAX))
    """Test images the barrier evaluates each point on: a sample balanced over the classes, drawn with ``seed``
    (the same images at every point and for every pair); 0: the whole test split."""
    pairs_per_seed: int = field(default=3, metadata=_int(0, 1000))
    """The pair analyses (mistakes, CKA, distance, barrier) compare each seed's model with this many others of
    its arm and of the other arm (:func:`transferscope.vocab.arms.balanced`: a balanced design drawn from ``seed``),
    so that their cost grows with the seeds, not with their square; 0: every pair. With 3 seeds per arm, 3 (the
    default) is every pair."""
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
class AddedSeeds:
    """Seeds a round of a study that decides in rounds added to one cell of runs (written by the rounds)."""

    arm: Literal["P-T", "RI-T"] = field(default="P-T", metadata=TYPED)
    target: str = field(default="", metadata=_text("label"))
    """The target's label (its display name)."""
    block_size: int = field(default=0, metadata=_int(1, 4096))
    checkpoint: float = field(default=-1.0, metadata=_num(-1, EPOCHS_MAX))
    """P-T from an earlier pre-training checkpoint (the basin sweep, in epochs); -1: from the final P."""
    seeds: list[int] = field(default_factory=list, metadata=_list(SEED, nonempty=True, distinct=True))


@dataclass(frozen=True)
class DecideConfig:
    """A study that decides in rounds (``transferscope run --until-decided``): after each round of runs it judges
    the claims at a level of its own (the looks share the error rate), then adds seeds to the cells of runs that
    the undecided effects read, until every effect is decided, none can be within the limits, the budget is spent
    or the last look is done. Fixed before any result: a folder refuses a change of it."""

    looks: int = field(default=0, metadata=_int(0, 20))
    """The most looks (rounds judged), the first on ``seeds``; 0: the study does not decide in rounds."""
    max_seeds: int = field(default=12, metadata=_int(3, 1000))
    """The most seeds per cell of runs (per arm, target and block size)."""
    budget: str = field(default="", metadata=_text("duration"))
    """The most wall time of the rounds together (``90s``, ``30m``, ``1.5h``); empty: no limit."""
    spending: Literal["obrien-fleming", "pocock", "equal"] = field(default="obrien-fleming", metadata=TYPED)
    """How the one-sided 2.5% of each direction is shared among the looks (:mod:`transferscope.claims.sequential`):
    ``obrien-fleming`` spends little at the early looks and most at the last (the most decisions in the
    simulation of ``benchmarks/decide_error_rates.py``), ``pocock`` more early, ``equal`` the same at each."""
    added: list[AddedSeeds] = field(default_factory=list, metadata=_meta(Check(max_items=100_000)))
    """The seeds the rounds added, per cell (written by ``run --until-decided``, not by hand)."""


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
    decide: DecideConfig = field(default_factory=DecideConfig)
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
