"""The report of a study: one self-contained HTML page and its PNG figures, from the results folder alone.

``render_report(results)`` reads ``study.json``, the runs and ``analyses/`` (written by ``transferscope
analyze``) and writes ``results/report/index.html`` with the figures beside it. It does not import torch, so
a study run on a cluster can be rendered anywhere. Every name that comes from a user (domain, run, layer,
module names) is HTML-escaped by the template engine (Jinja2 autoescaping). A figure whose inputs are
missing is replaced by a note that says what is missing; the rest of the report is still written.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import jsonio
from .. import metrics as M
from ..claims import OUTCOMES, Verdict
from ..claims import stats as claim_stats
from ..claims.compare import load_across, load_verdicts
from ..config import ConfigError, StudyConfig, from_dict, to_dict
from ..store import RUN_DONE, RUN_FAILED, Store, read_stored_json
from ..study.plan import file_safe, make_plan
from ..study.summary import checkpoint_gains, flags, results_table
from ..study.tuning import choices, resolve
from ..vocab.caveats import summary as caveat_summary
from ..vocab.records import ModelsResult, PairsResult, result_from_dict
from .figures import FIGURE_FORMATS, figure_formats
from .template import render_html

log = logging.getLogger(__name__)

__all__ = ["render_report", "ReportError"]


class ReportError(ConfigError):
    """The folder is not a results folder (no study.json)."""


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    items: list[dict[str, Any]] = field(default_factory=list)

    def figure(self, file: str, caption: str) -> None:
        self.items.append({"kind": "figure", "file": file, "caption": caption})

    def table(self, headers: list[str], rows: list[list[Any]], caption: str = "") -> None:
        self.items.append({"kind": "table", "headers": headers, "rows": rows, "caption": caption})

    def note(self, text: str) -> None:
        self.items.append({"kind": "note", "text": text})

    def missing(self, text: str) -> None:
        self.items.append({"kind": "missing", "text": text})


def _label_caption(y: Any, classes: list[str]) -> str:
    """An image's caption: its class, or for a multi-label image the labels present ("+"-joined; "none")."""
    y = np.asarray(y)
    if y.ndim == 1:  # multi-label: 1 present, 0 absent, NaN unknown
        present = [classes[j] for j in np.flatnonzero(y == 1) if j < len(classes)]
        return "+".join(present) or "none"
    return classes[int(y)] if 0 <= int(y) < len(classes) else str(y)


def _f(x: Any, fmt: str = ".3f") -> str:
    if x is None:
        return "n/a"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return format(v, fmt) if math.isfinite(v) else ("inf" if v > 0 else "n/a")


