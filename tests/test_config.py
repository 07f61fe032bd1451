import pytest

from transferscope.config import ConfigError, StudyConfig, apply_overrides, from_dict, load_config, to_dict
from transferscope.study import make_plan

from .conftest import tiny_study_toml


def _load(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return load_config(p)


def test_builtin_studies_load_and_plan():
    for profile in ("quick", "paper"):
        cfg = load_config(profile)
        plan = make_plan(cfg)
        arms = [r.arm for r in plan.runs] + [t.arm for t, _ in plan.deferred]
        assert arms[0] == "P" and arms.count("P") == 1
        from transferscope.claims.stats import MIN_SEEDS

        # enough seeds for the decision rule to decide anything; an unshuffled and a shuffled block size at least
        assert len(cfg.seeds) >= MIN_SEEDS and len(cfg.block_sizes) >= (2 if profile == "quick" else 3)
        assert cfg.data.image_size in cfg.block_sizes
        assert arms.count("RI-T") == len(cfg.targets) * len(cfg.block_sizes) * len(cfg.seeds)
        # chosen per target, and for P-T also per checkpoint of the basin sweep (basin.lr = "own")
        starts = {"P-T": 1 + len(cfg.basin.checkpoint_epochs), "RI-T": 1}
        assert cfg.basin.lr == "own" and cfg.basin.checkpoint_epochs
        for arm, grid in (("P-T", cfg.finetune.lr_grid), ("RI-T", cfg.scratch.lr_grid)):
            assert sum(r.arm == arm for r in plan.tuning) == (len(cfg.targets) - 1 + starts[arm]) * len(grid)


def test_round_trip_through_dict():
    cfg = load_config("quick")
    assert from_dict(StudyConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "edit, message",
    [
        (("[finetune]", "[finetune]\nlearning_rate = 0.1"), r"finetune\.learning_rate: unknown key; valid keys of finetune"),
        (("lr = 0.02", 'lr = "fast"'), r"finetune\.lr: expected a number, got 'fast'"),
        (("epochs = 2\nspeed_epochs = 1\nbatch_size = 16", "epochs = 2.5\nspeed_epochs = 1\nbatch_size = 16"),
         r"pretrain\.epochs: expected an integer, got 2\.5"),
        (("block_sizes = [16, 4]", "block_sizes = [16, 5]"), r"block_sizes\[1\]: 5 does not divide the image size 16"),
        (('label = "tgt"', 'label = "tgt"\nname = "nope"'), None),  # duplicate key: a TOML error
        (("[model]", "[model]\nnorm = \"layernorm\""), r"model\.norm: expected 'none' or 'batchnorm' or 'groupnorm'"),
        (("checkpoint_epochs = [1]", "checkpoint_epochs = [0.5]"), r"basin\.checkpoint_epochs\[0\]: 0\.5 is not a kept"),
        (("seeds = [0, 1]", "seeds = [0, 0]"), r"seeds: expected a non-empty list of distinct"),
    ],
)
def test_config_errors_name_the_key(tmp_path, folders, edit, message):
    text = tiny_study_toml(*folders)
    assert edit[0] in text
    cfg_text = text.replace(edit[0], edit[1], 1)
    with pytest.raises(ConfigError, match=message or "not valid TOML"):
        make_plan(_load(tmp_path, cfg_text))


def test_unknown_domain_lists_the_registered_ones(tmp_path, folders):
    text = tiny_study_toml(*folders).replace('name = "imagefolder"\nlabel', 'name = "quickdraw"\nlabel', 1)
    with pytest.raises(ConfigError, match=r"targets\[0\]\.name: domain 'quickdraw': unknown; registered domains are .*clipart"):
        make_plan(_load(tmp_path, text))


def test_missing_required_key(tmp_path):
    with pytest.raises(ConfigError, match=r"name: missing"):
        _load(tmp_path, '[[targets]]\nname = "clipart"\n')
    # a study without [source] is read (a given P needs none) and refused when P would have to be trained
    from transferscope.study.plan import make_plan

    cfg = _load(tmp_path, 'name = "x"\n[[targets]]\nname = "clipart"\n')
    with pytest.raises(ConfigError, match=r"source: expected a \[source\] table"):
        make_plan(cfg)


def test_overrides_are_typed():
    d = apply_overrides({"finetune": {"lr": 0.1}}, ["finetune.lr=0.01", "seeds=[3,4]", "name=abc"])
    assert d == {"finetune": {"lr": 0.01}, "seeds": [3, 4], "name": "abc"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["finetune.lr"])


def test_run_ids_change_with_what_matters_only(tmp_path, folders):
    cfg = _load(tmp_path, tiny_study_toml(*folders))
    ids = [r.run_id for r in make_plan(cfg).runs]
    relabelled = make_plan(_load(tmp_path, tiny_study_toml(*folders).replace('label = "tgt"', 'label = "renamed"', 1)))
    assert [r.domain.display for r in relabelled.runs][1] == "renamed"
    assert ids == [r.run_id for r in relabelled.runs]  # a new label does not retrain anything
    _load(tmp_path, tiny_study_toml(*folders))
    lr = make_plan(load_config(tmp_path / "s.toml", ["finetune.lr=0.03"]))
    changed = {a.run_id for a in lr.runs} ^ set(ids)
    # only the P-T runs change: P and RI-T do not depend on the fine-tuning learning rate
    assert changed and all("P-T-" in r for r in changed)


def test_example_configs_validate(tmp_path):
    from pathlib import Path

    from safetensors.torch import save_file

    from .byo_models import odd_cnn

    examples = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))
    assert examples
    w = tmp_path / "w.safetensors"
    save_file(odd_cnn(width=16, in_channels=3).state_dict(), str(w))
    for p in examples:
        assert p.read_text().startswith("#"), f"{p.name} should begin with the command that runs it"
        cfg = load_config(p)
        if cfg.model.weights:  # a model of one's own: the stand-in model of the tests in its place
            cfg = load_config(p, ['model.name="tests.byo_models:odd_cnn"', f'model.weights="{w}"',
                                  'model.head="classifier"', 'model.layers=["act0", "act1", "flat"]'])
        plan = make_plan(cfg)
        assert plan.runs


