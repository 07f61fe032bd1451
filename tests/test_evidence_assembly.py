"""Evidence assembly (``gather_evidence``) pinned field by field against the records it reads.

The judges of :mod:`transferscope.claims` are tested on hand-built evidence (tests/test_claims.py); this module tests
the step before: turning a study's analysis records into that evidence. A study of two targets (``near`` and
``far``, three seeds each) is given hand-built records (no training) in which every number differs: each target,
arm, seed, pair, pair kind, module, block size and analysis has its own value. Every field of the
:class:`~transferscope.vocab.evidence.TargetEvidence` of each target is then checked, in the order the evidence
module declares them, against the record it should come from, as are the L4 score cells and the study-level
fields. So a wiring slip (a seed's criticality reversed, one arm's start distance read from the other's pairs, an
analysis read from the other target, the target distance or the MMD with the wrong sign, speed filled with
accuracy) changes a number that a test compares.

The records go through ``to_dict``/``from_dict`` (as the cached files do) before they are read. A few tests go on
through the judges: N1's nearest and farthest targets, and N8's rank of a module whose criticality is infinite at
the start, the middle or the end of the network.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace
from itertools import product
from types import SimpleNamespace

import numpy as np
import pytest

from transferscope import jsonio
from transferscope.claims import PerPair, PerSeed, TargetEvidence, judge
from transferscope.claims.base import ALL
from transferscope.claims.liu import INPUT_SCORE, LABEL_SCORE
from transferscope.claims.neyshabur import depth_rank_correlation
from transferscope.config import load_config
from transferscope.study import make_plan
from transferscope.study.evidence import gather_evidence
from transferscope.vocab import arms
from transferscope.vocab.arms import P_PT, PT, PT_P, PT_PT, PT_RIT, RIT, RIT_RI, RIT_RIT
from transferscope.vocab.caveats import Caveat
from transferscope.vocab.records import (
    ArmCell,
    BarrierPairs,
    BarrierResult,
    BasinResult,
    BasinRow,
    CKAPairs,
    CKAResult,
    CriticalityModels,
    CriticalityResult,
    DeviationModels,
    DeviationResult,
    DistancePairs,
    DistanceResult,
    FlatnessModels,
    FlatnessResult,
    MistakesPairs,
    ModelRow,
    PairMistakes,
    PairRow,
    PrincipalGradientResult,
    PrincipalModels,
    ScoresResult,
    SeedResult,
    StabilityCurve,
    StabilityModels,
    StabilityPoint,
    TransferabilityResult,
    TransferResult,
    TransferRow,
    result_from_dict,
)

from .conftest import make_imagefolder, tiny_study_toml

TARGETS = ("near", "far")
"""The study's targets, in config order; each target's numbers start at its own base (``BASE``)."""
BASE = {"near": 0.1, "far": 0.5}
SEEDS = (0, 1, 2)
FULL, SMALL = 16, 4
BLOCKS = (FULL, SMALL)
MODULES = ("stem", "layer1", "layer2", "head")
"""The model's modules, input to output; the evidence keeps those below the head (``BODY``)."""
BODY = MODULES[:-1]
CHECKPOINTS = (1.0, 2.0)
"""Pre-training checkpoints of the basin sweep; the last is P's final weights (its epochs in the tiny study)."""
NOTE = "model.layers act0 (ReLU) has no parameters: criticality was measured on stem, layer1, layer2"

PAIRS = {kind: [p.seeds for p in pairs] for kind, pairs in
         arms.pairs_of([SimpleNamespace(seed=s) for s in SEEDS], [SimpleNamespace(seed=s) for s in SEEDS]).items()}
PAIRS[P_PT] = [(SEEDS[0], SEEDS[0])]  # P against the first P-T model (CKA and barrier)
"""The seeds of the pairs of each kind, as the analyses' jobs pair the runs (:func:`arms.pairs_of`)."""
TO_START = (PT_P, RIT_RI, P_PT)


