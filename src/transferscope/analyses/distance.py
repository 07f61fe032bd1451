"""Distance in parameter space (Neyshabur et al., Section 3.3): l2 in total and per module."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..vocab.results import DistanceResult

__all__ = ["DistanceResult", "parameter_distance"]


def parameter_distance(model_a: nn.Module, model_b: nn.Module | dict[str, torch.Tensor]) -> DistanceResult:
    """l2 distance between the parameters of two models of one architecture (or a model and a state dict).

    Only ``named_parameters`` of ``model_a`` count: buffers (BatchNorm running statistics) do not. A parameter
    missing from b or of another shape (a head for another number of classes) is excluded and reported.
    Modules are grouped by ``model_a.module_of`` where the model has it, else by the parameter's owner.
    """
    b = model_b.state_dict() if isinstance(model_b, nn.Module) else model_b
    module_of = getattr(model_a, "module_of", lambda n: n.rsplit(".", 1)[0])
    sq: dict[str, float] = {}
    counted, excluded = [], {}
    with torch.no_grad():
        for name, p in model_a.named_parameters():
            if name not in b:
                excluded[name] = "missing from b"
                continue
            if b[name].shape != p.shape:
                excluded[name] = f"shape {tuple(p.shape)} vs {tuple(b[name].shape)}"
                continue
            # on a's device (b's tensors moved there), in float64
            d = (p.detach().double() - b[name].detach().to(p.device).double()).pow(2).sum().item()
            key = module_of(name)
            sq[key] = sq.get(key, 0.0) + d
            counted.append(name)
    return DistanceResult(math.sqrt(sum(sq.values())), {k: math.sqrt(v) for k, v in sq.items()}, counted, excluded)
