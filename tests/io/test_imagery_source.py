"""Imagery as it comes: radiometry defaults by data type, class masks, valid range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject

from builders import UTM, TinyStudy, write_tif
from povertymap.config import RasterConfig
from povertymap.errors import ConfigError, InputNotFoundError
from povertymap.io.configfile import read_config
from povertymap.io.raster import (
    ImagerySource,
    WindowReader,
    default_scale,
    open_imagery,
    open_raster,
    radiometry,
)

X0, Y1, RES = 720_000.0, 9_338_000.0, 50.0


def _imagery(tmp_path: Path, dtype: str = "uint16", bands: int = 4) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(1100, 3000, size=(bands, 40, 60)).astype(dtype)
    return write_tif(
        tmp_path / f"img-{dtype}-{bands}.tif",
        data,
        crs=UTM,
        transform=from_origin(X0, Y1, RES, RES),
        nodata=0,
    )


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        ("uint8", 1 / 255),
        ("uint16", 1e-4),
        ("int16", 1e-4),
        ("float32", 1.0),
        ("float64", 1.0),
        ("int32", 1.0),
    ],
)
def test_default_scale_by_data_type(dtype: str, scale: float) -> None:
    assert default_scale(dtype) == pytest.approx(scale, rel=1e-15)


def test_radiometry_from_the_config_or_the_data_type(tmp_path: Path) -> None:
    path = _imagery(tmp_path)
    plain = open_raster(path)
    assert radiometry(plain) == (1e-4, 0.0)
    assert isinstance(open_imagery(plain), ImagerySource)
    assert radiometry(open_imagery(plain)) == (1e-4, 0.0)
    # Sentinel-2 L2A from processing baseline 04.00: DN 1000 is reflectance 0
    s2 = open_imagery(plain, RasterConfig(path=path, offset=-0.1))
    assert radiometry(s2) == (1e-4, -0.1)
    np.testing.assert_allclose(s2.reflectance(np.array([1000, 3500])), [0.0, 0.25], atol=1e-12)
    # Landsat Collection 2 Level-2
    landsat = open_imagery(plain, RasterConfig(path=path, scale=2.75e-5, offset=-0.2))
    np.testing.assert_allclose(landsat.reflectance(np.array([7273, 43636])), [0.0, 1.0], atol=1e-4)
    with pytest.raises(ConfigError, match="scale"):
        open_imagery(plain, RasterConfig(path=path, scale=0.0))


def test_a_mask_band_of_the_imagery_masks_its_classes_and_is_not_a_data_band(
    tmp_path: Path,
) -> None:
    data = np.full((5, 10, 10), 2000, dtype="uint16")
    data[:4] += np.arange(4, dtype="uint16")[:, None, None]  # band b holds 2000 + b
    data[4] = 4  # SCL: vegetation
    data[4, 2:4, 5:8] = 9  # cloud, high probability
    data[4, 7, 1] = 3  # cloud shadow
    path = write_tif(
        tmp_path / "with-scl.tif", data, crs=UTM, transform=from_origin(X0, Y1, RES, RES)
    )
    cfg = RasterConfig(
        path=path,
        bands=["red", "green", "blue", "nir", "scl"],
        mask={"band": 5, "classes": [3, 8, 9, 10]},
    )
    img = open_imagery(open_raster(path, band_names=cfg.bands), cfg)
    assert img.count == 4 and img.band_names == ("red", "green", "blue", "nir")
    assert img.file_bands == (1, 2, 3, 4)
    with img.reader() as r:
        win = r.read(img.bounds)
    assert win.data.shape == (4, 10, 10)
    masked = np.ma.getmaskarray(win.data).all(axis=0)
    expected = np.zeros((10, 10), bool)
    expected[2:4, 5:8] = True
    expected[7, 1] = True
    np.testing.assert_array_equal(masked, expected)
    np.testing.assert_array_equal(np.ma.getdata(win.data)[:, 0, 0], [2000, 2001, 2002, 2003])
    # reading a subset of data bands maps them to the file's bands
    with img.reader() as r:
        nir = r.read(img.bounds, bands=[4])
    assert nir.data.shape == (1, 10, 10) and int(nir.data[0, 0, 0]) == 2003
    with pytest.raises(ConfigError, match="mask band 7"):
        open_imagery(open_raster(path), RasterConfig(path=path, mask={"band": 7}))


def test_a_separate_mask_raster_is_reprojected_onto_the_imagery_grid(tmp_path: Path) -> None:
    """An SCL layer at 100 m in UTM masks exactly the imagery pixels of its cloud (nearest
    neighbour onto the 50 m imagery grid), also through a warped read; the same layer in
    EPSG:4326 masks nearly the same pixels."""
    path = _imagery(tmp_path)
    scl = np.full((20, 30), 4, dtype="uint8")
    scl[5:10, 10:20] = 9  # 500 x 1000 m of cloud: x 721,000-722,000, y 9,336,000-9,337,500
    scl_path = write_tif(
        tmp_path / "scl.tif", scl, crs=UTM, transform=from_origin(X0, Y1, 100.0, 100.0)
    )
    cfg = RasterConfig(path=path, mask={"path": scl_path})
    img = open_imagery(open_raster(path), cfg)
    assert img.mask is not None and img.mask.source is not None
    with img.reader() as r:
        win = r.read(img.bounds)
    masked = np.ma.getmaskarray(win.data).all(axis=0)
    expected = np.zeros((40, 60), bool)
    expected[10:20, 20:40] = True  # the same ground at 50 m
    np.testing.assert_array_equal(masked, expected)
    # read warped to another CRS: the mask follows the imagery's warped grid
    with img.reader(crs="EPSG:4326") as r:
        warped = r.read(_grid_bounds(r))
        inside = np.ma.getdata(r.read(_grid_bounds(r)).data)[0] > 0
    cloudy = np.ma.getmaskarray(warped.data).all(axis=0) & inside
    assert cloudy.sum() / inside.sum() == pytest.approx(1 / 12, abs=0.01)
    # the same SCL layer delivered in EPSG:4326 (as a download might be)
    lonlat = tmp_path / "scl-4326.tif"
    _to_lonlat(scl_path, lonlat)
    img2 = open_imagery(open_raster(path), RasterConfig(path=path, mask={"path": lonlat}))
    with img2.reader() as r:
        masked2 = np.ma.getmaskarray(r.read(img2.bounds).data).all(axis=0)
    assert (masked2 == expected).mean() > 0.97  # nearest neighbour twice: edges move


def _grid_bounds(reader: WindowReader) -> tuple[float, float, float, float]:
    rows, cols = reader.shape
    x0, y0 = reader.transform @ (0, 0)
    x1, y1 = reader.transform @ (cols, rows)
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _to_lonlat(src_path: Path, dst_path: Path) -> None:
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds
        )
        profile = {**src.profile, "crs": "EPSG:4326", "transform": transform}
        profile.update(width=width, height=height)
        with rasterio.open(dst_path, "w", **profile) as dst:
            reproject(
                rasterio.band(src, 1),
                rasterio.band(dst, 1),
                dst_crs="EPSG:4326",
                resampling=Resampling.nearest,
            )


def test_pixels_outside_the_valid_reflectance_range_are_masked(tmp_path: Path) -> None:
    data = np.full((4, 6, 6), 3000, dtype="uint16")
    data[2, 1, 1] = 65000  # saturated blue: 6.4
    data[0, 4, 4] = 500  # below the offset: -0.05 with offset -0.1
    path = write_tif(tmp_path / "r.tif", data, crs=UTM, transform=from_origin(X0, Y1, RES, RES))
    cfg = RasterConfig(path=path, offset=-0.1, valid_range=(0.0, 1.5))
    img = open_imagery(open_raster(path), cfg)
    with img.reader() as r:
        masked = np.ma.getmaskarray(r.read(img.bounds).data).all(axis=0)
    assert masked.sum() == 2 and masked[1, 1] and masked[4, 4]


def test_the_config_checks_the_mask_file_and_its_keys(tmp_path: Path) -> None:
    tiny = TinyStudy(tmp_path / "t")
    _imagery(tiny.root)
    cfg = tiny.config()
    cfg["rasters"]["imagery"] = {
        "path": "img-uint16-4.tif",
        "offset": -0.1,
        "mask": {"path": "missing-scl.tif", "classes": [3, 8, 9, 10]},
    }
    with pytest.raises(InputNotFoundError, match=r"rasters\.imagery\.mask"):
        read_config(tiny.write(cfg))
    cfg["rasters"]["imagery"]["mask"] = {"classes": [9]}
    with pytest.raises(ConfigError, match="path .* or a band"):
        read_config(tiny.write(cfg))
    cfg["rasters"]["imagery"]["mask"] = {"band": 1, "clases": [9]}
    with pytest.raises(ConfigError, match="classes"):
        read_config(tiny.write(cfg))
