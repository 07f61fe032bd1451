"""The analyses on multi-label targets (labels (N, L) in {1, 0, NaN}): every loss is the per-label BCE averaged
over an example's known labels, every error 1 - mean AUC, mistakes are per (example, label) decision at a
threshold, LEEP and H-score are not applicable and LogME is taken per label. Each is checked against a reference
computed here independently (numpy BCE, scikit-learn's AUC, explicit Hessians, hand-counted tables)."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.metrics import roc_auc_score

from transferscope import jsonio
from transferscope.analyses.barrier import interpolate
from transferscope.analyses.criticality import module_criticality
from transferscope.analyses.flatness import flatness, loss_on
from transferscope.analyses.gradients import gradient_stability, loss_and_grad, principal_gradient
from transferscope.analyses.mistakes import mistakes, mistakes_from_logits, model_mistakes, multilabel_mistakes
from transferscope.analyses.transferability import NOT_MULTILABEL, logme, logme_multilabel, transferability_scores
from transferscope.config import ModelConfig
from transferscope.data import Split
from transferscope.models import create_model, to_input
from transferscope.study.registry import get_analysis, list_analyses
from transferscope.vocab import records as rec

L = 4


def _labels(n: int, seed: int, unknown: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, L)) < 0.4).astype(np.float32)
    y[rng.random((n, L)) < unknown] = np.nan
    y[0, :] = 1.0  # every label has a known positive and a known negative
    y[1, :] = 0.0
    return y


def _split(n: int = 48, size: int = 16, seed: int = 0, y: np.ndarray | None = None) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    y = _labels(n, seed) if y is None else y
    return Split(x, torch.from_numpy(y), np.arange(n))


def _net(seed: int, norm: str = "groupnorm") -> nn.Module:
    m = create_model(ModelConfig(blocks=[1, 1], width=4, norm=norm), 1, L, seed=seed)
    with torch.no_grad():  # logits of some spread, so that the AUC and the loss move along the line
        for p in m.parameters():
            p.mul_(1.5)
    return m.eval()


class _Linear(nn.Module):
    """A linear model on 2x2 images: few enough parameters for an explicit Hessian."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(4, L)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _bce(z: np.ndarray, y: np.ndarray) -> float:
    """Mean over examples of the mean over known labels of -y log s(z) - (1 - y) log(1 - s(z)), in numpy."""
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    known = ~np.isnan(y)
    each = np.logaddexp(0.0, z) - np.where(known, y, 0.0) * z
    per = np.where(known, each, 0.0).sum(1) / np.maximum(known.sum(1), 1)
    return float(per.mean())


