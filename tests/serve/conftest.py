"""Fixtures of the service tests: one tiny run (fitted once per session), loaded once, and
a fresh app with its own database per test."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the service needs the `serve` extra")

from fastapi.testclient import TestClient

from povertymap.serve.app import create_app
from povertymap.serve.maps import LoadedMap, MapRegistry, load_map
from povertymap.serve.settings import ServeSettings

ROLES = ("public", "analyst", "admin")


@pytest.fixture(scope="session")
def serve_run(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of the tiny world (``povertymap run`` on it, no truth)."""
    from povertymap.io.configfile import read_config
    from povertymap.pipeline import run

    return run(read_config(tiny_world), runs=tmp_path_factory.mktemp("serve-runs")).path


@pytest.fixture(scope="session")
def loaded(serve_run: Path) -> LoadedMap:
    """The tiny run as the service loads it."""
    return load_map(serve_run)


@dataclass
class Api:
    """An app, a client on it, and one key per role (public has none)."""

    app: Any
    client: TestClient
    keys: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        """The headers of ``role``."""
        return {"Authorization": f"Bearer {self.keys[role]}"} if role in self.keys else {}

    @property
    def service(self) -> Any:
        """The app's Service."""
        return self.app.state.service


FAST = {
    "log_requests": False,
    "rate_public": 100_000.0,
    "rate_analyst": 100_000.0,
    "rate_admin": 100_000.0,
}


@pytest.fixture
def make_api(tmp_path: Path, loaded: LoadedMap) -> Iterator[Callable[..., Api]]:
    """``make_api(**settings)``: a fresh app over the tiny map with its own database."""
    counter = itertools.count()
    clients: list[TestClient] = []

    def make(maps: MapRegistry | None = None, **overrides: Any) -> Api:
        url = f"sqlite:///{tmp_path}/service-{next(counter)}.db"
        settings = ServeSettings(**{"database_url": url, **FAST, **overrides})
        app = create_app(settings, maps if maps is not None else [loaded])
        store = app.state.service.keys
        keys = {role: store.create(role, name=f"test-{role}")[1] for role in ("analyst", "admin")}
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        return Api(app, client, keys)

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """A fresh app with default test settings."""
    return make_api()
