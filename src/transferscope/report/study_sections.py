"""The report's sections on the runs themselves: 1. the study (settings, learning-rate choices, sample images), 2. the
transfer gain per target and 3. the block shuffle (accuracy, or the mean AUC of a multi-label target, and the
optimisation speed against the block size).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import metrics as M
from ..config import StudyConfig
from ..store import RUN_DONE, RUN_FAILED
from ..study.plan import file_safe
from ..study.summary import results_table, test_noise
from ..study.tuning import choices
from .page import Section, fmt, label_caption
from .reader import NO_ANALYSES, Reader

__all__ = ["study_section", "transfer_sections"]


def study_section(r: Reader, out: Path) -> Section:
    cfg = r.cfg
    sec = Section("study", "1. The study",
                  "Source, targets, model and settings of this study, and what was run.")
    runs = {x.run_id: x for x in r.plan.tuning + r.plan.runs}
    infos = {rid: r.store.run_info(rid) for rid in runs}
    done = [i for i in infos.values() if i and i.get("status") == RUN_DONE]
    failed = [i for i in infos.values() if i and i.get("status") == RUN_FAILED]
    run_seconds = sum(i.get("seconds", 0.0) for i in done + failed)
    total = r.base_plan.size()
    sec.table(["", ""], [
        ["study", cfg.name],
        ["source", f"{cfg.source.display} ({cfg.source.name})" if cfg.has_source else "none (P is given)"],
        ["targets", ", ".join(f"{t.display} ({t.name}, {t.n_per_class or 'all'} training images per class)"
                              for t in cfg.targets)],
        ["model", _model_text(cfg)],
        ["block sizes", ", ".join(map(str, cfg.block_sizes))],
        ["seeds", ", ".join(map(str, cfg.seeds))],
        ["pre-trained model P", _pretrained_text(r)],
        ["fine-tuning (P-T)", _train_text(cfg.finetune)],
        ["from scratch (RI-T)", _train_text(cfg.scratch)],
        ["runs", f"{len(done)} done, {len(failed)} failed, {max(0, total - len(done) - len(failed))} not run, of {total}"],
        ["compute", f"{run_seconds / 60:.1f} min of training (sum over runs), {r.analysis_seconds / 60:.1f} min of analyses"],
    ], caption="settings (from study.json)")
    cs = choices(r.base_plan, r.store)
    if cs:
        rows = []
        for c in cs:
            s = c.selection
            arm = s.arm + (f" from pre-training epoch {s.start:g}" if s.start >= 0 else "")  # the basin sweep's
            rows.append([arm, s.target, s.block_size,
                         ", ".join(f"{lr:g}: {fmt(a)}" for lr, a in c.val_acc.items()),
                         (fmt(c.lr, "g") + (" (no candidate fit its training data)" if c.none_fit else ""))
                         if c.state == "chosen" else c.state])
        word = M.metric_labels(c.metric for c in cs)
        sec.table(["arm", "target", "block", f"validation {word} per learning rate (first seed)", "chosen"], rows,
                  caption=f"learning rates chosen per arm and target on validation {word} (never on test data)")
    for why in failed:
        sec.note(f"failed run {why['run_id']}: {str(why.get('reason', '')).splitlines()[0] if why.get('reason') else ''}")
    # sample strips
    for role, d in ([("source", cfg.source)] if cfg.has_source else []) + [("target", t) for t in cfg.targets]:
        imgs = r.images(d.display)
        if imgs is None:
            sec.missing(f"sample images of {d.display}: {NO_ANALYSES}")
            continue
        from .figures import image_grid

        classes = [str(c) for c in imgs["classes"]]
        caps = [label_caption(y, classes) for y in imgs["sample_labels"]]
        blocks = sorted((int(k[len("sample_b"):]) for k in imgs if k.startswith("sample_b")), reverse=True)
        rows = [(f"block {b}" + (" (none)" if b == cfg.data.image_size else ""), imgs[f"sample_b{b}"], caps) for b in blocks]
        title = f"{role} {d.display}: one training image per class"
        f = image_grid(out / f"samples-{role}-{file_safe(d.display)}.png", rows,
                       title + (", shuffled at each block size" if role == "target" else ""))
        sec.figure(f.name, f"{role} domain {d.display}: one training image of each of the first classes"
                   + ("; each row is the same images block-shuffled at that block size (one permutation per domain)"
                      if role == "target" else ""))
    return sec


def _per_label_auc(r: Reader, targets: list[str], block_size: int) -> dict[str, dict]:
    """Per multi-label target: the per-label test AUC of P-T and RI-T (mean over the seeds where it is defined),
    the label names and the excluded ones (no positive or no negative test example), from the main runs at
    ``block_size``."""
    out: dict[str, dict] = {}
    for spec in r.plan.runs:
        t = spec.domain.display
        if (t not in targets or spec.arm == "P" or spec.parent_checkpoint >= 0 or spec.block_size != block_size
                or r.store.run_status(spec.run_id) != RUN_DONE):
            continue
        m = r.store.read_json(spec.run_id, "metrics.json")
        per = m.get("test_auc_per_label")
        if M.metric_of(m) != M.AUC or not isinstance(per, list):
            continue
        d = out.setdefault(t, {"names": None, "excluded": set(), "P-T": [], "RI-T": []})
        names = (r.store.run_info(spec.run_id) or {}).get("classes")
        if d["names"] is None and isinstance(names, list) and len(names) == len(per):
            d["names"] = [str(x) for x in names]
        d["excluded"].update(map(str, m.get("test_auc_excluded") or []))
        d[spec.arm].append([math.nan if v is None else float(v) for v in per])
    for d in out.values():
        width = max(len(v) for arm in ("P-T", "RI-T") for v in d[arm]) if d["P-T"] or d["RI-T"] else 0
        d["names"] = d["names"] or [str(j) for j in range(width)]
    return out


def _mean_defined(rows: list[list[float]], j: int) -> float:
    v = [x[j] for x in rows if j < len(x) and math.isfinite(x[j])]
    return float(np.mean(v)) if v else math.nan


def _train_text(t) -> str:
    lr = f"lr chosen from {t.lr_grid}" if t.lr_grid else f"lr {t.lr:g}"
    return (f"{t.epochs} epochs, batch {t.batch_size}, {lr}, momentum {t.momentum:g}, weight decay {t.weight_decay:g}, "
            f"{t.schedule} schedule" + (f", warm-up {t.warmup_epochs:g} epochs" if t.warmup_epochs else "")
            + (f", gradient clip {t.grad_clip:g}" if t.grad_clip else ""))


def transfer_sections(r: Reader, out: Path) -> list[Section]:
    """Sections 2 (the gain per target, unshuffled) and 3 (the block shuffle), from the pairs of finished P-T and
    RI-T runs (:func:`~transferscope.study.summary.results_table`)."""
    rows = [x for x in results_table(r.plan, r.store) if x["P-T"].n and x["RI-T"].n]
    metric_of = {x["target"]: x.get("metric", M.ACC) for x in rows}
    return [_gain_section(r, out, rows, metric_of), _shuffle_section(r, out, rows, metric_of)]


def _gain_section(r: Reader, out: Path, rows: list[dict], metric_of: dict[str, str]) -> Section:
    from .figures import gain_bars

    full = r.cfg.data.image_size
    word = M.metric_labels(metric_of.values())
    multi = word != M.metric_label(M.ACC)
    s2 = Section("gain", "2. Transfer gain per target",
                 f"Final test {word} of fine-tuning the pre-trained model (P-T) and of training from a random "
                 "initialisation (RI-T) on each unshuffled target."
                 + (" A multi-label target (a sigmoid per label) is judged by the mean over its labels of the ROC "
                    "AUC (1 is perfect, 0.5 chance); a label whose AUC is undefined on the test split (no positive "
                    "or no negative example) is left out of the mean and named." if multi else ""))
    unshuffled = [x for x in rows if x["block_size"] == full]
    if unshuffled:
        by_metric = {m: [x for x in unshuffled if metric_of[x["target"]] == m] for m in (M.ACC, M.AUC)}
        for m, xs in by_metric.items():
            if not xs:
                continue
            mw = M.metric_label(m)
            f = gain_bars(out / ("gain.png" if m == M.ACC or not by_metric[M.ACC] else "gain-auc.png"), xs, m)
            s2.figure(f.name, f"final test {mw} per target: mean over seeds, whiskers one sample standard deviation")
            s2.table(["target", f"P-T {mw}", f"RI-T {mw}", "gain (P-T - RI-T)", "seeds P-T / RI-T", "test images",
                      "test noise of one run"],
                     [[x["target"], f"{fmt(x['P-T'].acc_mean)} ± {fmt(x['P-T'].acc_std)}",
                       f"{fmt(x['RI-T'].acc_mean)} ± {fmt(x['RI-T'].acc_std)}", fmt(x["gain"], "+.3f"),
                       f"{x['P-T'].n} / {x['RI-T'].n}", x["n_test"] or "n/a", fmt(test_noise(x))] for x in xs],
                     caption=f"± : the standard deviation over seeds. Test noise: the binomial standard deviation "
                             f"sqrt(a (1 - a) / n) of one run's {mw} a on n test images, a part of that spread "
                             "(n/a for a mean AUC)" if m == M.ACC else "± : the standard deviation over seeds")
        per_label = _per_label_auc(r, [x["target"] for x in by_metric[M.AUC]], full)
        for t, d in per_label.items():
            s2.table(["label", "P-T AUC", "RI-T AUC"],
                     [[name, fmt(_mean_defined(d["P-T"], j)), fmt(_mean_defined(d["RI-T"], j))]
                      for j, name in enumerate(d["names"])],
                     caption=f"{t}: test AUC per label, mean over seeds ({len(d['P-T'])} P-T, {len(d['RI-T'])} RI-T "
                             "runs); n/a: undefined")
            if d["excluded"]:
                ex = [n for n in d["names"] if n in d["excluded"]] + sorted(d["excluded"] - set(d["names"]))
                s2.note(f"{t}: AUC undefined: no positive/negative example in the test split for {len(ex)} of "
                        f"{len(d['names'])} labels ({', '.join(ex)}): left out of the mean AUC")
    else:
        s2.missing(f"no target has finished P-T and RI-T runs at block size {full} (unshuffled)")
    return s2


def _shuffle_section(r: Reader, out: Path, rows: list[dict], metric_of: dict[str, str]) -> Section:
    from .figures import shuffle_lines, training_curves

    k, frac = r.cfg.finetune.speed_epochs, r.cfg.finetune.speed_fraction
    word = M.metric_labels(metric_of.values())
    multi = word != M.metric_label(M.ACC)
    if multi:
        speed_text = (f" For a multi-label target both speed figures read the mean AUC of the model after each "
                      f"epoch on a fixed seeded subset of its training data (a batch's AUC means little): (a) its "
                      f"mean over epochs 1 to {k}; (b) epoch x steps per epoch at the first epoch reaching {frac:g} "
                      "of the last epoch's.")
    else:
        speed_text = ""
    s3 = Section("shuffle", "3. Block shuffle: feature reuse against low-level statistics",
                 f"{'Accuracy' if not multi else word[0].upper() + word[1:]} and optimisation speed against the "
                 f"block size (smaller blocks destroy more of the visual "
                 f"features). Speed (a): mean training accuracy over the first {k} epochs (higher is faster); speed "
                 f"(b): steps to reach {frac:g} of the final training accuracy (lower is faster)." + speed_text)
    if rows:
        f = shuffle_lines(out / "shuffle.png", rows, k, frac)
        s3.figure(f.name, f"per target: mean over seeds (whiskers: sample std for {word}) against block size")
        short = M.metric_labels(metric_of.values(), " / ", short=True)
        s3.table(["target", "block", f"P-T {short}", f"RI-T {short}", "gain", "speed (a) P-T / RI-T",
                  "speed (b) P-T / RI-T"],
                 [[x["target"], x["block_size"], f"{fmt(x['P-T'].acc_mean)} ± {fmt(x['P-T'].acc_std)}",
                   f"{fmt(x['RI-T'].acc_mean)} ± {fmt(x['RI-T'].acc_std)}", fmt(x["gain"], "+.3f"),
                   f"{fmt(x['P-T'].speed_mean_acc_k)} / {fmt(x['RI-T'].speed_mean_acc_k)}",
                   f"{fmt(x['P-T'].speed_steps_to_frac, '.0f')} / {fmt(x['RI-T'].speed_steps_to_frac, '.0f')}"]
                  for x in rows])
        curves: dict = {}
        spe: dict = {}
        for spec in r.plan.runs:
            if spec.arm == "P" or spec.parent_checkpoint >= 0 or r.store.run_status(spec.run_id) != RUN_DONE:
                continue
            h = r.store.read_json(spec.run_id, "history.json")
            curve = h.get("step_acc") if metric_of.get(spec.domain.display, M.ACC) == M.ACC else h.get("train_auc")
            if curve is None:
                continue
            curves.setdefault((spec.domain.display, spec.block_size), {}).setdefault(spec.arm, []).append(
                np.asarray(curve, dtype=float))
            spe[(spec.domain.display, spec.block_size, spec.arm)] = h["steps_per_epoch"]
        f = training_curves(out / "curves.png", curves, spe, k, metric_of)
        s3.figure(f.name, f"training accuracy per step over the first {k} epochs (running mean over a quarter "
                  f"epoch), mean over seeds" + ("; multi-label targets: the mean AUC on the fixed training subset "
                                                "after each epoch" if multi else ""))
    else:
        s3.missing("no finished pair of P-T and RI-T runs yet")
    return s3


def _model_text(cfg: StudyConfig) -> str:
    m = cfg.model
    what = f"{m.name}, blocks {m.blocks}, width {m.width}, norm {m.norm}" if m.name == "resnet" else \
        f"{m.name}" + (f" ({', '.join(f'{k}={v!r}' for k, v in m.kwargs.items())})" if m.kwargs else "")
    extra = [f"head {m.head}" if m.head else "", f"layers {', '.join(m.layers)}" if m.layers else "",
             f"input mean {m.mean} std {m.std}" if m.mean or m.std else "input scaled to [-1, 1]"]
    return "; ".join([what, *[e for e in extra if e], f"images {cfg.data.image_size} px, {cfg.data.channels} channel(s)"])


def _pretrained_text(r: Reader) -> str:
    """Where each P came from: trained here (its settings), or given as weights (path and content hash)."""
    cfg, out = r.cfg, []
    for p in r.plan.pretrains():
        info = r.store.run_info(p.run_id) or {}
        given = info.get("imported_from")
        if given:
            out.append(f"given: {given['path']} (sha256 {given['sha256']}), run {p.run_id}")
        elif cfg.model.weights:
            out.append(f"to be given: {cfg.model.weights} (sha256 {cfg.model.weights_sha256}), not stored yet")
        else:
            out.append(f"pre-trained here on {cfg.source.display}, seed {p.seed} (run {p.run_id}): "
                       + _train_text(cfg.pretrain) + f"; checkpoints at {cfg.pretrain.checkpoint_epochs} epochs")
    return "; ".join(out)
