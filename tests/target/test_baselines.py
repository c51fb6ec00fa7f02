"""Methods compared identically: lottery, oracles, maps, PMT; curves, headline, figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from povertymap.engine import LocalEngine
from povertymap.errors import InputError
from povertymap.target import (
    AreaRanking,
    FixedPlan,
    HouseholdRanking,
    Hybrid,
    Lottery,
    compare,
    headline,
    parity_gaps,
    targeting_curves,
)
from povertymap.target.baselines import spread_ties
from povertymap.target.plots import plot_parity_gaps, plot_targeting_curves


@pytest.fixture
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """40 cells of 50 people (10 households of 5) with known poor households."""
    rng = np.random.default_rng(3)
    n_cells = 40
    rates = np.round(rng.uniform(0, 1, n_cells), 1)
    rows = []
    for c in range(n_cells):
        for k in range(10):
            poor = k < round(10 * rates[c])
            rows.append(
                {
                    "household_id": f"c{c:02d}h{k}",
                    "cell_id": f"c{c:02d}",
                    "hh_size": 5,
                    "poor": poor,
                    "consumption": rng.uniform(0.3, 0.9) if poor else rng.uniform(1.0, 3.0),
                    "urban": c % 4 == 0,
                    "admin1_id": "A" if c < 20 else "B",
                }
            )
    hh = pd.DataFrame(rows)
    units = pd.DataFrame(
        {
            "population": 50.0,
            "poverty_rate": hh.groupby("cell_id")["poor"].mean(),
            "parent_id": ["A" if c < 20 else "B" for c in range(n_cells)],
        }
    )
    units.index.name = "cell_id"
    return hh, units


def test_lottery_is_the_diagonal(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    hh, _ = world
    ev = compare({"lottery": Lottery()}, hh, "30%")
    overall = ev.iloc[0]
    assert overall["share_poor_covered"] == pytest.approx(0.3)
    assert overall["inclusion_error"] == pytest.approx(1 - hh["poor"].mean())
    assert overall["cost"] == pytest.approx(0.3 * hh["hh_size"].sum())
    assert overall["welfare_index"] == pytest.approx(0.0, abs=1e-12)


def test_oracles_are_ceilings(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    hh, units = world
    noisy = units.assign(
        poverty_rate=np.clip(
            units["poverty_rate"] + np.random.default_rng(0).normal(0, 0.3, 40), 0, 1
        )
    )
    pmt_score = np.log(hh["consumption"].to_numpy()) + np.random.default_rng(1).normal(
        0, 0.5, len(hh)
    )
    methods = {
        "household oracle": HouseholdRanking("consumption"),
        "area oracle": AreaRanking(units),
        "noisy map": AreaRanking(noisy),
        "pmt": HouseholdRanking(pd.Series(pmt_score, index=hh["household_id"])),
        "hybrid": Hybrid(noisy, "consumption"),
        "lottery": Lottery(),
    }
    curves = targeting_curves(methods, hh, budgets=(0.1, 0.3, 0.5))
    for share, frame in curves.groupby("budget_share"):
        got = frame.set_index("method")["share_poor_covered"]
        assert got["household oracle"] == pytest.approx(got.max())
        for name in ("noisy map", "lottery"):
            assert got["area oracle"] >= got[name] - 1e-12, share
        np.testing.assert_allclose(frame["coverage"], share)
    # the budgets spread over two worker processes: the same table
    spread = targeting_curves(methods, hh, budgets=(0.1, 0.3, 0.5), engine=LocalEngine(n_jobs=2))
    pd.testing.assert_frame_equal(spread, curves, check_exact=True)
    assert list(curves["budget_share"].unique()) == [0.1, 0.3, 0.5]
    table = compare(methods, hh, "30%")
    assert set(table["group_by"]) == {"all", "urban", "admin1_id"}
    assert (table["level"] == "person").all()
    gaps = parity_gaps(table)
    assert set(gaps["method"]) == set(methods)


def test_headline(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    hh, units = world
    head = headline({"map": AreaRanking(units), "lottery": Lottery()}, hh)
    assert head["budget"] == "30%"
    assert head["level"] == "person"
    assert set(head["methods"]["map"]) == {
        "poor_covered", "exclusion_error", "inclusion_error", "coverage", "cost",
        "welfare_vs_oracle",
    }  # fmt: skip
    m = head["methods"]["map"]
    assert m["exclusion_error"] == pytest.approx(1 - m["poor_covered"])
    assert m["cost"] == pytest.approx(0.3 * 2000)
    assert head["methods"]["lottery"]["poor_covered"] == pytest.approx(0.3)
    # from a table compared by groups: its overall rows give the same figures
    methods = {"map": AreaRanking(units), "lottery": Lottery()}
    assert headline(methods, hh, table=compare(methods, hh, "30%")) == head


def test_fixed_plan_and_money(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    hh, units = world
    plan = pd.DataFrame({"selected": [True, True]}, index=["c00", "c01"])
    ev = compare({"plan": FixedPlan(plan, unit_col="cell_id")}, hh, "20000 @ 10/person", by=())
    assert ev.iloc[0]["beneficiaries"] == 100
    assert ev.iloc[0]["cost"] == 1000
    with pytest.raises(InputError, match="not a targeting method"):
        compare({"map": units}, hh, "30%")  # type: ignore[dict-item]


def test_ties_share_their_block() -> None:
    score = np.array([0.5, 0.5, 0.5, 0.2])
    cost = np.array([10.0, 10.0, 20.0, 10.0])
    cov = np.array([1.0, 1.0, 0.0, 0.0])  # id order took the first two of the block
    np.testing.assert_allclose(spread_ties(score, cost, cov), [0.5, 0.5, 0.5, 0.0])
    units = pd.DataFrame(
        {"population": [10.0] * 4, "poverty_rate": [0.5] * 4},
        index=pd.Index(["a", "b", "c", "d"], name="cell_id"),
    )
    by_id = AreaRanking(units, ties="id").plan("50%")
    assert list(by_id["coverage"]) == [1, 1, 0, 0]
    shared = AreaRanking(units).plan("50%")
    assert list(shared["coverage"]) == [0.5] * 4


def test_figures(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    hh, units = world
    methods = {"map": AreaRanking(units), "lottery": Lottery()}
    curves = targeting_curves(methods, hh, budgets=(0.2, 0.4))
    fig = plot_targeting_curves(curves)
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].lines) == 3  # two methods and the diagonal
    gaps = parity_gaps(compare(methods, hh, "30%"))
    fig = plot_parity_gaps(gaps)
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["urban", "admin1_id"]
    with pytest.raises(InputError, match="no parity gaps"):
        plot_parity_gaps(gaps, metric="nonsense")
