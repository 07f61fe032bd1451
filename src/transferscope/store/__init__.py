"""The results folder: one folder per run, keyed by a hash of its resolved config; atomic writes; a lock.

Layout::

    RESULTS/
      .lock                     held (flock) by the one process that writes this folder
      FORMAT                    the results-folder format (:data:`RESULTS_FORMAT`), written by ``run``
      study.json                the resolved study config of the last ``run``
      threads.json              the torch threads every run of the study is trained with (fixed by its first ``run``)
      runs/<run_id>/            written whole into runs/.tmp-* and renamed into place when the run ends
      runs/.claims/<run_id>     a run claimed by one process (the Ray executor): O_EXCL-created, mtime = heartbeat
        run.json                spec, seed, status (done / failed + reason), versions, git commit, timing, and
                                ``artefacts``: the sha256 of every other file of the folder (path -> hex digest)
        metrics.json            final figures
        history.json            per-step and per-epoch records
        predictions.npz         test logits, labels, and pool indices
        init.safetensors        weights at step 0 (theta^0: P with a new head, or RI)
        weights.safetensors     final weights
        checkpoints/epoch_*.safetensors   pre-training checkpoints (P runs)

Weights are safetensors; arrays are ``.npz`` read with ``allow_pickle=False``: nothing here unpickles.
A study killed at any point (even SIGKILL) leaves either a whole run folder or none, plus ``.tmp-*``
leftovers that the next ``run`` removes.

Every read of a finished run's file checks it against the sha256 its ``run.json`` recorded (:meth:`Store.artefact`);
a file changed, truncated, missing or not parsable raises :class:`RunDamaged`, which names the run, the file and
the recovery (``transferscope run --results RESULTS --rerun RUN_ID``). Files are written through one path
(:func:`write_new`, :func:`atomic_write_bytes`) with the modes of the user's umask; a disk that is full or
read-only raises :class:`StoreWriteError` (one line: what could not be written, and why) and loses nothing that
was written before.

Format versions: 1 (no ``FORMAT`` file) hashed every config field into run ids, defaults included; 2 hashes only
the fields off their default (:meth:`transferscope.study.plan.RunSpec.hashed`) and records artefact hashes. A
folder of another format is refused (:class:`StoreFormatError`), never silently retrained.

The package keeps one job per module: :mod:`~transferscope.store.folder` (:class:`Store`, the folder and its runs),
:mod:`~transferscope.store.files` (the one way files are written, hashed and read back),
:mod:`~transferscope.store.claims` (the folder's lock and the per-run claims of the Ray executor) and
:mod:`~transferscope.store.errors`. Every name is imported from here, ``transferscope.store``, as when the package
was one module.
"""

from .claims import CLAIM_HEARTBEAT_S, CLAIM_STALE_S, RunClaim
from .errors import (
    RunDamaged,
    StoredFileError,
    StoreError,
    StoreFormatError,
    StoreLocked,
    StoreWriteError,
    write_error,
    writing,
)
from .files import (
    atomic_write_bytes,
    atomic_write_text,
    dumps,
    file_sha256,
    hash_artefacts,
    make_dirs,
    read_analysis_index,
    read_stored_json,
    rerun_hint,
    study_recovery,
    write_json,
    write_new,
    write_npz,
)
from .folder import RESULTS_FORMAT, RUN_DONE, RUN_FAILED, Store

__all__ = ["Store", "StoreError", "StoreLocked", "StoreFormatError", "RunDamaged", "StoredFileError",
           "StoreWriteError", "atomic_write_text", "atomic_write_bytes", "write_new", "write_json", "read_stored_json",
           "read_analysis_index",
           "rerun_hint", "file_sha256", "hash_artefacts", "RUN_DONE", "RUN_FAILED", "RESULTS_FORMAT", "RunClaim",
           "CLAIM_HEARTBEAT_S", "CLAIM_STALE_S", "write_error", "writing", "dumps", "make_dirs", "study_recovery", "write_npz"]
