"""Builders of tiny test data: a hand-made study area written to a folder.

The area is two admin units (about 20 x 10 km near lon 35, lat -6), six clusters, a
16 x 16 nightlights raster in EPSG:4326, a population raster in UTM 36S, a few roads and
points of interest, and a feature table. Values are simple so tests can assert them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import yaml
from rasterio.transform import from_origin
from shapely.geometry import LineString, Point, box

os.environ.setdefault("MPLBACKEND", "Agg")

LON0, LAT0 = 35.0, -6.0
UTM = "EPSG:32736"


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None,
    transform: Any,
    nodata: float | None = None,
    descriptions: list[str] | None = None,
) -> Path:
    """Write a small GeoTIFF (bands, rows, cols) or (rows, cols)."""
    if data.ndim == 2:
        data = data[None]
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if descriptions:
            ds.descriptions = tuple(descriptions)
    return path


class TinyStudy:
    """Files of a tiny study area; ``config()`` returns the YAML mapping, ``write()`` the path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        west = box(LON0, LAT0 - 0.09, LON0 + 0.09, LAT0)
        east = box(LON0 + 0.09, LAT0 - 0.09, LON0 + 0.18, LAT0)
        gpd.GeoDataFrame(
            {"admin2_id": ["A1", "A2"], "admin2_name": ["West", "East"], "admin1_id": ["R", "R"]},
            geometry=[west, east],
            crs=4326,
        ).to_file(root / "admin.geojson")
        self.clusters = pd.DataFrame(
            {
                "cluster_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
                "lon": [35.02, 35.05, 35.08, 35.11, 35.14, 35.17],
                "lat": [-6.02, -6.05, -6.08, -6.02, -6.05, -6.08],
                "urban": ["U", "R", "R", "U", "R", "R"],
                "wealth": [1.0, -0.5, -1.0, 0.8, -0.2, -0.9],
                "n_households": [25, 25, 24, 25, 23, 25],
                "region": ["R", "R", "R", "R", "R", "R"],
            }
        )
        self.clusters.to_csv(root / "clusters.csv", index=False)
        hh = pd.DataFrame(
            {
                "household_id": [f"h{i}" for i in range(12)],
                "cluster_id": [f"c{1 + i // 2}" for i in range(12)],
                "logc": np.linspace(6.0, 8.0, 12),
                "size": [4, 5] * 6,
            }
        )
        hh.to_csv(root / "households.csv", index=False)
        nl = np.zeros((16, 16), dtype="float32")
        nl[2:5, 2:5] = 12.0
        write_tif(
            root / "nightlights.tif",
            nl,
            crs="EPSG:4326",
            transform=from_origin(LON0 - 0.01, LAT0 + 0.01, 0.0125, 0.0125),
        )
        # UTM 36S: the area spans x 721,350-741,320 m, y 9,326,360-9,336,390 m
        pop = np.full((28, 50), 10.0, dtype="float32")
        pop[0] = -99999.0  # outside the area, declared nodata
        write_tif(
            root / "population.tif",
            pop,
            crs=UTM,
            transform=from_origin(719000, 9338000, 500, 500),
            nodata=-99999.0,
        )
        gpd.GeoDataFrame(
            {"highway": ["primary", "track"]},
            geometry=[
                LineString([(35.0, -6.03), (35.18, -6.03)]),
                LineString([(35.05, -6.0), (35.05, -6.09)]),
            ],
            crs=4326,
        ).to_file(root / "roads.geojson")
        gpd.GeoDataFrame(
            {"amenity": ["school", "clinic", "school"]},
            geometry=[Point(35.02, -6.02), Point(35.11, -6.02), Point(35.14, -6.05)],
            crs=4326,
        ).to_file(root / "pois.geojson")
        pd.DataFrame(
            {
                "cluster_id": self.clusters["cluster_id"],
                "f1": np.arange(6.0),
                "f2": np.arange(6.0) ** 2,
            }
        ).to_csv(root / "features.csv", index=False)

    def config(self) -> dict[str, Any]:
        return {
            "name": "tiny",
            "crs": UTM,
            "grid": {"cell_size_m": 1000},
            "boundaries": {
                "path": "admin.geojson",
                "id": "admin2_id",
                "name": "admin2_name",
                "parent": "admin1_id",
            },
            "survey": {
                "clusters": {
                    "path": "clusters.csv",
                    "id": "cluster_id",
                    "lon": "lon",
                    "lat": "lat",
                    "urban": "urban",
                    "target": "wealth",
                    "households": "n_households",
                },
                "households": {
                    "path": "households.csv",
                    "cluster": "cluster_id",
                    "id": "household_id",
                    "welfare": "logc",
                    "size": "size",
                },
            },
            "rasters": {
                "nightlights": {"path": "nightlights.tif"},
                "population": {"path": "population.tif"},
            },
            "vectors": {
                "roads": {"path": "roads.geojson", "class": "highway"},
                "pois": {"path": "pois.geojson", "class": "amenity"},
            },
            "tables": [{"path": "features.csv", "key": "cluster_id"}],
        }

    def write(self, config: dict[str, Any] | None = None, name: str = "study.yaml") -> Path:
        path = self.root / name
        path.write_text(
            yaml.safe_dump(config if config is not None else self.config(), sort_keys=False)
        )
        return path
