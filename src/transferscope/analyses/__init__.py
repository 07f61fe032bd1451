"""Analyses of what is transferred: pure functions over models and data, each returning a frozen result.

A registry (as timm's ``register_model``) maps each analysis of two models to one uniform call,
``fn(model_a, model_b, domain, seed=...) -> result``, so that the contract test (round trip through JSON,
same seed same result, input models unchanged) covers every analysis the day it is added. For
criticality, ``model_b`` is theta^0 (P for a P-T model, RI for an RI-T model).

What each reads of ``domain`` (SCIENCE.md): mistakes, CKA and the barrier the test split (the barrier's
BatchNorm statistics, if any, the training split); criticality, flatness, gradient stability and the principal
gradient component the training split (the training loss); the transferability scores the target's training
images and labels. Multi-label targets (labels (N, L)) are handled by each analysis: the loss is the per-label
BCE, the error 1 - mean AUC, mistakes are per (example, label) decision at ``threshold`` (option of
``mistakes``), LEEP and H-score are not applicable and LogME is taken per label. ``seed`` draws every sample an
analysis takes. Options without a defensible default are
required: ``lr`` of ``stability`` (eta, the run's learning rate), and ``source_x`` of ``scores`` for its MMD
(the images of the SOURCE domain; without them the MMD is NaN with a note, as ``domain`` is the target).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn

from ..data import DomainData
from ..devices import model_device, resolve_device
from ..metrics import THRESHOLD
from .barrier import BarrierResult, interpolate
from .cka import CKAResult, feature_similarity
from .criticality import CriticalityResult, module_criticality
from .distance import DistanceResult, parameter_distance
from .flatness import FlatnessResult, flatness
from .gradients import PrincipalGradientResult, StabilityResult, gradient_stability, principal_gradient
from .mistakes import MistakesResult, model_mistakes
from .transferability import TransferabilityResult, transferability_scores

__all__ = ["AnalysisInfo", "register_analysis", "list_analyses", "get_analysis"]


@dataclass(frozen=True)
class AnalysisInfo:
    name: str
    run: Callable[..., Any]
    """(model_a, model_b, domain, *, seed, **options) -> result."""
    result_type: type
    summary: str


_REGISTRY: dict[str, AnalysisInfo] = {}


def _on(model: nn.Module, device: str | torch.device | None) -> nn.Module:
    """``model`` on ``device``: itself when it is there already (or no device is given), else a copy moved there
    (the model given is not changed)."""
    if device is None:
        return model
    dev = resolve_device(device)
    return model if model_device(model) == dev else copy.deepcopy(model).to(dev)


def register_analysis(name: str, result_type: type, summary: str):
    """Register ``fn(model_a, model_b, domain, *, seed, **options)``; the registered call also takes ``device``
    (``cpu``, ``cuda``, ...; default: where the models are), on which both models and every input go."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(a: nn.Module, b: nn.Module, domain: DomainData, *, device: str | torch.device | None = None, **kw):
            return fn(_on(a, device), _on(b, device), domain, **kw)

        _REGISTRY[name] = AnalysisInfo(name, run, result_type, summary)
        return fn

    return wrap


def list_analyses() -> list[str]:
    return sorted(_REGISTRY)


def get_analysis(name: str) -> AnalysisInfo:
    if name not in _REGISTRY:
        raise KeyError(f"analysis {name!r}: unknown; registered analyses are {', '.join(list_analyses())}")
    return _REGISTRY[name]


@register_analysis("mistakes", MistakesResult, "common and uncommon mistakes on the test split (multi-label: per "
                   "(example, label) decision at the threshold)")
def _mistakes(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0,
              threshold: float = THRESHOLD) -> MistakesResult:
    return replace(model_mistakes(a, b, domain.test, threshold=threshold), seed=seed)


@register_analysis("cka", CKAResult, "linear CKA per layer, full-data and minibatch, on the test images")
def _cka(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, batch_size: int = 100) -> CKAResult:
    return replace(feature_similarity(a, b, domain.test.x, layers=a.layer_names(), batch_size=batch_size), seed=seed)


@register_analysis("distance", DistanceResult, "l2 distance in parameter space, total and per module")
def _distance(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0) -> DistanceResult:
    return replace(parameter_distance(a, b), seed=seed)


@register_analysis("barrier", BarrierResult, "test loss and error along the line between two models, and the barrier")
def _barrier(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, points: int = 11) -> BarrierResult:
    return interpolate(a, b, domain.test, points=points, train_split=domain.train, seed=seed)


@register_analysis("criticality", CriticalityResult, "module criticality of model a with theta^0 = model b")
def _criticality(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, **options) -> CriticalityResult:
    return module_criticality(a, {k: v.detach().clone() for k, v in b.state_dict().items()}, domain.train, seed=seed,
                              **options)


# Liu et al.: analyses of one model (model_b is not used; the uniform call keeps the registry and its contract one).


@register_analysis("flatness", FlatnessResult, "top Hessian eigenvalue and loss under relative perturbations (model a)")
def _flatness(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, **options) -> FlatnessResult:
    return flatness(a, domain.train, seed=seed, **options)


@register_analysis("stability", StabilityResult, "loss and gradient change along theta - eta k g (model a)")
def _stability(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, lr: float | None = None,
               **options) -> StabilityResult:
    if lr is None:
        raise TypeError("stability: lr is required (eta of the step theta - eta k g: the learning rate of the run "
                        "that trained model a)")
    return gradient_stability(a, domain.train, lr=lr, seed=seed, **options)


@register_analysis("principal", PrincipalGradientResult, "gradient energy on the top singular directions (model a)")
def _principal(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, **options) -> PrincipalGradientResult:
    return principal_gradient(a, domain.train, seed=seed, **options)


@register_analysis("scores", TransferabilityResult,
                   "LEEP, LogME, H-score of pre-trained model a on the target domain, and the source-target MMD "
                   "(needs the source images: option source_x; without them NaN, with a note)")
def _scores(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, source_x=None,
            layer: str = "pool", mmd_examples: int = 1000) -> TransferabilityResult:
    # domain is the TARGET: none of its splits is a source sample (its val split was used here by mistake)
    return transferability_scores(a, domain.train.x, domain.train.y, source_x, layer=layer,
                                  n_classes=domain.num_classes, mmd_examples=mmd_examples, seed=seed)
