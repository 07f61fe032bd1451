"""Faults of the configuration and of what users name (issue: reliability): study names and labels used as path
components, every config field's range, a non-UTF-8 file, the memory a study needs; user labels in figures; each
with the one-line error a user sees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import tiny_study_toml

# ------------------------------------------------------------------------------------------------------------------
# 14. user strings in figures are drawn as given (no mathtext)

LABELS = ["$x$", "a_b^c", "50%", "$a^b^c$"]  # the last is not even valid mathtext: it failed the whole figure


def _drawn_texts(monkeypatch):
    """Patch the figures' save so that each figure's texts are collected as matplotlib draws them: (the string given,
    the string it draws, whether it is drawn as mathtext)."""
    import matplotlib.text

    from transferscope.report import figures

    seen: list[tuple[str, str, bool]] = []
    save = figures._save

    def spy(fig, path):
        out = save(fig, path)  # draws the figure (raises where matplotlib cannot)
        for t in fig.findobj(matplotlib.text.Text):
            given = t.get_text()
            if given:
                drawn, math = t._preprocess_math(given)
                seen.append((given, drawn, bool(math)))
        return out

    monkeypatch.setattr(figures, "_save", spy)
    return seen


def test_figures_draw_user_labels_as_given(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from transferscope.report import figures
    from transferscope.vocab.records import BarrierResult, CKAResult

    seen = _drawn_texts(monkeypatch)
    arm = SimpleNamespace(acc_mean=0.5, acc_std=0.1, n=2, speed_mean_acc_k=0.4, speed_steps_to_frac=10.0)
    imgs = np.zeros((2, 1, 8, 8), np.uint8)
    figures.image_grid(tmp_path / "g.png", [(lab, imgs, [lab, lab]) for lab in LABELS], title=LABELS[0])
    figures.gain_bars(tmp_path / "b.png", [{"target": lab, "P-T": arm, "RI-T": arm} for lab in LABELS])
    figures.shuffle_lines(tmp_path / "s.png", [{"target": lab, "block_size": 8, "P-T": arm, "RI-T": arm}
                                               for lab in LABELS], 1, 0.9)
    figures.training_curves(tmp_path / "t.png", {(lab, 8): {"P-T": [np.linspace(0, 1, 8)]} for lab in LABELS},
                            {}, 2)
    bar = BarrierResult([0.0, 0.5, 1.0], [1.0, 2.0, 1.0], [0.1, 0.5, 0.1], 0.4, 1.0, "exact", 10)
    figures.barrier_lines(tmp_path / "r.png", {lab: {"P-T/P-T": bar} for lab in LABELS})
    cka = CKAResult(LABELS, [0.5] * 4, [0.4] * 4, 10, 20, 2)
    figures.cka_lines(tmp_path / "c.png", {lab: {"P-T/RI-T": cka} for lab in LABELS})
    figures.gain_by_checkpoint(tmp_path / "k.png", {lab: [(0.0, 0.1), (1.0, 0.2)] for lab in LABELS})
    eff = [SimpleNamespace(unit="acc", outcome="holds", low=0.0, high=0.2, value=0.1, side="above", bound=0.0,
                           margin=0.0, target=lab, name=lab, n=2) for lab in LABELS]
    figures.forest_plot(tmp_path / "f.png", [SimpleNamespace(claim="N1", outcome="holds", effects=eff)])
    for lab in LABELS:
        shown = [(given, drawn, math) for given, drawn, math in seen if lab in given]
        assert shown, f"{lab!r} was not drawn"
        for given, drawn, math in shown:
            assert drawn == given and not math, (lab, given, drawn)
    assert all(not math for _, _, math in seen)  # no text of any figure is parsed as mathtext
    assert len(list(tmp_path.glob("*.png"))) == 8


def test_every_figure_function_draws_plain_text():
    """A figure function added later gets the same protection: each public one runs with mathtext off."""
    import inspect

    from transferscope.report import figures

    public = [f for n, f in vars(figures).items() if inspect.isfunction(f) and not n.startswith("_")
              and f.__module__ == figures.__name__]
    assert len(public) >= 16
    assert all(getattr(f, "__wrapped__", None) is not None for f in public), [f.__name__ for f in public]


# ------------------------------------------------------------------------------------------------------------------
# 8. names used as path components


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["/abs/path", "../x", "a/b", "..", ".", ".hidden", "-rf", "", "a\\b", "x\ny",
                                  "x" * 101])
def test_a_study_name_must_be_one_folder_name(tmp_path, folders, name):
    from transferscope.config import ConfigError, load_config

    toml = tiny_study_toml(*folders).replace('name = "tiny"', f"name = {json.dumps(name)}", 1)
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, toml))
    msg = str(e.value)
    assert "\n" not in msg and "name: expected a study name" in msg and f"got {name!r}" in msg
    assert "letters, digits" in msg


def test_a_study_named_outside_the_results_root_writes_nothing(tmp_path, folders, monkeypatch, capsys):
    """``transferscope run`` of a study named "../escape" (or an absolute path) is refused before anything is
    written: with the old behaviour results/../escape/study.json was created beside the results root."""
    from transferscope.cli import main

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("../escape", str(tmp_path / "abs")):
        toml = _write(tmp_path, tiny_study_toml(*folders).replace('name = "tiny"', f"name = {json.dumps(name)}", 1))
        assert main(["run", str(toml), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "name: expected a study name" in err, err
    assert not (tmp_path / "escape").exists() and not (tmp_path / "abs").exists()
    assert not any(work.iterdir())


def test_the_python_api_refuses_the_same_names(tmp_path, folders, monkeypatch):
    from dataclasses import replace

    from transferscope.api import run_study
    from transferscope.config import ConfigError, load_config

    cfg = load_config(_write(tmp_path, tiny_study_toml(*folders)))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # results/../x would be work/x; ../../x, beside it
    for name in ("../x", "../../x"):
        with pytest.raises(ConfigError, match=r"name: expected a study name .*got '[./]+x'"):
            run_study(replace(cfg, name=name), show_progress=False)
    assert not (tmp_path / "work" / "x").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("label, message", [
    ("a\\tb", r"targets\[0\]\.label: expected a label of at most 100 characters, none of them a control character"),
    ("   ", r"targets\[0\]\.label: expected a label .*not blank, got '   '"),
])
def test_labels_are_refused_when_they_cannot_be_shown(tmp_path, folders, label, message):
    from transferscope.config import ConfigError, load_config

    toml = tiny_study_toml(*folders).replace('label = "tgt"', f'label = "{label}"', 1)
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, toml))


def test_two_labels_sharing_a_file_name_are_refused(tmp_path, folders):
    """Labels become file names of the report's figures with every character but letters, digits, '-' and '_'
    replaced: "a/b" and "a_b" would write one file."""
    from transferscope.config import ConfigError, load_config
    from transferscope.study import make_plan

    text = tiny_study_toml(*folders).replace('label = "tgt"', 'label = "a/b"', 1)
    second = text[text.index("[[targets]]"):text.index("[pretrain]")].replace('label = "a/b"', 'label = "a_b"')
    second = second.replace("n_per_class = 8", "n_per_class = 6")
    text = text.replace("[pretrain]", second + "[pretrain]", 1)
    with pytest.raises(ConfigError, match=r"targets\[1\]\.label: 'a_b' and targets\[0\]\.label 'a/b' give the "
                                          r"same file name 'a_b'"):
        make_plan(load_config(_write(tmp_path, text)))


# ------------------------------------------------------------------------------------------------------------------
# 13. every field's range


@pytest.mark.parametrize("override, message", [
    ("pretrain.epochs=1000000000", r"pretrain\.epochs: expected an integer in \[1, 10000\], got 1000000000"),
    ("finetune.lr=inf", r"finetune\.lr: expected a finite number > 0, got inf"),
    ("scratch.lr=nan", r"scratch\.lr: expected a finite number > 0, got nan"),
    ("finetune.momentum=-5", r"finetune\.momentum: expected a number in \[0, 1\), got -5\.0"),
    ("data.image_size=5000", r"data\.image_size: expected an integer in \[4, 4096\], got 5000"),
    ("analysis.cka_batch_size=0", r"analysis\.cka_batch_size: expected an integer in \[4, 100000\], got 0"),
    ("analysis.barrier_points=1", r"analysis\.barrier_points: expected an integer in \[2, 1001\], got 1"),
    ("analysis.groups=['neyshabur', 'other']", r"analysis\.groups\[1\]: expected one of 'neyshabur', 'liu', got 'other'"),
    ("analysis.criticality_alphas=[0.5, 2]", r"analysis\.criticality_alphas\[1\]: expected a number in \[0, 1\], got 2\.0"),
    ("block_sizes=[16, 16]", r"block_sizes: expected a non-empty list of distinct integers in \[1, 4096\], got \[16, 16\] "
                             r"\(16 twice\)"),
    ("seeds=[-1, 0]", r"seeds\[0\]: expected an integer in \[0, 4294967295\], got -1"),
    ("finetune.lr_grid=[0.01, -0.1]", r"finetune\.lr_grid\[1\]: expected a finite number > 0, got -0\.1"),
    ("model.weights_sha256='abc'", r"model\.weights_sha256: expected 64 lower-case hexadecimal digits \(or empty\), "
                                   r"got 'abc'"),
    ("model.width=0", r"model\.width: expected an integer in \[1, 1024\], got 0"),
    ('data.cache_dir="a\\u0000b"', r"data\.cache_dir: expected a path without control characters, got 'a\\x00b'"),
    ("basin.targets=['tgt', 'tgt']", r"basin\.targets: expected distinct labels .*, got \['tgt', 'tgt'\] \('tgt' twice\)"),
])
def test_out_of_range_values_are_refused_naming_the_key(tmp_path, folders, override, message):
    from transferscope.config import ConfigError, load_config
    from transferscope.study import make_plan

    path = _write(tmp_path, tiny_study_toml(*folders))
    with pytest.raises(ConfigError, match=message) as e:
        load_config(path, [override])
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    # a config built in Python (no TOML) is refused by the plan the same way
    from transferscope.config import StudyConfig, apply_overrides, from_dict, to_dict

    cfg = load_config(path)
    bad = from_dict(StudyConfig, apply_overrides(to_dict(cfg), [override]))
    with pytest.raises(ConfigError, match=message):
        make_plan(bad)


@pytest.mark.parametrize("grid", [False, True])
def test_duplicate_block_sizes_are_refused_with_or_without_grids(tmp_path, folders, grid):
    """With empty learning-rate grids they hit an AssertionError in the plan; with grids they were accepted."""
    from transferscope.config import ConfigError, load_config
    from transferscope.study import make_plan

    sets = ["block_sizes=[16, 4, 16]"] + (["finetune.lr_grid=[0.01, 0.03]", "scratch.lr_grid=[0.1, 0.3]"] if grid else [])
    cfg = load_config(_write(tmp_path, tiny_study_toml(*folders)), sets[1:])
    from dataclasses import replace

    with pytest.raises(ConfigError, match=r"block_sizes: expected a non-empty list of distinct integers .*\(16 twice\)"):
        make_plan(replace(cfg, block_sizes=[16, 4, 16]))
    with pytest.raises(ConfigError, match=r"block_sizes: .*\(16 twice\)"):
        load_config(_write(tmp_path, tiny_study_toml(*folders)), sets)


def _walk_fields(cls, prefix=""):
    """(dotted key, field, type) of every leaf field of a config dataclass (tables of tables followed; a list of
    tables, [[targets]], is reached through source, a table of the same class)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _walk_fields(tp, f"{prefix}{f.name}.")
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            yield f"{prefix}{f.name}", f, tp
        else:
            yield f"{prefix}{f.name}", f, tp


