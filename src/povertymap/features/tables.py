"""Precomputed features from the config's tables, joined to survey clusters by key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import geopandas as gpd
import pandas as pd

from povertymap.engine.base import Engine, ProgressCallback
from povertymap.errors import ConfigError
from povertymap.features.base import FeatureBlock

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["TableFeatures"]


@dataclass
class TableFeatures(FeatureBlock):
    """The columns of every feature table, prefixed ``table_`` (``table_<column>``).

    Tables hold one row per survey cluster, so they serve cross-validation (``evaluate``);
    they have no values for grid cells, so a map cannot be made from them.
    """

    name: ClassVar[str] = "table"
    description: ClassVar[str] = "precomputed features from the config's tables"

    def is_available(self, area: StudyArea) -> bool:
        """Needs at least one table in the config."""
        return bool(area.tables)

    def transform(
        self,
        area: StudyArea,
        zones: gpd.GeoDataFrame,
        *,
        engine: Engine,
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Table rows of the zones (which must be survey clusters)."""
        joined = pd.concat(area.tables, axis=1)
        missing = ~zones.index.isin(joined.index)
        if missing.any():
            raise ConfigError(
                f"feature tables have no rows for {int(missing.sum())} of the zones "
                f"(first: {zones.index[missing][0]!r}); tables describe survey clusters, "
                "not grid cells",
                where="key tables",
                fix="use `povertymap evaluate` for table-only features, or list the blocks "
                "to map with under features.blocks without 'table'",
            )
        return joined.loc[zones.index].add_prefix("table_")
