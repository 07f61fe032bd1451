"""What a plan is made of: the runs of a study (:class:`RunSpec`, whose hash is the run id that names its folder),
the learning-rate choices they wait for (:class:`Selection`) and the :class:`Plan` that holds them, parents first.

Plain frozen data, torch-free: the runner, the analyses, the report and the export read plans; making one (checking
a config against the registries and the machine's memory, then expanding it) is :mod:`transferscope.study.plan`'s
job, which re-exports these names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import DataConfig, DomainConfig, ModelConfig, PretrainConfig, StudyConfig, TrainConfig, from_dict, to_dict

__all__ = ["ARMS", "RunSpec", "Selection", "Plan", "file_safe"]

ARMS = ("P", "P-T", "RI-T")
_KIND = {"P": "pretrain", "P-T": "finetune", "RI-T": "scratch"}


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run. Its id is a hash of :meth:`hashed` (non-default fields; display labels
    and cache paths excluded)."""

    arm: str
    domain: DomainConfig
    block_size: int
    seed: int
    train: TrainConfig
    model: ModelConfig
    data: DataConfig
    parent: str = ""
    """Run id of the pre-training run this starts from (P-T only)."""
    parent_checkpoint: float = -1.0
    """Pre-training checkpoint (epochs) this starts from; -1: the final weights (P-T only)."""
    pretrain_seed: int = -1
    """In a study with several pre-trained models: the seed of the P this P-T run starts from (-1 otherwise). For
    display only: ``parent`` already puts P's identity into the run id."""
    checkpoint_files: list[str] = field(default_factory=list)
    """A given P (``model.weights``) with earlier checkpoints (``basin.checkpoints``): their files, in order."""
    checkpoint_sha256: list[str] = field(default_factory=list)
    """Their content hashes (what the run id hashes, not the paths)."""

    @property
    def kind(self) -> str:
        return _KIND[self.arm]

    def hashed(self) -> dict[str, Any]:
        """What the run id hashes: the fields that change what the run computes. Fields at their dataclass default
        are left out at every level (so a config field added later with a default keeps every existing id), and so
        are display labels and cache paths."""
        d = to_dict(self, skip_defaults=True)
        d["domain"].pop("label", None)
        d["domain"].pop("distance", None)  # a declared distance to the source only orders targets for the claims
        d.pop("pretrain_seed", None)  # display: the parent's run id is hashed
        d.pop("checkpoint_files", None)  # given checkpoints count by their content (checkpoint_sha256)
        m = d.get("model", {})
        m.pop("weights", None)  # given weights count by their content (weights_sha256), not their path
        if self.arm != "P":
            m.pop("weights_sha256", None)  # P-T hashes P's run id (parent); RI-T does not use them
        d["data"].pop("cache_dir", None)
        return d

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.hashed(), sort_keys=True).encode()).hexdigest()[:10]
        ckpt = "" if self.parent_checkpoint < 0 else f"-from{self.parent_checkpoint:g}"
        # the readable prefix uses the domain's name, not its label: relabelling a target must not retrain it
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.domain.name or "given")
        return f"{self.arm}-{safe}-b{self.block_size}{ckpt}-s{self.seed}-{digest}"

    @property
    def label(self) -> str:
        """A readable name without the hash (a run waiting for its learning rate has no run id yet)."""
        ckpt = "" if self.parent_checkpoint < 0 else f"-from{self.parent_checkpoint:g}"
        of_p = f"-P{self.pretrain_seed}" if self.pretrain_seed >= 0 else ""
        return f"{self.arm}-{self.domain.display or 'given'}-b{self.block_size}{ckpt}-s{self.seed}{of_p}"

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        d = dict(d)
        train_cls = PretrainConfig if d["arm"] == "P" else TrainConfig
        train = from_dict(train_cls, d.pop("train"), "train")
        spec = from_dict(cls, {**d, "train": {}}, "")
        return replace(spec, train=train)


