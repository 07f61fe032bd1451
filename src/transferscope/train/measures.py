"""What a run records besides its losses and scores: the optimisation-speed figures of Neyshabur et al. (from the
per-step training accuracy, or a multi-label target's mean AUC per epoch on a fixed seeded training subset) and the
relative deviation of each module's weights from their start (Liu et al.).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

__all__ = ["optimisation_speed", "auc_speed", "SPEED_SUBSET_SALT", "speed_subset", "relative_deviation"]


def optimisation_speed(step_acc: Sequence[float], steps_per_epoch: int, k: int, fraction: float) -> dict[str, float]:
    """The two optimisation-speed figures of Neyshabur et al. from the per-step training accuracy (single-label
    targets; a multi-label target's, in mean AUC per epoch, are :func:`auc_speed`'s).

    (a) ``speed_mean_acc_k``: the mean training accuracy over the first ``k`` epochs.
    (b) ``speed_steps_to_frac``: the first step at which the running mean of the training accuracy over one
        epoch's steps reaches ``fraction`` of its final value (the mean over the last epoch); NaN if never.
    """
    acc = np.asarray(step_acc, dtype=np.float64)
    if len(acc) == 0:
        return {"speed_mean_acc_k": float("nan"), "speed_steps_to_frac": float("nan")}
    mean_k = float(acc[: k * steps_per_epoch].mean())
    w = max(1, min(steps_per_epoch, len(acc)))
    running = np.convolve(acc, np.ones(w) / w, mode="valid")  # running[i] = mean of acc[i : i + w]
    final = running[-1]
    hit = np.flatnonzero(running >= fraction * final)
    steps = float(hit[0] + w) if len(hit) else float("nan")
    return {"speed_mean_acc_k": mean_k, "speed_steps_to_frac": steps}


def auc_speed(epoch_auc: Sequence[float], steps_per_epoch: int, k: int, fraction: float) -> dict[str, float]:
    """The two optimisation-speed figures for a multi-label target, from its per-epoch training curve:
    ``epoch_auc[e - 1]`` is the mean AUC of the model after epoch ``e`` (1, 2, ...) on the fixed seeded subset of
    the training split (``TrainConfig.speed_examples``). Kept under the keys of :func:`optimisation_speed`.

    (a) ``speed_mean_acc_k``: the mean of ``epoch_auc`` over the first ``k`` epochs (epochs 1 to ``k``; fewer when
        the run is shorter), in mean AUC.
    (b) ``speed_steps_to_frac``: ``e x steps_per_epoch`` for the first epoch ``e`` whose AUC reaches ``fraction``
        times the final one (``epoch_auc[-1]``), so counted in optimiser steps, with the resolution of an epoch;
        NaN if never reached, or when the curve holds NaN where it is read (every label excluded from the subset).

    The fraction applies to the AUC itself, as to the accuracy: with chance at 0.5, a final AUC of 0.9 and the
    default fraction 0.9 ask for 0.81.
    """
    auc = np.asarray(epoch_auc, dtype=np.float64)
    if len(auc) == 0:
        return {"speed_mean_acc_k": float("nan"), "speed_steps_to_frac": float("nan")}
    mean_k = float(auc[: max(1, k)].mean())
    final = auc[-1]
    hit = np.flatnonzero(auc >= fraction * final)  # NaN compares False
    steps = float((hit[0] + 1) * steps_per_epoch) if len(hit) and np.isfinite(final) else float("nan")
    return {"speed_mean_acc_k": mean_k, "speed_steps_to_frac": steps}


SPEED_SUBSET_SALT = 0x5EED5
"""Mixed into the run's seed for the speed subset's generator, so that the subset is no prefix of the data order."""


def speed_subset(n: int, size: int, seed: int) -> torch.Tensor:
    """The indices (sorted) of the fixed training subset of a multi-label run: ``size`` of ``n`` examples drawn by
    a generator of its own seeded with the run's seed (all of them when ``size >= n``); the data order's
    generator is not touched."""
    if size >= n or size <= 0:
        return torch.arange(n, device="cpu")
    # salted: seeded with ``seed`` alone, it would be the first examples of epoch 1's order (the same randperm)
    g = torch.Generator(device="cpu").manual_seed(seed ^ SPEED_SUBSET_SALT)
    return torch.randperm(n, generator=g, device="cpu")[:size].sort().values


def _module_groups(model: nn.Module) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    module_of = getattr(model, "module_of", None)
    for name, _ in model.named_parameters():
        key = module_of(name) if module_of else name.rsplit(".", 1)[0]
        groups.setdefault(key, []).append(name)
    return groups


def relative_deviation(model: nn.Module, initial: dict[str, torch.Tensor]) -> dict[str, float]:
    """||W - W0||_F / ||W0||_F per module, over the parameters present in ``initial`` with equal shapes.

    A module whose initial weights are all zero reports NaN (the ratio has no meaning there). Computed on the
    model's device, read back in one transfer.
    """
    params = dict(model.named_parameters())
    groups = {module: [n for n in names if n in initial and initial[n].shape == params[n].shape]
              for module, names in _module_groups(model).items()}
    names = [n for ns in groups.values() for n in ns]
    if not names:
        return {}
    with torch.no_grad():
        sq = torch.stack([t for n in names for t in ((params[n] - initial[n]).pow(2).sum(), initial[n].pow(2).sum())])
    it = iter(sq.tolist())
    sums = {n: (next(it), next(it)) for n in names}
    out = {}
    for module, ns in groups.items():
        num = den = 0.0
        for n in ns:
            num += sums[n][0]
            den += sums[n][1]
        if den > 0:
            out[module] = math.sqrt(num / den)
        elif num > 0:
            out[module] = float("nan")
    return out
