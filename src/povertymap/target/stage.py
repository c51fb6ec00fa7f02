"""The targeting stage of a run: the plan at the configured budget, and its evaluation.

:func:`make_plan` turns a run's cells (with poverty headcounts) and, for household
methods, a registry and the survey into the plan written to ``targeting.csv``.
:func:`targeting_methods` lines up the alternatives a ministry would weigh (the map, a
nightlights-only map, the best map without imagery, a proxy means test, the hybrid, a
lottery and the oracles) so :func:`evaluate_methods` scores them on the same households.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from povertymap.config.targeting import TargetingSettings
from povertymap.engine.base import Engine
from povertymap.errors import ConfigError
from povertymap.target.allocate import aggregate_units, allocate
from povertymap.target.baselines import (
    AreaRanking,
    FixedPlan,
    HouseholdRanking,
    Hybrid,
    Lottery,
    Method,
    compare,
    headline,
    targeting_curves,
)
from povertymap.target.budget import Budget
from povertymap.target.metrics import parity_gaps
from povertymap.target.pmt import ProxyMeansTest, hybrid_select, pmt_columns, select_households

__all__ = [
    "TARGETING_MAPS",
    "FittedPMT",
    "TargetingEvaluation",
    "area_units",
    "evaluate_methods",
    "evaluate_plan",
    "fit_pmt",
    "make_plan",
    "plan_summary",
    "targeting_methods",
]

#: Registry/survey columns that are not proxy-means-test variables in our files.
NOT_PMT_EXTRA = ("asset_index", "registry_weight", "urban", "hh_id", "in_registry")


def area_units(cells: pd.DataFrame, unit: str, rate: str = "poverty_rate") -> pd.DataFrame:
    """Units for :func:`allocate`: cells as they are, or cells summed into admin-2 areas."""
    keep = [
        c
        for c in (
            "population",
            "estimate",
            "households",
            "urban",
            "admin_id",
            "parent_id",
            "poverty_lower",
            "poverty_upper",
        )
        if c in cells
    ]
    units = cells[keep].assign(
        **({"poverty_rate": cells[rate].to_numpy()} if rate in cells else {})
    )
    units.index.name = "cell_id"
    if unit == "admin2":
        units = aggregate_units(units, by="admin_id")
        units.index.name = "admin_id"
    return units


@dataclass(frozen=True)
class FittedPMT:
    """A proxy means test fitted on the survey, with the registry columns it reads."""

    model: ProxyMeansTest
    columns: list[str]

    def scores(self, registry: pd.DataFrame) -> pd.Series:
        """Predicted log welfare of every registry household, by ``household_id``."""
        return pd.Series(
            self.model.predict(registry[self.columns]), index=registry["household_id"].to_numpy()
        )


def fit_pmt(survey: pd.DataFrame, registry: pd.DataFrame) -> FittedPMT:
    """A proxy means test of survey welfare on the variables the registry also holds."""
    if "welfare" not in survey:
        raise ConfigError(
            "a proxy means test needs household welfare in the survey",
            where="key survey.households.welfare",
            fix="name the log consumption column of the households file",
        )
    cols = pmt_columns(survey, registry, exclude=NOT_PMT_EXTRA)
    weight = survey["weight"].to_numpy() if "weight" in survey else None
    pmt = ProxyMeansTest().fit(survey[cols], survey["welfare"].to_numpy(), sample_weight=weight)
    return FittedPMT(pmt, cols)


def make_plan(
    cells: pd.DataFrame,
    settings: TargetingSettings,
    *,
    budget: str | None = None,
    registry: pd.DataFrame | None = None,
    pmt: FittedPMT | None = None,
) -> pd.DataFrame:
    """The plan at ``budget`` (default: the settings'): one row per unit or household.

    Household methods need the ``registry`` and the run's proxy means test ``pmt``.

    Area plans are indexed by ``cell_id`` or ``admin_id`` with ``selected``, ``rank``,
    ``population``, ``expected_poor`` and ``cost``; household plans by ``household_id``.
    """
    chosen = Budget.parse(budget or settings.budget)
    options: dict[str, Any] = {
        "rank_by": settings.rank_by,
        "uncertainty": settings.uncertainty,
        "min_share": settings.min_share_admin1,
        "unit_cap": settings.unit_cap,
    }
    units = area_units(cells, settings.unit)
    if settings.method == "geographic":
        return allocate(units, chosen, **options)
    if registry is None or pmt is None:
        raise ConfigError(
            f"targeting method {settings.method!r} needs a household registry and survey "
            "households with welfare (for the proxy means test)",
            where="key registry",
            fix="add registry: {path: ...} and survey households to the config, or use "
            "method geographic",
        )
    score = pmt.scores(registry)
    weight = "weight" if "weight" in registry else None
    if settings.method == "pmt":
        return select_households(registry, score, chosen, weight_col=weight)
    area_col = "cell_id" if settings.unit == "cell" else "admin_id"
    return hybrid_select(
        units, registry, score, chosen, area_col=area_col, weight_col=weight, **options
    )


def plan_summary(plan: pd.DataFrame, settings: TargetingSettings) -> dict[str, Any]:
    """The plan's headline: units chosen, people and expected poor covered, money spent."""
    coverage = plan["coverage"] if "coverage" in plan else plan["selected"].astype(float)
    out: dict[str, Any] = {
        "method": settings.method,
        "unit": settings.unit,
        **{
            k: plan.attrs[k]
            for k in ("budget", "measure", "spent", "unspent", "rank_by")
            if k in plan.attrs
        },
        "units_selected": int((coverage > 0).sum()),
    }
    for column in ("population", "expected_poor", "hh_size"):
        if column in plan and plan[column].notna().any():
            out[f"{column}_covered"] = float((plan[column] * coverage).sum())
    return out


def targeting_methods(
    cells: pd.DataFrame,
    maps: Mapping[str, str],
    *,
    registry: pd.DataFrame | None,
    pmt: FittedPMT | None,
    true_cells: pd.DataFrame | None = None,
) -> dict[str, Method]:
    """The alternatives to compare: each map (``{label: headcount column}``), the PMT and
    hybrid (with a registry), a lottery, and the oracles (with the truth)."""
    methods: dict[str, Method] = {}
    for label, column in maps.items():
        if column in cells:
            methods[label] = AreaRanking(area_units(cells, "cell", column))
    if registry is not None and pmt is not None:
        score = pmt.scores(registry)
        methods["proxy means test"] = HouseholdRanking(score)
        if "poverty_rate" in cells:
            methods["hybrid: map, then PMT"] = Hybrid(area_units(cells, "cell"), score)
    methods["lottery"] = Lottery()
    if true_cells is not None:
        oracle = cells[["population", "urban", "parent_id"]].assign(
            oracle=true_cells["poverty_rate"].reindex(cells.index).to_numpy()
        )
        methods["oracle: true cell headcounts"] = AreaRanking(area_units(oracle, "cell", "oracle"))
        methods["oracle: true household consumption"] = HouseholdRanking("log_consumption")
    return methods


@dataclass(frozen=True)
class TargetingEvaluation:
    """Every method at the budget (by group), the headline, curves and parity gaps."""

    table: pd.DataFrame
    headline: dict[str, Any]
    curves: pd.DataFrame
    gaps: pd.DataFrame


def evaluate_methods(
    methods: Mapping[str, Method],
    households: pd.DataFrame,
    budget: str,
    rho: float = 3.0,
    engine: Engine | None = None,
) -> TargetingEvaluation:
    """Score the methods on the same households (``poor``, ``consumption``, ``hh_size``,
    ``cell_id``, groups ``urban`` and ``admin1_id``), at ``budget`` and across budgets
    (the curves' budgets spread over ``engine``'s workers)."""
    table = compare(methods, households, budget, rho=rho)
    return TargetingEvaluation(
        table=table,
        headline=headline(methods, households, budget, table=table),
        curves=targeting_curves(methods, households, rho=rho, engine=engine),
        gaps=parity_gaps(table),
    )


#: Maps compared in targeting, by label: the headcount column of each.
TARGETING_MAPS = {
    "map (this run)": "poverty_rate",
    "nightlights-only map": "baseline_poverty",
    "map without imagery": "no_imagery_poverty",
}


def evaluate_plan(
    plan: pd.DataFrame,
    cells: pd.DataFrame,
    registry: pd.DataFrame,
    pmt: FittedPMT | None,
    truth: Mapping[str, pd.DataFrame],
    settings: TargetingSettings,
    budget: str | None = None,
    engine: Engine | None = None,
) -> TargetingEvaluation:
    """This plan and every alternative against the true consumption of every household.

    ``truth`` holds the simulator's ``households`` (true ``log_consumption`` and ``poor``
    by ``household_id``) and ``cells`` (true headcounts, for the oracle).
    """
    people = truth["households"].assign(household_id=lambda d: d["household_id"].astype(str))
    households = registry.merge(
        people[["household_id", "log_consumption", "poor"]], on="household_id", how="inner"
    )
    households["consumption"] = np.exp(households["log_consumption"])
    if "parent_id" in cells and "admin1_id" not in households:
        households["admin1_id"] = cells["parent_id"].reindex(households["cell_id"]).to_numpy()
    unit_col = {"cell_id": "cell_id", "admin_id": "admin_id"}.get(str(plan.index.name))
    methods = {
        "this plan": FixedPlan(plan, unit_col),
        **targeting_methods(
            cells, TARGETING_MAPS, registry=registry, pmt=pmt, true_cells=truth["cells"]
        ),
    }
    return evaluate_methods(
        methods, households, budget or settings.budget, rho=settings.rho, engine=engine
    )
