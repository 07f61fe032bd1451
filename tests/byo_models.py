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
