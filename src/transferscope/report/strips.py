"""The images the report shows, written beside the analyses: per domain a strip of training images (one per class,
at every block size), and per target the test images one arm gets right and the other wrong.

The report reads no domain itself (it renders from a results folder alone); these strips are written when the
study is analysed (``transferscope analyze`` and :func:`transferscope.api.analyze_study` pass
:func:`write_image_strips` to :func:`~transferscope.study.analyze.analyze`) and named in ``analyses/index.json``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from ..config import to_dict
from ..store import Store
from ..study.plan import Plan, data_identity, file_safe
from ..vocab.arms import PT_RIT
from ..vocab.records import (
    MistakesPairs,
    PairMistakes,
)

__all__ = ["write_image_strips"]


def write_image_strips(plan: Plan, store: Store, results: dict[str, Any], per_row: int = 8) -> dict[str, str]:
    """Images the report shows (it reads no domain itself): per domain, one training image of each of the first
    ``per_row`` classes at every block size of the study; per target, the test images that P-T gets right and
    RI-T wrong and the reverse (first pair of seeds). One ``images-<domain>-<hash>.npz`` each; returns their names."""
    cfg = plan.config
    full = cfg.data.image_size
    out = {}
    for role, d in ([("source", cfg.source)] if cfg.has_source else []) + [("target", t) for t in cfg.targets]:
        name = d.display
        mis: MistakesPairs | None = results.get(f"mistakes/{name}")
        pair: PairMistakes | None = mis.first(PT_RIT) if mis else None
        pair_hash = hashlib.sha256(json.dumps(pair.to_dict() if pair else None, sort_keys=True).encode()).hexdigest()
        # keyed by what the data is, not by its label (renaming a target redraws nothing)
        key = _key("images", d.name, {"per_row": per_row, "role": role, "blocks": cfg.block_sizes,
                                        "domain": data_identity(d), "data": to_dict(cfg.data), "pair": pair_hash})
        path = store.root / "analyses" / f"{key}.npz"
        out[name] = path.name
        if path.is_file():
            continue
        from ..study.artefacts import domain_data as load

        data = load(d, cfg.data)
        y = data.train.y.numpy()
        # one image per class; multi-label: the first image where each label is present (its labels are a row)
        members = [(y[:, c] == 1) if y.ndim == 2 else (y == c) for c in range(data.num_classes)]
        first = [int(np.flatnonzero(m)[0]) for m in members if m.any()][:per_row]
        arrays = {"classes": np.asarray(data.classes, dtype=str), "sample_labels": y[first]}
        for b in ([full] if role == "source" else cfg.block_sizes):
            arrays[f"sample_b{b}"] = data.shuffled(b, cfg.data.shuffle_seed).train.x[first].numpy() if b != full \
                else data.train.x[first].numpy()
        if pair is not None:
            za = np.asarray(pair.test_index)
            labels = data.test.y.numpy()
            for which, pos in (("pt_right_ri_wrong", pair.only_b_wrong), ("ri_right_pt_wrong", pair.only_a_wrong)):
                pos = np.asarray(pos[: 2 * per_row], dtype=int)
                arrays[f"{which}_x"] = data.test.x[pos].numpy() if len(pos) else np.zeros((0, *data.test.x.shape[1:]), np.uint8)
                arrays[f"{which}_y"] = labels[pos]
                arrays[f"{which}_index"] = za[pos] if len(za) else pos
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
    return out



def _key(name: str, target: str, args: dict) -> str:
    h = hashlib.sha256(json.dumps({"name": name, "args": args}, sort_keys=True, default=str).encode())
    return f"{name}-{file_safe(target)}-{h.hexdigest()[:10]}"

# ------------------------------------------------------------------------------------------------ evidence and claims
