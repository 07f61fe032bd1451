"""The trainer and ``evaluate`` take every loss from :func:`transferscope.task.loss` (issue 20). For single-label
targets that one path must be bitwise the plain cross-entropy the trainer called before: the reference here is a
hand-written loop of the former kind (``F.cross_entropy(logits, yb)`` under autocast, with the trainer's data
order, optimiser and memory format), and weights and losses are compared with ``torch.equal``."""

import copy

import pytest
import torch
import torch.nn.functional as F

from transferscope.config import DataConfig, DomainConfig, ModelConfig, TrainConfig
from transferscope.data import load_domain
from transferscope.models import create_model, to_input
from transferscope.train import choose_memory_format, evaluate, train

from .conftest import make_imagefolder

# constant rate, no warm-up, no clipping: the schedule's factor is exactly 1, so the reference needs no scheduler
CFG = TrainConfig(epochs=2, batch_size=8, lr=0.05, schedule="constant", speed_epochs=1)
MODEL = ModelConfig(blocks=[1, 1], width=4)


@pytest.fixture
def domain(tmp_path):
    root = make_imagefolder(tmp_path / "d", n_classes=3, per_class=20, size=16)
    return load_domain(DomainConfig("imagefolder", path=str(root), n_val_per_class=4, n_test_per_class=6),
                       DataConfig(image_size=16))


def _reference(model, data, cfg: TrainConfig, seed: int, precision: str) -> list[torch.Tensor]:
    """The former loop, step by step: returns the step losses; trains ``model`` in place."""
    fmt = choose_memory_format(model)
    model.to(memory_format=fmt)
    model.train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, momentum=cfg.momentum, foreach=True)
    g = torch.Generator(device="cpu").manual_seed(seed)
    x, y = data.train.x, data.train.y
    n = len(x)
    losses = []
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=g, device="cpu")
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb, yb = to_input(x[idx]).contiguous(memory_format=fmt), y[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
    model.to(memory_format=torch.contiguous_format)
    return losses


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_single_label_training_is_bitwise_the_plain_cross_entropy(domain, precision):
    model = create_model(MODEL, 1, domain.num_classes, seed=0)
    ref = copy.deepcopy(model)
    result = train(model, domain, CFG, seed=3, precision=precision)
    losses = _reference(ref, domain, CFG, seed=3, precision=precision)
    assert result.history["step_loss"] == torch.stack(losses).tolist()
    got, want = model.state_dict(), ref.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in got), [k for k in got if not torch.equal(got[k], want[k])]


def test_single_label_evaluation_is_bitwise_the_plain_cross_entropy(domain):
    model = create_model(MODEL, 1, domain.num_classes, seed=1)
    loss, acc, logits = evaluate(model, domain.test, batch_size=4)
    model.eval()
    fmt = choose_memory_format(model)
    with torch.no_grad():
        out = torch.cat([model(to_input(domain.test.x[i : i + 4]).contiguous(memory_format=fmt)).float()
                         for i in range(0, len(domain.test), 4)])
    y = domain.test.y
    assert loss == F.cross_entropy(out, y).item()
    assert acc == (out.argmax(1) == y).float().mean().item()
    assert torch.equal(torch.from_numpy(logits), out)
