"""transferscope report --figures png,svg,pdf: every figure in each format (valid SVG, PDF), linked from the page."""

import re
import xml.etree.ElementTree as ET

import pytest

from transferscope.cli import main

from .conftest import make_imagefolder, tiny_study_toml


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    src = make_imagefolder(root / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(root / "tgt", n_classes=3, per_class=24, seed=2)
    text = tiny_study_toml(src, tgt).replace("seeds = [0, 1]", "seeds = [0]").replace("block_sizes = [16, 4]",
                                                                                       "block_sizes = [16]")
    (root / "s.toml").write_text(text.replace("[basin]\ncheckpoint_epochs = [1]\n", ""))
    res = root / "res"
    assert main(["run", str(root / "s.toml"), "--results", str(res), "--jobs", "1", "--no-progress"]) == 0
    return res


def test_every_figure_in_every_format_and_linked(study, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(study), "--out", str(out), "--figures", "png,svg,pdf"]) == 0
    page = (out / "index.html").read_text()
    shown = re.findall(r'<img src="([^"]+)"', page)
    assert len(shown) >= 3 and all(s.endswith(".png") for s in shown)
    for png in shown:
        stem = png.removesuffix(".png")
        assert (out / png).read_bytes().startswith(b"\x89PNG")
        assert ET.parse(out / f"{stem}.svg").getroot().tag == "{http://www.w3.org/2000/svg}svg"
        assert (out / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
        assert f'<a href="{stem}.svg">SVG</a>' in page and f'<a href="{stem}.pdf">PDF</a>' in page
    assert {p.suffix for p in out.iterdir()} == {".html", ".png", ".svg", ".pdf"}
    assert len(list(out.glob("*.svg"))) == len(list(out.glob("*.pdf"))) == len(shown)


def test_svg_only_is_shown_and_a_bad_format_is_refused(study, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(study), "--out", str(out), "--figures", "svg"]) == 0
    shown = re.findall(r'<img src="([^"]+)"', (out / "index.html").read_text())
    assert shown and all(s.endswith(".svg") for s in shown) and not list(out.glob("*.png"))
    assert main(["report", str(study), "--out", str(out), "--figures", "png,eps"]) == 2
    assert "eps is not one" in capsys.readouterr().err


def test_one_seed_has_no_spread_and_says_so(study, tmp_path):
    """With one seed the spread over seeds is undefined: n/a, never 0.000 (as if the seeds agreed)."""
    from transferscope.api import study_folder
    from transferscope.study import make_plan
    from transferscope.study.summary import format_table, results_table

    store, cfg = study_folder(study)
    rows = results_table(make_plan(cfg, check=False), store)
    assert rows and all(r["P-T"].n == 1 for r in rows)
    text = format_table(rows, 1, 0.9)
    assert "±n/a" in text and "±0.000" not in text
    out = tmp_path / "rep"
    assert main(["report", str(study), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "± n/a" in page and "± 0.000" not in page