def test_every_config_field_declares_what_it_allows():
    from transferscope.config import StudyConfig, field_check

    keys = [k for k, _, _ in _walk_fields(StudyConfig)]
    assert len(keys) > 90 and "analysis.cka_batch_size" in keys and "finetune.momentum" in keys
    missing = [k for k, f, _ in _walk_fields(StudyConfig) if field_check(f) is None]
    assert not missing, missing


def _outside(check, tp):
    """A value of type ``tp`` just outside ``check``'s range, or None where the range is the whole type."""
    import math

    if check.hi is not None:
        if tp is int:
            return check.hi + 1
        return float(check.hi) if check.hi_open else check.hi * 2 + 1.0
    if check.lo is not None:
        return check.lo - 1 if tp is int else check.lo - 1.0
    if check.finite:
        return math.inf
    return None


def test_every_bounded_number_out_of_its_range_is_refused_by_its_dotted_key(tmp_path, folders):
    """Generated from the declarations: for each numeric field (and each list of numbers), a value just outside its
    range is refused with the field's dotted key, the value and the range."""
    import typing

    from transferscope.config import ConfigError, StudyConfig, field_check, load_config

    path = _write(tmp_path, tiny_study_toml(*folders))
    tried = 0
    for key, f, tp in _walk_fields(StudyConfig):
        check = field_check(f)
        is_list = typing.get_origin(tp) is list
        inner = typing.get_args(tp)[0] if is_list else tp
        if inner not in (int, float):
            continue
        bad = _outside(check.items if is_list else check, inner)
        if bad is None:
            continue
        text = "inf" if bad == float("inf") else repr(bad)
        with pytest.raises(ConfigError) as e:
            load_config(path, [f"{key}=[{text}]" if is_list else f"{key}={text}"])
        want = f"{key}[0]: expected" if is_list else f"{key}: expected"
        assert want in str(e.value) and "got " in str(e.value), (key, str(e.value))
        tried += 1
    assert tried > 50


