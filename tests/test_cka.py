import math

import numpy as np
import pytest
import torch

from transferscope.analyses.cka import CKAResult, LinearCKAAccumulator, feature_similarity, hsic1, linear_cka
from transferscope.config import ModelConfig
from transferscope.models import LayerError, create_model


def _data(n=300, p=12, q=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = x[:, :q] @ torch.randn(q, q, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, q, generator=g,
                                                                                           dtype=torch.float64)
    return x, y


def _reference_cka(x, y):
    """Kornblith et al. eq. (3) through centred Gram matrices, written independently of the library."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return torch.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l))


def _reference_hsic1(k, l):
    """HSIC_1 with explicit ones vectors and matrices, as the formula in SCIENCE.md reads."""
    m = k.shape[0]
    kt = k - torch.diag(torch.diag(k))
    lt = l - torch.diag(torch.diag(l))
    one = torch.ones(m, 1, dtype=k.dtype)
    a = torch.trace(kt @ lt)
    b = (one.T @ kt @ one) * (one.T @ lt @ one) / ((m - 1) * (m - 2))
    c = 2.0 / (m - 2) * (one.T @ kt @ lt @ one)
    return ((a + b - c) / (m * (m - 3))).squeeze()


def test_cka_of_a_matrix_with_itself_is_one():
    x, _ = _data()
    assert linear_cka(x, x).item() == pytest.approx(1.0, abs=1e-12)
    wide = torch.randn(20, 50, dtype=torch.float64)  # p > n: the Gram-space branch
    assert linear_cka(wide, wide).item() == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x, y = _data()
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    base = linear_cka(x, y).item()
    assert linear_cka(x @ q, y).item() == pytest.approx(base, rel=1e-10)
    assert linear_cka(3.7 * x, 0.2 * y).item() == pytest.approx(base, rel=1e-10)
    assert 0 < base < 1


def test_not_invariant_to_a_general_linear_map():
    x, y = _data()
    a = torch.diag(torch.linspace(0.1, 10, 12, dtype=torch.float64))
    assert abs(linear_cka(x @ a, y).item() - linear_cka(x, y).item()) > 1e-3


@pytest.mark.parametrize("n, p, q", [(300, 12, 9), (30, 80, 40)])
def test_matches_an_independent_gram_space_reference(n, p, q):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = torch.tanh(x[:, :q] * 2) + torch.randn(n, q, generator=g, dtype=torch.float64)
    assert linear_cka(x, y).item() == pytest.approx(_reference_cka(x, y).item(), rel=1e-9)


def test_streamed_full_data_equals_direct_in_any_chunking():
    x, y = _data(n=517)
    acc = LinearCKAAccumulator(batch_size=0)
    for lo, hi in [(0, 1), (1, 100), (100, 333), (333, 517)]:
        acc.update(x[lo:hi], y[lo:hi])
    assert acc.compute()["full"].item() == pytest.approx(_reference_cka(x, y).item(), rel=1e-9)


def test_hsic1_matches_the_formula():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randn(16, 7, generator=g, dtype=torch.float64)
    k, l = a @ a.T, b @ b.T
    assert hsic1(k, l).item() == pytest.approx(_reference_hsic1(k, l).item(), rel=1e-10)
    with pytest.raises(ValueError, match="at least 4"):
        hsic1(k[:3, :3], l[:3, :3])


def test_streamed_minibatch_regroups_and_drops_the_partial_batch():
    x, y = _data(n=250)
    m = 64
    acc = LinearCKAAccumulator(batch_size=m, full=False)
    for lo in range(0, 250, 37):  # updates that do not line up with the minibatches
        acc.update(x[lo : lo + 37], y[lo : lo + 37])
    sums = torch.zeros(3, dtype=torch.float64)
    for i in range(0, 250 - 250 % m, m):  # 3 full minibatches; the last 58 examples are dropped
        k, l = x[i : i + m] @ x[i : i + m].T, y[i : i + m] @ y[i : i + m].T
        sums += torch.stack([_reference_hsic1(k, l), _reference_hsic1(k, k), _reference_hsic1(l, l)])
    expected = sums[0] / torch.sqrt(sums[1] * sums[2])
    assert acc._batches == 3
    assert acc.compute()["minibatch"].item() == pytest.approx(expected.item(), rel=1e-10)


def test_minibatch_and_full_agree_within_tolerance():
    """With many examples per minibatch the unbiased minibatch estimate and the full-data estimate agree;
    tolerance 0.02 on this data (the biased full-data estimator is slightly above)."""
    x, y = _data(n=4096, p=16, q=16, seed=3)
    acc = LinearCKAAccumulator(batch_size=512)
    acc.update(x, y)
    r = acc.compute()
    assert abs(r["full"].item() - r["minibatch"].item()) < 0.02


def test_no_variance_gives_nan_not_an_error():
    x = torch.ones(10, 3, dtype=torch.float64)
    assert math.isnan(linear_cka(x, torch.randn(10, 2, dtype=torch.float64)).item())


def _models():
    a = create_model(ModelConfig(blocks=[1, 1], width=8), 1, 4, seed=0)
    b = create_model(ModelConfig(blocks=[1, 1], width=8), 1, 4, seed=1)
    return a, b


def test_feature_similarity_self_is_one_and_different_models_less():
    a, b = _models()
    imgs = torch.randint(0, 256, (96, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    layers = a.layer_names()
    same = feature_similarity(a, a, imgs, layers=layers, batch_size=32, chunk=40)
    diff = feature_similarity(a, b, imgs, layers=layers, batch_size=32, chunk=40)
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in same.full)
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in same.minibatch)
    assert all(v < 0.999 for v in diff.full)  # guards the compare-a-model-with-itself bug
    assert same.n_minibatches == 3 and diff.n_examples == 96
    assert CKAResult.from_dict(diff.to_dict()) == diff


def test_feature_similarity_leaves_models_unchanged():
    a, b = _models()
    b.eval()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    imgs = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8)
    feature_similarity(a, b, imgs, layers=["pool"], batch_size=8)
    assert a.training and not b.training
    assert all(torch.equal(before[k], v) for k, v in a.state_dict().items())


def test_unknown_layer_lists_the_valid_ones():
    a, b = _models()
    with pytest.raises(LayerError, match="valid layers are stem"):
        feature_similarity(a, b, torch.zeros(8, 1, 16, 16, dtype=torch.uint8), layers=["layer3"])


def test_accumulator_holds_rows_then_streams_sums_with_the_same_value():
    """Rows are held while smaller than the feature-space sums, then folded into them: the value is the
    direct full-data CKA either way, and past the switch no row is held (memory stops growing with n)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 8, generator=g)
    y = torch.tanh(x[:, :6]) + 0.3 * torch.randn(300, 6, generator=g)
    # switch point: 4 x n (p + q) * 4 bytes >= (pq + p^2 + q^2) * 8 bytes -> n >= 5.3
    small = LinearCKAAccumulator(batch_size=0)
    small.update(x[:5], y[:5])
    assert not small.streaming
    assert small.compute()["full"].item() == pytest.approx(_reference_cka(x[:5].double(), y[:5].double()).item(), rel=1e-6)
    acc = LinearCKAAccumulator(batch_size=0)
    for i in range(0, 300, 2):
        acc.update(x[i : i + 2], y[i : i + 2])
        assert acc.streaming == (i + 2 >= 6)
        assert sum(len(h) for h in acc._hx) <= 5
    assert acc.compute()["full"].item() == pytest.approx(_reference_cka(x.double(), y.double()).item(), rel=1e-6)