def test_run_spec_round_trips_through_its_dict(tmp_path, folders):
    from transferscope.study import RunSpec

    for spec in make_plan(_load(tmp_path, tiny_study_toml(*folders))).runs:
        back = RunSpec.from_dict(spec.to_dict())
        assert back == spec and back.run_id == spec.run_id and type(back.train) is type(spec.train)


def test_run_ids_hash_only_fields_off_their_default(tmp_path, folders):
    """A config field added later with a default must not change the ids of existing studies; changing a value
    does change them."""
    import dataclasses

    from transferscope.config import DataConfig, TrainConfig

    spec = next(r for r in make_plan(_load(tmp_path, tiny_study_toml(*folders))).runs if r.arm == "RI-T")
    h = spec.hashed()
    assert "momentum" not in h["train"] and "cache_dir" not in h["data"] and "label" not in h["domain"]
    assert h["train"]["epochs"] == 2 and "parent" not in h  # set away from the default: kept
    # a newer TrainConfig / DataConfig with an extra defaulted field, the old values carried over
    NewTrain = dataclasses.make_dataclass("NewTrain", [("label_smoothing", float, dataclasses.field(default=0.0))],
                                          bases=(TrainConfig,), frozen=True)
    NewData = dataclasses.make_dataclass("NewData", [("augment", bool, dataclasses.field(default=False))],
                                         bases=(DataConfig,), frozen=True)
    newer = dataclasses.replace(spec, train=NewTrain(**dataclasses.asdict(spec.train)),
                                data=NewData(**dataclasses.asdict(spec.data)))
    assert newer.run_id == spec.run_id
    assert dataclasses.replace(newer, train=dataclasses.replace(newer.train, label_smoothing=0.1)).run_id != spec.run_id
    assert dataclasses.replace(newer, data=dataclasses.replace(newer.data, augment=True)).run_id != spec.run_id
    # a default written out explicitly is the same run as one left out
    explicit = tiny_study_toml(*folders).replace("[scratch]\n", "[scratch]\nmomentum = 0.9\nweight_decay = 5e-4\n", 1)
    assert [r.run_id for r in make_plan(_load(tmp_path, explicit)).runs if r.arm == "RI-T"][0] == spec.run_id
    # a changed value changes the id, also when it is changed to another value and back to the default
    assert dataclasses.replace(spec, train=dataclasses.replace(spec.train, momentum=0.8)).run_id != spec.run_id
    assert dataclasses.replace(spec, train=dataclasses.replace(spec.train, momentum=0.9)).run_id == spec.run_id
