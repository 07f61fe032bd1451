"""The results folder: one folder per run, keyed by a hash of its resolved config; atomic writes; a lock.

Layout::

    RESULTS/
      .lock                     held (flock) by the one process that writes this folder
      FORMAT                    the results-folder format (:data:`RESULTS_FORMAT`), written by ``run``
      study.json                the resolved study config of the last ``run``
      runs/<run_id>/            written whole into runs/.tmp-* and renamed into place when the run ends
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

Format versions: 1 (no ``FORMAT`` file) hashed every config field into run ids, defaults included; 2 hashes only
the fields off their default (:meth:`transferscope.study.plan.RunSpec.hashed`) and records artefact hashes. A
folder of another format is refused (:class:`StoreFormatError`), never silently retrained.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import jsonio
from .config import ConfigError

__all__ = ["Store", "StoreError", "StoreLocked", "StoreFormatError", "atomic_write_text", "atomic_write_bytes",
           "file_sha256", "hash_artefacts", "RUN_DONE", "RUN_FAILED", "RESULTS_FORMAT"]

RUN_DONE = "done"
RUN_FAILED = "failed"
RESULTS_FORMAT = 2
"""The format of the results folders this version writes (the ``FORMAT`` file at their root)."""


class StoreError(RuntimeError):
    """A results folder cannot be used as it is."""


class StoreLocked(StoreError):
    """Another process is writing this results folder."""


class StoreFormatError(StoreError, ConfigError):
    """The results folder was written by another version of transferscope, in another format. (Also a
    ConfigError, so that the command line reports it as a user error: a results folder that does not fit.)"""


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_artefacts(folder: str | Path) -> dict[str, str]:
    """sha256 of every file under a run folder but ``run.json``, by path relative to the folder (``/``-separated)."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() != "run.json"}


def dumps(obj: Any) -> str:
    """JSON in the project's one encoding (:mod:`transferscope.jsonio`: non-finite floats as strings)."""
    return jsonio.dumps(obj)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix="-" + path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


class Store:
    """A results folder. Reading needs no lock; writing runs needs :meth:`lock`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"

    # ------------------------------------------------------------ locking
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock for the duration; raise StoreLocked at once if another process has it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                raise StoreLocked(
                    f"results folder {self.root} is being written by another process (pid {holder or '?'}); "
                    "wait for it to finish or stop it"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the flock; the kernel does the same if the process dies

    # ------------------------------------------------------------ format
    def format_version(self) -> int | None:
        """The format recorded in ``FORMAT``; None when there is none (a new folder, or one of format 1)."""
        p = self.root / "FORMAT"
        if not p.is_file():
            return None
        try:
            return int(p.read_text().strip())
        except ValueError:
            raise StoreFormatError(f"results folder {self.root}: FORMAT holds {p.read_text()[:20]!r}, not a "
                                   "format number") from None

    def check_format(self) -> None:
        """Refuse a folder this version cannot read: runs stored without a ``FORMAT`` file (format 1, whose run
        ids differ: its runs would not be found and would be trained again) or a format other than
        :data:`RESULTS_FORMAT`. A folder without runs is fine."""
        v = self.format_version()
        if v == RESULTS_FORMAT:
            return
        if v is not None and v > RESULTS_FORMAT:
            raise StoreFormatError(
                f"results folder {self.root} was written by a newer version of transferscope (results format {v}; "
                f"this version reads format {RESULTS_FORMAT}); upgrade transferscope, or use another results folder")
        n = len(self.list_runs())
        if v is None and n == 0:
            return
        raise StoreFormatError(
            f"results folder {self.root} was written by an older version of transferscope (results format {v or 1}; "
            f"this version reads and writes format {RESULTS_FORMAT}, whose run ids differ), so its {n} runs would not "
            "be found and would all be trained again. Run the study into a new results folder (transferscope run "
            "... --results NEW_FOLDER), or read this one with the version of transferscope that wrote it.")

    def write_format(self) -> None:
        """Record :data:`RESULTS_FORMAT` (after :meth:`check_format`, with the lock held)."""
        if self.format_version() != RESULTS_FORMAT:
            atomic_write_text(self.root / "FORMAT", f"{RESULTS_FORMAT}\n")

    def clean_tmp(self) -> int:
        """Remove the leftovers of runs that were in flight when a process died. Call with the lock held."""
        n = 0
        if self.runs.is_dir():
            for p in self.runs.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)
                n += 1
        return n

    # ------------------------------------------------------------ runs
    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def run_status(self, run_id: str) -> str | None:
        """``done``, ``failed`` or None (not run, or in flight)."""
        info = self.run_info(run_id)
        return None if info is None else info.get("status")

    def run_info(self, run_id: str) -> dict | None:
        p = self.run_dir(run_id) / "run.json"
        if not p.is_file():
            return None
        return jsonio.read(p)

    def list_runs(self) -> list[str]:
        if not self.runs.is_dir():
            return []
        return sorted(p.name for p in self.runs.iterdir() if p.is_dir() and not p.name.startswith("."))

    def artefact_hashes(self, run_id: str) -> dict[str, str]:
        """The sha256 of every file of a finished run, as recorded in its run.json when it ended (path relative to
        the run folder -> hex digest; e.g. ``weights.safetensors``, ``checkpoints/epoch_1.safetensors``,
        ``metrics.json``). Empty for a run not stored, failed, or stored without them."""
        info = self.run_info(run_id)
        return dict(info.get("artefacts") or {}) if info else {}

    def verify_run(self, run_id: str) -> list[str]:
        """The files of a finished run that no longer match the hashes recorded when it ended (changed or
        missing), sorted; empty when all match. A finished run that recorded no hashes reports ``run.json``.
        A run with a mismatch needs to be trained again (remove its folder, then ``run``)."""
        info = self.run_info(run_id)
        if info is None or info.get("status") != RUN_DONE:
            return []
        recorded = info.get("artefacts")
        if not recorded:
            return ["run.json"]
        d = self.run_dir(run_id)
        return sorted(name for name, digest in recorded.items()
                      if not (d / name).is_file() or file_sha256(d / name) != digest)

    def read_json(self, run_id: str, name: str) -> Any:
        return jsonio.read(self.run_dir(run_id) / name)

    def read_npz(self, run_id: str, name: str = "predictions.npz") -> dict[str, np.ndarray]:
        with np.load(self.run_dir(run_id) / name, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    @contextlib.contextmanager
    def new_run(self, run_id: str) -> Iterator[Path]:
        """A temporary folder to write a run into; renamed to ``runs/<run_id>`` when the block ends cleanly.

        A failed run folder of the same id is replaced (a retry); a finished one is never overwritten. The first
        run written into a folder records its format (``FORMAT``), so that a folder with runs always says it.
        """
        if not self.list_runs() and self.format_version() is None:
            self.write_format()
        self.runs.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.runs, prefix=f".tmp-{run_id}-"))
        tmp.chmod(0o755)  # mkdtemp makes it private; a results folder is meant to be shared
        try:
            yield tmp
            final = self.run_dir(run_id)
            if final.exists():
                if self.run_status(run_id) == RUN_DONE:
                    shutil.rmtree(tmp)
                    return
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.runs)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(folder: Path, name: str, obj: Any) -> None:
    (folder / name).write_text(dumps(obj))
