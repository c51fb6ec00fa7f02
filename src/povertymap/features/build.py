"""The feature registry and the function that builds a feature table for zones."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from povertymap.config import FeaturesConfig
from povertymap.engine.base import Engine, ProgressCallback
from povertymap.errors import ConfigError
from povertymap.features.base import FeatureBlock
from povertymap.features.nightlights import DARK_THRESHOLD, NightlightFeatures
from povertymap.features.population import POPULATION_SPEC
from povertymap.features.urban import UrbanRule, cluster_urban
from povertymap.features.zonal import zonal_stats
from povertymap.studyarea import cluster_buffers

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = [
    "BLOCKS",
    "CELL_BLOCK",
    "DEEP_BLOCKS",
    "FeatureSet",
    "build_cell_features",
    "build_features",
    "cell_facts",
    "compute_features",
    "fit_blocks",
    "make_blocks",
    "neighbourhoods",
]

log = logging.getLogger(__name__)

#: Feature blocks by name: ``module:class`` (imported when used, so heavy ones stay lazy).
BLOCKS: dict[str, str] = {
    "nl": "povertymap.features.nightlights:NightlightFeatures",
    "pop": "povertymap.features.population:PopulationFeatures",
    "img": "povertymap.features.imagery:ImageryFeatures",
    "osm": "povertymap.features.osm:OsmFeatures",
    "settle": "povertymap.features.settlements:SettlementFeatures",
    "rast": "povertymap.features.other_rasters:OtherRasterFeatures",
    "table": "povertymap.features.tables:TableFeatures",
    "cnn": "povertymap.features.embeddings:TransferCNNFeatures",
    "rcf": "povertymap.features.embeddings:RandomConvFeatures",
}
#: Blocks that train or convolve over all imagery: used only when listed in the config.
DEEP_BLOCKS = ("cnn", "rcf")


def block_class(name: str) -> type[FeatureBlock]:
    """The FeatureBlock class registered as ``name``."""
    if name not in BLOCKS:
        raise ConfigError(
            f"unknown feature block {name!r}",
            where="key features.blocks",
            fix=f"use some of: {', '.join(BLOCKS)}",
        )
    module, cls = BLOCKS[name].split(":")
    block: type[FeatureBlock] = getattr(importlib.import_module(module), cls)
    return block


def make_blocks(
    area: StudyArea, cfg: FeaturesConfig, *, for_map: bool = False, **extra: Any
) -> list[FeatureBlock]:
    """The feature blocks to compute for ``area``, configured from ``cfg.params``.

    Without ``cfg.blocks``, every non-deep block whose inputs exist is used (``table`` is
    left out when ``for_map``, since tables have no values for cells). A listed block whose
    inputs are missing is an error. ``extra`` keyword arguments (e.g. ``cache_dir``) go to
    blocks that accept them.
    """
    names = cfg.blocks
    explicit = names is not None
    if names is None:
        names = [n for n in BLOCKS if n not in DEEP_BLOCKS and not (for_map and n == "table")]
    blocks = []
    for name in names:
        cls = block_class(name)
        params = dict(cfg.params.get(name, {}))
        fields = getattr(cls, "__dataclass_fields__", {})
        params.update({k: v for k, v in extra.items() if k in fields and k not in params})
        try:
            block = cls(**params)
        except TypeError as exc:
            raise ConfigError(
                f"bad parameters for feature block {name!r}: {exc}",
                where=f"key features.params.{name}",
                fix=f"use the fields of {cls.__name__} (see its documentation)",
            ) from exc
        if block.is_available(area):
            blocks.append(block)
        elif explicit:
            raise ConfigError(
                f"feature block {name!r} needs inputs this study area does not have",
                where="key features.blocks",
                fix=f"add its inputs, or remove {name!r} from features.blocks",
            )
    if not blocks:
        raise ConfigError(
            "no feature block can be computed from this study area's inputs",
            where="key features",
            fix="add rasters, vectors or feature tables to the config",
        )
    return blocks


def fit_blocks(
    blocks: Sequence[FeatureBlock],
    area: StudyArea,
    *,
    engine: Engine,
    progress: ProgressCallback | None = None,
) -> None:
    """Fit every block on the study area (a no-op for stateless blocks)."""
    for block in blocks:
        block.fit(area, engine=engine, progress=progress)


def build_features(
    blocks: Sequence[FeatureBlock],
    area: StudyArea,
    zones: gpd.GeoDataFrame,
    *,
    engine: Engine,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """One feature table for ``zones``: the blocks' columns side by side, same index."""
    parts = []
    for block in blocks:
        part = block.transform(area, zones, engine=engine, progress=progress)
        if not part.index.equals(zones.index):
            part = part.reindex(zones.index)
        parts.append(part)
    table = pd.concat(parts, axis=1)
    dup = table.columns[table.columns.duplicated()]
    if len(dup):
        raise ConfigError(
            f"feature column {dup[0]!r} is produced twice",
            fix="rename the column in the feature table",
        )
    log.info("built %d features for %d zones", table.shape[1], len(table))
    return table.astype("float64")


