"""The report's figures: matplotlib (Agg) to PNG, from plain numbers and uint8 image arrays (no torch). Every text is
drawn as given (no mathtext: see :data:`PLAIN_TEXT`)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")
logging.getLogger("matplotlib").setLevel(logging.WARNING)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .. import metrics as M  # noqa: E402
from ..vocab.records import (  # noqa: E402
    SCORE_NAMES,
    BarrierResult,
    BasinResult,
    CKAResult,
    CriticalityResult,
    DistanceResult,
    FlatnessResult,
    PrincipalGradientResult,
    RelateResult,
    StabilityCurve,
)

_P = ParamSpec("_P")
_R = TypeVar("_R")

ARM_COLOURS = {"P-T": "#1f77b4", "RI-T": "#d62728", "P": "#2ca02c"}
PAIR_COLOURS = {"P-T/P-T": "#1f77b4", "RI-T/RI-T": "#d62728", "P-T/RI-T": "#9467bd", "P/P-T": "#2ca02c",
                "P-T/P": "#2ca02c", "RI-T/RI": "#ff7f0e"}


PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False, "pdf.fonttype": 42, "ps.fonttype": 42}
"""Every text of a figure is drawn as given: user strings (labels, target names, run and module names, titles) are
never parsed as mathtext or LaTeX, so ``$x$`` shows its dollars and ``$a^b^c$`` cannot fail a figure. The axes' own
tick labels are plain numbers too (:func:`_plain_ticks`: a log axis' ``6x10^1`` is written ``60``), and PDF and
PostScript embed TrueType (Type 42) fonts, which journals take, not Type 3."""


def _plain_ticks(fig) -> None:
    """Tick labels of every log axis of ``fig`` as plain numbers: matplotlib's log formatter writes mathtext
    (``$\\mathdefault{6\\times10^{1}}$``), which :data:`PLAIN_TEXT` would print raw."""
    from matplotlib.ticker import LogFormatter

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
                axis.set_minor_formatter(LogFormatter(labelOnlyBase=False))  # minor labels only on short axes


def _plain_text(draw: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a figure function with :data:`PLAIN_TEXT` (its texts are drawn when it saves, inside the call)."""

    @functools.wraps(draw)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with plt.rc_context(PLAIN_TEXT):
            return draw(*args, **kwargs)

    return wrapped


FIGURE_FORMATS = ("png", "svg", "pdf")
"""The formats a figure can be saved in; the HTML report shows the PNG (or the SVG) and links the others."""

_FORMATS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("figure_formats", default=("png",))


@contextlib.contextmanager
def figure_formats(formats: Sequence[str]):
    """Save every figure drawn inside in each of ``formats`` (a subset of :data:`FIGURE_FORMATS`; the first is
    the one a figure function returns)."""
    token = _FORMATS.set(tuple(formats))
    try:
        yield
    finally:
        _FORMATS.reset(token)


def _save(fig, path: Path) -> Path:
    """Save ``fig`` as ``path`` with the suffix of each asked format; returns the first."""
    try:
        _plain_ticks(fig)
        paths = [path.with_suffix(f".{fmt}") for fmt in _FORMATS.get()]
        for p in paths:
            # no creation date in the SVG and PDF metadata: the same results give the same files
            meta = {".svg": {"Date": None}, ".pdf": {"CreationDate": None}}.get(p.suffix)
            fig.savefig(p, dpi=90, bbox_inches="tight", metadata=meta)
    finally:
        plt.close(fig)
    return paths[0]


def _finite(v) -> float:
    return float(v) if v is not None and math.isfinite(float(v)) else math.nan


def _tile(img: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> something imshow takes."""
    return img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))


@_plain_text
def image_grid(path: Path, rows: Sequence[tuple[str, np.ndarray, Sequence[str]]], title: str) -> Path:
    """One row per (row label, images (N, C, H, W) uint8, caption per image)."""
    ncol = max(1, max((len(x) for _, x, _ in rows), default=1))
    # a caption is wrapped to the width of its image (a multi-label caption joins several labels): rows as tall
    # as their longest caption, so no caption runs into its neighbour or the row above
    wrapped = [[textwrap.fill(str(c).replace("+", " +"), 14, break_on_hyphens=False) for c in caps]
               for _, _, caps in rows]  # lines broken between a multi-label caption's labels, not inside one
    lines = [max((w.count("\n") + 1 for w in ws), default=1) for ws in wrapped]
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.25 * ncol + 1.2, sum(1.3 + 0.13 * k for k in lines) + 0.4),
                             squeeze=False, gridspec_kw={"height_ratios": [1.3 + 0.13 * k for k in lines]})
    for r, (label, imgs, caps) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(imgs):
                ax.imshow(_tile(imgs[c]), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                if c < len(caps):
                    ax.set_title(wrapped[r][c], fontsize=6.5)
        axes[r][0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
        if not len(imgs):
            axes[r][0].text(0.0, 0.5, "(none)", fontsize=8, transform=axes[r][0].transAxes)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _words(metric: str) -> tuple[str, str]:
    """(the test figure, the training curve) of a metric, as figures name them."""
    auc = metric == M.AUC
    word = M.metric_label(M.AUC if auc else M.ACC)
    return word, ("train-subset " if auc else "train ") + word


@_plain_text
def gain_bars(path: Path, rows: list[dict], metric: str = M.ACC) -> Path:
    """P-T vs RI-T final test accuracy (``metric`` "acc"), or mean AUC ("auc"), per target (mean and sample std
    over seeds)."""
    word = _words(metric)[0]
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.2))
    x = np.arange(len(rows))
    for k, arm in enumerate(("P-T", "RI-T")):
        m = [_finite(r[arm].acc_mean) for r in rows]
        s = [_finite(r[arm].acc_std) for r in rows]
        ax.bar(x + (k - 0.5) * 0.38, m, 0.38, yerr=s, capsize=3, color=ARM_COLOURS[arm],
               label=f"{arm} (n = {min(r[arm].n for r in rows)} seeds)")
    ax.set_xticks(x, [r["target"] for r in rows], fontsize=8)
    ax.set_ylabel(f"test {word}")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"final test {word}, unshuffled targets (bars: mean, whiskers: sample std)", fontsize=9)
    return _save(fig, path)


@_plain_text
def shuffle_lines(path: Path, rows: list[dict], speed_k: int, speed_fraction: float) -> Path:
    """Per target: accuracy (mean AUC for a multi-label target: its rows' ``metric``) and the two speed figures
    against block size, P-T vs RI-T."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    fig, axes = plt.subplots(len(targets), 3, figsize=(11, 2.6 * len(targets)), squeeze=False)
    for i, t in enumerate(targets):
        rs = sorted((r for r in rows if r["target"] == t), key=lambda r: -r["block_size"])
        test, train = _words(rs[0].get("metric", M.ACC))
        metrics = [("acc_mean", "acc_std", f"final test {test}"),
                   ("speed_mean_acc_k", None, f"mean {train}, first {speed_k} epochs"),
                   ("speed_steps_to_frac", None, f"steps to {speed_fraction:g} of final {train}")]
        xs = np.arange(len(rs))
        for j, (key, err, label) in enumerate(metrics):
            ax = axes[i][j]
            for arm in ("P-T", "RI-T"):
                ys = [_finite(getattr(r[arm], key)) for r in rs]
                es = [_finite(getattr(r[arm], err)) for r in rs] if err else None
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=ARM_COLOURS[arm], label=arm)
            ax.set_xticks(xs, [str(r["block_size"]) for r in rs])
            ax.set_title(f"{t}: {label}", fontsize=8)
            ax.set_xlabel("block size (smaller = more shuffled)", fontsize=7)
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def training_curves(path: Path, curves: dict[tuple[str, int], dict[str, list[np.ndarray]]], steps_per_epoch: dict,
                    epochs: int, metrics: dict[str, str] | None = None) -> Path:
    """Training accuracy per step over the first ``epochs`` epochs (running mean over a quarter epoch), mean
    over seeds; one panel per (target, block size). A target whose ``metrics`` entry is "auc" (multi-label) gives
    instead one point per epoch, from epoch 0: the mean AUC on its fixed training subset (history ``train_auc``),
    drawn at step ``epoch x steps per epoch``."""
    metrics = metrics or {}
    keys = list(curves)
    targets = list(dict.fromkeys(t for t, _ in keys))
    blocks = sorted({b for _, b in keys}, reverse=True)
    fig, axes = plt.subplots(len(targets), len(blocks), figsize=(3.2 * len(blocks), 2.4 * len(targets)), squeeze=False)
    for i, t in enumerate(targets):
        for j, b in enumerate(blocks):
            ax = axes[i][j]
            per_epoch = metrics.get(t) == M.AUC
            for arm, runs in curves.get((t, b), {}).items():
                spe = steps_per_epoch.get((t, b, arm), 1)
                if per_epoch:
                    n = min(min(len(r) for r in runs), epochs + 1)
                    if n:
                        ax.plot(np.arange(n) * spe, np.mean([r[:n] for r in runs], axis=0), marker="o",
                                markersize=3, color=ARM_COLOURS[arm], label=f"{arm} ({len(runs)} seeds)")
                    continue
                n = min(min(len(r) for r in runs), epochs * spe)
                if n == 0:
                    continue
                mean = np.mean([r[:n] for r in runs], axis=0)
                w = max(1, spe // 4)
                smooth = np.convolve(mean, np.ones(w) / w, mode="valid")
                ax.plot(np.arange(len(smooth)) + w, smooth, color=ARM_COLOURS[arm], label=f"{arm} ({len(runs)} seeds)")
            ax.set_title(f"{t}, block {b}", fontsize=8)
            ax.set_ylim(0, 1)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("step", fontsize=7)
            if j == 0:
                ax.set_ylabel(_words(metrics.get(t, M.ACC))[1], fontsize=7)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def cka_lines(path: Path, per_target: dict[str, dict[str, CKAResult]]) -> Path:
    fig, axes = plt.subplots(1, len(per_target), figsize=(4.2 * len(per_target), 3.2), squeeze=False)
    for ax, (t, res) in zip(axes[0], per_target.items(), strict=True):
        for pair, r in res.items():
            c = PAIR_COLOURS.get(pair)
            ax.plot(r.layers, [_finite(v) for v in r.full], marker="o", color=c, label=f"{pair}")
            ax.plot(r.layers, [_finite(v) for v in r.minibatch], ls="--", color=c, alpha=0.6)
        ax.set_title(f"{t}: linear CKA per layer (solid: full data, dashed: minibatch)", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def distance_bars(path: Path, per_target: dict[str, dict[str, DistanceResult]]) -> Path:
    fig, axes = plt.subplots(1, len(per_target), figsize=(4.8 * len(per_target), 4.2), squeeze=False)
    for ax, (t, res) in zip(axes[0], per_target.items(), strict=True):
        pairs = list(res)
        modules = list(next(iter(res.values())).per_module)
        x = np.arange(len(modules))
        w = 0.8 / max(1, len(pairs))
        for k, pair in enumerate(pairs):
            ax.bar(x + (k - (len(pairs) - 1) / 2) * w, [res[pair].per_module.get(m, math.nan) for m in modules], w,
                   color=PAIR_COLOURS.get(pair), label=f"{pair} (total {res[pair].total:.1f})")
        ax.set_xticks(x, modules, rotation=60, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("l2 distance", fontsize=7)
        ax.set_title(f"{t}: l2 distance per module", fontsize=8)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def barrier_lines(path: Path, per_target: dict[str, dict[str, BarrierResult]]) -> Path:
    fig, axes = plt.subplots(len(per_target), 2, figsize=(9, 2.7 * len(per_target)), squeeze=False)
    for i, (t, res) in enumerate(per_target.items()):
        for j, (key, bkey, label) in enumerate((("loss", "barrier_loss", "test loss"), ("error", "barrier_error", "test error"))):
            ax = axes[i][j]
            for pair, r in res.items():
                ax.plot(r.lambdas, [_finite(v) for v in getattr(r, key)], marker=".", color=PAIR_COLOURS.get(pair),
                        label=f"{pair}: barrier {_finite(getattr(r, bkey)):.3f}")
            ax.set_title(f"{t}: {label} along (1 - \u03bb) a + \u03bb b", fontsize=8)
            ax.set_xlabel("\u03bb (0: model a, 1: model b)", fontsize=7)
            ax.set_ylabel(label, fontsize=7)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def criticality_maps(path: Path, t: str, res: dict[str, CriticalityResult]) -> Path:
    """Per arm: module x a heatmap of the largest feasible noise scale s (the feasible region of the (a, s)
    plane); beside it the criticality per module, P-T vs RI-T."""
    arms = list(res)
    fig, axes = plt.subplots(1, len(arms) + 1, figsize=(4.2 * (len(arms) + 1), 0.35 * len(res[arms[0]].modules) + 1.8),
                             squeeze=False)
    for ax, arm in zip(axes[0], arms, strict=False):
        r = res[arm]
        grid = np.asarray([[_finite(v) for v in row] for row in r.boundary_s], dtype=float)
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=max(1e-9, np.nanmax(grid) if grid.size else 1))
        ax.set_yticks(range(len(r.modules)), r.modules, fontsize=7)
        ax.set_xticks(range(len(r.alphas)), [f"{a:g}" for a in r.alphas], fontsize=7)
        ax.set_xlabel("\u03b1 (0: module rewound to \u03b8\u2070, 1: final)", fontsize=7)
        ax.set_title(f"{t}, {arm}: largest feasible s", fontsize=8)
        bar = fig.colorbar(im, ax=ax, fraction=0.05)
        bar.set_label("largest noise scale s that keeps the loss feasible", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    ax = axes[0][-1]
    mods = res[arms[0]].modules
    y = np.arange(len(mods))
    for k, arm in enumerate(arms):
        vals = [float(v) for v in res[arm].criticality]  # inf: infeasible
        shown = [math.log10(1 + v) if math.isfinite(v) else math.nan for v in vals]
        ax.barh(y + (k - 0.5) * 0.4, shown, 0.4, color=ARM_COLOURS.get(arm), label=arm)
        for yy, v in zip(y + (k - 0.5) * 0.4, vals, strict=True):
            if not math.isfinite(v):
                ax.text(0, yy, " infeasible", fontsize=6, va="center")
    ax.set_yticks(y, mods, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("log10(1 + criticality)", fontsize=7)
    ax.set_title(f"{t}: criticality per module", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def basin_lines(path: Path, per_target: dict[str, BasinResult], speed_k: int,
                metric_of: dict[str, str] | None = None) -> Path:
    """Per target, against the pre-training checkpoint P-T started from: its final test figure, speed (a) and the
    error barrier to the P-T run from the final checkpoint; in mean AUC for a target whose ``metric_of`` is
    "auc"."""
    metric_of = metric_of or {}
    fig, axes = plt.subplots(len(per_target), 3, figsize=(11, 2.6 * len(per_target)), squeeze=False)
    for i, (t, res) in enumerate(per_target.items()):
        rows = res.rows
        ckpts = res.checkpoints()
        test, train = _words(metric_of.get(t, M.ACC))
        metrics = [("test_acc", f"final test {test}"), ("speed_mean_acc_k", f"mean {train}, first {speed_k} epochs"),
                   ("barrier_error", "error barrier to P-T from the final checkpoint"
                    + (f" (1 - {M.metric_label(M.AUC)})" if metric_of.get(t) == M.AUC else ""))]
        for j, (key, label) in enumerate(metrics):
            ax = axes[i][j]
            vals = [[_finite(getattr(r, key)) for r in rows if r.checkpoint == e] for e in ckpts]
            ax.errorbar(ckpts, [np.nanmean(v) for v in vals], yerr=[np.nanstd(v) for v in vals], marker="o", capsize=3,
                        color=ARM_COLOURS["P-T"])
            for e, v in zip(ckpts, vals, strict=True):
                ax.scatter([e] * len(v), v, s=8, color="grey", zorder=3)
            ax.set_title(f"{t}: {label}", fontsize=8)
            ax.set_xlabel("pre-training checkpoint (epochs)", fontsize=7)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def flatness_bars(path: Path, per_target: dict[str, dict[str, FlatnessResult]]) -> Path:
    """Top Hessian eigenvalue per target and the loss increase against the perturbation size, P-T vs RI-T."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    targets = list(per_target)
    x = np.arange(len(targets))
    for k, arm in enumerate(("P-T", "RI-T")):
        axes[0].bar(x + (k - 0.5) * 0.38, [_finite(per_target[t][arm].top_eigenvalue) for t in targets], 0.38,
                    color=ARM_COLOURS[arm], label=arm)
        for t in targets:
            r = per_target[t][arm]
            axes[1].errorbar(r.radii, r.loss_increase, yerr=r.loss_increase_std, marker="o", capsize=2,
                             color=ARM_COLOURS[arm], alpha=0.8, ls="-" if t == targets[0] else "--",
                             label=f"{arm}, {t}")
    axes[0].set_xticks(x, targets, fontsize=8, rotation=20, ha="right")
    axes[0].set_yscale("log")
    axes[0].set_title("top eigenvalue of the training-loss Hessian (lower: flatter)", fontsize=8)
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("relative perturbation size r", fontsize=7)
    axes[1].set_title("training-loss increase under random perturbations", fontsize=8)
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def deviation_lines(path: Path, per_target: dict[str, dict]) -> Path:
    """Relative deviation ||W - W0|| / ||W0|| per module along training, P-T (from P) vs RI-T (from RI)."""
    fig, axes = plt.subplots(1, len(per_target), figsize=(4.4 * len(per_target), 3.2), squeeze=False)
    for ax, (t, res) in zip(axes[0], per_target.items(), strict=True):
        for arm, ls in (("P-T", "-"), ("RI-T", "--")):
            r = res[arm]
            mean = np.asarray([[_finite(v) for v in row] for row in r["mean"]], dtype=float)
            for j, m in enumerate(r["modules"]):
                if m == "head":
                    continue
                ax.plot(r["epochs"], mean[:, j], ls=ls, color=plt.cm.viridis(j / max(1, len(r["modules"]) - 1)),
                        label=f"{m}" if arm == "P-T" else None)
        ax.set_title(f"{t}: relative deviation per module (solid P-T, dashed RI-T)", fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_yscale("log")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def stability_lines(path: Path, per_target: dict[str, dict[str, StabilityCurve]]) -> Path:
    """Local Lipschitz constant of the gradient (and of the loss) along training, P-T vs RI-T."""
    fig, axes = plt.subplots(len(per_target), 2, figsize=(9, 2.6 * len(per_target)), squeeze=False)
    for i, (t, res) in enumerate(per_target.items()):
        for j, (key, label) in enumerate((("grad_lipschitz", "||dg|| / ||step||"), ("loss_lipschitz", "|dL| / ||step||"))):
            ax = axes[i][j]
            for arm, curve in res.items():
                rows = curve.points
                ks = rows[0].ks
                for q, k in enumerate(ks):
                    ax.plot([r.epoch for r in rows], [_finite(getattr(r, key)[q]) for r in rows], marker="o",
                            color=ARM_COLOURS[arm], alpha=0.35 + 0.65 * (q + 1) / len(ks),
                            label=f"{arm}, k = {k:g}" if i == 0 else None)
            ax.set_yscale("log")
            ax.set_title(f"{t}: {label} along theta - eta k g", fontsize=8)
            ax.set_xlabel("epoch (saved point of training)", fontsize=7)
            if i == 0:
                ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def principal_bars(path: Path, per_target: dict[str, dict[str, PrincipalGradientResult]]) -> Path:
    """Fraction of the gradient's energy on the top singular direction of each weight, pre-trained vs random."""
    most = max((len(res["P-T"].weights) for res in per_target.values()), default=1)
    fig, axes = plt.subplots(1, len(per_target), figsize=(max(4.6, 0.28 * most + 1.6) * len(per_target) + 2.4, 4.0),
                             squeeze=False)
    for ax, (t, res) in zip(axes[0], per_target.items(), strict=True):
        names = res["P-T"].weights
        x = np.arange(len(names))
        for k, (arm, label) in enumerate((("P-T", "pre-trained (P-T at start)"), ("RI-T", "random (RI-T at start)"))):
            ax.bar(x + (k - 0.5) * 0.38, [_finite(f[0]) for f in res[arm].fraction], 0.38, color=ARM_COLOURS[arm],
                   label=label)
        ax.plot(x, [f[0] for f in res["P-T"].random_fraction], "k_", markersize=10, label="isotropic chance")
        ax.set_xticks(x, [n.replace(".weight", "") for n in names], rotation=60, ha="right", fontsize=6)
        ax.set_yscale("log")
        ax.set_ylabel("energy fraction", fontsize=7)
        ax.set_title(f"{t}: gradient energy on the top singular direction (k = {res['P-T'].top_k[0]})", fontsize=8)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside, not on, the bars
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def score_scatter(path: Path, rel: RelateResult, not_applicable: dict[str, str] | None = None) -> Path:
    """Each transferability score of P against the measured gain, one point per (target, block size). A score with
    no value on any target (LEEP and H-score of multi-label targets) is a panel saying so, with the reason
    (``not_applicable``: score name -> why), not an empty axis titled ``rho +nan``."""
    scores = SCORE_NAMES
    pts = rel.points
    fig, axes = plt.subplots(1, len(scores), figsize=(3.4 * len(scores), 3.0), squeeze=False)
    targets = list(dict.fromkeys(p.target for p in pts))
    words = {"leep": "LEEP of P on the target", "logme": "LogME of P on the target",
             "h_score": "H-score of P on the target",
             "mmd2_rbf": "MMD\u00b2 (RBF) of P's features, source vs target"}
    for ax, s in zip(axes[0], scores, strict=True):
        ax.set_xlabel(words.get(s, s), fontsize=7)
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        if not any(math.isfinite(_finite(p.score(s))) for p in pts):  # e.g. LEEP of a multi-label target
            why = (not_applicable or {}).get(s) or "no value on any target"
            why = why if why.startswith("not applicable") else f"not applicable: {why}"
            ax.text(0.5, 0.5, textwrap.fill(why, 30), ha="center", va="center", fontsize=7,
                    transform=ax.transAxes, color="#555555")
            ax.set_title(s, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for j, t in enumerate(targets):
            sel = [p for p in pts if p.target == t]
            ax.scatter([_finite(p.score(s)) for p in sel], [_finite(p.gain) for p in sel], s=18,
                       color=plt.cm.tab10(j), label=t)
            for p in sel:
                ax.annotate(str(p.block_size), (_finite(p.score(s)), _finite(p.gain)), fontsize=6)
        c = rel.correlations[f"{s}/gain"]
        ax.set_title(f"{s}: rho {_finite(c.rho):+.2f} [{_finite(c.low):+.2f}, {_finite(c.high):+.2f}]"
                     if math.isfinite(_finite(c.rho)) else f"{s}: rho n/a ({c.n} cells; it needs 3)", fontsize=8)
        ax.set_ylabel("gain P-T - RI-T", fontsize=7)
        ax.axhline(0, color="grey", lw=0.5)
        ax.tick_params(labelsize=7)
    drawn = [ax for ax in axes[0] if ax.get_legend_handles_labels()[0]]
    if drawn:  # the targets' legend, on the first panel with points
        drawn[0].legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


@_plain_text
def gain_by_checkpoint(path: Path, rows: dict[str, list[tuple[float, float]]]) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    for t, pts in rows.items():
        ax.plot([e for e, _ in pts], [g for _, g in pts], marker="o", label=t)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("pre-training checkpoint (epochs)", fontsize=7)
    ax.set_ylabel("gain P-T - RI-T (test accuracy)", fontsize=7)
    ax.set_title("transfer gain along pre-training", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


OUTCOME_COLOURS = {"holds": "#186a1a", "does not hold": "#a51d1d", "inconclusive": "#9a6700", "unreliable": "#6a3d9a",
                   "not measured": "#888888"}


@_plain_text
def forest_plots(out: Path, verdicts: Sequence) -> list[Path]:
    """One forest plot per claim, ``forest-<claim>.png`` (:func:`forest_plot`); their paths, in claim order."""
    return [forest_plot(out / f"forest-{v.claim}.png", [v]) for v in verdicts]


@_plain_text
def forest_plot(path: Path, verdicts: Sequence) -> Path:
    """One panel per claim (and unit, where a claim's effects have several): each effect (per target) as its
    estimate and confidence interval, coloured by its outcome, with the claim's bound (a vertical line; the margin
    shaded for claims of sameness). Labels are written whole (wrapped, never cut); an effect that could not be
    computed is marked "not measured"."""
    panels = []  # one per claim and unit (a claim's effects may have different units, e.g. L1)
    for v in verdicts:
        units: dict[str, list] = {}
        for e in v.effects:
            units.setdefault(e.unit, []).append(e)
        panels += [(v, u, effs) for u, effs in units.items()]
    if not panels:
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.text(0.5, 0.5, "no claim could be measured", ha="center", va="center")
        ax.axis("off")
        return _save(fig, path)
    labels = {id(e): textwrap.fill(f"{e.target}: {e.name} (n={e.n})", 58) for _, _, effs in panels for e in effs}
    rows = [[labels[id(e)].count("\n") + 1 for e in effs] for _, _, effs in panels]
    heights = [0.2 * sum(r) + 0.16 * len(r) + 0.8 for r in rows]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (v, unit, effs), lines in zip(axes[:, 0], panels, rows, strict=True):
        # each effect's row as tall as its label
        y = np.cumsum([0] + [max(1, k) for k in lines[:-1]]).astype(float)
        y = y.max() - y
        # a decisive effect of a target that rests on runs that did not fit (a blocking caveat) is drawn unreliable
        blocked = {t.target for t in getattr(v, "targets", ())
                   if t.outcome == "unreliable" or any(c.blocking for c in getattr(t, "caveats", ()))}
        for yy, e in zip(y, effs, strict=True):
            decisive = e.outcome in ("holds", "does not hold")
            c = OUTCOME_COLOURS.get("unreliable" if e.target in blocked and decisive else e.outcome, "#333333")
            lo, hi = _finite(e.low), _finite(e.high)
            if not math.isfinite(_finite(e.value)):
                ax.text(e.bound, yy, "  not measured", color=OUTCOME_COLOURS["not measured"], fontsize=6.5,
                        va="center")
                continue
            if math.isfinite(lo) and math.isfinite(hi):
                ax.plot([lo, hi], [yy, yy], color=c, lw=2)
            ax.plot([_finite(e.value)], [yy], "o", color=c, ms=5)
        for e in effs:
            if e.side == "within":
                ax.axvspan(e.bound - e.margin, e.bound + e.margin, color="#dddddd", zorder=0)
            ax.axvline(e.bound, color="black", lw=0.8, ls="--" if e.bound else "-")
        ax.axvline(0.0, color="black", lw=0.5)
        ax.set_yticks(y, [labels[id(e)] for e in effs], fontsize=6.5)
        ax.set_ylim(-0.7, y.max() + 0.7)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(unit, fontsize=7)
        ax.set_title(f"{v.claim}: {v.outcome} ({unit}; 95% intervals)", fontsize=8, loc="left",
                     color=OUTCOME_COLOURS.get(v.outcome, "#333333"))
    fig.tight_layout()
    return _save(fig, path)
