"""Geographic targeting on hand-made units: budget arithmetic, ties, constraints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from povertymap.errors import InputError
from povertymap.target import aggregate_units, allocate, rank_units


def test_budget_that_exactly_fits(units: pd.DataFrame) -> None:
    # ranking by headcount: c1 .9, c4 .8, c2 .6, c5 .5, c3 .3, c6 .2
    plan = allocate(units, "50%")  # 600 of 1200 people: c1+c4+c2+c5 = 600
    assert list(plan.index) == ["c1", "c4", "c2", "c5", "c3", "c6"]
    assert list(plan["rank"]) == [1, 2, 3, 4, 5, 6]
    assert set(plan.index[plan["selected"]]) == {"c1", "c4", "c2", "c5"}
    assert plan.attrs["spent"] == 600 == plan.attrs["capacity"]
    assert plan.attrs["unspent"] == 0
    assert plan.loc["c1", "expected_poor"] == pytest.approx(90)
    assert plan.loc["c2", "cost"] == 200


def test_unit_that_does_not_fit_is_skipped(units: pd.DataFrame) -> None:
    plan = allocate(units, "450")  # c1, c4 (200), c2 (400); c5 (200) does not fit
    assert set(plan.index[plan["selected"]]) == {"c1", "c4", "c2"}
    assert plan.loc["c5", "reason"] == "over_budget"
    assert plan.attrs["spent"] == 400
    assert plan.attrs["unspent"] == 50
    small = units.assign(population=[100.0, 200.0, 300.0, 100.0, 200.0, 40.0])
    plan = allocate(small, "450")  # c6 (40 people) still fits after c5 is skipped
    assert set(plan.index[plan["selected"]]) == {"c1", "c4", "c2", "c6"}
    assert plan.attrs["spent"] == 440


def test_partial_spends_exactly(units: pd.DataFrame) -> None:
    plan = allocate(units, "450", partial=True)
    assert plan.loc["c5", "coverage"] == pytest.approx(0.25)
    assert plan.loc["c5", "covered_people"] == pytest.approx(50)
    assert plan["spent"].sum() == pytest.approx(450)
    assert not plan.loc["c3", "selected"]


def test_ties_broken_by_unit_id_whatever_the_row_order() -> None:
    ids = ["u3", "u1", "u4", "u2"]
    tied = pd.DataFrame(
        {"population": [10.0] * 4, "poverty_rate": [0.5] * 4}, index=pd.Index(ids, name="id")
    )
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        plan = allocate(tied.iloc[perm], "20")
        assert list(plan.index) == ["u1", "u2", "u3", "u4"]
        assert list(plan.index[plan["selected"]]) == ["u1", "u2"]


def test_rank_by_expected_poor_prefers_big_units(units: pd.DataFrame) -> None:
    ranked = rank_units(units, rank_by="expected_poor")
    # expected poor: c1 90, c2 120, c3 90, c4 80, c5 100, c6 60; ties (c1, c3) by id
    assert list(ranked.sort_values("rank").index) == ["c2", "c5", "c1", "c3", "c4", "c6"]


def test_money_and_household_budgets(units: pd.DataFrame) -> None:
    plan = allocate(units, "2500 @ 10/person")  # 250 people
    assert set(plan.index[plan["selected"]]) == {"c1", "c4"}
    assert plan.loc["c1", "cost"] == 1000
    plan = allocate(units, "60 households")
    assert set(plan.index[plan["selected"]]) == {"c1", "c4"}
    assert plan.attrs["measure"] == "households"


def test_min_share_per_admin1_is_honoured(units: pd.DataFrame) -> None:
    # without a floor, 30% (360 people) goes to c1, c4 and no other fits... A gets 100
    free = allocate(units, "300")
    assert set(free.index[free["selected"]]) == {"c1", "c4"}
    plan = allocate(units, "300", min_share={"B": 0.6})
    spent_b = plan.loc[plan["parent_id"] == "B", "spent"].sum()
    assert spent_b >= 0.6 * 300
    assert set(plan.index[plan["selected"]]) == {"c4", "c5"}  # 300 to B; nothing fits in A
    assert plan.attrs["min_share_met"] == {"B": True}
    assert plan.loc["c4", "reason"] == "min_share"
    both = allocate(units, "600", min_share=0.5)
    for region in ("A", "B"):
        assert both.loc[both["parent_id"] == region, "spent"].sum() >= 300
    assert both["spent"].sum() <= 600


def test_min_share_floor_that_cannot_be_met_is_reported(units: pd.DataFrame) -> None:
    plan = allocate(units, "300", min_share={"A": 0.5}, unit_cap=0.2)
    # every A cell costs more than the 60-person cap except none: c1 (100) > 60
    assert plan.attrs["min_share_met"] == {"A": False}
    assert plan["spent"].sum() == 0


def test_min_share_errors(units: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="add up to 120%"):
        allocate(units, "30%", min_share={"A": 0.6, "B": 0.6})
    with pytest.raises(InputError, match="admin-1 unit"):
        allocate(units, "30%", min_share={"Z": 0.1})
    with pytest.raises(InputError, match="parent_id"):
        allocate(units.drop(columns="parent_id"), "30%", min_share=0.1)


def test_unit_cap(units: pd.DataFrame) -> None:
    plan = allocate(units, "600", unit_cap=0.25)  # at most 150 people per unit
    assert set(plan.index[plan["selected"]]) == {"c1", "c4"}
    assert plan.loc["c2", "reason"] == "over_cap"
    partial = allocate(units, "600", unit_cap=0.25, partial=True)
    assert partial["spent"].max() <= 150 + 1e-9
    assert partial.loc["c2", "coverage"] == pytest.approx(0.75)
    assert partial["spent"].sum() == pytest.approx(600)
    with pytest.raises(InputError, match="unit_cap"):
        allocate(units, "600", unit_cap=1.5)


def test_whole_admin_units(units: pd.DataFrame) -> None:
    admins = aggregate_units(units)
    assert list(admins.index) == ["a1", "a2", "b1"]
    assert admins.loc["a1", "population"] == 300
    assert admins.loc["a1", "poverty_rate"] == pytest.approx((90 + 120) / 300)
    assert admins.loc["b1", "parent_id"] == "B"
    assert admins.loc["b1", "urban"] == pytest.approx(500 / 600)
    plan = allocate(units, "50%", whole_admin=True)  # a1 (.7, 300) fits; b1 (600) does not
    assert set(plan.index[plan["selected"]]) == {"c1", "c2", "c3"}  # a1 then a2 (.3, 300)
    for _, cells in plan.groupby("admin_id"):
        assert cells["selected"].nunique() == 1
    assert plan["spent"].sum() == 600
    assert plan.attrs["unit"] == "cell_id (whole admin_id)"


def test_whole_admin_refuses_split_admin(units: pd.DataFrame) -> None:
    broken = units.assign(admin_id=["a1", "a1", "a2", "a1", "b1", "b1"])
    with pytest.raises(InputError, match="more than one 'parent_id'"):
        allocate(broken, "50%", whole_admin=True)


def test_uncertainty_expected_headcount_uses_the_skew() -> None:
    units = pd.DataFrame(
        {
            "population": [100.0, 100.0],
            "poverty_rate": [0.30, 0.32],
            "poverty_lower": [0.25, 0.05],
            "poverty_upper": [0.80, 0.40],
        },
        index=pd.Index(["wide_up", "wide_down"], name="cell_id"),
    )
    point = allocate(units, "100")
    assert list(point.index[point["selected"]]) == ["wide_down"]
    aware = allocate(units, "100", uncertainty=True)
    assert list(aware.index[aware["selected"]]) == ["wide_up"]
    assert aware.loc["wide_up", "headcount"] > 0.35 > aware.loc["wide_down", "headcount"]


def test_probability_ranking() -> None:
    units = pd.DataFrame(
        {
            "population": [100.0, 100.0, 100.0],
            "poverty_rate": [0.55, 0.60, 0.45],
            "poverty_sd": [0.01, 0.30, 0.01],
        },
        index=pd.Index(["sure", "unsure", "below"], name="cell_id"),
    )
    ranked = rank_units(units, rank_by="probability", threshold=0.5)
    assert list(ranked.sort_values("rank").index) == ["sure", "unsure", "below"]
    assert ranked.loc["sure", "probability"] > 0.99
    assert 0.5 < ranked.loc["unsure", "probability"] < 0.8
    assert ranked.loc["below", "probability"] < 0.01
    with pytest.raises(InputError, match="poverty_sd"):
        rank_units(units.drop(columns="poverty_sd"), rank_by="probability")


def test_sd_and_interval_agree_on_zero_uncertainty() -> None:
    units = pd.DataFrame(
        {"population": [10.0, 20.0], "poverty_rate": [0.2, 0.7], "poverty_sd": [0.0, 0.0]}
    )
    ranked = rank_units(units, uncertainty=True)
    np.testing.assert_allclose(ranked["headcount"], [0.2, 0.7])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"poverty_rate": [1.2, 0.5, 0.5, 0.5, 0.5, 0.5]}, "poverty_rate"),
        ({"population": [np.nan, 1, 1, 1, 1, 1]}, "population"),
    ],
)
def test_bad_units(units: pd.DataFrame, change: dict[str, list[float]], match: str) -> None:
    with pytest.raises(InputError, match=match):
        allocate(units.assign(**change), "30%")


def test_missing_column_names_it(units: pd.DataFrame) -> None:
    with pytest.raises(InputError, match=r"lacks column\(s\) 'poverty_rate'.*Fix"):
        allocate(units.drop(columns="poverty_rate"), "30%")
    with pytest.raises(InputError, match="not unique"):
        allocate(pd.concat([units, units]), "30%")


def test_empty_units_may_be_blank(units: pd.DataFrame) -> None:
    blank = units.assign(population=[0.0, 200, 300, 100, 200, 300])
    blank.loc["c1", "poverty_rate"] = np.nan
    plan = allocate(blank, "50%")
    assert plan.loc["c1", "reason"] == "no_population"
    assert not plan.loc["c1", "selected"]
    blank.loc["c2", "poverty_rate"] = np.nan
    with pytest.raises(InputError, match=r"not finite.*\['c2'\]"):
        allocate(blank, "50%")
