"""Similarity of source and target, and transferability scores from the pre-trained model alone (Liu et al.
claim L4), before any fine-tuning; and their rank correlation with the measured transfer gain.

Maths kernels on numpy arrays (each tested against a case whose answer is known in closed form):

* :func:`leep`: LEEP (Nguyen et al. 2020) from P's source-class probabilities on the target's training images;
* :func:`logme`: LogME (You et al. 2021), the maximised log evidence of a Bayesian linear model on P's features,
  averaged over one-hot target columns, per example;
* :func:`h_score`: H-score (Bao et al. 2019), tr(cov(f)^+ cov(E[f | y]));
* :func:`mmd2`: the unbiased squared MMD between two feature samples (linear or Gaussian kernel, median
  bandwidth), the input similarity between source and target in P's feature space;
* :func:`rank_correlation`: Spearman's rho with a bootstrap confidence interval (scipy).

:func:`transferability_scores` computes all of them for a model and two domains (pure: the model is not changed).

Multi-label targets (labels (N, L) with 1.0, 0.0 and NaN for unknown, see :mod:`transferscope.metrics`): LEEP
and H-score are defined for one label per example (LEEP's joint P(y, z) and H-score's E[f | y] condition on the
example's single class) and have no multi-label form: they are NaN, with the reason recorded
(``TransferabilityResult.not_applicable``), never a number computed on a wrong reading of the labels. LogME has
one (:func:`logme_multilabel`): each label is a binary classification target, scored as LogME scores any
classification target (You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning": a C-class label is taken as its one-hot encoding, one Bayesian linear regression per column, the
evidences averaged; a binary label is C = 2, not one 0/1 regression target), on the label's known examples;
the per-label values are averaged over the labels that have both a known positive and a known negative example, and recorded.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from ..devices import model_device
from ..metrics import is_multilabel
from ..models import to_input
from ..vocab.results import TransferabilityResult

__all__ = ["leep", "logme", "logme_multilabel", "h_score", "mmd2", "rank_correlation", "TransferabilityResult",
           "transferability_scores", "NOT_MULTILABEL",
           "NOT_MULTILABEL_SOURCE"]


def leep(source_probs: np.ndarray, labels: np.ndarray, n_classes: int | None = None) -> float:
    """LEEP = 1/n sum_i log sum_z P(y_i | z) theta_z(x_i), with P(y | z) from the empirical joint
    P(y, z) = 1/n sum_i theta_z(x_i) [y_i = y].

    Args:
        source_probs: (n, Z) the pre-trained model's probabilities over its own (source) classes.
        labels: (n,) target labels in [0, n_classes).
    """
    p = np.asarray(source_probs, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"leep: expected (n, Z) probabilities and n labels, got {p.shape} and {y.shape}")
    c = int(n_classes or y.max() + 1)
    joint = np.zeros((c, p.shape[1]))
    np.add.at(joint, y, p)
    joint /= len(y)
    pz = joint.sum(0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y | z)
    eep = (p * cond[y]).sum(1)
    return float(np.mean(np.log(eep)))


def _logme_column(s2: np.ndarray, z: np.ndarray, y_norm2: float, n: int, d: int, tol: float = 1e-6,
                  max_iter: int = 100) -> float:
    """Maximised log evidence / n of y ~ N(F m, 1/beta), m ~ N(0, 1/alpha), from the SVD of F: s2 the squared
    singular values (zeros padded to d), z = U^T y over the nonzero ones."""
    alpha, beta = 1.0, 1.0
    r = len(z)
    sig = s2[:r]
    perp = max(y_norm2 - float(z @ z), 0.0)  # the part of y outside F's column space
    for _ in range(max_iter):
        gamma = float(np.sum(beta * sig / (alpha + beta * sig)))
        m2 = float(np.sum(beta**2 * sig * z**2 / (alpha + beta * sig) ** 2))
        res2 = float(np.sum((alpha * z / (alpha + beta * sig)) ** 2)) + perp
        new_alpha = gamma / max(m2, 1e-300)
        new_beta = (n - gamma) / max(res2, 1e-300)
        done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return _evidence(s2, z, perp, n, d, alpha, beta) / n


def _evidence(s2, z, perp, n, d, alpha, beta) -> float:
    r = len(z)
    sig = s2[:r]
    m2 = float(np.sum(beta**2 * sig * z**2 / (alpha + beta * sig) ** 2))
    res2 = float(np.sum((alpha * z / (alpha + beta * sig)) ** 2)) + perp
    logdet = float(np.sum(np.log(alpha + beta * s2)))  # |alpha I + beta F^T F| over all d directions
    return (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
            - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2)


def logme(features: np.ndarray, labels: np.ndarray, n_classes: int | None = None) -> float:
    """LogME: for each class c, the log evidence of the one-hot column [y = c] under Bayesian linear regression
    on the features, maximised over (alpha, beta) by the fixed-point iteration of You et al.; divided by n and
    averaged over classes. Higher: the features carry more of the labels."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    n, d = f.shape
    c = int(n_classes or y.max() + 1)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max() * 1e-10 if s.size else s > 0
    u, s = u[:, keep], s[keep]
    s2 = np.zeros(d)
    s2[: len(s)] = s**2
    out = []
    for k in range(c):
        col = (y == k).astype(np.float64)
        out.append(_logme_column(s2, u.T @ col, float(col @ col), n, d))
    return float(np.mean(out))


