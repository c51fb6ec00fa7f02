"""The study area: every input of a config loaded, checked and put in one working CRS.

:func:`load_study_area` is the one place where the inputs meet. It reads the admin
boundaries (whose union is the area of interest), the survey, the vector layers and the
feature tables into memory, opens the rasters lazily (they are read by windows later),
reprojects vectors to the working CRS and checks that the pieces agree: clusters inside the
area, households linked to clusters, table keys that exist in the survey.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from povertymap.config import (
    BoundariesConfig,
    CensusConfig,
    ClustersConfig,
    StudyAreaConfig,
    TableConfig,
    VectorConfig,
)
from povertymap.engine.base import ProgressCallback
from povertymap.errors import ConfigError, InputError, InputWarning, SurveyError, VectorError
from povertymap.grid import make_grid
from povertymap.io.dhs import read_dhs
from povertymap.io.raster import RasterSource, open_raster
from povertymap.io.survey import read_clusters, read_households, read_tabular, row_label
from povertymap.io.tables import read_feature_table
from povertymap.io.vector import is_osm, osm_tag, read_vector

__all__ = [
    "DEFAULT_BUFFER_M",
    "StudyArea",
    "cluster_buffers",
    "load_study_area",
    "utm_crs_for",
]

log = logging.getLogger(__name__)

#: Buffer radii around survey clusters: the DHS displacement caps (urban 2 km, rural 5 km),
#: so a buffer still covers the true location of all but the 1% of rural clusters moved
#: up to 10 km.
DEFAULT_BUFFER_M = {"urban": 2000.0, "rural": 5000.0}


@dataclass(frozen=True, eq=False)
class StudyArea:
    """Inputs of one study area in the working CRS (rasters stay on disk, opened lazily)."""

    config: StudyAreaConfig
    crs: CRS
    admin: gpd.GeoDataFrame | None
    """Admin units indexed by ``admin_id``, columns ``admin_name``, ``parent_id`` (None when
    the config has no boundaries: enough for cross-validation, not for a map)."""
    clusters: gpd.GeoDataFrame
    """Survey clusters indexed by ``cluster_id``, point geometry in the working CRS, with
    the ``admin_id`` (and ``parent_id``) of the unit holding each point when boundaries exist."""
    households: pd.DataFrame | None = None
    rasters: dict[str, RasterSource] = field(default_factory=dict)
    vectors: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    """Vector layers in the working CRS with their class column renamed to ``class``."""
    tables: list[pd.DataFrame] = field(default_factory=list)
    """Cluster feature tables indexed by ``cluster_id``."""
    census: pd.DataFrame | None = None
    """Population (and households) per admin unit, indexed by ``admin_id``."""
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    """Derived data shared by stages (e.g. per-cell raster sums), keyed by its producer."""

    @property
    def name(self) -> str:
        """The study area's name from the config."""
        return self.config.name

    @property
    def cell_size(self) -> float:
        """Grid cell edge in metres."""
        return self.config.grid.cell_size_m

    def require_admin(self) -> gpd.GeoDataFrame:
        """The admin units, or a ConfigError saying that a map needs boundaries."""
        if self.admin is None:
            raise ConfigError(
                "the config has no boundaries, so there is no area to map",
                path=self.config.base_dir,
                where="key boundaries",
                fix="add boundaries: {path: ..., id: ...} (admin units tiling the area)",
            )
        return self.admin

    @cached_property
    def aoi(self) -> shapely.Geometry:
        """Area of interest: the union of the admin units."""
        return shapely.union_all(self.require_admin().geometry.values)

    @cached_property
    def grid(self) -> gpd.GeoDataFrame:
        """Cells overlapping the AOI, with the ``admin_id`` holding most of each cell."""
        cells = make_grid(self.aoi, self.crs, self.cell_size)
        cells["admin_id"] = assign_admin(cells, self.require_admin())
        return cells

    def cluster_buffers(self, radii: dict[str, float] | None = None) -> gpd.GeoDataFrame:
        """Buffers around survey clusters (see :func:`cluster_buffers`)."""
        return cluster_buffers(self.clusters, radii)


def cluster_buffers(
    clusters: gpd.GeoDataFrame,
    radii: dict[str, float] | None = None,
    *,
    urban: np.ndarray | None = None,
) -> gpd.GeoDataFrame:
    """Circles around clusters: ``radii['urban']`` for urban ones, ``radii['rural']`` else.

    Features are averaged over these buffers, never read at the (displaced) point.
    ``urban`` is the class of each cluster (the map's rule at its cell, see
    :func:`povertymap.features.urban.cluster_urban`); by default the survey's flag, and
    the rural radius without one.
    """
    radii = {**DEFAULT_BUFFER_M, **(radii or {})}
    if urban is None:
        urban = (
            clusters["urban"].to_numpy(bool)
            if "urban" in clusters
            else np.zeros(len(clusters), bool)
        )
    radius = np.where(urban, radii["urban"], radii["rural"])
    out = clusters[[]].copy()
    out["radius_m"] = radius
    return gpd.GeoDataFrame(
        out,
        geometry=shapely.buffer(clusters.geometry.values, radius, quad_segs=16),
        crs=clusters.crs,
    )


