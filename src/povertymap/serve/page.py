"""The web map: the page at ``/``, its files under ``/web/``, and its config.

The page (``serve/web/index.html``) and its plain ES modules, styles and the vendored
Leaflet (``serve/web/vendor/``, copied by ``scripts/vendor-web.sh`` at the version pinned
in ``web/package.json``) are package data, served by Starlette's ``StaticFiles`` from the
installed package: nothing is fetched from a CDN. The page's Content-Security-Policy allows
scripts, styles, images and requests from the service's own origin only (plus the image
origin of ``POVERTYMAP_WEB_BASEMAP_URL`` when an online basemap is configured); no inline
script or style is needed. See ``docs/frontend.md``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from povertymap.serve.settings import ServeSettings

__all__ = ["install_page", "page_csp"]

PACKAGE = "povertymap.serve"
FOLDER = "web"


def web_folder() -> Path:
    """The installed folder of the page's files."""
    return Path(str(files(PACKAGE).joinpath(FOLDER)))


def _basemap_origin(url: str | None) -> str:
    """The CSP source of a tile URL template (``{s}.`` subdomains become ``*.``)."""
    if not url:
        return ""
    parts = urlsplit(url.replace("{s}.", "sub-domain."))
    host = (parts.hostname or "").replace("sub-domain.", "*.")
    port = f":{parts.port}" if parts.port else ""
    return f" {parts.scheme}://{host}{port}"


def page_csp(settings: ServeSettings) -> str:
    """The page's Content-Security-Policy: own origin only (and the basemap's images)."""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data: blob:{_basemap_origin(settings.web_basemap_url)}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def page_config(settings: ServeSettings) -> dict[str, Any]:
    """What the page reads at start: the optional online basemap."""
    basemap = (
        {"url": settings.web_basemap_url, "attribution": settings.web_basemap_attribution}
        if settings.web_basemap_url
        else None
    )
    return {"basemap": basemap}


def install_page(app: FastAPI, settings: ServeSettings) -> None:
    """Serve the page at ``/``, its config at ``/web/config.json`` and files at ``/web``."""
    index = web_folder() / "index.html"
    csp = page_csp(settings)
    config = page_config(settings)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers={"Content-Security-Policy": csp})

    @app.get("/web/config.json", include_in_schema=False)
    def web_config() -> JSONResponse:
        return JSONResponse(config)

    app.mount("/web", StaticFiles(packages=[(PACKAGE, FOLDER)]), name="web")
