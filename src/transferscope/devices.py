"""Where runs and analyses compute: the ``--device`` names, their check (a device that is not there is an error,
never a silent fall back to the CPU), the device each run is given, determinism on a GPU, and the library
versions a run records."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import re
import signal
import sys

import torch

from .config import ConfigError

__all__ = ["DeviceError", "DEVICES", "resolve_device", "device_slots", "set_deterministic", "library_versions"]

DEVICES = "auto, cpu, cuda, cuda:N or mps"


class DeviceError(ConfigError):
    """A device that does not exist on this machine, or a name that is not one."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The device ``name`` stands for: ``auto`` is the first CUDA device if there is one, else MPS, else the CPU;
    ``cuda`` is the first CUDA device. Raises :class:`DeviceError`, naming the device, when it is not on this
    machine."""
    if isinstance(name, torch.device):
        name = str(name)
    text = (name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m:
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "torch sees no CUDA device"
            raise DeviceError(f"device {name!r} is not available: {why} (torch {torch.__version__}); "
                              "use --device cpu, or auto to take a GPU only where there is one")
        n, idx = torch.cuda.device_count(), int(m.group(1) or 0)
        if idx >= n:
            raise DeviceError(f"device {name!r} is not available: this machine has {n} CUDA device"
                              f"{'' if n == 1 else 's'} (cuda:0 to cuda:{n - 1})")
        return torch.device("cuda", idx)
    if text == "mps":
        if not _mps_available():
            raise DeviceError(f"device {name!r} is not available: torch sees no Apple MPS device here; "
                              "use --device cpu, or auto")
        return torch.device("mps")
    raise DeviceError(f"device {name!r}: unknown; one of {DEVICES}")


def device_slots(name: str | None, runs_per_device: int = 1, gpus: int | None = None) -> list[str]:
    """The devices of the runs trained side by side: ``runs_per_device`` runs share each device. ``cuda`` (or
    ``auto`` on a CUDA machine) spreads them over every GPU (slot i on ``cuda:(i mod n)``), ``cuda:N`` keeps them
    on that one; on the CPU or MPS, one slot (the CPU's side-by-side runs are ``--jobs``)."""
    if runs_per_device < 1:
        raise ConfigError(f"--runs-per-device {runs_per_device}: must be at least 1")
    dev = resolve_device(name)
    if dev.type != "cuda":
        return [str(dev)]
    text = (name or "auto").strip().lower()
    n = (torch.cuda.device_count() if gpus is None else gpus) if text in ("auto", "cuda") else 1
    devices = [f"cuda:{i}" for i in range(n)] if n > 1 else [str(dev)]
    return [devices[i % len(devices)] for i in range(len(devices) * runs_per_device)]


def set_deterministic(device: torch.device | str, on: bool) -> None:
    """``on`` and a GPU: PyTorch's deterministic algorithms (and the cuBLAS workspace they need; it has to be set
    before cuBLAS starts, i.e. before the first matrix product on the GPU). The CPU needs nothing: its kernels are
    deterministic at a fixed number of threads."""
    if not on or torch.device(device).type == "cpu":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


@functools.cache
def library_versions() -> dict[str, str]:
    """torch, numpy, Python, and CUDA / cuDNN where torch has them (what a run's numbers can depend on)."""
    import numpy

    out = {"torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version()}
    if torch.version.cuda:
        out["cuda"] = str(torch.version.cuda)
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        if cudnn:
            out["cudnn"] = str(cudnn)
    return out


def describe(device: torch.device) -> str:
    """The device and, for a GPU, its name (recorded beside a run's results)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any): where an analysis of it computes."""
    p = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


def cpu_sample(split, n: int, seed: int = 0):
    """``split.sample(n, seed)`` made on the CPU, where the splits are kept, whatever the default device (the
    analyses move what they take to their model's device)."""
    with torch.device("cpu"):
        return split.sample(n, seed)


def die_with_parent() -> None:
    """In a worker process (the training pool's, the analysis pool's): be killed when the process that started it
    dies, even by SIGKILL, so that no orphan goes on computing for nobody (Linux: ``PR_SET_PDEATHSIG``; elsewhere
    nothing: a worker there ends when its pool's pipe breaks, at its next job)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
