import pytest
import torch

from transferscope.config import ModelConfig
from transferscope.models import LayerError, ResNet, create_model, to_input


@pytest.mark.parametrize("norm", ["none", "batchnorm", "groupnorm"])
def test_forward_and_features(norm):
    m = ResNet(3, 7, blocks=[1, 2], width=8, norm=norm, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 3, 16, 16)
    names = m.layer_names()
    assert names == ["stem", "stage1.block0", "stage2.block0", "stage2.block1", "pool", "head"]
    feats = m.features(x, names)
    assert list(feats) == names
    m.eval()
    assert torch.allclose(m.features(x, ["head"])["head"], m(x), atol=1e-6)
    assert feats["pool"].shape == (4, 16) and feats["stage2.block1"].shape == (4, 16, 8, 8)


def test_unknown_layer_lists_valid_names():
    m = ResNet(1, 3, blocks=[1], width=4)
    with pytest.raises(LayerError, match=r"unknown layer 'layer4'; valid layers are stem, stage1.block0, pool, head"):
        m.features(torch.zeros(1, 1, 8, 8), ["stem", "layer4"])


def test_fixup_blocks_start_as_identity():
    m = create_model(ModelConfig(blocks=[1, 1], width=4, norm="none"), 1, 5, seed=0)
    x = torch.randn(2, 1, 8, 8)
    f = m.features(x, ["stem", "stage1.block0"])
    assert torch.allclose(f["stage1.block0"], f["stem"])  # zero last conv, relu(relu(h)) = relu(h)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d | torch.nn.GroupNorm) for mod in m.modules())


def test_default_model_keeps_no_batch_statistics():
    m = create_model(ModelConfig(), 1, 10, seed=0)
    assert not any(isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) for mod in m.modules())
    assert not list(m.buffers())


def test_reset_head_and_module_of():
    m = create_model(ModelConfig(), 1, 10, seed=0)
    m.reset_head(4)
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 4)
    modules = {m.module_of(n) for n, _ in m.named_parameters()}
    assert modules == set(m.module_names())


def test_seeded_init_is_reproducible():
    a = create_model(ModelConfig(norm="batchnorm"), 1, 10, seed=3).state_dict()
    b = create_model(ModelConfig(norm="batchnorm"), 1, 10, seed=3).state_dict()
    c = create_model(ModelConfig(norm="batchnorm"), 1, 10, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_to_input_range():
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert to_input(x).tolist() == [-1.0, 1.0]
