"""Module criticality: the brute-force (a, s) grid against the bisection search (run by hand).

    .venv/bin/python benchmarks/criticality_search.py

A model of the quick study's architecture is fine-tuned briefly from a random initialisation on
Fashion-MNIST; both searches run on the same data, alphas, noise samples and seed. Prints seconds, loss
evaluations implied, and the criticality per module of each.
"""

from __future__ import annotations

import time

import numpy as np

from transferscope.analyses.criticality import criticality_grid, module_criticality
from transferscope.config import DataConfig, DomainConfig, TrainConfig, load_config
from transferscope.data import load_domain
from transferscope.models import create_model
from transferscope.train import train


def main() -> None:
    cfg = load_config("quick")
    d = load_domain(DomainConfig("fashion-mnist", n_per_class=50, n_val_per_class=1, n_test_per_class=1),
                    DataConfig(image_size=cfg.data.image_size))
    m = create_model(cfg.model, 1, 10, seed=0)
    init = {k: v.clone() for k, v in m.state_dict().items()}
    train(m, d, TrainConfig(epochs=3, batch_size=32, lr=0.05, speed_epochs=1), seed=0)
    kw = dict(alphas=[0.0, 0.25, 0.5, 0.75, 1.0], samples=2, n_examples=100, tolerance=0.1, seed=0)
    sigmas = np.linspace(0.005, 0.5, 100)
    t0 = time.perf_counter()
    fast = module_criticality(m, init, d.train, s_max=0.5, s_tol=0.005, **kw)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid = criticality_grid(m, init, d.train, sigmas=sigmas, **kw)
    t_grid = time.perf_counter() - t0
    print(f"{len(fast.modules)} modules, 5 alphas, {kw['samples']} noise samples, {kw['n_examples']} examples")
    print(f"{'search':<34} {'seconds':>8}")
    print(f"{'grid: 5 a x 100 s':<34} {t_grid:>8.1f}")
    print(f"{'bisection on s (s_tol 0.005)':<34} {t_fast:>8.1f}   ({t_grid / t_fast:.1f}x faster)")
    print(f"{'module':<16} {'grid':>12} {'bisection':>12} {'ratio':>7}")
    for mod, g, f in zip(fast.modules, grid.criticality, fast.criticality, strict=True):
        ratio = f / g if g not in (0, float("inf")) else float("nan")
        print(f"{mod:<16} {g:>12.4g} {f:>12.4g} {ratio:>7.3f}")


if __name__ == "__main__":
    main()
