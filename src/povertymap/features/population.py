"""Population features: how many people live in a zone and how densely."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd

from povertymap.engine.base import Engine, ProgressCallback
from povertymap.features.zonal import RasterFeatureBlock, ZonalSpec, zone_sums
from povertymap.io.raster import RasterSource

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["POPULATION_SPEC", "PopulationFeatures", "population_sum"]

#: One additive layer: people per pixel.
POPULATION_SPEC = ZonalSpec(
    layers=lambda data: {"pop": np.ma.filled(data[0].astype(np.float64), np.nan)}, bands=(1,)
)


def population_sum(
    area: StudyArea,
    zones: gpd.GeoDataFrame,
    *,
    engine: Engine,
    progress: ProgressCallback | None = None,
) -> pd.Series:
    """People in each zone: the exact-coverage sum of the ``population`` raster (counts).

    Nodata in a population raster marks land where nobody is counted (outside the
    country, water), so it adds nothing.
    """
    sums = zone_sums(
        area,
        "cell-sums:pop",
        area.rasters["population"],
        POPULATION_SPEC,
        zones,
        engine=engine,
        progress=progress,
    )
    return sums["pop_sum"].rename("population")


@dataclass
class PopulationFeatures(RasterFeatureBlock):
    """People per zone and per km² (``pop_sum``, ``pop_density``, ``pop_log_density``)."""

    name: ClassVar[str] = "pop"
    description: ClassVar[str] = "population count and density from the population raster"
    raster: ClassVar[str] = "population"

    def spec(self, source: RasterSource) -> ZonalSpec:
        """One layer: people per pixel."""
        return POPULATION_SPEC

    def finish(self, sums: pd.DataFrame, km2: np.ndarray) -> pd.DataFrame:
        """Count and density."""
        total = sums["pop_sum"].to_numpy()
        density = total / km2
        return pd.DataFrame(
            {"pop_sum": total, "pop_density": density, "pop_log_density": np.log1p(density)},
            index=sums.index,
        )
