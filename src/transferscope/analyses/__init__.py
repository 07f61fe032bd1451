"""Analyses of what is transferred: pure functions over models and data, each returning a frozen result.

A registry (as timm's ``register_model``) maps each analysis of two models to one uniform call,
``fn(model_a, model_b, domain, seed=...) -> result``, so that the contract test (round trip through JSON,
same seed same result, input models unchanged) covers every analysis the day it is added. For
criticality, ``model_b`` is theta^0 (P for a P-T model, RI for an RI-T model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch.nn as nn

from ..data import DomainData
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


def register_analysis(name: str, result_type: type, summary: str):
    def wrap(fn):
        _REGISTRY[name] = AnalysisInfo(name, fn, result_type, summary)
        return fn

    return wrap


def list_analyses() -> list[str]:
    return sorted(_REGISTRY)


def get_analysis(name: str) -> AnalysisInfo:
    if name not in _REGISTRY:
        raise KeyError(f"analysis {name!r}: unknown; registered analyses are {', '.join(list_analyses())}")
    return _REGISTRY[name]


@register_analysis("mistakes", MistakesResult, "common and uncommon mistakes on the test split")
def _mistakes(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0) -> MistakesResult:
    return replace(model_mistakes(a, b, domain.test), seed=seed)


@register_analysis("cka", CKAResult, "linear CKA per layer, full-data and minibatch, on the test images")
def _cka(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, batch_size: int = 100) -> CKAResult:
    return replace(feature_similarity(a, b, domain.test.x, layers=a.layer_names(), batch_size=batch_size), seed=seed)


@register_analysis("distance", DistanceResult, "l2 distance in parameter space, total and per module")
def _distance(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0) -> DistanceResult:
    return replace(parameter_distance(a, b), seed=seed)


@register_analysis("barrier", BarrierResult, "test loss and error along the line between two models, and the barrier")
def _barrier(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, points: int = 11) -> BarrierResult:
    return replace(interpolate(a, b, domain.test, points=points, train_split=domain.train), seed=seed)


@register_analysis("criticality", CriticalityResult, "module criticality of model a with theta^0 = model b")
def _criticality(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, **options) -> CriticalityResult:
    return module_criticality(a, {k: v.detach().clone() for k, v in b.state_dict().items()}, domain.train, seed=seed,
                              **options)


# Liu et al.: analyses of one model (model_b is not used; the uniform call keeps the registry and its contract one).


@register_analysis("flatness", FlatnessResult, "top Hessian eigenvalue and loss under relative perturbations (model a)")
def _flatness(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, **options) -> FlatnessResult:
    return flatness(a, domain.train, seed=seed, **options)


@register_analysis("stability", StabilityResult, "loss and gradient change along theta - eta k g (model a)")
def _stability(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, lr: float = 0.1,
               **options) -> StabilityResult:
    return replace(gradient_stability(a, domain.train, lr=lr, **options), seed=seed)


@register_analysis("principal", PrincipalGradientResult, "gradient energy on the top singular directions (model a)")
def _principal(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, **options) -> PrincipalGradientResult:
    return replace(principal_gradient(a, domain.train, **options), seed=seed)


@register_analysis("scores", TransferabilityResult,
                   "LEEP, LogME, H-score and source-target MMD of pre-trained model a (source images: option source_x)")
def _scores(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, source_x=None,
            layer: str = "pool") -> TransferabilityResult:
    src = domain.val.x if source_x is None else source_x
    return transferability_scores(a, domain.train.x, domain.train.y, src, layer=layer, n_classes=domain.num_classes,
                                  seed=seed)