def test_a_config_that_is_not_utf8_is_a_named_error(tmp_path):
    from transferscope.cli import main
    from transferscope.config import ConfigError, load_config

    p = tmp_path / "latin1.toml"
    p.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml: not UTF-8 text: byte 0xe9 at line 1, column 12; save the "
                                          r"file as UTF-8"):
        load_config(p)
    assert main(["run", str(p), "--dry-run"]) == 2
    d = tmp_path / "folder.toml"
    d.mkdir()
    with pytest.raises(ConfigError, match=r"folder\.toml'?: a folder, not a file"):
        load_config(d)


def test_existing_studies_keep_their_run_ids_and_pass(tmp_path, folders):
    """The checks change no hashed field: the built-in studies and the example configs load, and the tiny study's
    run ids are those of a plan made without any check."""
    from transferscope.config import load_config
    from transferscope.study import make_plan

    cfg = load_config(_write(tmp_path, tiny_study_toml(*folders)))
    checked, unchecked = make_plan(cfg), make_plan(cfg, check=False)
    assert [r.run_id for r in checked.runs] == [r.run_id for r in unchecked.runs]
    for profile in ("quick", "paper"):
        make_plan(load_config(profile), check=False)
        from transferscope.config import check_config

        check_config(load_config(profile))


# ------------------------------------------------------------------------------------------------------------------
# 13. the memory a study needs, before it allocates


