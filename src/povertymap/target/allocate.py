"""Geographic targeting: which areas to cover under a budget.

The units are grid cells or admin areas, one row each, indexed by unit id, with
``population``, ``poverty_rate`` (estimated headcount, in [0, 1]) and optionally
``households``, ``poverty_sd`` or ``poverty_lower``/``poverty_upper`` (predictive
uncertainty), ``parent_id`` (admin-1), ``admin_id`` (admin-2 of a cell) and ``urban``.
Covering a unit means covering everyone in it, so a unit costs its whole population (or
its households, or their money cost; see :class:`~povertymap.target.budget.Budget`).
Units without people may leave their poverty columns blank; any other blank is an error.

The rule is greedy: rank the units, walk down the ranking and cover each unit that still
fits in the budget. Ranking by **headcount** (the default) covers the most poor people per
person covered, which is the right order when a unit costs its population: it is the
greedy solution of the knapsack "maximise poor covered subject to people covered <= budget"
and exactly optimal with partial coverage. Ranking by **expected number of poor**
(headcount x population) favours large units and covers fewer poor people for the same
budget; it is offered because programs sometimes allocate that way.

**Never over budget.** A unit that does not fit in what is left is skipped and the walk
goes on (a smaller unit further down may fit). With ``partial=True`` the first unit that
does not fit is covered in part instead (``coverage`` < 1, i.e. a lottery inside it) and
the budget is spent exactly. Whole units are the default because that is how geographic
programs are run and explained: everyone in a selected area is eligible, and a lottery
inside one area is rarely acceptable; the unspent remainder is reported in
``plan.attrs["unspent"]``. **Ties** in the score are broken by unit id, ascending, so a
plan does not depend on row order.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from povertymap.errors import InputError
from povertymap.target._checks import finite_column, require_columns, sort_key_order
from povertymap.target._greedy import fill_greedy, fill_in_order
from povertymap.target.budget import Budget, BudgetLike
from povertymap.target.predictive import expected_headcount, logit_scales, probability_above

__all__ = ["RankBy", "aggregate_units", "allocate", "rank_units"]

RankBy = Literal["headcount", "expected_poor", "probability", "estimate"]
_RANK_BY = ("headcount", "expected_poor", "probability", "estimate")


def _uncertainty_columns(units: pd.DataFrame) -> str | None:
    if "poverty_lower" in units and "poverty_upper" in units:
        return "interval"
    if "poverty_sd" in units:
        return "sd"
    return None


def _scales(units: pd.DataFrame, rate: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    kind = _uncertainty_columns(units)
    if kind == "interval":
        lo = finite_column(units, "poverty_lower", "units", lower=0, upper=1)
        hi = finite_column(units, "poverty_upper", "units", lower=0, upper=1)
        return logit_scales(rate, lower=lo, upper=hi, level=level)
    if kind == "sd":
        sd = finite_column(units, "poverty_sd", "units", lower=0)
        return logit_scales(rate, sd=sd)
    raise InputError(
        "uncertainty-aware targeting needs poverty_lower and poverty_upper, or poverty_sd; "
        f"the units have {', '.join(map(str, units.columns))}",
        fix="add the map's interval columns, or rank without uncertainty",
    )


def _check_units(units: pd.DataFrame) -> None:
    if not isinstance(units, pd.DataFrame):
        raise InputError(
            f"units must be a DataFrame, got {type(units).__name__}",
            fix="pass a DataFrame indexed by unit id",
        )
    if len(units) == 0:
        raise InputError("the units table is empty", fix="pass at least one unit")
    if not units.index.is_unique:
        dup = units.index[units.index.duplicated()].unique()[:3].tolist()
        raise InputError(
            f"unit ids are not unique (e.g. {dup})",
            fix="index the units by a unique cell or admin id",
        )
    require_columns(units, ["population"], "units")
    if "poverty_rate" not in units and "estimate" not in units:
        require_columns(units, ["poverty_rate"], "units")


def _rate(units: pd.DataFrame, what: str) -> np.ndarray:
    """The units' headcount; NaN where only the estimate is known (ranked by it)."""
    if "poverty_rate" not in units:
        return np.full(len(units), np.nan)
    return finite_column(units, "poverty_rate", what, lower=0, upper=1)


_POVERTY_COLUMNS = ("poverty_rate", "poverty_lower", "poverty_upper", "poverty_sd")


