"""Targeting metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from povertymap.errors import InputError
from povertymap.target import crra_utility, evaluate, parity_gaps, welfare_gains


def test_ten_households_person_level(ten_households: pd.DataFrame) -> None:
    ev = evaluate(ten_households, ten_households["covered"].to_numpy(), consumption=None)
    overall = ev[ev["group_by"] == "all"].iloc[0]
    assert overall["level"] == "person"
    assert overall["poor"] == 18
    assert overall["beneficiaries"] == 14
    assert overall["poor_covered"] == 8
    assert overall["inclusion_error"] == pytest.approx(6 / 14)
    assert overall["exclusion_error"] == pytest.approx(10 / 18)
    assert overall["share_poor_covered"] == pytest.approx(8 / 18)
    assert overall["precision"] == pytest.approx(8 / 14)
    assert overall["recall"] == pytest.approx(8 / 18)
    assert overall["coverage"] == pytest.approx(14 / 30)
    assert np.isnan(overall["welfare_gain"])


def test_ten_households_household_level(ten_households: pd.DataFrame) -> None:
    ev = evaluate(
        ten_households, ten_households["covered"].to_numpy(), level="household", consumption=None
    )
    overall = ev.iloc[0]
    assert overall["level"] == "household"
    assert overall["inclusion_error"] == pytest.approx(2 / 5)
    assert overall["exclusion_error"] == pytest.approx(2 / 5)


def test_groups_and_parity_gaps(ten_households: pd.DataFrame) -> None:
    ev = evaluate(ten_households, ten_households["covered"].to_numpy(), consumption=None)
    rural = ev[(ev["group_by"] == "urban") & (ev["group"] == 0)].iloc[0]
    urban = ev[(ev["group_by"] == "urban") & (ev["group"] == 1)].iloc[0]
    # rural: h01-h05, poor people 2+4+1+5 = 12, covered poor 2+1+5 = 8
    assert rural["share_poor_covered"] == pytest.approx(8 / 12)
    # urban: h06-h10, poor people 6 (h07), none covered; beneficiaries h09 (3, non-poor)
    assert urban["share_poor_covered"] == 0
    assert urban["inclusion_error"] == 1
    region_a = ev[(ev["group_by"] == "admin1_id") & (ev["group"] == "A")].iloc[0]
    # A: h01 h02 h05 h06 h09; poor 2+4+5 = 11, covered poor 2+5 = 7; beneficiaries 2+5+3
    assert region_a["share_poor_covered"] == pytest.approx(7 / 11)
    assert region_a["inclusion_error"] == pytest.approx(3 / 10)
    gaps = parity_gaps(ev).set_index(["group_by", "metric"])
    assert gaps.loc[("urban", "share_poor_covered"), "gap"] == pytest.approx(8 / 12)
    assert gaps.loc[("urban", "share_poor_covered"), "high"] == 0
    region_b_covered = 1 / 7  # B: poor h03 (1) and h07 (6); h03 covered
    assert gaps.loc[("admin1_id", "share_poor_covered"), "gap"] == pytest.approx(
        7 / 11 - region_b_covered
    )


def test_coverage_by_household_id_series(ten_households: pd.DataFrame) -> None:
    ids = ten_households.loc[ten_households["covered"] == 1, "household_id"]
    cov = pd.Series(1.0, index=ids[::-1])  # any order; missing ids are not covered
    ev = evaluate(ten_households, cov, by=(), consumption=None)
    assert ev.iloc[0]["poor_covered"] == 8
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        evaluate(ten_households, np.full(10, 2.0), consumption=None)
    with pytest.raises(InputError, match="shape"):
        evaluate(ten_households, np.ones(3), consumption=None)


def test_weights_scale_people(ten_households: pd.DataFrame) -> None:
    weighted = ten_households.assign(weight=2.0)
    a = evaluate(ten_households, ten_households["covered"].to_numpy(), consumption=None)
    b = evaluate(weighted, weighted["covered"].to_numpy(), consumption=None)
    assert b.iloc[0]["poor"] == 2 * a.iloc[0]["poor"]
    assert b.iloc[0]["inclusion_error"] == pytest.approx(a.iloc[0]["inclusion_error"])


def test_crra_by_hand() -> None:
    # rho = 3: u(y) = -1 / (2 y²)
    np.testing.assert_allclose(crra_utility([1.0, 2.0], 3.0), [-0.5, -0.125])
    np.testing.assert_allclose(welfare_gains(np.array([1.0, 2.0]), 1.0, 3.0), [0.375, 5 / 72])
    np.testing.assert_allclose(welfare_gains(np.array([1.0]), 1.0, 1.0), [np.log(2)])
    with pytest.raises(InputError, match="consumption > 0"):
        crra_utility([0.0, 1.0])


def test_welfare_against_oracle_lottery_universal_by_hand() -> None:
    hh = pd.DataFrame(
        {
            "household_id": ["poorer", "richer"],
            "hh_size": [1, 1],
            "poor": [True, False],
            "consumption": [1.0, 2.0],
        }
    )
    ev = evaluate(hh, np.array([0.0, 1.0]), by=(), transfer=1.0, rho=3.0)
    row = ev.iloc[0]
    gain_poor, gain_rich = 0.375, 5 / 72
    assert row["welfare_gain"] == pytest.approx(gain_rich)
    assert row["welfare_vs_oracle"] == pytest.approx(gain_rich / gain_poor)
    lottery = 0.5 * (gain_poor + gain_rich)
    assert row["welfare_index"] == pytest.approx((gain_rich - lottery) / (gain_poor - lottery))
    # universal: the same total (1.0) split 0.5 each
    universal = (0.5 - 1 / (2 * 1.5**2)) + (1 / 8 - 1 / (2 * 2.5**2))
    assert row["welfare_vs_universal"] == pytest.approx(gain_rich / universal)
    best = evaluate(hh, np.array([1.0, 0.0]), by=(), transfer=1.0).iloc[0]
    assert best["welfare_vs_oracle"] == pytest.approx(1.0)
    assert best["welfare_index"] == pytest.approx(1.0)