# ------------------------------------------------------------------------------------------------ the records


class Numbers:
    """Distinct numbers in the order asked: base + 0.0001, base + 0.0002, ... Every number of a target is another
    one (a few hundred per target, so the two targets' ranges, from 0.1 and from 0.5, never meet)."""

    def __init__(self, base: float):
        self.base, self.k = base, 0

    def __call__(self) -> float:
        self.k += 1
        return round(self.base + self.k * 1e-4, 6)

    def list(self, n: int) -> list[float]:
        return [self() for _ in range(n)]


def _run(arm: str, target: str, seed: int) -> str:
    return f"{arm}-{target}-s{seed}"


def pair_rows(target: str, kinds: tuple[str, ...], make) -> tuple[PairRow, ...]:
    """One row per pair of each kind (``PAIRS``), with the result ``make(kind, seeds)``."""
    rows = []
    for kind in kinds:
        a, b = kind.split("/")
        for seeds in PAIRS[kind]:
            rows.append(PairRow(kind, seeds, (_run(a, target, seeds[0]), _run(b, target, seeds[1])),
                                "init" if kind in TO_START else "weights", make(kind, seeds)))
    return tuple(rows)


def model_rows(target: str, make) -> tuple[ModelRow, ...]:
    """One row per model of P-T and RI-T (every seed), with the result ``make(arm, seed)``."""
    return tuple(ModelRow(arm, s, _run(arm, target, s), make(arm, s)) for arm in (PT, RIT) for s in SEEDS)


def arm_cell(num: Numbers) -> ArmCell:
    per = tuple(SeedResult(s, num(), num(), num()) for s in SEEDS)
    acc = [r.test_acc for r in per]
    return ArmCell(len(per), float(np.mean(acc)), float(np.std(acc, ddof=1)),
                   float(np.mean([r.speed_mean_acc_k for r in per])),
                   float(np.mean([r.speed_steps_to_frac for r in per])), per)


def transfer_rows(target: str, num: Numbers) -> list[TransferRow]:
    rows = []
    for b in BLOCKS:
        pt, rit = arm_cell(num), arm_cell(num)
        rows.append(TransferRow(target, b, pt.acc_mean - rit.acc_mean, pt, rit))
    return rows


def mistakes(num: Numbers, n: int = 10_000) -> PairMistakes:
    return PairMistakes(n=n, common=round(num() * n), uncommon=round(num() * n), only_a_wrong=[], only_b_wrong=[],
                        test_index=[])


def cka(num: Numbers, full: bool = True) -> CKAResult:
    return CKAResult(list(BODY), num.list(len(BODY)) if full else [math.nan] * len(BODY), num.list(len(BODY)),
                     batch_size=8, n_examples=24, n_minibatches=3)


def distance(num: Numbers) -> DistanceResult:
    return DistanceResult(num(), {m: num() for m in MODULES}, [f"{m}.weight" for m in MODULES], {})


def barrier(num: Numbers) -> BarrierResult:
    return BarrierResult([0.0, 0.5, 1.0], num.list(3), num.list(3), barrier_error=num(), barrier_loss=num(),
                         bn_policy="exact", n_examples=24)


def criticality(num: Numbers, seed: int, values: tuple[float, ...] | None = None,
                degenerate: tuple[bool, ...] = ()) -> CriticalityResult:
    """``values``: the criticality of every module (head included); default distinct numbers."""
    k = len(MODULES)
    return CriticalityResult(
        list(MODULES), list(values) if values is not None else num.list(k), best_a=num.list(k), best_s=num.list(k),
        distance=num.list(k), alphas=[0.0, 1.0], rewind_loss=[num.list(2) for _ in MODULES],
        rewind_acc=[num.list(2) for _ in MODULES], boundary_s=[num.list(2) for _ in MODULES], eps=num(),
        final_loss=num(), tolerance=0.05, samples=2, seed=seed, method="bisection",
        degenerate=list(degenerate) or [False] * k, note=NOTE)


