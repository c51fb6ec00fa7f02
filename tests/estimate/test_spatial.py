"""Error fields, variograms and area intervals under spatially correlated errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from povertymap.errors import ModelError
from povertymap.estimate.aggregate import simulate_area_intervals, weighted_area_means
from povertymap.estimate.spatial import (
    ExponentialCovariance,
    GridFieldSampler,
    between_unit_variance,
    empirical_variogram,
    fit_exponential,
    fit_nested,
    implied_between_unit_variance,
    nested_variogram,
)


def _grid(n: int, size: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return (gx.ravel() + 0.5) * size, (gy.ravel() + 0.5) * size


def test_grid_fields_have_unit_variance_and_exponential_correlation() -> None:
    x, y = _grid(40)
    sampler = GridFieldSampler(x, y, 5000.0)
    f = sampler.sample(600, np.random.default_rng(0))
    assert sampler.negative_share < 0.01
    assert f.var() == pytest.approx(1.0, abs=0.05)
    grid = f.reshape(40, 40, -1)
    for lag in (1, 5):
        corr = np.mean(grid[:-lag] * grid[lag:]) / np.mean(grid**2)
        assert corr == pytest.approx(np.exp(-lag * 1000 / 5000), abs=0.05)


def test_variogram_recovers_the_covariance_after_removing_known_noise() -> None:
    rng = np.random.default_rng(1)
    x, y = _grid(160, 500.0)  # 80 x 80 km at 500 m
    truth = ExponentialCovariance(nugget=0.01, partial_sill=0.03, range_m=8000.0)
    field = GridFieldSampler(x, y, truth.range_m).sample(1, rng)[:, 0]
    pick = rng.choice(x.size, 2500, replace=False)
    noise_var = rng.uniform(0.005, 0.03, pick.size)
    values = (
        np.sqrt(truth.partial_sill) * field[pick]
        + rng.normal(0, np.sqrt(truth.nugget), pick.size)
        + rng.normal(0, np.sqrt(noise_var))
    )
    vg = empirical_variogram(x[pick], y[pick], values, noise_var, max_dist=30_000, n_bins=15)
    fit = fit_exponential(vg)
    assert fit.sill == pytest.approx(truth.sill, rel=0.25)
    assert fit.shared_share == pytest.approx(truth.shared_share, abs=0.12)
    assert 5000 < fit.range_m < 13_000
    # without removing the noise the nugget absorbs it and the shared share drops
    naive = fit_exponential(
        empirical_variogram(x[pick], y[pick], values, max_dist=30_000, n_bins=15)
    )
    assert naive.shared_share < fit.shared_share - 0.1
    anchored = fit_exponential(vg, total_var=truth.sill)
    assert anchored.sill == pytest.approx(truth.sill)
    two = ExponentialCovariance(0.01, 0.02, 2000.0, long_sill=0.02, long_range_m=20_000.0)
    assert two.sill == pytest.approx(0.05) and two.long_share == pytest.approx(0.4)
    assert two.semivariance([1e9])[0] == pytest.approx(0.05)


def test_variogram_refuses_too_few_pairs() -> None:
    with pytest.raises(ModelError, match="pairs"):
        empirical_variogram([0, 1e6], [0, 0], [1.0, 2.0], max_dist=1000)


def _replicate_coverage(shared_model: float, reps: int, seed: int) -> tuple[float, float, float]:
    """Area coverage when the truth is drawn from the error model itself."""
    rng = np.random.default_rng(seed)
    x, y = _grid(40)
    n = x.size
    areas = (np.floor(x / 10_000) * 10 + np.floor(y / 10_000)).astype(int)
    w = rng.lognormal(3, 1, n)
    est = rng.normal(1.0, 0.3, n)
    sigma = np.where(rng.random(n) < 0.2, 0.15, 0.25)
    true_shared, rng_m = 0.7, 4000.0
    sampler = GridFieldSampler(x, y, rng_m)
    hits, hits_avg = [], []
    for _ in range(reps):
        err = sigma * (
            np.sqrt(true_shared) * sampler.sample(1, rng)[:, 0]
            + np.sqrt(1 - true_shared) * rng.standard_normal(n)
        )
        truth = weighted_area_means(est + err, w, areas)
        sims = simulate_area_intervals(
            est,
            sigma,
            w,
            {"a": areas},
            x=x,
            y=y,
            covariance=ExponentialCovariance(1 - shared_model, shared_model, rng_m),
            n_sims=150,
            rng=rng,
            level=0.9,
        )["a"]
        hits.append((sims["lower"] <= truth) & (truth <= sims["upper"]))
        # averaging the cell bounds (perfect correlation)
        lo = weighted_area_means(est - 1.645 * sigma, w, areas)
        hi = weighted_area_means(est + 1.645 * sigma, w, areas)
        hits_avg.append((lo <= truth) & (truth <= hi))
    cover = float(np.mean(np.concatenate(hits)))
    return cover, float(np.mean(np.concatenate(hits_avg))), float(sims["sd"].mean())


def test_correlated_simulation_covers_area_means() -> None:
    cover, cover_avg, _ = _replicate_coverage(0.7, reps=80, seed=2)
    # 16 areas x 80 replicates; binomial sd 0.0075 if independent, but areas of one
    # replicate share an error field (and 150 draws estimate each quantile), so the band
    # is +/- 0.045
    assert cover == pytest.approx(0.9, abs=0.045)
    assert cover_avg > 0.99  # averaging bounds is far too wide


def test_independent_errors_give_intervals_far_too_narrow() -> None:
    cover, _, _ = _replicate_coverage(0.0, reps=40, seed=3)
    assert cover < 0.6


def test_simulated_headcounts_average_to_the_expected_headcount() -> None:
    from scipy.special import ndtr

    rng = np.random.default_rng(4)
    x, y = _grid(20)
    est = rng.normal(1.0, 0.4, x.size)
    sigma = np.full(x.size, 0.2)
    sw = np.full(x.size, 0.5)
    w = np.ones(x.size)
    out = simulate_area_intervals(
        est,
        sigma,
        w,
        {"all": np.zeros(x.size)},
        x=x,
        y=y,
        covariance=ExponentialCovariance(0.5, 0.3, 3000.0, 0.2, 20_000.0),
        n_sims=2000,
        rng=rng,
        poverty_line=1.1,
        within_sd=sw,
    )["all"]
    expected = float(np.mean(ndtr((1.1 - est) / np.sqrt(sw**2 + sigma**2))))
    assert out["poverty_sim_mean"].iloc[0] == pytest.approx(expected, abs=3e-3)
    assert out["sim_mean"].iloc[0] == pytest.approx(est.mean(), abs=0.01)
    assert out["poverty_lower"].iloc[0] < expected < out["poverty_upper"].iloc[0]


def test_draws_in_bounded_batches_give_the_same_intervals_statistically() -> None:
    from povertymap.estimate.aggregate import BATCH_ELEMENTS, draw_batch

    assert draw_batch(4_211) == 100 and draw_batch(500_000) == 10 and draw_batch(10**8) == 1
    assert draw_batch(100_000) * 100_000 <= BATCH_ELEMENTS and draw_batch(50_000) == 100
    x, y = _grid(20)
    est = np.random.default_rng(1).normal(1.0, 0.4, x.size)
    runs = {}
    for batch in (None, 100, 7):
        runs[batch] = simulate_area_intervals(
            est,
            np.full(x.size, 0.2),
            np.ones(x.size),
            {"all": np.zeros(x.size)},
            x=x,
            y=y,
            covariance=ExponentialCovariance(0.5, 0.3, 3000.0),
            n_sims=3000,
            rng=np.random.default_rng(2),
            batch=batch,
        )["all"]
    # the default on a small grid is the batch of 100, draw for draw
    pd.testing.assert_frame_equal(runs[None], runs[100])
    # another batch draws other numbers from the same distribution: the sd of the area
    # mean agrees within its Monte Carlo error (about 1.3% relative for 3000 draws)
    assert runs[7]["sd"].iloc[0] == pytest.approx(runs[100]["sd"].iloc[0], rel=0.06)


def test_weighted_area_means_ignore_missing_cells() -> None:
    m = weighted_area_means([1.0, np.nan, 3.0, 5.0], [1.0, 1.0, 3.0, 0.0], ["a", "a", "a", "b"])
    assert m["a"] == pytest.approx(2.5)
    assert np.isnan(m["b"])


def test_nested_variogram_separates_admin_effects_from_the_field() -> None:
    # errors = district effect (var 0.01) + exponential field (0.01) + nugget (0.02)
    rng = np.random.default_rng(6)
    x, y = _grid(120, 500.0)  # 60 x 60 km
    a2 = (np.floor(x / 10_000) * 10 + np.floor(y / 12_000)).astype(int)  # 36 districts
    a1 = (np.floor(x / 30_000) * 10 + np.floor(y / 30_000)).astype(int)  # 4 regions
    field = GridFieldSampler(x, y, 4000.0).sample(1, rng)[:, 0]
    effect = rng.normal(0, 0.1, a2.max() + 1)
    pick = rng.choice(x.size, 3000, replace=False)
    noise_var = np.full(pick.size, 0.01)
    values = (
        effect[a2[pick]]
        + np.sqrt(0.01) * field[pick]
        + rng.normal(0, np.sqrt(0.02), pick.size)
        + rng.normal(0, 0.1, pick.size)
    )
    vg = nested_variogram(
        x[pick], y[pick], values, noise_var, a2[pick], a1[pick], max_dist=30_000, n_bins=12
    )
    assert set(vg["other_admin2"]) == {0, 1}
    fit = fit_nested(vg)
    # one draw of 36 district effects (their regional means vary by chance too, which the
    # admin-1 sill may take): together they are the effects' realised variance
    realised = float(np.var(effect[np.unique(a2)]))
    assert fit.admin2_sill + fit.admin1_sill == pytest.approx(realised, rel=0.35)
    assert fit.admin2_sill > 2 * fit.admin1_sill
    assert fit.nugget == pytest.approx(0.02, rel=0.3)
    assert fit.sill == pytest.approx(0.04, rel=0.3)
    assert fit.area_share("admin2") == pytest.approx(fit.admin2_sill / fit.sill)
    scaled = fit.scaled(2.0)
    assert scaled.sill == pytest.approx(2 * fit.sill)
    assert scaled.shared_share == pytest.approx(fit.shared_share)


def test_area_effects_widen_area_intervals_to_the_shared_error() -> None:
    rng = np.random.default_rng(6)
    x, y = _grid(30)
    areas = (np.floor(x / 10_000) * 10 + np.floor(y / 10_000)).astype(int)  # 9 areas
    n = x.size
    sigma = np.full(n, 0.2)
    common = dict(x=x, y=y, covariance=None, n_sims=1500, rng=rng, level=0.9)
    plain = simulate_area_intervals(np.zeros(n), sigma, np.ones(n), {"a": areas}, **common)["a"]
    shared = simulate_area_intervals(
        np.zeros(n),
        sigma,
        np.ones(n),
        {"a": areas},
        area_effects={"admin2": (areas, 0.25)},
        **common,
    )["a"]
    # 100 cells per area: independent errors average out (sd 0.2 x sqrt(0.75 / 100)); the
    # area effect (sd 0.2 x 0.5) does not
    assert plain["sd"].mean() == pytest.approx(0.02, rel=0.1)
    expected = 0.2 * np.sqrt(0.25 + 0.75 / 100)
    assert shared["sd"].mean() == pytest.approx(expected, rel=0.1)
    with pytest.raises(ModelError, match="shares"):
        simulate_area_intervals(
            np.zeros(n),
            sigma,
            np.ones(n),
            {"a": areas},
            area_effects={"admin2": (areas, 0.7), "admin1": (areas, 0.5)},
            **common,
        )


def test_between_unit_variance_measures_a_shared_effect_without_bias() -> None:
    rng = np.random.default_rng(3)
    tau2, within = 0.01, 0.04
    estimates = []
    for _ in range(400):
        m = rng.integers(2, 20, size=30)  # unbalanced units, as clusters per admin-2 are
        units = np.repeat(np.arange(30), m)
        z = rng.normal(0, np.sqrt(tau2), 30)[units] + rng.normal(0, np.sqrt(within), m.sum())
        estimates.append(between_unit_variance(z + 5.0, units.astype(str)))  # any level
    se = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - tau2) < 4 * se
    # units of one member say nothing of what members share
    assert np.isnan(between_unit_variance(np.arange(5.0), np.arange(5)))


def test_the_implied_between_unit_variance_is_the_estimators_expectation() -> None:
    rng = np.random.default_rng(0)
    n = 200
    x, y = rng.uniform(0, 80_000, n), rng.uniform(0, 60_000, n)
    units = (x // 20_000).astype(int) * 10 + (y // 20_000).astype(int)
    parents = (x // 40_000).astype(int)
    cov = ExponentialCovariance(
        nugget=0.02, partial_sill=0.01, range_m=15_000, admin2_sill=0.004, admin1_sill=0.002
    )
    implied = implied_between_unit_variance(cov, x, y, units, parents)
    d = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
    other2 = (units[:, None] != units[None]).astype(float)
    other1 = (parents[:, None] != parents[None]).astype(float)
    sigma = cov.sill - cov.semivariance(d, np.maximum(other2, other1), other1)
    np.fill_diagonal(sigma, cov.sill)
    chol = np.linalg.cholesky(sigma)
    draws = [between_unit_variance(chol @ rng.standard_normal(n), units) for _ in range(3000)]
    se = np.std(draws) / np.sqrt(len(draws))
    assert abs(np.mean(draws) - implied) < 4 * se
    assert 0.004 < implied < cov.sill - cov.nugget  # the admin effect and part of the rest
    # formed a few rows at a time, the same value
    assert implied_between_unit_variance(cov, x, y, units, parents, block=7) == pytest.approx(
        implied, rel=1e-12
    )
    # independent errors share nothing, and the nugget cancels
    assert implied_between_unit_variance(
        ExponentialCovariance(0.05, 0.0, 1000.0), x, y, units, parents
    ) == pytest.approx(0.0, abs=1e-12)