def _fill_empty(units: pd.DataFrame) -> pd.DataFrame:
    """Units without people may lack an estimate (maps leave them blank): use 0 there."""
    pop = pd.to_numeric(units["population"], errors="coerce")
    empty = (pop == 0).to_numpy()
    cols = [c for c in _POVERTY_COLUMNS if c in units.columns]
    if not empty.any() or not units.loc[empty, cols].isna().any().any():
        return units
    units = units.copy()
    for c in cols:
        units[c] = units[c].astype(float).where(~(empty & units[c].isna().to_numpy()), 0.0)
    return units


def rank_units(
    units: pd.DataFrame,
    *,
    rank_by: RankBy = "headcount",
    uncertainty: bool = False,
    threshold: float | None = None,
    level: float = 0.9,
) -> pd.DataFrame:
    """Score and rank units; rank 1 is covered first.

    Returns a DataFrame indexed like ``units`` with ``rank``, ``score``, ``headcount`` (the
    headcount used: the point estimate, or its expectation under the predictive
    distribution when ``uncertainty``), ``expected_poor`` (headcount x population) and,
    for ``rank_by="probability"``, ``probability`` (P(headcount > threshold)).

    ``rank_by="probability"`` always uses the predictive distribution; its ``threshold``
    defaults to the population-weighted mean headcount (areas poorer than the country).
    ``rank_by="estimate"`` ranks by the ``estimate`` column alone, lowest (poorest) first,
    for maps without a poverty line (an asset index): headcounts are then NaN.
    Ties are broken by unit id; for ``probability``, by expected headcount first.
    A ``expected_headcount`` column in ``units`` (written by :func:`aggregate_units`) is
    used as the expectation instead of deriving it from the unit's own interval.
    """
    _check_units(units)
    units = _fill_empty(units)
    if rank_by not in _RANK_BY:
        raise InputError(f"unknown rank_by {rank_by!r}", fix=f"use one of {', '.join(_RANK_BY)}")
    pop = finite_column(units, "population", "units", lower=0)
    if rank_by != "estimate" or "poverty_rate" in units:
        require_columns(units, ["poverty_rate"], "units")
    rate = _rate(units, "units")
    cols: dict[str, np.ndarray] = {}
    headcount = rate
    scales = None
    if uncertainty or rank_by == "probability":
        scales = _scales(units, rate, level) if _uncertainty_columns(units) else None
        if "expected_headcount" in units:
            expected = finite_column(units, "expected_headcount", "units", lower=0, upper=1)
        elif scales is not None:
            expected = expected_headcount(rate, *scales)
        else:
            scales = _scales(units, rate, level)  # raises the explanatory error
            expected = rate
        if uncertainty:
            headcount = expected
    cols["headcount"] = headcount
    cols["expected_poor"] = headcount * pop
    secondary: np.ndarray | None = None
    if rank_by == "probability":
        if scales is None:
            scales = _scales(units, rate, level)
        if threshold is None:
            threshold = float(np.sum(rate * pop) / np.sum(pop)) if pop.sum() > 0 else 0.5
        cols["probability"] = probability_above(rate, *scales, threshold)
        score = cols["probability"]
        secondary = headcount
    elif rank_by == "expected_poor":
        score = cols["expected_poor"]
    elif rank_by == "estimate":
        require_columns(units, ["estimate"], "units")
        score = -finite_column(units, "estimate", "units")
    else:
        score = headcount
    cols["score"] = score
    order = sort_key_order(units.index)  # ties: by unit id
    if secondary is not None:
        order = order[np.argsort(-secondary[order], kind="stable")]
    order = order[np.argsort(-score[order], kind="stable")]
    rank = np.empty(len(units), dtype=np.int64)
    rank[order] = np.arange(1, len(units) + 1)
    cols["rank"] = rank
    out = pd.DataFrame(cols, index=units.index)
    out.attrs["threshold"] = threshold
    return out


def _floors(
    min_share: float | Mapping[Hashable, float] | None,
    parents: pd.Series | None,
) -> dict[Hashable, float]:
    if min_share is None:
        return {}
    if parents is None:
        raise InputError(
            "min_share needs the admin-1 of every unit, but the units have no 'parent_id'",
            fix="add a parent_id column (admin-1 id) or pass parent_col",
        )
    present = pd.unique(parents.to_numpy())
    if isinstance(min_share, Mapping):
        unknown = [k for k in min_share if k not in set(present)]
        if unknown:
            raise InputError(
                f"min_share names admin-1 unit(s) {unknown} that no unit belongs to",
                fix=f"use admin-1 ids among {sorted(map(str, present))[:10]}",
            )
        floors = {k: float(v) for k, v in min_share.items()}
    else:
        floors = {k: float(min_share) for k in present}
    bad = {k: v for k, v in floors.items() if not (math.isfinite(v) and 0 <= v <= 1)}
    if bad:
        raise InputError(f"min_share values {bad} are not in [0, 1]", fix="give shares in [0, 1]")
    total = sum(floors.values())
    if total > 1 + 1e-12:
        raise InputError(
            f"minimum shares add up to {total:.0%} of the budget, more than 100%",
            fix="lower the minimum shares so that they add up to at most 100%",
        )
    return floors


