"""Design-based direct estimates, cluster noise and the GVF, on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from povertymap.errors import ModelError, SurveyError
from povertymap.estimate.direct import (
    cluster_noise,
    direct_estimates,
    gvf_variances,
    household_size,
    within_sd,
)


@pytest.fixture
def survey() -> tuple[pd.DataFrame, pd.DataFrame]:
    households = pd.DataFrame(
        {
            "cluster_id": [1, 1, 2, 2, 3, 3, 4, 4],
            "welfare": [1.0, 3.0, 2.0, 2.0, 4.0, 6.0, 5.0, 7.0],
            "weight": 1.0,
            "hh_size": [1, 3, 1, 3, 1, 3, 1, 3],
        }
    )
    clusters = pd.DataFrame(
        {"cluster_id": [1, 2, 3, 4], "admin_id": ["A", "A", "A", "B"], "urban": False}
    )
    return households, clusters


def test_direct_mean_and_psu_linearised_variance(survey: tuple) -> None:
    hh, cl = survey
    d = direct_estimates(hh, cl, poverty_line=2.5, person_weighted=False)
    a = d.loc["A"]
    # mean 18/6 = 3; z_i = (y_i - 3) / 6; PSU totals -1/3, -1/3, 2/3 (mean 0);
    # v = 3/2 * (1/9 + 1/9 + 4/9) = 1
    assert a["direct"] == pytest.approx(3.0)
    assert a["direct_var"] == pytest.approx(1.0)
    assert a["element_var"] == pytest.approx(16 / 5)  # sum (y - 3)^2 / (n - 1)
    assert (a["n_clusters"], a["n_households"]) == (3, 6)
    assert a["direct_poverty"] == pytest.approx(0.5)  # 1, 2, 2 below 2.5
    assert np.isnan(d.loc["B", "direct_var"])  # one cluster: no design variance
    assert d.loc["B", "direct"] == pytest.approx(6.0)


def test_person_weighting_counts_people(survey: tuple) -> None:
    hh, cl = survey
    d = direct_estimates(hh, cl, person_weighted=True)
    # people: cluster 1: 1x1 + 3x3 ... mean = (1 + 9 + 2 + 6 + 4 + 18) / 12
    assert d.loc["A", "direct"] == pytest.approx(40 / 12)


def test_cluster_noise_pools_within_cluster_variance(survey: tuple) -> None:
    hh, cl = survey
    nz = cluster_noise(hh, cl, person_weighted=False)
    # within-cluster variances 2, 0, 2, 2 (1 dof each): pooled 1.5; noise = 1.5 / 2
    assert nz["element_var"].tolist() == pytest.approx([2.0, 0.0, 2.0, 2.0])
    assert nz["noise_var"].tolist() == pytest.approx([0.75] * 4)
    assert nz.loc[2, "noise_var_direct"] == pytest.approx(0.0)
    sd = within_sd(hh, cl, person_weighted=False, measurement_error_sd=0.5)
    assert sd[False] == pytest.approx(np.sqrt(1.5 - 0.25))
    assert sd[True] == sd[False]  # no urban cluster: borrows the rural value
    with pytest.raises(ModelError, match="measurement_error_sd"):
        within_sd(hh, cl, person_weighted=False, measurement_error_sd=2.0)


def test_household_size_and_kish_factor(survey: tuple) -> None:
    mean, kish = household_size(survey[0])
    assert mean == pytest.approx(2.0)
    assert kish == pytest.approx(5 / 4)  # E[m^2] / E[m]^2 = 5 / 4


def test_gvf_recovers_a_common_design_effect() -> None:
    rng = np.random.default_rng(0)
    n = rng.integers(20, 200, 30).astype(float)
    s2 = rng.uniform(0.2, 0.4, 30)
    k = np.where(np.arange(30) < 5, 1, 8).astype(float)  # five areas with one cluster
    v = np.where(k > 1, 2.5 * s2 / n, np.nan)
    psi, deff = gvf_variances(v, s2, n, k)
    assert deff == pytest.approx(2.5)
    np.testing.assert_allclose(psi, 2.5 * s2 / n)
    p = np.full(30, 0.3)
    psi_p, _ = gvf_variances(v, s2, n, k, element_var_model=p * (1 - p))
    np.testing.assert_allclose(psi_p, 2.5 * 0.21 / n)
    noisy = v * rng.uniform(0.5, 1.5, 30)
    kept, _ = gvf_variances(noisy, s2, n, k, mode="direct")
    np.testing.assert_allclose(kept[5:], noisy[5:])
    with pytest.raises(ModelError, match="too few"):
        gvf_variances(v[:6], s2[:6], n[:6], k[:6])


def test_survey_errors_name_the_problem(survey: tuple) -> None:
    hh, cl = survey
    bad = hh.assign(weight=[1.0, -1.0, 1, 1, 1, 1, 1, 1])
    with pytest.raises(SurveyError, match="not positive"):
        direct_estimates(bad, cl)
    stray = pd.concat([hh, pd.DataFrame({"cluster_id": [9], "welfare": [1.0], "weight": [1.0]})])
    with pytest.raises(SurveyError, match="absent from the cluster table"):
        direct_estimates(stray, cl)
    with pytest.raises(SurveyError, match="no column 'district'"):
        direct_estimates(hh, cl, by="district")
