"""Bring your own pre-trained model: a factory, given weights, layers by name, the head, the input."""

import importlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from transferscope.cli import main
from transferscope.config import ConfigError, ModelConfig, load_config
from transferscope.models import Hooked, create_model, load_weights
from transferscope.models.external import ModelError
from transferscope.study.plan import make_plan

from .byo_models import odd_cnn
from .conftest import tiny_study_toml

FACTORY = "tests.byo_models:odd_cnn"


def _weights(tmp_path, classes: int = 4, suffix: str = ".safetensors"):
    torch.manual_seed(123)
    net = odd_cnn(width=6, classes=classes)
    path = tmp_path / f"pretrained{suffix}"
    if suffix == ".safetensors":
        save_file(net.state_dict(), str(path))
    else:
        torch.save({"state_dict": net.state_dict()}, path)
    return net, path


def _study(tmp_path, folders, model: str) -> str:
    text = tiny_study_toml(*folders).replace("[model]\nblocks = [1, 1]\nwidth = 4\n", model)
    text = text.replace("[basin]\ncheckpoint_epochs = [1]\n", "")
    p = tmp_path / "study.toml"
    p.write_text(text)
    return str(p)


def test_factory_model_has_the_protocol_and_its_own_init_from_the_seed():
    cfg = ModelConfig(name=FACTORY, kwargs={"width": 6}, head="classifier", layers=["act0", "body_conv"])
    a, b, c = (create_model(cfg, 1, 3, seed=s) for s in (0, 0, 1))
    assert isinstance(a, Hooked) and a.layer_names() == ["act0", "body_conv", "head"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.net.features_in.weight, c.net.features_in.weight)
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    f = a.features(x, ["body_conv", "head"])
    assert f["body_conv"].shape == (5, 12, 8, 8) and torch.allclose(f["head"], a(x))
    assert a.net.classifier.out_features == 3
    assert a.module_of("net.classifier.weight") == "head" and a.module_of("net.body_conv.bias") == "body_conv"
    assert a.module_of("net.features_in.weight") == "features_in"
    # the default layers: the top-level children but the head
    d = create_model(ModelConfig(name=FACTORY, head="classifier"), 1, 3, seed=0)
    assert d.layer_names()[:2] == ["features_in", "act0"] and "classifier" not in d.layer_names()


def test_input_normalisation_is_the_configured_one():
    cfg = ModelConfig(name=FACTORY, head="classifier", mean=[0.2], std=[0.25])
    m = create_model(cfg, 1, 3, seed=0)
    u = torch.rand(2, 1, 16, 16)  # images in [0, 1]
    x = u * 2 - 1  # what every transferscope model is given
    expected = m.net((u - 0.2) / 0.25)
    assert torch.allclose(m(x), expected, atol=1e-5)
    plain = create_model(ModelConfig(name=FACTORY, head="classifier"), 1, 3, seed=0)
    assert torch.equal(plain(x), plain.net(x))
    assert "in_scale" not in m.state_dict()  # not part of the weights


@pytest.mark.parametrize("cfg, match", [
    (ModelConfig(name="no_such_model"), "not a built-in model"),
    (ModelConfig(name="tests.byo_models:nope"), "has no attribute 'nope'"),
    (ModelConfig(name="no_such_package_xyz:f"), "cannot import"),
    (ModelConfig(name="tests.byo_models:not_a_module"), "not an nn.Module"),
    (ModelConfig(name=FACTORY, kwargs={"depth": 3}), "model.kwargs"),
    (ModelConfig(name=FACTORY, head="clasifier"), "close matches: classifier"),
    (ModelConfig(name=FACTORY, head="body_conv"), "not an nn.Linear"),
    (ModelConfig(name=FACTORY, head="classifier", layers=["body"]), "close matches: body_conv"),
    (ModelConfig(name=FACTORY, head="classifier", mean=[0.1, 0.2]), "model.mean"),
    (ModelConfig(name="torchvision:resnet18"), "needs the torchvision package"),
])
def test_a_model_that_cannot_be_built_is_an_error_naming_the_key(cfg, match):
    with pytest.raises(ModelError, match=match):
        create_model(cfg, 1, 3, seed=0)


