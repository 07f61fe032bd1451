"""The contract every registered analysis keeps: its result round-trips through JSON; the same seed gives
the same result; the models it is given are not changed (weights, buffers, train/eval mode)."""

import json

import pytest
import torch

from transferscope.config import ModelConfig
from transferscope.models import create_model
from transferscope.store import dumps
from transferscope.study.registry import get_analysis, list_analyses

from .conftest import trained_model

OPTIONS = {"cka": {"batch_size": 8}, "barrier": {"points": 3},
           "criticality": {"alphas": [0.0, 1.0], "samples": 2, "n_examples": 24, "s_tol": 0.05},
           "flatness": {"n_examples": 24, "iters": 5, "samples": 2}, "stability": {"lr": 0.05, "n_examples": 24},
           "principal": {"n_examples": 24}, "scores": {"layer": "pool"}}


@pytest.fixture(scope="module")
def pair(small_domain):
    a, _ = trained_model(small_domain, 0)
    b = create_model(ModelConfig(blocks=[1, 1], width=8), 1, 3, seed=1)
    d = small_domain
    b.eval()  # one in train mode, one in eval mode: both must come back as they were
    return a, b, d


def test_the_registry_holds_every_analysis_once_in_the_order_analyze_runs_them():
    specs = list_analyses()
    assert [s.name for s in specs] == ["transfer", "mistakes", "cka", "distance", "barrier", "criticality", "basin",
                                       "flatness", "deviation", "stability", "principal", "scores", "relate"]
    assert {s.name for s in specs if s.kernel} == {"mistakes", "cka", "distance", "barrier", "criticality",
                                                   "flatness", "stability", "principal", "scores"}
    assert all(get_analysis(s.name) is s for s in specs)
    with pytest.raises(KeyError, match="registered analyses are"):
        get_analysis("nope")


@pytest.mark.parametrize("name", [s.name for s in list_analyses() if s.kernel])
def test_contract(name, pair, tmp_path):
    a, b, d = pair
    info = get_analysis(name)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (a, b)]
    r1 = info.kernel(a, b, d, seed=3, **OPTIONS.get(name, {}))
    r2 = info.kernel(a, b, d, seed=3, **OPTIONS.get(name, {}))
    assert isinstance(r1, info.item)
    assert json.dumps(r1.to_dict(), sort_keys=True, default=str) == json.dumps(r2.to_dict(), sort_keys=True, default=str)
    back = info.item.from_dict(json.loads(dumps(r1.to_dict())))
    assert json.loads(dumps(back.to_dict())) == json.loads(dumps(r1.to_dict()))
    # files: JSON, with the array fields in a .npz beside it
    paths = r1.save(tmp_path / name)
    assert [p.suffix for p in paths] == [".json"] + ([".npz"] if info.item.array_fields else [])
    stored = json.loads(paths[0].read_text())
    assert not set(info.item.array_fields) & set(stored)
    loaded = info.item.load(tmp_path / name)
    assert json.loads(dumps(loaded.to_dict())) == json.loads(dumps(r1.to_dict()))
    # it records its seed and the arguments it was computed with
    assert r1.seed == 3 and isinstance(r1.args, dict)
    for k, v in OPTIONS.get(name, {}).items():
        assert (r1.args[k] if k in r1.args else getattr(r1, k)) == v
    for m, state in zip((a, b), before, strict=True):
        assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())
    assert a.training and not b.training


def test_every_sample_is_drawn_with_the_seed_given(pair):
    """The registry passes ``seed`` to the analyses that sample the training split (it used to record it while
    they drew with seed 0)."""
    from transferscope.analyses.gradients import gradient_stability, principal_gradient

    a, _, d = pair
    for name, direct in (("principal", lambda s: principal_gradient(a, d.train, n_examples=24, seed=s)),
                         ("stability", lambda s: gradient_stability(a, d.train, lr=0.05, n_examples=24, seed=s))):
        opts = OPTIONS[name]
        r3, r4 = get_analysis(name).kernel(a, a, d, seed=3, **opts), get_analysis(name).kernel(a, a, d, seed=4, **opts)
        assert r3.loss != r4.loss  # different examples
        assert r3.to_dict() == direct(3).to_dict()


def test_stability_needs_the_runs_learning_rate(pair):
    a, b, d = pair
    with pytest.raises(TypeError, match="lr is required"):
        get_analysis("stability").kernel(a, b, d, seed=0, n_examples=24)


def test_scores_mmd_is_between_the_source_images_given_and_the_target(pair, tmp_path):
    """``domain`` is the target: without source images the MMD is NaN with a note naming ``source_x`` (it used to
    be computed against the target's own validation split). With them it equals an independent computation:
    mmd2 of the model's pool features of the source images and of the target's training images."""
    import math

    import numpy as np

    from transferscope.analyses.transferability import mmd2
    from transferscope.models import to_input

    a, b, d = pair
    info = get_analysis("scores")
    none = info.kernel(a, b, d, seed=0)
    assert math.isnan(none.mmd2_rbf) and math.isnan(none.mmd2_linear) and none.n_source == 0
    assert "source_x" in none.note
    assert all(math.isfinite(v) for v in (none.leep, none.logme, none.h_score))
    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, 120, (40, *d.image_shape), dtype=torch.uint8, generator=g)  # a darker, unstructured domain
    r = info.kernel(a, b, d, seed=0, source_x=src)
    assert r.n_source == 40 and r.note == ""
    assert (r.leep, r.logme, r.h_score) == (none.leep, none.logme, none.h_score)
    with torch.no_grad():
        was = a.training
        a.eval()
        fs = a.features(to_input(src), ["pool"])["pool"].reshape(40, -1).double().numpy()
        ft = a.features(to_input(d.train.x), ["pool"])["pool"].reshape(len(d.train), -1).double().numpy()
        a.train(was)
    assert r.mmd2_rbf == pytest.approx(mmd2(fs, ft, "rbf")[0], rel=1e-6)
    assert r.mmd2_linear == pytest.approx(mmd2(fs, ft, "linear")[0], rel=1e-6)
    assert np.isfinite(r.bandwidth) and r.bandwidth > 0
    assert a.training
