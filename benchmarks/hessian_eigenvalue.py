"""Top Hessian eigenvalue: power iteration on Hessian-vector products against the full Hessian (run by hand).

    .venv/bin/python benchmarks/hessian_eigenvalue.py

1. A tiny net (a few hundred parameters), where the full Hessian fits: torch.autograd.functional.hessian and
   eigvalsh (the straightforward way; its largest eigenvalue) against ``power_iteration`` on double-backward
   HVPs (the largest algebraic eigenvalue, shifted power iteration): agreement and time.
2. The default model of the quick study (ResNet-8, width 16, GroupNorm, ~78k parameters; its full Hessian would
   be 78k x 78k = 24 GB in float32): time of the power iteration alone, at the quick study's analysis settings
   (200 examples, relative tolerance 1e-2, at most 20 iterations) and at tighter ones.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from transferscope.analyses.flatness import _ce_batches, hessian_vector_product, power_iteration
from transferscope.config import ModelConfig
from transferscope.models import create_model


def _data(n: int, size: int, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def tiny() -> None:
    model = create_model(ModelConfig(blocks=[1], width=4, norm="groupnorm"), 1, 3, seed=0).eval()
    x, y = _data(64, 12, 3)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            k = math.prod(s)
            params[n] = flat[i : i + k].reshape(s)
            i += k
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    t0 = time.perf_counter()
    h = torch.autograd.functional.hessian(loss_of, theta).double()
    eigs = torch.linalg.eigvalsh((h + h.T) / 2)
    full = eigs.max().item()  # the top (largest algebraic) eigenvalue, which power_iteration returns
    dominant = eigs[eigs.abs().argmax()].item()
    t_full = time.perf_counter() - t0
    params = list(model.parameters())
    rows = []
    for tol in (1e-2, 1e-4, 1e-6):
        t0 = time.perf_counter()
        lam, it, ok = power_iteration(lambda v: hessian_vector_product(_ce_batches(model, x, y, 64), params, v),
                                      theta.numel(), iters=2000, tol=tol, seed=0)
        rows.append((tol, lam, it, ok, time.perf_counter() - t0))
    print(f"tiny net: {theta.numel()} parameters, 64 examples; Hessian spectrum [{eigs.min().item():.5f}, {full:.5f}], "
          f"largest magnitude {dominant:.5f}")
    print(f"{'method':<34} {'eigenvalue':>12} {'rel. error':>10} {'iters':>6} {'seconds':>8}")
    print(f"{'full Hessian + eigvalsh':<34} {full:>12.6f} {0:>10.1e} {'-':>6} {t_full:>8.3f}")
    for tol, lam, it, ok, sec in rows:
        name = f"power iteration, tol {tol:g}" + ("" if ok else " (no conv.)")
        print(f"{name:<34} {lam:>12.6f} {abs(lam - full) / abs(full):>10.1e} {it:>6} {sec:>8.3f}")


def default_model() -> None:
    model = create_model(ModelConfig(blocks=[1, 1, 1], width=16, norm="groupnorm"), 1, 10, seed=0).eval()
    n_params = sum(p.numel() for p in model.parameters())
    params = list(model.parameters())
    print(f"\ndefault model: ResNet-8 width 16, {n_params} parameters (full Hessian: {n_params**2 * 4 / 2**30:.0f} GiB)")
    print(f"{'examples':>8} {'tol':>6} {'eigenvalue':>12} {'iters':>6} {'converged':>9} {'seconds':>8} {'s/HVP':>7}")
    for n, tol, iters in ((200, 1e-2, 20), (200, 1e-3, 100), (1000, 1e-3, 100)):
        x, y = _data(n, 28)
        t0 = time.perf_counter()
        batches = _ce_batches(model, x, y, 500)
        lam, it, ok = power_iteration(lambda v, b=batches: hessian_vector_product(b, params, v),
                                      n_params, iters=iters, tol=tol, seed=0)
        sec = time.perf_counter() - t0
        print(f"{n:>8} {tol:>6g} {lam:>12.5f} {it:>6} {str(ok):>9} {sec:>8.2f} {sec / it:>7.3f}")


if __name__ == "__main__":
    torch.manual_seed(0)
    tiny()
    default_model()
