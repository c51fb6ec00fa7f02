"""Poverty headcounts from mean log consumption, on hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from povertymap.errors import ModelError
from povertymap.estimate.headcount import (
    expected_headcount,
    headcount,
    headcount_interval,
    realized_headcount_interval,
)

PHI_1 = 0.8413447460685429  # Phi(1)
PHI_M1 = 0.15865525393145707  # Phi(-1)


def test_headcount_of_a_lognormal_cell() -> None:
    # log consumption ~ N(1, 0.5^2), line 1.5: P = Phi((1.5 - 1) / 0.5) = Phi(1)
    assert headcount(1.0, 0.5, 1.5) == pytest.approx(PHI_1)
    assert headcount(2.0, 0.5, 1.5) == pytest.approx(PHI_M1)
    assert headcount(1.5, 0.5, 1.5) == pytest.approx(0.5)


def test_expected_headcount_integrates_over_the_predictive_sd() -> None:
    # sqrt(0.3^2 + 0.4^2) = 0.5: Phi((1.5 - 1) / 0.5) = Phi(1)
    assert expected_headcount(1.0, 0.3, 0.4, 1.5) == pytest.approx(PHI_1)
    # the closed form equals the integral E_u[Phi((z - mu - u) / s)], u ~ N(0, e^2)
    x, w = np.polynomial.hermite_e.hermegauss(60)
    mu, s, e, z = 0.8, 0.45, 0.35, 1.2
    quad = np.sum(w * headcount(mu + e * x, s, z)) / np.sqrt(2 * np.pi)
    assert expected_headcount(mu, s, e, z) == pytest.approx(quad, abs=1e-10)
    # and it is less extreme than the plug-in headcount
    assert expected_headcount(0.0, s, e, z) < headcount(0.0, s, z)


def test_headcount_interval_maps_the_mean_interval() -> None:
    lo, hi = headcount_interval(0.5, 1.5, 0.5, 1.0)
    assert lo == pytest.approx(PHI_M1)  # the upper mean gives the lower headcount
    assert hi == pytest.approx(PHI_1)


def test_realized_interval_covers_the_headcount_of_few_households() -> None:
    rng = np.random.default_rng(0)
    n, s, z, half = 4000, 0.5, 1.0, 0.3
    mu_hat = rng.normal(1.0, 0.3, n)
    H = rng.integers(1, 40, n)
    true_mu = mu_hat + rng.normal(0, half / 1.6449, n)  # the mean interval has 90 % coverage
    realised = rng.binomial(H, headcount(true_mu, s, z)) / H
    lo, hi = realized_headcount_interval(mu_hat, half, s, H, z, level=0.9, rng=rng)
    cover = np.mean((lo <= realised) & (realised <= hi))
    # discrete targets: inverted-CDF quantiles cover at least the level
    assert 0.9 <= cover <= 0.97
    exp_lo, exp_hi = headcount_interval(mu_hat - half, mu_hat + half, s, z)
    assert np.mean((exp_lo <= realised) & (realised <= exp_hi)) < 0.8
    # a one-household cell is all poor or all not: unless its headcount is extreme the
    # interval must span [0, 1]
    p = headcount(mu_hat, s, z)
    one = (H == 1) & (p > 0.1) & (p < 0.9)
    assert one.sum() > 20
    assert np.all(lo[one] == 0.0) and np.all(hi[one] == 1.0)


def test_headcount_refuses_a_non_positive_dispersion() -> None:
    with pytest.raises(ModelError, match="within_sd"):
        headcount(1.0, 0.0, 1.5)
    with pytest.raises(ModelError, match="pred_sd"):
        expected_headcount(1.0, 0.5, -0.1, 1.5)
