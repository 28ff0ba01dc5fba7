"""One SQLite writer at a time on this machine, handed over the moment the last one finishes.

SQLite lets one connection write at a time. A writer that finds the write lock taken waits in
SQLite's busy handler, which sleeps and retries in steps growing to 100 ms: when `foundry serve`'s
web writer and its worker loops (or another process) take turns, a waiting request sleeps past
the moment the lock is free, and under load the waits pile up into seconds. So writes first take
a turn: a lock shared by this process's threads (the next waiter runs as soon as it is
released), then an advisory `flock` on a file beside the database, which the kernel hands to
the next process. Reads never take a turn (WAL lets them run beside the writer).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from foundry.errors import DatabaseUnavailable

# How often a writer looks again while another process holds the turn: short beside SQLite's
# 100 ms steps; the wait within this process needs no polling.
RETRY_S = 0.001


class WriteTurn:
    """The turn to write on one SQLite file, shared by every `WriteTurn` of that file in this
    process; `path` None (an in-memory database) is this process only."""

    def __init__(self, path: str | None, *, wait_s: float) -> None:
        self._wait_s = wait_s
        self._shared = _shared(path)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        shared, deadline = self._shared, time.monotonic() + self._wait_s
        if not shared.lock.acquire(timeout=self._wait_s):
            raise DatabaseUnavailable("another writer held the database for too long")
        try:
            if shared.depth == 0:
                shared.fd = _lock_file(shared.path, deadline)
            shared.depth += 1
            try:
                yield
            finally:
                shared.depth -= 1
                if shared.depth == 0 and shared.fd is not None:
                    os.close(shared.fd)  # closing the file releases its lock
                    shared.fd = None
        finally:
            shared.lock.release()


@dataclass
class _Shared:
    path: str | None
    lock: threading.RLock = field(default_factory=threading.RLock)  # re-entrant: a holder may nest
    depth: int = 0  # how deep the holder is: the file is locked at the outermost turn only
    fd: int | None = None  # the locked file, open only while a turn is held


_by_path: dict[str | None, _Shared] = {}
_by_path_guard = threading.Lock()


def _shared(path: str | None) -> _Shared:
    with _by_path_guard:
        return _by_path.setdefault(path, _Shared(path))


def _lock_file(path: str | None, deadline: float) -> int | None:
    """The lock file beside the database, open and locked (no file descriptor is kept between
    turns, however many databases a process opens)."""
    if path is None:
        return None
    fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise DatabaseUnavailable("another process held the database for too long") from None
            time.sleep(RETRY_S)


def database_path(url: str) -> str | None:
    """The file of a `sqlite:///…` URL, or None for an in-memory database."""
    path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
    return None if path in ("", ":memory:") else os.path.abspath(path)
