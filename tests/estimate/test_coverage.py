"""Cell interval coverage checked statistically: several simulated surveys, a tolerance
derived from the binomial spread, never one lucky seed.

With independent model errors (``shared=0``) a cell's coverage indicator is a Bernoulli
draw given the calibration, and split-conformal coverage given ``n`` calibration residuals
is Beta-distributed around the level with variance ``level (1 - level) / (n + 2)`` (Vovk
2012; Angelopoulos and Bates 2021, sec. 3). Over ``k`` surveys the mean coverage then has
variance ``level (1 - level) / k * (1 / n_cells + 1 / (n_cal + 2))``, and the tests allow
three standard deviations of it around the level: wide enough never to fail by chance
(p < 0.003), narrow enough to catch an interval that is 10 % too wide or too narrow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from povertymap.config.estimate import WithinSd
from povertymap.estimate import EstimationSettings, estimate_map, evaluate_against_truth
from povertymap.estimate.direct import cluster_noise

LEVEL = 0.9
SEEDS = range(6)
#: the synthetic truth is the expected cell mean (the generator has no finite population)
SETTINGS = EstimationSettings(n_simulations=50, cell_target="expected", level=LEVEL)


def _tolerance(n_cells: float, n_cal: float, k: int) -> float:
    """Three standard deviations of the mean coverage of ``k`` surveys (module docstring)."""
    return 3 * float(np.sqrt(LEVEL * (1 - LEVEL) / k * (1 / n_cells + 1 / (n_cal + 2))))


def _reported_within_sd(c: Any) -> WithinSd:
    """What a survey report would give: the sd that, over a cluster's household count,
    is the sampling variance of its (person-weighted) mean, urban and rural."""
    noise = cluster_noise(c.households, c.clusters)
    urban = c.clusters.set_index("cluster_id")["urban"].reindex(noise.index)
    eff = noise["noise_var"] * noise["n_households"]
    return WithinSd(
        urban=float(np.sqrt(eff[urban].mean())), rural=float(np.sqrt(eff[~urban].mean()))
    )


def _coverage(country_factory: Any, *, survey: str) -> dict[str, list[float]]:
    """Coverage over :data:`SEEDS` surveys given as ``households``, as cluster means with
    a reported ``within_sd`` (``means+sd``) or as bare cluster ``means``."""
    out: dict[str, list[float]] = {"overall": [], "urban": [], "rural": [], "n_urban": []}
    out.update(n_rural=[], cal_urban=[], cal_rural=[], width=[])
    for seed in SEEDS:
        c = country_factory(100 + seed, shared=0.0)
        settings = SETTINGS
        if survey == "means+sd":
            settings = SETTINGS.model_copy(update={"within_sd": _reported_within_sd(c)})
        res = estimate_map(
            c.oof,
            c.cells,
            c.households if survey == "households" else None,
            c.clusters,
            c.admin,
            poverty_line=c.poverty_line if survey == "households" else None,
            settings=settings,
            rng=np.random.default_rng(seed),
        )
        ev = evaluate_against_truth(res, c.truth_cells, c.truth_admin)
        cov = ev["cell_coverage"]
        for key in ("overall", "urban", "rural", "n_urban", "n_rural"):
            out[key].append(cov[key])
        out["cal_urban"].append(res.conformal.n_[True])
        out["cal_rural"].append(res.conformal.n_[False])
        out["width"].append(ev["cell_width"])
    return out


@pytest.mark.parametrize("survey", ["households", "means+sd"])
def test_cell_intervals_cover_at_their_level_in_urban_and_rural_cells(
    country_factory: Any, survey: str
) -> None:
    cov = _coverage(country_factory, survey=survey)
    k = len(SEEDS)
    for group in ("urban", "rural"):
        tol = _tolerance(np.mean(cov[f"n_{group}"]), np.mean(cov[f"cal_{group}"]), k)
        assert np.mean(cov[group]) == pytest.approx(LEVEL, abs=tol), (group, tol)
    n_cells = np.mean(cov["n_urban"]) + np.mean(cov["n_rural"])
    n_cal = np.mean(cov["cal_urban"]) + np.mean(cov["cal_rural"])
    assert np.mean(cov["overall"]) == pytest.approx(LEVEL, abs=_tolerance(n_cells, n_cal, k))


def test_bare_cluster_means_keep_their_noise_and_over_cover(country_factory: Any) -> None:
    """Cluster means of 25 households carry sampling noise; with neither households nor
    a reported within-cluster sd nothing tells it, so the intervals keep it: wider than
    with the households and covering more than their level (the run warns)."""
    with_hh = _coverage(country_factory, survey="households")
    bare = _coverage(country_factory, survey="means")
    assert np.mean(bare["width"]) > 1.05 * np.mean(with_hh["width"])
    n_cells = np.mean(bare["n_urban"]) + np.mean(bare["n_rural"])
    n_cal = np.mean(bare["cal_urban"]) + np.mean(bare["cal_rural"])
    assert np.mean(bare["overall"]) > LEVEL + _tolerance(n_cells, n_cal, len(SEEDS))
