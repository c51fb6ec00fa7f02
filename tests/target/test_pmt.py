"""Proxy means test: estimator contract, fit quality, household selection, hybrid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from povertymap.errors import InputError
from povertymap.target import (
    ProxyMeansTest,
    hybrid_select,
    pmt_columns,
    select_households,
)

EDUCATION = {"head_education": ["none", "primary", "secondary", "higher"]}


@parametrize_with_checks([ProxyMeansTest(), ProxyMeansTest(alpha=1.0)])
def test_sklearn_contract(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def test_r2_on_simulated_households(
    pmt_survey: tuple[pd.DataFrame, np.ndarray, float],
    pmt_registry: tuple[pd.DataFrame, np.ndarray, float],
) -> None:
    X, y, true_r2 = pmt_survey
    pmt = ProxyMeansTest(ordinal=EDUCATION).fit(X, y)
    assert pmt.r2_ == pytest.approx(true_r2, abs=0.03)
    assert pmt.residual_sd_ == pytest.approx(0.5, abs=0.03)
    # out of sample, on the registry draw
    Xr, yr, _ = pmt_registry
    pred = pmt.predict(Xr)
    r2_out = 1 - np.sum((yr - pred) ** 2) / np.sum((yr - yr.mean()) ** 2)
    assert r2_out == pytest.approx(true_r2, abs=0.04)
    assert pmt.coef_["num__hh_size"] == pytest.approx(-0.08, abs=0.01)
    assert "cat__roof_metal" in pmt.coef_.index
    ridge = ProxyMeansTest(alpha=10.0).fit(X, y)
    assert ridge.r2_ == pytest.approx(pmt.r2_, abs=0.02)
    np.testing.assert_allclose(
        ridge.predict(X), ridge.intercept_ + ridge.model_[0].transform(X) @ ridge.coef_, atol=1e-8
    )


def test_survey_weights_equal_repetition(
    pmt_survey: tuple[pd.DataFrame, np.ndarray, float],
) -> None:
    X, y, _ = pmt_survey
    X, y = X.iloc[:300], y[:300]
    w = np.tile([1, 2, 3], 100)
    weighted = ProxyMeansTest().fit(X, y, sample_weight=w)
    rep = np.repeat(np.arange(300), w)
    repeated = ProxyMeansTest().fit(X.iloc[rep], y[rep])
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), atol=1e-8)
    assert weighted.r2_ == pytest.approx(repeated.r2_)


def test_unseen_category_and_missing_column(
    pmt_survey: tuple[pd.DataFrame, np.ndarray, float],
) -> None:
    X, y, _ = pmt_survey
    pmt = clone(ProxyMeansTest()).fit(X, y)
    new = X.iloc[:2].assign(roof=["grass", "metal"])
    assert np.isfinite(pmt.predict(new)).all()
    with pytest.raises(InputError, match="not in the data"):
        ProxyMeansTest(ordinal={"schooling": ["a", "b"]}).fit(X, y)
    with pytest.raises(InputError, match="blank values.*'hh_size': 1"):
        ProxyMeansTest().fit(X.iloc[:3].assign(hh_size=[1.0, np.nan, 2.0]), y[:3])
    with pytest.raises(InputError, match="levels \\['madrasa'\\]"):
        ProxyMeansTest(ordinal=EDUCATION).fit(X, y).predict(
            X.iloc[:1].assign(head_education="madrasa")
        )
    with pytest.raises(InputError, match="finite consumption"):
        ProxyMeansTest().fit(X.iloc[:3], [1.0, np.nan, 2.0])


def test_pmt_columns() -> None:
    survey = pd.DataFrame(columns=["household_id", "cluster_id", "welfare", "weight", "roof", "x1"])
    registry = pd.DataFrame(columns=["household_id", "cell_id", "roof", "x1", "admin1_id"])
    assert pmt_columns(survey, registry) == ["roof", "x1"]
    with pytest.raises(InputError, match="no PMT variables"):
        pmt_columns(survey[["welfare"]], registry)


@pytest.fixture
def registry() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "household_id": ["h5", "h2", "h4", "h1", "h3", "h6"],
            "hh_size": [2, 4, 3, 1, 5, 2],
            "score": [5.0, 1.0, 2.0, 2.0, 4.0, 3.0],
            "cell_id": ["c1", "c1", "c2", "c2", "c3", "c3"],
            "admin1_id": ["A", "A", "A", "B", "B", "B"],
        }
    )


def test_select_households_lowest_first_ties_by_id(registry: pd.DataFrame) -> None:
    plan = select_households(registry, "score", "8")
    # order: h2 (1.0), h1 and h4 tie at 2.0 (by id), h6 (3.0), h3, h5
    assert list(plan.index) == ["h2", "h1", "h4", "h6", "h3", "h5"]
    # h2 4 + h1 1 = 5; h4 (3) fits -> 8; nothing else
    assert set(plan.index[plan["selected"]]) == {"h2", "h1", "h4"}
    assert plan.attrs["spent"] == 8
    skip = select_households(registry, "score", "7")  # h4 (3) does not fit; h6 (2) does
    assert set(skip.index[skip["selected"]]) == {"h2", "h1", "h6"}
    hh = select_households(registry, "score", "2 households")
    assert set(hh.index[hh["selected"]]) == {"h2", "h1"}
    series = pd.Series([1.0, 9.0], index=["h6", "h2"])  # a Series by id must cover all
    with pytest.raises(InputError, match="no finite score"):
        select_households(registry, series, "8")


def test_select_households_with_weights_share_and_money(registry: pd.DataFrame) -> None:
    survey = registry.assign(weight=[10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    plan = select_households(survey, "score", "30%", weight_col="weight")  # 51 of 170 people
    assert set(plan.index[plan["selected"]]) == {"h2", "h1"}  # 40 + 10; h4 (30) does not fit
    assert plan.attrs["capacity"] == pytest.approx(51)
    money = select_households(registry, "score", "50 @ 10/person")  # 5 people
    assert set(money.index[money["selected"]]) == {"h2", "h1"}


def test_hybrid_preselects_areas(registry: pd.DataFrame) -> None:
    units = pd.DataFrame(
        {"population": [6.0, 4.0, 7.0], "poverty_rate": [0.2, 0.9, 0.5]},
        index=pd.Index(["c1", "c2", "c3"], name="cell_id"),
    )
    # preselect 4 people of 17: only c2; inside it h1 (1) and h4 (3)
    plan = hybrid_select(units, registry, "score", "4", preselect="4")
    assert set(plan.index[plan["selected"]]) == {"h1", "h4"}
    assert not plan.loc["h2", "selected"]  # poorest score but outside the chosen areas
    assert set(plan.index[plan["area_selected"]]) == {"h1", "h4"}
    # default preselection: twice the budget, 10 people: c2 (4); c3 (7) does not fit; c1 (6)
    default = hybrid_select(units, registry, "score", "5")
    assert set(default.index[default["area_selected"]]) == {"h1", "h4", "h5", "h2"}
    assert set(default.index[default["selected"]]) == {"h2", "h1"}
    assert default.attrs["preselect"] == "10 people"
    with pytest.raises(InputError, match="area"):
        hybrid_select(units.rename_axis(None), registry, "score", "4")
