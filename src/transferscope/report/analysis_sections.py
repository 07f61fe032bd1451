"""The report's sections on the analyses of pairs and of single models: 4. mistakes, 5. feature similarity and
parameter distance, 6. the performance barrier, 7. module criticality, 8. the pre-training checkpoints, and 9. the
analyses of Liu et al. (flatness, weight deviation, gradient stability, the principal gradient, transferability
scores). Each draws the first seeds' results and says what is missing where an analysis has not run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import metrics as M
from ..study.plan import file_safe
from ..study.summary import checkpoint_gains
from ..vocab.records import ModelsResult
from .page import Section, fmt, label_caption
from .reader import NO_ANALYSES, Reader

__all__ = ["mistakes_section", "similarity_section", "barrier_section", "criticality_section", "basin_section",
           "liu_section"]


def mistakes_section(r: Reader, out: Path) -> Section:
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
            rows.append([t, p.kind, " / ".join(map(str, p.seeds)), what, f"{m.common} ({fmt(m.common_fraction)})",
                         f"{m.uncommon} ({fmt(m.uncommon_fraction)})"])
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
            caps = [f"#{int(i)} {label_caption(y, classes)}"
                    for i, y in zip(imgs[f"{key}_index"], imgs[f"{key}_y"], strict=True)]
            rows_img.append((label, imgs[f"{key}_x"], caps))
        f = image_grid(out / f"mistakes-{file_safe(t)}.png", rows_img, f"{t}: test images one arm gets right and the other wrong")
        sec.figure(f.name, f"{t}: up to 16 test images per row (first P-T against first RI-T seed), captioned with the test "
                   "index and the true class")
    return sec


def similarity_section(r: Reader, out: Path) -> Section:
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
                  [[t, p.kind, " / ".join(map(str, p.seeds)), fmt(p.result.total, ".2f")]
                   for t, res in r.per_target("distance").items() for p in res.pairs],
                  caption="total l2 distance in parameter space, every pair (P-T/P: a P-T model and P, its start; "
                          "RI-T/RI: an RI-T model and its random initialisation)")
    else:
        sec.missing("distance: " + r.why_missing("no results", "distance"))
    return sec


def barrier_section(r: Reader, out: Path) -> Section:
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
              [[t, p.kind, " / ".join(map(str, p.seeds)), fmt(p.result.barrier_error), fmt(p.result.barrier_loss),
                p.result.bn_policy] for t, out_ in res.items() for p in out_.pairs])
    return sec


def criticality_section(r: Reader, out: Path) -> Section:
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


def basin_section(r: Reader, out: Path) -> Section:
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
              [[t, fmt(x.checkpoint, "g"), x.seed, fmt(x.test_acc), fmt(x.speed_mean_acc_k), fmt(x.barrier_error)]
               for t, v in res.items() for x in v.rows])
    return sec


def liu_section(r: Reader, out: Path) -> Section:
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
                  [[t, arm, fmt(v.top_eigenvalue, ".4g"), v.iterations, "yes" if v.converged else "no"]
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
        why = {k: v for name, res in r.results.items() if name.startswith("scores/")
               for tr in res.blocks.values() for k, v in tr.not_applicable.items()}
        f = score_scatter(out / "scores.png", rel, why)
        sec.figure(f.name, "scores of P on each target and block size (labels) against the measured gain; Spearman "
                   "rho with a 90% bootstrap interval (MMD enters with its sign flipped)")
        multi = sorted({p.target for p in rel.points if r.metric_of(p.target) == M.AUC})
        if multi:
            sec.note(f"multi-label target{'s' if len(multi) > 1 else ''} {', '.join(multi)}: LEEP and H-score assume "
                     "one label per image and are not applicable (n/a); LogME is computed per label (each a two-class "
                     "problem on its known examples) and averaged over the labels (You et al. 2021); the gain is in "
                     "mean AUC.")
        sec.table(["target", "block", "LEEP", "LogME", "H-score", "MMD^2 (rbf)", "gain", "speed gain"],
                  [[p.target, p.block_size, fmt(p.leep), fmt(p.logme), fmt(p.h_score), fmt(p.mmd2_rbf, ".4f"),
                    fmt(p.gain, "+.3f"), fmt(p.speed_gain, "+.3f")] for p in rel.points])
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
