"""Linear interpolation between two models and the performance barrier (Neyshabur et al., Section 3.4;
Frankle et al. 2020; Entezari et al. 2022).

theta(l) = (1 - l) theta_1 + l theta_2 at ``points`` values of l in [0, 1]; the test loss and error at each;
barrier = max_l E(theta(l)) - ((1 - l) E(theta_1) + l E(theta_2)), for the error and for the loss.

Networks without batch statistics (GroupNorm, Fixup) are evaluated exactly: point by point in one working
copy (the default), or, with ``batched=True``, several interpolation points in one pass with
``torch.func.functional_call`` under ``vmap``. On a CPU the batched pass was slower (9.1 s against 1.7 s for
11 points of the quick study's model on 500 images: torch's batching rule for convolutions with batched
weights becomes a grouped convolution); see ``benchmarks/barrier_points.py``. With BatchNorm the running statistics do not
match interpolated weights; ``bn_policy`` chooses: ``recompute`` (reset and re-estimate them on training data;
the default for such nets), ``interpolate`` (interpolate them too) or ``keep`` (keep model 1's).

Multi-label targets (labels (N, L), see :mod:`transferscope.metrics`): the loss is the binary cross-entropy per
label averaged over an example's known labels (:func:`transferscope.task.per_example_loss`), and the error is
1 - the mean AUC over labels. The AUC is not a sum over batches: the logits of every point are kept and the
AUC computed on all of them (``BarrierResult.error_metric`` says which error a result holds).
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from torch.func import functional_call, vmap

from .. import task
from ..data import Split
from ..devices import cpu_sample, model_device
from ..metrics import ACC, AUC, auc_detail, is_multilabel, mean_auc
from ..models import to_input
from ..vocab.results import BarrierResult

__all__ = ["BarrierResult", "interpolate", "barrier_of_curve", "has_batch_statistics"]

BNPolicy = Literal["recompute", "interpolate", "keep"]


def barrier_of_curve(lambdas: np.ndarray, values: np.ndarray) -> float:
    """max over l of v(l) - ((1 - l) v(0) + l v(1)): the height of the curve above the chord."""
    lambdas, values = np.asarray(lambdas, float), np.asarray(values, float)
    chord = (1 - lambdas) * values[0] + lambdas * values[-1]
    return float(np.max(values - chord))


def has_batch_statistics(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules())


def _check_pair(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        bad = next((k for k in sa if k not in sb or sa[k].shape != sb[k].shape), next(iter(sb.keys() - sa.keys()), "?"))
        raise ValueError(f"interpolate: the models differ at {bad!r}; they need one architecture and head size")


def _standard(t: torch.Tensor) -> torch.Tensor:
    """``t`` with the strides of a freshly allocated tensor of its shape (row-major; size-1 dimensions included): a
    copy when they differ, ``t`` itself otherwise. ``contiguous()`` is not enough: it keeps a tensor that counts as
    contiguous in both layouts (one channel of stride 1, say), which vmap still refuses."""
    want, acc = [], 1
    for size in reversed(t.shape):
        want.append(acc)
        acc *= max(size, 1)
    if tuple(reversed(want)) == t.stride():
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _points(model: nn.Module, pa: dict, pb: dict, buffers: dict, lambdas: torch.Tensor):
    """The model at every point ``(1 - l) pa + l pb`` of ``lambdas`` at once: a function of (stacked parameters,
    inputs) giving (k, batch, outputs), and the stacked parameters."""
    k = len(lambdas)
    # vmap's batching rules only know the standard layout: a channels_last tensor (or one whose size-1 channel
    # dimension has stride 1, as a freshly decoded grey domain holds) fails with "NYI: querying is_contiguous inside
    # of vmap", so parameters, buffers and images enter in the standard layout whatever they are stored in
    stacked = {n: _standard(torch.lerp(pa[n].unsqueeze(0).expand(k, *pa[n].shape),
                                       pb[n].unsqueeze(0).expand(k, *pb[n].shape),
                                       lambdas.view(-1, *[1] * pa[n].dim()).to(pa[n].dtype))) for n in pa}
    buffers = {n: _standard(b) for n, b in buffers.items()}

    def f(params, x):
        return functional_call(model, (params, buffers), (x,))

    return vmap(f, in_dims=(0, None)), stacked


@torch.no_grad()
def _eval_points_vmap(model: nn.Module, pa: dict, pb: dict, buffers: dict, lambdas: torch.Tensor, split: Split,
                      batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean loss and the error at every point of ``lambdas`` at once: 1 - accuracy, or for multi-label labels
    1 - mean AUC (from every point's logits over the whole split: an AUC is not a sum over batches)."""
    k = len(lambdas)
    multilabel = is_multilabel(split.y)
    batched, stacked = _points(model, pa, pb, buffers, lambdas)
    dev = lambdas.device
    loss_sum = torch.zeros(k, dtype=torch.float64, device=dev)
    wrong = torch.zeros(k, dtype=torch.float64, device=dev)
    logits = []
    for i in range(0, len(split), batch_size):
        x = _standard(to_input(split.x[i : i + batch_size].to(dev)))
        y = split.y[i : i + batch_size].to(dev)
        out = batched(stacked, x)  # (k, b, classes or labels)
        loss_sum += task.per_example_loss(out, y).sum(1).double()
        if multilabel:
            logits.append(out.float().cpu())
        else:
            wrong += (out.argmax(2) != y).sum(1).double()
    n = len(split)
    if multilabel:
        y = split.y.cpu().numpy()
        err = np.array([1 - mean_auc(z, y) for z in torch.cat(logits, 1).numpy()])
    else:
        err = (wrong / n).cpu().numpy()
    return (loss_sum / n).cpu().numpy(), err