def flatness(num: Numbers) -> FlatnessResult:
    return FlatnessResult(num(), num(), iterations=5, converged=True, tolerance=1e-3, radii=[0.01], loss_increase=[num()],
                          loss_increase_std=[num()], samples=2, n_examples=20)


def deviation(num: Numbers, missing: bool) -> DeviationResult:
    """Three epochs of every module; ``missing``: no value (NaN) for layer2 at the last epoch."""
    per = [num.list(len(MODULES)) for _ in range(3)]
    if missing:
        per[-1][MODULES.index("layer2")] = math.nan
    return DeviationResult([0.0, 1.0, 2.0], list(MODULES), per)


def stability(num: Numbers, missing: bool) -> StabilityCurve:
    """Two points of training (start and end), two step sizes each; ``missing``: one value NaN."""
    points = []
    for epoch in (0.0, 2.0):
        g = num.list(2)
        if missing and epoch == 0.0:
            g[1] = math.nan
        points.append(StabilityPoint(lr=0.02, ks=[1.0, 2.0], loss=num(), grad_norm=num(), loss_change=num.list(2),
                                     grad_change=num.list(2), loss_lipschitz=num.list(2), grad_lipschitz=g,
                                     n_examples=20, epoch=epoch))
    return StabilityCurve(points)


def principal(num: Numbers) -> PrincipalGradientResult:
    return PrincipalGradientResult([f"{m}.weight" for m in MODULES], [1, 2], [num.list(2) for _ in MODULES],
                                   [num.list(2) for _ in MODULES], num.list(len(MODULES)), num(), n_examples=20,
                                   modules=list(MODULES))


def scores(num: Numbers) -> ScoresResult:
    return ScoresResult({b: TransferabilityResult(leep=num(), logme=num(), h_score=num(), mmd2_rbf=num(),
                                                  mmd2_linear=num(), bandwidth=1.0, n_target=24, n_source=20,
                                                  feature_layer="pool") for b in BLOCKS})


def special_criticality(num: Numbers, arm: str, seed: int) -> tuple[list[float], tuple[bool, ...]]:
    """The criticality of every module (head included) and which did not move: distinct numbers, but P-T seed 1's
    layer1 cannot be rewound at all (inf, the most critical) and RI-T seed 2's layer1 did not move (left out)."""
    values = num.list(len(MODULES))
    if (arm, seed) == (PT, 1):
        values[1] = math.inf
    if (arm, seed) == (RIT, 2):
        values[1] = 0.0
        return values, (False, True, False, False)
    return values, ()


def target_records(target: str, num: Numbers, crit=special_criticality) -> dict:
    """Every analysis record of one target, keyed as :func:`transferscope.study.analyze.analyze` keys them.
    ``crit(num, arm, seed)``: the criticality of a model's modules and which are degenerate."""
    return {
        f"mistakes/{target}": MistakesPairs(pair_rows(target, (PT_PT, RIT_RIT, PT_RIT), lambda k, s: mistakes(num))),
        f"cka/{target}": CKAPairs(pair_rows(target, (PT_PT, RIT_RIT, P_PT), lambda k, s: cka(num))),
        f"distance/{target}": DistancePairs(pair_rows(target, (PT_PT, RIT_RIT, PT_P, RIT_RI),
                                                      lambda k, s: distance(num))),
        f"barrier/{target}": BarrierPairs(pair_rows(target, (PT_PT, RIT_RIT, PT_RIT, P_PT), lambda k, s: barrier(num))),
        f"criticality/{target}": CriticalityModels(model_rows(target, lambda a, s: criticality(
            num, s, *crit(num, a, s)))),
        f"basin/{target}": BasinResult(tuple(BasinRow(e, s, _run(PT, target, s), *num.list(5))
                                             for e in CHECKPOINTS for s in SEEDS), FULL, CHECKPOINTS[-1]),
        f"flatness/{target}": FlatnessModels(model_rows(target, lambda a, s: flatness(num))),
        f"deviation/{target}": DeviationModels(model_rows(target, lambda a, s: deviation(num, (a, s) == (RIT, 0)))),
        f"stability/{target}": StabilityModels(model_rows(target, lambda a, s: stability(num, (a, s) == (PT, 2)))),
        f"principal/{target}": PrincipalModels(model_rows(target, lambda a, s: principal(num))),
        f"scores/{target}": scores(num),
    }


