"""A results folder (:class:`Store`): its lock and claims, its format, the study's files and the runs, each written
whole into a temporary folder and renamed into place, and read back only after its files match the sha256 recorded
when it ended. The layout is in :mod:`transferscope.store`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .claims import CLAIM_STALE_S, RunClaim, exclusive_lock, read_claim, take_over
from .errors import RunDamaged, StoredFileError, StoreFormatError, StoreLocked, writing
from .files import (
    atomic_write_text,
    dumps,
    fsync_dir,
    make_dirs,
    read_stored_json,
    rerun_hint,
    study_recovery,
    verified_sha256,
    write_new,
)

__all__ = ["Store", "RUN_DONE", "RUN_FAILED", "RESULTS_FORMAT"]

RUN_DONE = "done"
RUN_FAILED = "failed"
RESULTS_FORMAT = 2
"""The format of the results folders this version writes (the ``FORMAT`` file at their root)."""



class Store:
    """A results folder. Reading needs no lock; writing runs needs :meth:`lock`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"

    # ------------------------------------------------------------ locking
    @contextlib.contextmanager
    def lock(self, claims: bool = True) -> Iterator[None]:
        """Hold the folder's lock for the duration; raise StoreLocked at once if another process has it, or (with
        ``claims``) if a run of the folder is claimed by a live process (a study on Ray is training it).

        Take it before writing anything: a refused writer writes nothing. One lock covers the whole folder (the
        study's files and every run): the local executor's. The Ray executor, whose runs train on several machines
        over a shared (possibly network) file system where ``flock`` is unreliable, takes a per-run claim
        (:meth:`claim`: ``runs/.claims/<run_id>``, an exclusive create with a heartbeat) for each run instead."""
        make_dirs(self.root)
        with exclusive_lock(self.root / ".lock", f"results folder {self.root} is being written by another process "
                                             "(pid {pid}); wait for it to finish or stop it"):
            if claims:
                for rid in self.claimed_runs():
                    h = self.claim_holder(rid)
                    if h is not None and not h["stale"]:
                        raise StoreLocked(
                            f"results folder {self.root} is being written by a study on Ray: run {rid} is claimed by "
                            f"{h.get('owner') or 'another process'} on {h.get('host')} (pid {h.get('pid')}); wait for "
                            f"it to finish (a claim untouched for {CLAIM_STALE_S:g} s is stale and ignored)")
            yield

    # ------------------------------------------------------------ per-run claims
    @property
    def claims(self) -> Path:
        return self.runs / ".claims"

    def claim(self, run_id: str, stale_after: float = CLAIM_STALE_S, owner: str = "") -> RunClaim | None:
        """Claim a run for this process (:class:`RunClaim`): an atomic exclusive create of
        ``runs/.claims/<run_id>``, which needs no lock and works on a network file system (``flock`` may not).
        None when another process holds a live claim on it; a claim untouched for ``stale_after`` seconds (its
        holder died) is taken over. The holder touches it (:meth:`RunClaim.heartbeat`) while the run trains and
        releases it when the run is stored."""
        make_dirs(self.claims)
        path = self.claims / run_id
        token = secrets.token_hex(8)
        body = dumps({"token": token, "owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
                      "claimed": time.time()}).encode()
        for _ in range(5):
            try:
                write_new(path, body, exclusive=True)
            except FileExistsError:
                if not take_over(path, stale_after):
                    return None
                continue
            return RunClaim(path, token)
        return None

    def claim_holder(self, run_id: str, stale_after: float = CLAIM_STALE_S) -> dict | None:
        """Who holds the claim on a run (owner, host, pid, ``age``: seconds since its last heartbeat, ``stale``);
        None when it is not claimed."""
        path = self.claims / run_id
        d = read_claim(path)
        if d is None:
            return None
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        return {**d, "age": age, "stale": age >= stale_after}

    def claimed_runs(self) -> list[str]:
        """The runs with a claim file (live or stale)."""
        if not self.claims.is_dir():
            return []
        return sorted(p.name for p in self.claims.iterdir() if not p.name.startswith("."))

    def claimed_live(self, run_id: str, stale_after: float = CLAIM_STALE_S) -> bool:
        """Whether a run is claimed by a process whose heartbeat is fresh."""
        h = self.claim_holder(run_id, stale_after)
        return h is not None and not h["stale"]

    # ------------------------------------------------------------ format
    def format_version(self) -> int | None:
        """The format recorded in ``FORMAT``; None when there is none (a new folder, or one of format 1)."""
        p = self.root / "FORMAT"
        if not p.is_file():
            return None
        try:
            return int(p.read_text().strip())
        except (ValueError, UnicodeDecodeError):
            raise StoreFormatError(f"results folder {self.root}: FORMAT holds {p.read_bytes()[:20]!r}, not a "
                                   f"format number (this version writes {RESULTS_FORMAT})") from None

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
            "... --results NEW_FOLDER), or read this one with the version of transferscope that wrote it"
            + (f"; runs copied from a folder of format {RESULTS_FORMAT} need its FORMAT file beside them" if v is None
               else "") + ".")

    def write_format(self) -> None:
        """Record :data:`RESULTS_FORMAT` (after :meth:`check_format`, with the lock held)."""
        if self.format_version() != RESULTS_FORMAT:
            atomic_write_text(self.root / "FORMAT", f"{RESULTS_FORMAT}\n")

    def clean_tmp(self, live: Callable[[str], bool] | None = None) -> int:
        """Remove the leftovers of runs that were in flight when a process died. Call with the lock held, or (with
        per-run claims, :meth:`claim`) with ``live``: the runs claimed by a live process, whose folders being
        written are kept."""
        n = 0
        if self.runs.is_dir():
            for p in self.runs.glob(".tmp-*"):
                rid = p.name[len(".tmp-"):].removeprefix("removed-").rsplit("-", 1)[0]
                if live is not None and live(rid):
                    continue
                shutil.rmtree(p, ignore_errors=True)
                n += 1
        return n

    # ------------------------------------------------------------ the study
    def read_study(self) -> dict:
        """``study.json``, as a dict; :class:`StoredFileError` naming it when it is unreadable."""
        return read_stored_json(self.root / "study.json", study_recovery(self.root))

    def study_config(self):
        """``study.json`` as the :class:`~transferscope.config.StudyConfig` it records; a value that is not what the
        study allows (``"seeds": "abc"``, another shape) is a :class:`StoredFileError` naming the file, the key and
        the way out, as an unreadable file is."""
        from ..config import ConfigError, StudyConfig, from_dict

        d = self.read_study()
        try:
            if not isinstance(d, dict):
                raise ConfigError(f"expected a study (a JSON object), got a {type(d).__name__}")
            return from_dict(StudyConfig, d)
        except (ConfigError, TypeError, ValueError, AttributeError) as e:
            raise StoredFileError(f"{self.root / 'study.json'}: {e}; {study_recovery(self.root)}") from None

    def recorded_threads(self) -> int | None:
        """The torch threads per run this study's first ``run`` fixed (``threads.json``); None when not recorded."""
        p = self.root / "threads.json"
        if not p.is_file():
            return None
        d = read_stored_json(p, f"remove it: the next transferscope run --results {self.root} writes it again")
        t = d.get("threads") if isinstance(d, dict) else None
        if not isinstance(t, int) or t < 1:
            raise StoredFileError(f"{p}: 'threads' is {t!r}, not a positive whole number; remove it: the next "
                                  f"transferscope run --results {self.root} writes it again")
        return t

    def record_threads(self, threads: int) -> None:
        atomic_write_text(self.root / "threads.json", dumps({"threads": int(threads)}))

    # ------------------------------------------------------------ runs
    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def run_status(self, run_id: str) -> str | None:
        """``done``, ``failed`` or None (not run, or in flight)."""
        info = self.run_info(run_id)
        return None if info is None else info.get("status")

    def run_info(self, run_id: str) -> dict | None:
        """The run's ``run.json``; None when the run is not stored. :class:`RunDamaged` when it cannot be read."""
        p = self.run_dir(run_id) / "run.json"
        if not p.is_file():
            return None
        try:
            info = read_stored_json(p, rerun_hint(self.root, run_id))
        except StoredFileError as e:
            raise RunDamaged(f"run {run_id}: {e}", run_id, "run.json") from None
        if not isinstance(info, dict):
            raise RunDamaged(f"run {run_id}: {p} holds no run record; {rerun_hint(self.root, run_id)}", run_id,
                             "run.json")
        return info

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
        A run with a mismatch needs to be trained again (``transferscope run --results RESULTS --rerun RUN_ID``)."""
        info = self.run_info(run_id)
        if info is None or info.get("status") != RUN_DONE:
            return []
        recorded = info.get("artefacts")
        if not recorded:
            return ["run.json"]
        d = self.run_dir(run_id)
        return sorted(name for name, digest in recorded.items()
                      if not (d / name).is_file() or verified_sha256(d / name) != digest)

    def artefact(self, run_id: str, name: str) -> Path:
        """The path of file ``name`` of a stored run, checked against the sha256 its run.json recorded when it
        ended: :class:`RunDamaged` (naming the run, the file and the recovery) when it is missing or differs. A file
        the run recorded no hash for is only checked to exist."""
        p = self.run_dir(run_id) / name
        recorded = self.artefact_hashes(run_id).get(name)
        if not p.is_file():
            raise RunDamaged(f"run {run_id}: {name} is missing; {rerun_hint(self.root, run_id)}", run_id, name)
        if recorded is not None and verified_sha256(p) != recorded:
            raise RunDamaged(f"run {run_id}: {name} does not match the sha256 recorded when the run ended (truncated, "
                             f"changed or corrupted); {rerun_hint(self.root, run_id)}", run_id, name)
        return p

    def damaged(self, run_id: str, name: str, e: Exception) -> RunDamaged:
        """:class:`RunDamaged` for a file of a run that was found but could not be parsed (``e``)."""
        return RunDamaged(f"run {run_id}: {self.run_dir(run_id) / name} cannot be read ({type(e).__name__}: {e}); "
                          f"{rerun_hint(self.root, run_id)}", run_id, name)

    def read_json(self, run_id: str, name: str) -> Any:
        """A JSON file of a stored run (checked, :meth:`artefact`)."""
        p = self.artefact(run_id, name)
        try:
            return read_stored_json(p, rerun_hint(self.root, run_id))
        except StoredFileError as e:
            raise RunDamaged(f"run {run_id}: {e}", run_id, name) from None

    def read_npz(self, run_id: str, name: str = "predictions.npz") -> dict[str, np.ndarray]:
        """The arrays of an ``.npz`` file of a stored run (checked, :meth:`artefact`; never unpickled)."""
        p = self.artefact(run_id, name)
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as e:  # BadZipFile, EOFError, ValueError, KeyError, zlib.error ...
            raise self.damaged(run_id, name, e) from None

    def remove_run(self, run_id: str) -> None:
        """Remove a stored run (to train it again). Call with the lock held. Renamed away first, so that a process
        killed meanwhile leaves a leftover that :meth:`clean_tmp` removes, not half a run."""
        d = self.run_dir(run_id)
        if d.exists():
            tmp = self.runs / f".tmp-removed-{run_id}-{secrets.token_hex(4)}"
            with writing(d):
                os.replace(d, tmp)
            shutil.rmtree(tmp, ignore_errors=True)

    @contextlib.contextmanager
    def new_run(self, run_id: str) -> Iterator[Path]:
        """A temporary folder to write a run into; renamed to ``runs/<run_id>`` when the block ends cleanly.

        A failed run folder of the same id is replaced (a retry); a finished one is never overwritten. The first
        run written into a folder records its format (``FORMAT``), so that a folder with runs always says it.
        Folders are made 0777 and files (:func:`write_new`) 0666, less the umask. A disk that is full or read-only
        raises :class:`StoreWriteError` and leaves no part of the run.
        """
        if not self.list_runs() and self.format_version() is None:
            self.write_format()
        make_dirs(self.runs)
        tmp = self.runs / f".tmp-{run_id}-{secrets.token_hex(4)}"
        with writing(tmp):
            tmp.mkdir()
        try:
            with writing(tmp):
                yield tmp
            final = self.run_dir(run_id)
            if final.exists():
                if self.run_status(run_id) == RUN_DONE:
                    shutil.rmtree(tmp)
                    return
                shutil.rmtree(final)
            with writing(final):
                os.replace(tmp, final)
                fsync_dir(self.runs)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