def allocate(
    units: pd.DataFrame,
    budget: BudgetLike,
    *,
    rank_by: RankBy = "headcount",
    uncertainty: bool = False,
    threshold: float | None = None,
    level: float = 0.9,
    min_share: float | Mapping[Hashable, float] | None = None,
    unit_cap: float | None = None,
    partial: bool = False,
    whole_admin: bool = False,
    admin_col: str = "admin_id",
    parent_col: str = "parent_id",
) -> pd.DataFrame:
    """Choose the units to cover under ``budget``.

    Parameters
    ----------
    units:
        One row per unit, indexed by unit id (see the module docstring for columns).
    budget:
        A :class:`Budget` or its text (``"30%"``, ``"120000"``, ``"25000 households"``,
        ``"2000000 @ 25/person"``). A share is of the units' total population.
    rank_by:
        ``"headcount"`` (default; most poor per person covered), ``"expected_poor"``
        (headcount x population) or ``"probability"`` (P(headcount > threshold)).
    uncertainty:
        Use the expected headcount under the predictive distribution (needs
        ``poverty_lower``/``poverty_upper`` or ``poverty_sd``; see
        :mod:`povertymap.target.predictive`) instead of the point estimate.
    threshold, level:
        Headcount threshold for ``rank_by="probability"`` (default: the national mean) and
        the level of the ``poverty_lower``/``poverty_upper`` interval (default 0.9).
    min_share:
        Minimum share of the budget spent in each admin-1 (``parent_col``): one share for
        all, or ``{admin1_id: share}``. Floors are served first, each with the region's
        best units, keeping back what later floors need; the rest goes by national rank.
        A floor that cannot be met (the region is too small or its units too lumpy) is
        reported in ``plan.attrs["min_share_met"]``.
    unit_cap:
        Maximum share of the budget any one unit may take, in (0, 1]. Whole units above
        it are skipped (reason ``over_cap``); with ``partial`` they are covered up to it.
    partial:
        Cover the unit that does not fit in part (default False: skip it; see module).
    whole_admin:
        Units are cells: select whole admin-2 units (``admin_col``) ranked on their
        aggregated cells (:func:`aggregate_units`), then mark every cell of a selected
        admin-2. ``rank``, ``score``, ``coverage`` and ``reason`` are the admin-2's.

    Returns
    -------
    DataFrame
        Indexed by unit id (same name as ``units.index``), in rank order, with ``rank``,
        ``selected``, ``coverage`` (share of the unit covered, 1 or 0 unless partial),
        ``score``, ``poverty_rate``, ``headcount``, ``population``, ``expected_poor``,
        ``cost`` (of covering the whole unit, in the budget's measure), ``spent``
        (cost x coverage), ``covered_people``, ``reason`` (``rank``, ``min_share``,
        ``over_budget``, ``over_cap``, ``no_population``), plus ``households``,
        ``parent_id``, ``admin_id``, ``probability`` when available. ``plan.attrs`` holds
        ``budget``, ``measure``, ``capacity``, ``spent``, ``unspent``, ``rank_by``,
        ``uncertainty``, ``threshold``, ``partial``, ``min_share_met``, ``unit``.
    """
    _check_units(units)
    units = _fill_empty(units)
    budget = Budget.parse(budget)
    if whole_admin:
        return _allocate_whole_admin(
            units,
            budget,
            admin_col=admin_col,
            parent_col=parent_col,
            rank_by=rank_by,
            uncertainty=uncertainty,
            threshold=threshold,
            level=level,
            min_share=min_share,
            unit_cap=unit_cap,
            partial=partial,
        )
    if unit_cap is not None and not (math.isfinite(unit_cap) and 0 < unit_cap <= 1):
        raise InputError(
            f"unit_cap {unit_cap!r} is not a share of the budget in (0, 1]",
            fix="give e.g. unit_cap=0.05 for at most 5% of the budget per unit",
        )
    ranked = rank_units(
        units, rank_by=rank_by, uncertainty=uncertainty, threshold=threshold, level=level
    )
    pop = finite_column(units, "population", "units", lower=0)
    cost = budget.unit_costs(units, what="units")
    capacity = budget.capacity(pop.sum())
    parents = units[parent_col] if parent_col in units.columns else None
    floors = _floors(min_share, parents)

    order = np.argsort(ranked["rank"].to_numpy(), kind="stable")
    max_cov = np.ones(len(units))
    over_cap = np.zeros(len(units), dtype=bool)
    if unit_cap is not None:
        cap_abs = unit_cap * capacity
        with np.errstate(divide="ignore", invalid="ignore"):
            max_cov = np.where(cost > cap_abs, cap_abs / cost, 1.0)
        over_cap = cost > cap_abs
        if not partial:
            max_cov = np.where(over_cap, 0.0, 1.0)
    cov = np.zeros(len(units))
    spent = 0.0
    floor_met: dict[Hashable, bool] = {}
    in_floor = np.zeros(len(units), dtype=bool)
    parent_arr = parents.to_numpy() if parents is not None else np.array([])
    keys = sorted(floors, key=str)
    # what each floor can claim: never more than its region's units can absorb, so that a
    # region too small for its floor does not hold budget back from the others
    absorbable = {k: float(np.sum((cost * max_cov)[parent_arr == k])) for k in keys}
    claim = {k: min(floors[k] * capacity, absorbable[k]) for k in keys}
    for k, key in enumerate(keys):
        reserve = sum(claim[later] for later in keys[k + 1 :])
        mine = order[parent_arr[order] == key]
        before = cov.copy()
        spent = fill_greedy(
            mine, cost, max_cov, cov, spent, capacity,
            partial=partial, target=claim[key], reserve=reserve,
        )  # fmt: skip
        in_floor |= cov > before
    spent = fill_in_order(order, cost, max_cov, cov, spent, capacity, partial=partial)
    for key in keys:
        region_spent = float(np.sum((cost * cov)[parent_arr == key]))
        floor_met[key] = region_spent >= floors[key] * capacity * (1 - 1e-9)

    reason = np.where(cov > 0, "rank", "over_budget").astype(object)
    reason[in_floor] = "min_share"
    reason[(cov == 0) & over_cap] = "over_cap"
    reason[pop <= 0] = "no_population"
    cols: dict[str, Any] = {
        "rank": ranked["rank"].to_numpy(),
        "selected": cov > 0,
        "coverage": cov,
        "score": ranked["score"].to_numpy(),
    }
    if "probability" in ranked:
        cols["probability"] = ranked["probability"].to_numpy()
    cols["poverty_rate"] = _rate(units, "units")
    if "estimate" in units:
        cols["estimate"] = units["estimate"].to_numpy(dtype=float)
    cols["headcount"] = ranked["headcount"].to_numpy()
    cols["population"] = pop
    if "households" in units:
        cols["households"] = units["households"].to_numpy()
    cols["expected_poor"] = ranked["expected_poor"].to_numpy()
    cols["cost"] = cost
    cols["spent"] = cost * cov
    cols["covered_people"] = pop * cov
    cols["reason"] = reason
    for col in (parent_col, admin_col, "urban"):
        if col in units and col not in cols:
            cols[col] = units[col].to_numpy()
    plan = pd.DataFrame(cols, index=units.index)
    plan = plan.iloc[order]
    spent_total = float(plan["spent"].sum())
    plan.attrs.update(
        budget=budget.describe(),
        measure=budget.measure,
        capacity=float(capacity),
        spent=spent_total,
        unspent=float(max(capacity - spent_total, 0.0)),
        rank_by=rank_by,
        uncertainty=bool(uncertainty),
        threshold=ranked.attrs.get("threshold"),
        partial=bool(partial),
        min_share_met=floor_met,
        unit=str(units.index.name or "unit_id"),
    )
    return plan


