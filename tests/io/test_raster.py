"""Raster sources: nodata resolution, sentinels, windows in native and warped grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS
from rasterio.transform import from_origin

from builders import write_tif
from povertymap.errors import InputNotFoundError, RasterError
from povertymap.io.raster import open_raster


@pytest.fixture
def ramp(tmp_path: Path) -> Path:
    """16 x 16 raster in UTM 36S, 100 m pixels, value = row * 16 + col."""
    data = np.arange(256, dtype="float32").reshape(16, 16)
    return write_tif(
        tmp_path / "ramp.tif",
        data,
        crs="EPSG:32736",
        transform=from_origin(700000, 9300000, 100, 100),
        nodata=-1.0,
        descriptions=["value"],
    )


def test_metadata(ramp: Path) -> None:
    src = open_raster(ramp)
    assert src.crs == CRS.from_epsg(32736)
    assert (src.width, src.height, src.count) == (16, 16, 1)
    assert src.res == (100.0, 100.0)
    assert src.bounds == (700000.0, 9298400.0, 701600.0, 9300000.0)
    assert src.nodata == -1.0 and src.band_names == ("value",)


def test_window_read_is_exact(ramp: Path) -> None:
    src = open_raster(ramp)
    with src.reader() as r:
        w = r.read((700200.0, 9299500.0, 700500.0, 9299800.0))  # cols 2-4, rows 2-4
    assert w.data.shape == (1, 3, 3)
    np.testing.assert_array_equal(w.data[0], np.arange(256).reshape(16, 16)[2:5, 2:5])
    assert w.bounds == (700200.0, 9299500.0, 700500.0, 9299800.0)


def test_window_past_the_edge_is_masked(ramp: Path) -> None:
    src = open_raster(ramp)
    with src.reader() as r:
        w = r.read((701400.0, 9299800.0, 701800.0, 9300200.0))  # 2 cols in, 2 out; 2 rows out
    assert w.data.shape == (1, 4, 4)
    assert w.data.mask[0, :2].all() and w.data.mask[0, :, 2:].all()
    assert list(w.data[0, 2, :2]) == [14.0, 15.0]


def test_nodata_from_file_is_masked(tmp_path: Path) -> None:
    data = np.ones((4, 4), "float32")
    data[0, 0] = -99999
    path = write_tif(
        tmp_path / "p.tif",
        data,
        crs="EPSG:32736",
        transform=from_origin(0, 400, 100, 100),
        nodata=-99999,
    )
    with open_raster(path).reader() as r:
        w = r.read((0, 0, 400, 400))
    assert w.data.sum() == 15.0 and w.data.mask.sum() == 1


def test_config_nodata_overrides_an_undeclared_sentinel(tmp_path: Path) -> None:
    data = np.ones((4, 4), "float32")
    data[0, :] = -99999
    path = write_tif(
        tmp_path / "p.tif", data, crs="EPSG:32736", transform=from_origin(0, 400, 100, 100)
    )
    with pytest.raises(RasterError, match="-99999"):
        open_raster(path)
    with open_raster(path, nodata=-99999).reader() as r:
        assert r.read((0, 0, 400, 400)).data.sum() == 12.0
    with open_raster(path, nodata="none").reader() as r:  # the user says it is data
        assert r.read((0, 0, 400, 400)).data.sum() == 12.0 - 4 * 99999


def test_sentinel_found_in_a_window_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sentinel missed by the decimated sample at open is still refused when read."""
    import povertymap.io.raster as raster

    monkeypatch.setattr(raster, "_SAMPLE_PIXELS", 2)  # a 2 x 2 sample misses one pixel
    data = np.ones((64, 8), "float32")
    data[33, 3] = -9999.0
    path = write_tif(tmp_path / "p.tif", data, crs="EPSG:32736", transform=from_origin(0, 64, 1, 1))
    src = open_raster(path)
    with src.reader() as r, pytest.raises(RasterError, match="band 1"):
        r.read((0, 0, 8, 64))


def test_float_nan_and_infinite_values_are_masked(tmp_path: Path) -> None:
    data = np.array([[1.0, np.nan], [np.inf, 2.0]], "float32")
    path = write_tif(tmp_path / "p.tif", data, crs="EPSG:32736", transform=from_origin(0, 2, 1, 1))
    with open_raster(path).reader() as r:
        w = r.read((0, 0, 2, 2))
    assert w.data.sum() == 3.0


def test_band_names_must_match_count(ramp: Path) -> None:
    with pytest.raises(RasterError, match="2 band names"):
        open_raster(ramp, band_names=["a", "b"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        open_raster(tmp_path / "none.tif")


def test_warped_read_to_another_crs(tmp_path: Path) -> None:
    """A lon/lat raster read in UTM keeps its values where the grids overlap."""
    data = np.zeros((40, 40), "float32")
    data[10:30, 10:30] = 5.0
    path = write_tif(
        tmp_path / "ll.tif",
        data,
        crs="EPSG:4326",
        transform=from_origin(34.9, -5.9, 0.005, 0.005),
        nodata=-1,
    )
    src = open_raster(path)
    utm = CRS.from_epsg(32736)
    with src.reader(crs=utm) as r:
        assert r.crs == utm
        # centre of the 5.0 block: lon 35.0, lat -6.0 -> (721383, 9336391) in UTM 36S
        w = r.read((721383 - 300, 9336391 - 300, 721383 + 300, 9336391 + 300))
    assert w.crs == utm
    assert np.all(w.data == 5.0)