@dataclass(frozen=True)
class Selection:
    """A learning-rate choice: the runs of one arm on one target and block size, one per candidate."""

    arm: str
    target: str
    block_size: int
    candidates: tuple[RunSpec, ...]
    rule: str = "best"
    """``best`` or ``one-se`` (see ``StudyConfig.lr_rule``)."""
    pretrain_seed: int = -1
    """P-T in a study with several pre-trained models: the P whose fine-tuning this chooses for (-1 otherwise)."""

    @property
    def start(self) -> float:
        """The pre-training checkpoint (in epochs) the candidates fine-tune from: a checkpoint of the basin sweep
        with ``basin.lr = "own"``; -1 for the final P (and for RI-T)."""
        return self.candidates[0].parent_checkpoint if self.candidates else -1.0

    @property
    def key(self) -> str:
        of_p = f"/P{self.pretrain_seed}" if self.pretrain_seed >= 0 else ""
        of_ckpt = f"/from{self.start:g}" if self.start >= 0 else ""
        return f"{self.arm}/{self.target}/b{self.block_size}{of_p}{of_ckpt}"

    @property
    def where(self) -> str:
        """The block size and start, as warnings print them: ``b28``, ``b28, from P of seed 1``, ``b28, from
        pre-training epoch 2``."""
        of_p = f", from P of seed {self.pretrain_seed}" if self.pretrain_seed >= 0 else ""
        of_ckpt = f", from pre-training epoch {self.start:g}" if self.start >= 0 else ""
        return f"b{self.block_size}{of_p}{of_ckpt}"

    def is_winner(self, template: RunSpec) -> bool:
        """Whether a run waiting for this choice will be the winning candidate itself (same seed, block, start)."""
        c = self.candidates[0]
        return (template.seed, template.block_size, template.parent_checkpoint) == (c.seed, c.block_size,
                                                                                    c.parent_checkpoint)


@dataclass(frozen=True)
class Plan:
    config: StudyConfig
    runs: list[RunSpec]
    """The runs of the experiment with a known learning rate, in an order where every run comes after its parent."""
    tuning: list[RunSpec] = field(default_factory=list)
    """Learning-rate candidates (the winner of each selection is also one of ``runs`` once resolved)."""
    deferred: list[tuple[RunSpec, Selection]] = field(default_factory=list)
    """Runs waiting for a learning-rate choice: a template (``lr_grid`` still set) and the selection it waits for."""

    def by_id(self) -> dict[str, RunSpec]:
        return {r.run_id: r for r in self.tuning + self.runs}

    def pretrain(self) -> RunSpec:
        """The primary pre-trained model P (the first of ``pretrain_seeds``)."""
        return self.runs[0]

    def pretrains(self) -> list[RunSpec]:
        """Every pre-trained model P of the study, the primary first."""
        return [r for r in self.runs if r.arm == "P"]

    def for_pretrain(self, seed: int | None = None) -> Plan:
        """The study as if it had one P, the one of pre-training seed ``seed`` (None: the primary): that P, the P-T
        runs that descend from it, and every RI-T run. The analyses and the claims of one P read this view."""
        ps = self.pretrains()
        p = ps[0] if seed is None else next((r for r in ps if r.seed == seed), None)
        if p is None:
            raise ValueError(f"no pre-trained model of seed {seed}; the study's are {[r.seed for r in ps]}")
        if len(ps) == 1:
            return self

        def mine(r: RunSpec) -> bool:
            return r.run_id == p.run_id if r.arm == "P" else r.arm != "P-T" or r.parent == p.run_id

        cfg = replace(self.config, pretrain_seed=p.seed, pretrain_seeds=[])
        return Plan(cfg, [r for r in self.runs if mine(r)], [r for r in self.tuning if mine(r)],
                    [(t, s) for t, s in self.deferred if mine(t)])

    @property
    def selections(self) -> list[Selection]:
        seen: dict[str, Selection] = {}
        for _, sel in self.deferred:
            seen.setdefault(sel.key, sel)
        return list(seen.values())

    def size(self) -> int:
        """How many distinct runs the study trains once every choice is made."""
        ids = {r.run_id for r in self.tuning + self.runs}
        winners = sum(1 for t, sel in self.deferred if sel.is_winner(t))
        return len(ids) + len(self.deferred) - winners


def file_safe(name: str) -> str:
    """``name`` as a file name: every character but letters, digits, ``-`` and ``_`` replaced by ``_`` (as the
    report's figures and the analyses' files name a target)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
