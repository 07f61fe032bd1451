"""The contract every registered analysis keeps: its result round-trips through JSON; the same seed gives
the same result; the models it is given are not changed (weights, buffers, train/eval mode)."""

import json

import pytest
import torch

from transferscope.analyses import get_analysis, list_analyses
from transferscope.config import ModelConfig
from transferscope.models import create_model
from transferscope.store import dumps

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


def test_the_registry_holds_every_analysis():
    assert set(list_analyses()) == {"mistakes", "cka", "distance", "barrier", "criticality", "flatness", "stability",
                                    "principal", "scores"}
    with pytest.raises(KeyError, match="registered analyses are"):
        get_analysis("nope")


@pytest.mark.parametrize("name", list_analyses())
def test_contract(name, pair, tmp_path):
    a, b, d = pair
    info = get_analysis(name)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (a, b)]
    r1 = info.run(a, b, d, seed=3, **OPTIONS.get(name, {}))
    r2 = info.run(a, b, d, seed=3, **OPTIONS.get(name, {}))
    assert isinstance(r1, info.result_type)
    assert json.dumps(r1.to_dict(), sort_keys=True, default=str) == json.dumps(r2.to_dict(), sort_keys=True, default=str)
    back = info.result_type.from_dict(json.loads(dumps(r1.to_dict())))
    assert json.loads(dumps(back.to_dict())) == json.loads(dumps(r1.to_dict()))
    # files: JSON, with the array fields in a .npz beside it
    paths = r1.save(tmp_path / name)
    assert [p.suffix for p in paths] == [".json"] + ([".npz"] if info.result_type.array_fields else [])
    stored = json.loads(paths[0].read_text())
    assert not set(info.result_type.array_fields) & set(stored)
    loaded = info.result_type.load(tmp_path / name)
    assert json.loads(dumps(loaded.to_dict())) == json.loads(dumps(r1.to_dict()))
    # it records its seed and the arguments it was computed with
    assert r1.seed == 3 and isinstance(r1.args, dict)
    for k, v in OPTIONS.get(name, {}).items():
        assert (r1.args[k] if k in r1.args else getattr(r1, k)) == v
    for m, state in zip((a, b), before, strict=True):
        assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())
    assert a.training and not b.training
