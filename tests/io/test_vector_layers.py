"""Vector layers as real users have them: a GADM GeoPackage layer, a geoBoundaries GeoJSON
and an OpenStreetMap extract read through GDAL's OSM driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from builders import TinyStudy
from povertymap.config import config_from_dict
from povertymap.errors import VectorError
from povertymap.io.vector import is_osm, osm_tag, read_vector
from povertymap.studyarea import load_study_area

# A tiny extract in TinyStudy's area (lon 35.0-35.18, lat -6.09-0): two roads, a river and
# a railway (same `lines` layer, no highway tag), two amenities (tag in other_tags) and a
# village node without an amenity.
OSM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="hand">
  <node id="1" lat="-6.0300000" lon="35.0000000" version="1"/>
  <node id="2" lat="-6.0300000" lon="35.1800000" version="1"/>
  <node id="3" lat="-6.0000000" lon="35.0500000" version="1"/>
  <node id="4" lat="-6.0900000" lon="35.0500000" version="1"/>
  <node id="5" lat="-6.0100000" lon="35.0100000" version="1"/>
  <node id="6" lat="-6.0800000" lon="35.1700000" version="1"/>
  <node id="7" lat="-6.0200000" lon="35.0200000" version="1">
    <tag k="amenity" v="school"/>
    <tag k="name" v="Shule &quot;A&quot;"/>
  </node>
  <node id="8" lat="-6.0200000" lon="35.1100000" version="1">
    <tag k="amenity" v="clinic"/>
    <tag k="healthcare" v="clinic"/>
  </node>
  <node id="9" lat="-6.0500000" lon="35.1400000" version="1">
    <tag k="place" v="village"/>
    <tag k="name" v="Kijiji"/>
  </node>
  <way id="10" version="1">
    <nd ref="1"/><nd ref="2"/>
    <tag k="highway" v="primary"/>
    <tag k="surface" v="asphalt"/>
  </way>
  <way id="11" version="1">
    <nd ref="3"/><nd ref="4"/>
    <tag k="highway" v="track"/>
  </way>
  <way id="12" version="1">
    <nd ref="5"/><nd ref="6"/>
    <tag k="waterway" v="river"/>
  </way>
  <way id="13" version="1">
    <nd ref="3"/><nd ref="6"/>
    <tag k="railway" v="rail"/>
  </way>
</osm>
"""


def _gadm(study: TinyStudy) -> Path:
    """TinyStudy's admin units as GADM ships them: layers ADM_ADM_1 and ADM_ADM_2."""
    admin = gpd.read_file(study.root / "admin.geojson")
    adm2 = gpd.GeoDataFrame(
        {
            "GID_0": "XXX",
            "GID_1": ["XXX.1_1", "XXX.1_1"],
            "NAME_1": ["Region"] * 2,
            "GID_2": ["XXX.1.1_1", "XXX.1.2_1"],
            "NAME_2": admin["admin2_name"].to_numpy(),
        },
        geometry=admin.geometry.to_numpy(),
        crs=admin.crs,
    )
    path = study.root / "gadm41_XXX.gpkg"
    adm1 = adm2.dissolve(by="GID_1", as_index=False)[["GID_0", "GID_1", "NAME_1", "geometry"]]
    pyogrio.write_dataframe(adm1, path, layer="ADM_ADM_1", promote_to_multi=True)
    pyogrio.write_dataframe(adm2, path, layer="ADM_ADM_2", promote_to_multi=True)
    return path


def _study(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    study = TinyStudy(tmp_path)
    _gadm(study)
    (tmp_path / "extract.osm").write_text(OSM_XML, encoding="utf-8")
    data = study.config()
    data.update(changes)
    return data


def test_gadm_layer_gives_the_admin_units(tmp_path: Path) -> None:
    data = _study(
        tmp_path,
        boundaries={
            "path": "gadm41_XXX.gpkg", "layer": "ADM_ADM_2", "id": "GID_2", "name": "NAME_2",
            "parent": "GID_1",
        },
    )  # fmt: skip
    area = load_study_area(config_from_dict(data, base_dir=tmp_path))
    assert list(area.admin.index) == ["XXX.1.1_1", "XXX.1.2_1"]
    assert list(area.admin["admin_name"]) == ["West", "East"]
    assert list(area.admin["parent_id"]) == ["XXX.1_1", "XXX.1_1"]
    assert list(area.clusters["admin_id"]) == ["XXX.1.1_1"] * 3 + ["XXX.1.2_1"] * 3
    # the same units as the GeoJSON version of the same boundaries
    csv = load_study_area(config_from_dict(TinyStudy(tmp_path).config(), base_dir=tmp_path))
    np.testing.assert_allclose(area.admin.area.to_numpy(), csv.admin.area.to_numpy(), rtol=1e-9)


def test_missing_layer_lists_the_layers(tmp_path: Path) -> None:
    path = _gadm(TinyStudy(tmp_path))
    with pytest.raises(VectorError, match=r"layer 'ADM_ADM_3' is not in the file \(layers: "
                       r"ADM_ADM_1, ADM_ADM_2\).*Fix: set layer:") as info:  # fmt: skip
        read_vector(path, layer="ADM_ADM_3")
    assert str(path) in str(info.value)
    with pytest.raises(VectorError, match=r"has 2 layers \(ADM_ADM_1, ADM_ADM_2\) and none"):
        read_vector(path)
    data = _study(tmp_path, boundaries={"path": "gadm41_XXX.gpkg", "layer": "ADM_ADM2"})
    with pytest.raises(VectorError, match="layer 'ADM_ADM2' is not in the file"):
        load_study_area(config_from_dict(data, base_dir=tmp_path))


def test_layer_on_geoparquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326).to_parquet(path)
    with pytest.raises(VectorError, match="GeoParquet file, which has one layer"):
        read_vector(path, layer="x")


