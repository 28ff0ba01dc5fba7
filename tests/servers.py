"""Real servers on 127.0.0.1 for tests: the app under uvicorn in a thread, `foundry web` as processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

STARTUP_DEADLINE_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Any, *, deadline_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail loudly at the deadline (never a bare sleep)."""
    stop = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > stop:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.02)


@contextmanager
def in_thread(app: Any) -> Iterator[str]:
    """Serve `app` over real HTTP on 127.0.0.1 from a background thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, deadline_s=STARTUP_DEADLINE_S, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_DEADLINE_S)
        sock.close()


def foundry_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "foundry", *args]


def foundry_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRY_")}
    env.update({"FOUNDRY_LOG_LEVEL": "warning", **values})
    return env


@contextmanager
def foundry_web(env: dict[str, str], *, workers: int, log: Path, port: int | None = None) -> Iterator[str]:
    """`foundry web --workers N` as a real process tree; yields its base URL once it is ready."""
    port = port or free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            foundry_command("web", "--workers", str(workers), "--port", str(port)),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _ready(base, process),
            deadline_s=STARTUP_DEADLINE_S,
            what=f"foundry web to be ready ({log.read_text()[-500:]})",
        )
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _ready(base: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"foundry web exited with {process.returncode}")
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
