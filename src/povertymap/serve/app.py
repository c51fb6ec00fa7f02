"""The application factory: :func:`create_app` builds the FastAPI app over loaded maps.

``create_app(settings, maps)`` takes the settings and the maps (a :class:`MapRegistry` or
loaded maps), connects the database, and wires the routes, the web map (``/``, see
:mod:`~.page`), the error table, CORS for the configured origins only, and
:class:`~.middleware.ServiceMiddleware`. :func:`build_app`
loads run directories and registry models first (what ``povertymap serve`` calls); the
app's :class:`~.watch.Watcher` follows registry aliases and drift reports while it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from povertymap import __version__
from povertymap.errors import PovertyMapError
from povertymap.serve.audit import AuditLog
from povertymap.serve.auth import KeyStore
from povertymap.serve.context import Service
from povertymap.serve.errors import Answer, error_body, log, resolve, validation_fields
from povertymap.serve.maps import LoadedMap, MapRegistry, load_map, self_test
from povertymap.serve.metrics import ServiceMetrics
from povertymap.serve.middleware import ServiceMiddleware
from povertymap.serve.page import install_page
from povertymap.serve.ratelimit import RateLimiter
from povertymap.serve.requestlog import access_logger
from povertymap.serve.routes import admin, analysis, health
from povertymap.serve.routes import maps as map_routes
from povertymap.serve.schemas import FeatureCollection
from povertymap.serve.settings import ServeSettings
from povertymap.serve.store import connect
from povertymap.serve.watch import ModelRef, Watcher

__all__ = ["build_app", "create_app", "load_maps"]

DESCRIPTION = """Poverty maps, district estimates and targeting scenarios from povertymap
run directories. Send `Authorization: Bearer <key>` (keys from `povertymap keys create`);
without a key you are the public role. Every answer carries `X-Model-Version` and
`X-Request-ID`. Errors are `{"error": {"code", "message", "request_id"}}`."""

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _known_names(app: FastAPI) -> set[str]:
    """Every parameter and property name the API declares (validation locations keep these)."""
    names = {"body", "query", "path", "header", "cookie"}
    schema = app.openapi()
    for path in schema.get("paths", {}).values():
        for op in path.values():
            names |= {p["name"] for p in op.get("parameters", []) if isinstance(p, dict)}
    for component in schema.get("components", {}).get("schemas", {}).values():
        names |= set(component.get("properties", {}))
    return names


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def _install_errors(app: FastAPI) -> None:
    known: list[set[str]] = []

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if not known:
            known.append(_known_names(app))
        answer = Answer(422, "invalid_request", "the request does not match the API schema")
        fields = validation_fields(exc.errors(), known[0])
        return JSONResponse(error_body(answer, _request_id(request), fields), status_code=422)

    async def on_service(request: Request, exc: Exception) -> JSONResponse:
        answer, headers = resolve(exc)
        if answer.status >= 500:
            log.error("request %s: %s: %s", _request_id(request), type(exc).__name__, exc)
        else:
            log.info("request %s refused: %s", _request_id(request), type(exc).__name__)
        return JSONResponse(
            error_body(answer, _request_id(request)), status_code=answer.status, headers=headers
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = exc.status_code
        if request.scope.get("state", {}).get("body_too_large"):
            code = 413
        answer = Answer(
            code, HTTP_CODES.get(code, "http_error"), "the request cannot be answered as sent"
        )
        return JSONResponse(
            error_body(answer, _request_id(request)),
            status_code=code,
            headers=dict(exc.headers or {}),
        )

    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(PovertyMapError, on_service)
    app.add_exception_handler(StarletteHTTPException, on_http)


def _fix_content(op: dict[str, Any]) -> None:
    """Error answers are JSON whatever the route's media type; GeoJSON answers have the
    FeatureCollection schema."""
    for code, response in op.get("responses", {}).items():
        content = response.get("content")
        if not content:
            continue
        if not str(code).startswith("2"):
            schema = next(iter(content.values())).get("schema", {})
            response["content"] = {"application/json": {"schema": schema}}
        elif "application/geo+json" in content:
            content["application/geo+json"] = {
                "schema": {"$ref": "#/components/schemas/FeatureCollection"}
            }


def _roles_in_openapi(app: FastAPI, require_key: bool) -> None:
    """Make the schema say who may call what: ``x-role`` is each operation's lowest role,
    and a public operation's key is optional (``security: [{}, bearer]``) unless the
    settings require one."""
    from fastapi.openapi.utils import get_openapi

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            geojson = FeatureCollection.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components.update(geojson.pop("$defs", {}))
            components["FeatureCollection"] = geojson
            for ops in schema.get("paths", {}).values():
                for op in ops.values():
                    if op.get("x-role") == "public" and not require_key and op.get("security"):
                        op["security"] = [{}, *op["security"]]
                    _fix_content(op)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def create_app(
    settings: ServeSettings | None = None,
    maps: MapRegistry | Iterable[LoadedMap] = (),
    *,
    models: Mapping[str, ModelRef] | None = None,
    access_log: bool | None = None,
) -> FastAPI:
    """The service over ``maps`` with ``settings`` (default: from the environment);
    ``models`` names the maps that follow a registry alias (map name -> reference)."""
    settings = settings or ServeSettings()
    registry = maps if isinstance(maps, MapRegistry) else MapRegistry(list(maps))
    metrics = ServiceMetrics()
    registry.attach(metrics)
    watcher = Watcher(
        registry,
        metrics,
        models=models,
        drift_dir=Path(settings.drift_dir) if settings.drift_dir else None,
        interval=settings.registry_poll_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher.start()
        yield
        watcher.stop()

    engine = connect(settings.database_url)
    service = Service(
        settings=settings,
        maps=registry,
        keys=KeyStore(engine, cache_seconds=settings.key_cache_seconds),
        audit=AuditLog(engine),
        metrics=metrics,
        limiter=RateLimiter(burst_seconds=settings.rate_burst_seconds),
        engine=engine,
    )
    app = FastAPI(
        title="povertymap",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "health", "description": "Probes and metrics (no key needed)."},
            {"name": "maps", "description": "Maps, admin areas, cells, points and tiles."},
            {"name": "analysis", "description": "Targeting, prediction and feedback (analyst)."},
            {"name": "admin", "description": "Reload and audit (admin)."},
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.watcher = watcher
    for router in (health.router, map_routes.router, analysis.router, admin.router):
        app.include_router(router)
    install_page(app, settings)
    _install_errors(app)
    _roles_in_openapi(app, settings.require_key)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Model-Version", "X-Request-ID", "Retry-After"],
            max_age=600,
        )
    log_on = settings.log_requests if access_log is None else access_log
    app.add_middleware(
        ServiceMiddleware, service=service, access_log=access_logger() if log_on else None
    )
    return app


def load_maps(run_dirs: Sequence[str | Path], settings: ServeSettings) -> MapRegistry:
    """Load and self-test every run directory; raises on the first that fails."""
    from povertymap.errors import RunDirError

    maps = []
    for path in run_dirs:
        m = load_map(path, tile_cache_size=settings.tile_cache_size)
        problems = self_test(m)
        if problems:
            raise RunDirError(f"{path}: the map failed its self-test: {'; '.join(problems)}")
        maps.append(m)

    def loader(p: Path) -> LoadedMap:
        return load_map(p, tile_cache_size=settings.tile_cache_size)

    return MapRegistry(maps, loader=loader)


def build_app(
    run_dirs: Sequence[str | Path],
    settings: ServeSettings | None = None,
    models: Sequence[ModelRef] = (),
) -> Any:
    """Load ``run_dirs`` and the run directory of each registry model (the version its
    alias names now), and build the app (the ``povertymap serve`` entry point)."""
    settings = settings or ServeSettings()
    resolved = [ref.resolve()[1] for ref in models]
    registry = load_maps([*run_dirs, *resolved], settings)
    by_path = {m.run.path.resolve(): m.name for m in registry.all()}
    following = {by_path[p.resolve()]: ref for p, ref in zip(resolved, models, strict=True)}
    return create_app(settings, registry, models=following)
