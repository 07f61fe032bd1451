"""The one way the results folder's files are written (:func:`write_new`, :func:`atomic_write_bytes`), hashed
(:func:`file_sha256`) and read back (:func:`read_stored_json`): every write reports a full or read-only disk the
same way, and every read of a damaged file names it and the way to recover.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from .. import jsonio
from .errors import StoredFileError, writing

__all__ = ["rerun_hint", "read_stored_json", "read_analysis_index",
           "study_recovery", "file_sha256", "hash_artefacts", "dumps", "write_new",
           "make_dirs", "atomic_write_bytes", "atomic_write_text", "verified_sha256", "fsync_dir", "write_json",
           "write_npz"]


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


def read_analysis_index(path: str | Path, root: str | Path) -> dict[str, dict[str, str]]:
    """An ``analyses/index*.json`` of the results folder ``root``: an object whose ``results`` and ``images`` map
    names to files of the folder the index is in. Anything else (not JSON, another shape, a file named outside that
    folder: an absolute path, ``..``, a link that leads out) is a :class:`StoredFileError` naming the index and the
    way out; no file it names is read before every one is checked."""
    path = Path(path)
    recovery = f"remove it: transferscope analyze {root} writes it again"
    d = read_stored_json(path, recovery)
    if not isinstance(d, dict) or not all(isinstance(d.get(k, {}), dict) for k in ("results", "images")):
        raise StoredFileError(f"{path}: not an index of analyses (expected an object whose 'results' and 'images' map "
                              f"names to file names); {recovery}")
    folder = path.parent.resolve()
    for section in ("results", "images"):
        for name, file in d.get(section, {}).items():
            inside = isinstance(file, str) and file and not Path(file).is_absolute() and ".." not in Path(file).parts
            if inside:
                inside = (folder / file).resolve().is_relative_to(folder)
            if not inside:
                raise StoredFileError(f"{path}: {section} entry {name!r} names {file!r}, not a file of {path.parent}; "
                                      f"{recovery}")
    return {"results": dict(d.get("results", {})), "images": dict(d.get("images", {})),
            **{k: v for k, v in d.items() if k not in ("results", "images")}}


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
    with writing(path):
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
    with writing(path):
        Path(path).mkdir(parents=True, exist_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename: ``path`` holds either
    its old content or the new one, even when the disk fills up or the process dies."""
    path = Path(path)
    make_dirs(path.parent)
    tmp = path.parent / f".tmp-{secrets.token_hex(4)}-{path.name}"
    try:
        write_new(tmp, data, fsync=True, exclusive=True)
        with writing(path):
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


_VERIFIED: dict[tuple, str] = {}
"""(path, inode, size, mtime) -> sha256 of files already hashed by this process (analyses load the same weights
many times)."""


def verified_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = file_sha256(path)
    return _VERIFIED[key]


def fsync_dir(path: Path) -> None:
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