@dataclass
class FeatureSet:
    """Feature tables for clusters (buffers) and, when mapping, for grid cells.

    Cell features are computed over each cell's *neighbourhood*, a disk of the cluster
    buffer radius (urban or rural by the cell's class) centred on the cell, so a feature
    means the same for a cell as for a survey cluster. ``cell_facts`` holds what is about
    the cell itself: its population, urban flag and whether it is dark at night.
    """

    blocks: list[FeatureBlock]
    clusters: pd.DataFrame
    cells: pd.DataFrame | None = None
    cell_facts: pd.DataFrame | None = None
    urban_rule: UrbanRule | None = None
    """The rule that classed cells and clusters urban (None without a population raster)."""


def compute_features(
    area: StudyArea,
    *,
    for_map: bool,
    engine: Engine,
    progress: ProgressCallback | None = None,
    **block_options: Any,
) -> FeatureSet:
    """Fit the configured feature blocks and build the cluster (and cell) feature tables."""
    cfg = area.config.features
    radii = {"urban": cfg.buffer_m.urban, "rural": cfg.buffer_m.rural}
    blocks = make_blocks(area, cfg, for_map=for_map, **block_options)
    fit_blocks(blocks, area, engine=engine, progress=progress)
    facts = (
        cell_facts(area, engine=engine, progress=progress)
        if for_map or "population" in area.rasters
        else None
    )
    rule: UrbanRule | None = facts.attrs.get("urban_rule") if facts is not None else None
    # one rule picks the buffer radius of clusters and cells (see .urban); without a
    # population raster there is no rule and clusters keep their survey flag
    flags = (
        None
        if facts is None or rule is None
        else cluster_urban(area.clusters, facts["urban"], area.cell_size)
    )
    buffers = cluster_buffers(area.clusters, radii, urban=flags)
    clusters = build_features(blocks, area, buffers, engine=engine, progress=progress)
    if not for_map:
        return FeatureSet(blocks, clusters, cell_facts=facts, urban_rule=rule)
    assert facts is not None  # computed for maps
    cells = build_cell_features(
        blocks, area, facts["urban"], radii, engine=engine, progress=progress
    )
    return FeatureSet(blocks, clusters, cells, facts, rule)


#: Grid cells featurised together by :func:`build_cell_features`: bounds the memory of
#: the neighbourhood disks, overlap weights and intermediate tables (a few hundred MB)
#: whatever the size of the country.
CELL_BLOCK = 25_000


