"""Wake idle worker loops when work is created, so the runner's poll is only a fallback.

Postgres: a background thread `LISTEN`s on a dedicated connection and sets `event` for every
notification; a dropped connection is reopened with backoff while the poll covers the gap.
SQLite: `event` is subscribed to this process's notifications (`foundry serve`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from foundry import logs
from foundry.db import notify

log = logs.get("foundry.worker.wake")

# How often the listening thread looks up from its connection to see whether it should stop:
# the latency of `close()`, not of a wake-up (a notification returns at once).
LOOK_UP_S = 1.0
# Reconnecting: start fast (a restarted database is usually back in a moment), cap low enough
# that the poll is not the only wake-up for long.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0


class Wake:
    """`event` is set when work may be waiting; the runner clears it before each pass."""

    def __init__(self, url: str, *, on_notify: Callable[[str], None] | None = None) -> None:
        self.event = threading.Event()
        self.backend_pid: int | None = None  # the listening connection's, once it listens
        self._listening = threading.Condition()
        self._url = url
        self._on_notify = on_notify
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Wake:
        if self._url.startswith("sqlite"):
            notify.subscribe(self.event)
            return self
        self._thread = threading.Thread(target=self._listen, name="foundry-wake", daemon=True)
        self._thread.start()
        return self

    def hearing(self) -> bool:
        """Whether notifications reach this worker now (a LISTEN is in place)."""
        return self.backend_pid is not None

    def wait_listening(self, timeout: float, *, not_on: int | None = None) -> bool:
        """Whether a LISTEN is in place (on another backend than `not_on`) within `timeout`."""
        with self._listening:
            return self._listening.wait_for(lambda: self.backend_pid not in (None, not_on), timeout=timeout)

    def _listens_on(self, backend_pid: int | None) -> None:
        with self._listening:
            self.backend_pid = backend_pid
            self._listening.notify_all()

    def close(self) -> None:
        notify.unsubscribe(self.event)
        self._closing.set()
        self.event.set()  # a runner waiting on it looks at its stop flag now
        if self._thread is not None:
            self._thread.join(timeout=LOOK_UP_S * 5)

    def _listen(self) -> None:
        backoff = BACKOFF_FIRST_S
        while not self._closing.is_set():
            try:
                self._listen_on(notify.Listening(self._url))
                backoff = BACKOFF_FIRST_S
            except Exception as exc:  # the listener must outlive any failure; the poll covers
                self._listens_on(None)
                log.warning("worker.wake_lost", error=str(exc), retry_in_s=backoff)
                self._closing.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _listen_on(self, listening: notify.Listening) -> None:
        try:
            self._listens_on(listening.backend_pid)
            self.event.set()  # work created while we were not listening is not lost
            while not self._closing.is_set():
                for payload in listening.heard(LOOK_UP_S):
                    self.event.set()
                    if self._on_notify is not None:
                        self._on_notify(payload)
        finally:
            listening.close()
