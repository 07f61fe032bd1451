"""Where and in what arithmetic the trainer runs: the model's one device, the autocast of a precision (``fp32``,
``bf16``, ``fp16`` with a gradient scaler) refused where PyTorch would silently fall back to float32, the memory
format of the model and its inputs, batches staged to the device, and the CPU allocator's setting for training.
Shared by :func:`~transferscope.train.train` and :func:`~transferscope.train.evaluate`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import sys
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn as nn

__all__ = ["PRECISIONS", "choose_memory_format", "model_device", "autocast_for", "grad_scaler", "keep_freed_memory",
           "to_device"]

log = logging.getLogger("transferscope.train")  # the trainer's one logger, as before it was a package


PRECISIONS = ("fp32", "bf16", "fp16")
"""Arithmetic of :func:`train` and :func:`evaluate`: float32, or autocast to bfloat16 or float16 (float16 with a
gradient scaler)."""


def choose_memory_format(model: nn.Module) -> torch.memory_format:
    """The trainer's memory format for ``model``: channels_last for a convolutional net, except

    - with GroupNorm: PyTorch's channels-last GroupNorm is slow on the CPU (forward about 10x, backward about 4x
      the contiguous kernel at 16 channels, torch 2.13 on 2 cores of an AMD EPYC) and on CUDA it has none (the
      input is made contiguous, a copy per layer), so the whole net stays contiguous: the quick study's ResNet
      trained 1.2x faster so in float32 (1,705 against 1,427 images/s) and 2.5x in bfloat16;
    - when a convolution has fewer than 8 output channels: oneDNN's 1x1 backward-weights kernel was seen to hang on
      those in channels_last.

    Channels_last made a Fixup ResNet-8 about 1.45x faster on a CPU.
    """
    mods = list(model.modules())
    convs = [m for m in mods if isinstance(m, nn.Conv2d)]
    if not convs or min(m.out_channels for m in convs) < 8 or any(isinstance(m, nn.GroupNorm) for m in mods):
        return torch.contiguous_format
    return torch.channels_last


def model_device(model: nn.Module) -> torch.device:
    """The one device holding ``model``'s parameters and buffers (the CPU for a model without any).

    Raises:
        ValueError: they are spread over several devices (the trainer moves nothing on its own).
    """
    devs = {t.device for t in (*model.parameters(), *model.buffers())}
    if len(devs) > 1:
        raise ValueError(f"the model's parameters and buffers are on {', '.join(sorted(map(str, devs)))}: "
                         "train and evaluate run on one device; move the model there first (model.to(device))")
    return devs.pop() if devs else torch.device("cpu")


def autocast_for(dev: torch.device, precision: str) -> Callable[[], AbstractContextManager]:
    """A factory of the autocast context of ``precision`` on ``dev`` (fp32: none).

    Raises:
        ValueError: an unknown precision, or one that PyTorch's autocast does not run on ``dev`` (PyTorch would only
            warn and compute in float32: refused instead).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "fp16" and dev.type == "cpu":
        _warn_fp16_cpu()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if not torch.amp.is_autocast_available(dev.type):
        raise ValueError(f"precision {precision!r}: PyTorch has no autocast on {dev.type}; use precision 'fp32'")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "... not supported. Disabling autocast." would be a silent fallback
        try:
            torch.autocast(dev.type, dtype=dtype)
        except (Warning, RuntimeError) as e:
            raise ValueError(f"precision {precision!r} is not supported on {dev}: {e}") from None
    return functools.partial(torch.autocast, dev.type, dtype=dtype)


@functools.cache
def _warn_fp16_cpu() -> None:
    log.warning("precision fp16 on the CPU: PyTorch runs it, but CPUs without float16 arithmetic run it slowly (the "
                "quick study's model trained at about a tenth of fp32's images/s on an AMD EPYC); bf16 is the CPU's "
                "fast lower precision")


def grad_scaler(dev: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16's gradient scaler on ``dev`` (None for fp32 and bf16, whose exponent range needs none)."""
    if precision != "fp16":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "GradScaler is enabled, but ... is not available. Disabling."
        try:
            return torch.amp.GradScaler(dev.type)
        except (Warning, RuntimeError) as e:
            raise ValueError(f"precision 'fp16' needs a gradient scaler, which PyTorch lacks on {dev}: {e}") from None


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc, once per process, to keep freed memory for reuse rather than hand it back to the
    operating system after every training step: its thresholds are fixed at the largest values its own adaptive
    rule reaches (blocks under 32 MiB from the heap; up to 64 MiB of free heap kept). Under that rule a CPU training
    step of the quick study's model faulted 1,000 to 6,000 fresh pages back in (4-24 MB zeroed by the kernel per
    step of about 35 ms); with these, under 50. The process keeps at most 64 MiB more than it would. Returns whether
    the setting took (False where the C library is not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 64 << 20))


def to_device(x: torch.Tensor, dev: torch.device, idx: torch.Tensor | None = None) -> torch.Tensor:
    """``x[idx]`` (``x`` whole if ``idx`` is None), a CPU tensor, on ``dev``. On CUDA the rows are gathered into
    pinned memory and copied without blocking the host: the host goes on queueing work while the copy runs (the
    caching host allocator keeps a pinned block until the copy that reads it has finished)."""
    if dev.type == "cpu":
        return x if idx is None else x[idx]
    if dev.type != "cuda":
        return (x if idx is None else x[idx]).to(dev)
    shape = (len(x) if idx is None else len(idx), *x.shape[1:])
    buf = torch.empty(shape, dtype=x.dtype, device="cpu", pin_memory=True)
    if idx is None:
        buf.copy_(x)
    else:
        torch.index_select(x, 0, idx, out=buf)
    return buf.to(dev, non_blocking=True)
