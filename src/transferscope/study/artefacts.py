"""A stored run's artefacts as the study reads them: its domain's data, its weights files (checked against their
recorded sha256) and its model. Shared by the scheduler (a P-T run starts from its P's weights) and the analyses
(every analysis loads the runs it reads), so neither imports the other."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from safetensors.torch import load, save

from ..config import DataConfig, DomainConfig
from ..data import DomainData, load_domain
from ..models import create_model
from ..store import RUN_DONE, Store, write_new
from .plan import RunSpec

__all__ = ["domain_data", "save_state", "load_state", "checkpoint_name", "load_run_model"]


@functools.lru_cache(maxsize=8)
def domain_data(domain: DomainConfig, data: DataConfig) -> DomainData:
    return load_domain(domain, data)


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write a state dict as safetensors, every tensor as a contiguous CPU copy (the trainer keeps checkpoints on the
    model's device, in its memory format)."""
    write_new(path, save({k: v.detach().contiguous().cpu() for k, v in state.items()}))


def load_state(store: Store, run_id: str, name: str) -> dict[str, torch.Tensor]:
    """A weights file of a stored run, checked against its recorded sha256 (never garbled weights)."""
    p = store.artefact(run_id, name)
    try:
        return load(p.read_bytes())
    except Exception as e:  # a file with no recorded hash that is not safetensors
        raise store.damaged(run_id, name, e) from None


def checkpoint_name(epoch: float) -> str:
    return f"epoch_{epoch:g}.safetensors"


def load_run_model(store: Store, spec: RunSpec, which: str = "weights", device: str | torch.device = "cpu"
                   ) -> torch.nn.Module:
    """The model of a finished run on ``device``: ``which`` is ``weights`` (final), ``init`` (step 0) or
    ``epoch_<e>``."""
    info = store.run_info(spec.run_id)
    if info is None or info.get("status") != RUN_DONE:
        raise FileNotFoundError(f"run {spec.run_id} is not finished in {store.root}")
    with torch.device("cpu"):  # built and loaded on the CPU (the stored weights are), whatever the default device
        model = create_model(spec.model, spec.data.channels, info["num_classes"], seed=spec.seed)
    name = f"checkpoints/{which}.safetensors" if which.startswith("epoch_") else f"{which}.safetensors"
    model.load_state_dict(load_state(store, spec.run_id, name))
    return model.to(device)
