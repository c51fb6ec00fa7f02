"""Zonal sums: exact values on hand-made rasters, aggregation to zones, consistency."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from rasterio.transform import from_origin

from builders import TinyStudy, write_tif
from povertymap.engine import LocalEngine
from povertymap.features.build import neighbourhoods
from povertymap.features.nightlights import HISTOGRAM_EDGES, histogram_quantile
from povertymap.features.population import PopulationFeatures, population_sum
from povertymap.features.zonal import ZonalSpec, cells_under, overlap_weights, zonal_stats
from povertymap.io.configfile import read_config
from povertymap.io.raster import open_raster
from povertymap.studyarea import load_study_area

ENGINE = LocalEngine()
UTM = "EPSG:32736"


def _ramp(tmp_path: Path) -> Path:
    """20 x 20 pixels of 100 m from (700000, 9300000) down; value = column index."""
    data = np.tile(np.arange(20, dtype="float32"), (20, 1))
    return write_tif(
        tmp_path / "ramp.tif",
        data,
        crs=UTM,
        transform=from_origin(700000, 9300000, 100, 100),
        nodata=-1,
    )


VALUE = ZonalSpec(
    layers=lambda d: {"v": np.ma.filled(d[0].astype(float), np.nan)}, max_layers=("v",)
)


def test_zonal_sums_are_exact_on_a_ramp(tmp_path: Path) -> None:
    src = open_raster(_ramp(tmp_path))
    # columns 2..5 (x 700200-700600), half a pixel into column 6, rows 0..3
    zones = gpd.GeoDataFrame(
        geometry=[
            shapely.box(700200, 9299600, 700650, 9300000),
            shapely.box(701000, 9298100, 701100, 9298200),
        ],
        index=pd.Index(["a", "b"]),
        crs=UTM,
    )
    out = zonal_stats(src, zones, VALUE, engine=ENGINE)
    # zone a: 4 full columns (2,3,4,5) + half of column 6, over 4 rows
    assert out.loc["a", "v_count"] == pytest.approx(4 * 4.5)
    assert out.loc["a", "v_sum"] == pytest.approx(4 * (2 + 3 + 4 + 5 + 0.5 * 6))
    assert out.loc["a", "v_max"] == 6.0
    assert out.loc["b", "v_sum"] / out.loc["b", "v_count"] == pytest.approx(10.0)


def test_zonal_stats_in_another_crs_keep_counts(tmp_path: Path) -> None:
    """A UTM raster summed over lon/lat zones: polygons are reprojected, pixels are not."""
    src = open_raster(_ramp(tmp_path))
    box = gpd.GeoDataFrame(geometry=[shapely.box(700000, 9298000, 702000, 9300000)], crs=UTM)
    ll = box.to_crs(4326)
    total = zonal_stats(src, box, VALUE, engine=ENGINE)["v_sum"].iloc[0]
    again = zonal_stats(src, ll, VALUE, engine=ENGINE)["v_sum"].iloc[0]
    assert total == pytest.approx(20 * sum(range(20)))
    assert again == pytest.approx(total, rel=1e-3)


def test_overlap_weights_are_area_shares() -> None:
    zones = gpd.GeoDataFrame(geometry=[shapely.box(500, 500, 2500, 1500)], crs=UTM)
    cells = cells_under(zones, 1000)
    assert list(cells.index) == ["0_0", "0_1", "1_0", "1_1", "2_0", "2_1"]
    w = overlap_weights(zones, cells).toarray()[0]
    expected = {"0_0": 0.25, "0_1": 0.25, "1_0": 0.5, "1_1": 0.5, "2_0": 0.25, "2_1": 0.25}
    assert dict(zip(cells.index, w, strict=True)) == pytest.approx(expected)


def test_histogram_quantile_interpolates() -> None:
    edges = HISTOGRAM_EDGES
    cdf = np.array(
        [
            [1.0] * len(edges),  # everything at most 0.25: the median is halfway to 0.25
            [0.0, 0.0, 0.5, 1.0] + [1.0] * (len(edges) - 4),  # half <= 1, all <= 2
            [0.0] * len(edges),  # brighter than the last edge
        ]
    )
    assert histogram_quantile(cdf, 0.5, edges) == pytest.approx([0.125, 1.0, edges[-1]])
    assert histogram_quantile(cdf[1:2], 0.75, edges) == pytest.approx([1.5])


def test_population_totals_are_preserved(tiny: TinyStudy) -> None:
    """Cell people add up to the raster's people inside the area, and admin totals to both."""
    from povertymap.estimate.aggregate import weighted_area_means
    from povertymap.features.build import cell_facts

    area = load_study_area(read_config(tiny.write()))
    facts = cell_facts(area, engine=ENGINE)
    # 10 people per 500 m pixel = 40 per km², everywhere (also outside the area)
    assert facts["population"].sum() == pytest.approx(40 * area.aoi.area / 1e6, rel=1e-9)
    assert np.allclose(facts["population"], 40.0 * area.grid["aoi_fraction"])
    cells = area.grid.join(facts).assign(value=1.0)
    people = cells.groupby("admin_id")["population"].sum()
    assert people.sum() == pytest.approx(facts["population"].sum())
    means = weighted_area_means(cells["value"], cells["population"], cells["admin_id"])
    assert list(means) == [1.0, 1.0]


