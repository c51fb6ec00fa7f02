"""Typed service errors and the exception-to-status table.

Error bodies are ``{"error": {"code", "message", "request_id"}}`` (validation errors add
``fields``: where, and what kind of problem, never the value). They never hold a stack
trace or a value the request carried: library errors (whose messages name the value, as
every povertymap error does for the command line) are answered by a fixed message chosen
by their class in :data:`STATUS_TABLE`; the original is logged server-side only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from povertymap.errors import (
    ConfigError,
    DependencyError,
    InputError,
    ModelError,
    PovertyMapError,
    RunDirError,
)

__all__ = [
    "STATUS_TABLE",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceError",
    "Unauthorized",
    "Unavailable",
    "error_body",
    "resolve",
    "validation_fields",
]

log = logging.getLogger("povertymap.serve")


class ServiceError(PovertyMapError):
    """An error the service answers on purpose; ``message`` is fixed text, never input."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServiceError):
    """The request is well formed but asks for something the service refuses (a cap)."""

    status = 422
    code = "invalid_request"


class Unauthorized(ServiceError):
    """No valid key where one is needed (unknown, expired, revoked or missing)."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    """The key's role may not use this route."""

    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    """No such map, cell, tile or row."""

    status = 404
    code = "not_found"


class Conflict(ServiceError):
    """The request cannot be applied to the current state (a reload that fails its test)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    """The request body is over ``max_body_bytes``."""

    status = 413
    code = "payload_too_large"


class RateLimited(ServiceError):
    """Over the key's rate; ``Retry-After`` says when to try again."""

    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many requests for this key; retry after the Retry-After seconds",
            headers={"Retry-After": str(retry_after)},
        )


class Unavailable(ServiceError):
    """The service (or a map) is not ready."""

    status = 503
    code = "unavailable"


@dataclass(frozen=True)
class Answer:
    """How one class of library error is answered."""

    status: int
    code: str
    message: str


#: Library errors by class, most specific first: the first ``isinstance`` match answers.
STATUS_TABLE: tuple[tuple[type[BaseException], Answer], ...] = (
    (
        ConfigError,
        Answer(422, "invalid_option", "an option is not valid for this map; see the API docs"),
    ),
    (
        ModelError,
        Answer(422, "model_refused", "the model cannot be applied to the data sent"),
    ),
    (
        InputError,
        Answer(422, "unusable_input", "the data sent cannot be used; see the API docs"),
    ),
    (
        RunDirError,
        Answer(503, "map_unavailable", "the map's files cannot be read; an admin must reload it"),
    ),
    (
        DependencyError,
        Answer(501, "not_installed", "this feature needs an optional dependency on the server"),
    ),
    (
        PovertyMapError,
        Answer(422, "refused", "the request cannot be answered with this map"),
    ),
)

INTERNAL = Answer(500, "internal_error", "internal error; the request id identifies it in the log")


def resolve(exc: BaseException) -> tuple[Answer, dict[str, str]]:
    """The answer and extra headers for ``exc`` (a service error answers for itself)."""
    if isinstance(exc, ServiceError):
        return Answer(exc.status, exc.code, exc.message), exc.headers
    for cls, answer in STATUS_TABLE:
        if isinstance(exc, cls):
            return answer, {}
    return INTERNAL, {}


def error_body(
    answer: Answer, request_id: str, fields: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The JSON body of an error answer."""
    error: dict[str, Any] = {
        "code": answer.code,
        "message": answer.message,
        "request_id": request_id,
    }
    if fields is not None:
        error["fields"] = fields
    return {"error": error}


def validation_fields(errors: Iterable[dict[str, Any]], known: set[str]) -> list[dict[str, Any]]:
    """Validation errors as ``{"loc", "type"}``: the value (``input``), the context and the
    message (which can quote it) are dropped, and a location part that is not a name the
    API declares (a key the client invented) is replaced by ``"*"``."""
    out = []
    for err in errors:
        loc = [
            part if isinstance(part, int) or part in known else "*" for part in err.get("loc", ())
        ]
        out.append({"loc": loc, "type": str(err.get("type", "invalid"))})
    return out[:20]
