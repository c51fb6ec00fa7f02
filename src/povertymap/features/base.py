"""Feature blocks and the zones they summarise.

A *zone* is a polygon in the working CRS with a unit id: a buffer around a survey cluster
(for training) or a grid cell (for rollout). A :class:`FeatureBlock` turns zones into a
DataFrame of named features indexed by the same ids. Blocks that learn from the whole
study area (the imagery CNN learns from nightlights over every cell) do it in ``fit``,
which never sees the survey target, so fitting them outside cross-validation leaks nothing.

Work is split into :class:`ZoneChunk` items, spatially compact groups of zones that share
one raster window, and mapped over by an :class:`~povertymap.engine.base.Engine`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from povertymap.engine.base import Engine, ProgressCallback

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["CHUNK_SIZE_M", "FeatureBlock", "ZoneChunk", "chunk_zones"]

#: Edge of the square tiles zones are grouped by: one raster window per tile keeps memory
#: bounded (a 32 km window of a 100 m raster is 320 x 320 pixels).
CHUNK_SIZE_M = 32_000.0


@dataclass(frozen=True)
class ZoneChunk:
    """Zones that are computed together: ids, polygons (working CRS) and their bounds."""

    ids: np.ndarray
    geometries: np.ndarray
    bounds: tuple[float, float, float, float]

    def __len__(self) -> int:
        return len(self.ids)


def chunk_zones(zones: gpd.GeoDataFrame, size_m: float = CHUNK_SIZE_M) -> list[ZoneChunk]:
    """Group zones by the ``size_m`` tile holding their centroid, in a stable order."""
    geoms = zones.geometry.values
    cx, cy = shapely.get_coordinates(shapely.centroid(geoms)).T
    keys = pd.DataFrame({"kx": np.floor(cx / size_m), "ky": np.floor(cy / size_m)})
    chunks = []
    for _, rows in keys.groupby(["ky", "kx"], sort=True).indices.items():
        g = np.asarray(geoms[rows])
        b = shapely.bounds(g)
        chunks.append(
            ZoneChunk(
                ids=zones.index.to_numpy()[rows],
                geometries=g,
                bounds=(b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()),
            )
        )
    return chunks


class FeatureBlock(ABC):
    """A named group of features computed from one kind of source.

    Subclasses set ``name`` (also the column prefix) and ``description`` (shown in the
    report), say which inputs they need in :meth:`is_available`, and compute features in
    :meth:`transform`. Blocks are stateless unless they learn in :meth:`fit`.
    """

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def is_available(self, area: StudyArea) -> bool:
        """Whether the study area has the inputs this block needs."""

    def fit(
        self, area: StudyArea, *, engine: Engine, progress: ProgressCallback | None = None
    ) -> FeatureBlock:
        """Learn from the study area's inputs (never the survey target). Default: nothing."""
        return self

    @abstractmethod
    def transform(
        self,
        area: StudyArea,
        zones: gpd.GeoDataFrame,
        *,
        engine: Engine,
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Features of ``zones``: one row per zone (same index), columns ``<name>_<feature>``."""
