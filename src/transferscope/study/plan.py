"""From a study config to the runs of the experiment, with their dependencies (Neyshabur et al., Section 2).

* ``P``: pre-training on the source (one run; keeps its checkpoints);
* ``P-T``: fine-tuning P on each target, block size and seed (new head);
* ``RI-T``: training from a random initialisation on each target, block size and seed;
* the basin sweep: ``P-T`` started from earlier pre-training checkpoints.

An arm whose config has an ``lr_grid`` gets its learning rate chosen on validation data, as in the paper: per
target (and block size, with ``lr_selection = "per-target-and-block"``) one *tuning* run per candidate with the
first seed; its runs are *deferred* until those finish (:func:`transferscope.study.tuning.resolve`). A resolved
run has ``lr`` set and an empty grid, so the winning candidate is the first seed's run itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from ..config import ConfigError, DomainConfig, PretrainConfig, StudyConfig, TrainConfig, check_config, to_dict
from .runs import ARMS, Plan, RunSpec, Selection, file_safe

__all__ = ["RunSpec", "Plan", "Selection", "make_plan", "validate", "data_identity", "ARMS", "MemoryEstimate", "estimate_memory",
           "check_memory", "available_memory", "file_safe"]


def validate(cfg: StudyConfig) -> None:
    """Refuse, before any training, what would fail later. Messages name the key and what was expected.

    The checks run in a fixed order (the first failure is the one reported): every field against its range, the
    domains and targets, block sizes and seeds, the training tables, the basin sweep, then the memory the study
    needs and the model on two images of the study's size."""
    check_config(cfg)  # every field against its declared range (a config built in Python skipped load_config)
    names = _check_domains(cfg)
    valid = _check_blocks_and_seeds(cfg)
    _check_training(cfg)
    _check_basin(cfg, names, valid)
    _check_added(cfg, names)
    from ..models import create_model

    # the model as the study will build it (factory, head, layers, normalisation): the memory check measures its
    # activations on a small image before check_model runs two of the study's size through it
    model = create_model(cfg.model, cfg.data.channels, 3, seed=0)
    check_memory(cfg, model)
    check_model(cfg, model)


def _check_domains(cfg: StudyConfig) -> list[str]:
    """The source and the targets: registered domains with their paths and counts, targets with distinct labels,
    file names and data, and image folders whose classes hold the split asked (counted from the file listing:
    :func:`~transferscope.data.check_split`). Returns the targets' display names."""
    from ..data import get_domain_info
    from ..data.registry import DomainError

    if not cfg.has_source and not cfg.model.weights:
        raise ConfigError("source: expected a [source] table with the domain P is pre-trained on (or give P's "
                          "weights as model.weights)")
    domains = ([("source", cfg.source)] if cfg.has_source else []) + [(f"targets[{i}]", t)
                                                                      for i, t in enumerate(cfg.targets)]
    if not cfg.targets:
        raise ConfigError("targets: expected at least one [[targets]] table")
    for key, d in domains:
        try:
            info = get_domain_info(d.name)
        except DomainError as e:
            raise ConfigError(f"{key}.name: {e}") from None
        if info.needs_path and not d.path:
            raise ConfigError(f"{key}.path: the {d.name} domain needs a path ({info.summary})")
        for f in ("n_per_class", "n_val_per_class", "n_test_per_class"):
            if getattr(d, f) < 0:
                raise ConfigError(f"{key}.{f}: expected an integer >= 0, got {getattr(d, f)}")
        if d.n_val_per_class < 1:
            raise ConfigError(f"{key}.n_val_per_class: expected an integer >= 1 (validation data), got 0")
    names = [t.display for t in cfg.targets]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"targets: two targets are named {sorted(dup)[0]!r}; give them distinct labels")
    files: dict[str, int] = {}
    for i, t in enumerate(cfg.targets):  # a label names the report's figures of its target (file_safe)
        j = files.setdefault(file_safe(t.display), i)
        if j != i:
            raise ConfigError(f"targets[{i}].label: {t.display!r} and targets[{j}].label {cfg.targets[j].display!r} give "
                              f"the same file name {file_safe(t.display)!r} (labels name the report's figures, every "
                              "character but letters, digits, '-' and '_' replaced by '_'); give labels that differ "
                              "in those")
    same = {}
    for i, t in enumerate(cfg.targets):
        key = data_identity(t)
        if key in same:
            j = same[key]
            raise ConfigError(f"targets[{i}] ({t.display!r}) is the same data as targets[{j}] "
                              f"({cfg.targets[j].display!r}): only the label differs, so every run would be the same; "
                              "remove one, or make them differ (e.g. n_per_class, or another path)")
        same[key] = i
    from ..data.domain import check_split

    for _, d in domains:  # a class too small for the split: the error its loading would give, from the file listing
        check_split(d, cfg.data)
    return names


