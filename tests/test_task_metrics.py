"""The loss and the metric by label shape, against independent references (torch's own losses, a rank-sum AUC)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transferscope import metrics, task


def _rank_auc(s: np.ndarray, t: np.ndarray) -> float:
    """Mann-Whitney form of the AUC: the share of (positive, negative) pairs ordered right, ties counting half."""
    pos, neg = s[t == 1], s[t == 0]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def test_single_label_loss_is_cross_entropy_over_any_leading_shape():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(3, 7, 5, generator=g), torch.randint(0, 5, (7,), generator=g)
    ref = torch.stack([F.cross_entropy(logits[i], y, reduction="none") for i in range(3)])
    assert torch.allclose(task.per_example_loss(logits, y), ref)
    assert torch.allclose(task.loss(logits[0], y), F.cross_entropy(logits[0], y))
    assert task.metric_for(y) == "acc"


def test_multilabel_loss_is_the_mean_bce_over_known_labels_per_example():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, generator=g)
    y = torch.randint(0, 2, (6, 4), generator=g).float()
    y[0, 1] = y[2, 0] = y[2, 3] = float("nan")
    each = task.per_example_loss(logits, y)
    for i in range(6):
        k = ~torch.isnan(y[i])
        assert torch.allclose(each[i], F.binary_cross_entropy_with_logits(logits[i, k], y[i, k]))
    assert torch.allclose(task.loss(logits, y, "sum"), each.sum())
    assert torch.allclose(task.loss(logits, y), each.mean())
    # an unknown label's logit does not move the loss; a known one does
    moved = logits.clone()
    moved[0, 1] += 5
    assert torch.allclose(task.per_example_loss(moved, y), each)
    moved[0, 0] += 5
    assert not torch.allclose(task.per_example_loss(moved, y)[0], each[0])
    # with every label known it is torch's BCE-with-logits
    full = torch.randint(0, 2, (6, 4), generator=g).float()
    assert torch.allclose(task.loss(logits, full), F.binary_cross_entropy_with_logits(logits, full))
    # broadcast over stacked models, as the barrier's batched interpolation does
    stacked = task.per_example_loss(torch.stack([logits, logits + 1]), y)
    assert stacked.shape == (2, 6) and torch.allclose(stacked[0], each)
    assert task.metric_for(y) == "auc"


def test_auc_matches_the_rank_sum_form_and_excludes_undefined_labels():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(40, 3))
    y = (rng.random((40, 3)) < 0.4).astype(np.float32)
    s[:, 0] += 2 * y[:, 0]  # label 0 is predictable
    y[:, 2] = 0  # label 2 has no positive: undefined
    y[::5, 1] = np.nan  # some unknown decisions
    d = metrics.auc_detail(s, y, names=["a", "b", "c"])
    for j in (0, 1):
        k = ~np.isnan(y[:, j])
        assert d["per_label"][j] == pytest.approx(_rank_auc(s[k, j], y[k, j]))
    assert np.isnan(d["per_label"][2]) and d["excluded"] == ["c"] and d["labels_used"] == 2
    assert d["mean"] == pytest.approx(np.mean(d["per_label"][:2]))
    assert d["per_label"][0] > 0.8
    # reversing the scores reverses every AUC
    r = metrics.auc_detail(-s, y)
    assert r["per_label"][0] == pytest.approx(1 - d["per_label"][0])
    y[:, :] = 1
    assert np.isnan(metrics.mean_auc(s, y))


def test_score_and_keys_follow_the_metric():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    assert metrics.score(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    # label 0: the positive (2) beats one negative (0) of two (3): 0.5; label 1: positives 1 and 0 against the
    # negative 0: (1 + 0.5) / 2 = 0.75
    assert metrics.score(logits, np.array([[1, 0], [0, 1], [0, 1]], np.float32)) == pytest.approx(0.625)
    assert metrics.value({"test_acc": 0.7}, "test") == 0.7
    assert metrics.value({"metric": "auc", "test_acc": 0.1, "test_auc": 0.8}, "test") == 0.8
    assert np.isnan(metrics.value({"metric": "auc"}, "val"))
    assert metrics.value({"metric": "auc", "train_auc_final": 0.9, "train_acc_final": 0.2}, "train_final") == 0.9
    assert metrics.value({"train_acc_final": 0.2}, "train_final") == 0.2
    assert metrics.metric_label("auc") == "mean AUC" and metrics.metric_label("acc") == "accuracy"
    ys = torch.tensor([[0.0, 1.0]])
    assert task.decisions(torch.tensor([[-0.1, 0.0]]), True).tolist() == [[False, True]]
    assert task.decisions(torch.tensor([[-0.1, 0.0]]), False).tolist() == [1]
    assert metrics.is_multilabel(ys) and not metrics.is_multilabel(torch.tensor([1]))


def test_non_finite_scores_give_nan_not_an_error():
    """A model that diverged: its AUC is NaN (as its loss), the labels it touches are not called undefined."""
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    s = np.array([[0.5, 0.1], [0.2, np.nan], [0.9, 0.3], [0.1, 0.2]])
    d = metrics.auc_detail(s, y)
    assert d["per_label"][0] == pytest.approx(1.0) and np.isnan(d["per_label"][1])
    assert np.isnan(d["mean"]) and d["excluded"] == [] and d["labels_used"] == 2
    assert np.isnan(metrics.score(np.full((4, 2), np.inf), y))


def test_labels_are_excluded_by_position_not_by_name():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 1]], np.float32)
    y[:, 0] = 0  # label 0 undefined; label 1 of the same name is not
    s = np.array([[0.0, 0.1], [0.0, 0.9], [0.0, 0.8], [0.0, 0.7]])
    d = metrics.auc_detail(s, y, names=["x", "x"])
    assert d["excluded"] == ["x"] and d["labels_used"] == 1 and d["mean"] == pytest.approx(1.0)
