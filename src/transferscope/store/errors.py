"""What goes wrong with a results folder, as exceptions that the command line reports in one line: a folder in use,
of another format, a stored file that cannot be read or no longer matches its recorded hash, a disk that cannot
take a write (:func:`write_error`, :func:`writing`).
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

from ..config import ConfigError

__all__ = ["StoreError", "StoreLocked", "StoreFormatError", "StoredFileError", "RunDamaged", "StoreWriteError",
           "write_error", "writing"]


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


def write_error(e: OSError, path: str | Path, elsewhere: str = "another --results folder") -> StoreWriteError | OSError:
    """``e`` as the one-line :class:`StoreWriteError` when it is a disk that cannot take the write (full, read-only,
    no permission); else ``e`` itself. ``elsewhere`` is the way round it the line offers."""
    why = _WRITE_ERRNOS.get(e.errno)
    if why is None:
        return e
    advice = (f"free some space (or use {elsewhere})" if e.errno in (errno.ENOSPC, errno.EDQUOT) else
              f"make the folder writable (or use {elsewhere})")
    return StoreWriteError(f"cannot write {path}: {why}; {advice} and run the same command again; what was written "
                           "before is kept")


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
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