def aggregate_units(
    cells: pd.DataFrame,
    *,
    by: str = "admin_id",
    parent_col: str = "parent_id",
    level: float = 0.9,
) -> pd.DataFrame:
    """Aggregate cells to the units named by column ``by`` (e.g. admin-2).

    ``population`` and ``households`` are summed; ``poverty_rate`` is the population-
    weighted mean headcount; ``urban`` becomes the urban share of the population;
    ``parent_col`` is carried (an admin-2 must lie in one admin-1). When cells carry an
    interval or sd, ``expected_headcount`` is the population-weighted mean of the cells'
    expected headcounts (exact: expectations add), and ``poverty_lower``/``poverty_upper``
    (or ``poverty_sd``) are population-weighted means of the cells' bounds (or sds), which
    is exact when the cells' errors are perfectly correlated and conservative otherwise:
    map errors are spatially correlated, so independence would overstate precision.
    """
    _check_units(cells)
    cells = _fill_empty(cells)
    require_columns(cells, [by], "cells")
    pop = finite_column(cells, "population", "cells", lower=0)
    rate = _rate(cells, "cells")
    work = pd.DataFrame({by: cells[by].to_numpy(), "population": pop}, index=cells.index)
    work["_w_rate"] = pop * rate
    if "estimate" in cells:
        work["_w_estimate"] = pop * finite_column(cells, "estimate", "cells")
    kind = _uncertainty_columns(cells) if "poverty_rate" in cells else None
    if kind is not None:
        work["_w_expected"] = pop * expected_headcount(rate, *_scales(cells, rate, level))
    spread = {"interval": ["poverty_lower", "poverty_upper"], "sd": ["poverty_sd"]}.get(
        kind or "", []
    )
    for col in spread:
        work[f"_w_{col}"] = pop * finite_column(cells, col, "cells", lower=0)
    if "households" in cells:
        work["households"] = finite_column(cells, "households", "cells", lower=0)
    if "urban" in cells:
        work["_w_urban"] = pop * cells["urban"].astype(float).to_numpy()
    sums = work.groupby(by, sort=True).sum(numeric_only=True)
    out = pd.DataFrame(index=sums.index)
    out.index.name = by
    out["population"] = sums["population"]
    if "households" in sums:
        out["households"] = sums["households"]
    denom = sums["population"].where(sums["population"] > 0)
    if "poverty_rate" in cells:
        out["poverty_rate"] = (sums["_w_rate"] / denom).fillna(0.0)
    if "_w_estimate" in sums:
        plain = pd.Series(cells["estimate"].to_numpy(float)).groupby(cells[by].to_numpy()).mean()
        out["estimate"] = (sums["_w_estimate"] / denom).fillna(plain)
    if "_w_expected" in sums:
        out["expected_headcount"] = (sums["_w_expected"] / denom).fillna(0.0)
    for col in spread:
        out[col] = (sums[f"_w_{col}"] / denom).fillna(0.0)
    if "_w_urban" in sums:
        out["urban"] = (sums["_w_urban"] / denom).fillna(0.0)
    if parent_col in cells:
        parents = cells.groupby(cells[by].to_numpy())[parent_col].agg(["nunique", "first"])
        split = parents.index[parents["nunique"] > 1].tolist()
        if split:
            raise InputError(
                f"unit(s) {split[:5]} of {by!r} lie in more than one {parent_col!r}",
                fix=f"give each {by} a single {parent_col}",
            )
        out[parent_col] = parents["first"].reindex(out.index).to_numpy()
    return out


