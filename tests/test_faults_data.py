"""Faults and bad input in the data layer: each gets a named error (a DomainError, which the command line prints as
one line) or a counted, logged skip, as the README's "What is checked when a domain is read" says."""

import ast
import gzip
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferscope.config import DataConfig, DomainConfig
from transferscope.data import DomainError, load_domain, split_indices

from .conftest import make_imagefolder

DATA = DataConfig(image_size=16)
BUILTIN = "transferscope.data.builtin"
DOMAIN = "transferscope.data.domain"


def _warnings(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.WARNING]


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------ 9: duplicate rows in a CSV


def _csv(tmp_path: Path, rows: list[str], name: str = "list.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(["path,label", *rows]) + "\n")
    return p


def _csv_cfg(path: Path, **kw) -> DomainConfig:
    return DomainConfig("csv", path=str(path), **{"n_val_per_class": 2, "n_test_per_class": 2, **kw})


def test_csv_duplicates_by_path_and_by_content_are_dropped_counted_and_logged_once(tmp_path, caplog):
    make_imagefolder(tmp_path / "f", n_classes=2, per_class=10)
    rows = [f"f/class{k}/img{i:03d}.png,c{k}" for k in range(2) for i in range(10)]
    rows += ["f/class0/img000.png,c0", "./f/class0/img000.png,c0", "f//class1/img004.png,c1"]  # the same paths
    shutil.copy(tmp_path / "f/class1/img007.png", tmp_path / "f/copy.png")
    rows += ["f/copy.png,c1"]  # the same image under another name
    with caplog.at_level(logging.INFO):
        d = load_domain(_csv_cfg(_csv(tmp_path, rows)), DATA)
    assert len(d.train) + len(d.val) + len(d.test) == 20
    assert d.meta["duplicates"] == {"rows": 24, "same_path": 3, "same_content": 1, "dropped": 4}
    [message] = [m for m in _warnings(caplog, BUILTIN) if "duplicate" in m]  # once per load
    assert "list.csv: dropped 4 duplicate rows (3 repeat a path, 1 an image listed under another path)" in message
    # no image is in two splits
    seen = [{bytes(x.numpy()) for x in s.x} for s in (d.train, d.val, d.test)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


def test_a_csv_without_duplicates_records_none(tmp_path):
    make_imagefolder(tmp_path / "f", n_classes=2, per_class=10)
    rows = [f"f/class{k}/img{i:03d}.png,c{k}" for k in range(2) for i in range(10)]
    d = load_domain(_csv_cfg(_csv(tmp_path, rows)), DATA)
    assert d.meta["duplicates"] == {"rows": 20, "same_path": 0, "same_content": 0, "dropped": 0}


@pytest.mark.parametrize("same", ["path", "content"])
def test_the_same_image_under_two_labels_is_an_error_naming_both_rows(tmp_path, same):
    make_imagefolder(tmp_path / "f", n_classes=2, per_class=10)
    rows = [f"f/class{k}/img{i:03d}.png,c{k}" for k in range(2) for i in range(10)]
    if same == "path":
        rows.append("f/class0/img003.png,c1")
        want = r"line 5 \(f/class0/img003.png, label 'c0'\) and line 22 \(f/class0/img003.png, label 'c1'\)"
    else:
        shutil.copy(tmp_path / "f/class0/img003.png", tmp_path / "f/copy.png")
        rows.append("f/copy.png,c1")
        want = r"line 5 \(f/class0/img003.png, label 'c0'\) and line 22 \(f/copy.png, label 'c1'\)"
    with pytest.raises(DomainError, match=r"list\.csv: " + want + r" are the same image"):
        load_domain(_csv_cfg(_csv(tmp_path, rows)), DATA)


# ------------------------------------------------------------ 10: truncated images, phantom classes, paths


def test_a_truncated_image_is_a_named_error(tmp_path):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=8)
    bad = root / "class1" / "img002.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 2 // 3])
    cfg = DomainConfig("imagefolder", path=str(root), n_val_per_class=2, n_test_per_class=2)
    with pytest.raises(DomainError) as e:
        load_domain(cfg, DATA)
    msg = _one_line(e)
    assert f"cannot decode {bad}:" in msg and "replace or remove the file" in msg


def test_empty_class_folders_are_skipped_with_a_warning(tmp_path, caplog):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=8)
    (root / "zz_empty").mkdir()
    (root / "zz_notes").mkdir()
    (root / "zz_notes" / "readme.txt").write_text("no images here")
    cfg = DomainConfig("imagefolder", path=str(root), n_val_per_class=2, n_test_per_class=2)
    with caplog.at_level(logging.INFO):
        d = load_domain(cfg, DATA)
    assert d.classes == ("class0", "class1") and d.num_classes == 2
    assert d.meta["skipped_classes"] == {"empty": ["zz_empty", "zz_notes"], "outside_root": []}
    assert any("skipped 2 class folders without images: zz_empty, zz_notes" in m for m in _warnings(caplog, BUILTIN))


