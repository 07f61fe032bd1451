"""Per-run TensorBoard logs (``transferscope run --tensorboard``): ``RESULTS/tensorboard/<run_id>``, so that
``tensorboard --logdir RESULTS/tensorboard`` shows a running study live.

Every curve is on one axis, the optimiser step; an epoch's figures are at step ``epoch x steps per epoch``. Tags,
grouped by figure so that TensorBoard draws training, validation and test of a figure side by side:

- ``loss/train``: the mean of an epoch's step losses; ``loss/val``, ``loss/test``: of the model at the epoch's end;
- ``accuracy/train`` (the mean of the epoch's per-step batch accuracies), ``accuracy/val``, ``accuracy/test``; for
  a multi-label target ``auc/train`` (the mean AUC on the fixed training subset, epochs 0 to the last),
  ``auc/val``, ``auc/test`` instead;
- ``lr``: the learning rate at every step ``k`` = 0 .. epochs x steps per epoch, the rate after ``k`` optimiser
  steps (the one step ``k + 1`` uses; the schedule is per step); at the evaluated epochs' ends the ``lr`` of
  ``history.json``, the other steps' from the trainer's schedule replayed
  (:func:`transferscope.train.learning_rates`); an epoch's steps are written when it is reported;
- ``loss/train_step`` and ``accuracy/train_step``: every step's batch (written when the run ends);
- ``deviation`` where the history holds one number per epoch;
- ``hparams/test_metric``: the run's final test figure in its metric (accuracy; the mean AUC of a multi-label
  target), that of ``metrics.json``, one point at the last step, written when the run ends.

What the trainer reports after an epoch is written then, and flushed (a running study is seen live); when the run
ends, its whole history fills in the rest (nothing is written twice). The values are those of the run's
``history.json`` (epoch means computed from its per-step lists).

TensorBoard's HPARAMS dashboard groups and compares the runs by their hyperparameters (:func:`hparams`: ``arm``,
``target`` (the domain's label or name; a P run's is the source), ``block_size``, ``seed``, ``lr`` (the run's base
rate, the chosen one where the study selects it), ``pretrain_run`` and ``pretrain_checkpoint`` (the P run and its
checkpoint a P-T run starts from: ``final`` or ``epoch <e>``; ``none`` for P and RI-T)), its metric the final
test figure. They are written into the run's own event file, by the same writer as its curves, with
:func:`torch.utils.tensorboard.summary.hparams`'s summaries: ``SummaryWriter.add_hparams`` would open a second
writer in a new sub-folder (``<run_id>/<time>``) per call, a second run of the same numbers in TensorBoard. The
hyperparameters (the session's start) are written when the run starts, so a running run is listed already, its
metric empty until it ends; the session's end (status success) when it finishes, or status failure when it stops
without finishing (diverged, raised). Every run's event file holds the same experiment summary (the names above and
the one metric tag), so it does not matter which one TensorBoard reads it from.

Turned on for the runs of a process by :data:`ENV` (the command sets it, and worker processes inherit it); needs the
``tensorboard`` package (``pip install 'transferscope[tensorboard]'``).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ENV", "LOG_DIR", "METRIC_TAG", "RunLog", "run_log", "hparams", "check_available"]

ENV = "TRANSFERSCOPE_TENSORBOARD"
"""Set (to ``1``) to log every run trained in this process and its workers."""

LOG_DIR = "tensorboard"
"""The folder under the results folder; one sub-folder per run."""

METRIC_TAG = "hparams/test_metric"
"""The tag of a run's final test figure, the metric of the hparams dashboard."""

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


