"""Budget parsing and arithmetic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from povertymap.errors import InputError
from povertymap.target import Budget


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30%", Budget("share", 0.3)),
        (" 12.5 % ", Budget("share", 0.125)),
        ("100%", Budget("share", 1.0)),
        ("120000", Budget("people", 120000)),
        ("120,000 people", Budget("people", 120000)),
        ("25000 households", Budget("households", 25000)),
        ("25000 hh", Budget("households", 25000)),
        ("2e6 @ 25/person", Budget.money(2e6, cost_per_person=25)),
        ("1000000 @ 60/household", Budget.money(1e6, cost_per_household=60)),
        (0.3, Budget("share", 0.3)),
        (5000, Budget("people", 5000)),
    ],
)
def test_parse(text: str | float, expected: Budget) -> None:
    assert Budget.parse(text) == expected
    assert Budget.parse(Budget.parse(text).describe()) == expected


@pytest.mark.parametrize("text", ["130%", "0%", "-5%", "-100", "lots", "30 % of people", True])
def test_parse_refuses(text: object) -> None:
    with pytest.raises(InputError) as err:
        Budget.parse(text)  # type: ignore[arg-type]
    assert "Fix:" in str(err.value)


def test_130_percent_names_value_and_fix() -> None:
    with pytest.raises(ValueError, match=r"130%.*Fix: give a share between 0% and 100%"):
        Budget.parse("130%")


def test_money_needs_a_cost() -> None:
    with pytest.raises(InputError, match="no cost per person"):
        Budget("money", 1000.0)
    with pytest.raises(InputError, match="takes no cost"):
        Budget("people", 10.0, cost_per_person=2.0)


def test_capacity_and_costs() -> None:
    units = pd.DataFrame({"population": [100.0, 50.0], "households": [20.0, 10.0]})
    assert Budget.parse("30%").capacity(150) == pytest.approx(45)
    assert Budget.parse("70").capacity(150) == 70
    np.testing.assert_allclose(Budget.parse("30%").unit_costs(units), [100, 50])
    np.testing.assert_allclose(Budget.parse("5 households").unit_costs(units), [20, 10])
    money = Budget.money(1e4, cost_per_person=10, cost_per_household=5)
    np.testing.assert_allclose(money.unit_costs(units), [1100, 550])
    assert money.measure == "money"
    with pytest.raises(InputError, match="households"):
        Budget.parse("5 hh").unit_costs(units[["population"]])