def test_a_class_left_without_images_is_an_error_not_a_phantom_class():
    labels = np.repeat(np.arange(2), 20)  # the last of three classes has no image left
    with pytest.raises(DomainError, match=r"class 'c' has 0 images"):
        split_indices(labels, None, DomainConfig("x", n_val_per_class=2, n_test_per_class=2), seed=0,
                      classes=["a", "b", "c"])


def test_symlinks_out_of_the_data_root_are_skipped_counted_and_said(tmp_path, caplog):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=8)
    outside = make_imagefolder(tmp_path / "elsewhere", n_classes=1, per_class=5, seed=3)
    (root / "class2").symlink_to(outside / "class0", target_is_directory=True)  # a class folder out of the root
    (root / "class0" / "stolen.png").symlink_to(outside / "class0" / "img000.png")  # a file out of the root
    (root / "class1" / "alias.png").symlink_to(root / "class0" / "img000.png")  # inside the root: kept
    cfg = DomainConfig("imagefolder", path=str(root), n_val_per_class=2, n_test_per_class=2)
    with caplog.at_level(logging.INFO):
        d = load_domain(cfg, DATA)
    assert d.classes == ("class0", "class1")
    assert d.meta["skipped"]["outside_root"] == 1
    assert d.meta["skipped_classes"]["outside_root"] == ["class2"]
    assert len(d.train) + len(d.val) + len(d.test) == 17
    [message] = [m for m in _warnings(caplog, BUILTIN) if "outside" in m]
    assert "refused 1 class folder (class2) and 1 file that lead outside" in message
    assert "stolen.png" in message


@pytest.mark.parametrize("row, why, shown", [
    ("f/class0/img000.png,", "empty label", "'f/class0/img000.png'"),
    (",c0", "empty path", "',c0'"),
    ("{abs},c0", "absolute path", "'{abs}'"),
    ("../outside.png,c0", "path with '..'", "'../outside.png'"),
    ("f/../f/class0/img000.png,c0", "path with '..'", "'f/../f/class0/img000.png'"),
    ("link.png,c0", "path that leads outside", "'link.png'"),
])
def test_bad_csv_rows_are_named_errors(tmp_path, row, why, shown):
    make_imagefolder(tmp_path / "d" / "f", n_classes=2, per_class=6)
    Image.new("L", (16, 16)).save(tmp_path / "outside.png")
    (tmp_path / "d" / "link.png").symlink_to(tmp_path / "outside.png")
    absolute = tmp_path / "d" / "f" / "class0" / "img000.png"
    row, shown = row.format(abs=absolute), shown.format(abs=absolute)
    rows = [f"f/class{k}/img{i:03d}.png,c{k}" for k in range(2) for i in range(6)]
    path = _csv(tmp_path / "d", rows[:3] + [row] + rows[3:])
    with pytest.raises(DomainError) as e:
        load_domain(_csv_cfg(path, n_val_per_class=1, n_test_per_class=1), DATA)
    msg = _one_line(e)
    assert f"{path} line 5: {why}" in msg and shown in msg


# ------------------------------------------------------------------------------- 11: a bad data cache


def _cache_file(tmp_path) -> Path:
    [p] = list((tmp_path / "cache").glob("imagefolder-*.npz"))
    return p


def _rewrite(p: Path, **change) -> None:
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(change)
    for k, v in change.items():
        if v is None:
            del arrays[k]
    with open(p, "wb") as f:
        np.savez(f, **arrays)


