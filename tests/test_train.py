import numpy as np
import pytest
import torch

from transferscope.config import DataConfig, DomainConfig, ModelConfig, TrainConfig
from transferscope.data import load_domain
from transferscope.models import create_model, to_input
from transferscope.train import (
    TrainingDiverged,
    choose_memory_format,
    evaluate,
    optimisation_speed,
    relative_deviation,
    train,
)

from .conftest import make_imagefolder


@pytest.fixture
def domain(tmp_path):
    root = make_imagefolder(tmp_path / "d", n_classes=3, per_class=30, size=16)
    return load_domain(DomainConfig("imagefolder", path=str(root), n_val_per_class=4, n_test_per_class=6),
                       DataConfig(image_size=16))


CFG = TrainConfig(epochs=3, batch_size=8, lr=0.05, speed_epochs=1)
MODEL = ModelConfig(blocks=[1, 1], width=4)


def _run(domain, seed, init_seed=0, cfg=CFG):
    m = create_model(MODEL, 1, domain.num_classes, seed=init_seed)
    return m, train(m, domain, cfg, seed=seed, checkpoint_steps=[0, 3])


def test_same_seed_bitwise_identical(domain):
    m1, r1 = _run(domain, seed=0)
    m2, r2 = _run(domain, seed=0)
    m3, _ = _run(domain, seed=1)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert r1.history["step_loss"] == r2.history["step_loss"]
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_records_and_learns(domain):
    m, r = _run(domain, seed=0, cfg=TrainConfig(epochs=6, batch_size=8, lr=0.05, speed_epochs=2))
    spe = r.steps_per_epoch
    assert spe == -(-len(domain.train) // 8)
    assert len(r.history["step_loss"]) == 6 * spe
    assert r.history["epoch"] == list(range(7))  # epoch 0 = before training
    assert r.metrics["test_acc"] == r.history["test_acc"][-1]
    assert r.test_logits.shape == (len(domain.test), 3)
    assert np.isclose((r.test_pred == r.test_labels).mean(), r.metrics["test_acc"])
    assert r.metrics["test_acc"] > 0.6  # the pattern is easy; chance is 1/3
    assert set(r.checkpoints) == {0, 3}
    assert m.training  # left in train mode, as it was given
    # the test split is evaluated once, at the end (never used to choose anything) unless asked per epoch
    assert r.history["test_epoch"] == [6] and len(r.history["val_acc"]) == 7


def test_test_curve_on_request_changes_nothing_else(domain):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05)
    m1, r1 = _run(domain, seed=0, cfg=cfg)
    m2, r2 = _run(domain, seed=0, cfg=TrainConfig(epochs=3, batch_size=8, lr=0.05, test_every_epoch=True))
    assert r2.history["test_epoch"] == [0, 1, 2, 3] and r2.history["test_acc"][-1] == r1.metrics["test_acc"]
    assert r1.history["step_loss"] == r2.history["step_loss"]
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())


def test_eval_every_thins_the_evaluations_and_changes_nothing_else(domain):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05)
    m1, r1 = _run(domain, seed=0, cfg=cfg)
    m2, r2 = _run(domain, seed=0, cfg=TrainConfig(epochs=3, batch_size=8, lr=0.05, eval_every=2))
    assert r1.history["epoch"] == [0, 1, 2, 3] and r2.history["epoch"] == [0, 2, 3]
    assert len(r2.history["deviation"]) == len(r2.history["val_acc"]) == 3
    assert r1.history["step_loss"] == r2.history["step_loss"]
    assert r1.metrics["val_acc"] == r2.metrics["val_acc"] and r1.metrics["test_acc"] == r2.metrics["test_acc"]
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())


def test_checkpoint_zero_is_the_initialisation(domain):
    m = create_model(MODEL, 1, 3, seed=0)
    init = {k: v.clone() for k, v in m.state_dict().items()}
    r = train(m, domain, CFG, seed=0, checkpoint_steps=[0])
    assert all(torch.equal(init[k], r.checkpoints[0][k]) for k in init)


def test_divergence_is_detected(domain):
    m = create_model(ModelConfig(blocks=[1], width=4, norm="batchnorm"), 1, 3, seed=0)
    with pytest.raises(TrainingDiverged, match=r"training loss is (nan|inf)"):
        train(m, domain, TrainConfig(epochs=3, batch_size=8, lr=1e12, momentum=0.9), seed=0)


def test_optimisation_speed_by_hand():
    acc = [0.0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8]  # 2 steps per epoch
    s = optimisation_speed(acc, steps_per_epoch=2, k=2, fraction=0.9)
    assert s["speed_mean_acc_k"] == pytest.approx(0.3)
    # running means over 2 steps: .1 .3 .5 .7 .8 .8 .8 ; final .8; first >= .72 is .8 at i=4 -> step 6
    assert s["speed_steps_to_frac"] == 6


