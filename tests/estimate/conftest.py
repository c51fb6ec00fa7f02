"""A small synthetic country where every right answer is known.

Cells on a 1 km grid carry a true mean log consumption ``mu`` (urban premium, smooth
regional field, admin-2 effects, cell noise). Clusters are drawn with probability
proportional to population; each has 25 households whose measured welfare is
``mu + within-cell deviation + measurement error``. A model's predictions are simulated
as regression-shrunk noisy signals, ``pred = m + b (mu + err - m)`` with ``b`` the
shrinkage of a least-squares predictor and ``err`` a spatially correlated error field
(exponential covariance), so its out-of-fold residuals have the structure the estimation
stage assumes: the tests check the methods where their assumptions hold exactly, and the
demo-world run (reported separately) checks them where they do not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from povertymap.estimate.spatial import GridFieldSampler


@dataclass
class Country:
    oof: pd.DataFrame
    cells: pd.DataFrame
    households: pd.DataFrame
    clusters: pd.DataFrame
    admin: pd.DataFrame
    truth_cells: pd.DataFrame
    truth_admin: pd.DataFrame
    truth_admin1: pd.DataFrame
    poverty_line: float
    model_sd: float


def make_country(
    seed: int = 0,
    *,
    nx: int = 60,
    ny: int = 48,
    n_clusters: int = 320,
    households_per_cluster: int = 25,
    model_sd: float = 0.22,
    shared: float = 0.6,
    range_m: float = 6000.0,
    within_sd: tuple[float, float] = (0.58, 0.50),
    measurement_sd: float = 0.18,
) -> Country:
    """Generate a country; ``within_sd`` is (urban, rural)."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    x = (gx.ravel() + 0.5) * 1000.0
    y = (gy.ravel() + 0.5) * 1000.0
    n = x.size
    region = GridFieldSampler(x, y, 15000.0, cell_size=1000.0).sample(2, rng)
    pop = np.exp(4.0 + 1.2 * region[:, 1] + rng.normal(0, 0.8, n))
    urban = pop > np.quantile(pop, 0.85)
    # admin-2: blocks of 10 x 12 cells; admin-1: three vertical bands
    a2 = (gx.ravel() // 10) * 100 + (gy.ravel() // 12)
    a1 = gx.ravel() // 20
    a2_ids = np.unique(a2)
    a2_eff = dict(zip(a2_ids, rng.normal(0, 0.08, a2_ids.size), strict=True))
    mu = (
        1.0
        + 0.30 * urban
        + 0.35 * region[:, 0]
        + np.array([a2_eff[a] for a in a2])
        + rng.normal(0, 0.06, n)
    )
    # model error: spatially correlated + idiosyncratic, then least-squares shrinkage
    field = GridFieldSampler(x, y, range_m, cell_size=1000.0).sample(1, rng)[:, 0]
    err = model_sd * (np.sqrt(shared) * field + np.sqrt(1 - shared) * rng.normal(0, 1, n))
    m = float(np.average(mu, weights=pop))
    var_mu = float(np.average((mu - m) ** 2, weights=pop))
    b = var_mu / (var_mu + model_sd**2)
    pred = m + b * (mu + err - m)
    sd_cell = np.where(urban, within_sd[0], within_sd[1])
    # poverty line at the 40 % headcount of the true person distribution (approximately)
    grid = np.linspace(mu.min() - 2, mu.max() + 2, 4001)
    share = np.array([np.average(ndtr((z - mu) / sd_cell), weights=pop) for z in grid[::20]])
    z = float(np.interp(0.40, share, grid[::20]))
    poverty = ndtr((z - mu) / sd_cell)
    cell_id = np.arange(n)
    cells = pd.DataFrame(
        {
            "pred": pred,
            "population": pop,
            "urban": urban,
            "admin_id": a2,
            "parent_id": a1,
            "easting": x,
            "northing": y,
        },
        index=pd.Index(cell_id, name="cell_id"),
    )
    truth_cells = pd.DataFrame(
        {"mean_log_consumption": mu, "poverty_rate": poverty, "urban": urban},
        index=cells.index,
    )
    # clusters: PPS draw of cells, 25 households each
    k = rng.choice(n, size=n_clusters, replace=False, p=pop / pop.sum())
    hh = households_per_cluster
    welfare = (
        mu[k][:, None]
        + sd_cell[k][:, None] * rng.normal(0, 1, (n_clusters, hh))
        + rng.normal(0, measurement_sd, (n_clusters, hh))
    )
    size = 1 + rng.poisson(4.0, (n_clusters, hh))
    # PPS clusters and a fixed take per cluster: a self-weighting design (one weight)
    weight = np.full((n_clusters, hh), pop.sum() / (n_clusters * hh * 5.0))
    cl_id = np.arange(n_clusters)
    households = pd.DataFrame(
        {
            "cluster_id": np.repeat(cl_id, hh),
            "welfare": welfare.ravel(),
            "weight": weight.ravel(),
            "hh_size": size.ravel(),
        }
    )
    w = weight * size
    ybar = (w * welfare).sum(axis=1) / w.sum(axis=1)
    clusters = pd.DataFrame(
        {
            "cluster_id": cl_id,
            "admin_id": a2[k],
            "urban": urban[k],
            "n_households": hh,
            "weight": weight[:, 0],
        }
    )
    oof = pd.DataFrame(
        {
            "y": ybar,
            "pred": pred[k],
            "fold": (x[k] // 20000).astype(int),
            "urban": urban[k],
            "admin_id": a2[k],
            "parent_id": a1[k],
            "easting": x[k],
            "northing": y[k],
            "n_households": hh,
        },
        index=pd.Index(cl_id, name="cluster_id"),
    )
    admin = pd.DataFrame(
        {"parent_id": [int(a) // 200 for a in a2_ids]}, index=pd.Index(a2_ids, name="admin_id")
    )

    def agg(labels: np.ndarray) -> pd.DataFrame:
        df = pd.DataFrame({"a": labels, "w": pop, "mu": mu * pop, "p": poverty * pop})
        s = df.groupby("a")[["w", "mu", "p"]].sum()
        return pd.DataFrame(
            {"mean_log_consumption": s["mu"] / s["w"], "poverty_rate": s["p"] / s["w"]}
        )

    return Country(
        oof=oof,
        cells=cells,
        households=households,
        clusters=clusters,
        admin=admin,
        truth_cells=truth_cells,
        truth_admin=agg(a2),
        truth_admin1=agg(a1),
        poverty_line=z,
        model_sd=model_sd,
    )


@pytest.fixture(scope="session")
def country() -> Country:
    """The default synthetic country (seed 0)."""
    return make_country(0)


@pytest.fixture(scope="session")
def country_factory() -> Callable[..., Country]:
    """:func:`make_country`, for tests that need several surveys."""
    return make_country