def _check_blocks_and_seeds(cfg: StudyConfig) -> list[int]:
    """Block sizes that divide the image size, distinct seeds. Returns the valid block sizes."""
    from ..data import valid_block_sizes

    s = cfg.data.image_size
    valid = valid_block_sizes(s, s)
    for i, b in enumerate(cfg.block_sizes):
        if b not in valid:
            raise ConfigError(f"block_sizes[{i}]: {b} does not divide the image size {s}; valid block sizes are "
                              + ", ".join(map(str, valid)))
    if not cfg.block_sizes:
        raise ConfigError("block_sizes: expected at least one block size")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"seeds: expected a non-empty list of distinct integers, got {cfg.seeds}")
    if len(set(cfg.pretrain_seeds)) != len(cfg.pretrain_seeds):
        raise ConfigError(f"pretrain_seeds: expected distinct integers, got {cfg.pretrain_seeds}")
    if cfg.pretrain_seeds and cfg.pretrain_seed != 0 and cfg.pretrain_seed not in cfg.pretrain_seeds:
        raise ConfigError(f"pretrain_seed = {cfg.pretrain_seed} and pretrain_seeds = {cfg.pretrain_seeds}: give the "
                          "seeds of the pre-trained models in one of them (pretrain_seeds for several)")
    return valid


def _check_training(cfg: StudyConfig) -> None:
    """The tables of the arms the study trains (``[pretrain]`` only when P is not given): epochs, batch, rates and
    the figures that count in epochs within them."""
    given = bool(cfg.model.weights)  # P is given: the [pretrain] settings are not used
    if given and cfg.basin.checkpoint_epochs:
        raise ConfigError("basin.checkpoint_epochs: P is given as model.weights, so there are no pre-training "
                          "checkpoints of transferscope's own; give P's as files in basin.checkpoints instead")
    if given and len(cfg.pretrain_seed_list) > 1:
        raise ConfigError("pretrain_seeds: P is given as model.weights, so there is one P; remove pretrain_seeds")
    trained = (("finetune", cfg.finetune), ("scratch", cfg.scratch))
    for key, t in (() if given else (("pretrain", cfg.pretrain),)) + trained:
        if t.epochs < 1:
            raise ConfigError(f"{key}.epochs: expected an integer >= 1, got {t.epochs}")
        if t.batch_size < 1:
            raise ConfigError(f"{key}.batch_size: expected an integer >= 1, got {t.batch_size}")
        if not t.lr > 0:
            raise ConfigError(f"{key}.lr: expected a number > 0, got {t.lr}")
        if not 0 <= t.warmup_epochs <= t.epochs:
            raise ConfigError(f"{key}.warmup_epochs: expected a number in [0, {key}.epochs={t.epochs}], got {t.warmup_epochs}")
        if not 0 < t.speed_fraction <= 1:
            raise ConfigError(f"{key}.speed_fraction: expected a number in (0, 1], got {t.speed_fraction}")
        if any(not lr > 0 for lr in t.lr_grid) or len(set(t.lr_grid)) != len(t.lr_grid):
            raise ConfigError(f"{key}.lr_grid: expected distinct numbers > 0, got {t.lr_grid}")
        if not 1 <= t.eval_every <= t.epochs:
            raise ConfigError(f"{key}.eval_every: expected an integer in [1, {key}.epochs={t.epochs}], got {t.eval_every}")
        if not 1 <= t.speed_epochs <= t.epochs:
            raise ConfigError(f"{key}.speed_epochs: expected an integer in [1, {key}.epochs={t.epochs}], "
                              f"got {t.speed_epochs}")
    if cfg.pretrain.lr_grid:
        raise ConfigError("pretrain.lr_grid: not supported (pre-training is one run); set pretrain.lr")
    for key, t in (() if given else (("pretrain", cfg.pretrain),)) + trained:
        for i, e in enumerate(t.checkpoint_epochs):
            if not 0 <= e <= t.epochs:
                raise ConfigError(f"{key}.checkpoint_epochs[{i}]: expected a number in [0, {t.epochs}], got {e}")


