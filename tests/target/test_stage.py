"""The targeting stage: units from a map's cells, the plan, its summary, map headcounts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from povertymap.config.targeting import TargetingSettings
from povertymap.errors import ConfigError
from povertymap.target.stage import (
    NOT_PMT_EXTRA,
    area_units,
    fit_pmt,
    make_plan,
    plan_summary,
)


@pytest.fixture
def map_cells() -> pd.DataFrame:
    """Five cells of a map, rows out of id order, three tied at headcount 0.7; 1000 people.

    At 30% (300 people) the walk is k4 (.9, 200 people), then the tie k1, k2, k3 by id: k1
    (100) fills the budget exactly; k2, k3 and k5 no longer fit.
    """
    return pd.DataFrame(
        {
            "population": [100.0, 100.0, 200.0, 100.0, 500.0],
            "poverty_rate": [0.7, 0.7, 0.9, 0.7, 0.2],
            "estimate": [5.1, 5.2, 4.8, 5.0, 6.3],  # not a units column: dropped
            "urban": [False, False, True, False, True],
            "admin_id": ["a1", "a1", "a2", "a2", "a2"],
            "parent_id": ["A", "A", "A", "A", "A"],
        },
        index=pd.Index(["k3", "k1", "k4", "k2", "k5"], name="cell_id"),
    )


def test_area_units_cells_as_given(units: pd.DataFrame) -> None:
    got = area_units(units.assign(estimate=1.0), "cell")
    assert got.index.name == "cell_id"
    assert list(got.index) == list(units.index)
    assert set(got.columns) == {
        "population",
        "estimate",
        "households",
        "urban",
        "admin_id",
        "parent_id",
        "poverty_rate",
    }
    assert list(got["population"]) == [100.0, 200.0, 300.0, 100.0, 200.0, 300.0]
    assert list(got["poverty_rate"]) == [0.9, 0.6, 0.3, 0.8, 0.5, 0.2]
    assert list(got["admin_id"]) == list(units["admin_id"])


def test_area_units_rate_column_replaces_the_headcount(units: pd.DataFrame) -> None:
    cells = units.assign(nl_poverty=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    got = area_units(cells, "cell", rate="nl_poverty")
    assert list(got["poverty_rate"]) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert "nl_poverty" not in got


def test_area_units_admin2_are_sums_of_cells(units: pd.DataFrame) -> None:
    got = area_units(units, "admin2")
    assert got.index.name == "admin_id"
    assert list(got.index) == ["a1", "a2", "b1"]
    cells = units.assign(poor=units["population"] * units["poverty_rate"])
    by = cells.groupby("admin_id")
    expected_pop = by["population"].sum()
    expected_poor = by["poor"].sum()  # a1: 90 + 120, a2: 90, b1: 80 + 100 + 60
    assert list(expected_poor) == pytest.approx([210.0, 90.0, 240.0])
    assert got["population"].to_numpy() == pytest.approx(expected_pop.to_numpy())
    assert (got["population"] * got["poverty_rate"]).to_numpy() == pytest.approx(
        expected_poor.to_numpy()
    )
    assert got["poverty_rate"].to_numpy() == pytest.approx([0.7, 0.3, 0.4])
    # urban share of the people: a1 none, a2 all, b1 (200 + 300) / 600
    assert got["urban"].to_numpy() == pytest.approx([0.0, 1.0, 500 / 600])
    assert list(got["parent_id"]) == ["A", "A", "B"]


def test_geographic_plan_at_30_percent(map_cells: pd.DataFrame) -> None:
    plan = make_plan(map_cells, TargetingSettings())  # geographic, cells, 30%
    assert plan.index.name == "cell_id"
    assert list(plan.index) == ["k4", "k1", "k2", "k3", "k5"]  # rank order; tie by id
    assert list(plan["rank"]) == [1, 2, 3, 4, 5]
    assert set(plan.index[plan["selected"]]) == {"k4", "k1"}
    covered = float(plan.loc[plan["selected"], "population"].sum())
    assert covered == 300.0
    assert covered <= 0.3 * map_cells["population"].sum()
    assert plan.attrs["capacity"] == pytest.approx(300.0)
    assert plan.attrs["unspent"] == pytest.approx(0.0)
    assert plan.loc["k4", "expected_poor"] == pytest.approx(180.0)
    assert plan.loc["k2", "reason"] == "over_budget"


def test_geographic_plan_is_independent_of_row_order(map_cells: pd.DataFrame) -> None:
    for order in (["k1", "k2", "k3", "k4", "k5"], ["k5", "k2", "k4", "k1", "k3"]):
        plan = make_plan(map_cells.loc[order], TargetingSettings(budget="35%"))
        assert list(plan.index) == ["k4", "k1", "k2", "k3", "k5"]
        assert set(plan.index[plan["selected"]]) == {"k4", "k1"}  # 350: k2 would make 400


def test_budget_argument_overrides_the_settings(map_cells: pd.DataFrame) -> None:
    plan = make_plan(map_cells, TargetingSettings(budget="30%"), budget="50%")
    assert set(plan.index[plan["selected"]]) == {"k4", "k1", "k2", "k3"}
    assert float(plan.loc[plan["selected"], "population"].sum()) == 500.0


def test_admin2_plan(units: pd.DataFrame) -> None:
    # admin-2 headcounts a1 .7 (300 people), b1 .4 (600), a2 .3 (300); 30% = 360 people
    plan = make_plan(units, TargetingSettings(unit="admin2"))
    assert plan.index.name == "admin_id"
    assert list(plan.index) == ["a1", "b1", "a2"]
    assert list(plan.index[plan["selected"]]) == ["a1"]
    assert plan.loc["a1", "expected_poor"] == pytest.approx(210.0)
    assert plan.attrs["spent"] == pytest.approx(300.0)


def test_household_budget_uses_the_cells_households(units: pd.DataFrame) -> None:
    plan = make_plan(units, TargetingSettings(budget="60 households"))
    assert set(plan.index[plan["selected"]]) == {"c1", "c4"}  # 20 + 20 households
    assert plan.attrs["measure"] == "households"


@pytest.mark.parametrize("method", ["pmt", "hybrid"])
def test_household_methods_need_registry_and_survey(
    units: pd.DataFrame, method: str, ten_households: pd.DataFrame
) -> None:
    settings = TargetingSettings(method=method)
    survey = ten_households.assign(welfare=np.linspace(5.0, 6.0, len(ten_households)))
    pmt = fit_pmt(survey, ten_households)
    for registry, fitted in ((None, None), (ten_households, None), (None, pmt)):
        with pytest.raises(ConfigError, match="needs a household registry") as info:
            make_plan(units, settings, registry=registry, pmt=fitted)
        assert isinstance(info.value, ValueError)
        assert info.value.where == "key registry"
        assert f"{method!r}" in str(info.value)


def test_fit_pmt_needs_welfare() -> None:
    survey = pd.DataFrame({"household_id": ["h1", "h2"], "rooms": [1, 2]})
    with pytest.raises(ConfigError, match="welfare") as info:
        fit_pmt(survey, survey)
    assert info.value.where == "key survey.households.welfare"


def test_fit_pmt_is_weighted_least_squares_on_shared_variables() -> None:
    rng = np.random.default_rng(5)
    n = 40
    rooms = rng.integers(1, 6, size=n).astype(float)
    water = rng.integers(0, 2, size=n).astype(float)
    weight = rng.uniform(0.5, 3.0, size=n)
    welfare = 5.0 + 0.3 * rooms + 0.4 * water + rng.normal(scale=0.2, size=n)
    survey = pd.DataFrame(
        {
            "household_id": [f"s{i}" for i in range(n)],
            "rooms": rooms,
            "water": water,
            "asset_index": rng.normal(size=n),  # in both files, but not a PMT variable
            "urban": rng.integers(0, 2, size=n),
            "welfare": welfare,
            "weight": weight,
            "only_in_survey": rng.normal(size=n),
        }
    )
    registry = survey[["household_id", "rooms", "water", "asset_index", "urban"]].assign(
        hh_id=range(n), registry_weight=1.0, in_registry=True
    )
    assert {"asset_index", "urban", "hh_id", "registry_weight", "in_registry"} <= set(NOT_PMT_EXTRA)
    pmt = fit_pmt(survey, registry)
    cols = pmt.columns
    assert cols == ["rooms", "water"]
    # weighted least squares written out: scale rows by sqrt(weight)
    A = np.column_stack([np.ones(n), rooms, water])
    sw = np.sqrt(weight)
    beta, *_ = np.linalg.lstsq(A * sw[:, None], welfare * sw, rcond=None)
    assert pmt.scores(registry).to_numpy() == pytest.approx(A @ beta, abs=1e-9)
    assert list(pmt.scores(registry).index) == list(registry["household_id"])
    unweighted, *_ = np.linalg.lstsq(A, welfare, rcond=None)
    assert not np.allclose(beta, unweighted, atol=1e-4)  # the weights matter here


def test_plan_summary_sums_the_plan(map_cells: pd.DataFrame) -> None:
    settings = TargetingSettings()
    plan = make_plan(map_cells, settings)
    summary = plan_summary(plan, settings)
    chosen = plan[plan["selected"]]
    assert summary["method"] == "geographic"
    assert summary["unit"] == "cell"
    assert summary["units_selected"] == 2 == len(chosen)
    assert summary["population_covered"] == pytest.approx(chosen["population"].sum())
    assert summary["population_covered"] == pytest.approx(300.0)
    # k4: .9 · 200, k1: .7 · 100
    assert summary["expected_poor_covered"] == pytest.approx(250.0)
    assert summary["expected_poor_covered"] == pytest.approx(chosen["expected_poor"].sum())
    assert summary["spent"] == pytest.approx(300.0)
    assert summary["unspent"] == pytest.approx(0.0)
    assert summary["budget"] == plan.attrs["budget"]
    assert summary["measure"] == "people"


def test_plan_summary_weighs_partial_coverage() -> None:
    plan = pd.DataFrame(
        {
            "selected": [True, True, False],
            "coverage": [1.0, 0.25, 0.0],
            "population": [100.0, 200.0, 300.0],
            "expected_poor": [80.0, 100.0, 30.0],
        }
    )
    summary = plan_summary(plan, TargetingSettings(unit="admin2"))
    assert summary["units_selected"] == 2
    assert summary["population_covered"] == pytest.approx(100 + 0.25 * 200)
    assert summary["expected_poor_covered"] == pytest.approx(80 + 0.25 * 100)
    assert summary["unit"] == "admin2"
    assert "budget" not in summary  # no attrs on a hand-made plan


def test_plan_summary_of_households() -> None:
    plan = pd.DataFrame({"selected": [True, False, True, True], "hh_size": [4, 6, 1, 3]})
    summary = plan_summary(plan, TargetingSettings(method="pmt"))
    assert summary["units_selected"] == 3
    assert summary["hh_size_covered"] == pytest.approx(8.0)
    assert "population_covered" not in summary