def test_the_estimate_counts_decoded_images_and_a_batch(tmp_path, folders):
    """n x C x H x W bytes (uint8, as domains are held) per domain, and the batch activations of the model."""
    from transferscope.config import load_config
    from transferscope.study.plan import estimate_memory

    cfg = load_config(_write(tmp_path, tiny_study_toml(*folders)))
    est = estimate_memory(cfg)
    parts = {p.what: p for p in est.parts}
    src = parts["the decoded images of 'imagefolder' (source)"]
    assert src.bytes == 4 * 40 * 16 * 16 and src.detail == "160 images x 1 x 16 x 16 bytes"
    tgt = parts["the decoded images of 'tgt' (targets[0])"]
    assert tgt.bytes == 3 * (8 + 4 + 8) * 16 * 16  # n_per_class + n_val_per_class + n_test_per_class per class
    batch = next(p for p in est.parts if p.what.startswith("the activations of a training batch"))
    assert "pretrain.batch_size = 16" in batch.what and batch.bytes > 16 * 16 * 16 * 4
    wider = estimate_memory(load_config(_write(tmp_path, tiny_study_toml(*folders)), ["pretrain.batch_size=32"]))
    assert next(p for p in wider.parts if p.what.startswith("the activations")).bytes == pytest.approx(2 * batch.bytes,
                                                                                                        rel=0.01)
    assert est.total == sum(p.bytes for p in est.parts)
    from transferscope.study.plan import format_bytes

    assert [format_bytes(n) for n in (5, 1536, 1023.4 * 2**30, 2.5 * 2**40)] == ["5 B", "1.5 KiB", "1023 GiB", "2.5 TiB"]


