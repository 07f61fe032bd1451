"""The block-shuffle transform of Neyshabur et al. (2020), Section 3.1."""

from __future__ import annotations

import torch

__all__ = ["block_permutation", "block_shuffle", "valid_block_sizes"]


def valid_block_sizes(height: int, width: int) -> list[int]:
    """Block sizes b that divide both image sides."""
    return [b for b in range(1, min(height, width) + 1) if height % b == 0 and width % b == 0]


def _check(b: int, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 4:
        raise ValueError(f"block_shuffle: expected images of shape (N, C, H, W), got {tuple(shape)}")
    _, c, h, w = shape
    if not isinstance(b, int) or b < 1 or h % b or w % b:
        raise ValueError(
            f"block size {b!r} does not divide the image size {h}x{w}; valid block sizes are "
            + ", ".join(map(str, valid_block_sizes(h, w)))
        )
    return c, h, w


def block_permutation(block_size: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The one permutation used for a whole domain at this block size.

    For b = 1 it permutes all C*H*W values (channels included, as the official code does); for b > 1
    it permutes the (H/b)*(W/b) blocks, each block keeping its channels.
    """
    c, h, w = _check(block_size, shape)
    n = c * h * w if block_size == 1 else (h // block_size) * (w // block_size)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)


def block_shuffle(x: torch.Tensor, block_size: int, seed: int) -> torch.Tensor:
    """Split each image into non-overlapping b x b blocks and permute them with ONE permutation.

    Args:
        x: images (N, C, H, W), any dtype.
        block_size: b; must divide H and W. b = H (= W) returns the images unchanged.
        seed: seed of the permutation; the same seed gives the same permutation for every call, so
            train, val and test of a domain are shuffled alike.

    Returns:
        A new tensor (N, C, H, W).
    """
    c, h, w = _check(block_size, tuple(x.shape))
    perm = block_permutation(block_size, tuple(x.shape), seed)
    n = x.shape[0]
    if block_size == 1:
        return x.reshape(n, -1)[:, perm].reshape(x.shape)
    b = block_size
    gh, gw = h // b, w // b
    blocks = x.reshape(n, c, gh, b, gw, b).permute(0, 2, 4, 1, 3, 5).reshape(n, gh * gw, c, b, b)
    blocks = blocks[:, perm]
    return blocks.reshape(n, gh, gw, c, b, b).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w).contiguous()
