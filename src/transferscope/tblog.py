"""Per-run TensorBoard logs (``transferscope run --tensorboard``): ``RESULTS/tensorboard/<run_id>``, so that
``tensorboard --logdir RESULTS/tensorboard`` shows a running study live.

Every curve is on one axis, the optimiser step; an epoch's figures are at step ``epoch x steps per epoch``. Tags,
grouped by figure so that TensorBoard draws training, validation and test of a figure side by side:

- ``loss/train``: the mean of an epoch's step losses; ``loss/val``, ``loss/test``: of the model at the epoch's end;
- ``accuracy/train`` (the mean of the epoch's per-step batch accuracies), ``accuracy/val``, ``accuracy/test``; for
  a multi-label target ``auc/train`` (the mean AUC on the fixed training subset, epochs 0 to the last),
  ``auc/val``, ``auc/test`` instead;
- ``lr`` (the learning rate at the epoch's end);
- ``loss/train_step`` and ``accuracy/train_step``: every step's batch (written when the run ends);
- ``deviation`` where the history holds one number per epoch.

What the trainer reports after an epoch is written then, and flushed (a running study is seen live); when the run
ends, its whole history fills in the rest (nothing is written twice). The values are those of the run's
``history.json`` (epoch means computed from its per-step lists).

Turned on for the runs of a process by :data:`ENV` (the command sets it, and worker processes inherit it); needs the
``tensorboard`` package (``pip install 'transferscope[tensorboard]'``).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

__all__ = ["ENV", "LOG_DIR", "RunLog", "run_log", "check_available"]

ENV = "TRANSFERSCOPE_TENSORBOARD"
"""Set (to ``1``) to log every run trained in this process and its workers."""

LOG_DIR = "tensorboard"
"""The folder under the results folder; one sub-folder per run."""

_WORDS = {"loss": "loss", "acc": "accuracy", "auc": "auc"}
"""A figure's word in its tag."""

_HISTORY = {"val_loss": "epoch", "val_acc": "epoch", "val_auc": "epoch", "test_loss": "test_epoch",
            "test_acc": "test_epoch", "test_auc": "test_epoch", "lr": "epoch", "deviation": "epoch"}
"""history.json key -> the key of the epochs it was recorded at."""


def check_available() -> None:
    """Raise ImportError with what to install when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ImportError("--tensorboard needs the tensorboard package: pip install 'transferscope[tensorboard]'") \
            from None


def _tag(key: str) -> str:
    """The tag of a figure the trainer names ``<split>_<figure>`` (``val_auc`` -> ``auc/val``); other names stay."""
    split, _, fig = key.partition("_")
    if split in ("train", "val", "test") and fig in _WORDS:
        return f"{_WORDS[fig]}/{split}"
    return key


def epoch_means(values: list, steps_per_epoch: int) -> list[tuple[int, float]]:
    """(epoch, mean of the epoch's values) for each whole epoch of a per-step list: the trainer's ``train_loss``
    and ``train_acc`` of an epoch, as it reports them."""
    import numpy as np

    if steps_per_epoch <= 0:
        return []
    return [(e + 1, float(np.mean(values[e * steps_per_epoch:(e + 1) * steps_per_epoch])))
            for e in range(len(values) // steps_per_epoch)]


class RunLog:
    """The event file of one run (any earlier one of the same run, e.g. of a failed try, is removed first)."""

    def __init__(self, root: str | Path, run_id: str, steps_per_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(root) / LOG_DIR / run_id
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.spe = steps_per_epoch
        self.written: set[tuple[str, int]] = set()
        self.writer = SummaryWriter(log_dir=str(self.dir), flush_secs=10)

    def _scalar(self, tag: str, value, step: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or (tag, step) in self.written:
            return
        self.writer.add_scalar(tag, float(value), step)
        self.written.add((tag, step))

    def epoch(self, epoch: int, figs: dict) -> None:
        """An epoch's figures (as the trainer's progress callback gives them), flushed to be seen at once."""
        for k, v in figs.items():
            self._scalar(_tag(k), v, epoch * self.spe)
        self.writer.flush()

    def finish(self, history: dict) -> None:
        """The run's whole history (what ``history.json`` holds); closes the file."""
        loss, acc = history.get("step_loss", []), history.get("step_acc", [])
        for i, v in enumerate(loss):
            self._scalar("loss/train_step", v, i + 1)
        for i, v in enumerate(acc):
            self._scalar("accuracy/train_step", v, i + 1)
        for tag, steps in (("loss/train", loss), ("accuracy/train", acc)):
            for e, v in epoch_means(steps, self.spe):
                self._scalar(tag, v, e * self.spe)
        for e, v in enumerate(history.get("train_auc", [])):  # one per epoch, from epoch 0
            if isinstance(v, int | float) and math.isfinite(v):
                self._scalar("auc/train", v, e * self.spe)
        for key, at in _HISTORY.items():
            for e, v in zip(history.get(at, []), history.get(key, []), strict=False):
                if isinstance(v, int | float) and math.isfinite(v):  # e.g. deviation per module: not one curve
                    self._scalar(_tag(key), v, round(e * self.spe))
        self.close()

    def close(self) -> None:
        self.writer.close()


def run_log(root: str | Path, run_id: str, steps_per_epoch: int) -> RunLog | None:
    """The run's log when :data:`ENV` asks for one, else None."""
    if not os.environ.get(ENV):
        return None
    return RunLog(root, run_id, steps_per_epoch)
