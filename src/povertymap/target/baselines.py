"""Targeting methods side by side: the same budget, the same households, the same metrics.

A *method* turns a budget into a coverage for each household of the evaluation table. The
pipeline supplies one map per model (estimated ``poverty_rate`` per unit); baselines are
built from the truth or from simple rules:

* :class:`AreaRanking` -- geographic targeting with a map (any model; the nightlights-only
  map; the best map without imagery; the **area oracle**, i.e. the true headcount per
  unit, which is the ceiling of geographic targeting at that unit size);
* :class:`HouseholdRanking` -- household targeting by a score (PMT predictions; true
  consumption gives the **household oracle**, the ceiling of any rule);
* :class:`Hybrid` -- map preselection, then PMT inside the preselected areas;
* :class:`Lottery` -- universal eligibility with a random draw: everyone's coverage is the
  budget share (the expected result of a lottery);
* :class:`FixedPlan` -- a plan already made (evaluated as it is, whatever the budget).

:func:`compare` evaluates any number of named methods at one budget (overall and by
group); :func:`targeting_curves` at budgets from 5% to 95%; :func:`headline` gives the
figures a report leads with. Methods are compared with ``partial=True`` by default so that
each spends exactly the budget: otherwise a method could look better or worse only
because its last area happened to fit. For the same reason, units or households whose
scores tie share the coverage their block receives (``ties="share"``, the expectation of
breaking the tie at random): a plan breaks ties by id, which is deterministic but
arbitrary, and a nightlights-only map, dark over most of the country, would otherwise be
judged on the geography of its ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from povertymap.engine.base import Engine
from povertymap.engine.local import LocalEngine
from povertymap.errors import InputError
from povertymap.target._checks import require_columns
from povertymap.target.allocate import allocate
from povertymap.target.budget import Budget, BudgetLike
from povertymap.target.metrics import Level, evaluate
from povertymap.target.pmt import hybrid_select, select_households

__all__ = [
    "DEFAULT_BUDGETS",
    "AreaRanking",
    "FixedPlan",
    "HouseholdRanking",
    "Hybrid",
    "Lottery",
    "Method",
    "compare",
    "headline",
    "spread_ties",
    "targeting_curves",
]

#: Budget shares of the targeting curves: 5%, 10%, ..., 95%.
DEFAULT_BUDGETS = tuple(round(0.05 * k, 2) for k in range(1, 20))


class Method(Protocol):
    """Anything that gives each household of ``households`` a coverage under a budget."""

    def coverage(self, households: pd.DataFrame, budget: Budget) -> np.ndarray:
        """Coverage in [0, 1] per household, aligned with ``households``."""
        ...


def _household_ids(households: pd.DataFrame) -> pd.Index:
    if "household_id" in households.columns:
        return pd.Index(households["household_id"])
    return households.index


def _people(households: pd.DataFrame) -> np.ndarray:
    require_columns(households, ["hh_size"], "households")
    w = households["weight"].to_numpy(float) if "weight" in households else 1.0
    return np.asarray(households["hh_size"].to_numpy(float) * w, dtype=float)


def spread_ties(score: np.ndarray, cost: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Coverage with every block of tied scores covered evenly (cost-weighted).

    The spend of each block is kept; it is spread over the block as a random tie-break
    would in expectation.
    """
    score = np.asarray(score, dtype=float)
    codes, _ = pd.factorize(score)
    spent = np.bincount(codes, weights=cost * coverage)
    total = np.bincount(codes, weights=cost)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, spent / total, 0.0)
    spread = share[codes]
    # a zero-cost unit keeps its own coverage
    return np.where(cost > 0, np.minimum(spread, 1.0), coverage)


def _area_column(units: pd.DataFrame, unit_col: str | None, households: pd.DataFrame) -> str:
    col = unit_col or (str(units.index.name) if units.index.name is not None else None)
    if col is None:
        raise InputError(
            "cannot tell which household column links households to the map's units",
            fix="name the units' index (e.g. 'cell_id') or pass unit_col",
        )
    require_columns(households, [col], "households")
    return str(col)


