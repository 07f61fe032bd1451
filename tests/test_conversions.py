"""Every domain is brought to the study's channels and image size: what that changes is recorded in the domain's
metadata (which run.json stores), logged once per load, and kept with the data cache."""

import logging

import numpy as np
import pytest
from PIL import Image

from transferscope.config import DataConfig, DomainConfig
from transferscope.data import load_domain
from transferscope.data.images import MAX_SIZES, conversion_record

from .conftest import make_imagefolder

LOGGER = "transferscope.data.domain"


def _cfg(root):
    return DomainConfig("imagefolder", path=str(root), n_val_per_class=2, n_test_per_class=3)


def _logged(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and "converted" in r.getMessage()]


def test_an_rgb_folder_in_a_grey_study_records_and_logs_its_conversion(tmp_path, caplog):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=12, size=20, mode="RGB")
    Image.new("RGB", (24, 12), (200, 10, 10)).save(root / "class1" / "wide.png")
    data = DataConfig(image_size=16, channels=1)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        d = load_domain(_cfg(root), data)
    n = len(d.train) + len(d.val) + len(d.test)
    assert n == 25
    assert d.meta["conversion"] == {"colour": {"from": {"RGB": 25}, "to": "L"},
                                    "size": {"from": {"20x20": 24, "24x12": 1}, "to": "16x16", "padded": 1},
                                    "images": 25, "converted": 25}
    [record] = _logged(caplog)  # once for the domain, not per split or per image
    # a user's own images lose their colour and are shrunk: a warning that says how to keep them
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "their colour is lost (set [data] channels = 3" in message and "shrunk to 16x16 (most are 20x20" in message
    assert "'imagefolder': 25 of 25 images" in message and "RGB (25) -> grey" in message
    assert "20x20 (24), 24x12 (1) -> 16x16, 1 padded to a square first" in message
    assert d.shuffled(4, 0).meta["conversion"] == d.meta["conversion"]  # what the runs store


def test_the_record_survives_the_cache(tmp_path, caplog, monkeypatch):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=12, size=20, mode="RGB")
    data = DataConfig(image_size=16, channels=1)
    first = load_domain(_cfg(root), data)
    assert list((tmp_path / "cache").glob("imagefolder-*.npz"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again: the cache was not used")

    monkeypatch.setattr("transferscope.data.reading.pil_to_array", no_decoding)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        cached = load_domain(_cfg(root), data)
    assert cached.meta["conversion"] == first.meta["conversion"]
    assert cached.meta["conversion"]["colour"] == {"from": {"RGB": 24}, "to": "L"}
    [record] = _logged(caplog)
    assert record.levelno == logging.INFO  # read back from the cache: said again, warned about once only


def test_a_grey_folder_at_the_study_size_records_no_conversion(tmp_path, caplog):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=12, size=16)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        d = load_domain(_cfg(root), DataConfig(image_size=16, channels=1))
        again = load_domain(_cfg(root), DataConfig(image_size=16, channels=1))  # from the cache
    assert d.meta["conversion"] == {} and again.meta["conversion"] == {}
    assert _logged(caplog) == []


def test_a_grey_folder_in_an_rgb_study_records_grey_to_rgb(tmp_path):
    root = make_imagefolder(tmp_path / "f", n_classes=2, per_class=12, size=16)
    d = load_domain(_cfg(root), DataConfig(image_size=16, channels=3))
    assert d.meta["conversion"] == {"colour": {"from": {"L": 24}, "to": "RGB"}, "images": 24, "converted": 24}


def test_many_sizes_are_summed_up():
    sizes = np.array([(30 + i, 30 + i) for i in range(MAX_SIZES + 5)] + [(16, 16)] * 3)
    modes = np.full(len(sizes), "L")
    r = conversion_record(modes, sizes, 1, 16)
    assert len(r["size"]["from"]) == MAX_SIZES and r["size"]["other"] == 5
    assert r["images"] == MAX_SIZES + 8 and r["converted"] == MAX_SIZES + 5  # 16x16 is the size asked for
    assert "colour" not in r


@pytest.mark.parametrize("name", ["fashion-mnist", "textures"])
def test_builtin_array_domains_record_their_conversion(name):
    d = load_domain(DomainConfig(name, n_per_class=5, n_val_per_class=2, n_test_per_class=3),
                    DataConfig(image_size=32, channels=3))
    c = d.meta["conversion"]
    assert c["colour"]["to"] == "RGB" and c["images"] == len(d.train) + len(d.val) + len(d.test)
    if name == "fashion-mnist":
        assert c["size"]["from"] == {"28x28": c["images"]} and c["colour"]["from"] == {"L": c["images"]}