def _check_basin(cfg: StudyConfig, names: list[str], valid: list[int]) -> None:
    """The basin sweep: kept pre-training checkpoints, targets of the study, a valid block size."""
    s = cfg.data.image_size
    for i, e in enumerate(cfg.basin.checkpoint_epochs):
        if e not in cfg.pretrain.checkpoint_epochs:
            raise ConfigError(f"basin.checkpoint_epochs[{i}]: {e} is not a kept checkpoint; pretrain.checkpoint_epochs "
                              f"is {cfg.pretrain.checkpoint_epochs}")
    for i, n in enumerate(cfg.basin.targets):
        if n not in names:
            raise ConfigError(f"basin.targets[{i}]: {n!r} is not a target; targets are {', '.join(names)}")
    if cfg.basin.block_size and cfg.basin.block_size not in valid:
        raise ConfigError(f"basin.block_size: {cfg.basin.block_size} does not divide the image size {s}")


def _sweep_checkpoints(cfg: StudyConfig) -> list[float]:
    """The pre-training checkpoints the basin sweep fine-tunes from (not the final one)."""
    if cfg.model.weights:
        return [float(i + 1) for i in range(len(cfg.basin.checkpoints))]
    return [float(e) for e in sorted(set(cfg.basin.checkpoint_epochs)) if e != cfg.pretrain.epochs]


def _check_added(cfg: StudyConfig, names: list[str]) -> None:
    """The seeds rounds added (``decide.added``): cells of the study, seeds it does not have there yet."""
    seen: dict[tuple, set[int]] = {}
    sweep = _sweep_checkpoints(cfg)
    basin_block = cfg.basin.block_size or cfg.data.image_size
    for i, a in enumerate(cfg.decide.added):
        key = f"decide.added[{i}]"
        if a.target not in names:
            raise ConfigError(f"{key}.target: {a.target!r} is not a target; targets are {', '.join(names)}")
        if a.checkpoint >= 0:
            if a.arm != "P-T" or a.checkpoint not in sweep or a.block_size != basin_block:
                raise ConfigError(f"{key}: a cell of the basin sweep is P-T at block {basin_block} from one of the "
                                  f"checkpoints {sweep}; got {a.arm} at block {a.block_size} from {a.checkpoint:g}")
        elif a.block_size not in cfg.block_sizes:
            raise ConfigError(f"{key}.block_size: {a.block_size} is not one of block_sizes {cfg.block_sizes}")
        cell = (a.arm, a.target, a.block_size, a.checkpoint)
        have = seen.setdefault(cell, set(cfg.seeds))
        twice = sorted(have & set(a.seeds))
        if twice:
            raise ConfigError(f"{key}.seeds: {twice} are already seeds of {a.arm} on {a.target} at block "
                              f"{a.block_size}; added seeds must be new")
        have |= set(a.seeds)


