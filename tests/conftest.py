"""Shared fixtures: tiny real image folders, so tests exercise the user-data path and run in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_imagefolder(root: Path, n_classes: int = 3, per_class: int = 24, size: int = 16, seed: int = 0,
                     mode: str = "L") -> Path:
    """Write PNGs of a learnable texture (stripes whose orientation and period depend on the class) plus noise.

    Textures, not positions: the models pool globally, so a class cue must survive pooling."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    patterns = [lambda p: yy + p, lambda p: xx + p, lambda p: xx + yy + p, lambda p: xx - yy + p,
                lambda p: (yy // 2) * 2 + p, lambda p: (xx // 3) + p]
    for k in range(n_classes):
        d = root / f"class{k}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            phase = rng.integers(0, 4)
            stripes = (patterns[k % len(patterns)](phase) // 2) % 2
            a = (stripes * 160 + rng.integers(0, 80, (size, size))).astype(np.uint8)
            img = Image.fromarray(a)
            if mode != "L":
                img = img.convert(mode)
            img.save(d / f"img{i:03d}.png")
    return root


# the test suite's own model factories (and two that do not exist, for the errors), trusted in every test as a
# user's own config would trust them; tests/test_faults_trust.py takes the trust away to show what is refused
TEST_FACTORIES = ("tests.byo_models:odd_cnn", "tests.byo_models:not_a_module", "tests.byo_models:nope",
                  "tests.byo_models:fixed_init_stuck", "tests.byo_models:fixed_init_cnn", "tests.byo_models:raises",
                  "no_such_package_xyz:f")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    from transferscope.config import TRUST_ENV, trusted_factories

    monkeypatch.setenv("TRANSFERSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(TRUST_ENV, ",".join(sorted(trusted_factories() | set(TEST_FACTORIES))))


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    src = make_imagefolder(tmp_path / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(tmp_path / "tgt", n_classes=3, per_class=24, seed=2)
    return src, tgt


def tiny_study_toml(src: Path, tgt: Path, name: str = "tiny", extra: str = "") -> str:
    return f"""
name = "{name}"
seeds = [0, 1]
block_sizes = [16, 4]

[data]
image_size = 16

[model]
blocks = [1, 1]
width = 4

[source]
name = "imagefolder"
path = "{src}"
n_val_per_class = 4
n_test_per_class = 8

[[targets]]
name = "imagefolder"
label = "tgt"
path = "{tgt}"
n_per_class = 8
n_val_per_class = 4
n_test_per_class = 8

[pretrain]
epochs = 2
speed_epochs = 1
batch_size = 16
checkpoint_epochs = [0, 1]

[finetune]
epochs = 2
speed_epochs = 1
batch_size = 8
lr = 0.02

[scratch]
epochs = 2
speed_epochs = 1
batch_size = 8

[basin]
checkpoint_epochs = [1]
{extra}
"""


@pytest.fixture(scope="session")
def small_domain(tmp_path_factory):
    """3 classes of 16x16 stripes: 72 training, 12 validation and 30 test images, shared by the analysis tests
    (training never changes a domain)."""
    from transferscope.config import DataConfig, DomainConfig
    from transferscope.data import load_domain

    root = make_imagefolder(tmp_path_factory.mktemp("small") / "d", n_classes=3, per_class=38, size=16)
    return load_domain(DomainConfig("imagefolder", path=str(root), n_val_per_class=4, n_test_per_class=10),
                       DataConfig(image_size=16, cache_dir=str(tmp_path_factory.mktemp("cache"))))


def trained_model(domain, seed: int, *, norm: str = "groupnorm", width: int = 8, epochs: int = 2):
    """A small ResNet trained briefly on ``domain``; returns (model, its initial state dict)."""
    from transferscope.config import ModelConfig, TrainConfig
    from transferscope.models import create_model
    from transferscope.train import train

    m = create_model(ModelConfig(blocks=[1, 1], width=width, norm=norm), 1, domain.num_classes, seed=seed)
    init = {k: v.clone() for k, v in m.state_dict().items()}
    train(m, domain, TrainConfig(epochs=epochs, batch_size=8, lr=0.05, speed_epochs=1), seed=seed)
    return m, init


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A two-node Ray cluster on the loopback (head and worker, each its own ``ray start``), one per test module that
    asks for it, stopped after the module (:class:`tests.test_ray._Cluster`)."""
    from .test_ray import _Cluster

    c = _Cluster(tmp_path_factory.mktemp("ray"))
    try:
        yield c
    finally:
        c.stop()
