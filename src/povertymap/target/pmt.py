"""Household targeting: a proxy means test (PMT) and the selection it drives.

A PMT predicts a household's (log) consumption per capita from a few characteristics that
are cheap to observe and hard to fake: dwelling (roof, floor, water, toilet), assets,
household size and the head's education. It is fitted on survey households, where
consumption is measured, and applied to a registry (a census-like list of every
household). Households with the lowest predicted consumption are covered first
(Brown, Ravallion & van de Walle 2018 review how well this works; it misses many of
the poor because the R² of such models is typically 0.4-0.6).

The **hybrid** used in practice first preselects areas with a poverty map (geographic
targeting), then ranks households within them by PMT.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from povertymap.errors import InputError
from povertymap.target._checks import finite_column, require_columns, sort_key_order
from povertymap.target._greedy import fill_in_order
from povertymap.target.allocate import allocate
from povertymap.target.budget import Budget, BudgetLike

__all__ = [
    "NOT_PMT",
    "ProxyMeansTest",
    "hybrid_select",
    "pmt_columns",
    "select_households",
]

#: Columns that identify, locate, weight or measure a household: never PMT variables.
NOT_PMT = frozenset(
    {
        "household_id",
        "cluster_id",
        "cell_id",
        "admin_id",
        "admin1_id",
        "admin2_id",
        "parent_id",
        "ea_id",
        "lon",
        "lat",
        "x",
        "y",
        "weight",
        "welfare",
        "consumption",
        "log_consumption",
        "consumption_pc",
        "log_consumption_pc",
        "true_consumption",
        "poor",
        "stratum",
    }
)


def pmt_columns(*tables: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """The columns every table has, less identifiers, locations, weights and welfare.

    Pass the survey households and the registry: the PMT can only use what both hold.
    """
    if not tables:
        raise InputError("pmt_columns needs at least one table", fix="pass the survey households")
    common = [c for c in tables[0].columns if all(c in t.columns for t in tables[1:])]
    drop = NOT_PMT | set(exclude)
    cols = [str(c) for c in common if str(c) not in drop]
    if not cols:
        raise InputError(
            "no PMT variables are shared by the tables given",
            fix="give the survey and the registry the same PMT columns (roof, floor, ...)",
        )
    return cols


class ProxyMeansTest(RegressorMixin, BaseEstimator):
    """OLS or ridge regression of log consumption on encoded PMT variables.

    Parameters
    ----------
    categorical:
        Columns to one-hot encode (names for DataFrames, positions for arrays). None:
        for a DataFrame, every column of object, string, category or bool dtype; for an
        array, none. Unseen categories at prediction contribute nothing (all zeros).
    ordinal:
        ``{column: [categories in order]}``: encoded 0, 1, 2, ... and used as numbers (e.g.
        the head's education: none < primary < secondary < tertiary).
    alpha:
        0 (default) fits ordinary least squares; > 0 a ridge with this penalty on
        standardised variables (useful with many asset dummies and a small survey).

    Every other column is used as a number (household size, counts of rooms, dummies).
    ``fit`` takes survey weights as ``sample_weight``. The target should be log
    consumption per capita; predictions are on the same scale.

    Attributes
    ----------
    model_ : Pipeline
        The fitted encoder and regression.
    coef_ : pandas.Series
        Coefficients by encoded variable name.
    intercept_ : float
    r2_ : float
        Weighted in-sample R².
    residual_sd_ : float
        Weighted standard deviation of the residuals (e.g. for P(poor) = Φ((z - ŷ)/sd)).
    n_features_in_, feature_names_in_
        As in scikit-learn.
    """

    def __init__(
        self,
        categorical: Sequence[Hashable] | None = None,
        ordinal: Mapping[Hashable, Sequence[Any]] | None = None,
        alpha: float = 0.0,
    ) -> None:
        self.categorical = categorical
        self.ordinal = ordinal
        self.alpha = alpha

    def _columns(self, X: Any) -> tuple[list[Any], list[Any], list[Any]]:
        ordinal = dict(self.ordinal or {})
        names: list[Any]
        cat: list[Any]
        if isinstance(X, pd.DataFrame):
            names = list(X.columns)
            if self.categorical is None:
                cat = [
                    c
                    for c in names
                    if c not in ordinal
                    and (
                        pd.api.types.is_object_dtype(X[c])
                        or pd.api.types.is_string_dtype(X[c])
                        or isinstance(X[c].dtype, pd.CategoricalDtype)
                        or pd.api.types.is_bool_dtype(X[c])
                    )
                ]
            else:
                cat = list(self.categorical)
        else:
            names = list(range(X.shape[1]))
            cat = list(self.categorical or [])
        unknown = [c for c in [*cat, *ordinal] if c not in names]
        if unknown:
            raise InputError(
                f"PMT variable(s) {unknown} are not in the data (columns: {names[:20]})",
                fix="name existing columns in categorical/ordinal",
            )
        num = [c for c in names if c not in cat and c not in ordinal]
        return cat, list(ordinal), num

    def _build(self, X: Any) -> Pipeline:
        cat, ordn, num = self._columns(X)
        ordinal = dict(self.ordinal or {})
        parts: list[tuple[str, Any, list[Any]]] = []
        if num:
            parts.append(("num", "passthrough", num))
        if ordn:
            cats = [list(ordinal[c]) for c in ordn]
            enc = OrdinalEncoder(categories=cats, handle_unknown="use_encoded_value",
                                 unknown_value=np.nan)  # fmt: skip
            parts.append(("ord", enc, ordn))
        if cat:
            parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat))
        encode = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=True)
        if self.alpha > 0:
            return Pipeline(
                [("encode", encode), ("scale", StandardScaler()), ("reg", Ridge(alpha=self.alpha))]
            )
        return Pipeline([("encode", encode), ("reg", LinearRegression())])

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ProxyMeansTest:
        """Fit on survey households ``X`` (PMT variables) and log consumption ``y``."""
        if not (isinstance(self.alpha, int | float | np.number) and float(self.alpha) >= 0):
            raise InputError(f"alpha={self.alpha!r} is not a number >= 0", fix="use alpha >= 0")
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, skip_check_array=True)
            y_arr = column_or_1d(np.asarray(y, dtype=float))
            if len(y_arr) != len(X):
                raise InputError(
                    f"{len(X)} households but {len(y_arr)} consumption values",
                    fix="pass one target per household",
                )
            if not np.isfinite(y_arr).all():
                raise InputError(
                    f"{int((~np.isfinite(y_arr)).sum())} household(s) have no finite consumption",
                    fix="drop households without consumption before fitting the PMT",
                )
            self._check_missing(X)
            Xv: Any = X
        else:
            Xv, y_arr = validate_data(self, X, y, y_numeric=True)
        sw = _check_sample_weight(sample_weight, Xv)
        model = self._build(Xv)
        steps = [name for name, _ in model.steps[1:]]
        model.fit(Xv, y_arr, **{f"{s}__sample_weight": sw for s in steps})
        self.model_ = model
        pred = model.predict(Xv)
        resid = y_arr - pred
        wsum = sw.sum()
        ybar = np.sum(sw * y_arr) / wsum
        sst = np.sum(sw * (y_arr - ybar) ** 2)
        self.r2_ = float(1 - np.sum(sw * resid**2) / sst) if sst > 0 else float("nan")
        self.residual_sd_ = float(np.sqrt(np.sum(sw * resid**2) / wsum))
        reg = model.named_steps["reg"]
        names = model.named_steps["encode"].get_feature_names_out()
        coef = np.asarray(reg.coef_, dtype=float)
        if self.alpha > 0:  # report on the encoded (unscaled) variables
            scale = model.named_steps["scale"].scale_
            coef = coef / scale
            intercept = float(reg.intercept_ - np.sum(coef * model.named_steps["scale"].mean_))
        else:
            intercept = float(reg.intercept_)
        self.coef_ = pd.Series(coef, index=[str(n) for n in names])
        self.intercept_ = intercept
        return self

    def _check_missing(self, X: pd.DataFrame) -> None:
        """Refuse blanks in numeric and ordinal PMT variables (categoricals may be blank)."""
        _, ordn, num = self._columns(X)
        blank = [c for c in [*num, *ordn] if X[c].isna().any()]
        if blank:
            counts = {str(c): int(X[c].isna().sum()) for c in blank}
            raise InputError(
                f"PMT variables have blank values (column: count) {counts}",
                fix="impute them, drop those households, or declare the column categorical",
            )
        levels = dict(self.ordinal or {})
        for c in ordn:
            unknown = sorted(set(X[c].unique()) - set(levels[c]), key=str)
            if unknown:
                raise InputError(
                    f"ordinal PMT variable {c!r} has levels {unknown[:5]} not in {list(levels[c])}",
                    fix=f"add them to ordinal[{c!r}] in order, or recode them",
                )

    def predict(self, X: Any) -> np.ndarray:
        """Predicted log consumption per capita of the households ``X``."""
        check_is_fitted(self, "model_")
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=False, skip_check_array=True)
            self._check_missing(X)
            Xv: Any = X
        else:
            Xv = validate_data(self, X, reset=False)
        return np.asarray(self.model_.predict(Xv), dtype=float)


def _household_table(registry: pd.DataFrame, id_col: str) -> tuple[pd.DataFrame, pd.Index]:
    """The registry and its household ids (from ``id_col`` or the index), checked unique."""
    ids = pd.Index(registry[id_col]) if id_col in registry.columns else registry.index
    if not ids.is_unique:
        dup = ids[ids.duplicated()].unique()[:3].tolist()
        raise InputError(
            f"household ids are not unique (e.g. {dup})",
            fix=f"give every household a unique {id_col}",
        )
    return registry, ids


def _align_score(
    score: pd.Series | np.ndarray | str, registry: pd.DataFrame, ids: pd.Index
) -> np.ndarray:
    if isinstance(score, str):
        require_columns(registry, [score], "registry")
        values = pd.to_numeric(registry[score], errors="coerce").to_numpy(dtype=float)
    elif isinstance(score, pd.Series):
        aligned = score.reindex(ids)
        values = aligned.to_numpy(dtype=float)
    else:
        values = np.asarray(score, dtype=float)
        if values.shape != (len(registry),):
            raise InputError(
                f"{values.shape[0] if values.ndim else 0} scores for {len(registry)} households",
                fix="pass one score per household, or a Series indexed by household_id",
            )
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(
            f"{int(bad.sum())} household(s) have no finite score, e.g. {ids[bad][:3].tolist()}",
            fix="predict a score for every household (PMT variables complete), or drop them",
        )
    return values


def household_costs(
    registry: pd.DataFrame,
    budget: Budget,
    *,
    size_col: str = "hh_size",
    weight_col: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per household: its cost in the budget's measure and the people it stands for.

    A household row stands for ``weight`` households (1 in a registry, the survey weight
    in a survey) of ``hh_size`` people each.
    """
    require_columns(registry, [size_col], "registry")
    size = finite_column(registry, size_col, "registry", lower=0)
    w = np.ones(len(registry))
    if weight_col is not None and weight_col in registry:
        w = finite_column(registry, weight_col, "registry", lower=0)
    table = pd.DataFrame({"people": size * w, "households": w}, index=registry.index)
    cost = budget.unit_costs(table, people="people", households="households", what="registry")
    return cost, size * w


def select_households(
    registry: pd.DataFrame,
    score: pd.Series | np.ndarray | str,
    budget: BudgetLike,
    *,
    eligible: np.ndarray | pd.Series | None = None,
    id_col: str = "household_id",
    size_col: str = "hh_size",
    weight_col: str | None = None,
    partial: bool = False,
) -> pd.DataFrame:
    """Cover the households with the lowest ``score`` until the budget is spent.

    Parameters
    ----------
    registry:
        One row per household with ``household_id`` (column or index) and ``hh_size``.
    score:
        Predicted log consumption (lower = poorer): a column name, an array aligned with
        the registry, or a Series indexed by household id.
    budget:
        A share is of the registry's people (all of them, eligible or not).
    eligible:
        Boolean mask (array aligned with the registry, or Series by household id): only
        these may be covered (the hybrid's preselected areas).
    weight_col:
        Survey weight column, when the table is a weighted sample (each row stands for
        ``weight`` households).
    partial:
        Cover the household that does not fit in part (an expected coverage, for
        evaluation at an exact budget). Default False: skip it and go on.

    Returns
    -------
    DataFrame
        Indexed by household id, in rank order: ``rank`` (1 = poorest score, ties by
        household id), ``selected``, ``coverage``, ``score``, ``hh_size``, ``people``,
        ``cost``, ``spent``, ``eligible`` and the registry's ``cell_id``, ``admin2_id``,
        ``admin1_id``, ``urban`` when present. ``attrs`` as for
        :func:`~povertymap.target.allocate.allocate`.
    """
    budget = Budget.parse(budget)
    registry, ids = _household_table(registry, id_col)
    values = _align_score(score, registry, ids)
    cost, people = household_costs(registry, budget, size_col=size_col, weight_col=weight_col)
    capacity = budget.capacity(people.sum())
    if eligible is None:
        ok = np.ones(len(registry), dtype=bool)
    elif isinstance(eligible, pd.Series):
        ok = eligible.astype(bool).reindex(ids, fill_value=False).to_numpy(dtype=bool)
    else:
        ok = np.asarray(eligible, dtype=bool)
    order = sort_key_order(ids)
    order = order[np.argsort(values[order], kind="stable")]
    rank = np.empty(len(registry), dtype=np.int64)
    rank[order] = np.arange(1, len(registry) + 1)
    cov = np.zeros(len(registry))
    fill_in_order(order[ok[order]], cost, np.ones(len(registry)), cov, 0.0, capacity,
                  partial=partial)  # fmt: skip
    plan = pd.DataFrame(
        {
            "rank": rank,
            "selected": cov > 0,
            "coverage": cov,
            "score": values,
            "hh_size": finite_column(registry, size_col, "registry", lower=0),
            "people": people,
            "cost": cost,
            "spent": cost * cov,
            "eligible": ok,
        },
        index=pd.Index(ids, name=id_col),
    )
    for col in ("cell_id", "admin_id", "admin2_id", "admin1_id", "urban"):
        if col in registry.columns:
            plan[col] = registry[col].to_numpy()
    plan = plan.iloc[order]
    spent = float(plan["spent"].sum())
    plan.attrs.update(
        budget=budget.describe(),
        measure=budget.measure,
        capacity=float(capacity),
        spent=spent,
        unspent=float(max(capacity - spent, 0.0)),
        rank_by="score (lowest first)",
        partial=bool(partial),
        unit=id_col,
    )
    return plan


def hybrid_select(
    units: pd.DataFrame,
    registry: pd.DataFrame,
    score: pd.Series | np.ndarray | str,
    budget: BudgetLike,
    *,
    preselect: BudgetLike | None = None,
    area_col: str | None = None,
    id_col: str = "household_id",
    size_col: str = "hh_size",
    weight_col: str | None = None,
    partial: bool = False,
    **allocate_options: Any,
) -> pd.DataFrame:
    """Geographic preselection of areas, then PMT within them.

    ``units`` is a poverty map (as for :func:`allocate`) whose index names the registry
    column linking households to areas (``cell_id``, ``admin2_id``, ...; or give
    ``area_col``). The areas covering ``preselect`` (default: twice the budget, at most
    everyone) are chosen by :func:`allocate` with ``allocate_options``; households in
    them are then covered by lowest ``score`` until ``budget`` is spent. A share budget
    is of the whole registry. Returns the household plan of :func:`select_households`
    with ``area_selected`` (whether the household's area was preselected);
    ``attrs["preselect"]`` records the preselection budget.
    """
    budget = Budget.parse(budget)
    area_col = area_col or (str(units.index.name) if units.index.name is not None else None)
    if area_col is None:
        raise InputError(
            "cannot tell which registry column links households to the units",
            fix="name the units' index (e.g. 'cell_id') or pass area_col",
        )
    require_columns(registry, [area_col], "registry")
    pre = _default_preselect(budget) if preselect is None else Budget.parse(preselect)
    areas = allocate(units, pre, **allocate_options)
    chosen = areas.index[areas["coverage"].to_numpy() > 0]
    in_area = registry[area_col].isin(chosen).to_numpy()
    plan = select_households(
        registry, score, budget, eligible=in_area, id_col=id_col, size_col=size_col,
        weight_col=weight_col, partial=partial,
    )  # fmt: skip
    plan["area_selected"] = plan["eligible"]
    plan.attrs["preselect"] = pre.describe()
    plan.attrs["rank_by"] = f"areas by {areas.attrs['rank_by']}, then score (lowest first)"
    return plan


def _default_preselect(budget: Budget) -> Budget:
    if budget.kind == "share":
        return Budget.share(min(1.0, 2 * budget.amount))
    return Budget(budget.kind, 2 * budget.amount, budget.cost_per_person, budget.cost_per_household)
