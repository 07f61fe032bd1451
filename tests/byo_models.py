"""A model transferscope does not ship, for the bring-your-own-model tests: a small CNN as an nn.Sequential with
module names of its own and a ``classifier`` head."""

from collections import OrderedDict

import torch.nn as nn


def odd_cnn(width: int = 8, in_channels: int = 1, classes: int = 10) -> nn.Module:
    return nn.Sequential(OrderedDict([
        ("features_in", nn.Conv2d(in_channels, width, 3, padding=1)),
        ("act0", nn.ReLU()),
        ("body_conv", nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)),
        ("act1", nn.ReLU()),
        ("squeeze", nn.AdaptiveAvgPool2d(1)),
        ("flat", nn.Flatten()),
        ("classifier", nn.Linear(2 * width, classes)),
    ]))


def not_a_module(**kwargs):
    return "a string"


def fixed_init_cnn(width: int = 8) -> nn.Module:
    """A factory that ignores the global seed (its own generator): every call gives the same weights."""
    import torch

    g = torch.Generator().manual_seed(42)
    net = odd_cnn(width=width)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(nn.init.ones_(__import__("torch").empty(1)))

    def forward(self, x):
        return x * self.gain


def fixed_init_stuck() -> nn.Module:
    """As :func:`fixed_init_cnn`, with a module that has parameters and no ``reset_parameters``."""
    net = fixed_init_cnn()
    net.add_module("scale", _Scale())  # after the classifier: outputs keep their shape
    return net


def raises(**kwargs):
    """A factory whose own code fails (e.g. it needs a GPU, or a file that is not there)."""
    raise RuntimeError("this factory needs a file that is not there")
