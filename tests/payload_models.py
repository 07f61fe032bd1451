"""A model factory that stands for code someone else put in a results folder: when ``TS_PAYLOAD_MARK`` is set it
writes that file (the payload: what an attacker's code would do), and it always returns a small real model, so
that a study can be trained with it first (by a user who trusts it)."""

from __future__ import annotations

import os

from .byo_models import odd_cnn


def make(**kwargs):
    mark = os.environ.get("TS_PAYLOAD_MARK")
    if mark:
        with open(mark, "a", encoding="utf-8") as f:
            f.write("the factory ran\n")
    return odd_cnn(**kwargs)
