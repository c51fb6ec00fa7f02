"""Request and answer models of the API (pydantic; they are the OpenAPI schema).

Requests forbid unknown fields, bound every string and list, and refuse non-finite
numbers, so malformed input is a 422 before any handler runs.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "AuditPage",
    "AuditRow",
    "AuditVerification",
    "CurvePoint",
    "ErrorBody",
    "FeatureCollection",
    "FeedbackAnswer",
    "FeedbackRequest",
    "Health",
    "MapInfo",
    "MapList",
    "PointAnswer",
    "PredictAnswer",
    "PredictRequest",
    "Readiness",
    "ReloadAnswer",
    "ReloadRequest",
    "TargetAnswer",
    "TargetCurve",
    "TargetRequest",
]

Finite = Field(allow_inf_nan=False)


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorDetail(BaseModel):
    """What went wrong, in fixed words (never a value the request carried)."""

    code: str
    message: str
    request_id: str
    fields: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error answer."""

    error: ErrorDetail


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness: every map loaded and self-tested, with the versions served."""

    ready: bool
    maps: dict[str, str]


class MapInfo(BaseModel):
    """One served map."""

    name: str
    version: str
    run_id: str
    kind: str
    created: str | None
    bounds: list[float] = Field(description="west, south, east, north (WGS 84)")
    n_cells: int
    n_admin: int
    layers: list[str]
    min_zoom: int = Field(description="Tiles below this zoom answer 404.")
    headcounts: bool
    loaded_at: float
    tile_bounds: list[float] = Field(
        default_factory=list,
        description="west, south, east, north (WGS 84) of the tiled raster: tiles outside "
        "answer 404.",
    )
    ranges: dict[str, list[float]] = Field(
        default_factory=dict,
        description="Per tile layer, the values its colour ramp spans: [low, high].",
    )
    colormaps: dict[str, str] = Field(
        default_factory=dict, description="Per tile layer, its colour ramp (matplotlib name)."
    )
    target: str | None = Field(None, description="The survey variable the estimates are in.")
    poverty_line: float | None = Field(None, description="In the target's units.")
    level: float | None = Field(None, description="Nominal coverage of every interval.")
    household_methods: bool = Field(
        False, description="Targeting methods pmt and hybrid are possible (a registry exists)."
    )


class MapList(BaseModel):
    """Every served map."""

    maps: list[MapInfo]
    role: Literal["public", "analyst", "admin"] = Field(
        "public", description="The role of the key that asked (public without one)."
    )


class Feature(BaseModel):
    """A GeoJSON feature (WGS 84)."""

    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any]
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    """A GeoJSON FeatureCollection (WGS 84)."""

    type: Literal["FeatureCollection"]
    features: list[Feature]


class CellValues(BaseModel):
    """A cell's published values (None where the map has none)."""

    cell_id: str
    admin_id: str | None = None
    parent_id: str | None = None
    urban: bool | None = None
    population: float | None = None
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    poverty_rate: float | None = None
    poverty_lower: float | None = None
    poverty_upper: float | None = None


class PointAnswer(BaseModel):
    """The cell at a point."""

    map: str
    version: str
    cell: CellValues


class TargetRequest(Strict):
    """A budget scenario: the options of ``povertymap target`` (defaults: the run's)."""

    budget: str | None = Field(
        None,
        max_length=64,
        description="'30%' of people, '120000' people, '25000 households', or "
        "'2000000 @ 25/person'.",
    )
    unit: Literal["cell", "admin2"] | None = None
    method: Literal["geographic", "pmt", "hybrid"] | None = None
    rank_by: Literal["headcount", "expected_poor", "probability", "estimate"] | None = None
    uncertainty: bool | None = None
    min_share_admin1: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    unit_cap: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    limit: int = Field(1000, ge=0, le=100_000, description="Most selected units listed.")
    curve: bool = Field(
        False,
        description="Also answer the targeting curve: the share of poor reached at budgets "
        "of 5% to 95% of people, by this map, a nightlights-only map and a lottery.",
    )


class SelectedUnit(BaseModel):
    """A unit (cell, admin-2 area or household) the plan selects."""

    id: str
    rank: int | None = None
    coverage: float | None = None
    population: float | None = None
    expected_poor: float | None = None
    cost: float | None = None


class CurvePoint(BaseModel):
    """The share of poor reached at one budget (a share of people), by each rule."""

    budget_share: float
    map: float | None = Field(description="Ranking by this map (geographic, the request's unit).")
    nightlights: float | None = Field(
        None, description="Ranking by the nightlights-only map (None: the run has none)."
    )
    lottery: float = Field(description="Everyone equally likely: the budget share itself.")


class TargetCurve(BaseModel):
    """The targeting curve. Shares of poor are judged by this map's headcounts (the only
    truth a served map has), which favours this map; the run's report scores every rule
    against surveyed households."""

    judged_by: Literal["map headcounts"] = "map headcounts"
    population: float
    expected_poor: float
    points: list[CurvePoint]


class TargetAnswer(BaseModel):
    """The plan's headline and the units it selects."""

    map: str
    version: str
    summary: dict[str, Any]
    selected: list[SelectedUnit]
    selected_total: int
    truncated: bool
    curve: TargetCurve | None = None


class PredictRow(Strict):
    """One place: the model's feature columns (missing ones allowed), people, urban."""

    features: dict[str, float | None] = Field(max_length=5000)
    population: float | None = Field(None, ge=0, allow_inf_nan=False)
    urban: bool | None = None

    @model_validator(mode="after")
    def _finite(self) -> PredictRow:
        for v in self.features.values():
            if v is not None and (v != v or v in (float("inf"), float("-inf"))):
                raise ValueError("feature values must be finite numbers or null")
        return self


class PredictRequest(Strict):
    """A feature table, one row per place, for one map's model."""

    map: str = Field(max_length=200)
    rows: list[PredictRow] = Field(min_length=1, max_length=10_000)


class PredictAnswer(BaseModel):
    """Estimates with intervals, in the order of the rows sent."""

    map: str
    version: str
    rows: list[dict[str, float | None]]


class FeedbackRequest(Strict):
    """A field observation: where, what was observed, who says so."""

    map: str = Field(max_length=200)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    value: float | None = Field(None, allow_inf_nan=False, description="Observed welfare.")
    poor: bool | None = Field(None, description="Observed poor (true) or non-poor (false).")
    source: str = Field(min_length=1, max_length=200, description="Who observed it.")
    observed_on: date | None = None
    note: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _observed(self) -> FeedbackRequest:
        if self.value is None and self.poor is None:
            raise ValueError("give an observed value, or poor true/false")
        return self


class FeedbackAnswer(BaseModel):
    """The stored observation's id."""

    id: int
    stored: bool


class ReloadRequest(Strict):
    """Which run to swap in (default: the map's own run directory, re-read)."""

    run_dir: str | None = Field(None, max_length=4096)


class ReloadAnswer(BaseModel):
    """The swap done."""

    map: str
    old_version: str
    new_version: str


class AuditRow(BaseModel):
    """One audit row."""

    seq: int
    time: str
    request_id: str
    key_id: str | None
    role: str
    method: str
    route: str
    map: str | None
    model_version: str | None
    status: int
    params_sha256: str
    prev_hash: str
    row_hash: str


class AuditPage(BaseModel):
    """Audit rows after a sequence number."""

    rows: list[AuditRow]
    next_after: int


class AuditVerification(BaseModel):
    """The chain checked from its first row."""

    ok: bool
    rows: int
    problems: list[str]
