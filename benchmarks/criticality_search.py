"""Module criticality: the fast search against the fine brute-force grid (run by hand).

    .venv/bin/python benchmarks/criticality_search.py [--examples 100] [--samples 2]

A model of the quick study's architecture (ResNet-8, width 16, GroupNorm) is trained briefly from a random
initialisation on Fashion-MNIST (50 images per class, 3 epochs); theta^0 is that initialisation (as for an RI-T
model). At the quick study's analysis settings (a in {0, 0.5, 1}, 2 noise draws, 100 examples, eps = 1.1 x the
final loss, relative s_tol 0.02) it runs, on the same data and noise:

* the fast search (:func:`module_criticality`: halving then bisection, relative tolerance, bracket midpoint);
* the reference (:func:`criticality_grid` on its default fine grid, :func:`fine_sigmas`: 565 values of s,
  geometric steps of 2 % from 1e-4 to 1 plus linear steps of 0.01);
* the search as it was before (absolute tolerance 0.02 on s, the lower end of the bracket returned, s below the
  tolerance reported as infeasible), for comparison.

It prints, per module and a, the brackets of the largest feasible s, and per module the criticality of each with
the ratio to the grid and the agreement the two resolutions allow: (1 + s_tol / 2 + grid step / 2)^2.

Measured on 2 shared CPU cores (the grid is slow by design: 3 x 565 x 2 forward passes per module):

    grid: 3 a x 565 s (fine_sigmas, steps <= 2.0%)       1696.6 s
    fast: halving + bisection, relative s_tol 0.02          7.6 s  (222x faster)
    before the fix: bisection, absolute s_tol 0.02          5.5 s

    module            distance        grid        fast fast/grid      before before/grid
    stem                 0.451           0           0    1.0000           0      1.0000
    stage1.block0        0.632           0           0    1.0000           0      1.0000
    stage2.block0        0.795           0           0    1.0000           0      1.0000
    stage3.block0        1.170      219.42      221.57    1.0098      274.53      1.2512
    head                 1.198      127.38      126.59    0.9938      153.83      1.2076

The fast brackets overlap the grid's at all 15 (module, a) points; the old search's values lay below the grid's
brackets at every point where s > 0 (biased low in s, so high in criticality). (0: the module can be rewound
to its initialisation, a = 0, within eps.)
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from transferscope.analyses.criticality import _per_module, _prepare, criticality_grid, fine_sigmas, module_criticality
from transferscope.config import DataConfig, DomainConfig, TrainConfig, load_config
from transferscope.data import load_domain
from transferscope.models import create_model
from transferscope.train import train


def old_search(model, init, data, *, alphas, s_max, s_tol, modules, n_examples, samples, tolerance, seed):
    """The search before the fix, kept here only for the comparison: absolute tolerance, lower end returned."""
    ev, names, final_loss, eps = _prepare(model, init, data, modules, n_examples, samples, seed, tolerance)

    def search(m, a):
        if ev.noisy_loss(m, a, s_max) <= eps:
            return s_max, s_max
        if ev.noisy_loss(m, a, s_tol) > eps:
            return 0.0, 0.0
        lo, hi = s_tol, s_max
        while hi - lo > s_tol:
            mid = 0.5 * (lo + hi)
            if ev.noisy_loss(m, a, mid) <= eps:
                lo = mid
            else:
                hi = mid
        return lo, lo

    return _per_module(ev, names, alphas, search, (eps, final_loss, tolerance, samples, seed, "old", {}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=100)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--s-tol", type=float, default=0.02)
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_config("quick")
    d = load_domain(DomainConfig("fashion-mnist", n_per_class=50, n_val_per_class=1, n_test_per_class=1),
                    DataConfig(image_size=cfg.data.image_size))
    m = create_model(cfg.model, 1, 10, seed=0)
    init = {k: v.clone() for k, v in m.state_dict().items()}
    train(m, d, TrainConfig(epochs=3, batch_size=32, lr=0.05, speed_epochs=1), seed=0)
    kw = dict(alphas=[0.0, 0.5, 1.0], samples=a.samples, n_examples=a.examples, tolerance=0.1, seed=0)
    sig = fine_sigmas()
    t0 = time.perf_counter()
    fast = module_criticality(m, init, d.train, s_max=1.0, s_tol=a.s_tol, **kw)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    old = old_search(m, init, d.train, s_max=1.0, s_tol=a.s_tol, modules=None, **kw)
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid = criticality_grid(m, init, d.train, **kw)
    t_grid = time.perf_counter() - t0
    step = float((sig[1:] / sig[:-1]).max() - 1)
    print(f"{len(fast.modules)} modules, a in {kw['alphas']}, {kw['samples']} noise draws, {kw['n_examples']} examples, "
          f"eps = 1.1 x final loss {fast.final_loss:.4f}; torch threads {torch.get_num_threads()}")
    print(f"{'search':<50} {'seconds':>8}")
    n_a = len(kw["alphas"])
    print(f"{f'grid: {n_a} a x {len(sig)} s (fine_sigmas, steps <= {step:.1%})':<50} {t_grid:>8.1f}")
    print(f"{f'fast: halving + bisection, relative s_tol {a.s_tol}':<50} {t_fast:>8.1f}   ({t_grid / t_fast:.0f}x faster)")
    print(f"{f'before the fix: bisection, absolute s_tol {a.s_tol}':<50} {t_old:>8.1f}")
    print("\nlargest feasible s per (module, a): [lo, hi] of each search (before the fix: one value)")
    print(f"{'module':<16} {'a':>4} {'grid lo':>9} {'grid hi':>9} {'fast lo':>9} {'fast hi':>9} {'overlap':>7} "
          f"{'before':>9}")
    all_ok = True
    for i, mod in enumerate(fast.modules):
        for j, al in enumerate(fast.alphas):
            sg, wg = grid.boundary_s[i][j], grid.boundary_width[i][j]
            sf, wf = fast.boundary_s[i][j], fast.boundary_width[i][j]
            glo, ghi, flo, fhi = sg - wg / 2, sg + wg / 2, sf - wf / 2, sf + wf / 2
            ok = max(glo, flo) <= min(ghi, fhi) * (1 + 1e-9)
            all_ok &= ok
            print(f"{mod:<16} {al:>4.2f} {glo:>9.5f} {ghi:>9.5f} {flo:>9.5f} {fhi:>9.5f} {str(ok):>7} "
                  f"{old.boundary_s[i][j]:>9.5f}")
    bound = (1 + a.s_tol / 2 + step / 2) ** 2
    print(f"\ncriticality per module (agreement allowed: ratio within (1 + {a.s_tol} / 2 + {step:.3f} / 2)^2 "
          f"= {bound:.3f} either way)")
    print(f"{'module':<16} {'distance':>9} {'grid':>11} {'fast':>11} {'fast/grid':>9} {'before':>11} {'before/grid':>11}")
    for i, mod in enumerate(fast.modules):
        g, f, o = grid.criticality[i], fast.criticality[i], old.criticality[i]

        def ratio(x, g=g):
            return x / g if g not in (0.0, math.inf) else (1.0 if x == g else math.nan)

        ok = 1 / bound <= ratio(f) <= bound
        all_ok &= ok
        print(f"{mod:<16} {fast.distance[i]:>9.3f} {g:>11.5g} {f:>11.5g} {ratio(f):>9.4f} {o:>11.5g} {ratio(o):>11.4f}")
    print(f"\nfast search agrees with the fine grid at every point: {all_ok}")


if __name__ == "__main__":
    main()