def study_records(targets=TARGETS, crit=special_criticality) -> dict:
    """The records of a study over ``targets``, each with its own distinct numbers, as read back from their files
    (``to_dict``, JSON, ``from_dict``)."""
    rows, out = [], {}
    for t in targets:
        num = Numbers(BASE[t])
        rows += transfer_rows(t, num)
        out |= target_records(t, num, crit)
    out["transfer/all"] = TransferResult(tuple(rows), speed_k=1, speed_fraction=0.9)
    return {k: result_from_dict(k, jsonio.loads(jsonio.dumps(r.to_dict()))) for k, r in out.items()}


# ------------------------------------------------------------------------------------------------ the study


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """The tiny study with three seeds and two targets, ``near`` and ``far`` (one folder, different sizes)."""
    tmp = tmp_path_factory.mktemp("assembly")
    src = make_imagefolder(tmp / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(tmp / "tgt", n_classes=3, per_class=24, seed=2)
    far = (f'[[targets]]\nname = "imagefolder"\nlabel = "far"\npath = "{tgt}"\nn_per_class = 6\n'
           'n_val_per_class = 4\nn_test_per_class = 8\n\n[pretrain]')
    text = (tiny_study_toml(src, tgt).replace("seeds = [0, 1]", "seeds = [0, 1, 2]")
            .replace('label = "tgt"', 'label = "near"').replace("[pretrain]", far))
    path = tmp / "study.toml"
    path.write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERSCOPE_CACHE", str(tmp / "cache"))
        p = make_plan(load_config(path))
    cfg = p.config
    assert ([t.display for t in cfg.targets], list(cfg.seeds), sorted(cfg.block_sizes, reverse=True),
            cfg.data.image_size, cfg.pretrain.epochs) == (list(TARGETS), list(SEEDS), list(BLOCKS), FULL,
                                                          CHECKPOINTS[-1])
    return p


CAVEAT = Caveat("underfit", "far", RIT, "RI-T seed 2 reached 0.41 training accuracy", "more epochs")


@pytest.fixture(scope="module")
def study(plan):
    results = study_records()
    return results, gather_evidence(plan, results, (CAVEAT,))


def pairs_of(res, kind: str, value) -> dict[tuple[int, int], float]:
    """{seeds: value(result)} of the rows of ``kind`` of a pairs record, read row by row."""
    return {row.seeds: value(row.result) for row in res.pairs if row.kind == kind}


def models_of(res, arm: str, value) -> dict[int, float]:
    """{seed: value(result)} of the rows of ``arm`` of a models record."""
    return {row.seed: value(row.result) for row in res.models if row.arm == arm}


def finite_mean(values) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v))


def body_mean(values) -> float:
    """Mean over the modules below the head (``MODULES`` order), NaN left out."""
    return finite_mean([v for v, m in zip(values, MODULES, strict=True) if m != "head"])


def same(a, b) -> bool:
    """Equal, NaN equal to NaN (floats to 12 decimals, so a mean computed in another order still matches)."""
    def plain(x):
        if isinstance(x, float | np.floating):
            return "nan" if math.isnan(x) else round(float(x), 12)
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [plain(v) for v in x]
        return x
    return plain(a) == plain(b)


# ------------------------------------------------------------------------------------------------ every field

