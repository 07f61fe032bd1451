"""The analyses as one uniform call each: ``kernel(model_a, model_b, domain, *, seed, device, **options) -> result``.

These are what the study's analysis registry (:mod:`transferscope.study.registry`) holds as each analysis'
kernel, what its product adapters call on the models of a study, and what the contract tests drive (round trip
through JSON, same seed same result, input models unchanged, every device). For criticality, ``model_b`` is
theta^0 (P for a P-T model, RI for an RI-T model); the analyses of one model (Liu et al.: flatness, stability,
principal, scores) take ``model_b`` and do not read it, so that one call and one contract cover all of them.

``device`` (``cpu``, ``cuda``, ...; default: where the models are): both models and every input go there; a model
that is elsewhere is copied, never moved (the model given is not changed).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn as nn

from ..data import DomainData
from ..devices import model_device, resolve_device
from ..metrics import THRESHOLD
from ..vocab.results import (
    BarrierResult,
    CKAResult,
    CriticalityResult,
    DistanceResult,
    FlatnessResult,
    MistakesResult,
    PrincipalGradientResult,
    StabilityResult,
    TransferabilityResult,
)
from .barrier import interpolate
from .cka import feature_similarity
from .criticality import module_criticality
from .distance import parameter_distance
from .flatness import flatness as flatness_of
from .gradients import gradient_stability, principal_gradient
from .mistakes import model_mistakes
from .transferability import transferability_scores

__all__ = ["on_device", "mistakes", "cka", "distance", "barrier", "criticality", "flatness", "stability", "principal",
           "scores"]

Device = str | torch.device | None


def on_device(model: nn.Module, device: Device) -> nn.Module:
    """``model`` on ``device``: itself when it is there already (or no device is given), else a copy moved there
    (the model given is not changed)."""
    if device is None:
        return model
    dev = resolve_device(device)
    return model if model_device(model) == dev else copy.deepcopy(model).to(dev)


def mistakes(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, threshold: float = THRESHOLD,
             device: Device = None) -> MistakesResult:
    """Common and uncommon mistakes on the test split (multi-label: per (example, label) decision at the
    threshold)."""
    return replace(model_mistakes(on_device(a, device), on_device(b, device), domain.test, threshold=threshold),
                   seed=seed)


def cka(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, batch_size: int = 100,
        examples: int = 0, device: Device = None) -> CKAResult:
    """Linear CKA per layer, full-data and minibatch, on the test images (``examples`` > 0: that many of them,
    balanced over the classes, drawn with ``seed``)."""
    a, b = on_device(a, device), on_device(b, device)
    return replace(feature_similarity(a, b, test_sample(domain, examples, seed).x, layers=a.layer_names(),
                                      batch_size=batch_size), seed=seed)


def test_sample(domain: DomainData, examples: int, seed: int):
    """The test split, or ``examples`` of it balanced over the classes (drawn with ``seed``) when ``examples`` is
    positive and under its size: what CKA and the barrier read."""
    return domain.test.sample(examples, seed) if examples > 0 else domain.test


def distance(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, device: Device = None
             ) -> DistanceResult:
    """The l2 distance in parameter space, total and per module."""
    return replace(parameter_distance(on_device(a, device), on_device(b, device)), seed=seed)


def barrier(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, points: int = 11,
            examples: int = 0, device: Device = None) -> BarrierResult:
    """Test loss and error along the line from ``a`` (lambda 0) to ``b`` (lambda 1), and the barrier
    (``examples`` > 0: on that many test images, balanced over the classes, drawn with ``seed``)."""
    return interpolate(on_device(a, device), on_device(b, device), test_sample(domain, examples, seed), points=points,
                       train_split=domain.train, seed=seed)


def criticality(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, device: Device = None,
                **options) -> CriticalityResult:
    """Module criticality of model ``a`` with theta^0 = model ``b``'s weights, on the training split."""
    theta0 = {k: v.detach().clone() for k, v in on_device(b, device).state_dict().items()}
    return module_criticality(on_device(a, device), theta0, domain.train, seed=seed, **options)


def flatness(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, device: Device = None,
             **options) -> FlatnessResult:
    """Top Hessian eigenvalue and loss under relative perturbations of model ``a``."""
    return flatness_of(on_device(a, device), domain.train, seed=seed, **options)


def stability(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, lr: float | None = None,
              device: Device = None, **options) -> StabilityResult:
    """Loss and gradient change of model ``a`` along theta - eta k g; ``lr`` (eta, the learning rate of the run
    that trained ``a``) is required."""
    if lr is None:
        raise TypeError("stability: lr is required (eta of the step theta - eta k g: the learning rate of the run "
                        "that trained model a)")
    return gradient_stability(on_device(a, device), domain.train, lr=lr, seed=seed, **options)


def principal(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, device: Device = None,
              **options) -> PrincipalGradientResult:
    """The gradient energy of model ``a`` on the top singular directions."""
    return principal_gradient(on_device(a, device), domain.train, seed=seed, **options)


def scores(a: nn.Module, b: nn.Module, domain: DomainData, *, seed: int = 0, source_x: torch.Tensor | None = None,
           layer: str = "pool", mmd_examples: int = 1000, source_multilabel: bool = False, device: Device = None
           ) -> TransferabilityResult:
    """LEEP, LogME, H-score of pre-trained model ``a`` on the target ``domain``, and the source-target MMD (needs
    the source images, ``source_x``; without them NaN, with a note). ``source_multilabel``: ``a`` has a sigmoid
    per source label, so no distribution over one label (no LEEP)."""
    # domain is the TARGET: none of its splits is a source sample (its val split was used here by mistake)
    return transferability_scores(on_device(a, device), domain.train.x, domain.train.y, source_x, layer=layer,
                                  n_classes=domain.num_classes, mmd_examples=mmd_examples, seed=seed,
                                  source_multilabel=source_multilabel)
