"""Settlement features: distance to the nearest city and town, and the degree of urbanisation.

Cities and towns are found from the population grid with the Degree of Urbanisation
method (Eurostat/UN 2020, used by GHSL): an *urban centre* is a set of contiguous 1 km²
cells with at least 1,500 people/km² and 50,000 people in all; an *urban cluster* (town)
has at least 300 people/km² and 5,000 people. Only the population raster is needed, so
the features exist wherever a map can be made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree

from povertymap.engine.base import Engine, ProgressCallback
from povertymap.features.base import FeatureBlock
from povertymap.features.population import population_sum
from povertymap.grid import GridLayout, cell_ids, cell_index

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = [
    "CITY",
    "RURAL",
    "TOWN",
    "SettlementFeatures",
    "degree_of_urbanisation",
    "urbanisation_classes",
]

RURAL, TOWN, CITY = 0, 1, 2


def degree_of_urbanisation(population: np.ndarray, cell_km2: float) -> np.ndarray:
    """Class per cell of a population grid (rows, cols): 0 rural, 1 urban cluster, 2 centre.

    Urban centres use 4-connectivity and urban clusters 8-connectivity, as in the method.
    """
    density = np.nan_to_num(population) / cell_km2
    out = np.zeros(population.shape, dtype=np.int8)
    for cls, min_density, min_pop, structure in (
        (TOWN, 300.0, 5_000.0, np.ones((3, 3))),
        (CITY, 1_500.0, 50_000.0, ndimage.generate_binary_structure(2, 1)),
    ):
        labels, n = ndimage.label(density >= min_density, structure=structure)
        if n == 0:
            continue
        totals = ndimage.sum(np.nan_to_num(population), labels, index=np.arange(1, n + 1))
        big = np.flatnonzero(totals >= min_pop) + 1
        out[np.isin(labels, big)] = cls
    return out


def urbanisation_classes(area: StudyArea, population: pd.Series) -> pd.Series:
    """Degree-of-urbanisation class of every grid cell, from its population."""
    grid = area.grid
    layout = GridLayout.of(grid["ix"].to_numpy(), grid["iy"].to_numpy(), area.cell_size)
    raster = np.zeros((layout.height, layout.width))
    rows, cols = layout.pixel(grid["ix"].to_numpy(), grid["iy"].to_numpy())
    raster[rows, cols] = population.reindex(grid.index).fillna(0.0).to_numpy()
    classes = degree_of_urbanisation(raster, (area.cell_size / 1000) ** 2)
    return pd.Series(classes[rows, cols], index=grid.index, dtype="int8", name="settle_class")


@dataclass
class SettlementFeatures(FeatureBlock):
    """Distance to the nearest urban centre and cluster, and the zone's urbanisation class.

    Columns: ``settle_dist_city_km``, ``settle_dist_town_km`` (town = urban cluster or
    centre), ``settle_class`` (0 rural, 1 town, 2 city, of the cell holding the centroid).
    The classes are computed from the study area being mapped (cached on it), so a saved
    model applied to a new area measures distances to that area's towns.
    """

    name: ClassVar[str] = "settle"
    description: ClassVar[str] = "distance to cities and towns (degree of urbanisation)"

    def is_available(self, area: StudyArea) -> bool:
        """Needs a ``population`` raster and admin boundaries (to make the grid)."""
        return "population" in area.rasters and area.admin is not None

    def transform(
        self,
        area: StudyArea,
        zones: gpd.GeoDataFrame,
        *,
        engine: Engine,
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Distances (km) from zone centroids to the nearest city and town cell centres."""
        classes: pd.Series | None = area.cache.get("settle-classes")
        if classes is None:
            pop = population_sum(area, area.grid, engine=engine, progress=progress)
            classes = area.cache["settle-classes"] = urbanisation_classes(area, pop)
        xy = shapely.get_coordinates(shapely.centroid(zones.geometry.values))
        ix, iy = cell_index(xy[:, 0], xy[:, 1], area.cell_size)
        out = pd.DataFrame(index=zones.index)
        for name, min_class in (("city", CITY), ("town", TOWN)):
            out[f"settle_dist_{name}_km"] = _distance_km(classes, xy, min_class, area.cell_size)
        out["settle_class"] = classes.reindex(cell_ids(ix, iy)).fillna(RURAL).to_numpy(float)
        return out


def _distance_km(
    classes: pd.Series, xy: np.ndarray, min_class: int, cell_size: float
) -> np.ndarray:
    """Distance from each point to the centre of the nearest cell of at least ``min_class``."""
    cells = classes[classes >= min_class].index
    if len(cells) == 0:
        return np.full(len(xy), np.nan)
    parts = np.array([c.split("_") for c in cells], dtype=np.int64)
    dist, _ = cKDTree((parts + 0.5) * cell_size).query(xy)
    return np.asarray(dist) / 1e3
