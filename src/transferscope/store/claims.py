"""Who may write a results folder: the folder's lock (an ``flock`` held by the local executor's one process,
:func:`exclusive_lock`) and the per-run claims of the Ray executor (:class:`RunClaim`: an exclusive create with a
heartbeat, which works on a network file system where ``flock`` may not).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import StoreLocked, writing

__all__ = ["exclusive_lock", "CLAIM_HEARTBEAT_S", "CLAIM_STALE_S", "RunClaim", "read_claim", "take_over"]


@contextlib.contextmanager
def exclusive_lock(path: Path, busy: str) -> Iterator[None]:
    """Hold an flock on ``path`` (created when missing; it holds the holder's pid) for the block; raise StoreLocked
    with ``busy`` (``{pid}`` filled in) at once if another process holds it. The kernel releases it when the
    process dies, so a killed holder never leaves it stale."""
    with writing(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise StoreLocked(busy.format(pid=holder or "?")) from None
        with writing(path):
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
        return (read_claim(self.path) or {}).get("token") == self.token

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


def read_claim(path: Path) -> dict | None:
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


def take_over(path: Path, stale_after: float) -> bool:
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
