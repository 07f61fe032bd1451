"""Multi-label targets, the data side: CSV domains with several label columns (the uncertain / blank policy),
the multi-label splitter, the cache, ``Split.sample`` and the synthetic ``fashion-multi`` domain."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferscope.config import DataConfig, DomainConfig
from transferscope.data import DomainError, Split, get_domain_info, load_domain, split_indices, split_multilabel
from transferscope.data.images import resize_array
from transferscope.data.packaged import MULTI_CLASS_IDS, MULTI_CLASSES, fashion_multi_recipe

from .conftest import make_imagefolder

DATA = DataConfig(image_size=8)
NAN = float("nan")


def write_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` small PNGs of distinct random content (so no two are the same image); their paths relative to the
    folder's parent."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (10, 10), dtype=np.uint8)).save(folder / f"im{i:03d}.png")
        names.append(f"{folder.name}/im{i:03d}.png")
    return names


def write_csv(tmp_path: Path, header: str, cells: list[str], name: str = "labels.csv") -> Path:
    paths = write_images(tmp_path / "img", len(cells))
    text = "\n".join([header] + [f"{p},{c}" for p, c in zip(paths, cells, strict=True)]) + "\n"
    (tmp_path / name).write_text(text)
    return tmp_path / name


def read(cell: str, uncertain: str, blank: str) -> float:
    """The policy as the README states it, written out independently of the loader."""
    if cell in ("1", "1.0"):
        return 1.0
    if cell in ("0", "0.0"):
        return 0.0
    if cell in ("-1", "-1.0"):
        return {"ignore": NAN, "zero": 0.0, "one": 1.0}[uncertain]
    assert cell == ""
    return {"ignore": NAN, "zero": 0.0}[blank]


CELLS = ["1,0,-1", "1.0,0.0,-1.0", ",1,0", "-1,,1", "-1,-1,-1", ",,", "-1,,", "0,0,1", "1,1,1", "0,,-1"]


def raw_csv(path: Path, **kw):
    cfg = DomainConfig("csv", path=str(path), **kw)
    return get_domain_info("csv").loader(cfg, 8, 1)


@pytest.mark.parametrize("uncertain", ["ignore", "zero", "one"])
@pytest.mark.parametrize("blank", ["zero", "ignore"])
def test_policy_gives_the_label_matrix(tmp_path, caplog, uncertain, blank):
    path = write_csv(tmp_path, "path,A,B,C", CELLS)
    expected = np.array([[read(c, uncertain, blank) for c in row.split(",")] for row in CELLS], dtype=np.float32)
    known = ~np.isnan(expected).all(1)
    with caplog.at_level(logging.WARNING):
        raw = raw_csv(path, uncertain=uncertain, blank=blank)
    assert raw.classes == ["A", "B", "C"]
    assert raw.labels.dtype == np.float32
    np.testing.assert_array_equal(raw.labels, expected[known])  # NaN where NaN, rows in the file's order
    meta = raw.meta["multilabel"]
    assert meta["uncertain"] == uncertain and meta["blank"] == blank
    assert meta["dropped_unknown"] == int((~known).sum())
    assert (meta["dropped_unknown"] > 0) == ("all unknown" in caplog.text)
    for k, name in enumerate("ABC"):
        col = expected[known, k]
        assert meta["labels"][name]["positive"] == int((col == 1).sum())
        assert meta["labels"][name]["negative"] == int((col == 0).sum())
        assert meta["labels"][name]["unknown"] == int(np.isnan(col).sum())
        assert meta["labels"][name]["uncertain_cells"] == sum(r.split(",")[k] == "-1" or r.split(",")[k] == "-1.0"
                                                              for r in CELLS)
        assert meta["labels"][name]["empty_cells"] == sum(r.split(",")[k] == "" for r in CELLS)


def test_every_policy_differs_where_it_should(tmp_path):
    """The test above would pass on a loader that ignored the policy only if ``read`` did too: pin the cells."""
    path = write_csv(tmp_path, "path,A,B,C", ["-1,,1"])
    assert raw_csv(path, uncertain="one", blank="zero").labels.tolist() == [[1.0, 0.0, 1.0]]
    assert raw_csv(path, uncertain="zero", blank="zero").labels.tolist() == [[0.0, 0.0, 1.0]]
    y = raw_csv(path, uncertain="ignore", blank="ignore").labels
    assert np.isnan(y[0, :2]).all() and y[0, 2] == 1.0


@pytest.mark.parametrize("cell", ["2", "yes", "nan", "0.5", "+", "1 1"])
def test_bad_cell_names_file_line_column_and_value(tmp_path, cell):
    path = write_csv(tmp_path, "path,A,B", ["1,0", f"0,{cell}", "1,1"])
    with pytest.raises(DomainError, match=rf"labels\.csv line 3, column 3 \('B'\): value '{re.escape(cell)}' for "
                                          r"'img/im001\.png'; expected 1 \(present\), 0 \(absent\), -1"):
        load_domain(DomainConfig("csv", path=str(path)), DATA)


def test_bad_rows_and_headers(tmp_path):
    path = write_csv(tmp_path, "path,A,B", ["1,0", "0"])
    with pytest.raises(DomainError, match=r"line 3: expected 3 columns path,A,B as in the header, got 2"):
        raw_csv(path)
    path = write_csv(tmp_path, "path,A,A", ["1,0"], "twice.csv")
    with pytest.raises(DomainError, match=r"twice\.csv line 1: .*label 'A' is named twice \(columns 2 and 3\)"):
        raw_csv(path)
    path = write_csv(tmp_path, "path,A,,B", ["1,0,1"], "empty.csv")
    with pytest.raises(DomainError, match=r"column 3 has no label name"):
        raw_csv(path)
    path = write_csv(tmp_path, "path,A,B", ["-1,-1", ","], "unknown.csv")
    with pytest.raises(DomainError, match=r"no row with a known label \(uncertain='ignore', blank='ignore'\)"):
        raw_csv(path, blank="ignore")


@pytest.mark.parametrize("header", ["path,Edema", "Path,Edema", "path, Cardiomegaly "])
def test_a_header_of_one_label_column_says_what_each_format_expects(tmp_path, header):
    path = write_csv(tmp_path, header, ["1", "0", "-1", ""])
    label = header.split(",")[1]
    with pytest.raises(DomainError, match=rf"labels\.csv line 1: header '{re.escape(header)}' names one label column; "
                                          r"a multi-label CSV needs two or more .* name the column 'label' to read "
                                          r"its values as classes$"):
        raw_csv(path)
    # the single-label header, and no header, read as before: the values are the classes
    for first in ("path,label", None):
        text = path.read_text().splitlines()[1:]
        path.write_text("\n".join(([first] if first else []) + [r for r in text if not r.endswith(",")]) + "\n")
        assert raw_csv(path).classes == ["-1", "0", "1"], (first, label)


def test_duplicates_follow_the_single_label_policy(tmp_path):
    write_images(tmp_path / "img", 3)
    same = "path,A,B\nimg/im000.png,1,-1\nimg/im001.png,0,1\nimg/im002.png,1,1\n./img/im000.png,1,0\n"
    (tmp_path / "d.csv").write_text(same)
    # U-Zeros: -1 reads 0, so line 5 repeats line 2 with the same labels: dropped and counted
    raw = raw_csv(tmp_path / "d.csv", uncertain="zero")
    assert raw.meta["duplicates"]["dropped"] == 1 and len(raw.labels) == 3
    # U-Ignore: line 2 has B unknown, line 5 B = 0: the same image with other labels is an error naming both
    with pytest.raises(DomainError, match=r"line 2 \(img/im000\.png, label '1,\?'\) and line 5 "
                                          r"\(\./img/im000\.png, label '1,0'\) are the same image"):
        raw_csv(tmp_path / "d.csv", uncertain="ignore")


def test_a_header_after_a_byte_order_mark_is_read(tmp_path):
    paths = write_images(tmp_path / "img", 2)
    (tmp_path / "bom.csv").write_text(f"path,A,B\n{paths[0]},1,0\n{paths[1]},0,1\n", encoding="utf-8-sig")
    raw = raw_csv(tmp_path / "bom.csv")
    assert raw.classes == ["A", "B"] and raw.labels.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    # single-label files saved with a byte order mark too, with and without the header row
    for text in (f"path,label\n{paths[0]},a\n{paths[1]},b\n", f"{paths[0]},a\n{paths[1]},b\n"):
        (tmp_path / "one.csv").write_text(text, encoding="utf-8-sig")
        one = raw_csv(tmp_path / "one.csv")
        assert one.classes == ["a", "b"] and one.labels.tolist() == [0, 1]


def test_a_label_without_positive_or_negative_is_named_in_a_warning(tmp_path, caplog):
    path = write_csv(tmp_path, "path,Edema,Rare,Always", ["1,0,1", "0,0,1", "1,,1", "0,0,1"])
    with caplog.at_level(logging.WARNING):
        raw = raw_csv(path)
    assert raw.meta["multilabel"]["no_positive"] == ["Rare"]
    assert raw.meta["multilabel"]["no_negative"] == ["Always"]
    assert "1 label without any known positive among the 4 images: Rare" in caplog.text
    assert "1 label without any known negative among the 4 images: Always" in caplog.text


# ------------------------------------------------------------------------------------------------ splits

def random_labels(n: int, shares, seed: int = 0, unknown: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(shares))) < np.asarray(shares)).astype(np.float32)
    y[rng.random(y.shape) < unknown] = NAN
    return y


def test_multilabel_splits_are_disjoint_sized_seeded_and_cover_the_pool():
    y = random_labels(300, [0.3, 0.5, 0.1, 0.4])
    cfg = DomainConfig("x", n_per_class=10, n_val_per_class=5, n_test_per_class=7)
    s = split_multilabel(y, None, cfg, seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [40, 20, 28]  # per label, times the 4 labels
    assert not (set(s["train"]) & set(s["val"]) or set(s["train"]) & set(s["test"]) or set(s["val"]) & set(s["test"]))
    again, other = split_multilabel(y, None, cfg, seed=0), split_multilabel(y, None, cfg, seed=1)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["train"], other["train"])
    for k in s:
        assert np.all(np.diff(s[k]) > 0)  # sorted, no repeat
    # n_per_class = 0 and no official test split: train, val and 20% test cover the whole pool
    whole = split_multilabel(y, None, DomainConfig("x", n_val_per_class=5), seed=0)
    assert len(whole["test"]) == 60 and len(whole["val"]) == 20
    assert sorted(np.concatenate(list(whole.values()))) == list(range(300))


def test_multilabel_official_test_split_is_kept():
    y = random_labels(200, [0.4, 0.4])
    is_test = np.arange(200) >= 150
    s = split_multilabel(y, is_test, DomainConfig("x", n_val_per_class=3), seed=0)
    assert set(s["test"]) == set(np.flatnonzero(is_test))
    assert not (set(s["train"]) | set(s["val"])) & set(s["test"])
    assert len(s["train"]) == 150 - 6


def test_rare_labels_reach_train_first_then_test_then_val(caplog):
    y = random_labels(400, [0.5, 0.5, 0.0, 0.0], unknown=0.0)
    y[[5, 77, 301], 2] = 1.0  # three positives of label 2: one for each split
    y[123, 3] = 1.0  # one positive of label 3: for the training set
    cfg = DomainConfig("x", n_per_class=2, n_val_per_class=1, n_test_per_class=1)
    for seed in range(5):
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            s = split_multilabel(y, None, cfg, seed=seed, classes=["a", "b", "rare", "once"])
        for part in ("train", "val", "test"):
            assert (y[s[part]] == 1).any(0)[:3].all(), (seed, part)
        assert 123 in s["train"]
        assert "the test split (4 images) has no known positive for 1 label: once" in caplog.text
        assert "the val split (4 images) has no known positive for 1 label: once" in caplog.text
        assert "train split" not in caplog.text


def test_a_pool_too_small_is_an_error_with_the_counts():
    y = random_labels(30, [0.5, 0.5, 0.5])
    with pytest.raises(DomainError, match=r"multi-label pool of 30 images, too few for the 31 asked: "
                                          r"n_test_per_class=2 \(test: 6 images\), n_val_per_class=8 \(val: 24 images\)"
                                          r", n_per_class=0 \(train: the rest, at least 1\)"):
        split_multilabel(y, None, DomainConfig("x", n_val_per_class=8, n_test_per_class=2), seed=0)
    with pytest.raises(DomainError, match=r"times the 3 labels"):
        split_multilabel(y, None, DomainConfig("x", n_per_class=20), seed=0)


# ------------------------------------------------------------------------------------------------ loading

def multilabel_csv(tmp_path: Path, n: int = 60, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    cells = []
    for _ in range(n):
        row = rng.choice(["1", "0", "-1", ""], size=3, p=[0.35, 0.4, 0.1, 0.15])
        cells.append(",".join(row))
    return write_csv(tmp_path, "path,Atelectasis,Edema,Effusion", cells)


def same_labels(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit, NaN included."""
    return a.dtype == b.dtype == torch.float32 and torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_csv_domain_loads_multilabel_splits_and_the_cache_round_trips(tmp_path, caplog):
    path = multilabel_csv(tmp_path)
    cfg = DomainConfig("csv", path=str(path), n_val_per_class=2, n_test_per_class=3)
    a = load_domain(cfg, DATA)
    raw = raw_csv(path)
    assert a.multilabel and a.classes == ("Atelectasis", "Edema", "Effusion")
    assert a.train.y.shape == (len(a.train), 3) and a.train.x.shape == (len(a.train), 1, 8, 8)
    assert (len(a.val), len(a.test)) == (6, 9) and len(a.train) + 15 == len(raw.labels)
    for part in (a.train, a.val, a.test):  # each label row is that image's row in the file
        assert np.array_equal(part.y.numpy(), raw.labels[part.index], equal_nan=True)
        assert torch.equal(part.x, torch.from_numpy(raw.load(part.index)))
    assert torch.isnan(a.train.y).any()  # the unknowns are kept as NaN
    with caplog.at_level(logging.WARNING):
        b = load_domain(cfg, DATA)  # from the cache: read as it is, not decoded again
    assert "unusable" not in caplog.text
    c = load_domain(cfg, DATA, use_cache=False)
    for s in ("train", "val", "test"):
        for d in (b, c):
            assert torch.equal(getattr(a, s).x, getattr(d, s).x) and same_labels(getattr(a, s).y, getattr(d, s).y)
            assert np.array_equal(getattr(a, s).index, getattr(d, s).index)
    # a cache whose labels lost their NaN (read as 0) is not the split's: rebuilt, with a warning
    (file,) = (tmp_path / "cache").glob("csv-*.npz")
    with np.load(file) as z:
        arrays = dict(z)
    arrays["train_y"] = np.nan_to_num(arrays["train_y"])
    np.savez(file, **arrays)
    with caplog.at_level(logging.WARNING):
        d = load_domain(cfg, DATA)
    assert "train_y is not the multi-label labels of the train split" in caplog.text
    assert same_labels(d.train.y, a.train.y)
    with np.load(file) as z:  # rewritten
        assert np.array_equal(z["train_y"], a.train.y.numpy(), equal_nan=True)


