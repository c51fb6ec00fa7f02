"""Reading maps: the list, admin areas, cells in a bbox, the cell at a point, tiles."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from povertymap.serve.auth import Principal, Role, allows
from povertymap.serve.context import Service, audited, need, service, strict_query, use_map
from povertymap.serve.errors import BadRequest, NotFound
from povertymap.serve.maps import CELL_COLUMNS, feature_collection
from povertymap.serve.routes import ERRORS
from povertymap.serve.schemas import CellValues, FeatureCollection, MapInfo, MapList, PointAnswer
from povertymap.serve.tiles import render_tile

router = APIRouter(
    prefix="/v1",
    tags=["maps"],
    responses=ERRORS,
    dependencies=[Depends(audited), Depends(strict_query)],
)

MapName = Annotated[str, Path(description="The map (study area) name; see GET /v1/maps.")]
GEOJSON = "application/geo+json"
BBOX = (
    r"^-?\d{1,3}(\.\d{1,12})?,-?\d{1,2}(\.\d{1,12})?,-?\d{1,3}(\.\d{1,12})?,-?\d{1,2}(\.\d{1,12})?$"
)


class GeoJSONResponse(Response):
    """A GeoJSON body."""

    media_type = GEOJSON


def _geojson(data: dict[str, Any] | bytes) -> GeoJSONResponse:
    body = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return GeoJSONResponse(body)


@router.get(
    "/maps",
    openapi_extra={"x-role": "public"},
    response_model=MapList,
    summary="The maps served and their versions.",
)
def list_maps(
    who: Principal = Depends(need(Role.public)), svc: Service = Depends(service)
) -> MapList:
    """Every map with its version, bounds, layers, legend and sizes, and the caller's role."""
    return MapList(maps=[MapInfo(**m.describe()) for m in svc.maps.all()], role=who.role.value)


@router.get(
    "/maps/{map}/admin",
    openapi_extra={"x-role": "public"},
    response_model=FeatureCollection,
    response_class=GeoJSONResponse,
    summary="Admin areas with estimate, interval, headcount, Fay-Herriot estimate, CV and "
    "publish status (GeoJSON).",
)
def admin_areas(
    request: Request,
    map: MapName,
    who: Principal = Depends(need(Role.public)),
    svc: Service = Depends(service),
) -> Response:
    """Public: the areas the disclosure gate publishes (a suppressed area is present with
    null values and its ``reason``). Analyst and admin: every value, with the flags."""
    m = use_map(request, map, svc)
    return _geojson(m.admin if allows(who.role, Role.analyst) else m.public_admin)


def _bbox(text: str, max_degrees: float) -> tuple[float, float, float, float]:
    west, south, east, north = (float(v) for v in text.split(","))
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise BadRequest(
            "bbox must be west,south,east,north in degrees, west < east, south < north"
        )
    if east - west > max_degrees or north - south > max_degrees:
        raise BadRequest("bbox is larger than the service allows; ask for a smaller one")
    return west, south, east, north


@router.get(
    "/maps/{map}/cells",
    openapi_extra={"x-role": "analyst"},
    response_model=FeatureCollection,
    response_class=GeoJSONResponse,
    summary="Cells in a bbox with estimate, interval and headcount (GeoJSON, capped).",
)
def cells(
    request: Request,
    map: MapName,
    bbox: Annotated[
        str,
        Query(
            pattern=BBOX,
            max_length=100,
            description="west,south,east,north in degrees (WGS 84).",
            examples=["34.9,-6.1,35.1,-5.9"],
        ),
    ],
    who: Principal = Depends(need(Role.analyst)),
    svc: Service = Depends(service),
) -> Response:
    """Every cell intersecting ``bbox``; more than ``max_cells`` is a 422 (ask for less)."""
    box = _bbox(bbox, svc.settings.max_bbox_degrees)
    m = use_map(request, map, svc)
    found = m.cells_in(box)
    if len(found) > svc.settings.max_cells:
        raise BadRequest(
            "the bbox holds more cells than the service returns at once; ask for a smaller bbox"
        )
    return _geojson(feature_collection(found, CELL_COLUMNS, "cell_id"))


@router.get(
    "/maps/{map}/point",
    openapi_extra={"x-role": "public"},
    response_model=PointAnswer,
    summary="The cell at a point: estimate, interval and headcount.",
)
def point(
    request: Request,
    map: MapName,
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
    who: Principal = Depends(need(Role.public)),
    svc: Service = Depends(service),
) -> PointAnswer:
    """Public values of the cell holding ``(lon, lat)``; 404 outside the map."""
    m = use_map(request, map, svc)
    cell = m.cell_at(lon, lat, public=not allows(who.role, Role.analyst))
    if cell is None:
        raise NotFound("no cell of this map holds that point")
    return PointAnswer(map=m.name, version=m.version, cell=CellValues(**cell))


@router.get(
    "/maps/{map}/tiles/{z}/{x}/{y}.png",
    openapi_extra={"x-role": "public"},
    response_class=Response,
    summary="A web-mercator PNG tile of the map (cached).",
    responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}},
)
def tile(
    request: Request,
    map: MapName,
    z: Annotated[int, Path(ge=0, le=22)],
    x: Annotated[int, Path(ge=0, le=2**22 - 1)],
    y: Annotated[int, Path(ge=0, le=2**22 - 1)],
    layer: Annotated[Literal["estimate", "poverty", "uncertainty"], Query()] = "estimate",
    who: Principal = Depends(need(Role.public)),
    svc: Service = Depends(service),
) -> Response:
    """Tile ``z/x/y`` of ``layer``; 404 outside the map or for a layer it lacks."""
    if x >= 2**z or y >= 2**z:
        raise NotFound("no such tile at this zoom")
    m = use_map(request, map, svc)
    png = render_tile(m, layer, z, x, y)
    if png is None:
        raise NotFound("the tile is outside the map, or the map has no such layer")
    return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=60"})
