import pytest
import torch

from transferscope.data import block_permutation, block_shuffle, valid_block_sizes


def _images(n=5, c=3, h=12, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("b", [2, 3, 4, 6])
def test_every_block_moves_intact(b):
    x = _images()
    y = block_shuffle(x, b, seed=7)
    g = 12 // b
    perm = block_permutation(b, tuple(x.shape), seed=7)
    # Reference written independently: block at output position j is the input block perm[j].
    for j in range(g * g):
        src = int(perm[j])
        oi, oj = divmod(j, g)
        si, sj = divmod(src, g)
        assert torch.equal(y[:, :, oi * b : (oi + 1) * b, oj * b : (oj + 1) * b],
                           x[:, :, si * b : (si + 1) * b, sj * b : (sj + 1) * b])
    assert not torch.equal(x, y)


@pytest.mark.parametrize("b", [1, 2, 4, 12])
def test_values_kept_as_a_multiset(b):
    x = _images()
    y = block_shuffle(x, b, seed=3)
    for i in range(len(x)):
        assert torch.equal(torch.sort(x[i].flatten()).values, torch.sort(y[i].flatten()).values)


def test_full_size_block_is_identity():
    x = _images(h=12, w=12)
    assert torch.equal(block_shuffle(x, 12, seed=5), x)


def test_one_permutation_for_every_image_and_split():
    x = _images(n=8)
    a = block_shuffle(x, 3, seed=11)
    b = torch.cat([block_shuffle(x[:3], 3, seed=11), block_shuffle(x[3:], 3, seed=11)])
    assert torch.equal(a, b)
    assert not torch.equal(a, block_shuffle(x, 3, seed=12))


def test_b1_permutes_channels_too():
    # With b = 1 values move across channels (as the official code does): some output pixel's channel
    # vector is not any input pixel's channel vector at the same... any position.
    x = torch.arange(3 * 4 * 4).reshape(1, 3, 4, 4)
    y = block_shuffle(x, 1, seed=0)
    in_vectors = {tuple(x[0, :, i, j].tolist()) for i in range(4) for j in range(4)}
    out_vectors = {tuple(y[0, :, i, j].tolist()) for i in range(4) for j in range(4)}
    assert out_vectors != in_vectors


def test_b2_keeps_channels_together():
    x = torch.arange(3 * 4 * 4).reshape(1, 3, 4, 4)
    y = block_shuffle(x, 2, seed=0)
    in_vectors = {tuple(x[0, :, i, j].tolist()) for i in range(4) for j in range(4)}
    out_vectors = {tuple(y[0, :, i, j].tolist()) for i in range(4) for j in range(4)}
    assert out_vectors == in_vectors


@pytest.mark.parametrize("b", [5, 0, 13])
def test_block_that_does_not_divide_is_an_error(b):
    with pytest.raises(ValueError, match=r"does not divide the image size 12x12.*1, 2, 3, 4, 6, 12"):
        block_shuffle(_images(), b, seed=0)


def test_valid_block_sizes():
    assert valid_block_sizes(28, 28) == [1, 2, 4, 7, 14, 28]
