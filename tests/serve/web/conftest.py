"""Fixtures of the web map's browser tests: the tiny run served by a real uvicorn on a free
loopback port, with a disclosure gate strict enough to withhold one district, an analyst
key from the service's key store, and Debian's Chromium driven by Playwright.

They live under ``tests/serve/`` so they share the session's tiny run (``serve_run``,
``loaded``) with the service tests instead of fitting it a second time.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("playwright", reason="the browser tests need the `e2e` extra")

from povertymap.serve.maps import LoadedMap

CHROMIUM = "/usr/bin/chromium"
LOOPBACK = "127.0.0.1"


def gated(m: LoadedMap) -> LoadedMap:
    """``m`` with its areas re-gated by the real disclosure gate under thresholds that
    suppress the least precise district and flag the next one (the tiny run publishes
    every district under the default 20%/30%)."""
    from povertymap.config.estimate import DisclosureSettings
    from povertymap.estimate.disclosure import gate, public_table
    from povertymap.estimate.stage import ADMIN_DIRECT_COLUMNS, ADMIN_VALUE_COLUMNS
    from povertymap.serve.maps import ADMIN_COLUMNS, feature_collection

    areas = m.run.admin().drop(columns=["publish", "reason"])
    cvs = sorted(areas["cv"].dropna().to_numpy(float), reverse=True)
    rules = DisclosureSettings(cv_flag=(cvs[1] + cvs[2]) / 2, cv_suppress=(cvs[0] + cvs[1]) / 2)
    columns = {"value_columns": ADMIN_VALUE_COLUMNS, "direct_columns": ADMIN_DIRECT_COLUMNS}
    full = gate(areas, rules, direct_columns=ADMIN_DIRECT_COLUMNS)
    public = public_table(areas, rules, **columns)
    return dataclasses.replace(
        m,
        admin=feature_collection(full.to_crs(4326), ADMIN_COLUMNS, "admin_id"),
        public_admin=feature_collection(public.to_crs(4326), ADMIN_COLUMNS, "admin_id"),
    )


def free_port() -> int:
    """A free TCP port on the loopback address."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    """The running service: its URL, an analyst key, and the map it serves."""

    url: str
    analyst_key: str
    map: LoadedMap
    app: Any

    def get(self, path: str, key: str | None = None, **params: Any) -> Any:
        """A GET on the live service (JSON)."""
        import httpx

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.get(self.url + path, params=params or None, headers=headers, timeout=30)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict[str, Any], key: str | None = None) -> Any:
        """A POST on the live service (JSON)."""
        import httpx

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.post(self.url + path, json=body, headers=headers, timeout=60)
        r.raise_for_status()
        return r.json()


def service_app(m: LoadedMap, db: Path, **overrides: Any) -> Any:
    """The service over ``m`` with its own database and no rate limit in the way."""
    from povertymap.serve.app import create_app
    from povertymap.serve.settings import ServeSettings

    settings = ServeSettings(
        database_url=f"sqlite:///{db}",
        log_requests=False,
        rate_public=100_000.0,
        rate_analyst=100_000.0,
        rate_admin=100_000.0,
        **overrides,
    )
    return create_app(settings, [m])


@contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[str]:
    """uvicorn serving ``app`` on a loopback port (a thread); yields its URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live(loaded: LoadedMap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The service on the gated tiny map, on a free loopback port, with an analyst key
    from its key store."""
    m = gated(loaded)
    app = service_app(m, tmp_path_factory.mktemp("web-service") / "service.db")
    key = app.state.service.keys.create("analyst", name="web-test-analyst")[1]
    with serving(app) as url:
        yield Live(url, key, m, app)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (no browser download)."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed; run scripts/system-deps.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@dataclass
class Web:
    """One browser page on the live service, with what it asked for and what it logged."""

    page: Any
    live: Live
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, key: str | None = None) -> None:
        """Load the page (with ``key`` entered through its key field) and wait until ready."""
        self.page.goto(self.live.url + "/")
        self.wait_ready()
        if key:
            self.page.fill("#pm-key", key)
            self.page.click("#pm-key-form button[type=submit]")
            self.page.wait_for_selector("body[data-role=analyst]", state="attached")
            self.page.wait_for_selector("path.pm-district", state="attached")

    def wait_ready(self) -> None:
        """Until the page says the districts are drawn and the first tiles loaded."""
        self.page.wait_for_selector("body[data-ready=true]", state="attached", timeout=30_000)

    def screen_point(self, lon: float, lat: float) -> tuple[float, float]:
        """The page coordinates of ``(lon, lat)`` on the map."""
        x, y = self.page.evaluate(
            "([lat, lon]) => { const p = window.povertymap.map.latLngToContainerPoint([lat, lon]);"
            " return [p.x, p.y]; }",
            [lat, lon],
        )
        box = self.page.locator("#pm-map").bounding_box()
        return box["x"] + x, box["y"] + y

    def click_map(self, lon: float, lat: float) -> str:
        """Click the map at ``(lon, lat)``; the text of the popup that opens (the page
        opens it once its content is complete)."""
        self.page.evaluate("() => window.povertymap.map.closePopup()")
        self.page.locator(".leaflet-popup").wait_for(state="detached")
        self.page.mouse.click(*self.screen_point(lon, lat))
        popup = self.page.locator(".leaflet-popup-content .pm-popup")
        popup.wait_for()
        return str(popup.inner_text())

    def assert_clean(self) -> None:
        """No console error, and no request that left the loopback address."""
        assert self.errors == []
        assert self.blocked == []
        hosts = {urlsplit(u).hostname for u in self.requests if u.startswith("http")}
        assert hosts == {LOOPBACK}
        assert all(u.startswith(("http:", "data:", "blob:")) for u in self.requests)


@pytest.fixture
def web(browser: Any, live: Live) -> Iterator[Web]:
    """A fresh browser context (1366x768, no stored key) on the live service; requests to
    any host but 127.0.0.1 are blocked and recorded."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    w = Web(page, live)

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith("http") and urlsplit(url).hostname != LOOPBACK:
            w.blocked.append(url)
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    page.on("request", lambda req: w.requests.append(req.url))
    page.on("console", lambda msg: msg.type == "error" and w.errors.append(msg.text))
    page.on("pageerror", lambda exc: w.errors.append(str(exc)))
    yield w
    context.close()


@pytest.fixture
def example_site(live: Live, tmp_path: Path) -> Iterator[str]:
    """``docs/example/`` served on one loopback port and the service, allowing that origin
    by CORS, on another; yields the example page's URL."""
    import functools
    import http.server

    docs = Path(__file__).resolve().parents[3] / "docs" / "example"
    port = free_port()
    origin = f"http://{LOOPBACK}:{port}"
    app = service_app(live.map, tmp_path / "cors.db", cors_origins=[origin])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(docs))
    site = http.server.ThreadingHTTPServer((LOOPBACK, port), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        with serving(app) as service:
            yield f"{origin}/embed.html?service={service}"
    finally:
        site.shutdown()
