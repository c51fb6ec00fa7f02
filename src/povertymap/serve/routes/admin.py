"""Administration: hot-swap a map's version, read and verify the audit trail."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from povertymap.serve.auth import Principal, Role
from povertymap.serve.context import Service, audited, need, service, strict_query
from povertymap.serve.errors import BadRequest
from povertymap.serve.routes import ERRORS
from povertymap.serve.schemas import (
    AuditPage,
    AuditRow,
    AuditVerification,
    ReloadAnswer,
    ReloadRequest,
)

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    responses={**ERRORS, 409: {"description": "the new version failed; the old one serves"}},
    dependencies=[Depends(audited), Depends(strict_query)],
)

MapName = Annotated[str, Path(description="The map (study area) name; see GET /v1/maps.")]


def _allowed_run(svc: Service, text: str) -> FsPath:
    """``text`` as a run directory under one of the reload roots (422 otherwise)."""
    path = FsPath(text).expanduser().resolve()
    roots = [FsPath(r).resolve() for r in svc.settings.run_roots] or [
        m.run.path.resolve().parent for m in svc.maps.all()
    ]
    if not any(path.is_relative_to(root) for root in roots):
        raise BadRequest("run_dir is not under a folder this service reloads from")
    return path


@router.post(
    "/maps/{map}/reload",
    openapi_extra={"x-role": "admin"},
    response_model=ReloadAnswer,
    summary="Swap in a new run or model version (loaded and self-tested first).",
)
def reload(
    request: Request,
    map: MapName,
    body: Annotated[ReloadRequest | None, Body()] = None,
    who: Principal = Depends(need(Role.admin)),
    svc: Service = Depends(service),
) -> ReloadAnswer:
    """Loads the run beside the version served, self-tests it, swaps atomically; requests
    in flight finish on the old version. 409 (old version kept) when it fails."""
    current = svc.maps.get(map)
    request.state.map = current.name
    request.state.model_version = current.version
    path = _allowed_run(svc, body.run_dir) if body and body.run_dir else None
    old, new = svc.maps.reload(current.name, path)
    request.state.model_version = new.version
    return ReloadAnswer(map=new.name, old_version=old.version, new_version=new.version)


@router.get(
    "/audit",
    openapi_extra={"x-role": "admin"},
    response_model=AuditPage,
    summary="The audit trail, oldest first.",
)
def audit_rows(
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    who: Principal = Depends(need(Role.admin)),
    svc: Service = Depends(service),
) -> AuditPage:
    """Rows with a sequence number above ``after``."""
    rows = [AuditRow(**r) for r in svc.audit.rows(after=after, limit=limit)]
    return AuditPage(rows=rows, next_after=rows[-1].seq if rows else after)


@router.get(
    "/audit/verify",
    openapi_extra={"x-role": "admin"},
    response_model=AuditVerification,
    summary="Check the audit chain.",
)
def audit_verify(
    who: Principal = Depends(need(Role.admin)), svc: Service = Depends(service)
) -> AuditVerification:
    """Recomputes every row's hash and link; an edited or deleted row is a problem."""
    v = svc.audit.verify()
    return AuditVerification(ok=v.ok, rows=v.rows, problems=v.problems)
