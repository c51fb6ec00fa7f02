"""The estimation stage end to end on a synthetic country with known truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from povertymap.errors import InputError
from povertymap.estimate import (
    EstimationSettings,
    estimate_map,
    evaluate_against_truth,
    violations,
)
from povertymap.estimate.stage import ADMIN_DIRECT_COLUMNS, ADMIN_VALUE_COLUMNS

# the synthetic truth is the expected cell mean (no finite population in the generator)
FAST = EstimationSettings(n_simulations=200, cell_target="expected")


def _run(c: Any, settings: EstimationSettings = FAST, seed: int = 0) -> tuple:
    res = estimate_map(
        c.oof,
        c.cells,
        c.households,
        c.clusters,
        c.admin,
        poverty_line=c.poverty_line,
        settings=settings,
        rng=np.random.default_rng(seed),
    )
    ev = evaluate_against_truth(res, c.truth_cells, c.truth_admin, truth_admin1=c.truth_admin1)
    return res, ev


def test_stage_outputs_and_contracts(country: Any) -> None:
    res, ev = _run(country)
    for col in ("estimate", "lower", "upper", "poverty_rate", "poverty_lower", "poverty_upper"):
        assert res.cells[col].notna().all(), col
    assert (res.cells["lower"] < res.cells["estimate"]).all()
    assert (res.cells["poverty_lower"] <= res.cells["poverty_rate"] + 1e-12).all()
    a = res.admin
    assert set(ADMIN_VALUE_COLUMNS) <= set(a.columns)
    assert {"n_clusters", "n_households", "publish", "reason", "cv", "population"} <= set(a)
    assert a["publish"].isin(["yes", "flagged", "suppressed"]).all()
    assert (a["lower"] <= a["estimate"]).all() and (a["estimate"] <= a["upper"]).all()
    assert len(res.admin1) == 3
    m = res.metrics
    assert {"calibration", "conformal", "spatial", "fh_mean", "fh_poverty"} <= set(m)
    assert m["fh_mean"]["n_areas"] == int(a["direct"].notna().sum())
    public = res.public()
    for name in ("admin", "admin1"):
        assert (
            violations(
                public[name],
                res.settings.disclosure,
                value_columns=ADMIN_VALUE_COLUMNS,
                direct_columns=ADMIN_DIRECT_COLUMNS,
            )
            == []
        )
    assert "cluster_id" not in public["cells"].columns
    # one country with spatially correlated errors: coverage varies from survey to survey
    # (see the slow test for the average); here only gross failures
    assert 0.8 <= ev["cell_coverage"]["overall"] <= 0.98
    assert ev["admin2"]["sae_mean"]["rmse_fh"] < ev["admin2"]["sae_mean"]["rmse_direct"] * 1.05


def test_regression_calibration_has_unit_slope_on_cells(country: Any) -> None:
    _, ev = _run(country, FAST.model_copy(update={"calibration": "regression"}))
    assert ev["calibration"]["after"]["slope_pop"] == pytest.approx(1.0, abs=0.1)
    _, ev_b = _run(country)
    after = ev_b["calibration"]["after"]
    assert after["var_ratio_pop"] > ev["calibration"]["after"]["var_ratio_pop"]


def test_without_households_the_stage_still_maps(country: Any) -> None:
    res = estimate_map(
        country.oof,
        country.cells,
        None,
        None,
        country.admin,
        poverty_line=country.poverty_line,
        settings=FAST,
        rng=np.random.default_rng(1),
    )
    assert "fh_mean" not in res.admin
    assert "poverty_rate" not in res.cells
    assert any("no households" in w for w in res.metrics["warnings"])


def test_missing_columns_are_named(country: Any) -> None:
    with pytest.raises(InputError, match="pred"):
        estimate_map(
            country.oof.drop(columns="pred"),
            country.cells,
            country.households,
            country.clusters,
            country.admin,
        )
    with pytest.raises(InputError, match="parent_id"):
        estimate_map(
            country.oof,
            country.cells,
            country.households,
            country.clusters,
            pd.DataFrame(index=pd.Index(["x"], name="admin_id")),
        )


@pytest.mark.slow
def test_coverage_and_sae_gain_averaged_over_surveys(country_factory: Any) -> None:
    cells, urban, rural, admin, fh, direct = [], [], [], [], [], []
    for seed in range(6):
        _, ev = _run(country_factory(seed + 10), seed=seed)
        cells.append(ev["cell_coverage"]["overall"])
        urban.append(ev["cell_coverage"]["urban"])
        rural.append(ev["cell_coverage"]["rural"])
        admin.append(ev["admin2"]["mean"]["coverage"])
        fh.append(ev["admin2"]["sae_mean"]["rmse_fh"])
        direct.append(ev["admin2"]["sae_mean"]["rmse_direct"])
    assert np.mean(cells) == pytest.approx(0.9, abs=0.03)
    assert np.mean(urban) == pytest.approx(0.9, abs=0.05)
    assert np.mean(rural) == pytest.approx(0.9, abs=0.04)
    assert np.mean(admin) == pytest.approx(0.9, abs=0.06)  # 6 x 24 areas
    assert np.mean(fh) < np.mean(direct)