def test_buffer_features_match_analytic_density(tiny: TinyStudy) -> None:
    area = load_study_area(read_config(tiny.write()))
    buffers = area.cluster_buffers()
    feats = PopulationFeatures().transform(area, buffers, engine=ENGINE)
    # clusters far from the area's edge see 40 people/km² (the cells are uniform)
    assert feats.loc["c2", "pop_density"] == pytest.approx(40.0, rel=0.02)
    assert feats.loc["c1", "pop_sum"] == pytest.approx(40.0 * np.pi * 2.0**2, rel=0.02)


def test_cell_neighbourhoods_use_the_buffer_radius(tiny: TinyStudy) -> None:
    area = load_study_area(read_config(tiny.write()))
    urban = pd.Series(False, index=area.grid.index)
    urban.iloc[0] = True
    zones = neighbourhoods(area.grid, urban, {"urban": 2000.0, "rural": 5000.0})
    r = np.sqrt(zones.geometry.area / np.pi)
    assert r.iloc[0] == pytest.approx(2000, rel=0.01) and np.allclose(r.iloc[1:], 5000, rtol=0.01)
    centre = shapely.centroid(area.grid.geometry.values)
    assert shapely.distance(shapely.centroid(zones.geometry.values), centre).max() < 1e-6


def test_cell_sums_are_cached_and_shared(tiny: TinyStudy) -> None:
    area = load_study_area(read_config(tiny.write()))
    population_sum(area, area.cluster_buffers(), engine=ENGINE)
    first = len(area.cache["cell-sums:pop"])
    population_sum(area, area.grid, engine=ENGINE)
    grown = area.cache["cell-sums:pop"]
    assert len(grown) > first and grown.index.is_unique


def test_other_rasters_get_band_statistics(tiny: TinyStudy) -> None:
    """A raster without a dedicated block (elevation) still becomes features."""
    from povertymap.features.other_rasters import OtherRasterFeatures

    write_tif(
        tiny.root / "elevation.tif",
        np.full((28, 50), 1200.0, dtype="float32"),
        crs=UTM,
        transform=from_origin(719000, 9338000, 500, 500),
    )
    config = tiny.config()
    config["rasters"]["elevation"] = {"path": "elevation.tif", "bands": ["metres"]}
    area = load_study_area(read_config(tiny.write(config)))
    feats = OtherRasterFeatures().transform(area, area.cluster_buffers(), engine=ENGINE)
    assert list(feats.columns) == ["rast_elevation_metres_mean", "rast_elevation_metres_std"]
    assert np.allclose(feats["rast_elevation_metres_mean"], 1200.0)
    # spread from moments (E[x²] - E[x]²): exact up to rounding at this magnitude
    assert np.allclose(feats["rast_elevation_metres_std"], 0.0, atol=1e-3)


def test_kernel_weights_equal_polygon_overlaps_for_cell_centred_disks() -> None:
    """The one-kernel-per-radius shares of map neighbourhoods are the polygon overlaps."""
    from povertymap.features.zonal import zone_weights

    size = 1000.0
    ix, iy = np.meshgrid(np.arange(700, 712), np.arange(9300, 9310))
    centres = gpd.points_from_xy((ix.ravel() + 0.5) * size, (iy.ravel() + 0.5) * size, crs=UTM)
    radius = np.where(np.arange(ix.size) % 3 == 0, 2000.0, 5000.0)
    radius[5] = 1234.5  # a radius that is no multiple of the cell size
    disks = gpd.GeoDataFrame(
        {"radius_m": radius}, geometry=shapely.buffer(centres, radius, quad_segs=16), crs=UTM
    )
    # a cluster buffer off the cell centres goes the polygon way, in the same matrix
    off = gpd.GeoDataFrame(
        {"radius_m": [5000.0]},
        geometry=[shapely.Point(705_321.0, 9_304_777.0).buffer(5000.0, quad_segs=16)],
        crs=UTM,
    )
    zones = pd.concat([disks, off], ignore_index=True)
    cells = cells_under(zones, size)
    fast = zone_weights(zones, cells, size).toarray()
    slow = overlap_weights(zones, cells).toarray()
    assert fast.shape == slow.shape == (len(zones), len(cells))
    assert np.allclose(fast, slow, rtol=0, atol=1e-9)
    # each disk's shares add up to its area in cells (a 64-gon, a little under pi r²)
    area = shapely.area(zones.geometry.values) / size**2
    assert np.allclose(fast.sum(axis=1), area, rtol=1e-9)
