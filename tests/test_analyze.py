import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from transferscope import jsonio
from transferscope.analyses.distance import parameter_distance
from transferscope.analyses.mistakes import mistakes
from transferscope.claims import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED
from transferscope.cli import main
from transferscope.config import AnalysisConfig, load_config
from transferscope.store import Store
from transferscope.study import execute, make_plan
from transferscope.study.analyze import analyze
from transferscope.study.evidence import gather_evidence
from transferscope.study.registry import SPECS
from transferscope.study.verdicts import verdicts
from transferscope.vocab.arms import PT, PT_P, PT_PT, PT_RIT, RIT, RIT_RI, RIT_RIT

from .conftest import tiny_study_toml

FAST = AnalysisConfig(cka_batch_size=8, barrier_points=3, criticality_alphas=[0.0, 1.0], criticality_examples=20,
                        criticality_s_tol=0.05, flatness_examples=20, flatness_iters=5, flatness_samples=2,
                        stability_examples=20, principal_examples=20, scores_source_examples=20)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The tiny study with three seeds, trained and analysed once for the tests of this module."""
    from .conftest import make_imagefolder

    tmp = tmp_path_factory.mktemp("an")
    src = make_imagefolder(tmp / "src", n_classes=4, per_class=40, seed=1)
    tgt = make_imagefolder(tmp / "tgt", n_classes=3, per_class=24, seed=2)
    p = tmp / "study.toml"
    p.write_text(tiny_study_toml(src, tgt).replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    plan = make_plan(load_config(p))
    store = Store(tmp / "res")
    import os

    os.environ["TRANSFERSCOPE_CACHE"] = str(tmp / "cache")
    execute(plan, store, jobs=1, show_progress=False)
    first = analyze(plan, store, FAST, show_progress=False)
    return plan, store, first


def test_analyze_runs_every_registered_spec_and_caches(study):
    plan, store, first = study
    assert not first.missing, first.missing
    assert {k.split("/")[0] for k in first.results} == set(SPECS)
    second = analyze(plan, store, FAST, show_progress=False)
    assert second.computed == [] and len(second.cached) == len(first.computed)
    assert all(isinstance(r, SPECS[k.split("/")[0]].result) for k in first.results for r in [first.results[k]])
    assert _json(second.results) == _json(first.results)


def _json(results: dict) -> str:
    return jsonio.dumps({k: v.to_dict() for k, v in results.items()})


def test_specs_and_their_jobs_pickle_so_that_another_process_can_run_them(study):
    import pickle

    from transferscope.study.jobs import Context

    plan, store, _ = study
    ctx = Context(plan, store.root, FAST, "cpu")
    specs, ctx2 = pickle.loads(pickle.dumps((SPECS, ctx)))
    assert list(specs) == list(SPECS)
    for name, spec in specs.items():
        jobs = spec.jobs(ctx2, {})
        assert jobs and pickle.loads(pickle.dumps(jobs)) == jobs, name
    with pytest.raises(ValueError, match="registered twice"):
        from transferscope.study.registry import register

        register(SPECS["cka"])


def test_every_pair_of_distinct_seeds_and_every_cross_pair(study):
    plan, store, first = study
    res = first.results["mistakes/tgt"]
    by_id = plan.by_id()
    kinds = {k: res.of_kind(k) for k in (PT_PT, RIT_RIT, PT_RIT)}
    assert [p.seeds for p in kinds[PT_PT]] == [(0, 1), (0, 2), (1, 2)] == [p.seeds for p in kinds[RIT_RIT]]
    assert len(kinds[PT_RIT]) == 9
    for p in kinds[PT_RIT]:  # a P-T model against an RI-T model, never P-T with itself
        a, b = by_id[p.runs[0]], by_id[p.runs[1]]
        assert (a.arm, b.arm) == (PT, RIT) and (a.seed, b.seed) == p.seeds
        za, zb = store.read_npz(a.run_id), store.read_npz(b.run_id)
        ref = mistakes(za["test_logits"].argmax(1), zb["test_logits"].argmax(1), za["test_labels"])
        assert (p.result.common, p.result.uncommon) == (ref.common, ref.uncommon)
        assert p.result.test_index == za["test_index"].tolist()
    for p in kinds[PT_PT]:
        a, b = by_id[p.runs[0]], by_id[p.runs[1]]
        assert a.arm == b.arm == PT and a.seed != b.seed
    # CKA of two different P-T models is not 1 (a model compared with itself would be)
    cka = first.results["cka/tgt"].of_kind(PT_PT)
    assert len(cka) == 3 and any(v < 0.9999 for v in cka[0].result.full if np.isfinite(v))


def test_distance_to_the_start_is_to_p_for_p_t_and_to_ri_for_ri_t(study):
    plan, store, first = study
    by_id = plan.by_id()
    p_weights = load_file(str(store.run_dir(plan.pretrain().run_id) / "weights.safetensors"))
    rows = first.results["distance/tgt"].pairs
    starts = [r for r in rows if r.kind in (PT_P, RIT_RI)]
    assert len(starts) == 6
    from transferscope.study.runner import load_run_model

    for r in starts:
        spec = by_id[r.runs[0]]
        assert spec.arm == (PT if r.kind == PT_P else RIT) and r.runs[1] == spec.run_id
        model = load_run_model(store, spec)
        if spec.arm == PT:  # the independent reference: P's own weights, body only (the head is new)
            body = {k: v for k, v in p_weights.items() if not k.startswith("head")}
            ref = parameter_distance(model, body)
            got = {k: v for k, v in r.result.per_module.items() if k != "head"}
            assert got == pytest.approx({k: v for k, v in ref.per_module.items() if k != "head"})
        else:  # RI: the run's own random initialisation, which is no other run's
            init = load_file(str(store.run_dir(spec.run_id) / "init.safetensors"))
            assert r.result.total == pytest.approx(parameter_distance(model, init).total)
            assert not torch.equal(init["stem.conv.weight"] if "stem.conv.weight" in init else next(iter(init.values())),
                                   next(v for k, v in p_weights.items() if k in init))


def test_evidence_reads_every_seed_and_pair(study):
    plan, store, first = study
    ev = gather_evidence(plan, first.results)
    t = ev.target("tgt")
    assert t.accuracy[(PT, 16)].seeds == [0, 1, 2] and t.accuracy[(RIT, 4)].seeds == [0, 1, 2]
    ms = {r.seeds: r.result for r in first.results["mistakes/tgt"].of_kind(PT_PT)}
    for k in ((0, 1), (0, 2), (1, 2)):
        assert t.uncommon[PT_PT].values[k] == pytest.approx(ms[k].uncommon / ms[k].n)
    assert len(t.barrier[PT_RIT].values) == 9 and sorted(t.criticality[PT]) == [0, 1, 2]
    assert "head" not in t.criticality_modules and len(t.criticality_modules) >= 3
    assert np.isfinite(t.distance) and "MMD" in t.distance_source
    m = store.read_json(by_seed(plan, store, PT, 16, 1), "metrics.json")
    assert t.accuracy[(PT, 16)].values[1] == pytest.approx(m["test_acc"])


def by_seed(plan, store, arm, block, seed):
    return next(r.run_id for r in plan.runs if r.arm == arm and r.block_size == block and r.seed == seed
                and r.parent_checkpoint < 0)


def test_every_claim_gets_a_verdict_with_its_effects(study):
    plan, store, first = study
    vs = verdicts(plan, first.results)
    assert [v.claim for v in vs] == [f"N{i}" for i in range(1, 10)] + [f"L{i}" for i in range(1, 6)]
    assert all(v.outcome in (HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED) for v in vs)
    measured = [v for v in vs if v.outcome != NOT_MEASURED]
    assert len(measured) >= 10, [(v.claim, v.why) for v in vs]
    for v in measured:
        for e in v.effects:
            assert e.why and e.unit and e.method
            assert e.method.startswith("not measured") or (e.n >= 1 and e.counted)
    assert "pre-training seed 0" in vs[0].conditional_on


def test_analyze_with_missing_runs_says_what_is_missing(tmp_path, folders):
    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    plan = make_plan(load_config(p))
    store = Store(tmp_path / "res")
    run = analyze(plan, store, FAST, show_progress=False)
    assert "pairs-tgt" in run.missing
    assert {v.outcome for v in verdicts(plan, run.results)} == {NOT_MEASURED}


def test_analysis_settings_out_of_range_are_refused_before_anything_is_computed(tmp_path, folders):
    """Settings read back from a hand-edited study.json skip load_config's checks: analyze() checks them itself."""
    from dataclasses import replace

    from transferscope.config import ConfigError

    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    plan = make_plan(load_config(p))
    store = Store(tmp_path / "res")
    with pytest.raises(ConfigError, match=r"analysis\.cka_batch_size: .*got 0"):
        analyze(plan, store, replace(FAST, cka_batch_size=0), show_progress=False)
    assert not (tmp_path / "res" / "analyses").exists()


