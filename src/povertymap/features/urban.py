"""The map's urban rule: which grid cells, and which survey clusters, count as urban.

Cluster buffers and cell neighbourhoods take the urban or the rural radius, so the class
that picks the radius must be the same rule for both. The survey's own urban flag cannot
be that rule: the map has no such flag for its cells, and a model trained on features
whose buffer radius follows the survey flag learns the flag itself (the radius changes
every count and density feature), which cross-validation credits and the map cannot
use. Measured on the robustness worlds, featurising clusters by the survey flag left the
map's urban cells over-predicted by 0.13-0.25 (0.8-1.7 model-error sd) and their
intervals covering 0.68-0.85.

The rule is a threshold on population density (people per km² over a cell and its 8
neighbours, which absorbs the displacement of urban clusters), chosen to best reproduce
the survey's flags at the clusters (balanced accuracy); without an urban flag in the
survey, the Degree of Urbanisation decides (towns and cities). A fitted rule is kept by
the model and applied unchanged to any other area it maps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy import ndimage

from povertymap.features.settlements import TOWN, urbanisation_classes
from povertymap.grid import GridLayout, cell_ids, cell_index

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["UrbanRule", "cluster_urban"]


@dataclass(frozen=True)
class UrbanRule:
    """A density threshold (people per km²), or the Degree of Urbanisation when None."""

    people_per_km2: float | None = None
    balanced_accuracy: float | None = None
    """Agreement with the survey's flags at the clusters it was fitted on."""

    @property
    def kind(self) -> str:
        return "degree of urbanisation" if self.people_per_km2 is None else "survey-matched density"

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` and ``model.json`` record of the rule."""
        return {"kind": self.kind, **{k: v for k, v in asdict(self).items() if v is not None}}

    @classmethod
    def fit(cls, area: StudyArea, population: pd.Series) -> UrbanRule:
        """The threshold that best reproduces the survey's urban flags (balanced accuracy)."""
        if "urban" not in area.clusters or len(area.clusters) == 0:
            return cls()
        density = _density(area, population)
        at_clusters = (
            density.reindex(_cell_of(area.clusters, area.cell_size)).fillna(0.0).to_numpy()
        )
        flags = area.clusters["urban"].to_numpy(bool)
        best_t, best_score = np.inf, -1.0
        for t in np.unique(at_clusters):
            called = at_clusters >= t
            tpr = called[flags].mean() if flags.any() else 1.0
            tnr = (~called[~flags]).mean() if (~flags).any() else 1.0
            if (score := (tpr + tnr) / 2) > best_score:
                best_t, best_score = float(t), float(score)
        return cls(best_t, best_score)

    def cells(self, area: StudyArea, population: pd.Series) -> pd.Series:
        """Urban flag of every grid cell of ``area`` by this rule."""
        if self.people_per_km2 is None:
            return (urbanisation_classes(area, population) >= TOWN).rename("urban")
        return (_density(area, population) >= self.people_per_km2).rename("urban")


def cluster_urban(
    clusters: gpd.GeoDataFrame, urban_cells: pd.Series, cell_size: float
) -> np.ndarray:
    """The map's urban flag at each cluster (its cell's, from ``urban_cells``), so that
    clusters and cells are featurised by one rule; a cluster outside every grid cell keeps
    its survey flag (rural without one)."""
    at = urban_cells.reindex(_cell_of(clusters, cell_size))
    survey = (
        clusters["urban"].to_numpy(bool) if "urban" in clusters else np.zeros(len(clusters), bool)
    )
    return np.where(at.notna().to_numpy(), at.eq(True).to_numpy(), survey)


def _cell_of(points: gpd.GeoDataFrame, cell_size: float) -> np.ndarray:
    ix, iy = cell_index(points.geometry.x.to_numpy(), points.geometry.y.to_numpy(), cell_size)
    return cell_ids(ix, iy)


def _density(area: StudyArea, population: pd.Series) -> pd.Series:
    """People per km² over each cell and its 8 neighbours."""
    grid = area.grid
    layout = GridLayout.of(grid["ix"].to_numpy(), grid["iy"].to_numpy(), area.cell_size)
    rows, cols = layout.pixel(grid["ix"].to_numpy(), grid["iy"].to_numpy())
    raster = np.zeros((layout.height, layout.width))
    raster[rows, cols] = population.reindex(grid.index).fillna(0.0).to_numpy()
    km2 = (area.cell_size / 1000) ** 2
    smooth = ndimage.uniform_filter(raster, size=3, mode="constant") / km2
    return pd.Series(smooth[rows, cols], index=grid.index)
