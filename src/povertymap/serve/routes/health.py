"""Probes and metrics: ``/healthz`` (live), ``/readyz`` (ready), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from povertymap.serve.context import Service, service, strict_query
from povertymap.serve.metrics import CONTENT_TYPE_LATEST
from povertymap.serve.schemas import Health, Readiness

router = APIRouter(tags=["health"], dependencies=[Depends(strict_query)])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers.")
def healthz() -> Health:
    """Always ``ok`` while the process runs."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: every map loaded and its self-test passed.",
    responses={503: {"model": Readiness, "description": "not ready"}},
)
def readyz(svc: Service = Depends(service)) -> Response:
    """200 when ready, 503 otherwise; lists the version each map serves."""
    maps = {m.name: m.version for m in svc.maps.all()}
    ready = svc.maps.ready and bool(maps)
    body = Readiness(ready=ready, maps=maps).model_dump()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics.",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(svc: Service = Depends(service)) -> Response:
    """The Prometheus exposition text."""
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)