class _Reader:
    def __init__(self, root: Path) -> None:
        self.root = root
        study = root / "study.json"
        if not study.is_file():
            raise ReportError(f"{root}: no study.json; is this a results folder written by 'transferscope run'?")
        self.store = Store(root)
        self.cfg: StudyConfig = from_dict(StudyConfig, self.store.read_study())
        self.base_plan = make_plan(self.cfg, check=False)  # learning-rate choices still open
        self.plan = resolve(self.base_plan, self.store)
        adir = root / "analyses"
        idx = adir / "index.json"
        self.index = read_stored_json(idx, f"remove it: transferscope analyze {root} writes it again") \
            if idx.is_file() else None
        self.results: dict[str, Any] = {}
        """Result name (``<analysis>/<target>``) -> its record (:mod:`transferscope.vocab.records`)."""
        self.unreadable: dict[str, str] = {}
        """Result name -> why its file could not be read (e.g. written by an older version)."""
        self.analysis_seconds = 0.0
        if self.index:
            for name, file in self.index["results"].items():
                p = adir / file
                if not p.is_file():
                    continue
                try:
                    d = jsonio.read(p)
                    self.results[name] = result_from_dict(name, d["result"])
                except (KeyError, TypeError, ValueError, AttributeError) as e:  # the section says what is missing
                    log.warning("%s: unreadable (%s: %s)", p, type(e).__name__, e)
                    self.unreadable[name] = f"{file}: {type(e).__name__}: {e}"
                    continue
                self.analysis_seconds += d.get("seconds", 0.0)
        self.claims: list[Verdict] | None = None
        self.claims_error = ""
        if (adir / "claims.json").is_file():
            try:
                self.claims = load_verdicts(root)
            except ValueError as e:  # a verdict file of an older version: say so, draw the rest
                self.claims_error = str(e)

    def metric_of(self, target: str) -> str:
        """``acc`` or ``auc``: what a target's runs are judged by (from the transfer record; ``acc`` without one)."""
        tr = self.results.get("transfer/all")
        return next((row.metric for row in tr.rows if row.target == target), M.ACC) if tr else M.ACC

    def images(self, domain: str) -> dict[str, np.ndarray] | None:
        if not self.index or domain not in self.index.get("images", {}):
            return None
        p = self.root / "analyses" / self.index["images"][domain]
        if not p.is_file():
            return None
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def why_missing(self, what: str, analysis: str = "") -> str:
        """What to say where results are missing: analyze was never run, or ``what`` (and which result files of
        ``analysis`` could not be read)."""
        if self.index is None:
            return NO_ANALYSES
        bad = [why for name, why in self.unreadable.items() if analysis and name.split("/", 1)[0] == analysis]
        if bad:
            what += ("; unreadable result files (written by an older version? run `transferscope analyze` again): "
                     + "; ".join(bad))
        return what

    def per_target(self, name: str) -> dict[str, Any]:
        """Per target: the record of analysis ``name`` (e.g. a :class:`~transferscope.vocab.records.PairsResult`)."""
        return {t.display: self.results[f"{name}/{t.display}"] for t in self.cfg.targets
                if f"{name}/{t.display}" in self.results}

    def first_pairs(self, name: str) -> dict[str, dict[str, Any]]:
        """Per target: pair kind -> the result of its first pair (lowest seeds), for the figures."""
        out = {}
        for t, res in self.per_target(name).items():
            if not isinstance(res, PairsResult):
                continue
            kinds = {k: res.first(k) for k in res.kinds()}
            if kinds:
                out[t] = kinds
        return out

    def first_models(self, name: str) -> dict[str, dict[str, Any]]:
        """Per target: arm -> the result of its first seed's model, for the figures."""
        out = {}
        for t, res in self.per_target(name).items():
            if not isinstance(res, ModelsResult):
                continue
            arms_ = {a: res.first(a) for a in sorted(res.arms(), key=lambda a: min(m.seed for m in res.of_arm(a)))}
            if arms_:
                out[t] = arms_
        return out


NO_ANALYSES = "no analyses found: run `transferscope analyze` on this folder first"


