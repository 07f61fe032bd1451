"""Models: a registry (as timm's ``register_model``) and the small ResNet family."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ..config import ModelConfig
from .resnet import LayerError, ResNet

__all__ = ["ResNet", "LayerError", "register_model", "list_models", "create_model", "to_input", "ModelError"]


class ModelError(ValueError):
    """An unknown model name or a bad model setting."""


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


@register_model("resnet")
def _resnet(cfg: ModelConfig, in_channels: int, num_classes: int, generator: torch.Generator | None) -> nn.Module:
    return ResNet(in_channels, num_classes, cfg.blocks, cfg.width, cfg.norm, generator=generator)


def create_model(cfg: ModelConfig, in_channels: int, num_classes: int, seed: int) -> nn.Module:
    """Build the model named by ``cfg`` with a random initialisation drawn from ``seed``."""
    if cfg.name not in _REGISTRY:
        raise ModelError(f"model.name {cfg.name!r}: unknown; registered models are {', '.join(list_models())}")
    g = torch.Generator().manual_seed(seed)
    return _REGISTRY[cfg.name](cfg, in_channels, num_classes, g)


def to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 in [-1, 1], the input every model of transferscope expects."""
    return x.float().div_(127.5).sub_(1.0)
