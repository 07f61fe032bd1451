"""A domain of some of its classes (``classes`` of a [source] or [[targets]] table): the A/B class split of one
domain into a source and a near target of classes P never saw."""

from __future__ import annotations

import numpy as np
import pytest

from transferscope.config import DataConfig, DomainConfig
from transferscope.data import load_domain
from transferscope.data.registry import DomainError

from .conftest import make_imagefolder


def _all_images(d):
    return {s: getattr(d, s) for s in ("train", "val", "test")}


def test_only_the_classes_named_in_their_order(tmp_path):
    root = make_imagefolder(tmp_path / "d", n_classes=4, per_class=30, seed=3)
    data = DataConfig(image_size=16, cache_dir=str(tmp_path / "cache"))
    full = load_domain(DomainConfig("imagefolder", path=str(root), n_val_per_class=4, n_test_per_class=6), data)
    part = load_domain(DomainConfig("imagefolder", path=str(root), classes=["class3", "class1"], n_val_per_class=4,
                                    n_test_per_class=6), data)
    assert part.classes == ("class3", "class1") and part.num_classes == 2
    # every image of the part is an image of the full domain of the same class name (the labels are remapped)
    pool = {}
    for s in _all_images(full).values():
        for x, y in zip(s.x, s.y, strict=True):
            pool.setdefault(full.classes[int(y)], set()).add(x.numpy().tobytes())
    n = 0
    for s in _all_images(part).values():
        assert set(np.unique(s.y.numpy()).tolist()) == {0, 1}
        for x, y in zip(s.x, s.y, strict=True):
            assert x.numpy().tobytes() in pool[part.classes[int(y)]]
            n += 1
    assert n == 2 * 30  # every image of the two classes, none of the others
    # the other half: disjoint images
    rest = load_domain(DomainConfig("imagefolder", path=str(root), classes=["class0", "class2"], n_val_per_class=4,
                                    n_test_per_class=6), data)
    a = {x.numpy().tobytes() for s in _all_images(part).values() for x in s.x}
    b = {x.numpy().tobytes() for s in _all_images(rest).values() for x in s.x}
    assert a and b and not a & b


def test_a_class_the_domain_does_not_have_is_named(tmp_path):
    root = make_imagefolder(tmp_path / "d", n_classes=3, per_class=10)
    cfg = DomainConfig("imagefolder", path=str(root), classes=["class1", "cat"], n_val_per_class=2)
    with pytest.raises(DomainError, match=r"classes \['cat'\] are not classes of imagefolder; its classes are "
                                          r"'class0', 'class1', 'class2'"):
        load_domain(cfg, DataConfig(image_size=16, cache_dir=str(tmp_path / "cache")))


def test_run_ids_of_a_domain_of_every_class_do_not_change():
    """``classes`` at its default (every class) is left out of the run ids: existing results keep theirs."""
    from transferscope.config import ModelConfig, TrainConfig
    from transferscope.study.runs import RunSpec

    a = RunSpec("RI-T", DomainConfig("mnist-digits"), 28, 0, TrainConfig(), ModelConfig(), DataConfig(image_size=28))
    b = RunSpec("RI-T", DomainConfig("mnist-digits", classes=["0", "1"]), 28, 0, TrainConfig(), ModelConfig(),
                DataConfig(image_size=28))
    assert "classes" not in str(a.hashed()) and a.run_id != b.run_id


def test_a_domain_of_some_classes_is_a_cache_key(tmp_path):
    """The study keeps each decoded domain by its config (study.artefacts.domain_data): it must hash, and equal
    configs hash alike."""
    from transferscope.study.artefacts import domain_data

    root = make_imagefolder(tmp_path / "d", n_classes=3, per_class=10)
    a = DomainConfig("imagefolder", path=str(root), classes=["class2", "class0"], n_val_per_class=2)
    b = DomainConfig("imagefolder", path=str(root), classes=["class2", "class0"], n_val_per_class=2)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert hash(a) != hash(DomainConfig("imagefolder", path=str(root), classes=["class0", "class2"],
                                        n_val_per_class=2))
    d = domain_data(a, DataConfig(image_size=16, cache_dir=str(tmp_path / "cache")))
    assert d.classes == ("class2", "class0")