CHECKED = ("name", "num_classes", "distance", "distance_source", "metric", "accuracy", "speed", "uncommon", "common",
           "cka_layers", "cka", "param_distance", "start_distance", "barrier", "criticality_modules", "criticality",
           "criticality_note", "basin", "basin_final", "basin_block", "top_eigenvalue", "deviation", "grad_lipschitz",
           "principal")
"""The fields of TargetEvidence the tests below check, in the order of their tests."""


def test_every_field_of_the_target_evidence_has_a_test_in_module_order():
    assert tuple(f.name for f in dataclasses.fields(TargetEvidence)) == CHECKED


def test_every_number_of_the_evidence_is_another(study):
    """The premise of every test below: no two numbers of the evidence, of one target or of both, are equal (but
    the infinite and the left-out criticality), so that a value read from the wrong place is another value."""
    _, ev = study
    values = [v for t in ev.targets for f in CHECKED[2:] for v in _numbers(getattr(t, f))
              if math.isfinite(v) and f not in ("basin_final", "basin_block")]
    assert len(values) == 2 * 146 and len(set(values)) == len(values)  # 146 finite numbers per target


def _numbers(x):
    if isinstance(x, PerSeed | PerPair):
        yield from _numbers(dict(x.values))
    elif isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, tuple):
        for v in x:
            yield from _numbers(v)
    elif isinstance(x, float):
        yield x


def test_targets_in_config_order_with_their_names_and_metric(study):
    _, ev = study
    assert [t.name for t in ev.targets] == list(TARGETS)
    for t in ev.targets:
        assert (t.num_classes, t.metric) == (0, "acc")


def test_distance_is_the_measured_mmd_at_the_full_block_with_its_sign(study):
    """Larger is farther: the distance is +MMD^2 (unshuffled), the target's own."""
    results, ev = study
    for name in TARGETS:
        t, sc = ev.target(name), results[f"scores/{name}"]
        assert t.distance == sc.at(FULL).mmd2_rbf > 0, name
        assert t.distance != sc.at(SMALL).mmd2_rbf
        assert t.distance_source.startswith("measured: MMD^2 (RBF)"), name
    assert ev.target("near").distance < ev.target("far").distance


def test_declared_distances_are_used_as_given_only_when_every_target_declares_one(plan, study):
    results, _ = study

    def with_distances(*ds):
        cfg = plan.config
        return dataclasses.replace(plan, config=dataclasses.replace(cfg, targets=[
            dataclasses.replace(t, distance=d) for t, d in zip(cfg.targets, ds, strict=True)]))

    ev = gather_evidence(with_distances(7.0, 3.0), results)
    assert [(t.distance, t.distance_source) for t in ev.targets] == [
        (7.0, "declared in the study config (targets.distance)"), (3.0, "declared in the study config (targets.distance)")]
    ev = gather_evidence(with_distances(7.0, -1.0), results)  # one declared: both measured
    assert [t.distance for t in ev.targets] == [results[f"scores/{n}"].at(FULL).mmd2_rbf for n in TARGETS]
    ev = gather_evidence(plan, {k: v for k, v in results.items() if k != "scores/far"})
    assert math.isnan(ev.target("far").distance) and ev.target("far").distance_source == ""
    assert ev.target("near").distance == results["scores/near"].at(FULL).mmd2_rbf


def _seed_figures(results, target: str, arm: str, block: int, figure: str) -> dict[int, float]:
    row = next(r for r in results["transfer/all"].rows if (r.target, r.block_size) == (target, block))
    return {s.seed: getattr(s, figure) for s in row.arm(arm).per_seed}


def test_accuracy_is_each_seeds_test_accuracy_per_arm_and_block(study):
    results, ev = study
    for name, arm, b in product(TARGETS, (PT, RIT), BLOCKS):
        got = ev.target(name).accuracy[(arm, b)].values
        assert got == _seed_figures(results, name, arm, b, "test_acc"), (name, arm, b)
    assert all(set(ev.target(n).accuracy) == set(product((PT, RIT), BLOCKS)) for n in TARGETS)


