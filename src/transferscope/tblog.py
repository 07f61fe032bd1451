"""Per-run TensorBoard logs (``transferscope run --tensorboard``): ``RESULTS/tensorboard/<run_id>``, so that
``tensorboard --logdir RESULTS/tensorboard`` shows a running study live.

Every curve is on one axis, the optimiser step: ``val/acc`` (and every other figure the trainer reports after an
epoch) is written when the epoch ends, at step ``epoch x steps per epoch``; when the run ends, the rest of its
history: ``train/loss`` and ``train/acc`` per step (of the step's batch), ``val/loss``, ``test/loss``,
``test/acc`` and ``lr`` per evaluated epoch (and ``deviation`` where the history holds one number per epoch).
The values are those of the run's ``history.json``.

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

_HISTORY = {"val_loss": ("val/loss", "epoch"), "val_acc": ("val/acc", "epoch"), "test_loss": ("test/loss", "test_epoch"),
            "test_acc": ("test/acc", "test_epoch"), "lr": ("lr", "epoch"), "deviation": ("deviation", "epoch")}
"""history.json key -> (tag, the key of the epochs it was recorded at)."""


def check_available() -> None:
    """Raise ImportError with what to install when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ImportError("--tensorboard needs the tensorboard package: pip install 'transferscope[tensorboard]'") \
            from None


def _tag(key: str) -> str:
    for prefix in ("val", "test", "train"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key.removeprefix(prefix + '_')}"
    return key


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
        for i, (loss, acc) in enumerate(zip(history.get("step_loss", []), history.get("step_acc", []), strict=False)):
            self._scalar("train/loss", loss, i + 1)
            self._scalar("train/acc", acc, i + 1)
        for key, (tag, at) in _HISTORY.items():
            for e, v in zip(history.get(at, []), history.get(key, []), strict=False):
                if isinstance(v, int | float) and math.isfinite(v):  # e.g. deviation per module: not one curve
                    self._scalar(tag, v, round(e * self.spe))
        self.close()

    def close(self) -> None:
        self.writer.close()


def run_log(root: str | Path, run_id: str, steps_per_epoch: int) -> RunLog | None:
    """The run's log when :data:`ENV` asks for one, else None."""
    if not os.environ.get(ENV):
        return None
    return RunLog(root, run_id, steps_per_epoch)