def test_the_policy_is_part_of_the_multilabel_cache_key(tmp_path):
    path = multilabel_csv(tmp_path)
    a = load_domain(DomainConfig("csv", path=str(path), n_val_per_class=2, n_test_per_class=3), DATA)
    b = load_domain(DomainConfig("csv", path=str(path), n_val_per_class=2, n_test_per_class=3, uncertain="one"),
                    DATA)
    assert len(list((tmp_path / "cache").glob("csv-*.npz"))) == 2
    assert (b.train.y == 1).sum() + (b.val.y == 1).sum() + (b.test.y == 1).sum() > \
        (a.train.y == 1).sum() + (a.val.y == 1).sum() + (a.test.y == 1).sum()


def test_single_label_csv_is_unchanged(tmp_path):
    """The single-label format reads as it did: the same classes, labels, splits and images as the same files in
    an image folder, split per class by ``split_indices``; the multi-label policy is not part of its cache key."""
    root = make_imagefolder(tmp_path / "f", n_classes=3, per_class=15)
    rows = ["path,label"] + [f"f/class{k}/img{i:03d}.png,class{k}" for k in range(3) for i in range(15)]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    kw = dict(n_per_class=6, n_val_per_class=2, n_test_per_class=4)
    csv_d = load_domain(DomainConfig("csv", path=str(tmp_path / "list.csv"), **kw), DATA)
    folder = load_domain(DomainConfig("imagefolder", path=str(root), **kw), DATA)
    assert not csv_d.multilabel and csv_d.classes == folder.classes
    expected = split_indices(np.repeat(np.arange(3), 15), None, DomainConfig("x", **kw), DATA.split_seed)
    for s in ("train", "val", "test"):
        a, b = getattr(csv_d, s), getattr(folder, s)
        assert a.y.dtype == torch.int64 and a.y.ndim == 1
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and np.array_equal(a.index, expected[s])
    load_domain(DomainConfig("csv", path=str(tmp_path / "list.csv"), uncertain="one", blank="ignore", **kw), DATA)
    assert len(list((tmp_path / "cache").glob("csv-*.npz"))) == 1