@pytest.mark.parametrize("n, p, q", [(50, 3, 4), (12, 40, 30)])
def test_held_rows_formula_in_both_spaces_matches_the_reference(n, p, q):
    """The held-rows computation picks feature space (n large) or Gram space (p, q large): both equal the reference."""
    from transferscope.analyses.cka import _held_cka

    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, p, generator=g) + 3.0  # a large mean: centring must happen
    y = torch.tanh(x[:, : min(p, q)].repeat(1, -(-q // min(p, q)))[:, :q]) + 0.5 * torch.randn(n, q, generator=g)
    ref = _reference_cka(x.double(), y.double()).item()
    x0 = x.clone()
    assert _held_cka(x, y, chunk=5).item() == pytest.approx(ref, rel=1e-5)
    assert torch.equal(x, x0)  # the held rows are not changed


def _numpy_cka(x, y):
    """SCIENCE.md's formula in float64 numpy: centred X, Y; ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)."""
    x = np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(0)
    y = np.asarray(y, np.float64) - np.asarray(y, np.float64).mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def _numpy_hsic1(x, y):
    """HSIC_1 (SCIENCE.md) in numpy on features shifted by their column means (HSIC_1 is unchanged by a shift)."""
    x, y = x - x.mean(0), y - y.mean(0)
    k, l = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    m, one = len(k), np.ones(len(k))
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((m - 1) * (m - 2))
            - 2 / (m - 2) * one @ k @ l @ one) / (m * (m - 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n, p, q", [(3000, 4, 3), (40, 60, 50)])
def test_streamed_cka_keeps_its_precision_at_a_large_feature_mean(n, p, q, dtype):
    """Features offset by 1e5 (as late-layer activations can be): streamed sums (n >> p, q) and held rows (p, q > n)
    against a float64 numpy reference. The one-pass covariance lost 1e-4 relative at this offset; shifted by the
    first batch's mean, ~1e-12."""
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, p)) + 1e5
    y = np.tanh(x[:, :q] - 1e5) + 0.5 * rng.normal(size=(n, q)) - 1e5 + rng.normal(size=q)
    xt, yt = torch.from_numpy(x).to(dtype), torch.from_numpy(y).to(dtype)
    x, y = xt.double().numpy(), yt.double().numpy()  # the reference sees exactly the values given
    acc = LinearCKAAccumulator(batch_size=20)
    for lo in range(0, n, 7):
        acc.update(xt[lo : lo + 7], yt[lo : lo + 7])
    assert acc.streaming == (n > p + q)
    ref = _numpy_cka(x, y)
    assert 0.05 < ref < 0.99
    assert abs(acc.compute()["full"].item() - ref) / ref < 1e-8
    sums = np.zeros(3)
    for i in range(0, n - n % 20, 20):
        a, b = x[i : i + 20], y[i : i + 20]
        sums += [_numpy_hsic1(a, b), _numpy_hsic1(a, a), _numpy_hsic1(b, b)]
    ref_mb = sums[0] / np.sqrt(sums[1] * sums[2])
    assert abs(acc.compute()["minibatch"].item() - ref_mb) / abs(ref_mb) < 1e-6


def _accumulated(model_a, model_b, images, layers, batch_size, chunk=512, full=True):
    """The pair computed as before the sides existed: both models over each pass of images, every layer's features
    streamed into one LinearCKAAccumulator."""
    from transferscope.models import to_input

    accs = [LinearCKAAccumulator(batch_size, full=full) for _ in layers]
    with torch.no_grad():
        for i in range(0, len(images), chunk):
            xb = to_input(images[i : i + chunk])
            fa, fb = model_a.eval().features(xb, layers), model_b.eval().features(xb, layers)
            for acc, name in zip(accs, layers, strict=True):
                acc.update(fa[name], fb[name])
    rs = [a.compute() for a in accs]
    return [float(r["full"]) for r in rs], [float(r["minibatch"]) for r in rs], accs[0]._batches


@pytest.mark.parametrize("n,chunk,batch", [(150, 64, 16), (150, 512, 20), (37, 10, 8), (3, 512, 4)])
def test_sides_give_bitwise_the_accumulated_pair(n, chunk, batch):
    """A model's side, computed once and combined with any other's, is bitwise the pair streamed through the
    accumulator: wide layers (Gram path, n < 3p/4) and narrow ones (the accumulator replayed), full and minibatch,
    over passes that do not divide n."""
    from transferscope.analyses.cka import cka_of_sides, cka_side

    cfg = ModelConfig(blocks=[1, 1], width=4, norm="groupnorm")
    a, b, c = (create_model(cfg, 1, 3, seed=s) for s in (0, 1, 2))
    imgs = torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    layers = a.layer_names()
    kw = {"layers": layers, "batch_size": batch, "chunk": chunk}
    sides = {k: cka_side(m, imgs, **kw) for k, m in (("a", a), ("b", b), ("c", c))}
    assert any(lay.grams for lay in sides["a"].by_layer.values()) and any(lay.chunks for lay in
                                                                          sides["a"].by_layer.values())
    for x, y, mx, my in (("a", "b", a, b), ("b", "c", b, c), ("a", "c", a, c), ("c", "a", c, a)):
        got = cka_of_sides(sides[x], sides[y])
        full, mini, batches = _accumulated(mx, my, imgs, layers, batch, chunk)
        assert np.array_equal(got.full, full, equal_nan=True) and np.array_equal(got.minibatch, mini, equal_nan=True)
        assert got.n_minibatches == batches and got.n_examples == n
        assert got.to_dict() == feature_similarity(mx, my, imgs, **kw).to_dict()
    assert cka_of_sides(sides["a"], sides["a"]).full[0] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="other layers, images or settings"):
        cka_of_sides(sides["a"], cka_side(b, imgs[: n - 1], **kw))