class Evil:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _corrupt(kind: str, p: Path, tmp_path: Path, other: Path | None) -> None:
    if kind == "truncated":  # BadZipFile
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif kind == "empty":  # EOFError
        p.write_bytes(b"")
    elif kind == "flipped byte":  # a CRC error when read
        b = bytearray(p.read_bytes())
        b[len(b) // 3] ^= 0xFF
        p.write_bytes(bytes(b))
    elif kind == "missing array":  # KeyError
        _rewrite(p, test_x=None)
    elif kind == "wrong shape":
        with np.load(p) as z:
            x = z["train_x"]
        _rewrite(p, train_x=np.zeros((len(x), 1, 8, 8), np.uint8))
    elif kind == "fewer images":
        with np.load(p) as z:
            x, y, i = z["train_x"], z["train_y"], z["train_index"]
        _rewrite(p, train_x=x[:-1], train_y=y[:-1], train_index=i[:-1])
    elif kind == "all-zero labels":
        with np.load(p) as z:
            y = z["train_y"]
        _rewrite(p, train_y=np.zeros_like(y))
    elif kind == "another key":  # a valid cache of another split
        shutil.copy(other, p)
    elif kind == "pickle":
        p.write_bytes(pickle.dumps({"train_x": Evil(tmp_path / "pwned")}))
    elif kind == "object array":
        _rewrite(p, train_y=np.array([Evil(tmp_path / "pwned")], dtype=object))
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "empty", "flipped byte", "missing array", "wrong shape",
                                  "fewer images", "all-zero labels", "another key", "pickle", "object array"])
