"""Throughput of transferscope's trainer against a plain PyTorch loop, per device and precision, and this machine's
matrix-multiply FLOP/s.

Run by hand (never part of the tests):

    .venv/bin/python benchmarks/train_throughput.py [--images 8192] [--epochs 2] [--repeats 5]
        [--devices cpu,cuda] [--precisions fp32,bf16,fp16] [--threads 2] [--side-by-side] [--compile]

Prints a table: images/s of ``transferscope.train.train`` on the default model of the quick study (28x28 grey,
Fashion-MNIST, a class-balanced sample of ``--images``) per device and precision, beside the textbook
``DataLoader`` loop of the same model at the same precision (autocast, fp16 with a GradScaler; pinned memory and
``non_blocking`` on CUDA). The two are run alternately, ``--repeats`` times each, each run in a fresh process (as a
user's script or a study worker: the trainer sets the process's allocator, see
:func:`transferscope.train.keep_freed_memory`), and the table gives the medians and the median and range of the
per-repeat ratios (a machine shared with other work slows both alike within a repeat). Beside them: the FLOP/s the
trainer's figure implies (forward + backward FLOPs counted by torch's FlopCounterMode) as a share of the measured
float32 matmul FLOP/s, and on the CPU the plain loop given the trainer's allocator setting (what is left is the
loop itself). With ``--side-by-side``, two trainers in two processes with one thread each (what the study runner
does on a CPU); with ``--compile``, the plain loop with ``torch.compile(model)`` per epoch, the compilation
counted, with an empty and with a filled inductor cache.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from transferscope.config import DataConfig, DomainConfig, load_config
from transferscope.data import load_domain
from transferscope.models import create_model, to_input
from transferscope.train import keep_freed_memory, train

_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def _sample(data, n: int):
    """``n`` training images, a class-balanced sample (the split is stored class by class: its first images are
    all of one class)."""
    return replace(data, train=data.train.sample(n, seed=0))


def _domain(n: int):
    cfg = load_config("quick")
    data = load_domain(DomainConfig("fashion-mnist", n_val_per_class=1, n_test_per_class=1),
                       DataConfig(image_size=cfg.data.image_size))
    # keep eval negligible: the trainer's figure is its step loop; val/test of 1 image per class
    return cfg, _sample(data, n)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def trainer_ips(cfg, data, epochs: int, device: str, precision: str) -> float:
    model = create_model(cfg.model, cfg.data.channels, 10, seed=0).to(device)
    tc = replace(cfg.pretrain, epochs=epochs, speed_epochs=1, checkpoint_epochs=[])
    return train(model, data, tc, seed=0, precision=precision).metrics["images_per_s"]


def plain_loop_ips(cfg, data, epochs: int, device: str, precision: str, compile_model: bool = False,
                   epoch_seconds: list[float] | None = None) -> float:
    """The textbook loop: float tensors in a TensorDataset, a shuffling DataLoader (pinned on CUDA), default memory
    format, torch.optim.SGD as it comes, autocast (and a GradScaler for fp16) at lower precisions."""
    model = create_model(cfg.model, cfg.data.channels, 10, seed=0).to(device)
    tc = cfg.pretrain
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    cuda = device.startswith("cuda")
    loader = DataLoader(TensorDataset(to_input(data.train.x), data.train.y), batch_size=tc.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0), pin_memory=cuda)
    scaler = torch.amp.GradScaler(torch.device(device).type) if precision == "fp16" else None
    step = torch.compile(model) if compile_model else model
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        te = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=cuda), yb.to(device, non_blocking=cuda)
            ctx = (torch.autocast(torch.device(device).type, dtype=_DTYPE[precision]) if precision in _DTYPE
                   else contextlib.nullcontext())
            with ctx:
                loss = F.cross_entropy(step(xb), yb)
            opt.zero_grad()
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        _sync(device)
        if epoch_seconds is not None:
            epoch_seconds.append(time.perf_counter() - te)
    return len(data.train) * epochs / (time.perf_counter() - t0)


def _fresh(kind: str, n: int, epochs: int, threads: int, device: str = "cpu", precision: str = "fp32",
           cache_dir: str = ""):
    """One measurement in this (fresh) process: what a user's process or a study worker sees (the C library's
    allocator in its start-up state, no caches of an earlier loop). A warm-up on 512 images first.

    kind: ``trainer``; ``plain``; ``plain-kept`` (the plain loop after the trainer's allocator setting,
    :func:`transferscope.train.keep_freed_memory`); ``compile`` (seconds per epoch of the plain loop on
    ``torch.compile(model)`` with inductor's cache in ``cache_dir``, then eager, in this process).
    """
    import os

    torch.set_num_threads(threads)
    cfg, data = _domain(n)
    if kind == "compile":
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
        compiled, eager = [], []
        plain_loop_ips(cfg, data, epochs, "cpu", "fp32", compile_model=True, epoch_seconds=compiled)
        plain_loop_ips(cfg, data, epochs, "cpu", "fp32", epoch_seconds=eager)
        return compiled, eager
    if kind == "plain-kept":
        keep_freed_memory()
    run = trainer_ips if kind == "trainer" else plain_loop_ips
    run(cfg, _sample(data, 512), 1, device, precision)
    return run(cfg, data, epochs, device, precision)


def _in_fresh_process(*args):
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(_fresh, *args).result()


def _devices(arg: str) -> list[str]:
    if arg != "auto":
        return arg.split(",")
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="alternations of trainer and plain loop; medians reported")
    ap.add_argument("--devices", default="auto", help="comma-separated; auto: cpu, and cuda when there is one")
    ap.add_argument("--precisions", default="fp32,bf16,fp16")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--side-by-side", action="store_true", help="also two 1-thread trainers in two processes")
    ap.add_argument("--compile", action="store_true", help="also the plain loop on torch.compile(model), on the CPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg, data = _domain(256)
    model = create_model(cfg.model, cfg.data.channels, 10, seed=0)
    fpi = flops_per_image(model, tuple(data.train.x.shape[1:]))
    peak = matmul_flops(args.threads)
    print(f"model: {cfg.model.name} blocks={cfg.model.blocks} width={cfg.model.width} norm={cfg.model.norm}, "
          f"input {tuple(data.train.x.shape[1:])}, batch {cfg.pretrain.batch_size}, {args.images} images x "
          f"{args.epochs} epochs, {args.repeats} repeats (medians), each in a fresh process, torch "
          f"{torch.__version__}, {args.threads} CPU threads")
    print(f"forward+backward: {fpi / 1e6:.1f} MFLOP per image; float32 matmul ({args.threads} threads): "
          f"{peak / 1e9:.1f} GFLOP/s")
    if torch.cuda.is_available():
        print(f"cuda: {torch.cuda.get_device_name()}")
    print()
    print(f"{'device':<7} {'precision':<9} {'trainer img/s':>13} {'plain img/s':>11} {'trainer/plain':>13} "
          f"{'min..max':>11} {'of fp32 matmul':>14} {'plain, memory kept':>18}")
    for device in _devices(args.devices):
        for precision in args.precisions.split(","):
            ts, ps, ks = [], [], []
            try:
                for _ in range(args.repeats):
                    ts.append(_in_fresh_process("trainer", args.images, args.epochs, args.threads, device, precision))
                    ps.append(_in_fresh_process("plain", args.images, args.epochs, args.threads, device, precision))
                    if device == "cpu":  # the plain loop given the trainer's allocator setting: the rest is the loop
                        ks.append(_in_fresh_process("plain-kept", args.images, args.epochs, args.threads, device,
                                                    precision))
            except (ValueError, RuntimeError) as e:
                print(f"{device:<7} {precision:<9} not run: {e}")
                continue
            ratios = [t / p for t, p in zip(ts, ps, strict=True)]
            t, p = statistics.median(ts), statistics.median(ps)
            share = f"{t * fpi / peak:>14.1%}" if device == "cpu" else f"{'':>14}"
            kept = f"{statistics.median(ks):>18.0f}" if ks else ""
            print(f"{device:<7} {precision:<9} {t:>13.0f} {p:>11.0f} {statistics.median(ratios):>12.2f}x "
                  f"{min(ratios):>5.2f}..{max(ratios):<5.2f} {share} {kept}", flush=True)
    if args.compile:
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            cold, eager = _in_fresh_process("compile", args.images, args.epochs, args.threads, "cpu", "fp32", cache)
            wall = time.perf_counter() - t0
            warm, eager2 = _in_fresh_process("compile", args.images, args.epochs, args.threads, "cpu", "fp32", cache)

        def secs(v):
            return ", ".join(f"{x:.2f}" for x in v)

        steady = statistics.median(cold[1:] + warm[1:]) / statistics.median(eager[1:] + eager2[1:])

        print(f"\nplain loop, cpu fp32, seconds per epoch of {args.images} images, each process compiling once:\n"
              f"  torch.compile(model), empty inductor cache: {secs(cold)}  (eager in the same process: {secs(eager)})"
              f"\n  torch.compile(model), cache filled by it:    {secs(warm)}  (eager: {secs(eager2)})\n"
              f"  compilation in the first epoch: about {cold[0] - cold[-1]:.1f} s cold, {warm[0] - warm[-1]:.1f} s "
              f"from the cache; later epochs take {steady:.2f}x eager's time "
              f" ({wall:.0f} s for the cold process)")
    if args.side_by_side:
        with mp.get_context("spawn").Pool(2) as pool:
            both = sum(pool.map(_side_by_side_worker, [(args.images, args.epochs)] * 2))
        print(f"\n2 trainers side by side, 1 thread each, cpu fp32: {both:.0f} images/s together")


def _side_by_side_worker(args):
    n, epochs = args
    torch.set_num_threads(1)
    cfg, data = _domain(n)
    return trainer_ips(cfg, data, epochs, "cpu", "fp32")


if __name__ == "__main__":
    main()