def assign_admin(cells: gpd.GeoDataFrame, admin: gpd.GeoDataFrame) -> pd.Series:
    """For each cell the admin unit covering most of it (centroid test where unambiguous)."""
    units = gpd.GeoDataFrame(
        {"admin_id": admin.index.to_numpy()}, geometry=admin.geometry.values, crs=admin.crs
    )
    centroids = gpd.GeoDataFrame(geometry=cells.geometry.centroid, crs=cells.crs)
    hit = gpd.sjoin(centroids, units, predicate="within", how="inner")
    hit = hit[~hit.index.duplicated(keep=False)]
    out = pd.Series(hit["admin_id"], index=cells.index, dtype=object)
    edge = out.isna() | (cells["aoi_fraction"] < 1).to_numpy()
    if edge.any():
        pairs = gpd.sjoin(cells.loc[edge, ["geometry"]], units, predicate="intersects")
        overlap = shapely.area(
            shapely.intersection(
                pairs.geometry.values, units.geometry.values[pairs["index_right"].to_numpy()]
            )
        )
        best = (
            pairs.assign(overlap=overlap)
            .reset_index(names="cell_id")
            .sort_values(["cell_id", "overlap"], ascending=[True, False], kind="stable")
            .drop_duplicates("cell_id")
        )
        out.loc[best["cell_id"].to_numpy()] = best["admin_id"].to_numpy()
    return out


def utm_crs_for(geometry_lonlat: shapely.Geometry) -> CRS:
    """The WGS84 UTM zone CRS containing the centroid of a lon/lat geometry."""
    c = geometry_lonlat.centroid
    infos = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(c.x, c.y, c.x, c.y)
    )
    if not infos:
        raise ConfigError(
            f"no UTM zone found for the area centred on ({c.x:.3f}, {c.y:.3f})",
            fix="set crs: in the config to a projected CRS in metres",
        )
    return CRS.from_epsg(int(infos[0].code))


def load_study_area(cfg: StudyAreaConfig, progress: ProgressCallback | None = None) -> StudyArea:
    """Load every input the config names, check them, and project them to the working CRS."""
    steps = ["boundaries", "survey", "rasters", "vectors", "tables"]

    def step(i: int) -> None:
        if progress is not None:
            progress(f"loading {steps[i]}" if i < len(steps) else "loaded", i, len(steps))

    step(0)
    admin = None
    if cfg.boundaries is not None:
        admin_raw = read_vector(cfg.boundaries.path, layer=cfg.boundaries.layer)
        crs = _working_crs(cfg, admin_raw)
        admin = _admin_units(admin_raw.to_crs(crs), cfg.boundaries)

    step(1)
    raw_clusters, dhs_households = _read_survey(cfg)
    if admin is None:
        points = gpd.GeoDataFrame(
            geometry=gpd.points_from_xy(raw_clusters["lon"], raw_clusters["lat"]), crs=4326
        )
        crs = _working_crs(cfg, points)
    clusters = _clusters_in_area(
        raw_clusters, cfg.survey.clusters, admin, crs, cfg.survey.max_outside_m
    )
    households = None
    if dhs_households is not None:  # linked to the clusters by read_dhs
        households = dhs_households[dhs_households["cluster_id"].isin(clusters.index)]
    elif cfg.survey.households is not None:
        households = read_households(cfg.survey.households, clusters.index)

    step(2)
    rasters = {
        name: open_raster(r.path, nodata=r.nodata, band_names=r.bands)
        for name, r in cfg.rasters.items()
    }

    step(3)
    vectors = {
        name: _vector_layer(read_vector(v.path, layer=v.layer).to_crs(crs), v, name)
        for name, v in cfg.vectors.items()
    }

    step(4)
    tables = [_cluster_table(t, clusters.index, i) for i, t in enumerate(cfg.tables)]
    census = _census(cfg.census, admin) if cfg.census is not None else None
    step(5)
    return StudyArea(
        config=cfg,
        crs=crs,
        admin=admin,
        clusters=clusters,
        households=households,
        rasters=rasters,
        vectors=vectors,
        tables=tables,
        census=census,
    )