def _bce_torch(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same loss written with log-sigmoids, differentiable (for gradients and Hessians)."""
    known = ~torch.isnan(y)
    t = torch.where(known, y, torch.zeros_like(y)).to(z.dtype)
    each = -(t * torch.nn.functional.logsigmoid(z) + (1 - t) * torch.nn.functional.logsigmoid(-z))
    each = torch.where(known, each, torch.zeros_like(each))
    return (each.sum(1) / known.sum(1).clamp(min=1)).mean()


def _mean_auc(z: np.ndarray, y: np.ndarray) -> float:
    aucs = []
    for j in range(y.shape[1]):
        k = ~np.isnan(y[:, j])
        if len(set(y[k, j].tolist())) == 2:
            aucs.append(roc_auc_score(y[k, j], z[k, j]))
    return float(np.mean(aucs))


@torch.no_grad()
def _logits(model: nn.Module, split: Split) -> np.ndarray:
    return model.eval()(to_input(split.x)).double().numpy()


def _lerp_model(a: nn.Module, b: nn.Module, lam: float, buffers: bool = True) -> nn.Module:
    m = copy.deepcopy(a)
    sa, sb = a.state_dict(), b.state_dict()
    m.load_state_dict({k: torch.lerp(sa[k], sb[k], lam) if (sa[k].is_floating_point() and
                                                             (buffers or k in dict(a.named_parameters())))
                       else sa[k] for k in sa})
    return m.eval()


# ------------------------------------------------------------------------------------------------------ barrier

def test_barrier_loss_and_error_are_bce_and_one_minus_mean_auc_at_every_point():
    split, a, b = _split(), _net(0), _net(1)
    r = interpolate(a, b, split, points=5)
    y = split.y.numpy()
    assert r.error_metric == "auc" and r.auc_excluded == [] and r.n_examples == len(split)
    for lam, loss, err in zip(r.lambdas, r.loss, r.error, strict=True):
        z = _logits(_lerp_model(a, b, lam), split)
        assert loss == pytest.approx(_bce(z, y), rel=1e-5)
        assert err == pytest.approx(1 - _mean_auc(z, y), abs=1e-9)
    chord = [(1 - lam) * r.error[0] + lam * r.error[-1] for lam in r.lambdas]
    assert r.barrier_error == pytest.approx(max(e - c for e, c in zip(r.error, chord, strict=True)))
    back = rec.BarrierResult.from_dict(jsonio.loads(jsonio.dumps(r.to_dict())))
    assert back == r


def test_barrier_batched_points_equal_the_plain_path():
    split, a, b = _split(), _net(0), _net(1)
    r = interpolate(a, b, split, points=5, batch_size=20)
    for chunk in (0, 2):
        rb = interpolate(a, b, split, points=5, batched=True, chunk_points=chunk, batch_size=20)
        assert np.allclose(rb.loss, r.loss, rtol=1e-5) and np.allclose(rb.error, r.error, atol=1e-6)
        assert rb.error_metric == "auc"


def test_barrier_with_batch_statistics_interpolated_is_bce_and_auc_of_the_interpolated_model():
    split, a, b = _split(), _net(0, "batchnorm"), _net(1, "batchnorm")
    r = interpolate(a, b, split, points=3, bn_policy="interpolate")
    y = split.y.numpy()
    assert r.bn_policy == "interpolate" and r.error_metric == "auc"
    for lam, loss, err in zip(r.lambdas, r.loss, r.error, strict=True):
        z = _logits(_lerp_model(a, b, lam), split)
        assert loss == pytest.approx(_bce(z, y), rel=1e-5) and err == pytest.approx(1 - _mean_auc(z, y), abs=1e-9)


def test_barrier_names_a_label_without_both_classes_and_leaves_it_out():
    y = _labels(48, 3)
    y[:, 2] = np.where(np.isnan(y[:, 2]), np.nan, 1.0)  # label 2: no known negative
    split, a, b = _split(y=y), _net(0), _net(1)
    r = interpolate(a, b, split, points=3)
    assert r.auc_excluded == ["2"]
    z = _logits(a, split)
    assert r.error[0] == pytest.approx(1 - _mean_auc(z, y), abs=1e-9)


# -------------------------------------------------------------------------------------------------- criticality

def test_criticality_threshold_is_on_the_bce_and_the_rewinding_curve_reports_auc():
    split, model, init = _split(), _net(0), _net(5)
    r = module_criticality(model, init.state_dict(), split, alphas=(0.0, 0.5, 1.0), modules=["head"], samples=1,
                           s_tol=0.2, n_examples=len(split))
    y = split.y.numpy()
    assert r.metric == "auc"
    assert r.final_loss == pytest.approx(_bce(_logits(model, split), y), rel=1e-5)
    assert r.eps == pytest.approx(1.1 * r.final_loss)
    for a, loss, auc in zip(r.alphas, r.rewind_loss[0], r.rewind_acc[0], strict=True):
        m = copy.deepcopy(model)
        si, sf = init.state_dict(), model.state_dict()
        m.load_state_dict({k: torch.lerp(si[k], sf[k], a) if k.startswith("head.") else sf[k] for k in sf})
        z = _logits(m, split)
        assert loss == pytest.approx(_bce(z, y), rel=1e-5) and auc == pytest.approx(_mean_auc(z, y), abs=1e-9)
    assert rec.CriticalityResult.from_dict(jsonio.loads(jsonio.dumps(r.to_dict()))).metric == "auc"


# ------------------------------------------------------------------------------------------ flatness, gradients

def _tiny(n: int = 40, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 2, 2), generator=g, dtype=torch.uint8)
    return Split(x, torch.from_numpy(_labels(n, seed)), np.arange(n))


def test_loss_and_its_gradient_are_those_of_the_bce():
    split, model = _tiny(), _Linear(0)
    x, y = to_input(split.x), split.y
    ref = _bce_torch(model(x), y)
    want = torch.autograd.grad(ref, list(model.parameters()))
    loss, grads = loss_and_grad(model, x, y, batch_size=7)  # batches of unequal size sum to the mean
    assert loss == pytest.approx(ref.item(), rel=1e-6)
    for g, w in zip(grads, want, strict=True):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-7)
    assert loss_on(model, x, y, batch_size=7).item() == pytest.approx(_bce(model(x).detach().numpy(), y.numpy()),
                                                                      rel=1e-6)


def test_sharpness_is_the_top_eigenvalue_of_the_bce_hessian():
    split, model = _tiny(), _Linear(1)
    r = flatness(model, split, n_examples=len(split), iters=500, tol=1e-6, radii=(0.05,), samples=2, batch_size=16)
    x, y = to_input(split.x).double().flatten(1), split.y
    w0, b0 = model.fc.weight.detach().double(), model.fc.bias.detach().double()
    flat = torch.cat([w0.reshape(-1), b0])

    def f(theta):
        w, b = theta[: w0.numel()].reshape(w0.shape), theta[w0.numel():]
        return _bce_torch(x @ w.T + b, y)

    h = torch.autograd.functional.hessian(f, flat)
    assert r.loss == pytest.approx(f(flat).item(), rel=1e-5)
    assert r.top_eigenvalue == pytest.approx(torch.linalg.eigvalsh(h).max().item(), rel=1e-3)


def test_gradient_stability_and_principal_gradient_use_the_bce():
    split, model = _tiny(), _Linear(2)
    x, y = to_input(split.x).double(), split.y
    m = copy.deepcopy(model).double()
    ref = _bce_torch(m(x), y)
    g = torch.autograd.grad(ref, list(m.parameters()))
    gn = math.sqrt(sum(float((t**2).sum()) for t in g))
    s = gradient_stability(model, split, lr=0.1, ks=(1.0,), n_examples=len(split))
    assert s.loss == pytest.approx(ref.item(), rel=1e-9) and s.grad_norm == pytest.approx(gn, rel=1e-9)
    with torch.no_grad():  # the loss after the step theta - 0.1 g, evaluated independently
        for p, t in zip(m.parameters(), g, strict=True):
            p.sub_(0.1 * t)
    assert s.loss_change[0] == pytest.approx(_bce_torch(m(x), y).item() - ref.item(), rel=1e-6)
    p = principal_gradient(model, split, top_k=(1,), n_examples=len(split))
    assert p.loss == pytest.approx(ref.item(), rel=1e-5)
    assert p.grad_norm[0] == pytest.approx(float(g[0].norm()), rel=1e-4)


# ------------------------------------------------------------------------------------------------------ mistakes

def _p2z(p):
    p = np.asarray(p, np.float64)
    return np.log(p) - np.log1p(-p)


NAN = math.nan
Y = np.array([[1, 0, NAN], [0, 1, 1], [NAN, 0, 1]], np.float32)
PA = [[0.9, 0.6, 0.9], [0.2, 0.7, 0.3], [0.1, 0.1, 0.55]]
PB = [[0.3, 0.1, 0.1], [0.4, 0.9, 0.2], [0.9, 0.7, 0.95]]


def test_mistakes_per_example_label_decision_on_a_hand_table():
    # at 0.5: a wrong on (0,1), (1,2); b wrong on (0,0), (1,2), (2,1); the unknown (0,2) and (2,0) do not count
    r = mistakes_from_logits(_p2z(PA), _p2z(PB), Y)
    assert (r.unit, r.threshold, r.n, r.n_examples, r.n_labels) == ("example-label", 0.5, 7, 3, 3)
    assert (r.common, r.uncommon) == (1, 3)
    assert r.only_a_wrong_decisions == [1] and r.only_b_wrong_decisions == [0, 7]
    assert r.only_a_wrong == [0] and r.only_b_wrong == [0, 2]
    assert r.common_fraction == pytest.approx(1 / 7) and r.uncommon_fraction == pytest.approx(3 / 7)
    # at 0.8: a wrong on (1,1), (1,2), (2,2); b wrong on (0,0), (1,2)
    r8 = multilabel_mistakes(_p2z(PA), _p2z(PB), Y, threshold=0.8)
    assert (r8.threshold, r8.common, r8.uncommon) == (0.8, 1, 3)
    assert r8.only_a_wrong_decisions == [4, 8] and r8.only_b_wrong_decisions == [0]
    assert r8.only_a_wrong == [1, 2] and r8.only_b_wrong == [0]
    # reading the unknown as absent would count (0,2) (a says present) and (2,0) (b says present)
    r0 = mistakes_from_logits(_p2z(PA), _p2z(PB), np.nan_to_num(Y))
    assert r0.n == 9 and r0.uncommon == 5
    back = rec.PairMistakes.from_dict(jsonio.loads(jsonio.dumps(rec.PairMistakes.of(r8, [5, 6, 7]).to_dict())))
    assert back.unit == "example-label" and back.threshold == 0.8 and back.only_a_wrong_decisions == [4, 8]


def test_mistakes_threshold_moves_every_decision_as_sigmoid_says():
    rng = np.random.default_rng(0)
    za, zb = rng.normal(size=(50, L)) * 2, rng.normal(size=(50, L)) * 2
    y = _labels(50, 1)
    known = ~np.isnan(y)
    for t in (0.2, 0.5, 0.7):
        r = multilabel_mistakes(za, zb, y, threshold=t)
        wa = ((1 / (1 + np.exp(-za)) >= t).astype(float) != y) & known
        wb = ((1 / (1 + np.exp(-zb)) >= t).astype(float) != y) & known
        assert (r.n, r.common, r.uncommon) == (known.sum(), (wa & wb).sum(), (wa != wb).sum())
        s = multilabel_mistakes(zb, za, y, threshold=t)  # swapping the models keeps the symmetric counts
        assert (s.common, s.uncommon, s.n) == (r.common, r.uncommon, r.n)
        assert s.only_a_wrong_decisions == r.only_b_wrong_decisions and s.only_b_wrong == r.only_a_wrong
    assert multilabel_mistakes(za, za + 0.0, y).uncommon == 0
    with pytest.raises(ValueError):
        multilabel_mistakes(za, zb, y, threshold=1.0)


def test_mistakes_of_single_label_logits_are_the_arg_max_mistakes():
    rng = np.random.default_rng(2)
    za, zb, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)), rng.integers(0, 5, 30)
    r, ref = mistakes_from_logits(za, zb, y), mistakes(za.argmax(1), zb.argmax(1), y)
    assert r == ref and r.unit == "example" and r.threshold == 0.0 and r.n_examples == r.n == 30


def test_model_mistakes_on_a_multilabel_split():
    split, a, b = _split(), _net(0), _net(1)
    r = model_mistakes(a, b, split, batch_size=20, threshold=0.6)
    ref = multilabel_mistakes(_logits(a, split), _logits(b, split), split.y.numpy(), threshold=0.6)
    assert (r.n, r.common, r.uncommon, r.only_a_wrong_decisions) == (ref.n, ref.common, ref.uncommon,
                                                                      ref.only_a_wrong_decisions)
    assert r.args == {"batch_size": 20, "threshold": 0.6}


# ---------------------------------------------------------------------------------------------- transferability

def test_logme_per_label_is_single_label_logme_on_each_labels_known_examples():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(80, 6))
    y = _labels(80, 4)
    y[:, 3] = np.where(np.isnan(y[:, 3]), np.nan, 0.0)  # label 3: no known positive
    mean, per, excluded = logme_multilabel(f, y)
    for j in range(3):
        k = ~np.isnan(y[:, j])
        assert per[j] == pytest.approx(logme(f[k], y[k, j].astype(int), 2), rel=1e-12)
    assert math.isnan(per[3]) and excluded == [3]
    assert mean == pytest.approx(np.mean(per[:3]))
    # a label the features carry scores higher than one they do not
    y2 = np.stack([(f[:, 0] > 0), rng.random(80) > 0.5], 1).astype(np.float32)
    _, per2, _ = logme_multilabel(f, y2)
    assert per2[0] > per2[1]


def test_transferability_scores_of_a_multilabel_target():
    split, model = _split(), _net(0)
    r = transferability_scores(model, split.x, split.y, None)
    assert math.isnan(r.leep) and math.isnan(r.h_score)
    assert r.not_applicable == {"leep": NOT_MULTILABEL, "h_score": NOT_MULTILABEL}
    with torch.no_grad():
        feats = model.features(to_input(split.x), ["pool"])["pool"].reshape(len(split), -1).double().numpy()
    want, per, _ = logme_multilabel(feats, split.y.numpy())
    assert r.logme == pytest.approx(want, rel=1e-9) and r.logme_per_label == pytest.approx(per, rel=1e-9)
    assert len(r.logme_per_label) == L and r.logme_excluded == []
    back = rec.TransferabilityResult.from_dict(jsonio.loads(jsonio.dumps(r.to_dict())))
    assert back.not_applicable == r.not_applicable and back.logme_per_label == pytest.approx(r.logme_per_label)


# ------------------------------------------------------------------------------------------------------ records

def test_records_written_before_multilabel_targets_read_as_single_label():
    m = rec.PairMistakes.from_dict({"n": 4, "common": 1, "uncommon": 2, "only_a_wrong": [0], "only_b_wrong": [3],
                                    "test_index": [1, 2, 3, 4]})
    assert (m.unit, m.threshold, m.n, m.examples, m.only_a_wrong_decisions) == ("example", 0.0, 4, 4, [])
    b = rec.BarrierResult.from_dict({"lambdas": [0, 1], "loss": [1, 2], "error": [0.1, 0.2], "barrier_error": 0,
                                     "barrier_loss": 0, "bn_policy": "exact", "n_examples": 3})
    assert b.error_metric == "acc" and b.auc_excluded == []
    t = rec.TransferabilityResult.from_dict({"leep": -1, "logme": 0.1, "h_score": 2, "mmd2_rbf": 0, "mmd2_linear": 0,
                                             "bandwidth": 1, "n_target": 3, "n_source": 0, "feature_layer": "pool"})
    assert t.not_applicable == {} and t.logme_per_label == []


# ------------------------------------------------------------------------------------------------ every analysis

@pytest.fixture(scope="module")
def ml_domain():
    from transferscope.data import DomainData

    return DomainData("ml", tuple(f"l{j}" for j in range(L)), _split(48, seed=0), _split(24, seed=1),
                      _split(40, seed=2), 16)


@pytest.mark.parametrize("name", [s.name for s in list_analyses() if s.kernel])
def test_every_analysis_runs_on_a_multilabel_target_on_the_device_given(name, ml_domain):
    """Each registered analysis on multi-label data, under a "meta" default device with device="cpu", gives what it
    gives on the CPU as usual (no tensor made without a device on the multi-label paths), twice the same."""

    from .test_contract import OPTIONS
    from .test_devices import _json, meta_default

    a, b = _net(0), _net(1)
    opts = dict(OPTIONS.get(name, {}))
    if name == "scores":
        opts["source_x"] = ml_domain.val.x
    want = get_analysis(name).kernel(a, b, ml_domain, seed=3, **opts)
    assert _json(get_analysis(name).kernel(a, b, ml_domain, seed=3, **opts)) == _json(want)
    with meta_default():
        got = get_analysis(name).kernel(a, b, ml_domain, seed=3, device="cpu", **opts)
    assert _json(got) == _json(want)
    if name == "barrier":
        assert want.error_metric == "auc" and all(math.isfinite(v) for v in want.loss + want.error)
    if name == "mistakes":
        assert want.unit == "example-label" and want.n == int((~np.isnan(ml_domain.test.y.numpy())).sum())


def test_barrier_recomputing_batch_statistics_on_multilabel_training_data(ml_domain):
    from .test_devices import _json, meta_default

    a, b = _net(0, "batchnorm"), _net(1, "batchnorm")
    kw = {"points": 3, "bn_policy": "recompute", "train_split": ml_domain.train, "bn_batches": 2, "batch_size": 16,
          "seed": 1}
    want = interpolate(a, b, ml_domain.test, **kw)
    with meta_default():
        got = interpolate(a, b, ml_domain.test, **kw)
    assert _json(got) == _json(want) and want.error_metric == "auc"
    assert all(math.isfinite(v) for v in want.loss + want.error)
