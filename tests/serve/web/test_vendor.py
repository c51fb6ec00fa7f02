"""The vendored front end: Leaflet at the pinned version, served from the package, and the
page's own files free of inline code and outside addresses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "src" / "povertymap" / "serve" / "web"
VENDOR = WEB / "vendor" / "leaflet"


def test_vendored_leaflet_is_the_version_pinned_in_package_json() -> None:
    pin = json.loads((ROOT / "web" / "package.json").read_text())["dependencies"]["leaflet"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin), "pin an exact version"
    lock = json.loads((ROOT / "web" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/leaflet"]["version"] == pin
    head = (VENDOR / "leaflet.js").read_text()[:200]
    assert f"Leaflet {pin}," in head
    assert (VENDOR / "VERSION").read_text().strip() == pin
    assert {p.name for p in (VENDOR / "images").iterdir()} >= {"layers.png", "marker-icon.png"}


def test_the_page_and_its_files_are_served_from_the_package(api: Any) -> None:
    page = api.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe" not in csp
    js = api.client.get("/web/vendor/leaflet/leaflet.js")
    assert js.status_code == 200 and js.content == (VENDOR / "leaflet.js").read_bytes()
    assert api.client.get("/web/app.js").headers["content-type"].startswith("text/javascript")
    assert api.client.get("/web/config.json").json() == {"basemap": None}
    assert api.client.get("/web/missing.js").status_code == 404


def test_an_online_basemap_only_when_configured(make_api: Any) -> None:
    url = "https://{s}.tile.example.org/{z}/{x}/{y}.png"
    api = make_api(web_basemap_url=url, web_basemap_attribution="© example")
    assert api.client.get("/web/config.json").json()["basemap"] == {
        "url": url,
        "attribution": "© example",
    }
    csp = api.client.get("/").headers["content-security-policy"]
    assert "img-src 'self' data: blob: https://*.tile.example.org;" in csp


def test_the_pages_own_files_have_no_inline_code_and_no_outside_address() -> None:
    html = (WEB / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "<style" not in html and " style=" not in html and "onclick" not in html
    for f in WEB.glob("*.*"):
        text = f.read_text()
        addresses = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert addresses == set(), f.name


def test_every_string_the_page_names_is_in_the_strings_file() -> None:
    strings = (WEB / "strings.js").read_text()
    keys = set(re.findall(r"^\s{4}(\w+):", strings, flags=re.M))
    html = (WEB / "index.html").read_text()
    named = set(re.findall(r'data-i18n(?:-label|-placeholder)?="(\w+)"', html))
    for js in ("app.js", "scenario.js"):
        named |= set(re.findall(r'\bt\("(\w+)"', (WEB / js).read_text()))
    assert named and named <= keys, named - keys
