"""povertymap.io.writers: windowed COGs, vectors, tables and documents, written atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import yaml
from affine import Affine

from povertymap.errors import InputError, RunDirError
from povertymap.io.writers import (
    RasterWriter,
    atomic_directory,
    write_json,
    write_table,
    write_vector,
    write_yaml,
)

T = Affine(20.0, 0.0, 700_000.0, 0.0, -20.0, 9_300_000.0)


def _write_blocks(path: Path, data: np.ndarray, block: int = 300, **kwargs: object) -> None:
    count, h, w = data.shape
    with RasterWriter(
        path, width=w, height=h, count=count, dtype=data.dtype.name, crs="EPSG:32736",
        transform=T, **kwargs,  # type: ignore[arg-type]
    ) as out:  # fmt: skip
        for r in range(h - block, -block, -block):  # any order, unaligned with tiles
            for c in range(0, w, block):
                r0 = max(r, 0)
                out.write(data[:, r0 : r + block, c : c + block], (r0, c))


def test_raster_writer_makes_a_cog_from_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 255, (4, 1100, 1300)).astype(np.uint8)
    path = tmp_path / "img.tif"
    _write_blocks(path, data, nodata=0, band_names=["red", "green", "blue", "nir"],
                  tags={"season": "wet"})  # fmt: skip
    with rasterio.open(path) as src:
        assert np.array_equal(src.read(), data)
        assert src.descriptions == ("red", "green", "blue", "nir")
        assert src.nodata == 0 and src.crs.to_epsg() == 32736 and src.transform == T
        assert src.tags()["season"] == "wet"
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["compress"] == "deflate" and src.profile["tiled"]
        assert src.block_shapes[0] == (512, 512)
        assert src.overviews(1) == [2, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif"]  # no staging leftovers


def test_raster_writer_is_deterministic_and_keeps_nodata(tmp_path: Path) -> None:
    data = np.full((1, 600, 700), -99999.0, np.float32)
    data[0, 100:500, 50:650] = np.linspace(0, 5, 400 * 600, dtype=np.float32).reshape(400, 600)
    digests = []
    for name in ("a.tif", "b.tif"):
        _write_blocks(tmp_path / name, data, nodata=-99999.0, units=["people"])
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    with rasterio.open(tmp_path / "a.tif") as src:
        assert src.nodata == -99999.0 and src.units == ("people",)
        assert np.array_equal(src.read(1), data[0])
        overview = src.read(1, out_shape=(300, 350))
        valid = overview[overview != -99999.0]
        assert valid.size and valid.max() <= 5.0  # nodata not averaged into the overview


def test_raster_writer_leaves_nothing_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "x.tif"
    with pytest.raises(RuntimeError, match="boom"):  # noqa: SIM117
        with RasterWriter(path, width=10, height=10, count=1, dtype="uint8",
                          crs="EPSG:32736", transform=T) as out:  # fmt: skip
            out.write(np.ones((10, 10), np.uint8), (0, 0))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_raster_writer_refuses_bad_blocks(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="band names"):
        RasterWriter(tmp_path / "x.tif", width=4, height=4, count=2, dtype="uint8",
                     crs="EPSG:32736", transform=T, band_names=["a"])  # fmt: skip
    with RasterWriter(tmp_path / "x.tif", width=4, height=4, count=1, dtype="uint8",
                      crs="EPSG:32736", transform=T) as out:  # fmt: skip
        with pytest.raises(InputError, match="does not fit"):
            out.write(np.ones((3, 3), np.uint8), (2, 2))
        with pytest.raises(InputError, match="block of shape"):
            out.write(np.ones((2, 2, 2), np.uint8), (0, 0))
        out.write(np.ones((4, 4), np.uint8), (0, 0))


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".parquet"])
def test_write_vector_by_suffix(tmp_path: Path, suffix: str) -> None:
    gdf = gpd.GeoDataFrame(
        {"highway": ["primary", "track"]},
        geometry=[shapely.LineString([(35, -6), (35.1, -6)]), shapely.Point(35, -6.1)],
        crs="EPSG:4326",
    )
    path = write_vector(gdf, tmp_path / f"roads{suffix}")
    back = gpd.read_parquet(path) if suffix == ".parquet" else gpd.read_file(path)
    assert back.crs.to_epsg() == 4326
    assert back["highway"].tolist() == ["primary", "track"]
    assert back.geometry.geom_equals(gdf.geometry).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"roads{suffix}"]
    if suffix == ".geojson":
        assert json.loads(path.read_text())["name"] == "roads"


def test_write_vector_refuses_missing_crs_and_unknown_suffix(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.Point(0, 0)])
    with pytest.raises(InputError, match="no CRS"):
        write_vector(gdf, tmp_path / "a.geojson")
    with pytest.raises(InputError, match="unknown vector suffix"):
        write_vector(gdf.set_crs("EPSG:4326"), tmp_path / "a.shp")


def test_tables_and_documents_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": [1, 2], "x": [0.1, 1 / 3], "s": ["a", "b"]})
    pd.testing.assert_frame_equal(pd.read_csv(write_table(df, tmp_path / "t.csv")), df)
    pd.testing.assert_frame_equal(pd.read_parquet(write_table(df, tmp_path / "t.parquet")), df)
    with pytest.raises(InputError, match="unknown table suffix"):
        write_table(df, tmp_path / "t.xlsx")
    doc = {"name": "demo", "grid": {"cell_size_m": np.float64(1000.0)}, "bands": ("r", "g")}
    assert yaml.safe_load(write_yaml(doc, tmp_path / "s.yaml").read_text()) == {
        "name": "demo", "grid": {"cell_size_m": 1000.0}, "bands": ["r", "g"],
    }  # fmt: skip
    assert json.loads(write_json({"n": np.int64(3)}, tmp_path / "w.json").read_text()) == {"n": 3}
    assert (tmp_path / "s.yaml").stat().st_mode & 0o644 == 0o644  # not mkstemp's 0600


def test_atomic_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(RunDirError, match="not empty"), atomic_directory(out):
        pass
    with pytest.raises(ValueError, match="fail"), atomic_directory(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
        raise ValueError("fail")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    with atomic_directory(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
