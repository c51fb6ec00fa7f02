"""Vector layers in every supported format, CRS required, geometries checked."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Point, Polygon, box

from povertymap.errors import InputWarning, VectorError
from povertymap.io.vector import read_vector


@pytest.fixture
def squares() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"id": ["a", "b"]}, geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1)], crs="EPSG:32736"
    )


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".parquet", ".shp"])
def test_formats_round_trip(tmp_path: Path, squares: gpd.GeoDataFrame, suffix: str) -> None:
    path = tmp_path / f"layer{suffix}"
    if suffix == ".parquet":
        squares.to_parquet(path)
    else:
        squares.to_file(path)
    gdf = read_vector(path)
    assert gdf.crs.to_epsg() == 32736
    assert list(gdf["id"]) == ["a", "b"]
    assert gdf.geometry.area.sum() == pytest.approx(2.0)


def test_missing_crs_is_refused(tmp_path: Path, squares: gpd.GeoDataFrame) -> None:
    path = tmp_path / "nocrs.gpkg"
    squares.set_crs(None, allow_override=True).to_file(path)
    with pytest.raises(VectorError, match="no CRS.*Fix: assign"):
        read_vector(path)


def test_null_and_empty_geometries_are_refused(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"id": [1, 2, 3]}, geometry=[Point(0, 0), None, Polygon()], crs=4326)
    path = tmp_path / "holes.gpkg"
    gdf.to_file(path)
    with pytest.raises(VectorError, match=r"2 feature\(s\) have a null or empty geometry") as info:
        read_vector(path)
    assert "feature(s) 1, 2" in str(info.value)


def test_invalid_polygon_repaired_keeps_polygons(tmp_path: Path) -> None:
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    path = tmp_path / "bowtie.geojson"
    gpd.GeoDataFrame({"id": [1]}, geometry=[bowtie], crs=4326).to_file(path)
    with pytest.warns(InputWarning, match="repaired 1 invalid geometry"):
        gdf = read_vector(path)
    geom = gdf.geometry.iloc[0]
    assert geom.is_valid and geom.geom_type in ("Polygon", "MultiPolygon")
    assert geom.area == pytest.approx(2.0)  # two triangles of area 1


def test_not_a_vector_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.gpkg"
    path.write_bytes(b"\x00\x01 not a geopackage")
    with pytest.raises(VectorError, match="junk.gpkg: cannot be read"):
        read_vector(path)