def _allocate_whole_admin(
    cells: pd.DataFrame,
    budget: Budget,
    *,
    admin_col: str,
    parent_col: str,
    **options: Any,
) -> pd.DataFrame:
    require_columns(cells, [admin_col], "cells (whole_admin=True)")
    admins = aggregate_units(cells, by=admin_col, parent_col=parent_col, level=options["level"])
    admin_plan = allocate(admins, budget, parent_col=parent_col, **options)
    pop = finite_column(cells, "population", "cells", lower=0)
    key = cells[admin_col].to_numpy()
    cols: dict[str, Any] = {}
    for col in ("rank", "selected", "coverage", "score"):
        cols[col] = admin_plan[col].reindex(key).to_numpy()
    if "probability" in admin_plan:
        cols["probability"] = admin_plan["probability"].reindex(key).to_numpy()
    rate = _rate(cells, "cells")
    cols["poverty_rate"] = rate
    headcount = rate
    if options["uncertainty"] and "poverty_rate" in cells and _uncertainty_columns(cells):
        headcount = expected_headcount(rate, *_scales(cells, rate, options["level"]))
    cols["headcount"] = headcount
    cols["population"] = pop
    if "households" in cells:
        cols["households"] = cells["households"].to_numpy()
    cols["expected_poor"] = headcount * pop
    cols["cost"] = budget.unit_costs(cells, what="cells")
    cols["spent"] = cols["cost"] * cols["coverage"]
    cols["covered_people"] = pop * cols["coverage"]
    cols["reason"] = admin_plan["reason"].reindex(key).to_numpy()
    cols[admin_col] = key
    for col in (parent_col, "urban"):
        if col in cells:
            cols[col] = cells[col].to_numpy()
    plan = pd.DataFrame(cols, index=cells.index)
    order = np.lexsort((sort_key_order(cells.index).argsort(), plan["rank"].to_numpy()))
    plan = plan.iloc[order]
    plan.attrs.update(admin_plan.attrs)
    plan.attrs["unit"] = f"{cells.index.name or 'cell_id'} (whole {admin_col})"
    plan.attrs["spent"] = float(plan["spent"].sum())
    return plan
