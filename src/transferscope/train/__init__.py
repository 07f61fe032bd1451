"""One training loop for pre-training (P), fine-tuning (P-T) and training from scratch (RI-T).

Straight-line code in the manner of nanoGPT's ``train.py``: SGD with momentum on in-memory uint8 images,
a per-step record of the training loss and accuracy, a per-epoch evaluation on validation and test data,
the optimisation-speed figures of Neyshabur et al., and the per-example test predictions of the final model.

Both kinds of target are trained and evaluated on one loss, :func:`transferscope.task.loss`, which the labels'
shape picks: single-label targets (int64 labels (N,)) with cross-entropy, judged by top-1 accuracy; multi-label
targets (float32 labels (N, L), NaN = unknown; see :mod:`transferscope.metrics`) with a sigmoid and binary
cross-entropy per label, judged by the mean AUC over labels. A batch's AUC
means little, so a multi-label run records no per-step figure but the loss; its training curve is the mean AUC of
the model after every epoch on a fixed seeded subset of the training split (``TrainConfig.speed_examples``).
Every step runs on the model's device, in float32 or under autocast (``precision``); the host waits for the device
only every few dozen steps and at the end of each epoch.
Randomness comes only from ``seed``: same seed, same machine, same thread count, same precision: bitwise-identical
weights on the CPU. (On CUDA, some kernels are nondeterministic unless PyTorch's deterministic algorithms are on.)

One module per job: :mod:`~transferscope.train.loop` (:func:`train`), :mod:`~transferscope.train.record` (what a
run records, :class:`TrainResult`), :mod:`~transferscope.train.evaluation` (:func:`evaluate`),
:mod:`~transferscope.train.measures` (the speed figures and the weight deviation) and
:mod:`~transferscope.train.device` (device, precision, memory format). Every name is imported from here,
``transferscope.train``, as when the package was one module.
"""

from .device import PRECISIONS, choose_memory_format, keep_freed_memory, model_device
from .evaluation import evaluate
from .loop import learning_rates, train
from .measures import auc_speed, optimisation_speed, relative_deviation, speed_subset
from .record import TrainingDiverged, TrainResult

__all__ = ["TrainResult", "TrainingDiverged", "train", "evaluate", "optimisation_speed", "relative_deviation",
           "choose_memory_format", "model_device", "keep_freed_memory", "PRECISIONS", "auc_speed", "speed_subset",
           "learning_rates"]
