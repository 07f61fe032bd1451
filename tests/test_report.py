"""The HTML report of a small finished study: rendered without torch, opened in headless Chromium (no console
errors, every image loads, no request leaves the report's folder), user names escaped, missing inputs noted."""

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transferscope.cli import main

from .conftest import tiny_study_toml

EVIL = "<script>alert('x')</script>"

# Injected into a copy of the page by the test only (the report itself has no script): after load, write what
# the browser fetched and how every image decoded into the DOM, which --dump-dom then prints.
_PROBE = """<script>window.addEventListener('load', () => {
  document.body.setAttribute('data-probe', JSON.stringify({
    images: Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth]),
    resources: performance.getEntriesByType('resource').map(e => e.name)}));
});</script>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: `make test` installs it (Debian package chromium)")
    return exe


def open_in_chromium(page: Path, tmp: Path) -> tuple[dict, list[str]]:
    """Load ``page`` (a copy with the probe) in headless Chromium; return the probe's record and the console lines."""
    probed = page.with_name("probed-" + page.name)
    probed.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
           "--disable-extensions", "--no-first-run", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    probed.unlink()
    m = re.search(r'data-probe="([^"]*)"', p.stdout)
    assert m, f"the page did not finish loading in chromium:\n{p.stderr[-2000:]}"
    console = [line for line in p.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(m.group(1))), console


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    from .conftest import make_imagefolder

    tmp = tmp_path_factory.mktemp("report")
    src = make_imagefolder(tmp / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(tmp / "tgt", n_classes=3, per_class=24, seed=2)
    cfg = tiny_study_toml(src, tgt).replace('label = "tgt"', f'label = "{EVIL}"')
    (tmp / "study.toml").write_text(cfg)
    res = tmp / "results"
    assert main(["run", str(tmp / "study.toml"), "--results", str(res), "--jobs", "1", "--no-progress"]) == 0
    assert main(["analyze", str(res), "--no-progress"]) == 0
    return res


def test_report_renders_without_torch(finished_study, tmp_path):
    out = tmp_path / "rep"
    code = ("import sys\nfrom transferscope.report import render_report\n"
            f"render_report({str(finished_study)!r}, {str(out)!r})\n"
            "assert 'torch' not in sys.modules, 'the report imported torch'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    page = (out / "index.html").read_text()
    for section in ("The study", "Transfer gain", "Block shuffle", "Mistakes", "Feature similarity",
                    "Performance barrier", "Module criticality", "Pre-training checkpoints", "Verdicts"):
        assert section in page
    # the verdicts come first, each effect with its interval, and the forest plot
    assert page.index('id="claims"') < page.index('id="study"')
    assert re.search(r"[+-]\d[.\d]*(e-?\d+)? \[[+-]", page) and "conditional on one pre-trained model P" in page
    assert "Missing:" not in page  # the study is complete: every figure is drawn
    # the gain table states each target's test images and one run's test noise beside the seeds' spread
    from transferscope.api import study_folder
    from transferscope.study import make_plan, results_table
    from transferscope.study.summary import test_noise

    store, cfg = study_folder(finished_study)
    row = next(x for x in results_table(make_plan(cfg, check=False), store) if x["block_size"] == cfg.data.image_size)
    gain = page[page.index('id="gain"'):page.index('id="shuffle"')]
    assert "test noise of one run" in gain and row["n_test"] > 0
    assert re.search(rf"<td>{row['n_test']}</td>\s*<td>{test_noise(row):.3f}</td>", gain), gain[-3000:]
    pngs = sorted(x.name for x in out.glob("*.png"))
    for name in ("gain.png", "shuffle.png", "curves.png", "cka.png", "distance.png", "barrier.png", "basin.png",
                 "forest-N1.png", "forest-L1.png"):
        assert name in pngs
    assert any(n.startswith("criticality-") for n in pngs) and any(n.startswith("mistakes-") for n in pngs)
    assert sum(n.startswith("samples-") for n in pngs) == 2  # source and target
    referenced = set(re.findall(r'<img src="([^"]+)"', page))
    assert referenced == set(pngs)


def test_report_in_chromium_loads_every_image_and_stays_in_its_folder(finished_study, tmp_path):
    assert main(["report", str(finished_study), "--out", str(tmp_path / "rep")]) == 0
    page = tmp_path / "rep" / "index.html"
    probe, console = open_in_chromium(page, tmp_path)
    assert console == [], console
    assert len(probe["images"]) >= 10
    folder = (tmp_path / "rep").as_uri() + "/"
    for src, complete, width in probe["images"]:
        assert src.startswith(folder), src
        assert complete and width > 0, f"image did not load: {src}"
    assert all(r.startswith(folder) for r in probe["resources"]), probe["resources"]
    # no reference of any kind to another place: every src/href is a file name in the folder or an anchor
    text = page.read_text()
    for ref in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert ref.startswith("#") or ("/" not in ref and ":" not in ref), ref


def test_the_chromium_check_can_fail(tmp_path):
    """The same harness on a page with a broken image, a console error and an outside request reports all three."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="nope.png"><img src="http://192.0.2.1/x.png">'
                    '<script>console.error("bad")</script></body></html>')
    probe, console = open_in_chromium(page, tmp_path)
    assert any('"bad"' in line for line in console)
    widths = {src.rsplit("/", 1)[-1]: w for src, _, w in probe["images"]}
    assert widths == {"nope.png": 0, "x.png": 0}
    assert any(r.startswith("http://192.0.2.1") for r in probe["resources"])


def test_user_names_are_escaped(finished_study, tmp_path):
    assert main(["report", str(finished_study), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "index.html").read_text()
    assert EVIL not in text
    assert html.escape(EVIL) in text or "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    assert "<script" not in text  # the report carries no script at all


def test_missing_inputs_are_said_not_fatal(tmp_path, folders, capsys):
    """A study with no analyses yet (and runs still to do): the report is written and says what is missing."""
    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    res = tmp_path / "r"
    res.mkdir()
    from transferscope.config import load_config, to_dict
    from transferscope.store import dumps

    (res / "study.json").write_text(dumps(to_dict(load_config(p))))
    assert main(["report", str(res)]) == 0
    text = (res / "report" / "index.html").read_text()
    assert text.count("Missing:") >= 6 and "transferscope analyze" in text
    assert "0 done, 0 failed, 11 not run, of 11" in text
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no study.json" in capsys.readouterr().err


def test_an_old_shape_result_file_is_said_not_fatal(finished_study, tmp_path):
    """A result file of another layout (e.g. written by an older version) is not misread: its section says the
    file is unreadable, every other section is drawn from the typed records."""
    from transferscope import jsonio
    from transferscope.report.reader import Reader

    root = tmp_path / "copy"
    shutil.copytree(finished_study, root, ignore=shutil.ignore_patterns("report"))
    index = jsonio.read(root / "analyses" / "index.json")
    name = next(n for n in index["results"] if n.startswith("barrier/"))
    path = root / "analyses" / index["results"][name]
    d = jsonio.read(path)
    d["result"] = {"rows": [{"kind": "P-T/P-T", "barrier": 0.1}]}  # not the pairs layout
    path.write_text(jsonio.dumps(d))
    r = Reader(root)
    assert name not in r.results and name in r.unreadable
    assert any(k.startswith("mistakes/") for k in r.results)
    assert main(["report", str(root), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "index.html").read_text()
    assert "unreadable result files" in text and "6. Performance barrier" in text
    assert "this section could not be drawn" not in text


def test_the_metric_word_reads_a_generator_once():
    from transferscope.metrics import metric_label, metric_labels

    assert metric_labels(m for m in ["auc", "auc"]) == "mean AUC"
    assert metric_labels(m for m in ["acc", "auc"]) == "accuracy or mean AUC"
    assert metric_labels(iter(())) == "accuracy"
    # the short forms of the tables' column heads, in their joiners
    assert metric_labels(["auc", "acc", "acc"], "/", short=True) == "acc/AUC"
    assert metric_labels(["auc"], " / ", short=True) == "AUC" and metric_labels([], "/", short=True) == "acc"
    assert (metric_label("acc"), metric_label("auc"), metric_label("auc", short=True)) == ("accuracy", "mean AUC", "AUC")


def test_every_figure_prints_plain_numbers_and_embeds_truetype(finished_study, tmp_path):
    """No figure writes raw mathtext (a log axis' ``$\\mathdefault{6\\times10^{1}}$``) in any format, and PDFs embed
    TrueType fonts, not the Type 3 that journals refuse."""
    out = tmp_path / "rep"
    assert main(["report", str(finished_study), "--out", str(out), "--figures", "png,svg,pdf"]) == 0
    svgs, pdfs = sorted(out.glob("*.svg")), sorted(out.glob("*.pdf"))
    assert len(svgs) >= 10 and len(pdfs) == len(svgs)
    logs = 0
    for svg in svgs:
        text = " ".join(re.findall(r"<!-- (.*?) -->", svg.read_text()))  # every text drawn, as matplotlib notes it
        assert "\\mathdefault" not in text and "$" not in text.replace(EVIL, ""), (svg.name, text[:300])
        logs += svg.stem in ("distance", "flatness", "deviation", "stability", "principal")
    assert logs == 5  # the five figures with log axes were drawn and checked
    for pdf in pdfs:
        raw = pdf.read_bytes()
        assert b"/Type3" not in raw and (b"/TrueType" in raw or b"/CIDFontType2" in raw), pdf.name


def test_a_score_with_no_value_is_a_panel_that_says_why(tmp_path):
    from transferscope.report import figures
    from transferscope.vocab.records import Correlation, RelatePoint, RelateResult

    nan = float("nan")
    pts = tuple(RelatePoint(t, b, g, 0.0, nan, 0.5 + g, nan, -0.1 * g) for t, b, g in
                (("a", 16, 0.1), ("a", 4, 0.05), ("b", 16, 0.2)))
    corr = {f"{s}/gain": Correlation(nan, nan, nan, 0, nan) for s in ("leep", "logme", "h_score", "mmd2_rbf")}
    with figures.figure_formats(("svg",)):
        f = figures.score_scatter(tmp_path / "s.png", RelateResult(pts, corr),
                                  {"leep": "not applicable to multi-label targets"})
    text = " ".join(" ".join(re.findall(r"<!-- (.*?) -->", f.read_text(), re.DOTALL)).split())
    assert "not applicable to multi-label targets" in text and "not applicable: not applicable" not in text
    assert "not applicable: no value on any target" in text  # H-score: no reason given, none invented
    assert "rho +nan" not in text and "LogME of P on the target" in text


def test_the_glance_table_has_one_row_per_claim_and_target_with_its_headline_effect(finished_study, tmp_path):
    """Each (claim, target) once, with its outcome, the effect that speaks for it and how many more there are."""
    from transferscope.claims.compare import load_verdicts

    out = tmp_path / "rep"
    assert main(["report", str(finished_study), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    glance = page[page.index('id="claims"'):]
    glance = glance[glance.index("<table>"):glance.index("</table>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", glance, re.S)[1:]
    vs = load_verdicts(finished_study)
    assert len(rows) == sum(len(v.targets) for v in vs)
    pairs = [(x, t) for x in vs for t in x.targets]
    for row, (v, t) in zip(rows, pairs, strict=True):
        cells = [html.unescape(c.strip()) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        assert cells[:3] == [v.claim, t.target, t.outcome], (cells, v.claim, t.target)
        more = len(t.effects) - 1
        assert (f"(+{more} more)" in cells[3]) == (more > 0), cells[3]
        assert "nan" not in cells[4]