def test_geoboundaries_geojson(tmp_path: Path) -> None:
    study = TinyStudy(tmp_path)
    admin = gpd.read_file(tmp_path / "admin.geojson")
    gpd.GeoDataFrame(
        {
            "shapeName": ["West", "East"],
            "shapeISO": ["", ""],
            "shapeID": ["52423323B12345", "52423323B67890"],
            "shapeGroup": "XXX",
            "shapeType": "ADM2",
        },
        geometry=admin.geometry.to_numpy(),
        crs=4326,
    ).to_file(tmp_path / "geoBoundaries-XXX-ADM2.geojson")
    data = study.config()
    data["boundaries"] = {
        "path": "geoBoundaries-XXX-ADM2.geojson", "id": "shapeID", "name": "shapeName",
    }  # fmt: skip
    area = load_study_area(config_from_dict(data, base_dir=tmp_path))
    assert list(area.admin.index) == ["52423323B12345", "52423323B67890"]
    assert list(area.admin["admin_name"]) == ["West", "East"]


def test_osm_extract_roads_and_pois(tmp_path: Path) -> None:
    data = _study(
        tmp_path,
        vectors={
            "roads": {"path": "extract.osm", "layer": "lines", "class": "highway"},
            "pois": {"path": "extract.osm", "layer": "points", "class": "amenity"},
        },
    )
    area = load_study_area(config_from_dict(data, base_dir=tmp_path))
    roads, pois = area.vectors["roads"], area.vectors["pois"]
    # the river and the railway share the lines layer but are not roads
    assert list(roads["class"]) == ["primary", "track"]
    assert list(roads["osm_id"]) == ["10", "11"]
    assert roads.crs.to_string() == "EPSG:32736"
    # amenity sits in other_tags (the OSM driver has no column for it); the village is out
    assert list(pois["class"]) == ["school", "clinic"]
    assert list(pois["name"]) == ['Shule "A"', None]
    # the same lengths and places as the GeoJSON layers of the tiny study
    geo = load_study_area(config_from_dict(TinyStudy(tmp_path).config(), base_dir=tmp_path))
    np.testing.assert_allclose(roads.length.to_numpy(), geo.vectors["roads"].length, rtol=1e-6)
    np.testing.assert_allclose(
        shapely.get_coordinates(pois.geometry.values),
        shapely.get_coordinates(geo.vectors["pois"].geometry.values[:2]),
        atol=0.05,  # metres: OSM keeps 7 decimals of a degree
    )


def test_osm_extract_needs_a_layer_and_a_class(tmp_path: Path) -> None:
    data = _study(tmp_path, vectors={"pois": {"path": "extract.osm", "class": "amenity"}})
    with pytest.raises(VectorError, match=r"5 layers \(points, lines, multilinestrings"):
        load_study_area(config_from_dict(data, base_dir=tmp_path))
    data["vectors"] = {"pois": {"path": "extract.osm", "layer": "points", "class": "shop"}}
    with pytest.raises(VectorError, match=r"no feature of layer .points. has a .shop. tag"):
        load_study_area(config_from_dict(data, base_dir=tmp_path))


def test_osm_tag_reads_hstore_text() -> None:
    tags = pd.Series(
        [
            '"amenity"=>"school"',
            None,
            '"name"=>"x,\\"amenity\\"=>\\"no\\"","amenity"=>"clinic"',  # quoted look-alike
            '"surface"=>"dirt"',
            '"amenity"=>"a \\"b\\""',
            '"old_amenity"=>"bank"',
        ]
    )
    assert osm_tag(tags, "amenity").tolist() == ["school", None, "clinic", None, 'a "b"', None]
    assert is_osm("kenya-latest.osm.pbf") and is_osm("x.OSM") and not is_osm("x.geojson")
