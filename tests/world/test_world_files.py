"""The tiny country's files: the contract with the rest of the package, read back for real."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import yaml
from pyproj import CRS, Transformer

from povertymap.config import config_from_dict
from povertymap.grid import make_grid
from povertymap.world import PRESETS
from povertymap.world.households import PMT_COLUMNS

WORKING = CRS.from_epsg(32736)


def _admin(folder: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(folder / "admin.geojson")


def test_study_yaml_validates_with_the_config_contract(world_tiny: Path) -> None:
    data = yaml.safe_load((world_tiny / "study.yaml").read_text())
    cfg = config_from_dict(data, base_dir=world_tiny, source=world_tiny / "study.yaml")
    assert cfg.crs == "EPSG:32736"
    assert cfg.grid.cell_size_m == 1000
    assert cfg.survey.clusters.target == "log_consumption"
    assert cfg.survey.households is not None and cfg.survey.households.size == "hh_size"
    assert set(cfg.rasters) == {"nightlights", "population", "imagery"}
    assert cfg.rasters["imagery"].bands == ["red", "green", "blue", "nir"]
    assert set(cfg.vectors) == {"roads", "pois"}
    info = json.loads((world_tiny / "truth" / "world.json").read_text())
    assert cfg.poverty_line == pytest.approx(info["poverty_line"], abs=1e-6)


def test_rasters_declare_crs_resolution_nodata_and_bands(world_tiny: Path) -> None:
    with rasterio.open(world_tiny / "population.tif") as src:
        assert CRS(src.crs) == WORKING
        assert src.res == (100.0, 100.0)
        assert src.dtypes == ("float32",)
        assert src.nodata == -99999
        assert src.transform.c % 1000 == 0 and src.transform.f % 1000 == 0
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        pop = src.read(1)
        assert (pop[pop != src.nodata] >= 0).all()
        assert (pop == src.nodata).any()  # outside the country
    with rasterio.open(world_tiny / "nightlights.tif") as src:
        assert CRS(src.crs) == CRS.from_epsg(4326)
        assert src.res == pytest.approx((1 / 240, 1 / 240))
        assert src.dtypes == ("float32",)
        assert src.descriptions == ("radiance",)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        lon, lat = src.xy(src.height // 2, src.width // 2)
        assert 34 < lon < 36 and -7 < lat < -5  # real East African coordinates
    with rasterio.open(world_tiny / "imagery.tif") as src:
        assert CRS(src.crs) == WORKING
        assert src.res == (20.0, 20.0)
        assert src.count == 4 and src.dtypes == ("uint8",) * 4
        assert src.descriptions == ("red", "green", "blue", "nir")
        assert src.nodata == 0
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.overviews(1)  # internal overviews
        assert src.read(1, out_shape=(50, 60)).min() >= 1  # 0 is reserved for nodata


def test_vectors_are_wgs84_with_osm_classes(world_tiny: Path) -> None:
    admin = _admin(world_tiny)
    assert CRS(admin.crs) == CRS.from_epsg(4326)
    assert {"admin2_id", "admin2_name", "admin1_id"} <= set(admin.columns)
    assert admin["admin2_id"].is_unique
    assert len(admin) == PRESETS["tiny"].n_admin2
    assert admin["admin1_id"].nunique() == PRESETS["tiny"].n_admin1
    roads = gpd.read_file(world_tiny / "roads.geojson")
    assert CRS(roads.crs) == CRS.from_epsg(4326)
    assert set(roads["highway"]) <= {"primary", "secondary", "tertiary", "track"}
    assert "primary" in set(roads["highway"])
    pois = gpd.read_file(world_tiny / "pois.geojson")
    assert CRS(pois.crs) == CRS.from_epsg(4326)
    assert set(pois["amenity"]) <= {"school", "clinic", "marketplace", "bank", "fuel"}
    true_pois = gpd.read_file(world_tiny / "truth" / "pois.geojson")
    assert len(pois) == int(true_pois["mapped"].sum()) < len(true_pois)


def test_admin2_units_tile_the_country_exactly(world_tiny: Path) -> None:
    admin = _admin(world_tiny).to_crs(WORKING)
    geoms = admin.geometry.to_numpy()
    union = shapely.union_all(geoms)
    # no overlaps: the areas add up to the area of the union
    assert sum(g.area for g in geoms) == pytest.approx(union.area, rel=1e-9)
    # no gaps: the union is one polygon without holes, and the units form a valid coverage
    assert union.geom_type == "Polygon" and len(union.interiors) == 0
    assert shapely.coverage_is_valid(shapely.GeometryCollection(list(geoms)))
    admin1 = gpd.read_file(world_tiny / "admin1.geojson").to_crs(WORKING)
    assert admin1.area.sum() == pytest.approx(union.area, rel=1e-6)


def test_truth_cells_are_the_pipelines_grid(world_tiny: Path) -> None:
    admin = _admin(world_tiny).to_crs(WORKING)
    grid = make_grid(admin.union_all(), WORKING, 1000.0)
    cells = pd.read_parquet(world_tiny / "truth" / "cells.parquet")
    assert cells["cell_id"].tolist() == grid.index.tolist()
    assert (cells["ix"].to_numpy() == grid["ix"].to_numpy()).all()
    populated = cells[cells["population"] > 0]
    assert populated["mean_log_consumption"].notna().all()
    assert populated["poverty_rate"].between(0, 1).all()
    assert cells.loc[cells["population"] == 0, "poverty_rate"].isna().all()


def test_population_raster_sums_to_truth_cells(world_tiny: Path) -> None:
    cells = pd.read_parquet(world_tiny / "truth" / "cells.parquet")
    with rasterio.open(world_tiny / "population.tif") as src:
        pop = src.read(1).astype(np.float64)
        t = src.transform
        nodata = src.nodata
    pop[pop == nodata] = 0.0
    ppc = 10
    ny, nx = pop.shape[0] // ppc, pop.shape[1] // ppc
    per_cell = pop.reshape(ny, ppc, nx, ppc).sum(axis=(1, 3))
    col = (cells["ix"].to_numpy() * 1000 - t.c) / 1000
    row = (t.f - (cells["iy"].to_numpy() + 1) * 1000) / 1000
    got = per_cell[row.astype(int), col.astype(int)]
    np.testing.assert_allclose(got, cells["population"].to_numpy(), rtol=1e-5, atol=1e-2)
    assert per_cell.sum() == pytest.approx(cells["population"].sum(), rel=1e-6)


def test_population_is_nodata_exactly_outside_the_country(world_tiny: Path) -> None:
    aoi = _admin(world_tiny).to_crs(WORKING).union_all()
    with rasterio.open(world_tiny / "population.tif") as src:
        pop = src.read(1)
        rows, cols = np.mgrid[0 : src.height : 7, 0 : src.width : 7]
        x, y = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
        nodata = pop[rows.ravel(), cols.ravel()] == src.nodata
    inside = shapely.contains_xy(aoi, np.asarray(x), np.asarray(y))
    assert (nodata == ~inside).mean() > 0.999  # pixel centres on a boundary may go either way
    assert nodata.any() and (~nodata).any()


def test_census_and_truth_agree_with_households(world_tiny: Path) -> None:
    census = pd.read_csv(world_tiny / "census.csv")
    truth = pd.read_csv(world_tiny / "truth" / "admin2.csv")
    cells = pd.read_parquet(world_tiny / "truth" / "cells.parquet")
    hh = pd.read_parquet(world_tiny / "truth" / "households.parquet")
    merged = census.merge(truth, on="admin2_id", suffixes=("", "_truth"))
    assert len(merged) == len(census) == PRESETS["tiny"].n_admin2
    assert (merged["population"] == merged["population_truth"]).all()
    assert (merged["households"] == merged["households_truth"]).all()
    by_admin = hh.groupby("admin2_id")["hh_size"].agg(["sum", "size"])
    assert (by_admin.loc[census["admin2_id"], "sum"].to_numpy() == census["population"]).all()
    assert census["population"].sum() == cells["population"].sum() == hh["hh_size"].sum()
    assert len(hh) == cells["households"].sum()
    people = hh.groupby("admin2_id")["hh_size"].sum()
    poor = hh[hh["poor"]].groupby("admin2_id")["hh_size"].sum().reindex(people.index, fill_value=0)
    np.testing.assert_allclose(
        truth.set_index("admin2_id").loc[people.index, "headcount"], poor / people
    )


def test_survey_tables_follow_the_contract(world_tiny: Path) -> None:
    clusters = pd.read_csv(world_tiny / "clusters.csv")
    households = pd.read_csv(world_tiny / "households.csv")
    assert list(clusters.columns) == [
        "cluster_id", "lon", "lat", "urban", "n_households", "ea_households", "weight",
        "log_consumption", "asset_index", "admin1_id",
    ]  # fmt: skip
    assert len(clusters) == PRESETS["tiny"].n_clusters
    assert set(clusters["urban"]) <= {"U", "R"}
    assert {
        "household_id",
        "cluster_id",
        "weight",
        "hh_size",
        "log_consumption",
        "asset_index",
    } <= set(households.columns)
    assert set(PMT_COLUMNS) <= set(households.columns)
    assert households["household_id"].is_unique
    per_cluster = households.groupby("cluster_id").agg(
        n=("household_id", "size"), w=("weight", "first")
    )
    c = clusters.set_index("cluster_id")
    assert (per_cluster["n"] == c.loc[per_cluster.index, "n_households"]).all()
    np.testing.assert_allclose(per_cluster["w"], c.loc[per_cluster.index, "weight"])
    assert (households.groupby("cluster_id")["weight"].nunique() == 1).all()
    # the cluster target is the people-weighted mean of its households' measured welfare
    hh = households.assign(wx=households["log_consumption"] * households["hh_size"])
    g = hh.groupby("cluster_id")
    np.testing.assert_allclose(g["wx"].sum() / g["hh_size"].sum(), c["log_consumption"], rtol=1e-9)
    assert (clusters["n_households"] <= PRESETS["tiny"].households_per_cluster).all()


def test_registry_lists_every_household_without_consumption(world_tiny: Path) -> None:
    registry = pd.read_parquet(world_tiny / "registry.parquet")
    truth = pd.read_parquet(world_tiny / "truth" / "households.parquet")
    survey = pd.read_csv(world_tiny / "households.csv")
    assert {"household_id", "admin2_id", "admin1_id", "cell_id", "urban"} <= set(registry.columns)
    assert set(PMT_COLUMNS) <= set(registry.columns)
    assert not any("consumption" in c for c in registry.columns)
    assert registry["household_id"].is_unique
    assert set(registry["household_id"]) == set(truth["household_id"])
    assert set(survey["household_id"]) <= set(registry["household_id"])
    # the survey and the registry describe the same households identically
    both = survey.merge(registry, on="household_id", suffixes=("", "_reg"))
    for col in ("hh_size", "roof", "water", "television"):
        assert (both[col] == both[f"{col}_reg"]).all()
    in_survey = truth.set_index("household_id").loc[survey["household_id"], "cluster_id"]
    assert (in_survey.to_numpy() == survey["cluster_id"].to_numpy()).all()


def test_displaced_clusters_stay_within_cap_and_admin2(world_tiny: Path) -> None:
    truth = pd.read_csv(world_tiny / "truth" / "clusters.csv")
    admin = _admin(world_tiny).set_index("admin2_id")
    to_xy = Transformer.from_crs("EPSG:4326", WORKING, always_xy=True)
    x, y = to_xy.transform(truth["lon"].to_numpy(), truth["lat"].to_numpy())
    dist = np.hypot(x - truth["x_true"].to_numpy(), y - truth["y_true"].to_numpy())
    cap = np.where(truth["urban"], 2000.0, 5000.0)
    cap = np.where(truth["cap_m"] == 10000.0, 10000.0, cap)
    assert (dist <= cap + 1.0).all()
    assert dist.mean() > 500  # they were displaced
    polys = admin.loc[truth["admin2_id"], "geometry"].to_numpy()
    assert shapely.contains_xy(polys, truth["lon"].to_numpy(), truth["lat"].to_numpy()).all()
    assert shapely.contains_xy(
        polys, truth["lon_true"].to_numpy(), truth["lat_true"].to_numpy()
    ).all()


def test_truth_households_match_cells(world_tiny: Path) -> None:
    hh = pd.read_parquet(world_tiny / "truth" / "households.parquet")
    cells = pd.read_parquet(world_tiny / "truth" / "cells.parquet").set_index("cell_id")
    info = json.loads((world_tiny / "truth" / "world.json").read_text())
    g = hh.assign(wx=hh["log_consumption"] * hh["hh_size"]).groupby("cell_id")
    mean = g["wx"].sum() / g["hh_size"].sum()
    np.testing.assert_allclose(mean, cells.loc[mean.index, "mean_log_consumption"], rtol=1e-9)
    below = hh["log_consumption"] < info["poverty_line"]
    assert (below == hh["poor"]).all()
    headcount = hh.loc[below, "hh_size"].sum() / hh["hh_size"].sum()
    assert headcount == pytest.approx(info["national_headcount"])
    assert abs(headcount - PRESETS["tiny"].poverty_headcount) < 0.02
    # households sit inside their cell
    ix = np.floor(hh["x"] / 1000).astype(int).astype(str)
    iy = np.floor(hh["y"] / 1000).astype(int).astype(str)
    assert ((ix + "_" + iy) == hh["cell_id"]).all()