def test_a_bad_cache_is_rebuilt_with_a_warning_naming_it(tmp_path, caplog, kind):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=10)
    cfg = DomainConfig("imagefolder", path=str(root), n_val_per_class=2, n_test_per_class=3)
    first = load_domain(cfg, DATA)
    p = _cache_file(tmp_path)
    other = None
    if kind == "another key":
        load_domain(cfg, DataConfig(image_size=16, split_seed=7))
        [other] = [q for q in (tmp_path / "cache").glob("imagefolder-*.npz") if q != p]
    _corrupt(kind, p, tmp_path, other)
    with caplog.at_level(logging.INFO):
        again = load_domain(cfg, DATA)
    [message] = _warnings(caplog, DOMAIN)
    assert f"domain cache {p} is unusable" in message and "decoding the domain again" in message
    assert not (tmp_path / "pwned").exists()
    for a, b in ((first.train, again.train), (first.val, again.val), (first.test, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and np.array_equal(a.index, b.index)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        load_domain(cfg, DATA)  # the rebuilt cache is good
    assert _warnings(caplog, DOMAIN) == []


def test_the_cache_carries_its_key_and_shapes(tmp_path):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=10)
    load_domain(DomainConfig("imagefolder", path=str(root), n_val_per_class=2, n_test_per_class=3), DATA)
    p = _cache_file(tmp_path)
    with np.load(p, allow_pickle=False) as z:
        assert p.stem.endswith(str(z["key"]))
        assert z["train_x"].shape == (10, 1, 16, 16)


# -------------------------------------------------------------------- 12: pickles where data is read


def test_every_np_load_in_the_data_package_refuses_pickles():
    import transferscope.data as pkg

    calls = 0
    for f in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "np":
                calls += 1
                kw = {k.arg: k.value for k in node.keywords}
                assert "allow_pickle" in kw and kw["allow_pickle"].value is False, f"{f.name}:{node.lineno}"
    assert calls >= 1


def _animal_folder(tmp_path: Path, x, y) -> Path:
    root = tmp_path / "animals"
    root.mkdir()
    for name, obj in (("animal_data_version_3.gz", x), ("animal_label_version_3.gz", y)):
        with gzip.open(root / name, "wb") as f:
            f.write(obj if isinstance(obj, bytes) else pickle.dumps(obj))
    return root


@pytest.mark.parametrize("payload", ["code", "object array", "not a pickle"])
def test_a_malicious_or_broken_data_pickle_is_a_one_line_error_naming_the_file(tmp_path, payload):
    x = {"code": Evil(tmp_path / "pwned"), "object array": np.array([Evil(tmp_path / "pwned")], dtype=object),
         "not a pickle": b"\x80\x05garbage"}[payload]
    root = _animal_folder(tmp_path, x, np.zeros(10, np.int64))
    cfg = DomainConfig("animal-silhouettes", path=str(root), n_val_per_class=1, n_test_per_class=1)
    with pytest.raises(DomainError) as e:
        load_domain(cfg, DATA)
    msg = _one_line(e)
    assert f"cannot read {root / 'animal_data_version_3.gz'}:" in msg
    assert not (tmp_path / "pwned").exists()


def test_a_truncated_builtin_data_file_is_a_named_error(tmp_path):
    src = Path("/usr/share/datasets/fashion-mnist")
    if not src.is_dir():
        pytest.skip("fashion-mnist is not installed")
    root = tmp_path / "fm"
    root.mkdir()
    for f in src.iterdir():
        (root / f.name).symlink_to(f)
    bad = root / "t10k-labels-idx1-ubyte.gz"
    bad.unlink()
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x27\x10" + bytes(100)))  # says 10000 labels, has 100
    with pytest.raises(DomainError) as e:
        load_domain(DomainConfig("fashion-mnist", path=str(root), n_per_class=5, n_val_per_class=2), DATA)
    assert f"cannot read {bad}:" in _one_line(e)


# ---------------------------------------------------------------------- 16: what the split has to give


def test_too_few_for_train_and_val_counts_what_the_split_can_use():
    labels = np.tile(np.arange(2), 70)  # 70 per class, the last 10 of each in the official test split
    is_test = np.arange(140) >= 120
    cfg = DomainConfig("x", n_per_class=60, n_val_per_class=2)
    with pytest.raises(DomainError) as e:
        split_indices(labels, is_test, cfg, seed=0, classes=["a", "b"])
    msg = _one_line(e)
    assert ("class 'a' has 60 images for train + val, too few for the 62 asked (n_per_class=60 + "
            "n_val_per_class=2); it has 70 in all, of which the 10 of the official test split are kept for test"
            in msg)
    assert "at most n_per_class=58 with n_val_per_class=2" in msg


def test_too_few_when_the_test_split_is_drawn_from_the_pool():
    labels = np.repeat(np.arange(2), 10)
    cfg = DomainConfig("x", n_per_class=8, n_val_per_class=5, n_test_per_class=0)
    with pytest.raises(DomainError) as e:
        split_indices(labels, None, cfg, seed=0, classes=["0", "1"])
    msg = _one_line(e)
    assert "class '0' has 8 images for train + val, too few for the 13 asked" in msg
    assert "it has 10 in all, of which 2 are set aside for test (20%, n_test_per_class=0)" in msg
    assert "at most n_per_class=3 with n_val_per_class=5" in msg


def test_too_few_for_the_test_split():
    labels = np.repeat(np.arange(2), 10)
    with pytest.raises(DomainError, match=r"class '0' has 10 images, too few for the 12 asked for test "
                                          r"\(n_test_per_class=12\)"):
        split_indices(labels, None, DomainConfig("x", n_test_per_class=12), seed=0, classes=["0", "1"])


def test_fashion_mnist_6000_plus_200_is_refused_with_what_is_available():
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("fashion-mnist is not installed")
    with pytest.raises(DomainError) as e:
        load_domain(DomainConfig("fashion-mnist", n_per_class=6000, n_val_per_class=200), DataConfig(image_size=28))
    msg = _one_line(e)
    assert "has 6000 images for train + val, too few for the 6200 asked" in msg
    assert "at most n_per_class=5800 with n_val_per_class=200" in msg


@pytest.mark.parametrize("mode,size,channels,image_size,lost", [
    ("RGB", 20, 1, 8, ("their colour is lost (set [data] channels = 3", "they are shrunk to 8x8 (most are 20x20")),
    ("RGB", 8, 1, 8, ("their colour is lost",)),
    ("L", 20, 1, 8, ("they are shrunk to 8x8",)),
    ("L", 8, 3, 8, ()),  # grey made RGB: nothing lost
    ("L", 6, 1, 8, ()),  # enlarged: nothing lost
])
def test_your_own_images_losing_colour_or_size_is_a_warning_once(tmp_path, caplog, mode, size, channels, image_size,
                                                                 lost):
    import logging

    from transferscope.config import DataConfig, DomainConfig
    from transferscope.data import load_domain

    from .conftest import make_imagefolder

    root = make_imagefolder(tmp_path / "mine", n_classes=2, per_class=12, size=size, mode=mode)
    cfg = DomainConfig("imagefolder", path=str(root), label="my photos", n_per_class=4, n_val_per_class=2,
                       n_test_per_class=4)
    data = DataConfig(image_size=image_size, channels=channels, cache_dir=str(tmp_path / "cache"))
    for first in (True, False):  # decoded, then read from the cache: the warning comes once
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="transferscope"):
            load_domain(cfg, data)
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if lost and first:
            assert len(warned) == 1 and "domain 'my photos'" in warned[0], warned
            assert all(x in warned[0] for x in lost), warned[0]
        else:
            assert warned == [], warned
