"""Run the analyses of Neyshabur et al. over a (partly) finished study and judge its claims.

Each analysis result is cached beside the runs, in ``RESULTS/analyses/<name>-<target>-<hash>.json``, keyed by
a hash of its arguments and of the ids of the runs it reads; a result that is there is not computed again.
Analyses whose runs are missing are skipped and said to be so. The claims are judged from the numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ..analyses.barrier import interpolate
from ..analyses.cka import feature_similarity
from ..analyses.criticality import module_criticality
from ..analyses.distance import parameter_distance
from ..analyses.mistakes import mistakes
from ..config import AnalysisConfig, to_dict
from ..store import RUN_DONE, Store, atomic_write_text, dumps
from .plan import Plan, RunSpec
from .runner import _domain, load_run_model
from .summary import checkpoint_gains, results_table
from .tuning import resolve

log = logging.getLogger(__name__)

__all__ = ["analyze", "judge_claims", "judge_liu_claims", "format_claims"]


@dataclass
class AnalysisRun:
    results: dict[str, dict] = field(default_factory=dict)
    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    """Result name -> its file under ``analyses/`` (written to ``analyses/index.json`` for the report)."""


def _runs(plan: Plan, store: Store, target: str, block: int, arm: str, ckpt: float = -1.0) -> list[RunSpec]:
    return [r for r in plan.runs if r.arm == arm and r.domain.display == target and r.block_size == block
            and r.parent_checkpoint == ckpt and store.run_status(r.run_id) == RUN_DONE]


def _key(name: str, target: str, args: dict, run_ids: list[str]) -> str:
    h = hashlib.sha256(json.dumps({"name": name, "args": args, "runs": run_ids}, sort_keys=True, default=str).encode())
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in target)
    return f"{name}-{safe}-{h.hexdigest()[:10]}"


def _state(store: Store, spec: RunSpec, which: str) -> dict[str, torch.Tensor]:
    return load_file(str(store.run_dir(spec.run_id) / f"{which}.safetensors"))


def analyze(plan: Plan, store: Store, settings: AnalysisConfig | None = None,
            show_progress: bool = True) -> AnalysisRun:
    """Compute every missing analysis of the study in ``store``; return all results (cached or new).

    ``settings``: default, the study's own ``[analysis]`` table (``plan.config.analysis``)."""
    settings = settings or plan.config.analysis
    plan = resolve(plan, store)
    cfg = plan.config
    out = AnalysisRun()
    full = cfg.data.image_size
    adir = store.root / "analyses"
    p_spec = plan.pretrain()
    p_done = store.run_status(p_spec.run_id) == RUN_DONE
    jobs: list[tuple[str, str, dict, list[str], Callable[[], dict]]] = []

    # 1. feature reuse vs low-level statistics: read from the runs' metrics
    table = results_table(plan, store)
    jobs.append(("transfer", "all", {}, [r.run_id for r in plan.runs if store.run_status(r.run_id) == RUN_DONE],
                 lambda: {"rows": [{"target": r["target"], "block_size": r["block_size"], "gain": r["gain"],
                                    **{f"{arm}_{k}": getattr(r[arm], k) for arm in ("P-T", "RI-T")
                                       for k in ("n", "acc_mean", "acc_std", "speed_mean_acc_k", "speed_steps_to_frac")}}
                                   for r in table if r["P-T"].n and r["RI-T"].n],
                          "speed_k": cfg.finetune.speed_epochs, "speed_fraction": cfg.finetune.speed_fraction}))

    for t in cfg.targets:
        name = t.display
        pt = _runs(plan, store, name, full, "P-T")
        ri = _runs(plan, store, name, full, "RI-T")
        if len(pt) < 2 or len(ri) < 2:
            out.missing[f"pairs-{name}"] = f"needs 2 finished P-T and RI-T runs at block {full}; has {len(pt)}, {len(ri)}"
            continue
        pairs = {"P-T/P-T": (pt[0], pt[1]), "RI-T/RI-T": (ri[0], ri[1]), "P-T/RI-T": (pt[0], ri[0])}
        ids = [s.run_id for s in (pt[0], pt[1], ri[0], ri[1])] + ([p_spec.run_id] if p_done else [])

        def do_mistakes(pairs=pairs):
            res = {}
            for label, (a, b) in pairs.items():
                za, zb = store.read_npz(a.run_id), store.read_npz(b.run_id)
                res[label] = mistakes(za["test_logits"].argmax(1), zb["test_logits"].argmax(1), za["test_labels"]).to_dict()
                res[label]["test_index"] = za["test_index"].tolist()
            return res

        jobs.append(("mistakes", name, {}, ids[:4], do_mistakes))

        def do_cka(pairs=pairs, t=t, pt=pt):
            data = _domain(t, cfg.data)
            models = {}

            def model(spec, which="weights"):
                key = (spec.run_id, which)
                if key not in models:
                    models[key] = load_run_model(store, spec, which)
                return models[key]

            res = {}
            todo = dict(pairs)
            for label, (a, b) in todo.items():
                ma, mb = model(a), model(b)
                res[label] = feature_similarity(ma, mb, data.test.x, layers=ma.layer_names(),
                                                batch_size=settings.cka_batch_size).to_dict()
            if p_done:
                mp = load_run_model(store, p_spec)
                ma = model(pt[0])
                res["P/P-T"] = feature_similarity(mp, ma, data.test.x, layers=ma.layer_names(),
                                                  batch_size=settings.cka_batch_size).to_dict()
            return res

        jobs.append(("cka", name, {"batch_size": settings.cka_batch_size, "version": 2}, ids, do_cka))

        def do_distance(pt=pt, ri=ri):
            res = {}
            m_pt0, m_ri0 = load_run_model(store, pt[0]), load_run_model(store, ri[0])
            res["P-T/P-T"] = parameter_distance(m_pt0, load_run_model(store, pt[1])).to_dict()
            res["RI-T/RI-T"] = parameter_distance(m_ri0, load_run_model(store, ri[1])).to_dict()
            res["P-T/P"] = parameter_distance(m_pt0, _state(store, pt[0], "init")).to_dict()  # init = P + new head
            res["RI-T/RI"] = parameter_distance(m_ri0, _state(store, ri[0], "init")).to_dict()
            return res

        jobs.append(("distance", name, {}, ids[:4], do_distance))

        def do_barrier(pairs=pairs, t=t, pt=pt):
            data = _domain(t, cfg.data)
            res = {}
            for label, (a, b) in pairs.items():
                res[label] = interpolate(load_run_model(store, a), load_run_model(store, b), data.test,
                                         points=settings.barrier_points, train_split=data.train).to_dict()
            if p_done:  # P's body with P-T's head: the start of fine-tuning, as far as the body goes
                m_pt = load_run_model(store, pt[0])
                m_p = load_run_model(store, pt[0], "init")
                res["P/P-T"] = interpolate(m_p, m_pt, data.test, points=settings.barrier_points,
                                           train_split=data.train).to_dict()
            return res

        jobs.append(("barrier", name, {"points": settings.barrier_points}, ids, do_barrier))

        def do_crit(pt=pt, ri=ri, t=t):
            data = _domain(t, cfg.data)
            res = {}
            for label, spec in (("P-T", pt[0]), ("RI-T", ri[0])):
                res[label] = module_criticality(
                    load_run_model(store, spec), _state(store, spec, "init"), data.train,
                    alphas=settings.criticality_alphas, samples=settings.criticality_samples,
                    n_examples=settings.criticality_examples, tolerance=settings.criticality_tolerance,
                    s_tol=settings.criticality_s_tol, seed=settings.seed).to_dict()
            return res

        crit_args = {k: getattr(settings, k) for k in settings.__dataclass_fields__ if k.startswith("criticality")}
        jobs.append(("criticality", name, {**crit_args, "seed": settings.seed, "sample": "balanced"}, ids[:4], do_crit))

    # 9. basin entry: P-T from earlier checkpoints against P-T from the final one
    bsize = cfg.basin.block_size or full
    for t in cfg.targets:
        name = t.display
        sweep = sorted({r.parent_checkpoint for r in plan.runs if r.arm == "P-T" and r.domain.display == name
                        and r.parent_checkpoint >= 0})
        if not sweep:
            continue
        final = _runs(plan, store, name, bsize, "P-T")
        if not final:
            out.missing[f"basin-{name}"] = "needs the P-T runs from the final checkpoint"
            continue
        by_ckpt = {e: _runs(plan, store, name, bsize, "P-T", e) for e in sweep}
        ids = [s.run_id for s in final] + [s.run_id for v in by_ckpt.values() for s in v]

        def do_basin(final=final, by_ckpt=by_ckpt, t=t):
            data = _domain(t, cfg.data).shuffled(bsize, cfg.data.shuffle_seed)
            finals = {s.seed: s for s in final}
            rows = []
            for e, specs in list(by_ckpt.items()) + [(float(cfg.pretrain.epochs), final)]:
                for s in specs:
                    m = store.read_json(s.run_id, "metrics.json")
                    row = {"checkpoint": e, "seed": s.seed, "test_acc": m["test_acc"],
                           "speed_mean_acc_k": m["speed_mean_acc_k"], "speed_steps_to_frac": m["speed_steps_to_frac"]}
                    f = finals.get(s.seed)
                    if f is not None and f.run_id != s.run_id:
                        b = interpolate(load_run_model(store, s), load_run_model(store, f), data.test,
                                        points=settings.barrier_points, train_split=data.train)
                        row["barrier_error"], row["barrier_loss"] = b.barrier_error, b.barrier_loss
                    else:
                        row["barrier_error"] = row["barrier_loss"] = 0.0
                    rows.append(row)
            return {"rows": rows, "block_size": bsize}

        jobs.append(("basin", name, {"points": settings.barrier_points, "block": bsize}, ids, do_basin))

    # Liu et al.: flatness, weight deviation, gradient stability, principal gradient, transferability scores
    if "liu" in settings.groups:
        _liu_jobs(plan, store, settings, jobs, out, p_spec, p_done)

    for name, target, args, ids, fn in tqdm(jobs, desc="analyses", disable=not show_progress, leave=False):
        key = _key(name, target, args, ids)
        path = adir / f"{key}.json"
        if path.is_file():
            out.cached.append(key)
            out.results[f"{name}/{target}"] = json.loads(path.read_text())["result"]
            continue
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as e:  # one analysis failing must not lose the others
            log.warning("analysis %s on %s failed: %s", name, target, e, exc_info=True)
            out.missing[f"{name}-{target}"] = f"failed: {type(e).__name__}: {e}"
            continue
        seconds = time.perf_counter() - t0
        out.seconds[f"{name}/{target}"] = seconds
        atomic_write_text(path, dumps({"analysis": name, "target": target, "args": args, "runs": ids, "seconds": seconds,
                                       "result": result}))
        out.computed.append(key)
        out.results[f"{name}/{target}"] = json.loads(dumps(result))
    for name, target, args, ids, _fn in jobs:
        if f"{name}/{target}" in out.results:
            out.files[f"{name}/{target}"] = f"{_key(name, target, args, ids)}.json"
    try:
        images = _write_images(plan, store, out.results)
    except Exception as e:  # the report then says the images are missing; the results stay usable
        log.warning("images for the report failed: %s", e, exc_info=True)
        out.missing["images"] = f"failed: {type(e).__name__}: {e}"
        images = {}
    atomic_write_text(adir / "index.json", dumps({
        "results": out.files, "images": images, "missing": out.missing,
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__}}))
    return out


