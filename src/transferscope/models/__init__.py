"""Models: a registry (as timm's ``register_model``) and the small ResNet family."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ..config import ModelConfig
from .external import Hooked, ModelError, build_external, check_shapes, load_weights
from .resnet import LayerError, ResNet

__all__ = ["ResNet", "LayerError", "register_model", "list_models", "create_model", "to_input", "ModelError", "Hooked",
           "load_weights", "check_shapes"]


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
    """Build the model named by ``cfg`` with a random initialisation drawn from ``seed`` and ``num_classes``
    outputs: a built-in model, or any ``nn.Module`` from a factory, a plugin or an adapter, given the protocol of
    transferscope's models by :class:`~transferscope.models.external.Hooked`. A built-in model with a
    non-default input normalisation (``mean``/``std``) is wrapped the same way."""
    if cfg.name not in _REGISTRY:
        return build_external(cfg, in_channels, num_classes, seed)
    g = torch.Generator().manual_seed(seed)
    model = _REGISTRY[cfg.name](cfg, in_channels, num_classes, g)
    if cfg.mean or cfg.std or cfg.layers or cfg.head not in ("", "head"):
        model = _BuiltinHooked(model, in_channels, cfg)
    return model


class _BuiltinHooked(Hooked):
    """A built-in model with a configured input normalisation or layers: its own layers unless ``layers`` names
    modules."""

    def __init__(self, net: nn.Module, in_channels: int, cfg: ModelConfig) -> None:
        super().__init__(net, cfg.head or "head", list(cfg.layers) or [n for n, _ in net.named_children()
                                                                       if n != (cfg.head or "head")],
                         in_channels, cfg.mean, cfg.std)
        self._native = not cfg.layers and hasattr(net, "features")

    def layer_names(self) -> list[str]:
        return self.net.layer_names() if self._native else super().layer_names()

    def module_of(self, param_name: str) -> str:
        return self.net.module_of(param_name.removeprefix("net.")) if self._native else super().module_of(param_name)

    def features(self, x: torch.Tensor, layers):
        return self.net.features(self._normalise(x), layers) if self._native else super().features(x, layers)


def to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 in [-1, 1], the input every model of transferscope expects."""
    return x.float().div_(127.5).sub_(1.0)