def _read_survey(cfg: StudyAreaConfig) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The canonical clusters table, and the households when they come with it (DHS)."""
    if cfg.survey.dhs is not None:
        dhs = read_dhs(cfg.survey.dhs, person_weighted=cfg.estimate.person_weighted)
        return dhs.clusters, dhs.households
    return read_clusters(cfg.survey.clusters), None


def _vector_layer(gdf: gpd.GeoDataFrame, v: VectorConfig, name: str) -> gpd.GeoDataFrame:
    """The layer with its class column renamed to ``class``.

    In an OSM extract the class tag may sit in ``other_tags`` (the OSM driver gives only
    common tags their own column), and a layer holds every kind of feature (``lines`` has
    rivers and railways beside roads): features without the class tag are left out.
    """
    if v.class_ is None:
        return gdf
    osm = is_osm(v.path)
    if v.class_ not in gdf.columns and osm and "other_tags" in gdf.columns:
        gdf = gdf.assign(**{v.class_: osm_tag(gdf["other_tags"], v.class_)})
    if v.class_ not in gdf.columns:
        raise VectorError(
            f"class column {v.class_!r} is missing (columns: {', '.join(gdf.columns)})",
            path=v.path,
            where=f"column {v.class_!r}",
            fix=f"set vectors.{name}.class to an existing column",
        )
    if osm:
        tagged = gdf[v.class_].notna().to_numpy()
        if not tagged.any():
            raise VectorError(
                f"no feature of layer {v.layer!r} has a {v.class_!r} tag (as a column or in "
                "other_tags)",
                path=v.path,
                where=f"layer {v.layer!r}",
                fix=f"check vectors.{name}.layer (lines for roads, points or multipolygons "
                f"for amenities) and vectors.{name}.class",
            )
        log.info(
            "%s: %d of %d features of layer %s have a %s tag and are kept",
            v.path, int(tagged.sum()), len(gdf), v.layer, v.class_,
        )  # fmt: skip
        gdf = gdf[tagged]
    return gdf.rename(columns={v.class_: "class"})


def _working_crs(cfg: StudyAreaConfig, layer: gpd.GeoDataFrame) -> CRS:
    """The configured CRS, checked, or the UTM zone of ``layer``'s centroid."""
    if cfg.crs is None:
        crs = utm_crs_for(shapely.union_all(layer.to_crs(4326).geometry.values))
        log.info("working CRS not set; using %s (UTM zone of the area's centroid)", crs.name)
        return crs
    try:
        crs = CRS.from_user_input(cfg.crs)
    except Exception as exc:
        raise ConfigError(
            f"{cfg.crs!r} is not a CRS",
            path=cfg.base_dir,
            where="key crs",
            fix="use an EPSG code such as EPSG:32736",
        ) from exc
    if not crs.is_projected or crs.axis_info[0].unit_name not in ("metre", "meter"):
        raise ConfigError(
            f"working CRS {cfg.crs} is not projected in metres",
            where="key crs",
            fix="use a projected CRS in metres (e.g. the UTM zone), or remove crs: to pick one",
        )
    return crs


def _admin_units(admin: gpd.GeoDataFrame, b: BoundariesConfig) -> gpd.GeoDataFrame:
    cols = {b.id: "admin_id"}
    if b.name:
        cols[b.name] = "admin_name"
    if b.parent:
        cols[b.parent] = "parent_id"
    missing = [c for c in cols if c not in admin.columns]
    if missing:
        raise VectorError(
            f"column {missing[0]!r} is missing (columns: {', '.join(admin.columns)})",
            path=b.path,
            where=f"column {missing[0]!r}",
            fix="set boundaries.id/name/parent to existing columns",
        )
    out = admin[[*cols, admin.geometry.name]].rename(columns=cols)
    out["admin_id"] = out["admin_id"].astype(str)
    dup = out["admin_id"].duplicated()
    if dup.any():
        raise VectorError(
            f"admin id {out['admin_id'][dup].iloc[0]!r} appears more than once",
            path=b.path,
            where=f"column {b.id!r}",
            fix="dissolve the parts into one feature per unit (multipolygons are fine)",
        )
    if "parent_id" in out:
        out["parent_id"] = out["parent_id"].astype(str)
    return out.set_index("admin_id")


