"""Writers of the formats real data comes in: what they write reads back, byte-stable."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from povertymap.errors import InputError
from povertymap.io.exchange import (
    write_gpkg_layers,
    write_osm_xml,
    write_shapefile,
    write_stata,
)
from povertymap.io.vector import osm_tag, read_vector


@pytest.fixture
def layers() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    pois = gpd.GeoDataFrame(
        {"amenity": ["school", None, 'a "quoted" & <odd> name']},
        geometry=shapely.points([35.01, 35.02, 35.03], [-6.01, -6.02, -6.03]),
        crs=4326,
    ).to_crs("EPSG:32736")
    roads = gpd.GeoDataFrame(
        {"highway": ["primary", "track"], "surface": ["asphalt", None]},
        geometry=[
            shapely.LineString([(35.0, -6.0), (35.1, -6.0), (35.1, -6.05)]),
            shapely.MultiLineString(
                [[(35.0, -6.1), (35.05, -6.1)], [(35.06, -6.1), (35.08, -6.1)]]
            ),
        ],
        crs=4326,
    )
    return pois, roads


def test_osm_xml_reads_back_through_the_osm_driver(
    tmp_path: Path, layers: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]
) -> None:
    pois, roads = layers
    path = write_osm_xml(
        tmp_path / "x.osm", points=pois, lines=roads, point_tags=["amenity"],
        line_tags=["highway", "surface"],
    )  # fmt: skip
    points = read_vector(path, layer="points")
    # the untagged point is an anonymous node, not a feature of the points layer
    assert osm_tag(points["other_tags"], "amenity").tolist() == [
        "school", 'a "quoted" & <odd> name',
    ]  # fmt: skip
    np.testing.assert_allclose(
        shapely.get_coordinates(points.geometry.values), [[35.01, -6.01], [35.03, -6.03]],
        atol=1e-7,
    )  # fmt: skip
    lines = read_vector(path, layer="lines")
    assert list(lines["highway"]) == ["primary", "track", "track"]  # one way per part
    assert lines["other_tags"].tolist() == ['"surface"=>"asphalt"', None, None]
    np.testing.assert_allclose(lines.geometry.length.sum(), roads.geometry.length.sum())
    first = path.read_bytes()
    write_osm_xml(path, points=pois, lines=roads, point_tags=["amenity"], line_tags=["highway"])
    assert path.read_bytes() != first  # fewer tags
    write_osm_xml(
        path, points=pois, lines=roads, point_tags=["amenity"], line_tags=["highway", "surface"]
    )
    assert path.read_bytes() == first
    with pytest.raises(InputError, match="tag column 'name' is not in the layer"):
        write_osm_xml(tmp_path / "y.osm", points=pois, point_tags=["name"])


def test_geopackage_layers_in_order_and_byte_stable(tmp_path: Path) -> None:
    units = gpd.GeoDataFrame(
        {"GID_2": ["a", "b"], "GID_1": ["r", "r"]},
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)],
        crs=4326,
    )
    top = units.dissolve(by="GID_1", as_index=False)[["GID_1", "geometry"]]
    one = write_gpkg_layers({"ADM_ADM_1": top, "ADM_ADM_2": units}, tmp_path / "a.gpkg")
    two = write_gpkg_layers({"ADM_ADM_1": top, "ADM_ADM_2": units}, tmp_path / "b.gpkg")
    assert pyogrio.list_layers(one).tolist() == [
        ["ADM_ADM_1", "MultiPolygon"], ["ADM_ADM_2", "MultiPolygon"],
    ]  # fmt: skip
    assert one.read_bytes() == two.read_bytes()
    assert pyogrio.get_gdal_config_option("OGR_CURRENT_DATE") is None  # restored
    assert list(read_vector(one, layer="ADM_ADM_2")["GID_2"]) == ["a", "b"]


def test_shapefile_in_its_folder(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame(
        {"DHSCLUST": [1.0, 2.0], "URBAN_RURA": ["U", "R"]},
        geometry=shapely.points([35.0, 35.1], [-6.0, -6.1]),
        crs=4326,
    )
    shp = write_shapefile(gdf, tmp_path / "XXGE81FL")
    assert shp == tmp_path / "XXGE81FL" / "XXGE81FL.shp"
    assert {p.suffix for p in shp.parent.iterdir()} >= {".shp", ".dbf", ".shx", ".prj", ".cpg"}
    assert list(read_vector(shp)["URBAN_RURA"]) == ["U", "R"]
    with pytest.raises(InputError, match="longer than the 10 characters"):
        write_shapefile(gdf.rename(columns={"URBAN_RURA": "URBAN_RURAL"}), tmp_path / "B")


def test_stata_keeps_widths_labels_and_bytes(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "hhid": ["   1  1", "   1  2"],
            "hv001": np.array([1, 1], np.int32),
            "hv025": np.array([1, 2], np.int8),
            "hv271": [12345.5, -2000.0],
        }
    )
    labels = {"hv025": {1: "urban", 2: "rural"}}
    a = write_stata(df, tmp_path / "a.dta", value_labels=labels, variable_labels={"hv001": "c"})
    b = write_stata(df, tmp_path / "b.dta", value_labels=labels, variable_labels={"hv001": "c"})
    assert a.read_bytes() == b.read_bytes()
    codes = pd.read_stata(a, convert_categoricals=False)
    assert codes.dtypes.to_dict() == {
        "hhid": object, "hv001": np.int32, "hv025": np.int8, "hv271": np.float64,
    }  # fmt: skip
    assert list(pd.read_stata(a)["hv025"]) == ["urban", "rural"]
