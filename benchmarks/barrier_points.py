"""Evaluating N interpolation points: one load_state_dict-and-evaluate per point, the per-point working copy
that ``interpolate`` uses by default, and the batched torch.func/vmap pass (run by hand).

    .venv/bin/python benchmarks/barrier_points.py [--points 11] [--n 500]

Two models of the quick study's architecture (trained briefly on Fashion-MNIST so that they differ) are
interpolated on n test images; the table gives seconds and the ratio to the load_state_dict loop, and checks
that all three give the same losses.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from transferscope.analyses.barrier import interpolate
from transferscope.config import DataConfig, DomainConfig, TrainConfig, load_config
from transferscope.data import load_domain
from transferscope.models import create_model
from transferscope.train import evaluate, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=11)
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    cfg = load_config("quick")
    d = load_domain(DomainConfig("fashion-mnist", n_per_class=50, n_val_per_class=1, n_test_per_class=a.n // 10),
                    DataConfig(image_size=cfg.data.image_size))
    models = []
    for seed in (0, 1):
        m = create_model(cfg.model, 1, 10, seed=seed)
        train(m, d, TrainConfig(epochs=2, batch_size=32, lr=0.05, speed_epochs=1), seed=seed)
        models.append(m)
    ma, mb = models
    sa, sb = ma.state_dict(), mb.state_dict()

    t0 = time.perf_counter()
    work = create_model(cfg.model, 1, 10, seed=0)
    ref = []
    for lam in np.linspace(0, 1, a.points):
        work.load_state_dict({k: torch.lerp(sa[k], sb[k], float(lam)) for k in sa})
        ref.append(evaluate(work, d.test)[0])
    t_loop = time.perf_counter() - t0

    t0 = time.perf_counter()
    per_point = interpolate(ma, mb, d.test, points=a.points)
    t_pp = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = interpolate(ma, mb, d.test, points=a.points, batched=True)  # any input layout (tests/test_barrier.py)
    t_b = time.perf_counter() - t0
    assert np.allclose(batched.loss, ref, rtol=1e-4)
    assert np.allclose(per_point.loss, ref, rtol=1e-5)
    print(f"{a.points} interpolation points, {len(d.test)} test images, {torch.get_num_threads()} threads; "
          f"barrier (error) {per_point.barrier_error:.3f}")
    print(f"{'method':<40} {'seconds':>8} {'vs load_state_dict':>19}")
    for name, t in (("load_state_dict + evaluate per point", t_loop), ("interpolate (per-point working copy)", t_pp),
                    ("interpolate(batched=True): vmap", t_b)):
        print(f"{name:<40} {t:>8.2f} {t_loop / t:>18.2f}x")


if __name__ == "__main__":
    main()
