"""Does training the seeds of one cell together pay on this machine? K models of the quick study's ResNet, one
optimiser step each on its own batch of 16 (the fine-tuning and from-scratch batch), four ways:

- ``separate``: K models one after another (what the study does: one run per seed);
- ``vmap``: the K models' parameters stacked (``torch.func.stack_module_state``) and one step of all of them with
  ``vmap(grad(functional_call))`` (convolutions of stacked weights become one grouped convolution);
- ``grouped``: only the convolutions (fwd + bwd), K convolutions against one grouped convolution of K groups, at
  the three stages' shapes;
- ``one batch``: one model on the K batches at once (batch 16 K): the most any stacking could reach, as the work
  of one large batch.

Run by hand (never part of the tests):

    .venv/bin/python benchmarks/seeds_together.py [--k 8] [--threads 1] [--repeats 3]

Prints milliseconds per model-step (less is better). Stacking pays only where a step is dominated by per-call
overhead; on a CPU where the convolutions already run near the machine's matrix-multiply rate, it does not.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from transferscope.models.resnet import ResNet


def best_ms(fn, n: int, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=8, help="models (seeds) trained together")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    k, b = args.k, 16
    models = [ResNet(1, 10, (1, 1, 1), 16, "groupnorm", torch.Generator().manual_seed(s)) for s in range(k)]
    x, y = torch.randn(k, b, 1, 28, 28), torch.randint(0, 10, (k, b))
    opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, foreach=True) for m in models]

    def separate() -> None:
        for m, o, xi, yi in zip(models, opts, x, y, strict=True):
            loss = F.cross_entropy(m(xi), yi)
            o.zero_grad()
            loss.backward()
            o.step()

    params, buffers = stack_module_state(models)
    params = {n: p.detach().clone() for n, p in params.items()}
    momentum = {n: torch.zeros_like(p) for n, p in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    step = vmap(grad_and_value(lambda p, bu, xi, yi: F.cross_entropy(functional_call(base, (p, bu), (xi,)), yi)))

    def stacked() -> None:
        grads, _ = step(params, buffers, x, y)
        for n, p in params.items():
            momentum[n].mul_(0.9).add_(grads[n])
            p.sub_(0.01 * momentum[n])

    big, big_opt = models[0], opts[0]
    xb, yb = x.reshape(k * b, 1, 28, 28), y.reshape(-1)

    def one_batch() -> None:
        loss = F.cross_entropy(big(xb), yb)
        big_opt.zero_grad()
        loss.backward()
        big_opt.step()

    rows = [(f"separate ({k} models, batch {b})", best_ms(separate, args.steps, args.repeats) / k),
            (f"vmap over {k} stacked models", best_ms(stacked, args.steps, args.repeats) / k),
            (f"one model, batch {k * b}", best_ms(one_batch, args.steps, args.repeats) / k)]
    for c, h in ((16, 28), (32, 14), (64, 7)):
        xs = [torch.randn(b, c, h, h, requires_grad=True) for _ in range(k)]
        ws = [torch.randn(c, c, 3, 3, requires_grad=True) for _ in range(k)]
        xg = torch.randn(b, k * c, h, h, requires_grad=True)
        wg = torch.randn(k * c, c, 3, 3, requires_grad=True)

        def convs(xs=xs, ws=ws) -> None:
            for xi, wi in zip(xs, ws, strict=True):
                F.conv2d(xi, wi, padding=1).sum().backward()

        def grouped(xg=xg, wg=wg) -> None:
            F.conv2d(xg, wg, padding=1, groups=k).sum().backward()

        rows.append((f"  conv {c}ch {h}x{h}: {k} separate", best_ms(convs, args.steps, args.repeats) / k))
        rows.append((f"  conv {c}ch {h}x{h}: one grouped ({k} groups)", best_ms(grouped, args.steps, args.repeats) / k))
    width = max(len(r) for r, _ in rows)
    print(f"{'':{width}} | ms per model-step ({args.threads} thread{'s' if args.threads > 1 else ''})")
    for name, ms in rows:
        print(f"{name:{width}} | {ms:8.2f}")


if __name__ == "__main__":
    main()