def test_available_memory_is_read_from_the_machine():
    import os

    from transferscope.study.plan import available_memory

    avail = available_memory()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert avail is not None and 0 < avail <= total


def test_a_study_that_cannot_fit_is_refused_before_anything_is_allocated(tmp_path, folders, monkeypatch):
    """image_size = 4032 with Fashion-MNIST (70,000 images of 16 MB each decoded): refused with the figures, before
    the model sees an image of that size."""
    from pathlib import Path

    from transferscope.config import ConfigError, load_config
    from transferscope.study import make_plan, plan

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("fashion-mnist is not installed")
    text = tiny_study_toml(*folders).replace('name = "imagefolder"\npath = "' + str(folders[0]) + '"',
                                             'name = "fashion-mnist"', 1)
    text = text.replace("image_size = 16", "image_size = 4032").replace("block_sizes = [16, 4]", "block_sizes = [4032]")
    cfg = load_config(_write(tmp_path, text), ["basin.checkpoint_epochs=[]"])

    def too_late(*a, **k):
        raise AssertionError("the model ran on full-size images before the memory check")

    monkeypatch.setattr(plan, "check_model", too_late)
    with pytest.raises(ConfigError) as e:
        make_plan(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("memory: the study needs about ") and " TiB " in msg and "is available" in msg
    assert "the decoded images of 'fashion-mnist' (source)" in msg and "70000 images x 1 x 4032 x 4032 bytes" in msg
    assert msg.endswith("; lower data.image_size (4032)")


def test_a_batch_too_large_for_memory_names_the_batch_size(tmp_path, folders, monkeypatch, capsys):
    from transferscope.cli import main
    from transferscope.config import ConfigError, load_config
    from transferscope.study import make_plan, plan

    path = _write(tmp_path, tiny_study_toml(*folders))
    cfg = load_config(path, ["finetune.batch_size=65536"])
    make_plan(cfg)  # fits this machine
    monkeypatch.setattr(plan, "available_memory", lambda: 200 * 2**20)
    with pytest.raises(ConfigError, match=r"^memory: the study needs about [\d.]+ GiB but 200 MiB is available: the "
                                          r"activations of a training batch \(finetune\.batch_size = 65536\): [\d.]+ GiB "
                                          r"\(65536 x .* per image\); .*"
                                          r"lower finetune\.batch_size \(65536\)"):
        make_plan(cfg)
    # `run --dry-run` says the same in one line, and writes nothing
    assert main(["run", str(path), "--set", "finetune.batch_size=65536", "--dry-run", "--results",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: memory: the study needs about") and "\n" not in err
    assert not (tmp_path / "r").exists()
    # an unknown amount of memory (no way to read it) checks nothing
    monkeypatch.setattr(plan, "available_memory", lambda: None)
    assert make_plan(cfg).runs
