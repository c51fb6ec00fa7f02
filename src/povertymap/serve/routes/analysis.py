"""Analysis: targeting scenarios, predictions from a feature table, field feedback."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Path, Request
from pydantic import ValidationError
from sqlalchemy import insert

from povertymap.errors import ConfigError
from povertymap.serve.auth import Principal, Role
from povertymap.serve.context import Service, audited, need, service, strict_query, use_map
from povertymap.serve.errors import BadRequest
from povertymap.serve.maps import _clean
from povertymap.serve.routes import ERRORS
from povertymap.serve.schemas import (
    CurvePoint,
    FeedbackAnswer,
    FeedbackRequest,
    PredictAnswer,
    PredictRequest,
    SelectedUnit,
    TargetAnswer,
    TargetCurve,
    TargetRequest,
)
from povertymap.serve.store import feedback, now_iso

router = APIRouter(
    prefix="/v1",
    tags=["analysis"],
    responses=ERRORS,
    dependencies=[Depends(audited), Depends(strict_query)],
)

MapName = Annotated[str, Path(description="The map (study area) name; see GET /v1/maps.")]


def _selected(plan: pd.DataFrame, limit: int) -> tuple[list[SelectedUnit], int]:
    coverage = plan["coverage"] if "coverage" in plan else plan["selected"].astype(float)
    chosen = plan[coverage.to_numpy(float) > 0]
    if "rank" in chosen:
        chosen = chosen.sort_values("rank")
    units = [
        SelectedUnit(
            id=str(idx),
            **{
                k: _clean(row.get(k))
                for k in ("rank", "coverage", "population", "expected_poor", "cost")
                if k in row
            },
        )
        for idx, row in zip(
            chosen.index[:limit], chosen.head(limit).to_dict("records"), strict=True
        )
    ]
    return units, len(chosen)


#: Budgets of the targeting curve, as shares of people (5%, 10%, ..., 95%).
CURVE_SHARES = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: The nightlights-only map's headcount column in a run's cells.
NIGHTLIGHTS = "baseline_poverty"


def _poor_interval(plan: pd.DataFrame, cells: pd.DataFrame, settings: Any) -> dict[str, float]:
    """Expected poor covered at the ends of the units' headcount intervals (an area plan
    only): the sum of the units' bounds, which is conservative (wider than the interval of
    the total) unless the units' errors are perfectly correlated."""
    from povertymap.target.stage import area_units

    if plan.index.name not in ("cell_id", "admin_id") or "coverage" not in plan:
        return {}
    units = area_units(cells, settings.unit)
    if not {"poverty_lower", "poverty_upper"} <= set(units.columns):
        return {}
    covered = plan["coverage"].reindex(units.index).fillna(0.0) * units["population"]
    return {
        "expected_poor_lower": float((covered * units["poverty_lower"]).sum()),
        "expected_poor_upper": float((covered * units["poverty_upper"]).sum()),
    }


def _curve(cells: pd.DataFrame, settings: Any) -> TargetCurve:
    """Share of the map's expected poor reached at each budget share by geographic
    targeting with this map (the request's unit and ranking), with the nightlights-only
    map (ranked by its headcount), and by a lottery (composes ``make_plan``)."""
    from povertymap.target.stage import area_units, make_plan

    geo = settings.model_copy(update={"method": "geographic"})
    units = area_units(cells, geo.unit)
    poor = units["population"] * units["poverty_rate"]
    total = float(poor.sum())
    night = None
    if NIGHTLIGHTS in cells:
        drop = [c for c in ("poverty_lower", "poverty_upper") if c in cells]
        night = cells.drop(columns=drop).assign(poverty_rate=cells[NIGHTLIGHTS])
    night_settings = geo.model_copy(update={"rank_by": "headcount", "uncertainty": False})

    def reached(plan: pd.DataFrame) -> float | None:
        cover = plan["coverage"].reindex(units.index).fillna(0.0)
        return float((cover * poor).sum() / total) if total > 0 else None

    points = []
    for share in CURVE_SHARES:
        budget = f"{share * 100:g}%"
        points.append(
            CurvePoint(
                budget_share=share,
                map=reached(make_plan(cells, geo, budget=budget)),
                nightlights=(
                    reached(make_plan(night, night_settings, budget=budget))
                    if night is not None
                    else None
                ),
                lottery=share,
            )
        )
    return TargetCurve(
        population=float(units["population"].sum()), expected_poor=total, points=points
    )


