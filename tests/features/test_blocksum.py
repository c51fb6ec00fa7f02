"""Block sums over rectangles equal exactextract's coverage-weighted statistics."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from pyproj import CRS
from rasterio.transform import from_origin

from builders import write_tif
from povertymap.engine import LocalEngine
from povertymap.errors import RasterError
from povertymap.features.blocksum import axis_fractions, rectangle_mask, rectangle_sums
from povertymap.features.zonal import ZonalSpec, cells_under, zonal_stats
from povertymap.io.raster import open_raster

UTM = "EPSG:32736"
WKT = CRS.from_user_input(UTM).to_wkt()


def _layers(rng: np.random.Generator, rows: int, cols: int) -> dict[str, np.ndarray]:
    value = rng.gamma(2.0, 3.0, size=(rows, cols))
    value[rng.random((rows, cols)) < 0.1] = np.nan  # nodata scattered
    value[:, :3] = np.nan  # and a strip of it
    return {"v": value, "dark": np.where(np.isfinite(value), (value < 4).astype(float), np.nan)}


def _exactextract(
    layers: dict[str, np.ndarray], x0: float, y_top: float, res: float, boxes: np.ndarray
) -> pd.DataFrame:
    rows, cols = next(iter(layers.values())).shape
    rasters = [
        NumPyRasterSource(
            v, x0, y_top - rows * res, x0 + cols * res, y_top, nodata=np.nan, name=k, srs_wkt=WKT
        )
        for k, v in layers.items()
    ]
    polys = gpd.GeoDataFrame(geometry=shapely.box(*boxes.T), crs=UTM)
    table = exact_extract(rasters, polys, ["sum", "count"], output="pandas")
    if len(rasters) == 1:  # exactextract leaves out the layer name for a single raster
        table.columns = [f"{rasters[0].name()}_{c}" for c in table.columns]
    table["v_max"] = exact_extract(rasters[0], polys, ["max"], output="pandas")["max"]
    return table


def _read(path: Path) -> tuple[np.ndarray, float, float]:
    """The first band of a GeoTIFF as float64 (NaN for nodata) and its top-left corner."""
    with rasterio.open(path) as ds:
        values = np.ma.filled(ds.read(1, masked=True).astype(float), np.nan)
        return values, ds.transform.c, ds.transform.f


def _brute_force(
    layers: dict[str, np.ndarray], x0: float, y_top: float, res: float, boxes: np.ndarray
) -> pd.DataFrame:
    """The float64 definition, pixel by pixel: coverage = overlap area / pixel area."""
    rows, cols = next(iter(layers.values())).shape
    px = x0 + res * np.arange(cols + 1)
    py = y_top - res * np.arange(rows + 1)
    out: dict[str, list[float]] = {}
    for xmin, ymin, xmax, ymax in boxes:
        fx = np.clip(np.minimum(xmax, px[1:]) - np.maximum(xmin, px[:-1]), 0, None) / res
        fy = np.clip(np.minimum(ymax, py[:-1]) - np.maximum(ymin, py[1:]), 0, None) / res
        cover = np.outer(fy, fx)
        for name, v in layers.items():
            ok = np.isfinite(v)
            out.setdefault(f"{name}_sum", []).append(float((cover * np.where(ok, v, 0)).sum()))
            out.setdefault(f"{name}_count", []).append(float((cover * ok).sum()))
    return pd.DataFrame(out)


@pytest.mark.parametrize(
    ("cell", "shift", "rtol"),
    [
        (1000.0, 0.0, 1e-9),  # cells aligned to a 100 m raster: 10 x 10 pixels each
        (1000.0, 37.5, 1e-9),  # misaligned: fractional pixels on every edge
        (250.0, 12.5, 1e-9),  # cells 2.5 pixels wide, misaligned
        # cells finer than the raster (0.6 pixel): coverage 0.6 is not a float32, and
        # exactextract keeps coverage fractions in float32 (agreement 1e-7, not better)
        (60.0, 0.0, 1e-7),
    ],
)
def test_grid_cell_sums_equal_exactextract(cell: float, shift: float, rtol: float) -> None:
    rng = np.random.default_rng(3)
    res, rows, cols = 100.0, 64, 80
    x0, y_top = 700_000.0 + shift, 9_300_000.0 - shift
    layers = _layers(rng, rows, cols)
    # every grid cell fully inside the raster
    ix = np.arange(int(np.ceil(x0 / cell)), int(np.floor((x0 + cols * res) / cell)))
    iy = np.arange(int(np.ceil((y_top - rows * res) / cell)), int(np.floor(y_top / cell)))
    gx, gy = (a.ravel() for a in np.meshgrid(ix[::3], iy[::2]))
    boxes = np.column_stack([gx * cell, gy * cell, (gx + 1) * cell, (gy + 1) * cell])
    ours = rectangle_sums(layers, from_origin(x0, y_top, res, res), boxes, max_layers=("v",))
    ref = _exactextract(layers, x0, y_top, res, boxes)
    assert list(ours.columns) == list(ref.columns)
    assert len(ours) > 8 and (ours["v_count"] > 0).mean() > 0.8
    for column in ref.columns:
        np.testing.assert_allclose(ours[column], ref[column], rtol=rtol, atol=1e-9)
    exact = _brute_force(layers, x0, y_top, res, boxes)
    for column in exact.columns:
        np.testing.assert_allclose(ours[column], exact[column], rtol=1e-12, atol=1e-12)


def test_arbitrary_rectangles_and_empty_ones_equal_exactextract() -> None:
    """Partly covered pixels at any offset: exactextract keeps coverage fractions in
    float32, so it agrees to 1e-7 (relative); the block sums are exact in float64."""
    rng = np.random.default_rng(5)
    res, rows, cols = 30.0, 40, 50
    x0, y_top = 500_000.0, 9_000_000.0
    layers = _layers(rng, rows, cols)
    lo = rng.uniform([x0, y_top - rows * res], [x0 + cols * res, y_top], size=(40, 2))
    size = rng.uniform(1.0, 400.0, size=(40, 2))
    hi = np.minimum(lo + size, [x0 + cols * res, y_top])
    boxes = np.column_stack([lo, hi])
    boxes[0] = [x0, y_top - 10 * res, x0 + 2 * res, y_top]  # all in the nodata strip
    ours = rectangle_sums(layers, from_origin(x0, y_top, res, res), boxes, max_layers=("v",))
    ref = _exactextract(layers, x0, y_top, res, boxes)
    assert ours.loc[0, "v_count"] == 0 and np.isnan(ours.loc[0, "v_max"])
    for column in ref.columns:
        np.testing.assert_allclose(ours[column], ref[column], rtol=1e-7, atol=1e-9)
    ones = rectangle_sums({"one": np.ones((rows, cols))}, from_origin(x0, y_top, res, res), boxes)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / res**2
    np.testing.assert_allclose(ones["one_sum"], area, rtol=1e-12)


def test_axis_fractions_by_hand() -> None:
    f = axis_fractions(np.array([0.5, 2.0, -1.0]), np.array([2.25, 2.0, 0.5]), 4).toarray()
    np.testing.assert_allclose(f[0], [0.5, 1.0, 0.25, 0.0])
    np.testing.assert_allclose(f[1], 0.0)  # an empty interval covers nothing
    np.testing.assert_allclose(f[2], [0.5, 0.0, 0.0, 0.0])  # outside the window: dropped
    with pytest.raises(ValueError, match="ends before"):
        axis_fractions(np.array([1.0]), np.array([0.0]), 4)


def test_rectangle_mask_finds_boxes_only() -> None:
    geoms = np.array(
        [
            shapely.box(0, 0, 10, 5),
            shapely.Polygon([(0, 0), (10, 0), (10, 5), (5, 5), (0, 5)]),  # box, extra vertex
            shapely.Point(5, 5).buffer(3),
            shapely.Polygon([(0, 0), (10, 0), (10, 5)]),
            shapely.box(0, 0, 10, 5).difference(shapely.box(2, 2, 3, 3)),  # a hole
        ]
    )
    assert rectangle_mask(geoms).tolist() == [True, True, False, False, False]


def test_rectangle_sums_refuse_a_south_up_grid() -> None:
    with pytest.raises(RasterError, match="north-up"):
        rectangle_sums(
            {"v": np.ones((2, 2))}, from_origin(0, 0, 1, -1), np.array([[0.0, 0.0, 1.0, 1.0]])
        )


def test_zonal_stats_mix_blocks_and_exactextract(tmp_path: Path) -> None:
    """Grid cells (blocks), a cell cut by a border and a disk (exactextract) in one call
    give what exactextract gives for each alone."""
    rng = np.random.default_rng(11)
    data = rng.gamma(2.0, 3.0, size=(60, 60)).astype("float32")
    data[10:14, 20:30] = -1  # nodata
    path = write_tif(
        tmp_path / "r.tif",
        data,
        crs=UTM,
        transform=from_origin(700_025, 9_300_000, 100, 100),  # a quarter pixel off
        nodata=-1,
    )
    src = open_raster(path)
    disk = shapely.Point(702_500, 9_297_500).buffer(900)
    cells = cells_under(gpd.GeoDataFrame(geometry=[disk], crs=UTM), 1000.0)
    cut = shapely.intersection(cells.geometry.values[0], disk)
    zones = gpd.GeoDataFrame(
        geometry=[*cells.geometry.values, cut, disk],
        index=pd.Index([*cells.index, "cut", "disk"]),
        crs=UTM,
    )
    spec = ZonalSpec(
        layers=lambda d: {"v": np.ma.filled(d[0].astype(float), np.nan)}, max_layers=("v",)
    )
    out = zonal_stats(src, zones, spec, engine=LocalEngine())
    values, x0, y_top = _read(path)
    ref = _exactextract({"v": values}, x0, y_top, 100.0, shapely.bounds(zones.geometry.values))
    boxes = rectangle_mask(zones.geometry.values)
    assert boxes.sum() == len(cells)  # the cells went through the block sums
    for column in ("v_sum", "v_count", "v_max"):
        np.testing.assert_allclose(out[column].to_numpy()[boxes], ref[column][boxes], rtol=1e-9)
    # the non-rectangles against exactextract on their own polygons
    polys = gpd.GeoDataFrame(geometry=zones.geometry.values[~boxes], crs=UTM)
    rows, cols = values.shape
    raster = NumPyRasterSource(
        values, x0, y_top - rows * 100, x0 + cols * 100, y_top, nodata=np.nan, srs_wkt=WKT
    )
    exact = exact_extract(raster, polys, ["sum", "count"], output="pandas")
    np.testing.assert_allclose(out.loc[["cut", "disk"], "v_sum"], exact["sum"], rtol=1e-9)
    np.testing.assert_allclose(out.loc[["cut", "disk"], "v_count"], exact["count"], rtol=1e-9)