def _bn_sample(train: Split, n: int, seed: int) -> Split:
    """``n`` training examples for re-estimating BatchNorm statistics, in an order mixed over the classes: splits
    are stored class by class, so a prefix (or batches in stored order) would see one class at a time.
    ``Split.sample`` is balanced over the classes and interleaves them; all of a smaller split is permuted."""
    if 0 < n < len(train):
        return cpu_sample(train, n, seed)
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed), device="cpu")
    return Split(train.x[perm], train.y[perm], train.index[perm.numpy()])


@torch.no_grad()
def _recompute_bn(model: nn.Module, train: Split, batch_size: int, batches: int, seed: int = 0) -> None:
    """Reset the BatchNorm statistics and re-estimate them (cumulative average, equal-sized batches) on at most
    ``batches`` x ``batch_size`` training examples drawn with ``seed``, balanced over the classes."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    sub = _bn_sample(train, batch_size * batches, seed)
    dev = model_device(model)
    model.train()
    # batches of (nearly) equal size: the cumulative average weighs every batch alike
    for idx in torch.arange(len(sub), device="cpu").tensor_split(max(1, -(-len(sub) // batch_size))):
        model(to_input(sub.x[idx].to(dev)))
    model.eval()


def _curve_vmap(model: nn.Module, pa: dict, pb: dict, lambdas: torch.Tensor, split: Split, batch_size: int,
                step: int) -> tuple[np.ndarray, np.ndarray]:
    """Loss and error at every l of ``lambdas``, ``step`` points per ``vmap`` pass (nets without batch statistics)."""
    buffers = {n: b for n, b in model.named_buffers()}
    losses, errors = [], []
    for lo in range(0, len(lambdas), step):
        lo_l, lo_e = _eval_points_vmap(model, pa, pb, buffers, lambdas[lo : lo + step].to(model_device(model)),
                                       split, batch_size)
        losses.append(lo_l)
        errors.append(lo_e)
    return np.concatenate(losses), np.concatenate(errors)


def interpolate(model_a: nn.Module, model_b: nn.Module, split: Split, *, points: int = 11,
                bn_policy: BNPolicy = "recompute", train_split: Split | None = None, batch_size: int = 500,
                bn_batches: int = 20, batched: bool = False, chunk_points: int = 0, seed: int = 0) -> BarrierResult:
    """Loss and error along the straight line between two models, and the barrier.

    Args:
        model_a, model_b: one architecture; neither is changed.
        split: evaluation data (the test split in the paper).
        points: N values of l, evenly spaced in [0, 1] (both ends included).
        bn_policy: for nets with BatchNorm only (see the module docstring); ``recompute`` needs ``train_split``
            and re-estimates the statistics at every point on ``bn_batches`` x ``batch_size`` of its examples,
            drawn with ``seed`` and balanced over the classes (the same examples at every point).
        batch_size: examples per pass of the BatchNorm re-estimation and of the batched evaluation (``batched``);
            a point evaluated on its own takes the evaluation's batch
            (:func:`transferscope.train.evaluation.eval_batch_size`: on a CPU, small batches are faster).
        batched: evaluate several points per pass with ``vmap`` (nets without batch statistics only).
        chunk_points: with ``batched``, points per pass (0: all at once; memory grows with it).
    """
    if points < 2:
        raise ValueError(f"interpolate: points must be >= 2, got {points}")
    _check_pair(model_a, model_b)
    lambdas = torch.linspace(0, 1, points, dtype=torch.float64, device="cpu")
    model = copy.deepcopy(model_a).eval()
    pa = {n: p.detach() for n, p in model_a.named_parameters()}
    pb = {n: p.detach() for n, p in model_b.named_parameters()}
    from ..train import evaluate

    multilabel = is_multilabel(split.y)

    def at_point(j: int) -> None:  # the loss and error of ``model`` as it stands, at point j
        loss[j], score, _ = evaluate(model, split)  # score: accuracy or mean AUC; the evaluation's own batch
        err[j] = 1 - score

    if not has_batch_statistics(model) and not batched:
        loss, err = np.zeros(points), np.zeros(points)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for j, lam in enumerate(lambdas.tolist()):
                for n, p in params.items():
                    p.copy_(torch.lerp(pa[n], pb[n], lam))
                at_point(j)
        policy = "exact"
    elif not has_batch_statistics(model):
        loss, err = _curve_vmap(model, pa, pb, lambdas, split, batch_size, chunk_points or points)
        policy = "exact"
    else:
        if bn_policy == "recompute" and train_split is None:
            raise ValueError("interpolate: bn_policy='recompute' needs train_split (data to re-estimate BatchNorm)")
        # the buffers of the state dict only: a non-persistent one (an input normalisation's ``in_scale``) is
        # architecture, not weights, and ``load_state_dict`` refuses it; the working copy keeps model 1's
        persistent = model.state_dict().keys()
        ba = {n: b for n, b in model_a.named_buffers() if n in persistent}
        bb = dict(model_b.named_buffers())
        loss, err = np.zeros(points), np.zeros(points)
        for j, lam in enumerate(lambdas.tolist()):
            state = {n: torch.lerp(pa[n], pb[n], lam) for n in pa}
            for n, buf in ba.items():
                if bn_policy == "interpolate" and buf.is_floating_point():
                    state[n] = torch.lerp(buf, bb[n], lam)
                else:
                    state[n] = buf.clone()
            model.load_state_dict(state)
            if bn_policy == "recompute":
                _recompute_bn(model, train_split, batch_size, bn_batches, seed)
            at_point(j)
        policy = bn_policy
    # the labels whose AUC is undefined on the split (no known positive or negative): a matter of the labels alone
    excluded = auc_detail(np.zeros(split.y.shape), split.y.cpu().numpy())["excluded"] if multilabel else []
    if not (np.all(np.isfinite(loss)) and np.all(np.isfinite(err))):
        barrier_l = barrier_e = math.nan
    else:
        barrier_l, barrier_e = barrier_of_curve(lambdas.numpy(), loss), barrier_of_curve(lambdas.numpy(), err)
    return BarrierResult(lambdas.tolist(), loss.tolist(), err.tolist(), barrier_e, barrier_l, policy, len(split), seed,
                         args={"seed": seed, "points": points, "bn_policy": bn_policy, "batch_size": batch_size,
                               "bn_batches": bn_batches, "batched": batched, "chunk_points": chunk_points},
                         error_metric=AUC if multilabel else ACC, auc_excluded=excluded)