def test_relative_deviation():
    m = create_model(ModelConfig(blocks=[1], width=4, norm="batchnorm"), 1, 3, seed=0)
    init = {k: v.detach().clone() for k, v in m.named_parameters()}
    assert all(v == 0 for v in relative_deviation(m, init).values())
    with torch.no_grad():
        m.head.weight.mul_(3.0)
    dev = relative_deviation(m, init)
    w, b = init["head.weight"], init["head.bias"]
    expected = (2 * w).norm() / torch.cat([w.flatten(), b.flatten()]).norm()
    assert dev["head"] == pytest.approx(expected.item(), rel=1e-5)


def test_final_training_accuracy_is_the_final_model_on_the_training_split(domain):
    """train_acc_final / train_loss_final: the final weights on every training image, in eval mode (not the running
    mean over the last epoch's batches, which is kept as train_acc_last_epoch)."""
    m, r = _run(domain, seed=0, cfg=TrainConfig(epochs=2, batch_size=8, lr=0.05, speed_epochs=1))
    m.eval()
    with torch.no_grad():
        logits = torch.cat([m(to_input(domain.train.x[i : i + 7])) for i in range(0, len(domain.train), 7)])
    acc = (logits.argmax(1) == domain.train.y).double().mean().item()
    loss = torch.nn.functional.cross_entropy(logits.double(), domain.train.y).item()
    assert r.metrics["train_acc_final"] == pytest.approx(acc, abs=1e-6)
    assert r.metrics["train_loss_final"] == pytest.approx(loss, rel=1e-4)
    assert r.metrics["num_classes"] == 3
    assert "train_acc_last_epoch" in r.metrics


# ---------------------------------------------------------------- devices, precision, memory format


def test_no_tensor_is_made_on_a_default_device(domain):
    """train and evaluate make every tensor on the model's device (or, for the data order and staging, explicitly on
    the CPU): with the default device set to meta, a tensor made without a device would be a meta tensor, and the
    run would fail (indexing CPU data with a meta order, reading a meta figure)."""
    m_ref, r_ref = _run(domain, seed=0)
    m = create_model(MODEL, 1, domain.num_classes, seed=0)
    torch.set_default_device("meta")
    try:
        r = train(m, domain, CFG, seed=0, checkpoint_steps=[0, 3])
        loss, acc, logits = evaluate(m, domain.test)
    finally:
        torch.set_default_device(None)
    assert r.history["step_loss"] == r_ref.history["step_loss"]
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in m_ref.state_dict().items())
    assert all(v.device.type == "cpu" for ck in r.checkpoints.values() for v in ck.values())
    assert acc == r.metrics["test_acc"] and np.array_equal(logits, r.test_logits)


def test_a_model_on_several_devices_is_refused(domain):
    m = create_model(MODEL, 1, domain.num_classes, seed=0)
    m.head.to("meta")
    with pytest.raises(ValueError, match="cpu, meta.*one device"):
        train(m, domain, CFG, seed=0)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_lower_precision_is_reproducible_and_learns(domain, precision):
    """bf16 and fp16 (autocast; fp16 with a gradient scaler) on the CPU: bitwise the same twice, and it learns."""
    cfg = TrainConfig(epochs=6, batch_size=8, lr=0.05, speed_epochs=2, grad_clip=1.0)
    runs = []
    for _ in range(2):
        m = create_model(MODEL, 1, domain.num_classes, seed=0)
        runs.append((m, train(m, domain, cfg, seed=0, precision=precision)))
    (m1, r1), (m2, r2) = runs
    assert r1.history["step_loss"] == r2.history["step_loss"]
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())
    assert all(v.dtype == torch.float32 for v in m1.state_dict().values())  # weights stay float32
    assert r1.test_logits.dtype == np.float32
    assert r1.metrics["test_acc"] > 0.6
    _, fp32 = _run(domain, seed=0, cfg=cfg)
    assert r1.history["step_loss"] != fp32.history["step_loss"]  # autocast was on


