"""Targeting settings: the ``targeting:`` key of the study-area config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TargetingSettings"]


class TargetingSettings(BaseModel):
    """Which plan a run proposes by default (``povertymap target`` overrides these)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: str = Field(
        "30%",
        description="Share of the population ('30%'), people ('120000'), households "
        "('25000 households') or money ('2000000 @ 25/person').",
    )
    unit: Literal["cell", "admin2"] = Field("cell", description="Cells or whole admin-2 areas.")
    method: Literal["geographic", "pmt", "hybrid"] = Field(
        "geographic",
        description="Rank areas by the map, households by a proxy means test (needs a "
        "registry), or preselect areas by the map then apply the PMT inside them.",
    )
    rank_by: Literal["headcount", "expected_poor", "probability", "estimate"] = Field(
        "headcount",
        description="Area score: headcount, expected number of poor, probability the "
        "headcount exceeds the national one, or the estimate alone (lowest first: a map of "
        "an asset index without a poverty line).",
    )
    uncertainty: bool = Field(
        False, description="Rank by the predictive distribution of the headcount."
    )
    min_share_admin1: float | None = Field(
        None, ge=0, le=1, description="Minimum share of the budget for every admin-1 region."
    )
    unit_cap: float | None = Field(
        None, gt=0, le=1, description="Maximum share of the budget one unit may take."
    )
    rho: float = Field(3.0, gt=0, description="Relative risk aversion of the CRRA welfare.")
