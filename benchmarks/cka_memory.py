"""Streamed linear CKA against the direct one on features of n = 10,000 and p = 4,096 (run by hand).

    .venv/bin/python benchmarks/cka_memory.py [--n 10000] [--p 4096]

The streamed estimator keeps p x p sums (memory independent of n); the direct one holds both feature
matrices and the n x n Gram matrices. Each runs in a fresh process so that its peak resident memory
(ru_maxrss, minus the process's baseline) is its own. Prints time, peak memory and the two values.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time


def _features(n: int, p: int, chunk: int, i: int):
    import torch

    g = torch.Generator().manual_seed(i)
    x = torch.randn(chunk, p, generator=g)
    y = torch.tanh(x[:, : p // 2].repeat(1, 2)) + 0.5 * torch.randn(chunk, p, generator=g)
    return x, y


def _streamed(n: int, p: int, chunk: int, q) -> None:
    import torch

    from transferscope.analyses.cka import LinearCKAAccumulator

    torch.zeros(1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    acc = LinearCKAAccumulator(batch_size=0)
    for i in range(n // chunk):
        acc.update(*_features(n, p, chunk, i))
    v = acc.compute()["full"].item()
    q.put(("streamed (p x p sums)", time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, v))


def _direct(n: int, p: int, chunk: int, q) -> None:
    import torch

    torch.zeros(1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    parts = [_features(n, p, chunk, i) for i in range(n // chunk)]
    x = torch.cat([a for a, _ in parts]).double()
    y = torch.cat([b for _, b in parts]).double()
    del parts
    # the textbook formula: centred Gram matrices, HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
    x -= x.mean(0)
    y -= y.mean(0)
    k, l = x @ x.T, y @ y.T
    v = ((k * l).sum() / (k.norm() * l.norm())).item()
    q.put(("direct (n x n Gram)", time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, v))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--p", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=500)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for fn in (_streamed, _direct):
        q = ctx.Queue()
        proc = ctx.Process(target=fn, args=(a.n, a.p, a.chunk, q))
        proc.start()
        rows.append(q.get())
        proc.join()
    print(f"linear CKA, n = {a.n}, p = q = {a.p}, features made in chunks of {a.chunk}")
    print(f"{'estimator':<24} {'seconds':>8} {'peak MiB':>9} {'CKA':>10}")
    for name, sec, kib, v in rows:
        print(f"{name:<24} {sec:>8.1f} {kib / 1024:>9.0f} {v:>10.6f}")
    print(f"ratio direct/streamed: time {rows[1][1] / rows[0][1]:.2f}x, memory {rows[1][2] / max(rows[0][2], 1):.2f}x")


if __name__ == "__main__":
    main()