def test_speed_is_each_seeds_mean_training_accuracy_over_the_first_epochs(study):
    """N3 reads the speed at the smallest block: the speed figure, not the test accuracy."""
    results, ev = study
    for name, arm, b in product(TARGETS, (PT, RIT), BLOCKS):
        got = ev.target(name).speed[(arm, b)].values
        assert got == _seed_figures(results, name, arm, b, "speed_mean_acc_k"), (name, arm, b)
        assert got != _seed_figures(results, name, arm, b, "test_acc")
    assert all(set(ev.target(n).speed) == set(product((PT, RIT), BLOCKS)) for n in TARGETS)


@pytest.mark.parametrize("field", ["uncommon", "common"])
def test_mistakes_are_each_pairs_fraction(study, field):
    results, ev = study
    for name in TARGETS:
        got = getattr(ev.target(name), field)
        assert list(got) == [PT_PT, RIT_RIT, PT_RIT]
        for kind in got:
            want = pairs_of(results[f"mistakes/{name}"], kind, lambda r: getattr(r, field) / r.n)
            assert set(want) == set(PAIRS[kind]) and got[kind].values == want, (name, kind)


def test_cka_layers_are_the_first_pt_pairs(study):
    results, ev = study
    for name in TARGETS:
        assert ev.target(name).cka_layers == tuple(results[f"cka/{name}"].pairs[0].result.layers) == BODY


def test_cka_is_each_pairs_full_data_estimate_per_layer(study):
    results, ev = study
    for name in TARGETS:
        got = ev.target(name).cka
        assert list(got) == [PT_PT, RIT_RIT]
        for kind in got:
            assert len(got[kind]) == len(BODY)
            for i, layer in enumerate(BODY):
                want = pairs_of(results[f"cka/{name}"], kind, lambda r, i=i: r.full[i])
                assert got[kind][i].values == want, (name, kind, layer)


def test_cka_without_the_full_data_estimate_is_the_minibatch_one(plan):
    num = Numbers(0.3)
    rec = CKAPairs(pair_rows("near", (PT_PT, RIT_RIT, P_PT), lambda k, s: cka(num, full=False)))
    rec = CKAPairs.from_dict(jsonio.loads(jsonio.dumps(rec.to_dict())))
    t = gather_evidence(plan, {"cka/near": rec}).target("near")
    for kind, i in product((PT_PT, RIT_RIT), range(len(BODY))):
        assert t.cka[kind][i].values == pairs_of(rec, kind, lambda r, i=i: r.minibatch[i])


def test_param_distance_is_each_pairs_total_within_an_arm(study):
    results, ev = study
    for name in TARGETS:
        got = ev.target(name).param_distance
        assert list(got) == [PT_PT, RIT_RIT]
        for kind in got:
            assert got[kind].values == pairs_of(results[f"distance/{name}"], kind, lambda r: r.total), (name, kind)


def test_start_distance_is_each_models_distance_to_its_own_start(study):
    """N6: P-T against P (the P-T/P pairs), RI-T against RI (the RI-T/RI pairs), each seed its own."""
    results, ev = study
    for name in TARGETS:
        got, dst = ev.target(name).start_distance, results[f"distance/{name}"]
        assert list(got) == [PT, RIT]
        assert got[PT].values == {a: v for (a, b), v in pairs_of(dst, PT_P, lambda r: r.total).items()}, name
        assert got[RIT].values == {a: v for (a, b), v in pairs_of(dst, RIT_RI, lambda r: r.total).items()}, name
        assert got[PT].seeds == got[RIT].seeds == list(SEEDS)


def test_barrier_is_each_pairs_error_barrier(study):
    results, ev = study
    for name in TARGETS:
        got = ev.target(name).barrier
        assert list(got) == [PT_PT, RIT_RIT, PT_RIT]
        for kind in got:
            want = pairs_of(results[f"barrier/{name}"], kind, lambda r: r.barrier_error)
            assert got[kind].values == want, (name, kind)