# ------------------------------------------------------------------------------------------------ sample

def test_multilabel_sample_is_seeded_sized_and_covers_every_label():
    rng = np.random.default_rng(0)
    y = random_labels(200, [0.6, 0.5, 0.02, 0.01], seed=3)
    y[:, 3] = 0.0
    y[[17, 150], 3] = 1.0  # two positives of the rarest label
    x = torch.from_numpy(rng.integers(0, 256, (200, 1, 4, 4), dtype=np.uint8))
    split = Split(x, torch.from_numpy(y), np.arange(1000, 1200))
    for n in (4, 9, 50):
        a, b = split.sample(n, seed=5), split.sample(n, seed=5)
        assert len(a) == n and torch.equal(a.x, b.x) and np.array_equal(a.index, b.index)
        assert len(set(a.index.tolist())) == n
        assert (a.y == 1).any(0).all()  # a positive of each label, the rare ones included
        for img, lab, i in zip(a.x, a.y, a.index, strict=True):  # each is that example of the split
            assert torch.equal(split.x[i - 1000], img) and np.array_equal(split.y[i - 1000].numpy(), lab.numpy(),
                                                                           equal_nan=True)
    assert not np.array_equal(split.sample(50, seed=6).index, split.sample(50, seed=5).index)
    assert split.sample(500) is split


