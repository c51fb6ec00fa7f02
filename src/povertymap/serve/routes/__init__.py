"""The HTTP endpoints, by area: :mod:`.health` (probes, metrics), :mod:`.maps` (reading
maps), :mod:`.analysis` (target, predict, feedback), :mod:`.admin` (reload, audit)."""

from __future__ import annotations

from typing import Any

from povertymap.serve.schemas import ErrorBody

__all__ = ["ERRORS"]

#: Error answers every API route may give (documented in the OpenAPI schema).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why}
    for code, why in (
        (400, "the body is not readable JSON"),
        (401, "no valid key (unknown, expired or revoked), or a key is required"),
        (403, "the key's role may not use this route"),
        (404, "no such map, cell or tile"),
        (413, "the request body is too large"),
        (422, "the request is malformed or over a cap"),
        (429, "over the rate limit; see Retry-After"),
    )
}