def logme_multilabel(features: np.ndarray, labels: np.ndarray) -> tuple[float, list[float], list[int]]:
    """LogME of multi-label ``labels`` (n, L) (1.0, 0.0, NaN: unknown) on ``features`` (n, d): for each label, the
    single-label :func:`logme` of its known examples as a two-class problem (absent = class 0, present = class 1:
    two one-hot columns, as LogME treats any C-class target); the mean over labels.

    A label without a known positive or a known negative example has no classification target: its value is NaN
    and it is left out of the mean (and listed). Returns (mean, per-label values, excluded labels); the mean is
    NaN when every label is excluded."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2 or len(y) != len(f):
        raise ValueError(f"logme_multilabel: expected (n, L) labels for {len(f)} feature rows, got {y.shape}")
    per, excluded = [], []
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        t = y[known, j]
        if not (t == 1).any() or not (t == 0).any():
            per.append(math.nan)
            excluded.append(j)
            continue
        per.append(logme(f[known], (t == 1).astype(np.int64), 2))
    used = [v for v in per if not math.isnan(v)]
    return (float(np.mean(used)) if used else math.nan), per, excluded


NOT_MULTILABEL = "not applicable to multi-label targets"
NOT_MULTILABEL_SOURCE = ("not applicable: the pre-trained model's source is multi-label (LEEP needs a classifier over "
                         "one label)")
"""The reason recorded for LEEP and H-score on a multi-label target."""


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score = tr(cov(f)^+ cov(E[f | y])): how well class-conditional means separate, in units of the feature
    covariance (pseudo-inverse for singular covariances)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    f = f - f.mean(0)
    cov_f = f.T @ f / len(f)
    g = np.zeros_like(f)
    for k in np.unique(y):
        g[y == k] = f[y == k].mean(0)
    cov_g = g.T @ g / len(f)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10, hermitian=True) @ cov_g))


def mmd2(x: np.ndarray, y: np.ndarray, kernel: str = "rbf", bandwidth: float = 0.0) -> tuple[float, float]:
    """Unbiased squared MMD between samples x (m, d) and y (n, d). Kernel ``linear`` (x . y) or ``rbf``
    exp(-||x - y||^2 / (2 h^2)) with h the median pairwise distance of the pooled sample unless given.
    Returns (mmd2, bandwidth used; 0 for linear)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"mmd2: needs at least 2 examples on each side, got {m} and {n}")

    def gram(a, b):
        return a @ b.T

    if kernel == "linear":
        kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    elif kernel == "rbf":
        z = np.concatenate([x, y])
        sq = np.sum(z**2, 1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
        if not bandwidth:
            iu = np.triu_indices(len(z), 1)
            bandwidth = float(np.sqrt(np.median(d2[iu]))) or 1.0
        k = np.exp(-d2 / (2 * bandwidth**2))
        kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    else:
        raise ValueError(f"mmd2: kernel {kernel!r}: expected 'linear' or 'rbf'")
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean()), float(bandwidth if kernel == "rbf" else 0.0)