def check_model(cfg: StudyConfig, model: Any = None) -> None:
    """Build the model once, as the study will (factory, head, layers, normalisation, given weights), and run two
    images of the study's size through it: any error names the ``[model]`` key, before training."""
    import torch

    from ..models import check_shapes, create_model, load_weights

    m, d = cfg.model, cfg.data
    if model is None:
        model = create_model(m, d.channels, 3, seed=0)
    if m.weights:
        state = load_weights(m.weights)  # readable as weights, and of the model's shapes (its head aside)
        body = getattr(model, "net", model)
        head = getattr(model, "head_name", "head")
        check_shapes(body, state, "model.weights", m.weights, skip=f"{head}.")
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, d.channels, d.image_size, d.image_size))
    except Exception as e:
        raise ConfigError(f"model.name {m.name!r}: does not take images of {d.channels} channels and "
                          f"{d.image_size} x {d.image_size} pixels (data.channels, data.image_size): "
                          f"{type(e).__name__}: {e}") from None
    if tuple(out.shape) != (2, 3):
        raise ConfigError(f"model.name {m.name!r}: outputs of shape {tuple(out.shape)[1:]} for 3 classes, expected "
                          f"(3,): the head (model.head = {m.head or 'the default'!r}) must be the last module, whose "
                          "outputs are the class scores")


# --------------------------------------------------------------------------------------------------
# The memory a study needs, estimated before anything is decoded or trained.

BUILTIN_POOLS = {"fashion-mnist": (70_000, 10, 28, True), "animal-silhouettes": (10_000, 10, 28, True),
                 "mnist-digits": (5_000, 10, 28, True), "textures": (1_620, 6, 32, True), "clipart": (6_962, 8, 0, False)}
"""Built-in domains: (images in the pool, classes, native size (0: files of many sizes), whether the loader converts
every image of the pool to the study's format at once, before the split selects; the others decode what it selects).
Counts of the packages' current versions: an estimate."""
EVAL_BATCH = 512
"""Images per evaluation pass (``train.evaluate``)."""
ACTIVATION_FACTOR = 1.5
"""Training memory per image / the sum of every module's output for it (forward outputs kept for the backward pass,
and the gradients of the largest ones): 1.0 to 1.5 measured for the built-in ResNets (CPU, 32 to 128 pixels)."""
PARAMETER_COPIES = 4
"""The weights, their gradients, the momentum buffer and the initial weights kept for the analyses."""


@dataclass(frozen=True)
class MemoryPart:
    what: str
    bytes: int
    detail: str
    lower: str
    """The setting(s) that make this part smaller, as the user writes them."""


