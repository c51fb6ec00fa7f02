"""The demo country poses the real mapping problem: checked against its ground truth.

Every number here is measured from the written files (rasterio, geopandas, pandas), the
way a user of the data would measure it, and compared with the truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from scipy.ndimage import uniform_filter
from scipy.stats import spearmanr

from povertymap.world import PRESETS
from povertymap.world.households import pmt_design

pytestmark = pytest.mark.slow

SPEC = PRESETS["demo"]


def _info(folder: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((folder / "truth" / "world.json").read_text())
    return info


@pytest.fixture(scope="module")
def cells(world_demo: Path) -> pd.DataFrame:
    """Populated truth cells with the radiance of the composite pixel at their centre."""
    c = pd.read_parquet(world_demo / "truth" / "cells.parquet")
    c = c[c["population"] > 0].copy()
    lon, lat = Transformer.from_crs("EPSG:32736", "EPSG:4326", always_xy=True).transform(
        (c["ix"].to_numpy() + 0.5) * 1000, (c["iy"].to_numpy() + 0.5) * 1000
    )
    with rasterio.open(world_demo / "nightlights.tif") as src:
        c["sampled_radiance"] = [v[0] for v in src.sample(zip(lon, lat, strict=True))]
    return c


def test_most_populated_cells_are_dark_and_city_cores_saturate(
    world_demo: Path, cells: pd.DataFrame
) -> None:
    dark = cells["sampled_radiance"] < SPEC.lights_floor
    assert dark.mean() >= 0.5
    assert (dark == ~cells["lit"]).all()
    # most of the poor live in the dark
    poor = cells["poverty_rate"] > 0.5
    assert dark[poor].mean() > 0.8
    with rasterio.open(world_demo / "nightlights.tif") as src:
        radiance = src.read(1)
    assert radiance.max() == pytest.approx(SPEC.lights_saturation)
    assert (radiance >= SPEC.lights_saturation).sum() >= 3
    below = radiance[(radiance > 0)]
    assert below.min() >= SPEC.lights_floor  # the background is masked to zero
    top = cells.nlargest(10, "sampled_radiance")
    assert top["urban"].all()
    # lit cells are richer than dark ones, yet lights cannot rank the dark
    assert (
        cells.loc[~dark, "mean_log_consumption"].mean()
        > cells.loc[dark, "mean_log_consumption"].mean()
    )


def test_wealth_varies_among_dark_cells(cells: pd.DataFrame) -> None:
    dark = cells[cells["sampled_radiance"] < SPEC.lights_floor]
    national = cells["mean_log_consumption"].std()
    assert dark["mean_log_consumption"].std() >= 0.5 * national
    assert dark["poverty_rate"].std() > 0.15


def test_imagery_sees_wealth_where_lights_are_dark(world_demo: Path, cells: pd.DataFrame) -> None:
    """Bright metal roofs: the mean blue-band excess of the 10 brightest structures of a cell.

    Computed from imagery.tif alone over settled (>= 10 households), cloud-free dark cells:
    the blue band separates galvanised roofs (reflectance ~0.5) from soil, thatch and
    vegetation (< 0.16), and the local excess removes the landscape's own brightness.
    """
    with rasterio.open(world_demo / "imagery.tif") as src:
        blue = src.read(3).astype(np.float32)
        t = src.transform
    excess = blue - uniform_filter(blue, 9)
    dark = cells[
        (cells["sampled_radiance"] < SPEC.lights_floor)
        & (cells["cloud_fraction"] == 0)
        & (cells["households"] >= 10)
    ]
    assert len(dark) > 300
    col = np.round((dark["ix"].to_numpy() * 1000 - t.c) / t.a).astype(int)
    row = np.round((t.f - (dark["iy"].to_numpy() + 1) * 1000) / -t.e).astype(int)
    n = round(1000 / t.a)
    stat = [
        np.sort(excess[r : r + n, c : c + n], axis=None)[-10:].mean()
        for r, c in zip(row, col, strict=True)
    ]
    rho = spearmanr(stat, dark["mean_log_consumption"])[0]
    assert rho >= 0.4
    # and not because brighter cells are simply more crowded
    assert abs(spearmanr(dark["households"], dark["mean_log_consumption"])[0]) < rho / 2


def test_headcount_and_pmt_fit_are_realistic(world_demo: Path) -> None:
    info = _info(world_demo)
    hh = pd.read_parquet(world_demo / "truth" / "households.parquet")
    headcount = (
        hh.loc[hh["log_consumption"] < info["poverty_line"], "hh_size"].sum() / hh["hh_size"].sum()
    )
    assert abs(headcount - SPEC.poverty_headcount) <= 0.02
    survey = pd.read_csv(world_demo / "households.csv")
    x = pmt_design(survey)
    y = survey["log_consumption"].to_numpy()
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - np.var(y - x @ beta) / np.var(y)
    assert 0.4 <= r2 <= 0.6
    assert r2 == pytest.approx(info["pmt_r2"], abs=1e-9)
    # household size alone is a weak PMT; the asset index tracks consumption
    assert abs(np.corrcoef(survey["hh_size"], y)[0, 1]) < 0.5
    assert 0.4 < np.corrcoef(survey["asset_index"], y)[0, 1] < 0.9


def test_displacement_follows_the_dhs_rules(world_demo: Path) -> None:
    truth = pd.read_csv(world_demo / "truth" / "clusters.csv")
    rural = truth[~truth["urban"]]
    far = rural["cap_m"] == 10_000
    assert len(rural) > 150
    # exactly round(1%) of rural clusters may go up to 10 km; the rest follow 2 / 5 km caps
    assert far.sum() == round(0.01 * len(rural))
    assert (rural.loc[~far, "cap_m"] == 5000).all() and (
        truth.loc[truth["urban"], "cap_m"] == 2000
    ).all()
    beyond = (rural["displacement_m"] > 5000).mean()
    assert beyond <= far.mean() <= 0.015
    assert (truth["displacement_m"] <= truth["cap_m"]).all()
    # distances are uniform on [0, cap]: the mean is about half the cap
    assert 0.4 < (rural.loc[~far, "displacement_m"] / 5000).mean() < 0.6


def test_design_weights_reproduce_totals(world_demo: Path) -> None:
    info = _info(world_demo)
    survey = pd.read_csv(world_demo / "households.csv")
    clusters = pd.read_csv(world_demo / "clusters.csv")
    assert len(clusters) == SPEC.n_clusters
    assert (clusters["n_households"] == SPEC.households_per_cluster).mean() > 0.95
    households = survey["weight"].sum()
    people = (survey["weight"] * survey["hh_size"]).sum()
    assert households == pytest.approx(info["households"], rel=0.05)
    assert people == pytest.approx(info["population"], rel=0.05)
    poor = (survey["log_consumption"] < info["poverty_line"]) * survey["weight"] * survey["hh_size"]
    # measurement error widens the measured distribution, so the direct estimate is near,
    # not at, the true headcount
    assert poor.sum() / people == pytest.approx(SPEC.poverty_headcount, abs=0.06)


def test_clusters_measure_their_true_means(world_demo: Path) -> None:
    clusters = pd.read_csv(world_demo / "clusters.csv").set_index("cluster_id")
    truth = pd.read_csv(world_demo / "truth" / "clusters.csv").set_index("cluster_id")
    r = np.corrcoef(clusters["log_consumption"], truth["true_mean_log_consumption"])[0, 1]
    assert 0.8 < r**2 < 0.99  # sampling and measurement error, but mostly signal
    assert (clusters["urban"] == np.where(truth["urban"], "U", "R")).all()


def test_osm_is_less_complete_where_people_are_poor(world_demo: Path) -> None:
    import geopandas as gpd

    cells = pd.read_parquet(world_demo / "truth" / "cells.parquet").set_index("cell_id")
    pois = gpd.read_file(world_demo / "truth" / "pois.geojson").to_crs("EPSG:32736")
    ids = (
        np.floor(pois.geometry.x / 1000).astype(int).astype(str)
        + "_"
        + np.floor(pois.geometry.y / 1000).astype(int).astype(str)
    )
    wealth = cells["mean_log_consumption"].reindex(ids).to_numpy()
    ok = ~np.isnan(wealth)
    mapped = pois["mapped"].to_numpy()[ok]
    low = wealth[ok] < np.nanmedian(wealth[ok])
    assert mapped[low].mean() < mapped[~low].mean()
    roads = gpd.read_file(world_demo / "truth" / "roads.geojson")
    main = roads["highway"].isin(["primary", "secondary"])
    assert roads.loc[main, "mapped"].all()
    assert roads.loc[roads["highway"] == "track", "mapped"].mean() < 0.9
    # POIs follow people
    counts = pd.Series(ids).value_counts().reindex(cells.index, fill_value=0)
    populated = cells["population"] > 0
    assert spearmanr(counts[populated], cells.loc[populated, "population"])[0] > 0.3