def test_criticality_modules_are_those_below_the_head(study):
    _, ev = study
    assert all(ev.target(n).criticality_modules == BODY for n in TARGETS)


def test_criticality_is_each_seeds_per_module_criticality_input_to_output(study):
    """Module order is depth order (N8 ranks by it): inf (not rewindable) kept, a module that did not move NaN."""
    results, ev = study
    for name in TARGETS:
        got = ev.target(name).criticality
        assert list(got) == [PT, RIT]
        for arm in got:
            want = models_of(results[f"criticality/{name}"], arm, lambda r: tuple(
                math.nan if d else c for c, d, m in zip(r.criticality, r.degenerate, r.modules, strict=True)
                if m != "head"))
            assert same(dict(got[arm]), want), (name, arm, dict(got[arm]), want)
        assert got[PT][1][1] == math.inf and math.isnan(got[RIT][2][1])  # special_criticality


def test_criticality_note_is_the_records_note(study):
    _, ev = study
    assert all(ev.target(n).criticality_note == NOTE for n in TARGETS)


def test_basin_is_each_checkpoints_test_accuracy_per_seed(study):
    results, ev = study
    for name in TARGETS:
        got, rows = ev.target(name).basin, results[f"basin/{name}"].rows
        assert sorted(got) == list(CHECKPOINTS)
        for e in CHECKPOINTS:
            assert got[e].values == {r.seed: r.test_acc for r in rows if r.checkpoint == e}, (name, e)


def test_basin_final_is_the_final_checkpoint(study):
    _, ev = study
    assert all(ev.target(n).basin_final == CHECKPOINTS[-1] for n in TARGETS)


def test_basin_block_is_the_sweeps_block_size(plan, study):
    """The block size of the basin's runs (where a study that decides in rounds adds their seeds): the image size
    unless the sweep names one."""
    _, ev = study
    assert all(ev.target(n).basin_block == FULL for n in TARGETS)
    other = replace(plan, config=replace(plan.config, basin=replace(plan.config.basin, block_size=BLOCKS[-1])))
    ev2 = gather_evidence(other, study_records())
    assert BLOCKS[-1] != FULL and all(ev2.target(n).basin_block == BLOCKS[-1] for n in TARGETS)


def test_top_eigenvalue_is_each_models(study):
    results, ev = study
    for name, arm in product(TARGETS, (PT, RIT)):
        want = models_of(results[f"flatness/{name}"], arm, lambda r: r.top_eigenvalue)
        assert ev.target(name).top_eigenvalue[arm].values == want, (name, arm)


def test_deviation_is_the_body_mean_at_the_last_epoch(study):
    results, ev = study
    for name, arm in product(TARGETS, (PT, RIT)):
        want = models_of(results[f"deviation/{name}"], arm, lambda r: body_mean(r.deviation[-1]))
        assert same(ev.target(name).deviation[arm].values, want), (name, arm)
    dev = results["deviation/near"].models[3].result  # RI-T seed 0: layer2 has no value at the last epoch
    assert ev.target("near").deviation[RIT].values[0] == pytest.approx((dev.deviation[-1][0] + dev.deviation[-1][1]) / 2)


def test_grad_lipschitz_is_the_mean_over_every_point_and_step(study):
    results, ev = study
    for name, arm in product(TARGETS, (PT, RIT)):
        want = models_of(results[f"stability/{name}"], arm,
                         lambda r: finite_mean([v for p in r.points for v in p.grad_lipschitz]))
        assert same(ev.target(name).grad_lipschitz[arm].values, want), (name, arm)
    assert all(math.isfinite(v) for n in TARGETS for v in ev.target(n).grad_lipschitz[PT].values.values())


