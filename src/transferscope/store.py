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
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import jsonio
from .config import ConfigError

__all__ = ["Store", "StoreError", "StoreLocked", "StoreFormatError", "RunDamaged", "StoredFileError",
           "StoreWriteError", "atomic_write_text", "atomic_write_bytes", "write_new", "write_json", "read_stored_json",
           "rerun_hint", "file_sha256", "hash_artefacts", "RUN_DONE", "RUN_FAILED", "RESULTS_FORMAT", "RunClaim",
           "CLAIM_HEARTBEAT_S", "CLAIM_STALE_S"]

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


class StoredFileError(StoreError):
    """A stored file (``study.json``, an analysis result, ...) cannot be read: the message names it, says what is
    wrong and how to recover."""


class RunDamaged(StoredFileError):
    """A file of a finished run is missing, changed since the run ended (its sha256 differs from the one recorded),
    or cannot be parsed. The run needs to be trained again (``--rerun RUN_ID``); nothing is read from it."""

    def __init__(self, message: str, run_id: str = "", file: str = "") -> None:
        super().__init__(message)
        self.run_id, self.file = run_id, file

    def __reduce__(self):  # crosses from a worker process to the parent
        return type(self), (str(self), self.run_id, self.file)


class StoreWriteError(StoreError):
    """A file of the results folder cannot be written (disk full, read-only, no permission). What was written
    before is kept (writes are atomic)."""


_WRITE_ERRNOS = {errno.ENOSPC: "no space left on device (ENOSPC)", errno.EDQUOT: "disk quota exceeded (EDQUOT)",
                 errno.EROFS: "read-only file system (EROFS)", errno.EACCES: "permission denied (EACCES)",
                 errno.EPERM: "operation not permitted (EPERM)"}


def write_error(e: OSError, path: str | Path) -> StoreWriteError | OSError:
    """``e`` as the one-line :class:`StoreWriteError` when it is a disk that cannot take the write (full, read-only,
    no permission); else ``e`` itself."""
    why = _WRITE_ERRNOS.get(e.errno)
    if why is None:
        return e
    advice = ("free some space (or use another --results folder)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else
              "make the folder writable (or use another --results folder)")
    return StoreWriteError(f"cannot write {path}: {why}; {advice} and run the same command again; what was written "
                           "before is kept")


@contextlib.contextmanager
def _writing(path: str | Path) -> Iterator[None]:
    """Turn a full or read-only disk under this block into a :class:`StoreWriteError` naming ``path``."""
    try:
        yield
    except StoreWriteError:
        raise
    except OSError as e:
        err = write_error(e, e.filename or path)
        if err is e:
            raise
        raise err from None


def rerun_hint(root: str | Path, run_id: str) -> str:
    """The command that trains a damaged run again."""
    return f"it needs to be trained again: transferscope run --results {root} --rerun {run_id}"