def test_a_factory_that_raises_is_one_line_naming_it_on_a_dry_run(tmp_path, folders, capsys):
    path = _study(tmp_path, folders, '[model]\nname = "tests.byo_models:raises"\nhead = "classifier"\n')
    assert main(["run", path, "--results", str(tmp_path / "r"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "tests.byo_models:raises" in err and "RuntimeError: this factory needs a file" in err, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err


def test_default_head_is_found_or_asked_for():
    m = create_model(ModelConfig(name=FACTORY), 1, 3, seed=0)  # "classifier" is one of the names tried
    assert m.head_name == "classifier"


def test_adapters_build_through_the_library(monkeypatch):
    import sys
    import types

    calls = []
    tv = types.ModuleType("torchvision")
    tvm = types.ModuleType("torchvision.models")

    def get_model(name, weights=None, **kw):
        calls.append((name, weights, tuple(kw.items())))
        return odd_cnn(**kw)

    tvm.get_model = get_model
    tv.models = tvm
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tvm)
    m = create_model(ModelConfig(name="torchvision:tiny", kwargs={"width": 4}, head="classifier"), 1, 5, seed=0)
    assert set(calls) == {("tiny", None, (("width", 4),))} and m.net.classifier.out_features == 5


def test_weights_files_are_read_safely(tmp_path):
    net, st = _weights(tmp_path)
    _, pt = _weights(tmp_path, suffix=".pt")
    for path in (st, pt):
        state = load_weights(str(path))
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    with pytest.raises(ModelError, match="bad.safetensors"):
        load_weights(str(bad))
    evil = tmp_path / "evil.pt"
    torch.save({"x": object()}, evil)  # a pickle of an object: weights_only refuses it
    with pytest.raises(ModelError, match="evil.pt"):
        load_weights(str(evil))


def test_a_model_that_does_not_take_the_images_is_refused_before_training(tmp_path, folders):
    path = _study(tmp_path, folders, f'[model]\nname = "{FACTORY}"\nhead = "classifier"\nkwargs = {{in_channels = 3}}\n')
    with pytest.raises(ConfigError, match="does not take images of 1 channels"):
        make_plan(load_config(path))


def test_weights_of_other_shapes_are_named_with_both_shapes_before_training(tmp_path, folders, capsys):
    _, w = _weights(tmp_path)  # width 6
    model = f'[model]\nname = "{FACTORY}"\nhead = "classifier"\nweights = "{w}"\nkwargs = {{width = 8}}\n'
    path = _study(tmp_path, folders, model)
    assert main(["run", path, "--results", str(tmp_path / "r"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "model.weights" in err and "features_in.weight: (6, 1, 3, 3) in the file, (8, 1, 3, 3) in the model" in err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "r" / "runs").exists()  # before anything trained


def test_given_weights_are_pinned_by_content(tmp_path, folders):
    _, w = _weights(tmp_path)
    model = f'[model]\nname = "{FACTORY}"\nhead = "classifier"\nweights = "{w}"\nkwargs = {{width = 6}}\n'
    plan = make_plan(load_config(_study(tmp_path, folders, model)))
    p = plan.pretrain()
    assert len(p.model.weights_sha256) == 64
    ri = [r for r in plan.runs if r.arm == "RI-T"]
    # P is not trained: the [pretrain] settings change nothing
    assert make_plan(load_config(_study(tmp_path, folders, model), ["pretrain.epochs=0"])).pretrain().run_id == p.run_id
    # new weights: a new P (and so new P-T), the same RI-T
    _weights(tmp_path, classes=5)
    plan2 = make_plan(load_config(_study(tmp_path, folders, model)))
    assert plan2.pretrain().run_id != p.run_id
    assert [r.run_id for r in plan2.runs if r.arm == "RI-T"] == [r.run_id for r in ri]
    with pytest.raises(ConfigError, match="changed since the study was planned"):
        make_plan(plan.config)


def test_run_analyze_report_with_a_model_of_ones_own(tmp_path, folders, capsys):
    net, w = _weights(tmp_path)
    model = (f'[model]\nname = "{FACTORY}"\nhead = "classifier"\nweights = "{w}"\nkwargs = {{width = 6}}\n'
             'layers = ["act0", "act1", "flat"]\n')
    cfg_path = _study(tmp_path, folders, model)
    res = tmp_path / "r"
    assert main(["run", cfg_path, "--results", str(res), "--jobs", "1", "--no-progress"]) == 0
    plan = make_plan(load_config(cfg_path))
    p = plan.pretrain()
    info = json.loads((res / "runs" / p.run_id / "run.json").read_text())
    assert info["imported_from"]["path"] == str(w) and info["num_classes"] == 4
    from safetensors.torch import load_file

    stored = load_file(str(res / "runs" / p.run_id / "weights.safetensors"))
    assert all(torch.equal(stored[f"net.{k}"], v) for k, v in net.state_dict().items())  # P is the given model
    m = json.loads((res / "runs" / p.run_id / "metrics.json").read_text())
    assert 0 <= m["test_acc"] <= 1  # the head fits the source's 4 classes: P is evaluated there
    assert main(["analyze", str(res), "--no-progress"]) == 0
    index = json.loads((res / "analyses" / "index.json").read_text())
    missing = {k: v for k, v in index["missing"].items() if not k.startswith("basin")}
    assert missing == {}
    names = {k.split("/")[0] for k in index["results"]}
    assert {"mistakes", "cka", "distance", "barrier", "criticality", "flatness", "deviation", "stability",
            "principal", "scores"} <= names
    cka = json.loads((res / "analyses" / index["results"]["cka/tgt"]).read_text())["result"]
    assert cka["pairs"][0]["result"]["layers"] == ["act0", "act1", "flat", "head"]
    crit = json.loads((res / "analyses" / index["results"]["criticality/tgt"]).read_text())["result"]
    modules = crit["models"][0]["result"]["modules"]
    assert "head" in modules and "features_in" in modules and "body_conv" in modules
    # the configured layers are a ReLU, a ReLU and a Flatten: the record and N8's reason say so, and what was used
    assert crit["models"][0]["result"]["layers_without_parameters"] == ["act0", "act1", "flat"]
    claims = json.loads((res / "analyses" / "claims.json").read_text())
    n8 = next(v for v in claims["verdicts"] if v["claim"] == "N8")
    why = n8["targets"][0]["why"]
    assert n8["targets"][0]["outcome"] == "not measured", why
    assert "at least 3 modules" in why and "act0 (ReLU), act1 (ReLU), flat (Flatten)" in why
    assert "features_in, body_conv, head" in why
    pg = json.loads((res / "analyses" / index["results"]["principal/tgt"]).read_text())["result"]
    r = pg["models"][0]["result"]
    assert dict(zip(r["weights"], r["modules"], strict=True))["net.classifier.weight"] == "head"  # left out of L3
    assert main(["report", str(res)]) == 0
    html = (res / "report" / "index.html").read_text()
    assert f"given: {w} (sha256 {info['imported_from']['sha256']})" in html  # where P came from
    assert info["imported_from"]["sha256"] == plan.pretrain().model.weights_sha256


def test_a_factory_that_ignores_the_seed_is_reinitialised_with_a_warning(caplog):
    cfg = ModelConfig(name="tests.byo_models:fixed_init_cnn", head="classifier")
    with caplog.at_level("WARNING"):
        a, b = create_model(cfg, 1, 3, seed=0), create_model(cfg, 1, 3, seed=1)
    assert "do not depend on the seed" in caplog.text
    assert not torch.equal(a.net.features_in.weight, b.net.features_in.weight)
    again = create_model(cfg, 1, 3, seed=0)
    assert torch.equal(a.net.features_in.weight, again.net.features_in.weight)  # still drawn from the seed
    # the architecture's own initialisation is kept when it does depend on the seed: no warning
    caplog.clear()
    with caplog.at_level("WARNING"):
        create_model(ModelConfig(name=FACTORY, head="classifier"), 1, 3, seed=0)
    assert "do not depend on the seed" not in caplog.text


def test_a_module_that_cannot_be_reinitialised_is_named():
    with pytest.raises(ModelError, match="cannot be re-initialised.*scale"):
        create_model(ModelConfig(name="tests.byo_models:fixed_init_stuck", head="classifier"), 1, 3, seed=0)


def test_a_plugin_of_the_entry_point_group_is_found(monkeypatch):
    from importlib.metadata import EntryPoint

    import transferscope.models.external as ext

    ep = EntryPoint(name="odd", value="tests.byo_models:odd_cnn", group=ext.ENTRY_POINT_GROUP)
    monkeypatch.setattr(ext, "entry_points", lambda group: [ep] if group == ext.ENTRY_POINT_GROUP else [])
    m = create_model(ModelConfig(name="odd", head="classifier", kwargs={"width": 4}), 1, 2, seed=0)
    assert m.net.classifier.out_features == 2 and m.net.features_in.out_channels == 4
    with pytest.raises(ModelError, match=r"\(odd\)"):  # an unknown name lists the plugins there are
        create_model(ModelConfig(name="odd2"), 1, 2, seed=0)


def test_a_given_p_needs_no_source(tmp_path, folders):
    """No [source]: P is the given model; what needs source images says 'not measured', the rest is computed.
    Through the Python API this time."""
    from transferscope.api import analyze_study, render, run_study
    from transferscope.claims import NOT_MEASURED

    _, w = _weights(tmp_path)
    text = tiny_study_toml(*folders).replace("[model]\nblocks = [1, 1]\nwidth = 4\n",
                                             f'[model]\nname = "{FACTORY}"\nweights = "{w}"\nkwargs = {{width = 6}}\n')
    text = text.replace("[basin]\ncheckpoint_epochs = [1]\n", "")
    start, end = text.index("[source]"), text.index("[[targets]]")
    p = tmp_path / "nosource.toml"
    p.write_text(text[:start] + text[end:])
    cfg = load_config(p)
    assert not cfg.has_source
    res = tmp_path / "r"
    summary = run_study(p, res, jobs=1, show_progress=False)
    assert not summary.failed and not summary.blocked
    a = analyze_study(res, show_progress=False)
    assert {k for k in a.run.missing if not k.startswith("basin")} == set()
    scores = a.run.results["scores/tgt"]
    block = scores.at(16)
    assert math.isnan(block.mmd2_rbf) and math.isfinite(block.leep)  # MMD needs source images; LEEP does not
    l4 = next(v for v in a.primary if v.claim == "L4")
    assert l4.outcome == NOT_MEASURED or any(math.isnan(e.value) for e in l4.effects)
    assert "given as" in a.primary[0].conditional_on
    html = render(res).read_text()
    assert "none (P is given)" in html
    with pytest.raises(ConfigError, match=r"source: expected a \[source\] table"):
        make_plan(load_config(p, ['model.weights=""']))


def test_basin_sweep_from_given_checkpoints(tmp_path, folders):
    from safetensors.torch import load_file

    from transferscope.api import analyze_study, run_study

    ckpts = []
    for i in range(2):
        torch.manual_seed(10 + i)
        path = tmp_path / f"ckpt{i}.safetensors"
        save_file(odd_cnn(width=6, classes=4).state_dict(), str(path))
        ckpts.append(path)
    _, w = _weights(tmp_path)
    model = f'[model]\nname = "{FACTORY}"\nhead = "classifier"\nweights = "{w}"\nkwargs = {{width = 6}}\n'
    text = Path(_study(tmp_path, folders, model)).read_text() + \
        "\n[basin]\ncheckpoints = [" + ", ".join(f'"{c}"' for c in ckpts) + "]\n"
    p = tmp_path / "basin.toml"
    p.write_text(text)
    plan = make_plan(load_config(p))
    assert sorted({r.parent_checkpoint for r in plan.runs if r.arm == "P-T"}) == [-1.0, 1.0, 2.0]
    res = tmp_path / "r"
    assert not run_study(p, res, jobs=1, show_progress=False).failed
    # P-T from position 1 starts from the first given checkpoint's body
    run = next(r for r in plan.runs if r.arm == "P-T" and r.parent_checkpoint == 1.0 and r.seed == 0)
    init = load_file(str(res / "runs" / run.run_id / "init.safetensors"))
    first = load_file(str(ckpts[0]))
    assert torch.equal(init["net.body_conv.weight"], first["body_conv.weight"])
    a = analyze_study(res, show_progress=False)
    basin = a.run.results["basin/tgt"]
    assert sorted({r.checkpoint for r in basin.rows}) == [1.0, 2.0, 3.0] and basin.final_checkpoint == 3.0
    n9 = next(v for v in a.primary if v.claim == "N9")
    assert n9.targets and n9.targets[0].effects  # measured, from the given checkpoints
    # a changed checkpoint is refused by name
    save_file(odd_cnn(width=6, classes=4).state_dict(), str(ckpts[1]))
    with pytest.raises(ConfigError, match=r"basin.checkpoints\[1\].*changed"):
        make_plan(plan.config)
    with pytest.raises(ConfigError, match="basin.checkpoints: given checkpoints belong to a given P"):
        make_plan(load_config(p, ['model.weights=""', 'model.name="resnet"']))


def test_a_library_that_fails_as_it_is_imported_is_one_line_naming_why(tmp_path, monkeypatch):
    """timm installed beside a torchvision built for another torch (a CUDA wheel beside the CPU torch) fails as it
    is imported: one line saying so, not a traceback, and not "timm is not installed"."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "timm", raising=False)
    for body, match in (("raise RuntimeError('operator torchvision::nms does not exist')\n",
                         "timm is installed but importing it raised RuntimeError: operator torchvision::nms"),
                        ("import torchvision_missing_xyz.ops\n",
                         "timm is installed but importing it needs torchvision_missing_xyz, which is not")):
        (tmp_path / "timm.py").write_text(body)
        importlib.invalidate_caches()
        monkeypatch.delitem(sys.modules, "timm", raising=False)
        with pytest.raises(ModelError, match=match):
            create_model(ModelConfig(name="timm:resnet18"), 1, 3, seed=0)