def test_an_edited_input_is_computed_again(study, tmp_path):
    import shutil

    plan, store, first = study
    root = tmp_path / "copy"
    shutil.copytree(store.root, root)
    s2 = Store(root)
    rid = first.results["mistakes/tgt"].of_kind(PT_PT)[0].runs[0]
    # a changed prediction file (recorded as the run's: else reading it is refused) changes the run's recorded
    # content hash: everything that reads it is recomputed
    import hashlib

    pred = s2.run_dir(rid) / "predictions.npz"
    with np.load(pred) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(pred, **arrays, edited=np.zeros(1))
    info = json.loads((s2.run_dir(rid) / "run.json").read_text())
    info["artefacts"]["predictions.npz"] = hashlib.sha256(pred.read_bytes()).hexdigest()
    (s2.run_dir(rid) / "run.json").write_text(json.dumps(info))
    again = analyze(plan, s2, FAST, show_progress=False)
    recomputed = {k.split("-")[0] for k in again.computed}
    assert "mistakes" in recomputed and "scores" not in recomputed


def test_cli_analyze_writes_every_verdict_field(tmp_path, folders, capsys):
    p = tmp_path / "study.toml"
    p.write_text(tiny_study_toml(*folders))
    res = str(tmp_path / "r")
    assert main(["run", str(p), "--results", res, "--jobs", "1", "--no-progress"]) == 0
    assert main(["analyze", res, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "claim N9:" in out and "claim L5:" in out
    d = json.loads((tmp_path / "r" / "analyses" / "claims.json").read_text())
    assert d["rule"]["min_seeds"] == 3 and len(d["verdicts"]) == 14
    # two seeds: nothing is decided, by rule
    assert all(v["outcome"] in (INCONCLUSIVE, NOT_MEASURED) for v in d["verdicts"])
    assert main(["compare", res, res]) == 0


# ------------------------------------------------------------------------------------------------ the product adapters

def _model_of(store, spec, which="weights"):
    """The test's own loader: the run's architecture with the weights file read straight from its folder."""
    from transferscope.models import create_model

    info = store.run_info(spec.run_id)
    model = create_model(spec.model, spec.data.channels, info["num_classes"], seed=spec.seed)
    name = f"checkpoints/{which}" if which.startswith("epoch_") else which
    model.load_state_dict(load_file(str(store.run_dir(spec.run_id) / f"{name}.safetensors")))
    return model


def _same(a, b, leave_out=()) -> bool:
    da, db = a.to_dict(), b.to_dict()
    for k in leave_out:
        da.pop(k, None), db.pop(k, None)
    return jsonio.dumps(da) == jsonio.dumps(db)


def _target(plan, block=None):
    from transferscope.study.artefacts import domain_data

    data = domain_data(plan.config.targets[0], plan.config.data)
    return data if block in (None, plan.config.data.image_size) else data.shuffled(block, plan.config.data.shuffle_seed)


# which models each row is the analysis of, as the science says, in the kernel's order (a, b)
ROW_MODELS = {
    "barrier": lambda row: ((row.runs[0], "init"), (row.runs[0], "weights")) if row.kind == "P/P-T"
    else ((row.runs[0], "weights"), (row.runs[1], "weights")),  # P/P-T: from P (lambda 0) to P-T (lambda 1)
    "cka": lambda row: ((row.runs[0], "weights"), (row.runs[1], row.which_b)),
    "distance": lambda row: ((row.runs[0], "weights"), (row.runs[1], row.which_b)),
    "criticality": lambda row: ((row.run, "weights"), (row.run, "init")),  # theta^0: the run's own start
    "flatness": lambda row: ((row.run, "weights"), (row.run, "weights")),
    "principal": lambda row: ((row.run, "init"), (row.run, "init")),  # the initial gradient
}
# the seed a row records: the study's, except CKA on the whole test split (the default) and distance, which draw
# nothing and have always recorded 0
SEED = {"cka": lambda s: 0, "distance": lambda s: 0}


@pytest.mark.parametrize("name", sorted(ROW_MODELS))
def test_each_product_adapter_computes_the_registered_kernel_on_the_rows_own_models(study, name):
    """Every row of an analysis as ``analyze`` wrote it equals the registry's kernel, with the registry's options
    from the study's settings, called by this test on the models the row names, loaded here from their files: an
    adapter that swaps its two models, compares a model with itself or reads another run's weights fails here."""
    from transferscope.study.registry import get_analysis

    plan, store, first = study
    spec, by_id = get_analysis(name), plan.by_id()
    record = first.results[f"{name}/tgt"]
    rows = record.pairs if hasattr(record, "pairs") else record.models
    data = _target(plan)
    assert len(rows) >= 6
    for row in rows:
        (ra, wa), (rb, wb) = ROW_MODELS[name](row)
        want = spec.kernel(_model_of(store, by_id[ra], wa), _model_of(store, by_id[rb], wb), data,
                           seed=SEED.get(name, lambda s: s)(FAST.seed), **spec.kernel_options(FAST))
        assert _same(row.result, want), (name, row.kind if hasattr(row, "kind") else row.arm, row.seeds
                                         if hasattr(row, "seeds") else row.seed)


@pytest.mark.parametrize("name", ["criticality", "flatness", "barrier"])
def test_the_adapters_draw_with_the_studys_seed(study, name):
    """One job of the analysis under another ``analysis.seed``: its row is the kernel's with that seed, and not the
    seed-0 row (the seed draws the examples and perturbations)."""
    from dataclasses import replace

    from transferscope.study.jobs import Context, Job
    from transferscope.study.registry import get_analysis

    plan, store, first = study
    spec, by_id = get_analysis(name), plan.by_id()
    settings = replace(FAST, seed=3)
    ctx = Context(plan, store.root, settings, "cpu")
    job = spec.jobs(ctx, {})[0]
    one = Job(job.analysis, job.target, job.runs, pairs=job.pairs[-1:], models=job.models[:1], settings=job.settings)
    record = spec.run(ctx, one, {})
    row = (record.pairs if hasattr(record, "pairs") else record.models)[0]
    (ra, wa), (rb, wb) = ROW_MODELS[name](row)
    want = spec.kernel(_model_of(store, by_id[ra], wa), _model_of(store, by_id[rb], wb), _target(plan), seed=3,
                       **spec.kernel_options(settings))
    assert _same(row.result, want) and row.result.seed == 3
    if name != "barrier":  # a net without batch statistics: the barrier draws nothing
        before = first.results[f"{name}/tgt"]
        seed0 = next(r for r in (before.pairs if hasattr(before, "pairs") else before.models)
                     if ROW_MODELS[name](r) == ROW_MODELS[name](row))
        assert not _same(seed0.result, row.result, leave_out=("seed", "args"))


def test_the_stability_adapter_steps_every_checkpoint_with_its_runs_learning_rate(study):
    from transferscope.study.registry import get_analysis

    plan, store, first = study
    spec, by_id = get_analysis("stability"), plan.by_id()
    data = _target(plan)
    rows = first.results["stability/tgt"].models
    assert len(rows) >= 6
    for row in rows:
        run = by_id[row.run]
        when = [(0.0, "init")] + [(float(e), f"epoch_{e:g}") for e in run.train.checkpoint_epochs] + \
            [(float(run.train.epochs), "weights")]
        assert [p.epoch for p in row.result.points] == [e for e, _ in when]
        for point, (_, which) in zip(row.result.points, when, strict=True):
            model = _model_of(store, run, which)
            want = spec.kernel(model, model, data, seed=FAST.seed, lr=run.train.lr, **spec.kernel_options(FAST))
            got = {k: v for k, v in point.to_dict().items() if k != "epoch"}
            assert jsonio.dumps(got) == jsonio.dumps(want.to_dict()), (row.run, which)


def test_the_mistakes_adapter_counts_what_the_kernel_counts_on_the_models(study):
    """The product counts mistakes from the test logits each run stored; the kernel from the models: the same."""
    from transferscope.study.registry import get_analysis

    plan, store, first = study
    spec, by_id = get_analysis("mistakes"), plan.by_id()
    data = _target(plan)
    rows = first.results["mistakes/tgt"].pairs
    assert len(rows) == 15
    for row in rows:
        want = spec.kernel(_model_of(store, by_id[row.runs[0]]), _model_of(store, by_id[row.runs[1]]), data,
                           seed=FAST.seed, **spec.kernel_options(FAST))
        fields = ("n", "common", "uncommon", "only_a_wrong", "only_b_wrong", "unit")
        assert [getattr(row.result, f) for f in fields] == [getattr(want, f) for f in fields], (row.kind, row.seeds)


def test_the_scores_adapter_scores_p_on_the_target_at_every_block_size(study):
    from transferscope.study.registry import get_analysis

    plan, store, first = study
    spec = get_analysis("scores")
    p = _model_of(store, plan.pretrain())
    res = first.results["scores/tgt"]
    assert sorted(res.blocks) == sorted(plan.config.block_sizes)
    for block in plan.config.block_sizes:
        want = spec.kernel(p, p, _target(plan, block), seed=FAST.seed, layer="pool", **spec.kernel_options(FAST))
        got = res.at(block)
        assert (got.leep, got.logme, got.h_score, got.n_target) == (want.leep, want.logme, want.h_score, want.n_target)


@pytest.mark.parametrize("name", ["cka", "barrier"])
def test_cka_and_the_barrier_read_a_balanced_sample_of_the_test_split_when_asked(study, name):
    """``cka_examples`` / ``barrier_examples``: a job's row is the analysis of the two models on the test images
    that ``Split.sample`` draws with the study's seed (computed here from the analyses' own functions, not the
    kernel), balanced over the classes; not the whole-split row; and the sample is the same for every pair."""
    from dataclasses import replace

    from transferscope.analyses.barrier import interpolate
    from transferscope.analyses.cka import feature_similarity
    from transferscope.study.jobs import Context, Job
    from transferscope.study.registry import get_analysis

    plan, store, first = study
    spec, by_id = get_analysis(name), plan.by_id()
    data = _target(plan)
    k = data.num_classes * 4
    assert k < len(data.test)
    settings = replace(FAST, seed=3, **{f"{name}_examples": k})
    ctx = Context(plan, store.root, settings, "cpu")
    job = spec.jobs(ctx, {})[0]
    assert dict(job.params)[f"{name}_examples"] == k
    two = Job(job.analysis, job.target, job.runs, pairs=job.pairs[-2:], settings=job.settings)
    record = spec.run(ctx, two, {})
    sample = data.test.sample(k, 3)
    assert torch.bincount(sample.y, minlength=data.num_classes).tolist() == [4] * data.num_classes
    full = {(r.kind, r.seeds): r for r in first.results[f"{name}/tgt"].pairs}
    for row in record.pairs:
        (ra, wa), (rb, wb) = ROW_MODELS[name](row)
        a, b = _model_of(store, by_id[ra], wa), _model_of(store, by_id[rb], wb)
        if name == "cka":
            want = feature_similarity(a, b, sample.x, layers=a.layer_names(), batch_size=FAST.cka_batch_size)
            assert row.result.seed == 3 and row.result.layers == want.layers
            assert row.result.full == pytest.approx(want.full, abs=1e-6)
            assert row.result.minibatch == pytest.approx(want.minibatch, abs=1e-6)
        else:
            want = interpolate(a, b, sample, points=FAST.barrier_points, train_split=data.train, seed=3)
            assert row.result.error == pytest.approx(want.error, abs=1e-9)
            assert row.result.loss == pytest.approx(want.loss, rel=1e-5)
        assert row.result.n_examples == k
        assert not _same(row.result, full[row.kind, row.seeds].result, leave_out=("seed", "args"))


def test_the_basins_barriers_read_the_barriers_sample_of_the_test_split(study):
    """``barrier_examples`` also sizes the basin sweep's barriers (each P-T run from an earlier checkpoint to the
    same seed's P-T run from the final one): equal to the interpolation computed here on the sample."""
    from dataclasses import replace

    from transferscope.analyses.barrier import interpolate
    from transferscope.study.jobs import Context
    from transferscope.study.registry import get_analysis

    plan, store, first = study
    spec, by_id = get_analysis("basin"), plan.by_id()
    data = _target(plan)
    k = data.num_classes * 4
    settings = replace(FAST, seed=3, barrier_examples=k)
    job = spec.jobs(Context(plan, store.root, settings, "cpu"), {})[0]
    assert dict(job.params)["barrier_examples"] == k
    record = spec.run(Context(plan, store.root, settings, "cpu"), job, {})
    final = {r.seed: r.run for r in record.rows if r.checkpoint == record.final_checkpoint}
    earlier = [r for r in record.rows if r.checkpoint != record.final_checkpoint]
    assert earlier
    sample = data.test.sample(k, 3)
    for r in earlier:
        want = interpolate(_model_of(store, by_id[r.run]), _model_of(store, by_id[final[r.seed]]), sample,
                           points=FAST.barrier_points, train_split=data.train, seed=3)
        assert r.barrier_error == pytest.approx(want.barrier_error, abs=1e-9)
    before = {(r.checkpoint, r.seed): r for r in first.results["basin/tgt"].rows}
    assert any(before[r.checkpoint, r.seed].barrier_loss != pytest.approx(r.barrier_loss, rel=1e-9) for r in earlier)


def test_every_setting_a_kernel_reads_is_in_its_jobs_cache_key(study):
    """The options a kernel gets come from settings that are in its jobs' parameters (hashed into the cache key):
    a setting read but not hashed would serve a stale result when it changes."""
    from dataclasses import fields, replace

    from transferscope.study.jobs import Context
    from transferscope.study.registry import list_analyses

    plan, store, _ = study
    ctx = Context(plan, store.root, FAST, "cpu")
    for spec in list_analyses():
        if not spec.options:
            continue
        jobs = spec.jobs(ctx, {})
        assert jobs, spec.name
        for f in fields(FAST):
            changed = replace(FAST, **{f.name: _other(getattr(FAST, f.name))})
            if spec.kernel_options(changed) == spec.kernel_options(FAST):
                continue  # not read by this kernel
            assert all(f.name in job.params for job in jobs), (spec.name, f.name)


def _other(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if isinstance(v, list):
        return [*v, v[-1] if v else 1]
    return v


# each kernel option and the [analysis] setting it is, as the README documents them
OPTION_SETTING = {
    "mistakes": {"threshold": "multilabel_threshold"},
    "cka": {"batch_size": "cka_batch_size", "examples": "cka_examples"},
    "barrier": {"points": "barrier_points", "examples": "barrier_examples"},
    "criticality": {"alphas": "criticality_alphas", "samples": "criticality_samples",
                    "n_examples": "criticality_examples", "tolerance": "criticality_tolerance",
                    "s_tol": "criticality_s_tol"},
    "flatness": {"n_examples": "flatness_examples", "iters": "flatness_iters", "tol": "flatness_tol",
                 "radii": "flatness_radii", "samples": "flatness_samples"},
    "stability": {"ks": "stability_ks", "n_examples": "stability_examples"},
    "principal": {"top_k": "principal_top_k", "n_examples": "principal_examples"},
}


def test_each_kernel_option_is_the_setting_of_its_name():
    """Settings that all differ, so that two options read from each other's settings cannot pass."""
    from dataclasses import fields, replace

    from transferscope.study.registry import list_analyses

    s = FAST
    for i, f in enumerate(fields(FAST)):  # every setting a value no other has (ints, floats and lists alike)
        v = getattr(FAST, f.name)
        if isinstance(v, bool) or f.name in ("seed", "groups"):
            continue
        if isinstance(v, (int, float)):
            s = replace(s, **{f.name: v + 1000 * (i + 1) if isinstance(v, int) else v + 0.001 * (i + 1)})
        elif isinstance(v, list):
            s = replace(s, **{f.name: [*v, 100 + i]})
    values = [repr(getattr(s, f.name)) for f in fields(s) if f.name not in ("seed", "groups")]
    assert len(values) == len(set(values))
    with_options = {spec.name: spec.kernel_options(s) for spec in list_analyses() if spec.options}
    assert set(with_options) == set(OPTION_SETTING)
    for name, table in OPTION_SETTING.items():
        assert with_options[name] == {k: getattr(s, v) for k, v in table.items()}, name
