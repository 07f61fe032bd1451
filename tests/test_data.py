import pickle

import numpy as np
import pytest
import torch

from transferscope.config import DataConfig, DomainConfig
from transferscope.data import DomainError, list_domains, load_domain, split_indices
from transferscope.data.packaged import load_numpy_pickle

from .conftest import make_imagefolder

DATA = DataConfig(image_size=16)


def test_splits_are_disjoint_stratified_and_sized():
    labels = np.repeat(np.arange(3), 50)
    cfg = DomainConfig("x", n_per_class=10, n_val_per_class=5, n_test_per_class=7)
    s = split_indices(labels, None, cfg, seed=0)
    assert len(set(s["train"]) | set(s["val"]) | set(s["test"])) == 3 * (10 + 5 + 7)
    for name, n in (("train", 10), ("val", 5), ("test", 7)):
        assert np.bincount(labels[s[name]], minlength=3).tolist() == [n] * 3
    again = split_indices(labels, None, cfg, seed=0)
    other = split_indices(labels, None, cfg, seed=1)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["train"], other["train"])


def test_official_test_split_is_kept():
    labels = np.tile(np.arange(2), 40)
    is_test = np.arange(80) >= 60
    s = split_indices(labels, is_test, DomainConfig("x", n_val_per_class=3), seed=0)
    assert set(s["test"]) == set(np.flatnonzero(is_test))
    assert not (set(s["train"]) | set(s["val"])) & set(s["test"])


def test_too_few_images_is_a_clear_error():
    labels = np.repeat(np.arange(2), 10)
    with pytest.raises(DomainError, match=r"class '0' has 8 images for train \+ val, too few for the 13 asked"):
        split_indices(labels, None, DomainConfig("x", n_per_class=8, n_val_per_class=5), seed=0, classes=["0", "1"])


def test_imagefolder_loads_rgb_and_grey(tmp_path):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=20, size=20, mode="RGB")
    cfg = DomainConfig("imagefolder", path=str(root), n_per_class=5, n_val_per_class=3, n_test_per_class=4)
    grey = load_domain(cfg, DATA)
    rgb = load_domain(cfg, DataConfig(image_size=16, channels=3))
    assert grey.classes == ("class0", "class1")
    assert grey.train.x.shape == (10, 1, 16, 16) and grey.train.x.dtype == torch.uint8
    assert rgb.test.x.shape == (8, 3, 16, 16)
    # grey images saved as RGB: the three channels are equal
    assert torch.equal(rgb.test.x[:, 0], rgb.test.x[:, 1])


def test_cache_gives_the_same_tensors(tmp_path):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=12)
    cfg = DomainConfig("imagefolder", path=str(root), n_val_per_class=2, n_test_per_class=3)
    a = load_domain(cfg, DATA)
    b = load_domain(cfg, DATA)  # from the cache
    c = load_domain(cfg, DATA, use_cache=False)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.x, c.train.x)
    assert list((tmp_path / "cache").glob("imagefolder-*.npz"))


def test_large_and_broken_files_are_skipped_and_counted(tmp_path):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=12, size=16)
    (root / "class0" / "broken.png").write_bytes(b"not a png")
    from PIL import Image

    Image.new("L", (200, 200)).save(root / "class1" / "big.png")
    cfg = DomainConfig("imagefolder", path=str(root), n_val_per_class=2, n_test_per_class=3, max_pixels=100 * 100)
    d = load_domain(cfg, DATA)
    assert d.meta["skipped"] == {"too_large": 1, "unreadable": 1, "outside_root": 0}
    assert len(d.train) + len(d.val) + len(d.test) == 24


def test_csv_domain(tmp_path):
    make_imagefolder(tmp_path / "f", n_classes=2, per_class=10)
    rows = ["path,label"] + [f"f/class{k}/img{i:03d}.png,c{k}" for k in range(2) for i in range(10)]
    (tmp_path / "list.csv").write_text("\n".join(rows))
    d = load_domain(DomainConfig("csv", path=str(tmp_path / "list.csv"), n_val_per_class=2, n_test_per_class=2),
                    DATA)
    assert d.classes == ("c0", "c1") and len(d.train) == 12
    (tmp_path / "bad.csv").write_text("f/class0/img000.png,c0,extra\n")
    with pytest.raises(DomainError, match=r"line 1: expected 2 columns"):
        load_domain(DomainConfig("csv", path=str(tmp_path / "bad.csv")), DATA)


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(DomainError, match=r"imagefolder.*is not a folder"):
        load_domain(DomainConfig("imagefolder", path=str(tmp_path / "nope")), DATA)


def test_numpy_only_unpickler():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(load_numpy_pickle(pickle.dumps(arr)), arr)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refused"):
        load_numpy_pickle(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError):
        load_numpy_pickle(pickle.dumps(np.array([1, "a"], dtype=object)))


def test_builtin_domains_are_registered():
    assert {"fashion-mnist", "animal-silhouettes", "clipart", "mnist-digits", "textures", "imagefolder",
            "csv"} <= set(list_domains())


def test_the_registry_imports_no_loader():
    """The built-in loaders register themselves when transferscope.data imports them; the registry never imports
    them back (issue 20: no cycle between data/builtin and data/registry, not even inside a function)."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import transferscope.data.registry as registry

    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level for a in n.names} | \
        {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level and n.module}
    assert not imported & {"builtin", "packaged", "user", "reading"}, imported
    # and yet a process that asks only the registry finds every built-in domain
    code = "from transferscope.data.registry import list_domains; print(','.join(list_domains()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert set(out.split(",")) == set(list_domains())


@pytest.mark.parametrize("name, n_classes", [("fashion-mnist", 10), ("animal-silhouettes", 10),
                                             ("mnist-digits", 10), ("textures", 6)])
def test_real_domains_load(name, n_classes):
    """The built-in domains read real data installed by `make` (Debian and PyPI packages)."""
    d = load_domain(DomainConfig(name, n_per_class=5, n_val_per_class=2, n_test_per_class=3), DataConfig(image_size=28))
    assert d.num_classes == n_classes
    assert d.train.x.shape == (5 * n_classes, 1, 28, 28)
    assert d.train.x.float().std() > 10  # real images, not blanks


def test_sample_is_balanced_seeded_and_drawn_from_the_split(small_domain):
    """Splits are stored class by class; analyses use sample(n), never x[:n] (which would see only class 0)."""
    split = small_domain.train
    assert torch.equal(split.y[:10], torch.zeros(10, dtype=split.y.dtype))  # why x[:n] is wrong
    a, b = split.sample(12, seed=3), split.sample(12, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert torch.bincount(a.y).tolist() == [4, 4, 4]
    pos = {int(i): k for k, i in enumerate(split.index)}
    for img, lab, idx in zip(a.x, a.y, a.index, strict=True):  # each drawn example is that example of the split
        assert torch.equal(split.x[pos[int(idx)]], img) and split.y[pos[int(idx)]] == lab
    assert not torch.equal(split.sample(12, seed=4).x, a.x)
    assert split.sample(10_000) is split
