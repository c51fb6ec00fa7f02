"""Vector layers: GeoJSON, GeoPackage, GeoParquet, Shapefile and OSM extracts read into
GeoDataFrames.

A multi-layer file (a GADM GeoPackage with ``ADM_ADM_0`` ... ``ADM_ADM_3``, an ``.osm`` or
``.osm.pbf`` extract with ``points``, ``lines``, ``multipolygons``...) is read one named
layer at a time: a layer the file lacks, or no layer named when there are several, is an
error listing the layers it has. OSM extracts go through GDAL's OSM driver, which puts the
tags it has no column for into ``other_tags`` (hstore text ``"amenity"=>"school"``);
:func:`osm_tag` reads one tag from there.

Every layer must carry a CRS. Null or empty geometries are refused (a feature without a
place cannot be mapped, and dropping it silently would lose data); invalid geometries
(self-intersections, bow-ties) are repaired with ``make_valid`` and counted in an
:class:`~povertymap.errors.InputWarning`.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pyogrio.errors
import shapely

from povertymap.errors import InputNotFoundError, InputWarning, VectorError

__all__ = ["is_osm", "osm_tag", "read_vector"]

log = logging.getLogger(__name__)

_PARQUET = {".parquet", ".geoparquet"}
#: Suffixes read by GDAL's OSM driver (``.osm`` XML, ``.pbf`` of ``x.osm.pbf``).
_OSM = {".osm", ".pbf"}


def read_vector(path: str | Path, *, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a vector layer, check its CRS and geometries, repair invalid ones.

    Raises :class:`~povertymap.errors.VectorError` for unreadable files, a missing CRS,
    and null or empty geometries.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("file does not exist", path=path, fix="correct the path")
    parquet = path.suffix.lower() in _PARQUET
    if parquet and layer is not None:
        raise VectorError(
            f"layer {layer!r} given for a GeoParquet file, which has one layer",
            path=path,
            fix="remove layer: from the config",
        )
    try:
        if parquet:
            gdf = gpd.read_parquet(path)
        else:
            _check_layer(path, layer)
            gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise VectorError(
            f"cannot be read as a vector layer ({_first_line(exc)})",
            path=path,
            fix="check that the file is complete (not cut off) and in a format GDAL reads "
            "(GeoJSON, GeoPackage, GeoParquet, Shapefile)",
        ) from exc
    except (ValueError, OSError) as exc:
        raise VectorError(
            f"cannot be read as a vector layer ({_first_line(exc)})",
            path=path,
            fix="check that the file is complete and is GeoParquet with geometry metadata",
        ) from exc
    if gdf.crs is None:
        raise VectorError(
            "layer has no CRS",
            path=path,
            fix="assign the CRS it was made in, e.g. ogr2ogr -a_srs EPSG:4326 out.gpkg in.gpkg",
        )
    return _check_geometries(gdf, path)


def is_osm(path: str | Path) -> bool:
    """Whether ``path`` is an OSM extract (``.osm`` or ``.osm.pbf``) read by the OSM driver."""
    return Path(path).suffix.lower() in _OSM


def osm_tag(other_tags: pd.Series, key: str) -> pd.Series:
    """The value of tag ``key`` in each hstore text of the OSM driver's ``other_tags``
    (``"amenity"=>"school","name"=>"A"``), None where the tag is absent."""
    quoted = re.escape(key.replace("\\", "\\\\").replace('"', '\\"'))
    pattern = rf'(?:^|,)"{quoted}"=>"((?:[^"\\]|\\.)*)"'
    values = other_tags.astype("string").str.extract(pattern, expand=False)
    values = values.str.replace(r"\\(.)", r"\1", regex=True)
    out = values.astype(object)
    out[values.isna().to_numpy()] = None
    return out


def _check_layer(path: Path, layer: str | None) -> None:
    """Refuse a layer the file lacks, or no layer for a file with several: list them."""
    layers = [str(name) for name in pyogrio.list_layers(path)[:, 0]]
    if layer is not None and layer not in layers:
        raise VectorError(
            f"layer {layer!r} is not in the file (layers: {', '.join(layers) or 'none'})",
            path=path,
            fix="set layer: to one of the layers listed",
        )
    if layer is None and len(layers) > 1:
        raise VectorError(
            f"the file has {len(layers)} layers ({', '.join(layers)}) and none is named",
            path=path,
            fix="set layer: to the one to read (e.g. ADM_ADM_2 for GADM admin-2, lines for "
            "OSM roads, points for OSM points of interest)",
        )


def _check_geometries(gdf: gpd.GeoDataFrame, path: Path) -> gpd.GeoDataFrame:
    geom = gdf.geometry.values
    bad = shapely.is_missing(geom) | shapely.is_empty(geom)
    if bad.any():
        rows = [str(i) for i in gdf.index[bad][:5]]
        raise VectorError(
            f"{int(bad.sum())} feature(s) have a null or empty geometry",
            path=path,
            where=f"feature(s) {', '.join(rows)}",
            fix="delete those features or give them a geometry",
        )
    invalid = ~shapely.is_valid(geom)
    if invalid.any():
        repaired = shapely.make_valid(geom[invalid])
        if shapely.get_dimensions(geom[invalid]).max() == 2:
            # keep polygons polygonal: make_valid can return collections with lines
            repaired = _polygonal(repaired)
        gdf = gdf.copy()
        gdf.loc[invalid, gdf.geometry.name] = repaired
        n = int(invalid.sum())
        msg = f"{path}: repaired {n} invalid geometr{'y' if n == 1 else 'ies'} with make_valid"
        log.warning(msg)
        warnings.warn(msg, InputWarning, stacklevel=3)
    return gdf


def _polygonal(geoms: shapely.Geometry) -> shapely.Geometry:
    """Keep only the polygonal parts of each (possibly mixed) geometry."""
    out = []
    for g in geoms:
        if g.geom_type in ("Polygon", "MultiPolygon"):
            out.append(g)
        else:
            parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
            out.append(shapely.union_all(parts))
    return out


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
