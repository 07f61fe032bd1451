"""A class too small for the split asked is refused when the study is planned (``run --dry-run`` included), from the
file listing of an image folder (nothing decoded), with the error the data loading gives and advice that names the
settings to lower."""

from __future__ import annotations

import numpy as np
import pytest

from transferscope.cli import main
from transferscope.config import DomainConfig
from transferscope.data import DomainError, split_indices

from .conftest import make_imagefolder, tiny_study_toml


def _small_target(tmp_path, per_class: int):
    src = make_imagefolder(tmp_path / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(tmp_path / "tgt", n_classes=3, per_class=per_class, seed=2)
    path = tmp_path / "study.toml"
    path.write_text(tiny_study_toml(src, tgt))  # the target asks n_per_class 8 + n_val_per_class 4 + test 8
    return str(path)


def test_the_dry_run_refuses_a_class_too_small_for_the_split(tmp_path, capsys, monkeypatch):
    path = _small_target(tmp_path, per_class=14)
    import PIL.Image

    def no_decoding(*a, **k):
        raise AssertionError("the dry run opened an image")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    assert main(["run", path, "--results", str(tmp_path / "r"), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "pending" not in captured.out
    err = captured.err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("error: domain 'tgt': class 'class0' has 6 images for train + val, too few for the 12 asked "
                          "(n_per_class=8 + n_val_per_class=4); it has 14 in all, of which 8 are set aside for test "
                          "(n_test_per_class=8); ask for at most n_per_class=2 with n_val_per_class=4, or at most "
                          "n_test_per_class=2"), err


def test_the_dry_run_gives_the_error_the_data_loading_gives(tmp_path, capsys):
    from transferscope.config import DataConfig, load_config
    from transferscope.data import load_domain

    path = _small_target(tmp_path, per_class=14)
    assert main(["run", path, "--results", str(tmp_path / "r"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    with pytest.raises(DomainError) as e:
        load_domain(load_config(path).targets[0], DataConfig(image_size=16, cache_dir=str(tmp_path / "c")))
    assert err.strip() == f"error: {e.value}"


def test_a_class_folder_that_suffices_plans(tmp_path, capsys):
    path = _small_target(tmp_path, per_class=20)
    assert main(["run", path, "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    assert "pending" in capsys.readouterr().out


def test_the_dry_run_counts_only_the_classes_asked_for(tmp_path, capsys):
    src = make_imagefolder(tmp_path / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(tmp_path / "tgt", n_classes=3, per_class=24, seed=2)
    make_imagefolder(tmp_path / "small", n_classes=1, per_class=5, seed=3)
    (tmp_path / "small" / "class0").rename(tgt / "tiny")  # a fourth class of 5 images
    text = tiny_study_toml(src, tgt).replace('label = "tgt"', 'label = "tgt"\nclasses = ["class0", "class2"]', 1)
    (tmp_path / "study.toml").write_text(text)
    assert main(["run", str(tmp_path / "study.toml"), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    (tmp_path / "study.toml").write_text(text.replace('"class2"]', '"tiny"]'))
    assert main(["run", str(tmp_path / "study.toml"), "--results", str(tmp_path / "r"), "--dry-run"]) == 2
    assert "class 'tiny' has 5 images, too few for the 8 asked for test" in capsys.readouterr().err


@pytest.mark.parametrize("n, counts, hint", [
    # n_val_per_class fills the pool: n_per_class cannot fix it alone, and the most n_val_per_class counts n_per_class
    (12, dict(n_per_class=5, n_val_per_class=10), "; ask for at most n_val_per_class=5 with n_per_class=5"),
    # either can be lowered
    (12, dict(n_per_class=8, n_val_per_class=4), "; ask for at most n_per_class=6 with n_val_per_class=4, or at most "
                                                 "n_val_per_class=2 with n_per_class=8"),
    # n_per_class = 0 takes the rest: one image at least
    (12, dict(n_val_per_class=10), "; ask for at most n_val_per_class=9"),
    # neither alone: their sum
    (12, dict(n_per_class=10, n_val_per_class=10), "; n_per_class + n_val_per_class can be at most 10 together"),
    # the test split asked for leaves nothing
    (3, dict(n_val_per_class=1, n_test_per_class=2), "; ask for at most n_test_per_class=1"),
    # nothing left to lower: too few images
    (2, dict(n_val_per_class=1, n_test_per_class=1), "; the class needs at least 3 (one image each for train, val "
                                                     "and test)"),
])
def test_the_advice_names_the_settings_to_lower(n, counts, hint):
    labels = np.repeat(np.arange(2), n)
    with pytest.raises(DomainError) as e:
        split_indices(labels, None, DomainConfig("x", **counts), seed=0, classes=["a", "b"])
    assert str(e.value).endswith(hint), str(e.value)
    # and the advice is right: what it asks for splits
    asked = hint.split("ask for at most ", 1)[-1].split(", or")[0] if "ask for" in hint else ""
    if asked:
        fixed = dict(counts)
        for part in asked.split(" with "):
            k, v = part.split("=")
            fixed[k] = int(v)
        split_indices(labels, None, DomainConfig("x", **fixed), seed=0, classes=["a", "b"])


def test_too_many_asked_for_test_is_advised_too():
    labels = np.repeat(np.arange(2), 10)
    with pytest.raises(DomainError) as e:
        split_indices(labels, None, DomainConfig("x", n_per_class=3, n_val_per_class=2, n_test_per_class=12), seed=0,
                      classes=["0", "1"])
    assert str(e.value) == ("domain 'x': class '0' has 10 images, too few for the 12 asked for test "
                            "(n_test_per_class=12) and any for train + val; ask for at most n_test_per_class=5")
    with pytest.raises(DomainError) as e:  # the official test split kept: train and val need 2 outside it
        split_indices(labels, np.arange(20) >= 2, DomainConfig("x", n_val_per_class=1), seed=0, classes=["0", "1"])
    assert str(e.value).endswith("; the class needs at least 2 outside the official test split (one image each for "
                                 "train and val)"), str(e.value)