@router.post(
    "/maps/{map}/target",
    openapi_extra={"x-role": "analyst"},
    response_model=TargetAnswer,
    summary="A budget scenario.",
)
def target(
    request: Request,
    map: MapName,
    body: TargetRequest,
    who: Principal = Depends(need(Role.analyst)),
    svc: Service = Depends(service),
) -> TargetAnswer:
    """The plan ``povertymap target`` would make with these options (the run's targeting
    settings fill the rest): its summary (with ``expected_poor_lower``/``_upper`` for area
    plans) and the units it selects, best first; with ``curve``, the targeting curve.
    Nothing is written to the run."""
    from povertymap.target.stage import make_plan, plan_summary

    m = use_map(request, map, svc)
    base = m.run.targeting_settings()
    changes = body.model_dump(exclude_none=True, exclude={"budget", "limit", "curve"})
    try:
        settings = base.model_validate({**base.model_dump(), **changes})
    except ValidationError:
        raise BadRequest("the targeting options do not fit together; see the API docs") from None
    cells = m.run.cells()
    if "poverty_rate" not in cells and settings.rank_by != "estimate":
        raise ConfigError("this map has no headcounts", fix="rank by the estimate")
    registry = pmt = None
    if settings.method != "geographic":
        registry = m.registry()
        pmt = m.model.pmt_
        if registry is None or pmt is None:
            raise ConfigError("this map has no household registry", fix="use method geographic")
    plan = make_plan(cells, settings, budget=body.budget, registry=registry, pmt=pmt)
    summary = {k: _clean(v) for k, v in plan_summary(plan, settings).items()}
    summary.update(_poor_interval(plan, cells, settings))
    units, total = _selected(plan, min(body.limit, svc.settings.max_selected_units))
    return TargetAnswer(
        map=m.name,
        version=m.version,
        summary=summary,
        selected=units,
        selected_total=total,
        truncated=total > len(units),
        curve=_curve(cells, settings) if body.curve and "poverty_rate" in cells else None,
    )


@router.post(
    "/predict",
    openapi_extra={"x-role": "analyst"},
    response_model=PredictAnswer,
    summary="Estimates with intervals for a feature table, through the map's model.",
)
def predict(
    request: Request,
    body: PredictRequest,
    who: Principal = Depends(need(Role.analyst)),
    svc: Service = Depends(service),
) -> PredictAnswer:
    """One answer row per row sent, in order: ``raw_estimate``, ``estimate``, ``lower``,
    ``upper``, ``sigma`` and the headcount columns when the map has a poverty line.
    Unknown feature names are ignored; a table with none of the model's is a 422."""
    if len(body.rows) > svc.settings.max_predict_rows:
        raise BadRequest("more rows than the service predicts at once; send fewer")
    m = use_map(request, body.map, svc)
    frame = pd.DataFrame.from_records(
        [{k: (np.nan if v is None else v) for k, v in r.features.items()} for r in body.rows],
        index=pd.RangeIndex(len(body.rows)),
    )
    frame["population"] = [r.population or 0.0 for r in body.rows]
    frame["urban"] = [bool(r.urban) for r in body.rows]
    out = m.model.predict_features(frame)
    rows: list[dict[str, Any]] = [
        {str(k): _clean(v) for k, v in rec.items()} for rec in out.to_dict("records")
    ]
    return PredictAnswer(map=m.name, version=m.version, rows=rows)


@router.post(
    "/feedback",
    openapi_extra={"x-role": "analyst"},
    response_model=FeedbackAnswer,
    status_code=201,
    summary="A field observation, stored for monitoring and retraining.",
)
def post_feedback(
    request: Request,
    body: FeedbackRequest,
    who: Principal = Depends(need(Role.analyst)),
    svc: Service = Depends(service),
) -> FeedbackAnswer:
    """Stores the observation (place, value or poor/non-poor, source) with the key id."""
    m = use_map(request, body.map, svc)
    with svc.engine.begin() as conn:
        result = conn.execute(
            insert(feedback).values(
                time=now_iso(),
                key_id=who.key_id,
                map=m.name,
                lon=body.lon,
                lat=body.lat,
                value=body.value,
                poor=body.poor,
                source=body.source,
                observed_on=body.observed_on.isoformat() if body.observed_on else None,
                note=body.note,
            )
        )
        new_id = int(result.inserted_primary_key[0])
    return FeedbackAnswer(id=new_id, stored=True)
