"""transferscope export model: a run's weights load into a fresh model (or the user's own module) and predict as the
run's model does; every error names its input."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from transferscope import __version__
from transferscope.cli import main
from transferscope.config import load_config
from transferscope.export import ExportError, export_model
from transferscope.models import create_model, to_input
from transferscope.store import Store, file_sha256
from transferscope.study.plan import make_plan
from transferscope.study.runner import load_run_model

from .byo_models import odd_cnn
from .conftest import make_imagefolder, tiny_study_toml

BYO = '[model]\nname = "tests.byo_models:odd_cnn"\nhead = "classifier"\nkwargs = {width = 6}\n'


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Two tiny finished studies (one seed, unshuffled): the built-in ResNet, and a model from a factory (whose
    target is RGB at 20x20: converted to the study's grey 16x16)."""
    root = tmp_path_factory.mktemp("export")
    src = make_imagefolder(root / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(root / "tgt", n_classes=3, per_class=24, seed=2)
    rgb = make_imagefolder(root / "tgt-rgb", n_classes=3, per_class=24, seed=2, size=20, mode="RGB")
    out = {}
    for name, model, target in (("resnet", "", tgt), ("byo", BYO, rgb)):
        text = tiny_study_toml(src, target, name=name).replace("seeds = [0, 1]", "seeds = [0]")
        text = text.replace("block_sizes = [16, 4]", "block_sizes = [16]")
        text = text.replace("[data]\n", f'[data]\ncache_dir = "{root / "cache"}"\n')
        if model:
            text = text.replace("[model]\nblocks = [1, 1]\nwidth = 4\n", model)
        path = root / f"{name}.toml"
        path.write_text(text)
        res = root / f"results-{name}"
        assert main(["run", str(path), "--results", str(res), "--jobs", "1", "--no-progress"]) == 0
        out[name] = (make_plan(load_config(path)), res)
    return out


def _finetuned(plan):
    return next(r for r in plan.runs if r.arm == "P-T" and r.parent_checkpoint < 0)


def _images(spec, n=6):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, spec.data.channels, spec.data.image_size, spec.data.image_size), generator=g)
    return to_input(x.to(torch.uint8))