def _write_images(plan: Plan, store: Store, results: dict[str, dict], per_row: int = 8) -> dict[str, str]:
    """Images the report shows (it reads no domain itself): per domain, one training image of each of the first
    ``per_row`` classes at every block size of the study; per target, the test images that P-T gets right and
    RI-T wrong and the reverse (first pair of seeds). One ``images-<domain>-<hash>.npz`` each; returns their names."""
    cfg = plan.config
    full = cfg.data.image_size
    out = {}
    for role, d in [("source", cfg.source)] + [("target", t) for t in cfg.targets]:
        name = d.display
        pair = results.get(f"mistakes/{name}", {}).get("P-T/RI-T")
        pair_hash = hashlib.sha256(json.dumps(pair, sort_keys=True).encode()).hexdigest()
        key = _key("images", name, {"per_row": per_row, "role": role, "blocks": cfg.block_sizes,
                                    "domain": to_dict(d), "data": to_dict(cfg.data)}, [pair_hash])
        path = store.root / "analyses" / f"{key}.npz"
        out[name] = path.name
        if path.is_file():
            continue
        data = _domain(d, cfg.data)
        y = data.train.y.numpy()
        first = [int(np.flatnonzero(y == c)[0]) for c in range(data.num_classes) if (y == c).any()][:per_row]
        arrays = {"classes": np.asarray(data.classes, dtype=str), "sample_labels": y[first]}
        for b in ([full] if role == "source" else cfg.block_sizes):
            arrays[f"sample_b{b}"] = data.shuffled(b, cfg.data.shuffle_seed).train.x[first].numpy() if b != full \
                else data.train.x[first].numpy()
        if pair is not None:
            za = np.asarray(pair["test_index"])
            labels = data.test.y.numpy()
            for which, pos in (("pt_right_ri_wrong", pair["only_b_wrong"]), ("ri_right_pt_wrong", pair["only_a_wrong"])):
                pos = np.asarray(pos[: 2 * per_row], dtype=int)
                arrays[f"{which}_x"] = data.test.x[pos].numpy() if len(pos) else np.zeros((0, *data.test.x.shape[1:]), np.uint8)
                arrays[f"{which}_y"] = labels[pos]
                arrays[f"{which}_index"] = za[pos] if len(za) else pos
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
    return out