def test_multilabel_sample_keeps_the_splits_label_shares():
    """The analyses measure the training loss on a sample: past one reserved positive per label it is the seeded
    shuffle, so label shares and the share of images without any label stay near the split's (a round robin over
    the labels' positives would inflate the rare labels and leave out the images without labels)."""
    y = random_labels(4000, [0.28, 0.11, 0.05, 0.2, 0.02], seed=7)
    split = Split(torch.zeros(4000, 1, 2, 2, dtype=torch.uint8), torch.from_numpy(y), np.arange(4000))
    share, none = np.nanmean(y == 1, 0), ((y == 1).sum(1) == 0).mean()
    got = np.zeros(5)
    got_none = 0.0
    for seed in range(5):
        a = split.sample(400, seed=seed).y.numpy()
        got += (a == 1).mean(0) / 5
        got_none += ((a == 1).sum(1) == 0).mean() / 5
        assert (a == 1).any(0).all()
    assert np.abs(got - share).max() < 0.03, (got, share)
    assert abs(got_none - none) < 0.04, (got_none, none)


def test_sample_makes_its_index_tensors_on_the_splits_device():
    """Under another default device the sample is still taken where the split is, and is the same."""
    x = torch.arange(40 * 4, dtype=torch.uint8).reshape(40, 1, 2, 2)
    for y in (torch.arange(40) % 4, torch.from_numpy(random_labels(40, [0.3, 0.3, 0.5]))):
        split = Split(x, y, np.arange(40))
        a = split.sample(10, seed=2)
        with torch.device("meta"):
            b = split.sample(10, seed=2)
        assert b.x.device.type == "cpu" and torch.equal(a.x, b.x) and np.array_equal(a.index, b.index)


