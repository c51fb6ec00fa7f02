"""Generic statistics for rasters without a dedicated block (elevation, rainfall, ...).

Every raster in the config whose name is not ``nightlights``, ``population`` or
``imagery`` gets the mean and spread of each band over each zone, so no input the user
listed is silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd

from povertymap.config.study import RASTER_ROLES
from povertymap.engine.base import Engine, ProgressCallback
from povertymap.features.base import FeatureBlock
from povertymap.features.zonal import ZonalSpec, ratio, zone_sums

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["OtherRasterFeatures"]


def _moments(data: np.ma.MaskedArray) -> dict[str, np.ndarray]:
    out = {}
    for b in range(data.shape[0]):
        v = np.ma.filled(data[b].astype(np.float64), np.nan)
        out[f"b{b + 1}"] = v
        out[f"b{b + 1}_sq"] = v**2
    return out


@dataclass
class OtherRasterFeatures(FeatureBlock):
    """Mean and standard deviation of every band of every other raster.

    Columns: ``rast_<raster>_<band>_mean`` and ``..._std`` (band names from the config or
    the file, else ``band1``...).
    """

    name: ClassVar[str] = "rast"
    description: ClassVar[str] = "mean and spread of the bands of other rasters"

    def is_available(self, area: StudyArea) -> bool:
        """Needs a raster that no other block reads."""
        return any(n not in RASTER_ROLES for n in area.rasters)

    def transform(
        self,
        area: StudyArea,
        zones: gpd.GeoDataFrame,
        *,
        engine: Engine,
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Band means and spreads per zone, for each other raster."""
        out = pd.DataFrame(index=zones.index)
        for name, source in area.rasters.items():
            if name in RASTER_ROLES:
                continue
            sums = zone_sums(
                area,
                f"cell-sums:rast:{name}",
                source,
                ZonalSpec(_moments),
                zones,
                engine=engine,
                progress=progress,
            )
            for b, band in enumerate(source.band_names, start=1):
                n = sums[f"b{b}_count"]
                mean = ratio(sums[f"b{b}_sum"], n)
                out[f"rast_{name}_{band}_mean"] = mean
                out[f"rast_{name}_{band}_std"] = np.sqrt(
                    np.clip(ratio(sums[f"b{b}_sq_sum"], n) - mean**2, 0.0, None)
                )
        return out