# ------------------------------------------------------------------------------------------------ claims

def _nan(x) -> float:
    return float("nan") if x is None else float(x)


def verdict(flags: list[bool]) -> str:
    """``holds`` if every measured case agrees, ``does not hold`` if none does, ``partly`` between; ``not measured``."""
    if not flags:
        return "not measured"
    return "holds" if all(flags) else "does not hold" if not any(flags) else "partly"


def _claim(claim: int | str, text: str, flags: list[bool], figures: list[str]) -> dict:
    return {"claim": claim, "text": text, "figures": "; ".join(figures), "verdict": verdict(flags)}


def judge_claims(plan: Plan, results: dict[str, dict]) -> list[dict]:
    """One entry per claim 1-9 of Neyshabur et al.: the figures behind it and a verdict from them.

    Verdicts: ``holds``, ``does not hold``, ``partly`` (holds on some targets only) or ``not measured``.
    """
    cfg = plan.config
    full = cfg.data.image_size
    targets = [t.display for t in cfg.targets]
    rows = results.get("transfer/all", {}).get("rows", [])
    cell = {(r["target"], r["block_size"]): r for r in rows}
    blocks = sorted({r["block_size"] for r in rows}, reverse=True)
    small = blocks[-1] if blocks else None
    claims = []

    # 1
    gains = [(t, _nan(cell[(t, full)]["gain"])) for t in targets if (t, full) in cell]
    ok = [g > 0 for _, g in gains if math.isfinite(g)]
    order = [g for _, g in gains]
    ordered = all(a >= b for a, b in zip(order, order[1:], strict=False))
    v1 = verdict(ok)
    if v1 == "holds" and not ordered:
        v1 = "partly"  # P-T wins everywhere, but not most on the nearest targets
    claims.append({"claim": 1, "text": "P-T beats RI-T on every target, most on the most similar",
                   "figures": "; ".join(f"{t}: gain {g:+.3f}" for t, g in gains) + f"; gains ordered by distance: {ordered}",
                   "verdict": v1})
    # 2
    f2, txt = [], []
    for t in targets:
        if (t, full) in cell and small is not None and (t, small) in cell and small != full:
            a, b = cell[(t, full)], cell[(t, small)]
            drop = b["P-T_acc_mean"] < a["P-T_acc_mean"] and b["RI-T_acc_mean"] < a["RI-T_acc_mean"]
            shrink = b["gain"] < a["gain"]
            f2.append(drop and shrink)
            txt.append(f"{t}: P-T {a['P-T_acc_mean']:.3f}->{b['P-T_acc_mean']:.3f}, RI-T {a['RI-T_acc_mean']:.3f}->"
                       f"{b['RI-T_acc_mean']:.3f}, gain {a['gain']:+.3f}->{b['gain']:+.3f} (block {full}->{small})")
    claims.append(_claim(2, "shuffling lowers both; P-T's gain shrinks with the block size", f2, txt))
    # 3
    f3, txt = [], []
    for t in targets:
        if small is not None and (t, small) in cell:
            c = cell[(t, small)]
            f3.append(c["P-T_speed_mean_acc_k"] > c["RI-T_speed_mean_acc_k"])
            txt.append(f"{t} (block {small}): mean train acc over first {cfg.finetune.speed_epochs} epochs "
                       f"P-T {c['P-T_speed_mean_acc_k']:.3f} vs RI-T {c['RI-T_speed_mean_acc_k']:.3f}")
    claims.append(_claim(3, "at the smallest blocks P-T still trains faster", f3, txt))
    # 4
    f4, txt = [], []
    for t in targets:
        m = results.get(f"mistakes/{t}")
        if m:
            a, b = m["P-T/P-T"], m["RI-T/RI-T"]
            f4.append(a["uncommon"] < b["uncommon"])
            txt.append(f"{t}: common/uncommon P-T pair {a['common']}/{a['uncommon']}, RI-T pair {b['common']}/{b['uncommon']}")
    claims.append(_claim(4, "two P-T models make fewer different mistakes than two RI-T models", f4, txt))
    # 5
    f5, txt = [], []
    for t in targets:
        c = results.get(f"cka/{t}")
        if c:
            a, b = np.array([_nan(v) for v in c["P-T/P-T"]["full"]]), np.array([_nan(v) for v in c["RI-T/RI-T"]["full"]])
            layers = c["P-T/P-T"]["layers"]
            f5.append(bool(np.all(a[:-1] > b[:-1])))
            diff = a - b
            per_layer = ", ".join(f"{n} {d:+.2f}" for n, d in zip(layers, diff, strict=True))
            txt.append(f"{t}: CKA P-T pair - RI-T pair per layer {per_layer}")
    claims.append(_claim(5, "P-T pairs are more similar in feature space (CKA) at every layer", f5, txt))
    # 6
    f6, txt = [], []
    for t in targets:
        d = results.get(f"distance/{t}")
        if d:
            v = {k: d[k]["total"] for k in ("P-T/P-T", "RI-T/RI-T", "P-T/P", "RI-T/RI")}
            f6.append(v["P-T/P-T"] < v["RI-T/RI-T"] and v["P-T/P"] < v["RI-T/RI"])
            txt.append(f"{t}: " + ", ".join(f"{k} {x:.2f}" for k, x in v.items()))
    claims.append(_claim(6, "P-T models are close to each other and to P; RI-T models are far", f6, txt))
    # 7
    f7, txt = [], []
    for t in targets:
        b = results.get(f"barrier/{t}")
        if b:
            v = {k: b[k]["barrier_error"] for k in ("P-T/P-T", "RI-T/RI-T", "P-T/RI-T")}
            f7.append(v["P-T/P-T"] <= 0.01 and v["RI-T/RI-T"] > v["P-T/P-T"] and v["P-T/RI-T"] > v["P-T/P-T"])
            txt.append(f"{t}: error barrier " + ", ".join(f"{k} {x:.3f}" for k, x in v.items()))
    claims.append(_claim(7, "no barrier between two P-T models (<= 0.01 error); barriers for RI-T pairs", f7, txt))
    # 8
    f8, txt = [], []
    for t in targets:
        c = results.get(f"criticality/{t}")
        if c:
            crit = [x if x is not None else math.inf for x in c["P-T"]["criticality"]]
            mods = c["P-T"]["modules"]
            body = [(m, x) for m, x in zip(mods, crit, strict=True) if m != "head"]
            half = len(body) // 2
            low = np.mean([min(x, 1e12) for _, x in body[:half]]) if half else math.nan
            high = np.mean([min(x, 1e12) for _, x in body[half:]]) if half else math.nan
            f8.append(bool(low < high))
            txt.append(f"{t}: P-T criticality " + ", ".join(f"{m} {x:.3g}" for m, x in body))
    claims.append(_claim(8, "lower modules are less critical than higher ones (P-T)", f8, txt))
    # 9
    f9, txt = [], []
    for t in targets:
        b = results.get(f"basin/{t}")
        if b:
            rows9 = b["rows"]
            final_e = max(r["checkpoint"] for r in rows9)
            final_acc = np.mean([r["test_acc"] for r in rows9 if r["checkpoint"] == final_e])
            per = {}
            for r in rows9:
                per.setdefault(r["checkpoint"], []).append(r)
            parts = []
            for e in sorted(per):
                acc = np.mean([r["test_acc"] for r in per[e]])
                bar = np.mean([_nan(r["barrier_error"]) for r in per[e]])
                parts.append(f"ckpt {e:g}: acc {acc:.3f}, barrier {bar:.3f}")
            earlier = [e for e in per if e < final_e]
            f9.append(any(abs(np.mean([r["test_acc"] for r in per[e]]) - final_acc) <= 0.01 for e in earlier))
            txt.append(f"{t}: " + "; ".join(parts))
    claims.append(_claim(9, "fine-tuning from an earlier checkpoint can match the final one (within 0.01)", f9, txt))
    return claims