class _Loud(torch.nn.Module):
    """A linear classifier on inputs scaled by 100: its gradients overflow float16 at the grad scaler's first scale
    (65536), so the scaler skips the first steps."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(n_in, n_out)
        g = torch.Generator().manual_seed(0)
        torch.nn.init.normal_(self.fc.weight, std=0.01, generator=g)
        torch.nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(x.flatten(1) * 100)


def test_fp16_survives_skipped_steps(domain):
    """Steps skipped by the grad scaler leave the optimiser as it was. (PyTorch 2.13's fused SGD left its momentum
    buffer uninitialised after a skipped first step, on the CPU as on CUDA: the loss went NaN a few steps later.)"""
    m = _Loud(16 * 16, domain.num_classes)
    r = train(m, domain, TrainConfig(epochs=3, batch_size=8, lr=0.05, speed_epochs=1), seed=0, precision="fp16")
    assert np.isfinite(r.history["step_loss"]).all()
    assert r.metrics["test_acc"] > 0.5


def test_unknown_or_unsupported_precision_is_refused(domain):
    m = create_model(MODEL, 1, domain.num_classes, seed=0)
    with pytest.raises(ValueError, match="precision 'fp8': expected one of fp32, bf16, fp16"):
        train(m, domain, CFG, seed=0, precision="fp8")
    with pytest.raises(ValueError, match="precision 'fp8'"):
        evaluate(m, domain.test, precision="fp8")


def test_memory_format_is_the_trainers_choice_unless_given(domain):
    gn = create_model(ModelConfig(blocks=[1, 1], width=8, norm="groupnorm"), 1, 3, seed=0)
    bn = create_model(ModelConfig(blocks=[1, 1], width=8, norm="batchnorm"), 1, 3, seed=0)
    assert choose_memory_format(gn) == torch.contiguous_format  # channels-last GroupNorm is slow (CPU) or absent (CUDA)
    assert choose_memory_format(bn) == torch.channels_last
    assert choose_memory_format(create_model(MODEL, 1, 3, seed=0)) == torch.contiguous_format  # 4 channels
    assert choose_memory_format(_Loud(4, 3)) == torch.contiguous_format  # no convolution
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, speed_epochs=1)
    m1 = create_model(ModelConfig(blocks=[1, 1], width=8, norm="groupnorm"), 1, 3, seed=0)
    m2 = create_model(ModelConfig(blocks=[1, 1], width=8, norm="groupnorm"), 1, 3, seed=0)
    r1 = train(m1, domain, cfg, seed=0)
    r2 = train(m2, domain, cfg, seed=0, memory_format=torch.channels_last)
    assert r1.history["step_loss"] != r2.history["step_loss"]  # other kernels: other rounding
    np.testing.assert_allclose(r1.history["step_loss"], r2.history["step_loss"], rtol=1e-2)
    assert all(p.is_contiguous() for p in m2.parameters())  # returned contiguous


class _NanAt(torch.nn.Module):
    """A model whose ``k``-th training forward pass returns NaN logits."""

    def __init__(self, net: torch.nn.Module, k: int) -> None:
        super().__init__()
        self.net, self.k, self.calls = net, k, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls == self.k + 1:
                out = out * float("nan")
        return out


def test_divergence_names_the_first_step(domain):
    """The losses are looked at every few dozen steps (no host wait per step), yet the message names the step at
    which the loss first went NaN."""
    m = _NanAt(create_model(MODEL, 1, 3, seed=0), k=5)
    with pytest.raises(TrainingDiverged, match=r"training loss is nan at step 5 \(epoch 1,"):
        train(m, domain, CFG, seed=0)
    m = _NanAt(create_model(MODEL, 1, 3, seed=0), k=13)  # 8 steps per epoch: step 13 is in epoch 2
    with pytest.raises(TrainingDiverged, match=r"at step 13 \(epoch 2,"):
        train(m, domain, CFG, seed=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_trains_on_cuda(domain, precision):
    """On CUDA: every step there (batches through pinned memory), the result read back, and it learns."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    m = create_model(MODEL, 1, domain.num_classes, seed=0).to("cuda")
    r = train(m, domain, TrainConfig(epochs=6, batch_size=8, lr=0.05, speed_epochs=2), seed=0, precision=precision)
    assert all(p.device.type == "cuda" for p in m.parameters())
    assert r.metrics["test_acc"] > 0.6 and np.isfinite(r.history["step_loss"]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_survives_skipped_steps_on_cuda(domain):
    m = _Loud(16 * 16, domain.num_classes).to("cuda")
    r = train(m, domain, TrainConfig(epochs=3, batch_size=8, lr=0.05, speed_epochs=1), seed=0, precision="fp16")
    assert np.isfinite(r.history["step_loss"]).all() and r.metrics["test_acc"] > 0.5


def test_listening_to_progress_changes_nothing_and_hears_the_epochs_figures(domain):
    """The per-epoch figures handed to ``progress`` (live logs) are read off the run: the same weights and history
    with and without a listener, and each figure equals its history counterpart."""
    seen = []
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05, speed_epochs=1, test_every_epoch=True)
    m1 = create_model(MODEL, 1, domain.num_classes, seed=0)
    r1 = train(m1, domain, cfg, seed=0, progress=lambda e, f: seen.append((e, f)))
    m2 = create_model(MODEL, 1, domain.num_classes, seed=0)
    r2 = train(m2, domain, cfg, seed=0)
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())
    assert r1.history == r2.history and r1.metrics["metric"] == "acc"
    assert {k for k in r1.metrics if k not in ("seconds", "train_seconds", "images_per_s")} == {
        "test_acc", "test_loss", "val_acc", "val_loss", "train_acc_final", "train_loss_final", "train_acc_last_epoch",
        "num_classes", "speed_mean_acc_k", "speed_steps_to_frac", "speed_k", "speed_fraction", "steps", "metric"}
    h, spe = r1.history, r1.steps_per_epoch
    assert [e for e, _ in seen] == [0, 1, 2, 3] and "train_loss" not in seen[0][1]
    for e, f in seen[1:]:
        assert f["train_loss"] == float(np.mean(h["step_loss"][(e - 1) * spe:e * spe]))
        assert f["train_acc"] == float(np.mean(h["step_acc"][(e - 1) * spe:e * spe]))
        assert (f["val_acc"], f["val_loss"], f["test_acc"], f["test_loss"], f["lr"]) == (
            h["val_acc"][e], h["val_loss"][e], h["test_acc"][e], h["test_loss"][e], h["lr"][e])
