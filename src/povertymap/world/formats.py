"""A generated country written again in the formats real data comes in.

:func:`write_real_formats` takes the folder :func:`~povertymap.world.generate` wrote and
adds, under ``formats/``, the same survey, boundaries and OpenStreetMap layers as users
download them, and a ``study-real-formats.yaml`` that reads them (the rasters, census and
registry stay the generated ones):

- the survey as a DHS GPS dataset, the unzipped ``XXGE81FL/XXGE81FL.shp`` (``DHSCLUST``,
  ``DHSID``, ``URBAN_RURA`` 'U'/'R', ``LATNUM``, ``LONGNUM``, ...), with a few extra
  clusters at (0, 0), DHS's marker for missing coordinates (their households are in the
  recode, as in real surveys), and a household recode ``XXHR81FL.DTA`` (``hhid``,
  ``hv001`` cluster, ``hv002`` household number, ``hv005`` weight x 1e6 as an integer,
  ``hv009`` members, ``hv024`` region, ``hv025`` 1 urban / 2 rural with value labels,
  ``hv271`` the welfare x 1e5, and the proxy-means variables the registry shares);
- the admin units as a GADM-style GeoPackage ``gadm41_XXX.gpkg`` with layers
  ``ADM_ADM_0``, ``ADM_ADM_1`` and ``ADM_ADM_2`` (``GID_0``, ``COUNTRY``, ``GID_1``,
  ``NAME_1``, ``GID_2``, ``NAME_2``; the GIDs are the generated ids, so the census still
  joins);
- roads and points of interest as one OSM XML extract ``xxx-latest.osm`` (ways tagged
  ``highway``/``surface``, nodes tagged ``amenity``), read through the ``lines`` and
  ``points`` layers of GDAL's OSM driver.

``hv271`` holds the survey's welfare (log consumption, the generated target) rather than
an asset score, and as a double rather than DHS's integer, so that the DHS study gives the
CSV study's cluster targets to machine precision: the cluster target is the weighted mean
of the households' ``hv271 / 1e5`` with weight x size, and the weight is constant within a
cluster, so it equals the generated people-weighted cluster mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import yaml

from povertymap.errors import InputError
from povertymap.io.artifacts import read_table, read_text
from povertymap.io.exchange import (
    write_gpkg_layers,
    write_osm_xml,
    write_shapefile,
    write_stata,
)
from povertymap.io.vector import read_vector
from povertymap.io.writers import atomic_directory, write_yaml
from povertymap.world.households import PMT_COLUMNS

__all__ = ["FORMATS_DIR", "REAL_FORMATS_CONFIG", "write_real_formats"]

#: Folder (inside the country's folder) holding the files in real formats.
FORMATS_DIR = "formats"
#: The config that reads them, beside ``study.yaml``.
REAL_FORMATS_CONFIG = "study-real-formats.yaml"
#: DHS survey phase and year written into the files.
DHS_PHASE, DHS_YEAR = 8, 2020


def write_real_formats(
    world: Path, *, code: str = "XX", n_missing_gps: int = 3, overwrite: bool = False
) -> Path:
    """Write the country in ``world`` (a folder of :func:`generate`) in real formats.

    ``code`` is the two-letter DHS country code used in the file names (its ISO3 form is
    ``code`` plus its last letter, e.g. XXX). ``n_missing_gps`` extra clusters get (0, 0)
    coordinates in the GPS file (with households in the recode). ``formats/`` is built
    beside its target and renamed in; an existing one is replaced only with ``overwrite``.
    Returns the path of ``study-real-formats.yaml``.
    """
    world = Path(world)
    if len(code) != 2 or not code.isalpha():
        raise InputError(f"DHS country code {code!r} is not two letters", fix="use e.g. code='XX'")
    code = code.upper()
    iso3 = code + code[-1]
    study = yaml.safe_load(read_text(world / "study.yaml"))
    clusters = read_table(world / "clusters.csv")
    households = read_table(world / "households.csv")
    admin = read_vector(world / "admin.geojson")
    roads = read_vector(world / "roads.geojson")
    pois = read_vector(world / "pois.geojson")

    gps_name = f"{code}GE{DHS_PHASE}1FL"
    hr_name = f"{code}HR{DHS_PHASE}1FL.DTA"
    gpkg_name = f"gadm41_{iso3}.gpkg"
    osm_name = f"{iso3.lower()}-latest.osm"
    gps, hr = dhs_tables(clusters, households, code=code, n_missing_gps=n_missing_gps)
    with atomic_directory(world / FORMATS_DIR, overwrite=overwrite) as tmp:
        write_shapefile(gps, tmp / gps_name)
        write_stata(
            hr,
            tmp / hr_name,
            value_labels={"hv025": {1: "urban", 2: "rural"}},
            variable_labels=HR_LABELS,
            data_label=f"synthetic DHS household recode ({study['name']})",
        )
        write_gpkg_layers(gadm_layers(admin, iso3=iso3, country=study["name"]), tmp / gpkg_name)
        write_osm_xml(
            tmp / osm_name,
            points=pois,
            lines=roads,
            point_tags=["amenity"],
            line_tags=["highway", "surface"],
        )
    config = real_formats_config(
        study,
        gps=f"{FORMATS_DIR}/{gps_name}/{gps_name}.shp",
        households=f"{FORMATS_DIR}/{hr_name}",
        gpkg=f"{FORMATS_DIR}/{gpkg_name}",
        osm=f"{FORMATS_DIR}/{osm_name}",
    )
    return write_yaml(config, world / REAL_FORMATS_CONFIG)


#: Variable labels of the recode's DHS columns (as in the DHS recode manual).
HR_LABELS = {
    "hhid": "case identification",
    "hv000": "country code and phase",
    "hv001": "cluster number",
    "hv002": "household number",
    "hv005": "household sample weight (6 decimals)",
    "hv009": "number of household members",
    "hv024": "region",
    "hv025": "type of place of residence",
    "hv271": "welfare score (5 decimals)",
}


def dhs_tables(
    clusters: pd.DataFrame, households: pd.DataFrame, *, code: str, n_missing_gps: int
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """The GPS dataset and the household recode of the generated survey.

    ``clusters`` and ``households`` are the generated ``clusters.csv`` and
    ``households.csv``; the ``n_missing_gps`` clusters added at (0, 0) copy the
    households of the first clusters under new cluster numbers.
    """
    cid = clusters["cluster_id"].astype(np.int64).to_numpy()
    extra = np.arange(n_missing_gps) + cid.max() + 1
    lon = np.r_[clusters["lon"].to_numpy(float), np.zeros(n_missing_gps)]
    lat = np.r_[clusters["lat"].to_numpy(float), np.zeros(n_missing_gps)]
    urban = np.r_[clusters["urban"].to_numpy(str), np.full(n_missing_gps, "R")]
    region = np.r_[clusters["admin1_id"].to_numpy(str), np.full(n_missing_gps, "")]
    number = np.r_[cid, extra]
    gps = gpd.GeoDataFrame(
        {
            "DHSID": [f"{code}{DHS_YEAR}{n:08d}" for n in number],
            "DHSCC": code,
            "DHSYEAR": float(DHS_YEAR),
            "DHSCLUST": number.astype(float),  # a double in real GPS files
            "URBAN_RURA": urban,
            "LATNUM": lat,
            "LONGNUM": lon,
            "ALT_GPS": 9999.0,
            "ADM1NAME": region,
            "DATUM": "WGS84",
        },
        geometry=shapely.points(lon, lat),
        crs="EPSG:4326",
    )

    hh = households.copy()
    hh["_cluster"] = hh["cluster_id"].astype(np.int64)
    copies = []
    for k, new in enumerate(extra):
        first = hh[hh["_cluster"] == cid[k % cid.size]].copy()
        first["_cluster"] = new
        first["household_id"] = [f"{new}-{i}" for i in range(1, len(first) + 1)]
        copies.append(first)
    hh = pd.concat([hh, *copies], ignore_index=True)
    urban_of = dict(zip(number, urban, strict=True))
    region_codes = {r: i + 1 for i, r in enumerate(sorted(set(region) - {""}))}
    region_of = dict(zip(number, region, strict=True))
    hr = pd.DataFrame(
        {
            "hhid": hh["household_id"].astype(str),
            "hv000": f"{code}{DHS_PHASE}",
            "hv001": hh["_cluster"].astype(np.int32),
            "hv002": hh.groupby("_cluster").cumcount().add(1).astype(np.int32),
            "hv005": np.rint(hh["weight"].to_numpy(float) * 1e6).astype(np.int32),
            "hv009": hh["hh_size"].astype(np.int16),
            "hv024": hh["_cluster"].map(region_of).map(region_codes).fillna(0).astype(np.int8),
            "hv025": np.where(hh["_cluster"].map(urban_of) == "U", 1, 2).astype(np.int8),
            "hv271": hh["log_consumption"].to_numpy(float) * 1e5,
        }
    )
    shared = [c for c in (*PMT_COLUMNS, "asset_index", "admin1_id") if c != "hh_size"]
    for col in shared:
        if col in hh:
            values = hh[col]
            hr[col] = values.astype(str) if values.dtype == object else values.to_numpy()
    return gps, hr


def gadm_layers(admin: gpd.GeoDataFrame, *, iso3: str, country: str) -> dict[str, gpd.GeoDataFrame]:
    """GADM's ``ADM_ADM_0``, ``ADM_ADM_1`` and ``ADM_ADM_2`` layers of the admin units."""
    adm2 = gpd.GeoDataFrame(
        {
            "GID_0": iso3,
            "COUNTRY": country,
            "GID_1": admin["admin1_id"].to_numpy(),
            "NAME_1": admin["admin1_name"].to_numpy(),
            "GID_2": admin["admin2_id"].to_numpy(),
            "NAME_2": admin["admin2_name"].to_numpy(),
            "TYPE_2": "District",
            "ENGTYPE_2": "District",
        },
        geometry=admin.geometry.to_numpy(),
        crs=admin.crs,
    )
    adm1 = adm2[["GID_0", "COUNTRY", "GID_1", "NAME_1", "geometry"]].dissolve(
        by=["GID_1"], as_index=False, sort=True
    )[["GID_0", "COUNTRY", "GID_1", "NAME_1", "geometry"]]
    adm0 = adm2[["GID_0", "COUNTRY", "geometry"]].dissolve(by="GID_0", as_index=False)
    return {"ADM_ADM_0": adm0, "ADM_ADM_1": adm1, "ADM_ADM_2": adm2}


def real_formats_config(
    study: dict[str, Any], *, gps: str, households: str, gpkg: str, osm: str
) -> dict[str, Any]:
    """``study.yaml`` with the boundaries, survey and vectors read from the real formats."""
    out = dict(study)
    out["name"] = f"{study['name']}-formats"
    out["boundaries"] = {
        "path": gpkg, "layer": "ADM_ADM_2", "id": "GID_2", "name": "NAME_2", "parent": "GID_1",
    }  # fmt: skip
    out["survey"] = {"dhs": {"gps": gps, "households": households}}
    out["vectors"] = {
        "roads": {"path": osm, "layer": "lines", "class": "highway"},
        "pois": {"path": osm, "layer": "points", "class": "amenity"},
    }
    return out