def _clusters_in_area(
    df: pd.DataFrame,
    ccfg: ClustersConfig,
    admin: gpd.GeoDataFrame | None,
    crs: CRS,
    max_outside_m: float,
) -> gpd.GeoDataFrame:
    """Clusters as points in the working CRS, each in an admin unit.

    A cluster up to ``max_outside_m`` outside the units is kept (with one warning that
    counts them) and assigned to the nearest unit; one farther out is refused, with a hint
    when swapping lat and lon would bring the clusters inside.
    """
    pts = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["lon"], df["lat"]), crs=4326)
    pts = pts.to_crs(crs)
    if admin is None:
        return pts.set_index("cluster_id")
    aoi = shapely.union_all(admin.geometry.values)
    shapely.prepare(aoi)
    # displaced DHS points near lakes, coasts and coarse borders fall outside the polygons:
    # within the largest displacement they are the area's clusters (kept, on the nearest unit)
    tolerance = max(max_outside_m, 1.0)  # metres: points on the outline are inside
    inside = shapely.dwithin(aoi, pts.geometry.values, tolerance)
    near = inside & ~shapely.dwithin(aoi, pts.geometry.values, 1.0)
    if near.any():
        far = float(shapely.distance(aoi, pts.geometry.values[near]).max())
        warnings.warn(
            f"{ccfg.path.name}: {int(near.sum())} of {len(df)} clusters lie outside the "
            f"admin units by up to {far / 1000:.1f} km (within the {max_outside_m / 1000:g} "
            "km of DHS displacement): kept, each in its nearest unit",
            InputWarning,
            stacklevel=4,
        )
    if not inside.all():
        swapped = gpd.GeoSeries(gpd.points_from_xy(df["lat"], df["lon"]), crs=4326).to_crs(crs)
        swapped_inside = shapely.dwithin(aoi, swapped.values, tolerance)
        first = int(np.flatnonzero(~inside)[0])
        row = df.iloc[first]
        fix = (
            f"lat/lon look swapped (swapping them puts {int(swapped_inside.sum())} of "
            f"{len(df)} clusters inside): exchange lat: and lon: in survey.clusters"
            if swapped_inside.sum() > inside.sum()
            else "check the coordinates, or remove clusters that belong to another area"
        )
        raise SurveyError(
            f"{int((~inside).sum())} of {len(df)} clusters lie more than "
            f"{max_outside_m / 1000:g} km outside the study area "
            f"(first: {row['cluster_id']!r} at lon {row['lon']:.5f}, lat {row['lat']:.5f})",
            path=ccfg.path,
            where=row_label(ccfg.path, df.index[first]),
            fix=fix,
        )
    units = gpd.GeoDataFrame(
        {"admin_id": admin.index.to_numpy()}, geometry=admin.geometry.values, crs=admin.crs
    )
    located = gpd.sjoin_nearest(pts[["geometry"]], units, how="left")
    located = located[~located.index.duplicated(keep="first")]
    pts["admin_id"] = located["admin_id"]
    if "parent_id" in admin:
        pts["parent_id"] = admin["parent_id"].reindex(pts["admin_id"]).to_numpy()
    return pts.set_index("cluster_id")


def _cluster_table(t: TableConfig, cluster_ids: pd.Index, i: int) -> pd.DataFrame:
    table = read_feature_table(t)
    unknown = ~table.index.isin(cluster_ids)
    if unknown.any():
        raise InputError(
            f"{int(unknown.sum())} key(s) are not survey cluster ids "
            f"(first: {table.index[unknown][0]!r})",
            path=t.path,
            where=f"column {t.key!r}",
            fix="feature tables join to survey clusters: keep only rows of surveyed clusters",
        )
    missing = ~cluster_ids.isin(table.index)
    if missing.any():
        raise InputError(
            f"{int(missing.sum())} survey cluster(s) have no row "
            f"(first: {cluster_ids[missing][0]!r})",
            path=t.path,
            where=f"tables[{i}]",
            fix="add a row for every cluster, or remove those clusters from the survey",
        )
    return table


def _census(c: CensusConfig, admin: gpd.GeoDataFrame) -> pd.DataFrame:
    df = read_tabular(c.path)
    cols = {c.id: "admin_id", c.population: "population"}
    if c.households:
        cols[c.households] = "households"
    missing = [k for k in cols if k not in df.columns]
    if missing:
        raise InputError(
            f"column {missing[0]!r} is missing",
            path=c.path,
            where=f"column {missing[0]!r}",
            fix="set census.id/population/households to existing columns",
        )
    cols_inv = {v: k for k, v in cols.items()}
    df = df[list(cols)].rename(columns=cols)
    df["admin_id"] = df["admin_id"].astype(str)
    for col in ("population", "households"):
        if col in df:
            values = pd.to_numeric(df[col], errors="coerce")
            if values.isna().any() or (values < 0).any():
                bad = df[col][values.isna() | (values < 0)].iloc[0]
                raise InputError(
                    f"value {bad!r} is not a non-negative number",
                    path=c.path,
                    where=f"column {cols_inv[col]!r}",
                    fix="census counts must be numbers >= 0",
                )
            df[col] = values
    unknown = ~df["admin_id"].isin(admin.index)
    if unknown.any():
        raise InputError(
            f"admin id {df['admin_id'][unknown].iloc[0]!r} is not in the boundaries",
            path=c.path,
            where=f"column {c.id!r}",
            fix="use the boundaries' admin ids",
        )
    return df.set_index("admin_id")