@dataclass
class AreaRanking:
    """Geographic targeting with a map: :func:`allocate`, then each household takes the
    coverage of its unit (``unit_col``, default the units' index name)."""

    units: pd.DataFrame
    unit_col: str | None = None
    ties: Literal["share", "id"] = "share"
    options: dict[str, Any] = field(default_factory=dict)

    def plan(self, budget: BudgetLike) -> pd.DataFrame:
        """The area plan at ``budget`` (``partial=True`` unless the options say otherwise).

        With ``ties="share"`` (and no ``min_share``/``unit_cap``, which a spread could
        break), tied units share their block's coverage; ``"id"`` keeps the plan's order.
        """
        plan = allocate(self.units, budget, **{"partial": True, **self.options})
        constrained = any(self.options.get(k) is not None for k in ("min_share", "unit_cap"))
        if self.ties == "share" and not constrained:
            cov = spread_ties(
                plan["score"].to_numpy(), plan["cost"].to_numpy(), plan["coverage"].to_numpy()
            )
            plan["coverage"] = cov
            plan["selected"] = cov > 0
            plan["spent"] = plan["cost"] * cov
            plan["covered_people"] = plan["population"] * cov
        return plan

    def coverage(self, households: pd.DataFrame, budget: Budget) -> np.ndarray:
        col = _area_column(self.units, self.unit_col, households)
        cov = self.plan(budget)["coverage"]
        return cov.reindex(households[col].to_numpy()).fillna(0.0).to_numpy(dtype=float)


@dataclass
class HouseholdRanking:
    """Household targeting: the lowest ``score`` first (PMT predictions, or true
    consumption for the household oracle). ``score`` is a column of the households table
    or a Series by household id."""

    score: pd.Series | str
    partial: bool = True
    ties: Literal["share", "id"] = "share"

    def coverage(self, households: pd.DataFrame, budget: Budget) -> np.ndarray:
        weight = "weight" if "weight" in households.columns else None
        plan = select_households(
            households, self.score, budget, weight_col=weight, partial=self.partial
        )
        cov = plan["coverage"].to_numpy()
        if self.ties == "share":
            cov = spread_ties(plan["score"].to_numpy(), plan["cost"].to_numpy(), cov)
        return pd.Series(cov, index=plan.index).reindex(_household_ids(households)).to_numpy()


@dataclass
class Hybrid:
    """Map preselection of areas (``preselect``, default twice the budget), then the lowest
    ``score`` inside them (:func:`hybrid_select`)."""

    units: pd.DataFrame
    score: pd.Series | str
    preselect: BudgetLike | None = None
    unit_col: str | None = None
    partial: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def coverage(self, households: pd.DataFrame, budget: Budget) -> np.ndarray:
        col = _area_column(self.units, self.unit_col, households)
        weight = "weight" if "weight" in households.columns else None
        plan = hybrid_select(
            self.units, households, self.score, budget, preselect=self.preselect,
            area_col=col, weight_col=weight, partial=self.partial, **self.options,
        )  # fmt: skip
        return plan["coverage"].reindex(_household_ids(households)).to_numpy(dtype=float)


@dataclass
class Lottery:
    """Universal eligibility, beneficiaries drawn at random: everyone is covered with
    probability budget / population (the expectation of the draw; no seed needed)."""

    def coverage(self, households: pd.DataFrame, budget: Budget) -> np.ndarray:
        people = _people(households)
        w = households["weight"].to_numpy(float) if "weight" in households else 1.0
        hh = np.ones(len(households)) * w
        table = pd.DataFrame({"people": people, "households": hh})
        total_cost = float(budget.unit_costs(table, people="people").sum())
        share = budget.capacity(people.sum()) / total_cost if total_cost > 0 else 0.0
        return np.full(len(households), min(share, 1.0))


@dataclass
class FixedPlan:
    """A plan already made: a ``coverage`` (or ``selected``) column indexed by household id
    (``unit_col`` None) or by area id (``unit_col`` names the households' area column)."""

    plan: pd.DataFrame
    unit_col: str | None = None

    def coverage(self, households: pd.DataFrame, budget: Budget) -> np.ndarray:
        col = "coverage" if "coverage" in self.plan else "selected"
        require_columns(self.plan, [col], "plan")
        cov = self.plan[col].astype(float)
        key = (
            households[self.unit_col].to_numpy()
            if self.unit_col is not None
            else _household_ids(households)
        )
        return cov.reindex(key).fillna(0.0).to_numpy(dtype=float)


def _check_methods(methods: Mapping[str, Method]) -> None:
    if not methods:
        raise InputError("no targeting methods to compare", fix="pass at least one method")
    for name, method in methods.items():
        if not hasattr(method, "coverage"):
            raise InputError(
                f"method {name!r} is a {type(method).__name__}, not a targeting method",
                fix="wrap maps in AreaRanking, scores in HouseholdRanking, plans in FixedPlan",
            )


