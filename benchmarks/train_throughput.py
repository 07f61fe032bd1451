"""Throughput of transferscope's trainer against this machine's matrix-multiply FLOP/s and a plain PyTorch loop.

Run by hand (never part of the tests):

    .venv/bin/python benchmarks/train_throughput.py [--images 8192] [--epochs 2]

Prints a table: images/s of ``transferscope.train.train`` on the default model of the quick study (28x28 grey,
Fashion-MNIST), the FLOP/s that implies (forward + backward FLOPs counted by torch's FlopCounterMode), its share
of the measured float32 matmul FLOP/s, the same model trained by a textbook ``DataLoader`` loop (ratio), and two
trainers side by side with one thread each (what the study runner does on a CPU).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from transferscope.config import DataConfig, DomainConfig, load_config
from transferscope.data import load_domain
from transferscope.models import create_model, to_input
from transferscope.train import train


def matmul_flops(threads: int, n: int = 2048, seconds: float = 2.0) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def flops_per_image(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    x = torch.randn(16, *shape)
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), torch.zeros(16, dtype=torch.long)).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / 16


def _domain(n: int):
    cfg = load_config("quick")
    data = load_domain(DomainConfig("fashion-mnist", n_val_per_class=1, n_test_per_class=1),
                       DataConfig(image_size=cfg.data.image_size))
    # keep eval negligible: the trainer's figure is its step loop; val/test of 1 image per class
    from dataclasses import replace

    tr = data.train
    data = replace(data, train=replace(tr, x=tr.x[:n], y=tr.y[:n], index=tr.index[:n]))
    return cfg, data


def trainer_ips(n: int, epochs: int, threads: int) -> float:
    torch.set_num_threads(threads)
    cfg, data = _domain(n)
    model = create_model(cfg.model, cfg.data.channels, 10, seed=0)
    tc = replace_cfg(cfg.pretrain, epochs)
    return train(model, data, tc, seed=0).metrics["images_per_s"]


def replace_cfg(tc, epochs):
    from dataclasses import replace

    return replace(tc, epochs=epochs, speed_epochs=1, checkpoint_epochs=[])


def plain_loop_ips(n: int, epochs: int, threads: int) -> float:
    """The textbook loop: float tensors in a TensorDataset, a shuffling DataLoader, default memory format."""
    torch.set_num_threads(threads)
    cfg, data = _domain(n)
    model = create_model(cfg.model, cfg.data.channels, 10, seed=0)
    tc = cfg.pretrain
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    loader = DataLoader(TensorDataset(to_input(data.train.x), data.train.y), batch_size=tc.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return n * epochs / (time.perf_counter() - t0)


def _side_by_side_worker(args):
    n, epochs = args
    return trainer_ips(n, epochs, threads=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    cores = torch.get_num_threads()
    cfg, data = _domain(256)
    model = create_model(cfg.model, cfg.data.channels, 10, seed=0)
    fpi = flops_per_image(model, tuple(data.train.x.shape[1:]))
    peak = matmul_flops(cores)
    rows = []
    ips = trainer_ips(args.images, args.epochs, cores)
    rows.append((f"transferscope.train, {cores} threads", ips))
    plain = plain_loop_ips(args.images, args.epochs, cores)
    rows.append((f"plain DataLoader loop, {cores} threads", plain))
    with mp.get_context("spawn").Pool(2) as pool:
        both = sum(pool.map(_side_by_side_worker, [(args.images, args.epochs)] * 2))
    rows.append(("2 trainers side by side, 1 thread each", both))
    print(f"model: {cfg.model.name} blocks={cfg.model.blocks} width={cfg.model.width} norm={cfg.model.norm}, "
          f"input {tuple(data.train.x.shape[1:])}, batch {cfg.pretrain.batch_size}, {args.images} images x "
          f"{args.epochs} epochs")
    print(f"forward+backward: {fpi / 1e6:.1f} MFLOP per image; float32 matmul ({cores} threads): {peak / 1e9:.1f} GFLOP/s")
    print()
    print(f"{'loop':<42} {'images/s':>9} {'GFLOP/s':>8} {'of matmul':>10} {'vs plain':>9}")
    for name, v in rows:
        print(f"{name:<42} {v:>9.0f} {v * fpi / 1e9:>8.1f} {v * fpi / peak:>9.1%} {v / plain:>8.2f}x")


if __name__ == "__main__":
    main()
