"""The fast paths of the feature kernels give the numbers of the direct formulations."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS
from scipy import sparse

from povertymap.errors import ConfigError
from povertymap.features.build import build_cell_features, neighbourhoods
from povertymap.features.nightlights import HISTOGRAM_EDGES, histogram_quantile
from povertymap.features.zonal import _sparse_max, cells_under, overlap_weights, zone_weights
from povertymap.grid import make_grid
from povertymap.models.deep import zones as Z

UTM = "EPSG:32736"


def _quantile_loop(cdf: np.ndarray, q: float, edges: tuple[float, ...]) -> np.ndarray:
    """The row-by-row definition (searchsorted on the cumulative shares)."""
    x = np.concatenate([[0.0], np.asarray(edges)])
    f = np.column_stack([np.zeros(len(cdf)), np.maximum.accumulate(cdf, axis=1)])
    out = np.full(len(cdf), np.nan)
    for i, row in enumerate(f):
        if not np.all(np.isfinite(row)):
            continue
        k = int(np.searchsorted(row, q, side="left"))
        if k >= len(x):
            out[i] = x[-1]
        elif k == 0 or row[k] == row[k - 1]:
            out[i] = x[k]
        else:
            out[i] = x[k - 1] + (q - row[k - 1]) / (row[k] - row[k - 1]) * (x[k] - x[k - 1])
    return out


def test_histogram_quantile_equals_the_row_loop() -> None:
    rng = np.random.default_rng(0)
    cdf = rng.random((3000, len(HISTOGRAM_EDGES)))
    cdf[::7] = np.nan
    cdf[::11] = 0.05  # never reaches the quantile
    cdf[::13, 5:] = 1.0
    cdf[::17] = np.round(cdf[::17], 1)  # flat steps
    cdf[::19, 3] = np.nan
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        got = histogram_quantile(cdf, q, HISTOGRAM_EDGES)
        assert np.array_equal(got, _quantile_loop(cdf, q, HISTOGRAM_EDGES), equal_nan=True)
    assert histogram_quantile(np.array([[0.2, 0.6, 1.0]]), 0.4, (1.0, 2.0, 4.0))[0] == 1.5


def test_sparse_max_equals_the_zone_loop() -> None:
    rng = np.random.default_rng(1)
    w = sparse.random(200, 80, density=0.05, random_state=2, format="csr")
    values = rng.normal(size=80)
    values[::5] = np.nan
    expected = np.full(200, np.nan)
    for z in range(200):
        v = values[w.indices[w.indptr[z] : w.indptr[z + 1]]]
        v = v[np.isfinite(v)]
        if v.size:
            expected[z] = v.max()
    got = _sparse_max(w, values)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.isnan(got[np.diff(w.indptr) == 0]).all()


def test_zone_weights_of_the_grid_cells_themselves_are_the_identity() -> None:
    aoi = shapely.Point(700_000, 9_300_000).buffer(6_000)
    grid = make_grid(aoi, CRS.from_user_input(UTM), 1000.0)
    cells = cells_under(grid, 1000.0)
    fast = zone_weights(grid, cells, 1000.0).toarray()
    slow = overlap_weights(grid, cells).toarray()
    assert np.array_equal(fast, slow)
    assert (fast.sum(axis=1) == 1.0).all()


def test_embedding_weights_of_centred_disks_equal_polygon_overlaps() -> None:
    """Neighbourhood disks read off one kernel per radius; cluster buffers (off-centre)
    and squares go through the polygon path; same pairs, same order, same areas."""
    rng = np.random.default_rng(4)
    ix = rng.integers(690, 720, 300)
    iy = rng.integers(9290, 9320, 300)
    disks = shapely.buffer(
        shapely.points((ix + 0.5) * 1000, (iy + 0.5) * 1000),
        np.where(rng.random(300) < 0.3, 2000.0, 5000.0),
        quad_segs=16,
    )
    buffers = shapely.buffer(
        shapely.points(rng.uniform(6.9e5, 7.2e5, 40), rng.uniform(9.29e6, 9.32e6, 40)),
        5000.0,
        quad_segs=16,
    )
    squares = shapely.box(700_000, 9_300_000, 701_000, 9_301_000)
    geoms = np.concatenate([disks[:150], buffers, [squares], disks[150:]])
    radius = Z.centred_disk_radius(geoms, 1000.0)
    assert np.isfinite(radius).sum() == 300
    fast = Z.overlap_weights(geoms, 1000.0)
    slow = Z._polygon_overlaps(geoms, 1000.0)
    for a, b in zip(fast[:3], slow[:3], strict=True):
        assert np.array_equal(a, b)
    np.testing.assert_allclose(fast[3], slow[3], rtol=1e-10)


def test_cell_features_by_blocks_equal_one_pass() -> None:
    """Row bands of cells give the table of the whole grid (features are per zone)."""

    class Area:
        def __init__(self, grid: gpd.GeoDataFrame) -> None:
            self.grid = grid

    from povertymap.features.base import FeatureBlock

    class Centroid(FeatureBlock):
        name = "c"
        description = "zone centroid and area"

        def is_available(self, area: object) -> bool:
            return True

        def transform(self, area, zones, *, engine, progress=None):  # type: ignore[no-untyped-def]
            xy = shapely.get_coordinates(shapely.centroid(zones.geometry.values))
            return pd.DataFrame(
                {"c_x": xy[:, 0], "c_area": zones.geometry.area.to_numpy()}, index=zones.index
            )

    grid = make_grid(
        shapely.Point(700_000, 9_300_000).buffer(8_000), CRS.from_user_input(UTM), 1000.0
    )
    urban = pd.Series(np.arange(len(grid)) % 3 == 0, index=grid.index)
    radii = {"urban": 2000.0, "rural": 5000.0}
    area = Area(grid)
    whole = build_cell_features(
        [Centroid()],
        area,
        urban,
        radii,
        engine=None,
        cells_per_block=10**6,  # type: ignore[arg-type]
    )
    bands = build_cell_features(
        [Centroid()],
        area,
        urban,
        radii,
        engine=None,
        cells_per_block=17,  # type: ignore[arg-type]
    )
    pd.testing.assert_frame_equal(whole, bands)
    zones = neighbourhoods(grid, urban, radii)
    assert whole.index.equals(grid.index)
    np.testing.assert_allclose(whole["c_area"], zones.geometry.area)
    with pytest.raises(ConfigError, match="cells_per_block"):
        build_cell_features([Centroid()], area, urban, radii, engine=None, cells_per_block=0)  # type: ignore[arg-type]


def test_grid_fractions_equal_the_intersection_everywhere() -> None:
    aoi = shapely.Point(700_000, 9_300_000).buffer(20_000, quad_segs=64)
    aoi = aoi.difference(shapely.Point(705_000, 9_300_000).buffer(4_000))
    grid = make_grid(aoi, CRS.from_user_input(UTM), 1000.0)
    direct = np.clip(shapely.area(shapely.intersection(grid.geometry.values, aoi)) / 1e6, 0, 1)
    assert np.array_equal(grid["aoi_fraction"].to_numpy(), direct)
    assert 0 < (grid["aoi_fraction"] < 1).sum() < len(grid) / 2