def test_principal_is_the_body_mean_of_the_top_direction(study):
    results, ev = study
    for name, arm in product(TARGETS, (PT, RIT)):
        want = models_of(results[f"principal/{name}"], arm, lambda r: body_mean([f[0] for f in r.fraction]))
        assert same(ev.target(name).principal[arm].values, want), (name, arm)


# ------------------------------------------------------------------------------------------------ the study level


def test_score_cells_are_each_target_and_block_with_minus_the_mmd(study):
    """L4's input similarity is -MMD^2 (larger: more similar); each cell's scores are its own target's and block's."""
    results, ev = study
    assert [(c.target, c.block_size) for c in ev.cells] == list(product(TARGETS, BLOCKS))
    for c in ev.cells:
        row = results["transfer/all"].row(c.target, c.block_size)
        sc = results[f"scores/{c.target}"].at(c.block_size)
        assert (c.gain, c.metric) == (row.gain, "acc")
        assert dict(c.scores) == {INPUT_SCORE: -sc.mmd2_rbf, LABEL_SCORE: sc.leep, "logme": sc.logme,
                                  "h_score": sc.h_score}, (c.target, c.block_size)
        assert c.scores[INPUT_SCORE] < 0


def test_study_level_fields(plan, study):
    _, ev = study
    assert (ev.full_block, ev.blocks, ev.speed_epochs) == (FULL, BLOCKS, plan.config.finetune.speed_epochs)
    assert ev.caveats == (CAVEAT,)
    assert ev.conditional_on == (f"one pre-trained model P (imagefolder, pre-training seed 0, run "
                                 f"{plan.pretrain().run_id}); P-T and RI-T seeds 0, 1, 2")


# ------------------------------------------------------------------------------------------------ through the judges


def _verdict(ev, claim: str):
    return next(v for v in judge(ev) if v.claim == claim)


def test_n1_compares_the_nearest_target_with_the_farthest(study):
    results, ev = study
    (effect,) = [e for e in _verdict(ev, "N1").effects if e.target == ALL]
    assert effect.name.endswith("(near - far)")

    def gain(name):
        return np.mean(list(ev.target(name).accuracy[(PT, FULL)].values.values())) - \
            np.mean(list(ev.target(name).accuracy[(RIT, FULL)].values.values()))

    assert effect.value == pytest.approx(gain("near") - gain("far"))


@pytest.mark.parametrize(("per_seed", "rhos"), [
    # infinite criticality (no rewinding feasible) ranks as the most critical, wherever it is
    ({0: (math.inf, 1.0, 2.0), 1: (math.inf, 1.0, 2.0), 2: (math.inf, 1.0, 2.0)}, (-0.5, -0.5, -0.5)),
    ({0: (1.0, 2.0, math.inf), 1: (1.0, 2.0, math.inf), 2: (1.0, 2.0, math.inf)}, (1.0, 1.0, 1.0)),
    ({0: (math.inf, 1.0, 2.0), 1: (1.0, math.inf, 2.0), 2: (1.0, 2.0, math.inf)}, (-0.5, 0.5, 1.0)),
])
def test_n8_ranks_an_infinite_criticality_as_the_most_critical_wherever_it_is(plan, per_seed, rhos):
    head = 9.0  # the head's criticality: never ranked

    def crit(num, arm, seed):  # RI-T's criticality falls with depth: it is not N8's arm
        return [*per_seed[seed], head] if arm == PT else [2.0, 1.0, 0.5, head], ()

    ev = gather_evidence(plan, study_records(("near",), crit))
    t = ev.target("near")
    assert dict(t.criticality[PT]) == per_seed
    assert tuple(depth_rank_correlation(t.criticality[PT][s]) for s in SEEDS) == pytest.approx(rhos)
    (effect,) = _verdict(ev, "N8").effects
    assert effect.target == "near" and effect.n == len(SEEDS)
    assert effect.value == pytest.approx(np.mean(rhos))
