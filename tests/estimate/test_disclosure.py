"""The disclosure gate: a property test over random area tables, and refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from povertymap.config.estimate import DisclosureSettings
from povertymap.estimate.disclosure import (
    DisclosureError,
    gate,
    public_table,
    strip_private,
    violations,
)

VALUES = ("estimate", "poverty_rate", "fh_poverty")
DIRECT = ("direct", "direct_var")

cv_values = st.one_of(
    st.floats(min_value=0.0, max_value=2.0),
    st.sampled_from([0.2, 0.3, 0.2000001, 0.2999999, 0.3000001, float("nan"), float("inf")]),
)
row = st.fixed_dictionaries(
    {
        "cv": cv_values,
        "n_households": st.integers(min_value=0, max_value=120),
        "estimate": st.floats(min_value=-5, max_value=5),
        "poverty_rate": st.one_of(st.floats(0, 1), st.just(float("nan"))),
        "fh_poverty": st.floats(0, 1),
        "direct": st.one_of(st.floats(0, 1), st.just(float("nan"))),
        "direct_var": st.floats(0, 0.1),
        "welfare": st.floats(0, 3),  # a private column that must not survive
    }
)
thresholds = st.tuples(
    st.integers(min_value=1, max_value=60),
    st.floats(min_value=0.05, max_value=0.5),
    st.floats(min_value=0.0, max_value=0.5),
).map(lambda t: DisclosureSettings(min_households=t[0], cv_flag=t[1], cv_suppress=t[1] + t[2]))


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=25), rules=thresholds)
def test_no_published_value_breaks_the_rules(rows: list[dict], rules: DisclosureSettings) -> None:
    table = pd.DataFrame(rows, index=pd.Index([f"D{i:03d}" for i in range(len(rows))]))
    public = public_table(table, rules, value_columns=VALUES, direct_columns=DIRECT)
    assert violations(public, rules, value_columns=VALUES, direct_columns=DIRECT) == []
    # and the gate suppresses nothing it need not: every area with a CV at or under the
    # flag threshold is published plainly
    cv = pd.to_numeric(table["cv"])
    plain = cv.le(rules.cv_flag) & np.isfinite(cv)
    assert (public.loc[plain, "publish"] == "yes").all()


def test_the_checker_catches_each_kind_of_violation() -> None:
    rules = DisclosureSettings()
    table = pd.DataFrame(
        {
            "cv": [0.10, 0.25, 0.50],
            "n_households": [100, 10, 100],
            "estimate": [1.0, 2.0, 3.0],
            "direct": [0.5, 0.6, 0.7],
        },
        index=["a", "b", "c"],
    )
    public = public_table(table, rules, value_columns=["estimate"], direct_columns=["direct"])
    assert public["publish"].tolist() == ["yes", "flagged", "suppressed"]
    assert "CV 25% above 20%" in public.loc["b", "reason"]
    from povertymap.estimate.disclosure import _percent

    assert (_percent(0.054), _percent(0.05), _percent(0.3)) == ("5.4%", "5%", "30%")
    assert "direct estimate withheld: 10 surveyed households < 25" in public.loc["b", "reason"]
    assert np.isnan(public.loc["b", "direct"]) and public.loc["b", "estimate"] == 2.0
    assert public.loc["c", ["estimate", "direct", "cv"]].isna().all()
    check = {"value_columns": ["estimate"], "direct_columns": ["direct"]}
    assert violations(public, rules, **check) == []
    leak = public.copy()
    leak.loc["c", "estimate"] = 3.0
    assert any("suppressed but shows" in v for v in violations(leak, rules, **check))
    small = public.copy()
    small.loc["b", "direct"] = 0.6
    assert any("direct estimate shown on 10" in v for v in violations(small, rules, **check))
    unflagged = public.copy()
    unflagged.loc["b", "publish"] = "yes"
    assert any("not flagged" in v for v in violations(unflagged, rules, **check))
    silent = public.copy()
    silent.loc["b", "reason"] = ""
    assert any("without a reason" in v for v in violations(silent, rules, **check))


def test_record_level_tables_are_refused_and_private_columns_dropped() -> None:
    clusters = pd.DataFrame({"cluster_id": [1, 2], "lon": [35.0, 35.1], "lat": [-6.0, -6.1]})
    with pytest.raises(DisclosureError, match="cluster_id"):
        strip_private(clusters)
    with pytest.raises(DisclosureError, match="household_id"):
        strip_private(pd.DataFrame({"x": [1]}, index=pd.Index([7], name="household_id")))
    area = pd.DataFrame({"estimate": [1.0], "welfare": [2.0], "displacement_m": [300.0]})
    assert strip_private(area).columns.tolist() == ["estimate"]


def test_missing_cv_suppresses_and_settings_are_validated() -> None:
    out = gate(pd.DataFrame({"cv": [np.nan]}), DisclosureSettings())
    assert out["publish"].iloc[0] == "suppressed"
    assert "precision unknown" in out["reason"].iloc[0]
    with pytest.raises(ValidationError, match="cv_flag"):
        DisclosureSettings(cv_flag=0.4, cv_suppress=0.3)
