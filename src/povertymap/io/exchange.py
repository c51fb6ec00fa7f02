"""Writers of the formats real data is distributed in, for the simulator and the tests.

The readers take these formats as users bring them (:mod:`povertymap.io.dhs`,
:mod:`povertymap.io.vector`); these writers make small files in the same conventions, so
a synthetic country can be given to povertymap exactly as a real one would be:

- :func:`write_shapefile`: a shapefile in a folder named after it, as an unzipped DHS GPS
  dataset (``XXGE81FL/XXGE81FL.shp`` with ``.dbf``, ``.shx``, ``.prj``, ``.cpg``);
- :func:`write_stata`: a Stata ``.DTA`` (a DHS recode), with value labels;
- :func:`write_gpkg_layers`: a GeoPackage with several layers (GADM's ``ADM_ADM_0`` ...);
- :func:`write_osm_xml`: an OpenStreetMap XML extract (``.osm``) of tagged nodes and ways.

Like :mod:`povertymap.io.writers`, every writer is atomic and gives the same bytes for the
same data (fixed timestamps).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from povertymap.errors import InputError
from povertymap.io.writers import _atomic_file, atomic_directory

__all__ = ["write_gpkg_layers", "write_osm_xml", "write_shapefile", "write_stata"]

#: The timestamp written into Stata files and GeoPackages (reproducible bytes).
FIXED_TIME = dt.datetime(2000, 1, 1)


def write_shapefile(gdf: gpd.GeoDataFrame, folder: Path, *, overwrite: bool = False) -> Path:
    """Write ``gdf`` as ``folder/<folder name>.shp`` (UTF-8 attributes); return the .shp.

    The folder is built beside its target and renamed into place. Column names must fit
    the dBASE limit of 10 characters (DHS's do: ``URBAN_RURA``).
    """
    folder = Path(folder)
    _require_crs(gdf, folder)
    long = [c for c in gdf.columns if c != gdf.geometry.name and len(str(c)) > 10]
    if long:
        raise InputError(
            f"column name {long[0]!r} is longer than the 10 characters a shapefile keeps",
            path=folder,
            fix="rename the column before writing",
        )
    with atomic_directory(folder, overwrite=overwrite) as tmp:
        pyogrio.write_dataframe(
            gdf, tmp / f"{folder.name}.shp", driver="ESRI Shapefile", encoding="UTF-8"
        )
    return folder / f"{folder.name}.shp"


def write_stata(
    df: pd.DataFrame,
    path: Path,
    *,
    value_labels: Mapping[str, Mapping[float, str]] | None = None,
    variable_labels: Mapping[str, str] | None = None,
    data_label: str | None = None,
) -> Path:
    """Write ``df`` (no index) as a Stata 14 ``.dta``; return ``path``.

    Integer columns keep their width (DHS stores ``hv001`` as long, ``hv025`` as byte);
    text columns must hold strings only.
    """
    path = Path(path)
    with _atomic_file(path, ".dta") as tmp:
        df.to_stata(
            tmp,
            write_index=False,
            version=118,
            time_stamp=FIXED_TIME,
            data_label=data_label,
            variable_labels=dict(variable_labels or {}),
            value_labels={k: dict(v) for k, v in (value_labels or {}).items()},
        )
    return path


def write_gpkg_layers(layers: Mapping[str, gpd.GeoDataFrame], path: Path) -> Path:
    """Write several layers into one GeoPackage, in order; polygons are written as
    MultiPolygons (as GADM does). Returns ``path``."""
    path = Path(path)
    if not layers:
        raise InputError("no layers to write", path=path, fix="pass at least one layer")
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")})
    try:
        with _atomic_file(path, ".gpkg") as tmp:
            tmp.unlink()  # GDAL creates the file itself
            for name, gdf in layers.items():
                _require_crs(gdf, path)
                polygons = bool(gdf.geom_type.isin(["Polygon", "MultiPolygon"]).all())
                pyogrio.write_dataframe(
                    gdf, tmp, layer=name, driver="GPKG", promote_to_multi=polygons
                )
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})
    return path


def write_osm_xml(
    path: Path,
    *,
    points: gpd.GeoDataFrame | None = None,
    lines: gpd.GeoDataFrame | None = None,
    point_tags: Sequence[str] = (),
    line_tags: Sequence[str] = (),
) -> Path:
    """Write points as tagged nodes and lines as tagged ways of an OSM XML extract.

    Geometries are reprojected to WGS84; a MultiLineString becomes one way per part (with
    the same tags). ``point_tags``/``line_tags`` name the columns written as tags; missing
    values are left out, as OSM has no empty tags. Coordinates keep 7 decimals (OSM's
    precision, about 1 cm). Returns ``path``.
    """
    path = Path(path)
    text = "".join(_osm_lines(points, lines, tuple(point_tags), tuple(line_tags)))
    with _atomic_file(path, ".osm") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _osm_lines(
    points: gpd.GeoDataFrame | None,
    lines: gpd.GeoDataFrame | None,
    point_tags: tuple[str, ...],
    line_tags: tuple[str, ...],
) -> Iterator[str]:
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield '<osm version="0.6" generator="povertymap">\n'
    node_id = 0
    if points is not None and len(points):
        pts = _wgs84(points)
        xy = shapely.get_coordinates(pts.geometry.values)
        for (lon, lat), tags in zip(xy, _tag_rows(pts, point_tags), strict=True):
            node_id += 1
            yield _node(node_id, lon, lat, tags)
    ways: list[tuple[list[int], dict[str, str]]] = []
    if lines is not None and len(lines):
        lns = _wgs84(lines)
        for geom, tags in zip(lns.geometry.values, _tag_rows(lns, line_tags), strict=True):
            for part in shapely.get_parts(geom):
                refs = []
                for lon, lat in shapely.get_coordinates(part):
                    node_id += 1
                    refs.append(node_id)
                    yield _node(node_id, lon, lat, {})
                if len(refs) >= 2:
                    ways.append((refs, tags))
    for way_id, (refs, tags) in enumerate(ways, start=1):
        yield f'  <way id="{way_id}" version="1">\n'
        yield "".join(f'    <nd ref="{r}"/>\n' for r in refs)
        yield "".join(f"    <tag k={quoteattr(k)} v={quoteattr(v)}/>\n" for k, v in tags.items())
        yield "  </way>\n"
    yield "</osm>\n"


def _node(node_id: int, lon: float, lat: float, tags: dict[str, str]) -> str:
    head = f'  <node id="{node_id}" lat="{lat:.7f}" lon="{lon:.7f}" version="1"'
    if not tags:
        return head + "/>\n"
    body = "".join(f"    <tag k={quoteattr(k)} v={quoteattr(v)}/>\n" for k, v in tags.items())
    return f"{head}>\n{body}  </node>\n"


def _tag_rows(gdf: gpd.GeoDataFrame, columns: tuple[str, ...]) -> list[dict[str, str]]:
    missing = [c for c in columns if c not in gdf.columns]
    if missing:
        raise InputError(
            f"tag column {missing[0]!r} is not in the layer",
            fix=f"choose tags among {', '.join(map(str, gdf.columns))}",
        )
    rows: list[dict[str, str]] = [{} for _ in range(len(gdf))]
    for col in columns:
        values = gdf[col].to_numpy(dtype=object)
        for row, value in zip(rows, values, strict=True):
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                row[col] = str(value)
    return rows


def _wgs84(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    _require_crs(gdf, None)
    return gdf if gdf.crs.to_epsg() == 4326 else gdf.to_crs(4326)


def _require_crs(gdf: gpd.GeoDataFrame, path: Path | None) -> None:
    if gdf.crs is None:
        raise InputError(
            "GeoDataFrame has no CRS", path=path, fix="set one with gdf.set_crs(...) first"
        )