def judge_liu_claims(plan: Plan, results: dict[str, dict]) -> list[dict]:
    """Claims L1-L5 of Liu et al. (SCIENCE.md), each with the figures behind it and a verdict from them."""
    targets = [t.display for t in plan.config.targets]

    claims = []
    # L1: flatter minima (top eigenvalue, loss increase at the largest r) and small relative deviation
    f, txt = [], []
    for t in targets:
        fl, dv = results.get(f"flatness/{t}"), results.get(f"deviation/{t}")
        if fl:
            ep, er = _nan(fl["P-T"]["top_eigenvalue"]), _nan(fl["RI-T"]["top_eigenvalue"])
            ip, ir = _nan(fl["P-T"]["loss_increase"][-1]), _nan(fl["RI-T"]["loss_increase"][-1])
            f.append(ep < er)
            txt.append(f"{t}: top Hessian eigenvalue P-T {ep:.3g} vs RI-T {er:.3g}; loss increase at r = "
                       f"{fl['P-T']['radii'][-1]:g}: {ip:.3g} vs {ir:.3g}")
        if dv:
            dp = [_nan(x) for x in dv["P-T"]["mean"][-1]]
            dr = [_nan(x) for x in dv["RI-T"]["mean"][-1]]
            body = [(m, a, b) for m, a, b in zip(dv["P-T"]["modules"], dp, dr, strict=False) if m != "head"]
            f.append(all(a < b for _, a, b in body))
            txt.append(f"{t}: final relative deviation P-T/RI-T " + ", ".join(f"{m} {a:.2f}/{b:.2f}" for m, a, b in body))
    claims.append(_claim("L1", "fine-tuned models sit in flatter minima and stay close to the pre-trained weights", f, txt))
    # L2: the gradient is more Lipschitz (smaller change of gradient per unit step) along training, for P-T
    f, txt = [], []
    for t in targets:
        st = results.get(f"stability/{t}")
        if st:
            def beta(rows):
                return [float(np.nanmean([_nan(v) for v in r["grad_lipschitz"]])) for r in rows]
            bp, br = beta(st["P-T"]), beta(st["RI-T"])
            f.append(float(np.mean(bp)) < float(np.mean(br)))
            txt.append(f"{t}: gradient Lipschitz constant along training P-T " + "/".join(f"{x:.3g}" for x in bp)
                       + " vs RI-T " + "/".join(f"{x:.3g}" for x in br))
    claims.append(_claim("L2", "pre-trained weights make the gradient more Lipschitz along training", f, txt))
    # L3: the gradient's energy on the top singular direction is smaller with pre-trained weights
    f, txt = [], []
    for t in targets:
        pg = results.get(f"principal/{t}")
        if pg:
            body = [i for i, n in enumerate(pg["P-T"]["weights"]) if not n.startswith("head")]
            fp = float(np.mean([_nan(pg["P-T"]["fraction"][i][0]) for i in body]))
            fr = float(np.mean([_nan(pg["RI-T"]["fraction"][i][0]) for i in body]))
            f.append(fp < fr)
            txt.append(f"{t}: mean fraction of gradient energy on the top singular direction (body weights) "
                       f"pre-trained {fp:.3f} vs random {fr:.3f}")
    claims.append(_claim("L3", "pre-trained weights suppress the gradient's principal component", f, txt))
    # L4: similarity of inputs and labels predicts transferability: rank correlations with the gain
    rel = results.get("relate/all")
    f, txt = [], []
    if rel:
        for key, c in rel["correlations"].items():
            if key.endswith("/gain") and c["rho"] is not None and math.isfinite(_nan(c["rho"])):
                lo = _nan(c["low"])
                f.append(lo > 0)
                txt.append(f"{key.split('/')[0]}: rho {c['rho']:+.2f} [{lo:+.2f}, {_nan(c['high']):+.2f}] (n = {c['n']})")
    claims.append(_claim("L4", "transferability follows the similarity of inputs and labels (scores from P "
                   "against the measured gain, Spearman rho with a 90% bootstrap interval)", f, txt))
    # L5: the gain first rises and then falls along pre-training
    f, txt = [], []
    by_target = checkpoint_gains(results)
    for t in targets:
        gains = by_target.get(t)
        if gains:
            peak = max(range(len(gains)), key=lambda i: gains[i][1])
            f.append(0 < peak < len(gains) - 1)
            txt.append(f"{t}: gain over RI-T by checkpoint " + ", ".join(f"{e:g}: {g:+.3f}" for e, g in gains))
    claims.append(_claim("L5", "transferability first rises and then falls along pre-training", f, txt))
    return claims