def build_cell_features(
    blocks: Sequence[FeatureBlock],
    area: StudyArea,
    urban: pd.Series,
    radii: dict[str, float],
    *,
    engine: Engine,
    progress: ProgressCallback | None = None,
    cells_per_block: int = CELL_BLOCK,
) -> pd.DataFrame:
    """The feature table of every grid cell, seen through its :func:`neighbourhoods`.

    Cells are featurised :data:`CELL_BLOCK` at a time, in grid order (row bands from the
    north-west), so memory holds one band's disks and weights, not the country's; a cell's
    features depend on its own neighbourhood only, and the per-cell raster sums are cached
    on the study area, so the table is the same as in one pass.
    """
    if cells_per_block < 1:
        raise ConfigError(
            f"cells_per_block must be >= 1, got {cells_per_block}",
            fix="give a positive number of cells per block",
        )
    grid = area.grid
    parts = []
    for start in range(0, len(grid), cells_per_block):
        zones = neighbourhoods(grid.iloc[start : start + cells_per_block], urban, radii)
        parts.append(build_features(blocks, area, zones, engine=engine, progress=progress))
    if not parts:
        return build_features(
            blocks, area, neighbourhoods(grid, urban, radii), engine=engine, progress=progress
        )
    return pd.concat(parts) if len(parts) > 1 else parts[0]


def neighbourhoods(
    grid: gpd.GeoDataFrame, urban: pd.Series, radii: dict[str, float]
) -> gpd.GeoDataFrame:
    """Disks centred on each cell, of the urban or rural cluster-buffer radius."""
    radius = np.where(
        urban.reindex(grid.index).fillna(False).to_numpy(bool), radii["urban"], radii["rural"]
    )
    centres = shapely.centroid(grid.geometry.values)
    return gpd.GeoDataFrame(
        {"radius_m": radius},
        geometry=shapely.buffer(centres, radius, quad_segs=16),
        index=grid.index,
        crs=grid.crs,
    )


def cell_facts(
    area: StudyArea,
    *,
    engine: Engine,
    progress: ProgressCallback | None = None,
    rule: UrbanRule | None = None,
) -> pd.DataFrame:
    """Per grid cell: ``population``, ``urban`` (by ``rule``, fitted on the area's survey
    when None; see :mod:`.urban`) and ``dark`` (own-cell mean radiance below the
    nightlight floor), each where the inputs exist. The rule used is
    ``facts.attrs["urban_rule"]``."""
    grid = area.grid
    facts = pd.DataFrame(index=grid.index)
    if "population" in area.rasters:
        # people of the cell's part inside the area, summed exactly (not from cell sums):
        # border cells do not count neighbours, nor lose their own people
        inside = grid.set_geometry(_inside_aoi(grid, area.aoi))
        people = zonal_stats(
            area.rasters["population"],
            inside,
            POPULATION_SPEC,
            engine=engine,
            label="population",
            progress=progress,
        )
        facts["population"] = people["pop_sum"].fillna(0.0)
        rule = rule or UrbanRule.fit(area, facts["population"])
        facts["urban"] = rule.cells(area, facts["population"])
        facts.attrs["urban_rule"] = rule
    else:
        facts["population"] = 0.0
        facts["urban"] = False
    if "nightlights" in area.rasters:
        own = NightlightFeatures().transform(area, grid, engine=engine, progress=progress)
        facts["dark"] = (own["nl_mean"] < DARK_THRESHOLD).to_numpy()
    return facts


def _inside_aoi(grid: gpd.GeoDataFrame, aoi: shapely.Geometry) -> np.ndarray:
    """Each cell's part inside ``aoi``: the cell itself where it lies wholly inside
    (``aoi_fraction`` 1), the intersection only for border cells (the costly part of a
    country outline with many vertices)."""
    geoms = np.array(grid.geometry.values, dtype=object)
    fraction = (
        grid["aoi_fraction"].to_numpy(dtype=float)
        if "aoi_fraction" in grid
        else np.zeros(len(grid))
    )
    border = np.flatnonzero(fraction < 1.0)
    if border.size:
        geoms[border] = shapely.intersection(geoms[border], aoi)
    return geoms