def _json_problem(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8: byte {e.object[e.start:e.start + 1]!r} at position {e.start}"
    return f"{type(e).__name__}: {e}"


def read_stored_json(path: str | Path, recovery: str) -> Any:
    """A stored JSON file, or :class:`StoredFileError` naming it, what is wrong and ``recovery`` (what to do)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoredFileError(f"{path} is missing; {recovery}") from None
    try:
        return jsonio.loads(data)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise StoredFileError(f"{path} is not valid JSON ({_json_problem(e)}); {recovery}") from None


def study_recovery(root: str | Path) -> str:
    return (f"it is rewritten by running the study again: transferscope run STUDY.toml --results {root} "
            "(finished runs are kept)")


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


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new(path: str | Path, data: bytes, *, fsync: bool = False, exclusive: bool = False) -> None:
    """Write ``path`` (``exclusive``: it must not exist) holding ``data``; a new file gets mode 0666 less the umask,
    like any file the user makes. The one way files are written here (so that every write reports a full or
    read-only disk the same way). Not atomic: for a file of a run being written (:meth:`Store.new_run`) or a
    temporary file; :func:`atomic_write_bytes` replaces a file in place."""
    path = Path(path)
    with _writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC), 0o666)
        try:
            _write_fd(fd, data)
            if fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)


def make_dirs(path: str | Path) -> None:
    """``mkdir -p`` (mode 0777 less the umask), reporting a full or read-only disk as :class:`StoreWriteError`."""
    with _writing(path):
        Path(path).mkdir(parents=True, exist_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename: ``path`` holds either
    its old content or the new one, even when the disk fills up or the process dies."""
    path = Path(path)
    make_dirs(path.parent)
    tmp = path.parent / f".tmp-{secrets.token_hex(4)}-{path.name}"
    try:
        write_new(tmp, data, fsync=True, exclusive=True)
        with _writing(path):
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


_VERIFIED: dict[tuple, str] = {}
"""(path, inode, size, mtime) -> sha256 of files already hashed by this process (analyses load the same weights
many times)."""


def _digest(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = file_sha256(path)
    return _VERIFIED[key]


@contextlib.contextmanager
def _exclusive(path: Path, busy: str) -> Iterator[None]:
    """Hold an flock on ``path`` (created when missing; it holds the holder's pid) for the block; raise StoreLocked
    with ``busy`` (``{pid}`` filled in) at once if another process holds it. The kernel releases it when the
    process dies, so a killed holder never leaves it stale."""
    with _writing(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise StoreLocked(busy.format(pid=holder or "?")) from None
        with _writing(path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock; the kernel does the same if the process dies


CLAIM_HEARTBEAT_S = 10.0
"""How often the holder of a run's claim touches it (its mtime) while the run trains."""
CLAIM_STALE_S = 120.0
"""A claim untouched for this long is stale: its holder is taken for dead and another process may take it over.
Far above :data:`CLAIM_HEARTBEAT_S`, and above the clock difference between the nodes that share a results folder."""


class RunClaim:
    """A run claimed by one process: the file ``runs/.claims/<run_id>``, made by an atomic exclusive create
    (``O_EXCL``: of several processes, on any node, one makes it), holding its owner's token, host and pid. Its
    mtime is the heartbeat (:meth:`touch`); one untouched for longer than the stale timeout may be taken over
    (:meth:`Store.claim`). Picklable: a claim taken by one process can be kept alive by another (the one that
    trains)."""

    def __init__(self, path: str | Path, token: str) -> None:
        self.path, self.token = Path(path), token

    def __repr__(self) -> str:
        return f"RunClaim({str(self.path)!r})"

    @property
    def run_id(self) -> str:
        return self.path.name

    def owned(self) -> bool:
        """Whether the claim file is still this claim (not released, not taken over)."""
        return (_read_claim(self.path) or {}).get("token") == self.token

    def touch(self) -> bool:
        """The heartbeat: set the claim's mtime to now. False when the claim is no longer this one's."""
        if not self.owned():
            return False
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path)
            return True
        return False

    def release(self) -> None:
        """Remove the claim, if it is still this one's."""
        if self.owned():
            self.path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def heartbeat(self, every: float = CLAIM_HEARTBEAT_S) -> Iterator[None]:
        """Touch the claim every ``every`` seconds from a background thread for the duration of the block (the
        thread dies with the process: a killed holder's claim goes stale)."""
        import threading

        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                with contextlib.suppress(OSError):
                    self.touch()

        t = threading.Thread(target=beat, name=f"claim-{self.run_id}", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=every + 1)


def _read_claim(path: Path) -> dict | None:
    """The content of a claim file; None when there is none; ``{}`` while its maker is still writing it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        d = json.loads(data)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _take_over(path: Path, stale_after: float) -> bool:
    """Remove the claim at ``path`` if it is stale (untouched for ``stale_after`` s). True when there is no claim
    any more (removed here, or gone meanwhile): try the exclusive create again; False when it is live."""
    try:
        if time.time() - path.stat().st_mtime < stale_after:
            return False
    except FileNotFoundError:
        return True
    aside = path.with_name(f".stale-{path.name}-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)  # atomic: of two processes taking it over, one moves it
    except FileNotFoundError:
        return True
    try:
        if time.time() - aside.stat().st_mtime < stale_after:
            # it was replaced by a fresh claim between the check and the rename: put that one back, unless yet
            # another claim was made meanwhile (link, like O_EXCL, never replaces a file)
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
            return False
        return True
    finally:
        aside.unlink(missing_ok=True)


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
        with _exclusive(self.root / ".lock", f"results folder {self.root} is being written by another process "
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
                if not _take_over(path, stale_after):
                    return None
                continue
            return RunClaim(path, token)
        return None

    def claim_holder(self, run_id: str, stale_after: float = CLAIM_STALE_S) -> dict | None:
        """Who holds the claim on a run (owner, host, pid, ``age``: seconds since its last heartbeat, ``stale``);
        None when it is not claimed."""
        path = self.claims / run_id
        d = _read_claim(path)
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
            "... --results NEW_FOLDER), or read this one with the version of transferscope that wrote it.")

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
                      if not (d / name).is_file() or _digest(d / name) != digest)

    def artefact(self, run_id: str, name: str) -> Path:
        """The path of file ``name`` of a stored run, checked against the sha256 its run.json recorded when it
        ended: :class:`RunDamaged` (naming the run, the file and the recovery) when it is missing or differs. A file
        the run recorded no hash for is only checked to exist."""
        p = self.run_dir(run_id) / name
        recorded = self.artefact_hashes(run_id).get(name)
        if not p.is_file():
            raise RunDamaged(f"run {run_id}: {name} is missing; {rerun_hint(self.root, run_id)}", run_id, name)
        if recorded is not None and _digest(p) != recorded:
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
            with _writing(d):
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
        with _writing(tmp):
            tmp.mkdir()
        try:
            with _writing(tmp):
                yield tmp
            final = self.run_dir(run_id)
            if final.exists():
                if self.run_status(run_id) == RUN_DONE:
                    shutil.rmtree(tmp)
                    return
                shutil.rmtree(final)
            with _writing(final):
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
    """A new JSON file in a run folder being written (:meth:`Store.new_run`)."""
    write_new(Path(folder) / name, dumps(obj).encode())


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """A new ``.npz`` file (:func:`write_new`)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_new(path, buf.getvalue())