def compare(
    methods: Mapping[str, Method],
    households: pd.DataFrame,
    budget: BudgetLike,
    *,
    by: Sequence[str] = ("urban", "admin1_id"),
    level: Level = "person",
    **evaluate_options: Any,
) -> pd.DataFrame:
    """Evaluate every method at ``budget`` on the same households (see :func:`evaluate`).

    Returns the stacked evaluations with ``method`` and ``budget`` columns first, plus
    ``cost``: what the beneficiaries cost in the budget's measure (people, households or
    money), overall and per group.
    """
    _check_methods(methods)
    budget = Budget.parse(budget)
    w = households["weight"].to_numpy(float) if "weight" in households else 1.0
    table = pd.DataFrame(
        {"people": _people(households), "households": np.ones(len(households)) * w}
    )
    unit_cost = budget.unit_costs(table, people="people", households="households")
    frames = []
    for name, method in methods.items():
        cov = method.coverage(households, budget)
        ev = evaluate(households, cov, by=by, level=level, **evaluate_options)
        costs = [float(np.sum(unit_cost * cov))]
        for col in ev["group_by"].iloc[1:].unique():
            codes, values = pd.factorize(households[col], sort=True)
            costs += [float(np.sum((unit_cost * cov)[codes == k])) for k in range(len(values))]
        ev.insert(0, "budget", budget.describe())
        ev.insert(0, "method", name)
        ev["cost"] = costs
        frames.append(ev)
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update({str(k): v for k, v in frames[0].attrs.items()})
    out.attrs.update(budget=budget.describe(), measure=budget.measure)
    return out


def targeting_curves(
    methods: Mapping[str, Method],
    households: pd.DataFrame,
    budgets: Iterable[float] = DEFAULT_BUDGETS,
    *,
    level: Level = "person",
    by: Sequence[str] = (),
    engine: Engine | None = None,
    **evaluate_options: Any,
) -> pd.DataFrame:
    """Metrics of every method at each budget share (default 5%, 10%, ..., 95%).

    Returns :func:`compare`'s columns with a numeric ``budget_share`` column; overall
    figures only unless ``by`` names grouping columns. ``engine`` spreads the budgets
    over its workers (default: one after another here); the figures are the same.
    """
    work = partial(_curve_point, methods, households, level, tuple(by), evaluate_options)
    engine = engine if engine is not None else LocalEngine()
    shares = [float(share) for share in budgets]
    out = engine.map(work, shares, label="targeting curves").reset_index(drop=True)
    out.attrs.update(level=level)
    return out


def _curve_point(
    methods: Mapping[str, Method],
    households: pd.DataFrame,
    level: Level,
    by: tuple[str, ...],
    options: dict[str, Any],
    share: float,
) -> pd.DataFrame:
    """Every method at one budget share: one point of each targeting curve."""
    frame = compare(methods, households, Budget.share(share), by=by, level=level, **options)
    frame.insert(2, "budget_share", share)
    return frame


#: The headline figures, renamed for readers.
_HEADLINE = {
    "share_poor_covered": "poor_covered",
    "exclusion_error": "exclusion_error",
    "inclusion_error": "inclusion_error",
    "coverage": "coverage",
    "cost": "cost",
    "welfare_vs_oracle": "welfare_vs_oracle",
}


def headline(
    methods: Mapping[str, Method],
    households: pd.DataFrame,
    budget: BudgetLike = "30%",
    *,
    level: Level = "person",
    table: pd.DataFrame | None = None,
    **evaluate_options: Any,
) -> dict[str, Any]:
    """The figures a report leads with, for every method at one budget (default 30%).

    Returns ``{"budget", "measure", "level", "methods": {name: {"poor_covered",
    "exclusion_error", "inclusion_error", "coverage", "cost", "welfare_vs_oracle"}}}``
    (plain floats; NaN where undefined, e.g. no welfare without consumption). ``table``,
    :func:`compare`'s table of the same methods, budget and level, is read instead of
    evaluating them again (its overall rows).
    """
    if table is None:
        table = compare(methods, households, budget, by=(), level=level, **evaluate_options)
    overall = table[table["group_by"] == "all"].set_index("method")
    return {
        "budget": table.attrs["budget"],
        "measure": table.attrs["measure"],
        "level": level,
        "methods": {
            str(name): {new: float(overall[old].loc[name]) for old, new in _HEADLINE.items()}
            for name in overall.index
        },
    }