def test_an_exported_finetuned_resnet_predicts_as_the_run(studies, tmp_path, capsys):
    plan, res = studies["resnet"]
    spec = _finetuned(plan)
    out = tmp_path / "exported" / "model.safetensors"  # the folder is made
    assert main(["export", "model", str(res), spec.run_id, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    config = json.loads((tmp_path / "exported" / "model.json").read_text())
    info = json.loads((res / "runs" / spec.run_id / "run.json").read_text())
    assert config["run_id"] == spec.run_id and config["arm"] == "P-T" and config["seed"] == 0
    assert config["spec"] == info["spec"] and config["spec"]["model"]["width"] == 4
    assert config["classes"] == ["class0", "class1", "class2"] and config["num_classes"] == 3
    assert config["sha256"] == file_sha256(out) and config["transferscope"] == __version__
    assert config["prefix_stripped"] == "" and config["which"] == "weights"
    assert config["input"]["channels"] == 1 and config["input"]["mean"] == [0.5]
    model = create_model(spec.model, spec.data.channels, config["num_classes"], seed=123)
    model.load_state_dict(load_file(str(out)), strict=True)
    model.eval()
    expected = load_run_model(Store(res), spec).eval()
    x = _images(spec)
    with torch.no_grad():
        assert torch.equal(model(x), expected(x))
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["run_id"] == spec.run_id


def test_init_and_checkpoints_are_exported_by_name(studies, tmp_path):
    plan, res = studies["resnet"]
    p = plan.pretrain()
    for which, stored in (("init", "init.safetensors"), ("epoch_1", "checkpoints/epoch_1.safetensors")):
        weights, config = export_model(res, p.run_id, tmp_path / f"{which}.safetensors", which=which)
        a, b = load_file(str(weights)), load_file(str(res / "runs" / p.run_id / stored))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert json.loads(config.read_text())["which"] == which


def test_a_wrapped_model_loads_into_ones_own_module(studies, tmp_path):
    plan, res = studies["byo"]
    spec = _finetuned(plan)
    weights, config_path = export_model(res, spec.run_id, tmp_path / "mine.safetensors")
    config = json.loads(config_path.read_text())
    assert config["prefix_stripped"] == "net." and config["num_classes"] == 3
    state = load_file(str(weights))
    assert not any(k.startswith("net.") for k in state)
    net = odd_cnn(width=6, classes=config["num_classes"])
    net.load_state_dict(state, strict=True)
    net.eval()
    expected = load_run_model(Store(res), spec).eval()
    x = _images(spec)
    with torch.no_grad():
        assert torch.equal(net(x), expected(x))  # no input normalisation configured: the module takes x as is


def test_runs_record_their_domain_conversion(studies):
    plan, res = studies["byo"]
    info = json.loads((res / "runs" / _finetuned(plan).run_id / "run.json").read_text())
    n = info["n_train"] + info["n_val"] + info["n_test"]
    assert info["domain_meta"]["conversion"] == {"colour": {"from": {"RGB": n}, "to": "L"},
                                                 "size": {"from": {"20x20": n}, "to": "16x16", "padded": 0},
                                                 "images": n, "converted": n}
    p_info = json.loads((res / "runs" / plan.pretrain().run_id / "run.json").read_text())
    assert p_info["domain_meta"]["conversion"] == {}  # the source is grey at the study's size


def _copy(res, tmp_path):
    return shutil.copytree(res, tmp_path / "copy")


def test_errors_name_their_input(studies, tmp_path, capsys):
    plan, res = studies["resnet"]
    rid = _finetuned(plan).run_id
    out = str(tmp_path / "m.safetensors")

    def error(*args) -> str:
        assert main(["export", "model", *args]) == 2
        return capsys.readouterr().err

    e = error(str(tmp_path), rid, "--out", out)
    assert f"{tmp_path}: no study.json" in e
    typo = rid[:-1] + ("0" if rid[-1] != "0" else "1")
    assert f"run {typo!r}: no such run" in (e := error(str(res), typo, "--out", out)) and f"close matches: {rid}" in e
    e = error(str(res), rid, "--out", out, "--which", "epoch_7")
    assert "--which 'epoch_7'" in e and "it has weights, init" in e
    e = error(str(res), plan.pretrain().run_id, "--out", out, "--which", "epoch_7")
    assert "weights, init, epoch_0, epoch_1" in e
    (tmp_path / "a_file").write_text("")
    e = error(str(res), rid, "--out", str(tmp_path / "a_file" / "m.safetensors"))
    assert "--out" in e and "a_file" in e and "cannot be written" in e
    assert "must not end in .json" in error(str(res), rid, "--out", str(tmp_path / "m.json"))
    assert "is a folder" in error(str(res), rid, "--out", str(tmp_path))
    assert not (tmp_path / "m.safetensors").exists()


def test_a_failed_or_changed_run_is_refused(studies, tmp_path):
    plan, res = studies["resnet"]
    rid = _finetuned(plan).run_id
    copy = _copy(res, tmp_path)
    weights = copy / "runs" / rid / "weights.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    with pytest.raises(ExportError, match=rf"run '{rid}' in .*: weights.safetensors changed since the run ended"):
        export_model(copy, rid, tmp_path / "m.safetensors")
    run_json = copy / "runs" / rid / "run.json"
    info = json.loads(run_json.read_text())
    info.update(status="failed", reason="diverged: loss is nan\nmore")
    run_json.write_text(json.dumps(info))
    with pytest.raises(ExportError, match=rf"run '{rid}' in .* is not finished \(it failed: diverged: loss is nan;"):
        export_model(copy, rid, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
