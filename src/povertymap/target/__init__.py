"""Targeting social programs with poverty maps.

Given a budget (:class:`Budget`), choose the areas (:func:`allocate`) or households
(:class:`ProxyMeansTest`, :func:`select_households`, :func:`hybrid_select`) to cover, and
measure what the choice costs in poor people missed and non-poor people covered, by
group, against the alternatives (:func:`compare`, :func:`targeting_curves`,
:func:`headline`). Functions take and return DataFrames; they open no files.
Figures are in :mod:`povertymap.target.plots` (imports matplotlib).
"""

from __future__ import annotations

from povertymap.target.allocate import aggregate_units, allocate, rank_units
from povertymap.target.baselines import (
    DEFAULT_BUDGETS,
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
from povertymap.target.budget import Budget, BudgetLike
from povertymap.target.metrics import (
    crra_utility,
    evaluate,
    parity_gaps,
    targeting_metrics,
    welfare_gains,
)
from povertymap.target.pmt import (
    ProxyMeansTest,
    hybrid_select,
    pmt_columns,
    select_households,
)

__all__ = [
    "DEFAULT_BUDGETS",
    "AreaRanking",
    "Budget",
    "BudgetLike",
    "FixedPlan",
    "HouseholdRanking",
    "Hybrid",
    "Lottery",
    "Method",
    "ProxyMeansTest",
    "aggregate_units",
    "allocate",
    "compare",
    "crra_utility",
    "evaluate",
    "headline",
    "hybrid_select",
    "parity_gaps",
    "pmt_columns",
    "rank_units",
    "select_households",
    "targeting_curves",
    "targeting_metrics",
    "welfare_gains",
]