def rank_correlation(a: np.ndarray, b: np.ndarray, *, n_resamples: int = 2000, confidence: float = 0.9,
                     seed: int = 0) -> dict[str, float]:
    """Spearman's rho between paired values, with a percentile bootstrap interval over the pairs (scipy)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3:
        return {"rho": math.nan, "low": math.nan, "high": math.nan, "n": int(len(a)), "p_value": math.nan}
    rho, p = stats.spearmanr(a, b)

    def stat(x, y, axis=-1):  # Spearman's rho as Pearson's r of the ranks, vectorised over resamples
        rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
        rx = rx - rx.mean(axis=axis, keepdims=True)
        ry = ry - ry.mean(axis=axis, keepdims=True)
        den = np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))
        return np.divide((rx * ry).sum(axis=axis), den, out=np.zeros_like(den), where=den > 0)

    ci = stats.bootstrap((a, b), stat, paired=True, vectorized=True, n_resamples=n_resamples,
                         confidence_level=confidence, method="percentile", random_state=np.random.default_rng(seed))
    return {"rho": float(rho), "low": float(ci.confidence_interval.low), "high": float(ci.confidence_interval.high),
            "n": int(len(a)), "p_value": float(p), "confidence": confidence}


@torch.no_grad()
def _features_and_probs(model: nn.Module, x: torch.Tensor, layer: str, batch_size: int = 500):
    was = model.training
    model.eval()
    dev = model_device(model)
    feats, probs = [], []
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(dev)
            xb = to_input(xb) if xb.dtype == torch.uint8 else xb
            out = model.features(xb, [layer, "head"])
            feats.append(out[layer].reshape(len(xb), -1).double().cpu())
            probs.append(torch.softmax(out["head"].double(), 1).cpu())
    finally:
        model.train(was)
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def transferability_scores(model: nn.Module, target_x: torch.Tensor, target_y: torch.Tensor,
                           source_x: torch.Tensor | None, *, layer: str = "pool", n_classes: int | None = None,
                           mmd_examples: int = 1000, seed: int = 0, source_multilabel: bool = False
                           ) -> TransferabilityResult:
    """Scores of a pre-trained model (its own head still on) for a target, from the target's training images
    and labels; and the MMD between its ``layer`` features of SOURCE images (``source_x``: images of the domain
    the model was pre-trained on) and target images (at most ``mmd_examples`` of each side, drawn with ``seed``:
    the kernel matrices are (m + n)^2). With ``source_x=None`` the MMD is not computed: NaN, with a ``note``.
    ``source_multilabel``: the model was pre-trained with a sigmoid per source label, so its outputs are no
    distribution over one source label and LEEP is not applicable (NaN, with the reason)."""
    ft, pt = _features_and_probs(model, target_x, layer)
    y = target_y.numpy() if isinstance(target_y, torch.Tensor) else np.asarray(target_y)
    multilabel = is_multilabel(y)
    nan, note, n_source = math.nan, "", 0
    rbf = lin = h = nan
    if source_x is None:
        note = "no source images given (source_x): the source-target MMD is not computed"
    else:
        fs, _ = _features_and_probs(model, source_x, layer)
        n_source = len(fs)
        rng = np.random.default_rng(seed)
        ms = fs[rng.permutation(len(fs))[:mmd_examples]]
        mt = ft[rng.permutation(len(ft))[:mmd_examples]]
        rbf, h = mmd2(ms, mt, "rbf")
        lin, _ = mmd2(ms, mt, "linear")
    args = {"layer": layer, "mmd_examples": mmd_examples}
    if multilabel:
        lm, per, excluded = logme_multilabel(ft, y)
        return TransferabilityResult(nan, lm, nan, rbf, lin, h, len(y), n_source, layer, seed,
                                     args | {"logme_form": "per label, two classes, mean over labels"}, note,
                                     not_applicable={"leep": NOT_MULTILABEL, "h_score": NOT_MULTILABEL},
                                     logme_per_label=per, logme_excluded=excluded)
    if source_multilabel:
        return TransferabilityResult(nan, logme(ft, y, n_classes), h_score(ft, y), rbf, lin, h, len(y), n_source,
                                     layer, seed, args, note, not_applicable={"leep": NOT_MULTILABEL_SOURCE})
    return TransferabilityResult(leep(pt, y, n_classes), logme(ft, y, n_classes), h_score(ft, y), rbf, lin, h, len(y),
                                 n_source, layer, seed, args, note)