# ------------------------------------------------------------------------------------------- fashion-multi

@pytest.fixture(scope="module")
def fashion():
    raw = get_domain_info("fashion-mnist").loader(DomainConfig("fashion-mnist"), 28, 1)
    return raw.load(np.arange(len(raw.labels)))[:, 0], raw.labels, raw.is_test


@pytest.mark.parametrize("size, channels", [(16, 1), (21, 3)])
def test_fashion_multi_labels_are_the_items_pasted(fashion, size, channels):
    x, y, is_test = fashion
    cfg = DomainConfig("fashion-multi", n_per_class=8, n_val_per_class=4, n_test_per_class=0)
    d = load_domain(cfg, DataConfig(image_size=size, channels=channels))
    assert d.multilabel and d.classes == tuple(MULTI_CLASSES)
    assert d.train.x.shape == (40, channels, size, size) and d.val.x.shape == (20, channels, size, size)
    assert d.test.x.shape == (1500, channels, size, size)
    items, test = fashion_multi_recipe(y, is_test)
    assert set(d.test.index) == set(np.flatnonzero(test))
    cell = size // 2
    for split, official in ((d.train, False), (d.val, False), (d.test, True)):
        assert not torch.isnan(split.y).any()
        for img, lab, i in list(zip(split.x, split.y, split.index, strict=True))[:60]:
            present = {MULTI_CLASS_IDS.index(int(y[j])) for j in items[i] if j >= 0}
            assert 1 <= len(present) <= 3
            assert set(np.flatnonzero(lab.numpy() == 1)) == present
            for c, j in enumerate(items[i]):
                r0, c0 = (c // 2) * cell, (c % 2) * cell
                patch = img[:, r0:r0 + cell, c0:c0 + cell].numpy()
                if j < 0:
                    assert not patch.any()  # an empty cell is black
                else:
                    assert bool(is_test[j]) == official  # test composites use official test images only
                    assert np.array_equal(patch, resize_array(x[j][None], cell, channels)[0])
            assert not img[:, 2 * cell:].any() and not img[:, :, 2 * cell:].any()  # an odd size: a black edge


def test_a_test_split_asked_by_count_is_drawn_from_the_official_test_images(fashion):
    """n_test_per_class > 0 draws that many (times the labels) of the official test composites, so no test canvas
    holds a Fashion-MNIST training image (which a P pre-trained on Fashion-MNIST may have seen)."""
    _, y, is_test = fashion
    items, test = fashion_multi_recipe(y, is_test)
    cfg = DomainConfig("fashion-multi", n_per_class=8, n_val_per_class=4, n_test_per_class=12)
    d = load_domain(cfg, DataConfig(image_size=8), use_cache=False)
    assert len(d.test) == 12 * 5 and test[d.test.index].all()
    assert all(is_test[j] for i in d.test.index for j in items[i] if j >= 0)
    assert not test[d.train.index].any() and not test[d.val.index].any()
    assert (d.test.y == 1).any(0).all()  # a positive of each label reserved
    other = load_domain(replace(cfg, n_test_per_class=12), DataConfig(image_size=8, split_seed=3), use_cache=False)
    assert not np.array_equal(d.test.index, other.test.index)  # a seeded draw of the official test composites
    with pytest.raises(DomainError, match=r"official test split has 1500 images, too few for the 1505 asked.*"
                                          r"at most n_test_per_class=300"):
        load_domain(replace(cfg, n_test_per_class=301), DataConfig(image_size=8), use_cache=False)


def test_fashion_multi_is_deterministic_with_balanced_labels():
    cfg = DomainConfig("fashion-multi", n_per_class=20, n_val_per_class=10)
    a = load_domain(cfg, DataConfig(image_size=8), use_cache=False)
    b = load_domain(cfg, DataConfig(image_size=8), use_cache=False)
    other = load_domain(cfg, DataConfig(image_size=8, split_seed=1), use_cache=False)
    for s in ("train", "val", "test"):
        assert torch.equal(getattr(a, s).x, getattr(b, s).x) and torch.equal(getattr(a, s).y, getattr(b, s).y)
    assert not np.array_equal(a.train.index, other.train.index)  # the split seed picks other composites
    assert np.array_equal(a.test.index, other.test.index)  # the official test composites stay
    share = a.test.y.mean(0)
    assert ((share > 0.2) & (share < 0.5)).all(), share
    assert set(a.meta["label_share"]) == set(MULTI_CLASSES)
    with pytest.raises(DomainError, match=r"image_size 6 is too small for a 2 x 2 grid"):
        load_domain(cfg, DataConfig(image_size=6), use_cache=False)


def test_a_label_policy_on_a_single_label_domain_is_said_to_be_ignored(tmp_path, caplog):
    root = make_imagefolder(tmp_path / "imgs", n_classes=2, per_class=12, size=8)
    cfg = DomainConfig("imagefolder", path=str(root), n_val_per_class=2, n_test_per_class=2)
    data = DataConfig(image_size=8, cache_dir=str(tmp_path / "cache"))
    with caplog.at_level("WARNING"):
        load_domain(cfg, data)
    assert "label policy" not in caplog.text
    with caplog.at_level("WARNING"):
        load_domain(replace(cfg, uncertain="one", blank="ignore"), data)
    assert "uncertain = 'one' and blank = 'ignore' ignored: the label policy applies to multi-label csv" in caplog.text
