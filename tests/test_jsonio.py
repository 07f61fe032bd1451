"""The one JSON encoding on disk: non-finite floats survive a round trip, the text is standard JSON."""

import json
import math

import numpy as np
import pytest

from transferscope import jsonio
from transferscope.store import Store, dumps


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_round_trip_of_every_non_finite_value():
    obj = {"a": math.nan, "b": [math.inf, -math.inf, 1.5, None], "c": {"d": np.float32("nan"), "e": np.float64(2.0)},
           "f": np.array([1.0, np.inf]), "g": "text", "h": 3}
    text = jsonio.dumps(obj)
    _strict(text)  # a browser's JSON.parse reads it
    back = jsonio.loads(text)
    assert math.isnan(back["a"]) and math.isnan(back["c"]["d"])
    assert back["b"][:3] == [math.inf, -math.inf, 1.5] and back["b"][3] is None  # null stays "no value"
    assert back["f"] == [1.0, math.inf] and back["c"]["e"] == 2.0 and back["g"] == "text" and back["h"] == 3


def test_store_and_results_share_the_encoding(tmp_path):
    from transferscope.analyses.barrier import BarrierResult

    assert dumps({"x": math.inf}) == jsonio.dumps({"x": math.inf})
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(dumps({"loss": math.inf, "acc": math.nan}))
    m = Store(tmp_path).read_json("r", "metrics.json")
    assert m["loss"] == math.inf and math.isnan(m["acc"])  # an infinite loss is not read back as NaN or None
    r = BarrierResult([0.0, 1.0], [0.1, math.inf], [0.0, 0.5], barrier_error=math.nan, barrier_loss=math.inf,
                      bn_policy="exact", n_examples=2)
    r.save(tmp_path / "b")
    text = (tmp_path / "b.json").read_text()
    assert '"Infinity"' in text and '"NaN"' in text
    back = BarrierResult.load(tmp_path / "b")
    assert back.barrier_loss == math.inf and math.isnan(back.barrier_error) and back.loss == [0.1, math.inf]


def test_unserialisable_values_are_named():
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        jsonio.dumps({"x": object()})
