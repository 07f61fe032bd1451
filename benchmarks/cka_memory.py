"""Streamed linear CKA against the direct one on features of n = 10,000 and p = 4,096 (run by hand).

    .venv/bin/python benchmarks/cka_memory.py [--n 10000] [--p 4096]

The library's accumulator (full-data estimate) holds rows while they are smaller than the p x p sums and
streams the sums after, so its memory stops growing with n; it runs at n and 2n to show that. The minibatch
estimator (m = 256) keeps O(m^2 + m p). The direct one holds both feature matrices and the n x n Gram
matrices. Each runs in a fresh process so that its peak resident memory (ru_maxrss, minus the process's
baseline) is its own. Prints time, peak memory and the values.
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


def _streamed(n: int, p: int, chunk: int, q, minibatch: bool = False) -> None:
    import torch

    from transferscope.analyses.cka import LinearCKAAccumulator

    torch.zeros(1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    acc = LinearCKAAccumulator(batch_size=256 if minibatch else 0, full=not minibatch)
    for i in range(n // chunk):
        acc.update(*_features(n, p, chunk, i))
    v = acc.compute()["minibatch" if minibatch else "full"].item()
    name = "minibatch m=256" if minibatch else ("accumulator, p x p sums" if acc.streaming else "accumulator, rows held")
    q.put((f"{name}, n={n}", time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, v))


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
    q.put((f"direct (n x n Gram), n={n}", time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, v))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--p", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=500)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for fn, n, extra in ((_streamed, a.n, ()), (_streamed, 2 * a.n, ()), (_streamed, a.n, (True,)), (_direct, a.n, ())):
        q = ctx.Queue()
        proc = ctx.Process(target=fn, args=(n, a.p, a.chunk, q, *extra))
        proc.start()
        rows.append(q.get())
        proc.join()
    print(f"linear CKA, n = {a.n}, p = q = {a.p}, features made in chunks of {a.chunk}")
    print(f"{'estimator':<40} {'seconds':>8} {'peak MiB':>9} {'CKA':>10}")
    for name, sec, kib, v in rows:
        print(f"{name:<40} {sec:>8.1f} {kib / 1024:>9.0f} {v:>10.6f}")
    print(f"at n={a.n}, direct/accumulator: time {rows[3][1] / rows[0][1]:.2f}x, memory {rows[3][2] / max(rows[0][2], 1):.2f}x; "
          f"accumulator memory at 2n / at n: {rows[1][2] / max(rows[0][2], 1):.2f}x")


if __name__ == "__main__":
    main()
