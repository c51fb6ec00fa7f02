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
    realized_mean_factor,
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


def test_realized_mean_factor_is_one_for_one_household_and_kish_over_h_for_many() -> None:
    rng = np.random.default_rng(0)
    hh = pd.DataFrame(
        {
            "cluster_id": 0,
            "welfare": 0.0,
            "weight": 1.0,
            "hh_size": 1 + rng.poisson(4.0, 5000),
        }
    )
    _, kish = household_size(hh)
    f = realized_mean_factor(hh, np.array([0.0, 0.5, 1.0, 1.5, 2.0, 10.0, 200.0]))
    assert f[0] == 0.0 and f[1] == 0.0  # no household: nothing realised
    assert f[2] == pytest.approx(1.0)  # one household: its own deviation, whatever its size
    assert f[2] > f[3] > f[4] > f[5] > f[6]
    assert 1 / 2 < f[4] < kish / 2  # two households: between equal sizes and K / H
    assert f[5] == pytest.approx(kish / 10, rel=0.08)
    assert f[6] == pytest.approx(kish / 200)
    # a direct check for H = 2 by simulation
    m = hh["hh_size"].to_numpy(dtype=float)
    pairs = rng.choice(m, size=(200_000, 2))
    exact = np.mean((pairs**2).sum(axis=1) / pairs.sum(axis=1) ** 2)
    assert f[4] == pytest.approx(exact, rel=0.02)


def _two_strata_survey() -> tuple[pd.DataFrame, pd.DataFrame]:
    # one domain, 4 PSUs: two urban (mean 10), two rural (mean 0); within-PSU spread 1
    households = pd.DataFrame(
        {
            "cluster_id": [1, 1, 2, 2, 3, 3, 4, 4],
            "welfare": [9.0, 11.0, 9.5, 10.5, -1.0, 1.0, -0.5, 0.5],
            "weight": 1.0,
        }
    )
    clusters = pd.DataFrame(
        {"cluster_id": [1, 2, 3, 4], "admin_id": "A", "urban": [True, True, False, False]}
    )
    return households, clusters


def test_strata_remove_between_stratum_differences_from_the_variance() -> None:
    hh, cl = _two_strata_survey()
    plain = direct_estimates(hh, cl, person_weighted=False).loc["A"]
    strat = direct_estimates(hh, cl, person_weighted=False, strata=("urban",)).loc["A"]
    assert plain["direct"] == strat["direct"] == pytest.approx(5.0)
    # unstratified: t_k = +-(2 x 5)/8 = +-1.25; v = 4/3 x 4 x 1.25^2
    assert plain["direct_var"] == pytest.approx(4 / 3 * 4 * 1.25**2)
    # stratified: every PSU sits at its stratum mean: 2/1 x 0 per stratum
    assert strat["direct_var"] == pytest.approx(0.0, abs=1e-12)
    # a stratum with one PSU in the domain is collapsed, not dropped
    one = direct_estimates(hh[hh["cluster_id"] != 4], cl, strata=("urban",), person_weighted=False)
    assert one.loc["A", "direct_var"] > 0


def test_first_stage_census_leaves_only_the_second_stage_variance() -> None:
    hh, cl = _two_strata_survey()
    # every EA surveyed (pi = 1): only the subsampling of households within EAs remains
    census = direct_estimates(hh, cl.assign(pi=1.0), person_weighted=False).loc["A"]
    z = (hh["welfare"] - 5.0) / 8.0
    s2z = z.groupby(hh["cluster_id"]).var(ddof=1)
    assert census["direct_var"] == pytest.approx(float((2 * s2z).sum()))
    wr = direct_estimates(hh, cl, person_weighted=False).loc["A"]
    assert census["direct_var"] < 0.05 * wr["direct_var"]
    # the same from listed households: weight 1 with 2 sampled -> pi = listed / 2;
    # 2 listed: pi = 1 and a complete second stage (no variance at all)
    listed = direct_estimates(hh, cl.assign(ea_households=2), person_weighted=False).loc["A"]
    assert listed["direct_var"] == pytest.approx(0.0, abs=1e-12)
    half = direct_estimates(hh, cl.assign(pi=0.5), person_weighted=False).loc["A"]
    assert census["direct_var"] < half["direct_var"] < wr["direct_var"]