def format_claims(claims: list[dict]) -> str:
    lines = []
    for c in claims:
        lines.append(f"claim {c['claim']}: {c['text']}\n  -> {c['verdict'].upper()}: {c['figures'] or 'no figures'}")
    return "\n".join(lines)


def write_claims(store: Store, claims: list[dict]) -> Path:
    path = store.root / "analyses" / "claims.json"
    atomic_write_text(path, dumps(claims))
    return path


def _liu_jobs(plan: Plan, store: Store, settings: AnalysisConfig, jobs: list, out: AnalysisRun, p_spec: RunSpec,
              p_done: bool) -> None:
    """The analyses of Liu et al. (2019), appended to ``jobs`` (same caching as the others)."""
    from ..analyses.flatness import flatness
    from ..analyses.gradients import gradient_stability, principal_gradient
    from ..analyses.transferability import rank_correlation, transferability_scores

    cfg = plan.config
    full = cfg.data.image_size
    score_keys: list[str] = []
    for t in cfg.targets:
        name = t.display
        pt = _runs(plan, store, name, full, "P-T")
        ri = _runs(plan, store, name, full, "RI-T")
        if not pt or not ri:
            out.missing[f"liu-{name}"] = f"needs a finished P-T and RI-T run at block {full}"
            continue
        a, b = pt[0], ri[0]
        ids = [a.run_id, b.run_id]

        def do_flat(a=a, b=b, t=t):
            data = _domain(t, cfg.data)
            return {arm: flatness(load_run_model(store, s), data.train, n_examples=settings.flatness_examples,
                                  iters=settings.flatness_iters, tol=settings.flatness_tol, radii=settings.flatness_radii,
                                  samples=settings.flatness_samples, seed=settings.seed).to_dict()
                    for arm, s in (("P-T", a), ("RI-T", b))}

        jobs.append(("flatness", name, {k: getattr(settings, k) for k in settings.__dataclass_fields__
                                        if k.startswith("flatness")} | {"seed": settings.seed, "sample": "balanced"},
                     ids, do_flat))

        def do_deviation(pt=pt, ri=ri):
            res = {}
            for arm, specs in (("P-T", pt), ("RI-T", ri)):
                hs = [store.read_json(s.run_id, "history.json") for s in specs]
                modules = list(hs[0]["deviation"][0]) if hs[0]["deviation"] else []
                per = np.array([[[d.get(m, np.nan) for m in modules] for d in h["deviation"]] for h in hs], dtype=float)
                res[arm] = {"epochs": hs[0]["epoch"], "modules": modules, "seeds": len(hs),
                            "mean": np.nanmean(per, 0).tolist(), "std": np.nanstd(per, 0).tolist()}
            return res

        jobs.append(("deviation", name, {}, [s.run_id for s in pt + ri], do_deviation))

        def do_stability(a=a, b=b, t=t):
            data = _domain(t, cfg.data)
            res = {}
            for arm, s in (("P-T", a), ("RI-T", b)):
                points = [(0.0, "init")] + [(float(e), f"epoch_{e:g}") for e in s.train.checkpoint_epochs] \
                    + [(float(s.train.epochs), "weights")]
                rows = []
                for e, which in points:
                    r = gradient_stability(load_run_model(store, s, which), data.train, lr=s.train.lr,
                                           ks=settings.stability_ks, n_examples=settings.stability_examples)
                    rows.append({"epoch": e, **r.to_dict()})
                res[arm] = rows
            return res

        jobs.append(("stability", name, {"ks": settings.stability_ks, "n": settings.stability_examples,
                                         "sample": "balanced"}, ids, do_stability))

        def do_principal(a=a, b=b, t=t):
            data = _domain(t, cfg.data)
            return {arm: principal_gradient(load_run_model(store, s, "init"), data.train, top_k=settings.principal_top_k,
                                            n_examples=settings.principal_examples).to_dict()
                    for arm, s in (("P-T", a), ("RI-T", b))}

        jobs.append(("principal", name, {"k": settings.principal_top_k, "n": settings.principal_examples,
                                         "sample": "balanced"}, ids, do_principal))

        if p_done:
            def do_scores(t=t):
                data = _domain(t, cfg.data)
                # balanced over the source classes (splits are stored class by class)
                src = _domain(cfg.source, cfg.data).test.sample(settings.scores_source_examples, settings.seed).x
                model = load_run_model(store, p_spec)
                res = {}
                for blk in cfg.block_sizes:
                    d = data.shuffled(blk, cfg.data.shuffle_seed) if blk != full else data
                    res[str(blk)] = transferability_scores(model, d.train.x, d.train.y, src, layer="pool",
                                                           n_classes=data.num_classes, seed=settings.seed).to_dict()
                return res

            scores_args = {"n_source": settings.scores_source_examples, "blocks": cfg.block_sizes, "seed": settings.seed,
                           "target": to_dict(t), "source": to_dict(cfg.source), "data": to_dict(cfg.data), "v": 2}
            score_keys.append(_key("scores", name, scores_args, [p_spec.run_id]))
            jobs.append(("scores", name, scores_args, [p_spec.run_id], do_scores))

    if p_done:
        def do_relate():
            rows = out.results.get("transfer/all", {}).get("rows", [])
            points = []
            for r in rows:
                sc = out.results.get(f"scores/{r['target']}", {}).get(str(r["block_size"]))
                if sc is None:
                    continue
                points.append({"target": r["target"], "block_size": r["block_size"], "gain": r["gain"],
                               "speed_gain": _nan(r["P-T_speed_mean_acc_k"]) - _nan(r["RI-T_speed_mean_acc_k"]),
                               **{k: sc[k] for k in ("leep", "logme", "h_score", "mmd2_rbf")}})
            corr = {}
            for score in ("leep", "logme", "h_score", "mmd2_rbf"):
                sign = -1.0 if score == "mmd2_rbf" else 1.0  # a smaller distance should mean more transfer
                for fig in ("gain", "speed_gain"):
                    corr[f"{score}/{fig}"] = rank_correlation([sign * _nan(p[score]) for p in points],
                                                              [_nan(p[fig]) for p in points], seed=settings.seed)
            return {"points": points, "correlations": corr,
                    "note": "mmd2_rbf enters with its sign flipped (similarity), so a positive rho means agreement"}

        # keyed by its real inputs: the scores results (their keys) and the finished runs behind the gains
        jobs.append(("relate", "all", {"scores": score_keys, "seed": settings.seed, "v": 2},
                     [r.run_id for r in plan.runs if store.run_status(r.run_id) == RUN_DONE], do_relate))
