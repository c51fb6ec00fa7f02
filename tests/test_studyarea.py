"""StudyArea: working CRS, grid, admin assignment, cluster buffers, tables."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import CRS

from builders import TinyStudy
from povertymap.errors import InputError
from povertymap.grid import GridLayout, cell_ids, cell_index, make_grid
from povertymap.io.configfile import read_config
from povertymap.studyarea import cluster_buffers, load_study_area


def test_default_crs_is_the_utm_zone(tiny: TinyStudy) -> None:
    data = tiny.config()
    del data["crs"]
    area = load_study_area(read_config(tiny.write(data)))
    assert area.crs == CRS.from_epsg(32736)  # lon 35 E, lat 6 S: UTM zone 36 south


def test_geographic_crs_is_refused(tiny: TinyStudy) -> None:
    data = tiny.config()
    data["crs"] = "EPSG:4326"
    with pytest.raises(InputError, match="not projected in metres"):
        load_study_area(read_config(tiny.write(data)))


def test_grid_is_aligned_and_covers_the_area(tiny: TinyStudy) -> None:
    area = load_study_area(read_config(tiny.write()))
    grid = area.grid
    xmin, ymin, xmax, ymax = grid.total_bounds
    assert xmin % 1000 == 0 and ymin % 1000 == 0 and xmax % 1000 == 0 and ymax % 1000 == 0
    # the union of the cell parts inside the AOI is the AOI
    assert (grid["aoi_fraction"] * 1e6).sum() == pytest.approx(area.aoi.area, rel=1e-9)
    assert grid.index.is_unique
    assert set(grid["admin_id"]) == {"A1", "A2"}
    # cells whose centroid is in the west unit belong to it
    west = area.admin.geometry["A1"]
    inner = grid[grid["aoi_fraction"] == 1]
    assert (
        shapely.within(inner.geometry.centroid.values, west) == (inner["admin_id"] == "A1")
    ).all()


def test_make_grid_counts_analytic() -> None:
    aoi = shapely.box(250, 250, 3250, 2250)  # 3 km x 2 km offset by a quarter cell
    grid = make_grid(aoi, CRS.from_epsg(32736), 1000)
    assert len(grid) == 4 * 3
    assert grid["aoi_fraction"].sum() == pytest.approx(6.0)
    assert sorted(grid.loc["0_0":"0_0", "aoi_fraction"]) == [pytest.approx(0.5625)]
    # raster order: north row first
    assert list(grid["iy"])[:4] == [2, 2, 2, 2]


def test_cell_ids_and_layout_round_trip() -> None:
    ix, iy = cell_index(np.array([1500.0, -10.0]), np.array([2999.0, 0.0]), 1000)
    assert list(ix) == [1, -1] and list(iy) == [2, 0]
    assert list(cell_ids(ix, iy)) == ["1_2", "-1_0"]
    layout = GridLayout.of(ix, iy, 1000)
    assert (layout.width, layout.height) == (3, 3)
    rows, cols = layout.pixel(ix, iy)
    assert list(rows) == [0, 2] and list(cols) == [2, 0]
    x, y = layout.transform @ (cols[0] + 0.5, rows[0] + 0.5)
    assert (x, y) == (1500.0, 2500.0)


def test_cluster_buffers_use_dhs_radii(tiny: TinyStudy) -> None:
    area = load_study_area(read_config(tiny.write()))
    buffers = area.cluster_buffers()
    r = np.sqrt(buffers.geometry.area / np.pi)
    urban = area.clusters["urban"].to_numpy()
    assert np.allclose(r[urban], 2000, rtol=0.01) and np.allclose(r[~urban], 5000, rtol=0.01)
    no_flag = cluster_buffers(area.clusters.drop(columns="urban"))
    assert (no_flag["radius_m"] == 5000).all()


def test_table_keys_must_be_surveyed_clusters(tiny: TinyStudy) -> None:
    import pandas as pd

    pd.DataFrame({"cluster_id": ["c1", "zz"], "f": [1, 2]}).to_csv(
        tiny.root / "features.csv", index=False
    )
    with pytest.raises(InputError, match="not survey cluster ids.*'zz'"):
        load_study_area(read_config(tiny.write()))


def test_tables_are_indexed_by_cluster(tiny: TinyStudy) -> None:
    area = load_study_area(read_config(tiny.write()))
    table = area.tables[0]
    assert table.loc["c4", "f2"] == 9.0
    assert area.vectors["roads"].crs == area.crs and "class" in area.vectors["roads"]
