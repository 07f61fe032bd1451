"""A small ResNet family for 28-64 px images, with stable layer names.

Layers, in order: ``stem``, ``stage{i}.block{j}``, ``pool`` (the penultimate features) and ``head``.
Normalisation is ``none`` (Fixup, Zhang et al. 2019: no batch statistics, as the Fixup-ResNet-50 of
Neyshabur et al.), ``batchnorm`` or ``groupnorm``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ResNet", "LayerError"]


class LayerError(KeyError):
    """An unknown layer name. The message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is meant to be read
        return str(self.args[0])


def check_layers(layers: Iterable[str], valid: list[str]) -> list[str]:
    """``layers`` as a list, or a :class:`LayerError` naming the first unknown one and every valid one."""
    wanted = list(layers)
    unknown = [n for n in wanted if n not in valid]
    if unknown:
        raise LayerError(f"unknown layer {unknown[0]!r}; valid layers are {', '.join(valid)}")
    return wanted


class _Bias(nn.Module):
    """A scalar bias (Fixup)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "groupnorm":
        return nn.GroupNorm(min(8, channels), channels)
    return _Bias()


class Block(nn.Module):
    """A basic residual block: two 3x3 convolutions and a shortcut (1x1 convolution when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        self.fixup = norm == "none"
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = _norm(norm, cout)
        if self.fixup:
            self.bias_in = _Bias()
            self.scale = nn.Parameter(torch.ones(1))
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp = self.bias_in(x) if self.fixup else x
        out = F.relu(self.norm1(self.conv1(inp)))
        out = self.conv2(out)
        out = self.norm2(out * self.scale) if self.fixup else self.norm2(out)
        short = x if self.shortcut is None else self.shortcut(inp)
        return F.relu(out + short)


class ResNet(nn.Module):
    """ResNet with ``len(blocks)`` stages of ``blocks[i]`` basic blocks; widths ``width * 2**i``.

    Args:
        in_channels: 1 (grey) or 3 (RGB).
        num_classes: outputs of the head.
        blocks: residual blocks per stage.
        width: channels of the first stage.
        norm: ``none`` (Fixup), ``batchnorm`` or ``groupnorm``.
        generator: the source of randomness of the initialisation.

    Input: float images (N, C, H, W), scaled to [-1, 1] (see :func:`transferscope.models.to_input`).
    """

    def __init__(self, in_channels: int, num_classes: int, blocks: Iterable[int] = (1, 1, 1), width: int = 16,
                 norm: str = "none", generator: torch.Generator | None = None) -> None:
        super().__init__()
        blocks = list(blocks)
        if norm not in ("none", "batchnorm", "groupnorm"):
            raise ValueError(f"norm {norm!r}: expected 'none', 'batchnorm' or 'groupnorm'")
        if not blocks or any(b < 1 for b in blocks) or width < 1:
            raise ValueError(f"blocks {blocks} and width {width}: expected positive block counts and width")
        self.norm_kind = norm
        self.stem_conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.stem_norm = _norm(norm, width)
        self.stages = nn.ModuleDict()
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            stage = nn.ModuleDict()
            for j in range(n):
                stage[f"block{j}"] = Block(cin, cout, 2 if (i > 0 and j == 0) else 1, norm)
                cin = cout
            self.stages[f"stage{i + 1}"] = stage
        self.num_features = cin
        self.head = nn.Linear(cin, num_classes)
        self._num_blocks = sum(blocks)
        self.reset_parameters(generator)

    # ------------------------------------------------------------------ init
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        fixup = self.norm_kind == "none"
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if fixup:
            # Fixup: scale the first conv of each branch by L^(-1/(2m-2)) (m = 2 layers per branch) and
            # start the last conv of each branch at zero, so every block starts as the identity.
            for block in self.blocks():
                block.conv1.weight.data.mul_(self._num_blocks ** -0.5)
                nn.init.zeros_(block.conv2.weight)
        self._init_head(self.head, generator)

    def _init_head(self, head: nn.Linear, generator: torch.Generator | None) -> None:
        # Unlike Fixup's deep nets, the head is not zero-initialised: in a shallow net trained from scratch
        # on a low-data target a zero head kept every gradient into the body near zero (loss stuck at log K).
        bound = 1 / math.sqrt(head.in_features)
        nn.init.uniform_(head.weight, -bound, bound, generator=generator)
        nn.init.zeros_(head.bias)

    def reset_head(self, num_classes: int, generator: torch.Generator | None = None) -> None:
        """Replace the classification head by a new one with ``num_classes`` outputs."""
        self.head = nn.Linear(self.num_features, num_classes)
        self._init_head(self.head, generator)

    # ------------------------------------------------------------------ layers
    def blocks(self) -> list[Block]:
        return [b for stage in self.stages.values() for b in stage.values()]

    def layer_names(self) -> list[str]:
        """Names of the layers ``features`` can return, input to output."""
        names = ["stem"]
        for s, stage in self.stages.items():
            names += [f"{s}.{b}" for b in stage]
        return names + ["pool", "head"]

    def module_names(self) -> list[str]:
        """The modules whose parameters analyses treat as units (every layer but the parameter-free pool)."""
        return [n for n in self.layer_names() if n != "pool"]

    def module_of(self, param_name: str) -> str:
        """Which module (of :meth:`module_names`) a parameter or buffer name belongs to."""
        if param_name.startswith("stem_"):
            return "stem"
        if param_name.startswith("stages."):
            _, s, b = param_name.split(".")[:3]
            return f"{s}.{b}"
        if param_name.startswith("head."):
            return "head"
        raise LayerError(f"parameter {param_name!r} belongs to no module")

    def features(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Activations of the named layers (N, C, H, W) or (N, D), computed in one forward pass.

        Raises:
            LayerError: a name is not a layer; the message lists the valid names.
        """
        wanted = check_layers(layers, self.layer_names())
        out: dict[str, torch.Tensor] = {}
        remaining = set(wanted)
        for name, h in self._walk(x):
            if name in remaining:
                out[name] = h
                remaining.discard(name)
                if not remaining:
                    break
        return {n: out[n] for n in wanted}

    def _walk(self, x: torch.Tensor):
        h = F.relu(self.stem_norm(self.stem_conv(x)))
        yield "stem", h
        for s, stage in self.stages.items():
            for b, block in stage.items():
                h = block(h)
                yield f"{s}.{b}", h
        h = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        yield "pool", h
        yield "head", self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for _, h in self._walk(x):  # noqa: B007
            pass
        return h
