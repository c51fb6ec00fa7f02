"""OpenStreetMap-like layers: roads and points of interest, incompletely mapped.

True points of interest are drawn per cell, ``Poisson(P_c * rate_k * exp(b_k (mu_c - m0)))``
(schools, clinics and markets follow people; banks and fuel stations follow people and
money, in towns and along paved roads), and placed at a household of the cell. As in real
OSM, mapping is complete for main roads but patchy elsewhere and worse where people are
poor and rural: a track, tertiary road or POI is mapped with probability
``logistic(a_k + b (mu - m0) + c U)``. Layers are written in WGS84 like OSM extracts,
clipped to the country.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from povertymap.world.frame import Frame
from povertymap.world.welfare import M0

__all__ = ["AMENITIES", "draw_pois", "osm_pois", "osm_roads"]

#: amenity: (people per facility at m0, wealth elasticity, urban-only)
AMENITIES: dict[str, tuple[float, float, bool]] = {
    "school": (1500.0, 0.3, False),
    "clinic": (6000.0, 0.6, False),
    "marketplace": (5000.0, 0.4, False),
    "bank": (9000.0, 2.0, True),
    "fuel": (7000.0, 1.2, True),
}


def _sig(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def draw_pois(
    people: np.ndarray,
    mu: np.ndarray,
    urban: np.ndarray,
    paved: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of true POIs per cell: returns (cell index repeated per POI, amenity code)."""
    cells, codes = [], []
    for code, (per, elasticity, town_only) in enumerate(AMENITIES.values()):
        lam = people / per * np.exp(elasticity * (mu - M0))
        if town_only:
            lam = lam * np.where(urban, 1.0, np.where(paved, 0.25, 0.0))
        n = rng.poisson(np.maximum(lam, 0.0))
        cells.append(np.repeat(np.arange(people.size), n))
        codes.append(np.full(int(n.sum()), code))
    return np.concatenate(cells), np.concatenate(codes).astype(np.int8)


def osm_pois(
    x: np.ndarray,
    y: np.ndarray,
    code: np.ndarray,
    mu: np.ndarray,
    urban: np.ndarray,
    frame: Frame,
    rng: np.random.Generator,
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """True POIs as a WGS84 GeoDataFrame with a ``mapped`` draw (returned separately)."""
    p = _sig(0.2 + 2.5 * (mu - M0) + 1.5 * urban)
    mapped = rng.random(x.size) < p
    names = np.array(list(AMENITIES), dtype=object)
    gdf = gpd.GeoDataFrame(
        {"osm_id": np.arange(1, x.size + 1, dtype=np.int64), "amenity": names[code]},
        geometry=shapely.points(x, y),
        crs=frame.crs,
    ).to_crs("EPSG:4326")
    return gdf, mapped


def osm_roads(
    roads: gpd.GeoDataFrame,
    mu_mid: np.ndarray,
    urban_mid: np.ndarray,
    outline: shapely.Geometry,
    rng: np.random.Generator,
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """The mapped part of the road network, clipped to the country, in WGS84.

    ``mu_mid``/``urban_mid`` are the cell mean and urban flag at each road's midpoint.
    Returns the OSM layer and the ``mapped`` flag of every true road.
    """
    cls = roads["highway"].to_numpy()
    a = np.select([cls == "tertiary", cls == "track"], [1.2, -0.4], 20.0)
    p = _sig(a + 3.0 * (mu_mid - M0) + 1.5 * urban_mid)
    mapped = rng.random(len(roads)) < p
    tagged = rng.random(len(roads)) < np.where(np.isin(cls, ["primary", "secondary"]), 0.95, 0.45)
    osm = roads.loc[mapped, ["highway", "surface", "geometry"]].copy()
    osm["surface"] = np.where(
        tagged[mapped],
        osm["surface"].map({"paved": "asphalt", "unpaved": "unpaved"}).to_numpy(),
        None,
    )
    osm["geometry"] = shapely.intersection(osm.geometry.to_numpy(), outline)
    osm = osm[~osm.geometry.is_empty].copy()
    osm.insert(0, "osm_id", np.arange(1, len(osm) + 1, dtype=np.int64))
    return gpd.GeoDataFrame(osm, geometry="geometry", crs=roads.crs).to_crs("EPSG:4326"), mapped


def road_midpoints(roads: gpd.GeoDataFrame) -> pd.DataFrame:
    """Midpoint coordinates of every road (for mapping completeness)."""
    mid = shapely.line_interpolate_point(roads.geometry.to_numpy(), 0.5, normalized=True)
    return pd.DataFrame({"x": shapely.get_x(mid), "y": shapely.get_y(mid)})
