import math

import numpy as np
import pytest
import torch

from transferscope.analyses.distance import DistanceResult, parameter_distance
from transferscope.analyses.mistakes import MistakesResult, mistakes
from transferscope.config import ModelConfig
from transferscope.models import create_model


def test_mistakes_by_hand():
    labels = np.array([0, 1, 2, 0, 1, 2])
    a = np.array([0, 1, 0, 1, 1, 0])  # wrong at 2, 3, 5
    b = np.array([0, 2, 0, 0, 1, 1])  # wrong at 1, 2, 5
    r = mistakes(a, b, labels)
    assert (r.common, r.uncommon, r.n) == (2, 2, 6)
    assert r.only_a_wrong == [3] and r.only_b_wrong == [1]
    assert r.common_fraction == pytest.approx(2 / 6)
    assert MistakesResult.from_dict(r.to_dict()) == r


def test_mistakes_invariants_on_random_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 1000)
    a, b = rng.integers(0, 5, 1000), rng.integers(0, 5, 1000)
    r = mistakes(a, b, labels)
    wrong_a, wrong_b = (a != labels).sum(), (b != labels).sum()
    assert r.common + len(r.only_a_wrong) == wrong_a and r.common + len(r.only_b_wrong) == wrong_b
    assert r.uncommon == len(r.only_a_wrong) + len(r.only_b_wrong)
    assert mistakes(a, a, labels).uncommon == 0
    with pytest.raises(ValueError, match="lengths"):
        mistakes(a[:-1], b, labels)


def test_distance_equals_flattened_norm_and_splits_by_module():
    a = create_model(ModelConfig(blocks=[1, 1], width=8), 1, 3, seed=0)
    b = create_model(ModelConfig(blocks=[1, 1], width=8), 1, 3, seed=1)
    r = parameter_distance(a, b)
    flat = torch.cat([(p.double() - q.double()).flatten() for p, q in zip(a.parameters(), b.parameters(), strict=True)])
    assert r.total == pytest.approx(flat.norm().item(), rel=1e-9)
    assert math.fsum(v**2 for v in r.per_module.values()) == pytest.approx(r.total**2, rel=1e-9)
    assert set(r.per_module) == set(a.module_names())
    assert parameter_distance(a, a).total == 0
    assert DistanceResult.from_dict(r.to_dict()) == r


def test_distance_excludes_buffers_and_mismatched_heads():
    a = create_model(ModelConfig(blocks=[1], width=8, norm="batchnorm"), 1, 3, seed=0)
    b = create_model(ModelConfig(blocks=[1], width=8, norm="batchnorm"), 1, 5, seed=0)
    with torch.no_grad():
        for buf in b.buffers():
            buf.add_(1)
    r = parameter_distance(a, b)
    assert r.total == 0  # same init; buffers differ but do not count
    assert set(r.excluded) == {"head.weight", "head.bias"}
    assert not any("running" in n for n in r.counted)