def hparams(arm: str, target: str, block_size: int, seed: int, lr: float, pretrain_run: str = "",
            pretrain_checkpoint: float = -1.0) -> dict[str, str | int | float]:
    """A run's hyperparameters for the hparams dashboard (a RunSpec's ``arm``, ``domain.display``, ``block_size``,
    ``seed``, ``train.lr``, ``parent`` and ``parent_checkpoint``: -1 the final weights, else the epoch)."""
    ckpt = "none" if not pretrain_run else "final" if pretrain_checkpoint < 0 else f"epoch {pretrain_checkpoint:g}"
    return {"arm": arm, "target": target, "block_size": int(block_size), "seed": int(seed), "lr": float(lr),
            "pretrain_run": pretrain_run or "none", "pretrain_checkpoint": ckpt}


def _session_end(status: int):
    """The hparams plugin's summary of a session's end with ``status`` (an ``api_pb2.Status``)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(status=status))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG,
                                        metadata=metadata.create_summary_metadata(data))])


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
    """The event file of one run (any earlier one of the same run, e.g. of a failed try, is removed first).

    ``hparams``: the run's hyperparameters (:func:`hparams`), written at once; ``lrs``: the learning rate after each
    step 0 .. the last (:func:`transferscope.train.learning_rates`), each epoch's written when it is reported."""

    def __init__(self, root: str | Path, run_id: str, steps_per_epoch: int, *, hparams: dict | None = None,
                 lrs: Sequence[float] = ()) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(root) / LOG_DIR / run_id
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.spe = steps_per_epoch
        self.lrs = list(lrs)
        self.written: set[tuple[str, int]] = set()
        self.writer = SummaryWriter(log_dir=str(self.dir), flush_secs=10)
        self.session = hparams is not None  # a session of the hparams dashboard, to be ended
        if hparams is not None:
            from torch.utils.tensorboard.summary import hparams as hparams_summaries

            exp, start, _ = hparams_summaries(hparams, {METRIC_TAG: None})
            self.writer.file_writer.add_summary(exp)
            self.writer.file_writer.add_summary(start)
            self.writer.flush()

    def _scalar(self, tag: str, value, step: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or (tag, step) in self.written:
            return
        self.writer.add_scalar(tag, float(value), step)
        self.written.add((tag, step))

    def epoch(self, epoch: int, figs: dict) -> None:
        """An epoch's figures (as the trainer's progress callback gives them), flushed to be seen at once."""
        self._lrs(epoch * self.spe - 1)  # the steps before the epoch's end, whose lr the figures hold: in step order
        for k, v in figs.items():
            self._scalar(_tag(k), v, epoch * self.spe)
        self.writer.flush()

    def _lrs(self, last: int) -> None:
        """The learning rate of the steps up to ``last`` (those written already are skipped)."""
        for s, v in enumerate(self.lrs[:last + 1]):
            self._scalar("lr", v, s)

    def finish(self, history: dict, metrics: dict | None = None) -> None:
        """The run's whole history (what ``history.json`` holds) and its final test figure (from ``metrics``, what
        ``metrics.json`` holds); ends the hparams session (success) and closes the file."""
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
        self._lrs(len(self.lrs))
        if metrics is not None:
            from .metrics import value

            self._scalar(METRIC_TAG, value(metrics, "test"), len(loss))
        self.close(finished=True)

    def close(self, finished: bool = False) -> None:
        """Close the file; the hparams session ends with success where the run ``finished``, else with failure."""
        if self.session:
            from tensorboard.plugins.hparams import api_pb2

            status = api_pb2.STATUS_SUCCESS if finished else api_pb2.STATUS_FAILURE
            self.writer.file_writer.add_summary(_session_end(status))
            self.session = False
        self.writer.close()


def run_log(root: str | Path, run_id: str, steps_per_epoch: int, *, hparams: dict | None = None,
            lrs: Callable[[], Sequence[float]] | None = None) -> RunLog | None:
    """The run's log when :data:`ENV` asks for one, else None; ``lrs`` (the learning rate after each step) is called
    only then."""
    if not os.environ.get(ENV):
        return None
    return RunLog(root, run_id, steps_per_epoch, hparams=hparams, lrs=lrs() if lrs is not None else ())