def _study_section(r: _Reader, out: Path) -> Section:
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
            rows.append([s.arm, s.target, s.block_size,
                         ", ".join(f"{lr:g}: {_f(a)}" for lr, a in c.val_acc.items()),
                         (_f(c.lr, "g") + (" (no candidate fit its training data)" if c.none_fit else ""))
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
        caps = [_label_caption(y, classes) for y in imgs["sample_labels"]]
        blocks = sorted((int(k[len("sample_b"):]) for k in imgs if k.startswith("sample_b")), reverse=True)
        rows = [(f"block {b}" + (" (none)" if b == cfg.data.image_size else ""), imgs[f"sample_b{b}"], caps) for b in blocks]
        title = f"{role} {d.display}: one training image per class"
        f = image_grid(out / f"samples-{role}-{file_safe(d.display)}.png", rows,
                       title + (", shuffled at each block size" if role == "target" else ""))
        sec.figure(f.name, f"{role} domain {d.display}: one training image of each of the first classes"
                   + ("; each row is the same images block-shuffled at that block size (one permutation per domain)"
                      if role == "target" else ""))
    return sec


def _per_label_auc(r: _Reader, targets: list[str], block_size: int) -> dict[str, dict]:
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


def _transfer_sections(r: _Reader, out: Path) -> list[Section]:
    from .figures import gain_bars, shuffle_lines, training_curves

    cfg = r.cfg
    full = cfg.data.image_size
    rows = [x for x in results_table(r.plan, r.store) if x["P-T"].n and x["RI-T"].n]
    k, frac = cfg.finetune.speed_epochs, cfg.finetune.speed_fraction
    metric_of = {x["target"]: x.get("metric", M.ACC) for x in rows}
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
            s2.table(["target", f"P-T {mw}", f"RI-T {mw}", "gain (P-T - RI-T)", "seeds P-T / RI-T"],
                     [[x["target"], f"{_f(x['P-T'].acc_mean)} ± {_f(x['P-T'].acc_std)}",
                       f"{_f(x['RI-T'].acc_mean)} ± {_f(x['RI-T'].acc_std)}", _f(x["gain"], "+.3f"),
                       f"{x['P-T'].n} / {x['RI-T'].n}"] for x in xs])
        per_label = _per_label_auc(r, [x["target"] for x in by_metric[M.AUC]], full)
        for t, d in per_label.items():
            s2.table(["label", "P-T AUC", "RI-T AUC"],
                     [[name, _f(_mean_defined(d["P-T"], j)), _f(_mean_defined(d["RI-T"], j))]
                      for j, name in enumerate(d["names"])],
                     caption=f"{t}: test AUC per label, mean over seeds ({len(d['P-T'])} P-T, {len(d['RI-T'])} RI-T "
                             "runs); n/a: undefined")
            if d["excluded"]:
                ex = [n for n in d["names"] if n in d["excluded"]] + sorted(d["excluded"] - set(d["names"]))
                s2.note(f"{t}: AUC undefined: no positive/negative example in the test split for {len(ex)} of "
                        f"{len(d['names'])} labels ({', '.join(ex)}): left out of the mean AUC")
    else:
        s2.missing(f"no target has finished P-T and RI-T runs at block size {full} (unshuffled)")
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
                 [[x["target"], x["block_size"], f"{_f(x['P-T'].acc_mean)} ± {_f(x['P-T'].acc_std)}",
                   f"{_f(x['RI-T'].acc_mean)} ± {_f(x['RI-T'].acc_std)}", _f(x["gain"], "+.3f"),
                   f"{_f(x['P-T'].speed_mean_acc_k)} / {_f(x['RI-T'].speed_mean_acc_k)}",
                   f"{_f(x['P-T'].speed_steps_to_frac, '.0f')} / {_f(x['RI-T'].speed_steps_to_frac, '.0f')}"]
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
    return [s2, s3]


def _mistakes_section(r: _Reader, out: Path) -> Section:
    from .figures import image_grid

    sec = Section("mistakes", "4. Mistakes",
                  "Common mistakes: test examples both models of a pair get wrong; uncommon: exactly one does. "
                  "Every pair of distinct seeds within an arm, and every P-T/RI-T pair, on the unshuffled target.")
    res = r.per_target("mistakes")
    if not res:
        sec.missing(r.why_missing("no mistakes results (each needs 2 finished P-T and RI-T runs)", "mistakes"))
        return sec
    rows, multi = [], {}
    for t, out_ in res.items():
        for p in out_.pairs:
            m = p.result
            if m.unit == "example-label":
                multi[t] = m
            what = f"{m.n} decisions ({m.n_examples} x {m.n_labels} labels)" if m.unit == "example-label" else m.n
            rows.append([t, p.kind, " / ".join(map(str, p.seeds)), what, f"{m.common} ({_f(m.common_fraction)})",
                         f"{m.uncommon} ({_f(m.uncommon_fraction)})"])
    sec.table(["target", "pair", "seeds", "test examples", "common mistakes (fraction)", "uncommon mistakes (fraction)"],
              rows)
    for t, m in multi.items():
        sec.note(f"{t} is multi-label: a mistake is counted per (test example, label) decision, a model saying a label "
                 f"is present where its probability (sigmoid of the logit) is at least {m.threshold:g} "
                 "(analysis.multilabel_threshold); a decision whose label is unknown in the data is left out. Common: "
                 "decisions both models get wrong; uncommon: decisions exactly one gets wrong; fractions of the known "
                 "decisions. The images below are test images with at least one such decision.")
    for t in res:
        imgs = r.images(t)
        if imgs is None or "pt_right_ri_wrong_x" not in imgs:
            sec.missing(f"images of {t}'s uncommon mistakes: not written (run `transferscope analyze`)")
            continue
        classes = [str(c) for c in imgs["classes"]]
        rows_img = []
        for key, label in (("pt_right_ri_wrong", "P-T right,\nRI-T wrong"), ("ri_right_pt_wrong", "RI-T right,\nP-T wrong")):
            caps = [f"#{int(i)} {_label_caption(y, classes)}"
                    for i, y in zip(imgs[f"{key}_index"], imgs[f"{key}_y"], strict=True)]
            rows_img.append((label, imgs[f"{key}_x"], caps))
        f = image_grid(out / f"mistakes-{file_safe(t)}.png", rows_img, f"{t}: test images one arm gets right and the other wrong")
        sec.figure(f.name, f"{t}: up to 16 test images per row (first P-T against first RI-T seed), captioned with the test "
                   "index and the true class")
    return sec


def _similarity_section(r: _Reader, out: Path) -> Section:
    from .figures import cka_lines, distance_bars

    sec = Section("similarity", "5. Feature similarity and parameter distance",
                  "Linear CKA between the same layer of two models on the test images (1: the same features up to "
                  "rotation and scale), and the l2 distance between their parameters.")
    cka = r.first_pairs("cka")
    if cka:
        f = cka_lines(out / "cka.png", cka)
        sec.figure(f.name, "linear CKA per layer and pair (one pair of seeds each; solid: full data, dashed: unbiased "
                   "minibatch estimator)")
    else:
        sec.missing("CKA: " + r.why_missing("no results (needs 2 finished P-T and RI-T runs)", "cka"))
    dist = r.first_pairs("distance")
    if dist:
        f = distance_bars(out / "distance.png", dist)
        sec.figure(f.name, "l2 distance per module (log scale), first pair of each kind; totals in the legend")
        sec.table(["target", "pair", "seeds", "total l2 distance"],
                  [[t, p.kind, " / ".join(map(str, p.seeds)), _f(p.result.total, ".2f")]
                   for t, res in r.per_target("distance").items() for p in res.pairs],
                  caption="total l2 distance in parameter space, every pair (P-T/P: a P-T model and P, its start; "
                          "RI-T/RI: an RI-T model and its random initialisation)")
    else:
        sec.missing("distance: " + r.why_missing("no results", "distance"))
    return sec


def _barrier_section(r: _Reader, out: Path) -> Section:
    from .figures import barrier_lines

    sec = Section("barrier", "6. Performance barrier",
                  "Test loss and error of the models on the straight line between two models; the barrier is the "
                  "largest height of the curve above the chord between its ends.")
    res = r.per_target("barrier")
    if not res:
        sec.missing(r.why_missing("no barrier results", "barrier"))
        return sec
    f = barrier_lines(out / "barrier.png", r.first_pairs("barrier"))
    sec.figure(f.name, "loss and error along the interpolation, first pair of each kind")
    sec.table(["target", "pair", "seeds", "error barrier", "loss barrier", "normalisation"],
              [[t, p.kind, " / ".join(map(str, p.seeds)), _f(p.result.barrier_error), _f(p.result.barrier_loss),
                p.result.bn_policy] for t, out_ in res.items() for p in out_.pairs])
    return sec


def _criticality_section(r: _Reader, out: Path) -> Section:
    from .figures import criticality_maps

    sec = Section("criticality", "7. Module criticality",
                  "For each module: how far it can be moved back towards its initial value (theta^0 = P for P-T, "
                  "the random initialisation for RI-T) and perturbed by noise of scale s while the training loss stays "
                  "within the tolerance. Criticality 0: the module can be fully rewound.")
    res = r.first_models("criticality")
    if not res:
        sec.missing(r.why_missing("no criticality results", "criticality"))
        return sec
    for t, arms in res.items():
        if not all(v.boundary_s for v in arms.values()):
            sec.missing(f"{t}: criticality results without the (a, s) boundary (computed by an older version)")
            continue
        f = criticality_maps(out / f"criticality-{file_safe(t)}.png", t, arms)
        any_arm = next(iter(arms.values()))
        sec.figure(f.name, f"{t}: module x a picture of the largest feasible noise scale, and the criticality per "
                   f"module (first seed of each arm; every seed's P-T criticality enters claim N8; "
                   f"{any_arm.samples} noise samples per point, tolerance {any_arm.tolerance:g})")
    return sec


def _basin_section(r: _Reader, out: Path) -> Section:
    from .figures import basin_lines

    sec = Section("basin", "8. Pre-training checkpoints",
                  "P-T started from earlier checkpoints of pre-training: downstream accuracy, optimisation speed, "
                  "and the error barrier to the P-T started from the final checkpoint (same seed).")
    res = r.per_target("basin")
    if not res:
        sec.missing(r.why_missing("no checkpoint sweep in this study (basin.checkpoint_epochs)", "basin"))
        return sec
    metric_of = {t: r.metric_of(t) for t in res}
    f = basin_lines(out / "basin.png", res, r.cfg.finetune.speed_epochs, metric_of)
    sec.figure(f.name, "mean over seeds (whiskers: std; dots: each seed) against the checkpoint")
    test = "test acc" if set(metric_of.values()) <= {M.ACC} else \
        "test mean AUC" if set(metric_of.values()) == {M.AUC} else "test acc (mean AUC: multi-label)"
    sec.table(["target", "checkpoint (epochs)", "seed", test, "speed (a)", "error barrier"],
              [[t, _f(x.checkpoint, "g"), x.seed, _f(x.test_acc), _f(x.speed_mean_acc_k), _f(x.barrier_error)]
               for t, v in res.items() for x in v.rows])
    return sec


def _model_text(cfg: StudyConfig) -> str:
    m = cfg.model
    what = f"{m.name}, blocks {m.blocks}, width {m.width}, norm {m.norm}" if m.name == "resnet" else \
        f"{m.name}" + (f" ({', '.join(f'{k}={v!r}' for k, v in m.kwargs.items())})" if m.kwargs else "")
    extra = [f"head {m.head}" if m.head else "", f"layers {', '.join(m.layers)}" if m.layers else "",
             f"input mean {m.mean} std {m.std}" if m.mean or m.std else "input scaled to [-1, 1]"]
    return "; ".join([what, *[e for e in extra if e], f"images {cfg.data.image_size} px, {cfg.data.channels} channel(s)"])


def _pretrained_text(r: _Reader) -> str:
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


def _claims_section(r: _Reader, out: Path) -> Section:
    sec = Section("claims", "Verdicts: the claims of Neyshabur et al. (N1-N9) and Liu et al. (L1-L5)",
                  f"The rule, fixed before any result: the statistical unit is the seed (an independent run). A "
                  f"per-seed statistic gets a Welch t-interval; a statistic over pairs of models is averaged over every "
                  f"pair and gets a leave-one-seed-out jackknife interval (seeds, not pairs, are resampled). One error "
                  f"control in both directions: an effect is decisive only when its p-value survives Holm's correction "
                  f"over all claims x targets x effects; it then holds when its {claim_stats.LEVEL:.0%} interval lies "
                  f"on the claim's side of the bound and does not hold when it lies on the other side; otherwise it "
                  f"is inconclusive (so a wrong decisive outcome, either way, has at most a 5% chance per study). "
                  f"Fewer than {claim_stats.MIN_SEEDS} seeds is inconclusive by rule. Claims of sameness are "
                  f"equivalence tests with a stated margin. A claim about every target holds when every target holds "
                  f"and does not hold when any target does not. A decisive outcome that rests on runs that did not "
                  f"fit their training data (or whose files changed) is unreliable, never decisive; other caveats of "
                  f"the runs are listed beside the verdicts.")
    if r.claims is None:
        sec.missing(r.claims_error or NO_ANALYSES)
        return sec
    if r.claims and r.claims[0].conditional_on:
        sec.note(f"Every verdict below is conditional on {r.claims[0].conditional_on}.")
    try:
        across = load_across(r.root)
    except (FileNotFoundError, ValueError) as e:
        across = []
        sec.missing(f"the verdicts under each pre-trained model: {e}")
    seeds = list(across[0].outcomes) if across else []
    if len(seeds) > 1:
        sec.note(f"The study has {len(seeds)} pre-trained models P (seeds {', '.join(map(str, seeds))}); the tables "
                 f"below are the verdicts under the first. A claim holds (does not hold) free of P only when it holds "
                 f"(does not hold) under every P; one that holds under one P and not under another depends on P.")
        sec.table(["claim", *[f"under P of seed {s}" for s in seeds], "together", "why"],
                  [[a.claim, *[a.outcomes.get(s, "") for s in seeds], a.outcome, a.why] for a in across],
                  caption="each claim under every pre-trained model")
    elif across:
        sec.note("The study has one pre-trained model P: whether a verdict depends on it is not measured "
                 "(set pretrain_seeds to several seeds to measure it).")
    sec.table(["claim", "statement", "outcome", "caveats", "why"],
              [[v.claim, v.statement, v.outcome, caveat_summary(v.caveats) or "none", v.why] for v in r.claims],
              caption="one verdict per claim, with the caveats of the runs it rests on")
    cav_rows = [[v.claim, t.target, t.outcome, t.statistical_outcome or t.outcome,
                 f"{c.kind}{' (blocking)' if c.blocking else ''}", c.message, c.remedy]
                for v in r.claims for t in v.targets for c in t.caveats]
    if cav_rows:
        sec.table(["claim", "target", "outcome", "the statistics alone", "caveat", "what", "way out"], cav_rows,
                  caption="what each verdict rests on: a blocking caveat (runs that did not fit, changed files) makes "
                          "a decisive outcome unreliable")
    rows = []
    for v in r.claims:
        for t in v.targets:
            if not t.effects:
                rows.append([v.claim, t.target, "", "", "", "", t.why, t.outcome])
            blocked = any(c.blocking for c in t.caveats)
            for e in t.effects:
                # a decisive effect on runs that did not fit is not cited as decisive, whatever its target's outcome
                shown = ("unreliable" if blocked and e.outcome in ("holds", "does not hold") else e.outcome)
                rows.append([v.claim, t.target, f"{e.name} ({e.unit})", f"{e.value:+.3g} [{e.low:+.3g}, {e.high:+.3g}]",
                             e.claim_side, f"{e.n} ({e.counted})",
                             e.why + (f" (The statistics alone: {e.outcome}.)" if shown != e.outcome else ""), shown])
    sec.table(["claim", "target", "effect (unit)", "estimate [95% interval]", "claim says", "n (counted)", "why",
               "outcome"], rows, caption="every effect behind the verdicts; the statistical method is in claims.json")
    from .figures import forest_plot

    f = forest_plot(out / "forest.png", r.claims)
    sec.figure(f.name, "forest plot: each effect with its 95% interval, coloured by outcome (green holds, red does "
               "not hold, amber inconclusive, purple unreliable); the line is the claim's bound, the grey band a "
               "margin of sameness")
    try:
        fl = flags(r.base_plan, r.store)
    except Exception as e:  # flags read every run; a damaged one must not lose the verdicts
        fl = []
        sec.missing(f"the checks of the runs could not be made: {type(e).__name__}: {e}")
    if fl:
        sec.table(["check", "what"], [[x.kind, x.message] for x in fl],
                  caption="runs and targets to look at before citing a verdict")
    return sec


def _liu_section(r: _Reader, out: Path) -> Section:
    from .figures import deviation_lines, flatness_bars, gain_by_checkpoint, principal_bars, score_scatter, stability_lines

    sec = Section("liu", "9. Why pre-trained weights transfer (Liu et al. 2019)",
                  "Flatness of the minima, how far the weights move, how smooth the loss is along training, the "
                  "gradient's principal component, and transferability scores computed from P alone. Figures: the "
                  "first seed's P-T and RI-T on each unshuffled target; the verdicts use every seed.")
    if r.index is None:
        sec.missing(NO_ANALYSES)
        return sec
    fl = r.first_models("flatness")
    if fl:
        f = flatness_bars(out / "flatness.png", fl)
        any_r = next(iter(fl.values()))["P-T"]
        sec.figure(f.name, f"top Hessian eigenvalue by power iteration ({any_r.n_examples} training examples, relative "
                   f"tolerance {any_r.tolerance:g}) and the mean loss increase over {any_r.samples} random "
                   "perturbations of each weight tensor by r ||W||")
        sec.table(["target", "arm", "top eigenvalue", "iterations", "converged"],
                  [[t, arm, _f(v.top_eigenvalue, ".4g"), v.iterations, "yes" if v.converged else "no"]
                   for t, arms in fl.items() for arm, v in arms.items()])
    else:
        sec.missing("flatness: " + r.why_missing("no results", "flatness"))
    dv = _deviation_means(r.per_target("deviation"))
    if dv:
        f = deviation_lines(out / "deviation.png", dv)
        n = next(iter(dv.values()))["P-T"]["seeds"]
        sec.figure(f.name, f"relative deviation ||W - W0||_F / ||W0||_F per module along training, mean over {n} seeds "
                   "(W0: P for P-T, the random initialisation for RI-T)")
    else:
        sec.missing("weight deviation: " + r.why_missing("no results", "deviation"))
    st = r.first_models("stability")
    if st:
        f = stability_lines(out / "stability.png", st)
        sec.figure(f.name, "local Lipschitz constants of the gradient and of the loss along the gradient step "
                   "theta - eta k g (eta: the run's learning rate) at the saved points of training")
    else:
        sec.missing("gradient stability: " + r.why_missing("no results", "stability"))
    pg = r.first_models("principal")
    if pg:
        f = principal_bars(out / "principal.png", pg)
        sec.figure(f.name, "fraction of the gradient's energy on the top singular direction of each weight matrix at "
                   "the start of training on the target: pre-trained (P plus a new head) vs random weights")
    else:
        sec.missing("principal gradient component: " + r.why_missing("no results", "principal"))
    rel = r.results.get("relate/all")
    if rel and rel.points:
        f = score_scatter(out / "scores.png", rel)
        sec.figure(f.name, "scores of P on each target and block size (labels) against the measured gain; Spearman "
                   "rho with a 90% bootstrap interval (MMD enters with its sign flipped)")
        multi = sorted({p.target for p in rel.points if r.metric_of(p.target) == M.AUC})
        if multi:
            sec.note(f"multi-label target{'s' if len(multi) > 1 else ''} {', '.join(multi)}: LEEP and H-score assume "
                     "one label per image and are not applicable (n/a); LogME is computed per label (each a two-class "
                     "problem on its known examples) and averaged over the labels (You et al. 2021); the gain is in "
                     "mean AUC.")
        sec.table(["target", "block", "LEEP", "LogME", "H-score", "MMD^2 (rbf)", "gain", "speed gain"],
                  [[p.target, p.block_size, _f(p.leep), _f(p.logme), _f(p.h_score), _f(p.mmd2_rbf, ".4f"),
                    _f(p.gain, "+.3f"), _f(p.speed_gain, "+.3f")] for p in rel.points])
    else:
        sec.missing("transferability scores: " + r.why_missing("no results", "relate"))
    rows = checkpoint_gains(r.results)
    if rows:
        f = gain_by_checkpoint(out / "gain-by-checkpoint.png", rows)
        words = {M.metric_label(r.metric_of(t)) for t in rows}
        word = words.pop() if len(words) == 1 else "accuracy (mean AUC on a multi-label target)"
        sec.figure(f.name, f"P-T test {word} (mean over seeds) minus RI-T's at the same block size, against the "
                   "pre-training checkpoint P-T started from")
    else:
        sec.missing("transferability along pre-training: no checkpoint sweep")
    return sec


def _deviation_means(per_target: dict[str, ModelsResult]) -> dict[str, dict[str, dict]]:
    """Per target and arm: the relative deviation per module along training, mean and std over seeds."""
    out: dict[str, dict[str, dict]] = {}
    for t, res in per_target.items():
        for arm in ("P-T", "RI-T"):
            ms = [m.result for m in res.of_arm(arm) if m.result.deviation]
            if not ms:
                continue
            n_ep = min(len(m.deviation) for m in ms)
            per = np.array([m.deviation[:n_ep] for m in ms], dtype=float)
            out.setdefault(t, {})[arm] = {"epochs": ms[0].epochs[:n_ep], "modules": ms[0].modules,
                                          "seeds": len(ms), "mean": np.nanmean(per, 0).tolist(),
                                          "std": np.nanstd(per, 0).tolist()}
    return out


def _figure_formats(figures: str | Sequence[str]) -> tuple[str, ...]:
    """The formats to save each figure in, the one the HTML shows first: the PNG, else the SVG (a PNG is added
    where only PDF is asked: a browser shows no PDF in a page)."""
    asked = [f.strip().lower() for f in (figures.split(",") if isinstance(figures, str) else figures) if f.strip()]
    bad = [f for f in asked if f not in FIGURE_FORMATS]
    if bad or not asked:
        raise ReportError(f"--figures {','.join(asked)!r}: a comma-separated list of {', '.join(FIGURE_FORMATS)}"
                          + (f" ({', '.join(bad)} is not one)" if bad else ""))
    shown = "png" if "png" in asked or "svg" not in asked else "svg"
    return (shown, *dict.fromkeys(f for f in asked if f != shown))


def render_report(results: str | Path, out: str | Path | None = None,
                  figures: str | Sequence[str] = ("png",)) -> Path:
    """Write ``<out>/index.html`` (default ``<results>/report``) and its figures, each in every format of
    ``figures`` (``png``, ``svg``, ``pdf``; the page shows the PNG, else the SVG, and links the others). Returns
    the HTML path."""
    formats = _figure_formats(figures)
    root = Path(results)
    r = _Reader(root)
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    with figure_formats(formats):
        sections = _sections(r, out)
    for s in sections:
        for it in s.items:
            if it["kind"] == "figure":
                stem = Path(it["file"])
                it["links"] = [(f.upper(), stem.with_suffix(f".{f}").name) for f in formats[1:]
                               if (out / stem.with_suffix(f".{f}").name).is_file()]
    html = render_html(title=f"transferscope report: {r.cfg.name}", sections=sections, study=to_dict(r.cfg),
                       outcomes=list(OUTCOMES),
                       generated=time.strftime("%Y-%m-%d %H:%M:%S"), root=str(root.resolve().name))
    path = out / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def _sections(r: _Reader, out: Path) -> list[Section]:
    builders = [lambda: _claims_section(r, out), lambda: _study_section(r, out), lambda: _transfer_sections(r, out),
                lambda: _mistakes_section(r, out), lambda: _similarity_section(r, out), lambda: _barrier_section(r, out),
                lambda: _criticality_section(r, out), lambda: _basin_section(r, out), lambda: _liu_section(r, out)]
    titles = ["Verdicts", "1. The study", "2-3. Transfer gain and block shuffle", "4. Mistakes", "5. Feature similarity",
              "6. Performance barrier", "7. Module criticality", "8. Pre-training checkpoints", "9. Liu et al."]
    sections: list[Section] = []
    for build, title in zip(builders, titles, strict=True):
        try:
            got = build()
        except Exception as e:  # one broken section must not lose the report
            log.warning("report section %s failed", title, exc_info=True)
            got = Section(file_safe(title), title)
            got.missing(f"this section could not be drawn: {type(e).__name__}: {e}")
        sections.extend(got if isinstance(got, list) else [got])
    return sections