@dataclass(frozen=True)
class MemoryEstimate:
    """What a study holds in memory at its peak, part by part (one worker), and the memory available."""

    parts: list[MemoryPart]
    available: int | None
    """Bytes available now (None: not readable on this machine; nothing is refused)."""

    @property
    def total(self) -> int:
        return sum(p.bytes for p in self.parts)

    @property
    def fits(self) -> bool:
        return self.available is None or self.total <= self.available

    def explain(self) -> str:
        """One line: the total against the available memory, the largest parts and what to lower."""
        top = sorted(self.parts, key=lambda p: -p.bytes)
        parts = [f"{p.what}: {format_bytes(p.bytes)} ({p.detail})" for p in top[:3] if p.bytes]
        avail = "an unknown amount" if self.available is None else format_bytes(self.available)
        return (f"memory: the study needs about {format_bytes(self.total)} but {avail} is available: "
                + "; ".join(parts) + f"; lower {top[0].lower}")


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 1000 else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes of memory available to this process now: psutil when installed, else ``MemAvailable`` of
    ``/proc/meminfo`` (or ``os.sysconf``), bounded by a cgroup's limit (a container) where one is set. None when
    none of these can be read."""
    import os

    avail: int | None = None
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except Exception:  # not installed, or it cannot read this system
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            pass
        if avail is None:
            try:
                avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                avail = None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:  # a huge number: no limit
            left = max(0, limit - usage)
            avail = left if avail is None else min(avail, left)
    return avail


def _pool(d: DomainConfig) -> tuple[int, int, int, bool] | None:
    """(images in the pool, classes, native size or 0, converted all at once) of a domain, from the file system
    alone (nothing decoded); None when it cannot be told (a plugin's domain, a path that is not there)."""
    import csv
    import os
    from pathlib import Path

    if d.name in BUILTIN_POOLS:
        return BUILTIN_POOLS[d.name]
    if d.name == "imagefolder":
        from ..data.reading import IMAGE_SUFFIXES

        root = Path(d.path)
        if not root.is_dir():
            return None
        classes = [c for c in root.iterdir() if c.is_dir() and not c.name.startswith(".")]
        n = sum(1 for c in classes for _, _, files in os.walk(c) for f in files
                if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES)
        return n, len(classes), 0, False
    if d.name == "csv":
        try:
            with open(d.path, newline="", encoding="utf-8", errors="replace") as f:
                rows = [r for r in csv.reader(f) if len(r) >= 2]
        except OSError:
            return None
        return len(rows), len({r[1] for r in rows}), 0, False
    return None


def estimate_memory(cfg: StudyConfig, model: Any = None) -> MemoryEstimate:
    """The memory a study needs at its peak in one worker, part by part, and the memory available.

    * every domain's decoded images, held as uint8: n x C x H x W bytes, where n is the pool, or classes x
      (n_per_class + n_val_per_class + n_test_per_class) when both n_per_class and n_test_per_class bound it;
    * while one built-in array domain loads, its whole pool at the study's size (and a float32 chunk of the resize);
    * a block-shuffled copy of the largest target (when a block size is below the image size);
    * the activations of the largest training batch and of an evaluation batch, measured on ``model`` (built from
      ``cfg`` when None) with one image at up to 32 x 32 pixels and scaled to the image size;
    * the parameters, a few copies of them.
    """
    from ..models import create_model

    c, s = cfg.data.channels, cfg.data.image_size
    per_image = c * s * s
    parts: list[MemoryPart] = []
    domains = ([("source", cfg.source)] if cfg.has_source else []) + [(f"targets[{i}]", t)
                                                                      for i, t in enumerate(cfg.targets)]
    loading: MemoryPart | None = None
    held: dict[str, int] = {}
    for key, d in domains:
        pool = _pool(d)
        if pool is None:
            continue
        n, classes, native, whole = pool
        per_class = d.n_per_class + d.n_val_per_class + d.n_test_per_class
        bounded = d.n_per_class > 0 and d.n_test_per_class > 0
        n_sel = min(n, classes * per_class) if bounded and classes else n
        held[key] = n_sel * per_image
        lower = f"data.image_size ({s})" + ("" if bounded else f", or {key}.n_per_class with {key}.n_test_per_class")
        parts.append(MemoryPart(f"the decoded images of {d.display!r} ({key})", n_sel * per_image,
                                f"{n_sel} images x {c} x {s} x {s} bytes", lower))
        if whole:
            chunk = min(4096, n) * per_image * 4 if native != s else 0
            part = MemoryPart(f"all {n} images of {d.display!r} converted at once while it loads", n * per_image + chunk,
                              f"{n} images x {c} x {s} x {s} bytes" + (", and a float32 chunk of the resize" if chunk
                                                                        else ""), f"data.image_size ({s})")
            if loading is None or part.bytes > loading.bytes:
                loading = part
    if loading is not None:
        parts.append(loading)
    if any(b < s for b in cfg.block_sizes) and any(k.startswith("targets") for k in held):
        key = max((k for k in held if k.startswith("targets")), key=lambda k: held[k])
        parts.append(MemoryPart(f"a block-shuffled copy of {key}", 2 * held[key],
                                "the shuffled images and the shuffle's working copy", f"data.image_size ({s})"))
    if model is None:
        model = create_model(cfg.model, c, 3, seed=0)
    outputs = _activations(model, c, s)
    arms = ([] if cfg.model.weights else [("pretrain", cfg.pretrain)]) + [("finetune", cfg.finetune),
                                                                         ("scratch", cfg.scratch)]
    arm, t = max(arms, key=lambda a: a[1].batch_size)
    if outputs is not None:
        total_out, largest_out = outputs
        train_image = int(ACTIVATION_FACTOR * total_out * 4) + per_image * 4
        parts.append(MemoryPart(f"the activations of a training batch ({arm}.batch_size = {t.batch_size})",
                                t.batch_size * train_image, f"{t.batch_size} x {format_bytes(train_image)} per image",
                                f"{arm}.batch_size ({t.batch_size}), or data.image_size ({s})"))
        parts.append(MemoryPart(f"the activations of an evaluation batch ({EVAL_BATCH} images)",
                                EVAL_BATCH * (2 * largest_out * 4 + per_image * 4),
                                f"{EVAL_BATCH} x the two largest outputs per image", f"data.image_size ({s})"))
    n_params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    parts.append(MemoryPart("the model's parameters", PARAMETER_COPIES * 4 * n_params,
                            f"{n_params} numbers x {PARAMETER_COPIES} copies x 4 bytes", "model.width"))
    return MemoryEstimate(parts, available_memory())


def _activations(model: Any, channels: int, size: int) -> tuple[int, int] | None:
    """(sum, largest) of the numbers every leaf module outputs for one image of ``size`` pixels: measured at up to
    32 pixels and scaled by the area (at ``size`` itself for a model that takes no other size); None when the model
    takes neither."""
    import torch

    outs: list[int] = []

    def hook(_module, _inputs, out) -> None:
        for o in (out if isinstance(out, tuple | list) else (out,)):
            if isinstance(o, torch.Tensor):
                outs.append(o.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        for probe in dict.fromkeys((min(size, 32), size)):
            outs.clear()
            try:
                with torch.no_grad():
                    model.eval()(torch.zeros(1, channels, probe, probe))
            except Exception:  # a model of a fixed input size: measured at the study's size
                continue
            scale = (size / probe) ** 2
            return int(sum(outs) * scale), int(max(outs, default=0) * scale)
        return None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def check_memory(cfg: StudyConfig, model: Any = None) -> MemoryEstimate:
    """Refuse a study whose estimated peak (:func:`estimate_memory`) exceeds the memory available, naming the
    figures and the setting to lower. Returns the estimate."""
    est = estimate_memory(cfg, model)
    if not est.fits:
        raise ConfigError(est.explain())
    return est


def pin_weights(cfg: StudyConfig) -> StudyConfig:
    """``cfg`` with ``model.weights_sha256`` set to the content hash of ``model.weights`` (refused when a pinned
    hash no longer matches the file)."""
    from pathlib import Path

    from ..store import file_sha256

    m, b = cfg.model, cfg.basin
    if b.checkpoints and not m.weights:
        raise ConfigError("basin.checkpoints: given checkpoints belong to a given P; set model.weights too (or use "
                          "basin.checkpoint_epochs with P pre-trained here)")
    if not m.weights:
        return cfg

    def pinned(key: str, path: str, want: str) -> str:
        if not Path(path).is_file():
            raise ConfigError(f"{key} {path!r}: no such file")
        digest = file_sha256(path)
        if want and want != digest:
            raise ConfigError(f"{key} {path!r}: its sha256 is {digest}, not the pinned one {want}: the file changed "
                              "since the study was planned")
        return digest

    if b.checkpoints_sha256 and len(b.checkpoints_sha256) != len(b.checkpoints):
        raise ConfigError("basin.checkpoints_sha256: one hash per file of basin.checkpoints, or none")
    wants = b.checkpoints_sha256 or [""] * len(b.checkpoints)
    sums = [pinned(f"basin.checkpoints[{i}]", c, h) for i, (c, h) in enumerate(zip(b.checkpoints, wants, strict=True))]
    return replace(cfg, model=replace(m, weights_sha256=pinned("model.weights", m.weights, m.weights_sha256)),
                   basin=replace(b, checkpoints_sha256=sums))


def make_plan(cfg: StudyConfig, check: bool = True) -> Plan:
    """Expand a study config into its runs, parents first (learning-rate choices still open).

    ``check=False`` skips :func:`validate` (which needs the domain and model registries, hence torch): for
    reading a study that was validated when it ran.
    """
    if check:
        check_config(cfg)  # before anything reads a path of the config
        cfg = pin_weights(cfg)
        validate(cfg)
    s = cfg.data.image_size
    # a given P (model.weights) is not trained: the [pretrain] settings do not enter its run id; its given
    # checkpoints stand at positions 1..K of the basin sweep and the weights at K + 1
    ptrain, given = cfg.pretrain, cfg.basin.checkpoints
    if cfg.model.weights:
        ptrain = PretrainConfig(epochs=len(given) + 1, checkpoint_epochs=[float(i + 1) for i in range(len(given))]) \
            if given else PretrainConfig()
    ps = [RunSpec("P", cfg.source, s, k, ptrain, cfg.model, cfg.data, checkpoint_files=list(given),
                  checkpoint_sha256=list(cfg.basin.checkpoints_sha256)) for k in cfg.pretrain_seed_list]
    several = len(ps) > 1
    runs, tuning, deferred = list(ps), [], []
    selections: dict[tuple[str, str, int, str], Selection] = {}

    def add(arm: str, t: DomainConfig, b: int, seed: int, train: TrainConfig, ckpt: float = -1.0,
            p: RunSpec | None = None) -> None:
        parent = p.run_id if p is not None else ""
        of_p = p.seed if p is not None and several else -1
        spec = RunSpec(arm, t, b, seed, train, cfg.model, cfg.data, parent=parent, parent_checkpoint=ckpt,
                       pretrain_seed=of_p)
        if not train.lr_grid:
            runs.append(spec)
            return
        sb = b if cfg.lr_selection == "per-target-and-block" else s
        # each P gets its own fine-tuning rate, and so does each checkpoint of the basin sweep (basin.lr = "own")
        start = ckpt if cfg.basin.lr == "own" else -1.0
        key = (arm, t.display, sb, parent, start)
        if key not in selections:
            cands = tuple(RunSpec(arm, t, sb, cfg.seeds[0], replace(train, lr=lr, lr_grid=[]), cfg.model, cfg.data,
                                  parent=parent, parent_checkpoint=start, pretrain_seed=of_p)
                          for lr in train.lr_grid)
            selections[key] = Selection(arm, t.display, sb, cands, cfg.lr_rule, of_p)
            tuning.extend(cands)
        deferred.append((spec, selections[key]))

    for t in cfg.targets:
        for b in cfg.block_sizes:
            for seed in cfg.seeds:
                for p in ps:
                    add("P-T", t, b, seed, cfg.finetune, p=p)
                add("RI-T", t, b, seed, cfg.scratch)
    sweep = cfg.basin.checkpoint_epochs or given
    basin_targets = cfg.basin.targets or ([cfg.targets[0].display] if sweep else [])
    b = cfg.basin.block_size or s
    for t in cfg.targets:
        if t.display not in basin_targets:
            continue
        for e in (list(ptrain.checkpoint_epochs) if given else sorted(set(cfg.basin.checkpoint_epochs))):
            if e == ptrain.epochs:
                continue  # the final checkpoint is the main P-T run
            for p in ps:
                for seed in cfg.seeds:
                    add("P-T", t, b, seed, cfg.finetune, float(e), p=p)
    targets = {t.display: t for t in cfg.targets}
    for a in cfg.decide.added:  # the seeds rounds added: ordinary runs, as if the study had had those seeds
        t = targets.get(a.target)
        if t is None:  # a study.json edited by hand (a config is checked by validate first)
            raise ConfigError(f"decide.added: {a.target!r} is not a target of the study; targets are "
                              f"{', '.join(targets)}")
        for seed in a.seeds:
            if a.arm == "P-T":
                for p in ps:
                    add("P-T", t, a.block_size, seed, cfg.finetune, float(a.checkpoint), p=p)
            else:
                add("RI-T", t, a.block_size, seed, cfg.scratch)
    ids = [r.run_id for r in runs + tuning]
    assert len(set(ids)) == len(ids), "two runs of the plan share an id"
    return Plan(cfg, runs, tuning, deferred)


def data_identity(d: DomainConfig) -> str:
    """What a domain's data is, without the names it is shown under: its settings with the ``label`` (a name) and
    the declared ``distance`` (read by the claims, never by a computation) left out. Two targets of one identity
    are the same data; an analysis cache key holds this, not the label, so renaming a target recomputes nothing."""
    return json.dumps(to_dict(replace(d, label="", distance=-1.0)), sort_keys=True)
