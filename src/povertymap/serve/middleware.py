"""The ASGI layer around every request.

In order: a new request id (a client's ``X-Request-ID``, when it is a short token, is
logged beside it as ``client_request_id`` but never sent back), the body size limit
(``Content-Length`` over the limit is refused before the body is read; a body that streams
past it is cut off), the in-flight gauge and timer, and on the way out the headers every
answer carries (``X-Request-ID``, ``X-Model-Version``, security headers), the metrics by
route template, the audit row of an audited route, and one JSON log line. An exception
that escapes the app is answered here as a 500 with the fixed body of
:mod:`povertymap.serve.errors` (never the trace), and logged with the request id.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from povertymap.serve.audit import AuditEntry, params_digest
from povertymap.serve.errors import INTERNAL, PayloadTooLarge, error_body
from povertymap.serve.requestlog import log_request

__all__ = ["ServiceMiddleware"]

log = logging.getLogger("povertymap.serve")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Security headers on every answer (the API docs pages get no CSP: they load scripts).
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
DOC_PATHS = ("/docs", "/redoc")


class ServiceMiddleware:
    """See the module docstring; ``service`` is the app's :class:`~.context.Service`."""

    def __init__(self, app: ASGIApp, service: Any, access_log: logging.Logger | None) -> None:
        self.app = app
        self.service = service
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        svc = self.service
        settings = svc.settings
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = uuid.uuid4().hex  # never the client's: nothing a request sends comes back
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        client_id = given if _REQUEST_ID.match(given) else None
        started = time.perf_counter()
        status = {"code": 500, "started": False, "bytes": 0}
        body_hash = hashlib.sha256()
        received = {"n": 0}
        limit = settings.max_body_bytes

        async def respond_error(
            code: int, answer: Any, extra: dict[str, str] | None = None
        ) -> None:
            import json

            body = json.dumps(error_body(answer, request_id)).encode()
            hdrs = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            hdrs += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
            await wrapped_send({"type": "http.response.start", "status": code, "headers": hdrs})
            await wrapped_send({"type": "http.response.body", "body": body})

        async def wrapped_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received["n"] += len(chunk)
                if received["n"] > limit:
                    state["body_too_large"] = True
                    raise PayloadTooLarge("the request body is larger than the service accepts")
                body_hash.update(chunk)
            return message

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                out = list(message.get("headers", []))
                out.append((b"x-request-id", request_id.encode()))
                out.append((b"x-model-version", self._version(state).encode()))
                out.extend(SECURITY_HEADERS)
                own_csp = any(k.lower() == CSP[0] for k, _ in out)  # the web page sets its own
                if not scope["path"].startswith(DOC_PATHS) and not own_csp:
                    out.append(CSP)
                if settings.hsts:
                    out.append((b"strict-transport-security", b"max-age=31536000"))
                if not any(k.lower() == b"cache-control" for k, _ in out):
                    out.append((b"cache-control", b"no-store"))
                message = {**message, "headers": out}
            elif message["type"] == "http.response.body":
                status["bytes"] += len(message.get("body", b""))
            await send(message)

        svc.metrics.in_flight.inc()
        try:
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                from povertymap.serve.errors import resolve

                answer, _ = resolve(PayloadTooLarge("the request body is too large"))
                await respond_error(413, answer)
            else:
                try:
                    await self.app(scope, wrapped_receive, wrapped_send)
                except Exception:
                    log.exception("unhandled error in request %s", request_id)
                    if not status["started"]:
                        await respond_error(500, INTERNAL)
        finally:
            svc.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            await self._finish(
                scope, state, request_id, client_id, status, elapsed, body_hash.digest()
            )

    def _version(self, state: dict[str, Any]) -> str:
        """The version this request used, or every map's (``name=version``, by name)."""
        if state.get("model_version"):
            return str(state["model_version"])
        try:
            return ",".join(f"{m.name}={m.version}" for m in self.service.maps.all()) or "none"
        except Exception:  # a header must never turn an answer into a failure
            return "unknown"

    async def _finish(
        self,
        scope: Scope,
        state: dict[str, Any],
        request_id: str,
        client_id: str | None,
        status: dict[str, Any],
        elapsed: float,
        body_digest: bytes,
    ) -> None:
        svc = self.service
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "GET")
        code = str(status["code"])
        svc.metrics.requests.labels(template, method, code).inc()
        svc.metrics.duration.labels(template, method, code).observe(elapsed)
        who = state.get("principal")
        role = who.role.value if who is not None else "public"
        key_id = who.key_id if who is not None else None
        if state.get("audit") and route is not None:
            params = {f"path.{k}": v for k, v in (scope.get("path_params") or {}).items()}
            query = scope.get("query_string", b"").decode("latin-1")
            params.update({f"query.{k}": v for k, v in parse_qsl(query, keep_blank_values=True)})
            entry = AuditEntry(
                request_id=request_id,
                key_id=key_id,
                role=role,
                method=method,
                route=template,
                map=state.get("map"),
                model_version=state.get("model_version"),
                status=int(status["code"]),
                params_sha256=params_digest(params, body_digest),
            )
            try:
                await anyio.to_thread.run_sync(svc.audit.append, entry)
            except Exception:
                svc.metrics.audit_failures.inc()
                log.exception("audit row of request %s not written", request_id)
        if self.access_log is not None:
            log_request(
                self.access_log,
                {
                    "request_id": request_id,
                    "client_request_id": client_id,
                    "method": method,
                    "route": template,
                    "status": int(status["code"]),
                    "duration_ms": round(elapsed * 1000, 3),
                    "role": role,
                    "key_id": key_id,
                    "map": state.get("map"),
                    "model_version": state.get("model_version"),
                    "bytes": status["bytes"],
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
