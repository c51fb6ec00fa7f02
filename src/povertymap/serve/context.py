"""What every request can reach (the app's state) and the dependencies routes declare:
who is asking (:func:`principal`), the lowest role a route allows (:func:`need`), that a
route's requests are audited (:func:`audited`), and strict query validation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from povertymap.serve.audit import AuditLog
from povertymap.serve.auth import KeyStore, Principal, Role, allows
from povertymap.serve.errors import BadRequest, Forbidden, RateLimited, Unauthorized
from povertymap.serve.maps import LoadedMap, MapRegistry
from povertymap.serve.metrics import ServiceMetrics
from povertymap.serve.ratelimit import RateLimiter
from povertymap.serve.settings import ServeSettings

__all__ = ["Service", "audited", "need", "principal", "service", "strict_query", "use_map"]

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pmk_...`")


@dataclass
class Service:
    """The state one app serves from."""

    settings: ServeSettings
    maps: MapRegistry
    keys: KeyStore
    audit: AuditLog
    metrics: ServiceMetrics
    limiter: RateLimiter
    engine: Any
    _strict: dict[int, set[str]] = field(default_factory=dict)


async def service(request: Request) -> Service:
    """The app's :class:`Service`."""
    svc: Service = request.app.state.service
    return svc


async def audited(request: Request) -> None:
    """Mark the request for an audit row (written when its answer is known)."""
    request.state.audit = True


def _query_names(dependant: Any) -> set[str]:
    """Every query parameter a route's dependency tree declares."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def strict_query(request: Request, svc: Service = Depends(service)) -> None:
    """Refuse query parameters the route does not declare, and repeated ones (422)."""
    route = request.scope.get("route")
    if route is None:
        return
    declared = svc._strict.get(id(route))
    if declared is None:
        declared = _query_names(route.dependant)
        svc._strict[id(route)] = declared
    params = request.query_params
    for key in params:
        if key not in declared or len(params.getlist(key)) > 1:
            raise BadRequest("unknown or repeated query parameter; see the API docs")


def principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    svc: Service = Depends(service),
) -> Principal:
    """Who is asking (a key's role, or public), after the rate limit."""
    client = request.client.host if request.client else "unknown"
    header = request.headers.get("authorization")
    if credentials is None:
        if header is not None:
            raise Unauthorized("use `Authorization: Bearer <key>`")
        if svc.settings.require_key:
            raise Unauthorized("this service needs an API key")
        who = Principal(None, Role.public, client)
    else:
        record = svc.keys.check(credentials.credentials)
        who = Principal(record.key_id, record.role, client)
    request.state.principal = who
    wait = svc.limiter.take(who.identity, svc.settings.rate_for(who.role.value))
    if wait is not None:
        svc.metrics.rate_limited.labels(who.role.value).inc()
        request.state.audit = False
        raise RateLimited(wait)
    return who


def need(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets ``role`` and the roles above it through (403 otherwise)."""

    async def check(who: Principal = Depends(principal)) -> Principal:
        if not allows(who.role, role):
            if who.key_id is None:
                raise Unauthorized(f"this route needs an API key of the {role.value} role or above")
            raise Forbidden(f"this route needs the {role.value} role or above")
        return who

    check.__name__ = f"need_{role.value}"
    return check


def use_map(request: Request, name: str, svc: Service) -> LoadedMap:
    """The map ``name`` as served now; the request keeps this version to its end."""
    m = svc.maps.get(name)
    request.state.map = m.name
    request.state.model_version = m.version
    return m
