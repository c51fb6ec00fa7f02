"""Fixtures of the deployment tests: the repository's deploy files, and a tiny run served
by the real app (the recipe of tests/serve/conftest.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()``: a free loopback port (the OS picks it)."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    return pick


@pytest.fixture(scope="session")
def serve_run(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of the tiny world (``povertymap run`` on it, no truth)."""
    pytest.importorskip("fastapi", reason="the service needs the `serve` extra")
    from povertymap.io.configfile import read_config
    from povertymap.pipeline import run

    return run(read_config(tiny_world), runs=tmp_path_factory.mktemp("deploy-runs")).path


@pytest.fixture
def serve_in_thread(free_port: Callable[[], int]) -> Iterator[Callable[[Any], str]]:
    """``serve_in_thread(app)``: the app served by uvicorn on a free loopback port, in a
    thread, until the test ends; returns its base URL."""
    import uvicorn

    servers: list[tuple[Any, threading.Thread]] = []

    def start(app: Any) -> str:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)
