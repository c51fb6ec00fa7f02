"""OpenStreetMap features: roads by class and points of interest by class.

Road density and distance to a paved road measure market access; schools, clinics,
markets and banks measure services. OSM is less complete in poor rural areas, which is
itself a signal (and a bias the report should mention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from povertymap.engine.base import Engine, ProgressCallback
from povertymap.errors import ModelError
from povertymap.features.base import FeatureBlock, ZoneChunk, chunk_zones

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["ROAD_CLASSES", "OsmFeatures", "road_class"]

#: OSM ``highway`` values grouped into four classes (links count with their road).
ROAD_CLASSES: dict[str, tuple[str, ...]] = {
    "primary": ("motorway", "trunk", "primary"),
    "secondary": ("secondary", "tertiary"),
    "minor": ("unclassified", "residential", "service", "living_street", "road"),
    "track": ("track", "path", "footway", "bridleway"),
}
MAX_POI_CLASSES = 12  # most frequent POI classes kept as separate columns


def road_class(highway: pd.Series) -> pd.Series:
    """Map OSM ``highway`` values to ``primary/secondary/minor/track`` (else ``other``)."""
    base = highway.astype(str).str.lower().str.removesuffix("_link")
    lookup = {v: k for k, values in ROAD_CLASSES.items() for v in values}
    return base.map(lookup).fillna("other")


@dataclass
class OsmFeatures(FeatureBlock):
    """Road length and density by class, distance to a primary road, POI counts by class.

    Columns: ``osm_road_km_<class>``, ``osm_road_density`` (km per km²),
    ``osm_dist_primary_km``, ``osm_poi_<class>`` (count), ``osm_poi_density`` (per km²),
    ``osm_dist_poi_<class>_km``.
    """

    name: ClassVar[str] = "osm"
    description: ClassVar[str] = "OSM road length/density by class, POI counts, distances"
    poi_classes_: list[str] | None = None

    def is_available(self, area: StudyArea) -> bool:
        """Needs a ``roads`` or ``pois`` vector layer."""
        return "roads" in area.vectors or "pois" in area.vectors

    def fit(
        self, area: StudyArea, *, engine: Engine, progress: ProgressCallback | None = None
    ) -> OsmFeatures:
        """Fix the POI classes (the most frequent ones) so every zone set gets the same columns."""
        self.poi_classes_ = []
        if "pois" in area.vectors and "class" in area.vectors["pois"]:
            counts = area.vectors["pois"]["class"].astype(str).value_counts()
            self.poi_classes_ = sorted(counts.index[:MAX_POI_CLASSES])
        return self

    def transform(
        self,
        area: StudyArea,
        zones: gpd.GeoDataFrame,
        *,
        engine: Engine,
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """OSM features per zone."""
        if self.poi_classes_ is None:
            raise ModelError(
                "OsmFeatures.transform called before fit",
                fix="call fit(area) first (the pipeline does)",
            )
        out = pd.DataFrame(index=zones.index)
        km2 = zones.geometry.area.to_numpy() / 1e6
        centroids = shapely.centroid(zones.geometry.values)
        if "roads" in area.vectors:
            roads = area.vectors["roads"]
            classes = (
                road_class(roads["class"])
                if "class" in roads
                else pd.Series("other", index=roads.index)
            )
            lines = roads.geometry.values
            tree = shapely.STRtree(lines)

            def kernel(chunk: ZoneChunk) -> pd.DataFrame:
                return _road_lengths(chunk, lines, classes.to_numpy(), tree)

            lengths = engine.map(kernel, chunk_zones(zones), label="roads", progress=progress)
            lengths = lengths.reindex(zones.index).fillna(0.0)
            for cls in ROAD_CLASSES:
                out[f"osm_road_km_{cls}"] = lengths.get(cls, 0.0)
            out["osm_road_density"] = lengths.sum(axis=1).to_numpy() / km2
            primary = lines[(classes == "primary").to_numpy()]
            if len(primary):
                out["osm_dist_primary_km"] = _nearest_km(centroids, primary)
        if "pois" in area.vectors:
            pois = area.vectors["pois"]
            points = shapely.centroid(pois.geometry.values)
            pclass = pois["class"].astype(str).to_numpy() if "class" in pois else None
            pairs = shapely.STRtree(points).query(zones.geometry.values, predicate="intersects")
            zone_of, poi_of = pairs
            total = np.bincount(zone_of, minlength=len(zones)).astype(float)
            out["osm_poi_density"] = total / km2
            for cls in self.poi_classes_:
                hit = pclass[poi_of] == cls if pclass is not None else np.zeros(len(poi_of), bool)
                out[f"osm_poi_{cls}"] = np.bincount(zone_of[hit], minlength=len(zones))
                out[f"osm_dist_poi_{cls}_km"] = _nearest_km(centroids, points[pclass == cls])
        return out


def _road_lengths(
    chunk: ZoneChunk, lines: np.ndarray, classes: np.ndarray, tree: shapely.STRtree
) -> pd.DataFrame:
    """Kilometres of road of each class inside each zone of the chunk."""
    zone_idx, line_idx = tree.query(chunk.geometries, predicate="intersects")
    km = shapely.length(shapely.intersection(lines[line_idx], chunk.geometries[zone_idx])) / 1e3
    table = pd.DataFrame({"zone": chunk.ids[zone_idx], "cls": classes[line_idx], "km": km})
    wide = table.pivot_table(index="zone", columns="cls", values="km", aggfunc="sum")
    return wide.reindex(chunk.ids).fillna(0.0)


def _nearest_km(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Distance in km from each point to the nearest of (at least one) target geometries."""
    tree = shapely.STRtree(targets)
    idx, dist = tree.query_nearest(points, return_distance=True, all_matches=False)
    out = np.full(len(points), np.nan)
    out[idx[0]] = dist / 1e3
    return out
