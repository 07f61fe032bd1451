"""The trainer's evaluation: its figures do not depend on how many examples go through the model at a time."""

from __future__ import annotations

import numpy as np
import torch

from transferscope.train import evaluate
from transferscope.train.evaluation import CPU_BATCH, eval_batch_size

from .conftest import trained_model


def test_the_evaluation_batch_changes_no_figure(small_domain):
    """At the CPU's batch, at 512 (the former one), and at a batch that leaves a partial last one: the same loss,
    score and logits up to the last bits of the sums (bitwise here), every example once."""
    model, _ = trained_model(small_domain, 0)
    for split in (small_domain.train, small_domain.val, small_domain.test):
        ref_loss, ref_score, ref = evaluate(model, split, 512)
        for bs in (None, 7, 1):
            loss, score, logits = evaluate(model, split, bs)
            assert logits.shape == ref.shape == (len(split), small_domain.num_classes)
            np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-5)
            assert abs(loss - ref_loss) < 1e-6 and score == ref_score
    assert eval_batch_size(torch.device("cpu")) == CPU_BATCH < len(small_domain.train)
    assert eval_batch_size(torch.device("cuda")) == 512
