"""Loaded maps and their atomic hot swap.

A :class:`LoadedMap` is one run directory made ready to serve: its model, its cells and
admin areas in WGS 84 (the gated public tables and the full ones), the tile layers of its
``map.tif``, a spatial index for point queries, and its version
(``<run_id>+<first 12 hex of the model's digest>``, sent as ``X-Model-Version``). It is
immutable once built: a request takes the map once and uses that object to the end.

:class:`MapRegistry` holds the maps served. A reload builds the new version beside the
old one, runs its self-test (:func:`self_test`), and only then replaces the registry's
mapping in one assignment (TF Serving's order: load the new version before the old is
let go). Requests in flight keep the object they took and finish on it; the old version
is freed when the last of them ends. A failed load or self-test leaves the old version
serving.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from povertymap.errors import RunDirError
from povertymap.io.serve_store import MapRaster, read_map_bands
from povertymap.io.vector import read_vector
from povertymap.rundir import RunDirectory, open_run
from povertymap.serve.errors import Conflict, NotFound

if TYPE_CHECKING:
    from povertymap.mapping import MappingModel
    from povertymap.serve.metrics import ServiceMetrics

__all__ = ["LoadedMap", "MapRegistry", "TileCache", "load_map", "model_version", "self_test"]

#: Columns of an admin area in the API, in order (present ones only).
ADMIN_COLUMNS = (
    "admin_id",
    "admin_name",
    "parent_id",
    "population",
    "map_population",
    "n_cells",
    "estimate",
    "lower",
    "upper",
    "poverty_rate",
    "poverty_lower",
    "poverty_upper",
    "fh_mean",
    "fh_mean_lower",
    "fh_mean_upper",
    "fh_mean_cv",
    "fh_poverty",
    "fh_poverty_lower",
    "fh_poverty_upper",
    "fh_poverty_cv",
    "cv",
    "publish",
    "reason",
)
#: Columns of a cell in the API (analyst cells; public points use the gated cells).
CELL_COLUMNS = (
    "admin_id",
    "parent_id",
    "urban",
    "population",
    "estimate",
    "lower",
    "upper",
    "poverty_rate",
    "poverty_lower",
    "poverty_upper",
)
#: How many zoom levels below the raster's own resolution tiles are still rendered.
ZOOM_BELOW_NATIVE = 4
#: Tile layers: name -> colormap.
LAYERS = {"estimate": "viridis", "poverty": "magma_r", "uncertainty": "cividis"}


def model_version(run: RunDirectory) -> str:
    """``<run_id>+<12 hex>``: the run id and the digest of the model's files in the manifest."""
    files = run.manifest.get("files", {})
    listing = "\n".join(
        f"{rel}:{meta.get('sha256', '')}"
        for rel, meta in sorted(files.items())
        if rel.startswith("model/")
    )
    return f"{run.run_id}+{hashlib.sha256(listing.encode()).hexdigest()[:12]}"


def _clean(value: Any) -> Any:
    """A JSON-safe scalar (NaN and missing become None)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if math.isnan(float(value)) else float(value)
    return value if not (isinstance(value, str) and value == "") else None


def _properties(frame: pd.DataFrame, columns: Iterable[str], id_name: str) -> list[dict[str, Any]]:
    present = [c for c in columns if c in frame.columns and c != id_name]
    out = []
    for key, row in zip(frame.index, frame[present].itertuples(index=False), strict=True):
        props = {id_name: str(key)}
        props.update({c: _clean(v) for c, v in zip(present, row, strict=True)})
        out.append(props)
    return out


def feature_collection(
    gdf: gpd.GeoDataFrame, columns: Iterable[str], id_name: str
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of ``gdf`` (WGS 84) with ``columns`` as properties."""
    geoms = shapely.to_geojson(np.asarray(gdf.geometry.values), indent=None)
    features = [
        {"type": "Feature", "id": props[id_name], "geometry": json.loads(g), "properties": props}
        for g, props in zip(geoms, _properties(gdf, columns, id_name), strict=True)
    ]
    return {"type": "FeatureCollection", "features": features}


class TileCache:
    """A bounded LRU of rendered tiles (None marks a tile outside the map)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], bytes | None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> tuple[bool, bytes | None]:
        """``(found, value)``."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return True, self._items[key]
            self.misses += 1
            return False, None

    def put(self, key: tuple[Any, ...], value: bytes | None) -> None:
        """Keep ``value`` (the least recent tile goes when full)."""
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass
class LoadedMap:
    """One run directory, ready to serve (see the module docstring)."""

    name: str
    run: RunDirectory
    version: str
    model: MappingModel
    cells: gpd.GeoDataFrame
    public_cells: gpd.GeoDataFrame
    admin: dict[str, Any]
    public_admin: dict[str, Any]
    raster: MapRaster
    ranges: dict[str, tuple[float, float]]
    bounds: tuple[float, float, float, float]
    loaded_at: float
    tiles: TileCache
    min_zoom: int = 0
    """Tiles below this zoom are refused: warping a whole country into a few pixels costs
    seconds, and a cell is under a pixel there anyway."""
    legend: dict[str, Any] = field(default_factory=dict)
    """What a map's reader needs to read the values: ``target`` (the survey variable of the
    estimates), ``poverty_line``, ``level`` (the intervals' coverage) and
    ``household_methods`` (pmt and hybrid targeting are possible)."""
    _registry: list[pd.DataFrame | None] = field(default_factory=list)
    _rows: dict[bool, list[dict[str, Any]]] = field(default_factory=dict)
    _registry_lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/maps`` says of this map."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run.run_id,
            "kind": self.run.kind,
            "created": self.run.manifest.get("created"),
            "bounds": list(self.bounds),
            "n_cells": len(self.cells),
            "n_admin": len(self.admin["features"]),
            "layers": [layer for layer in LAYERS if layer in self.raster.layers],
            "min_zoom": self.min_zoom,
            "headcounts": "poverty_rate" in self.cells,
            "loaded_at": self.loaded_at,
            "tile_bounds": [float(v) for v in self.raster.bounds_wgs84()],
            "ranges": {k: [float(v) for v in r] for k, r in self.ranges.items()},
            "colormaps": {k: LAYERS[k] for k in self.ranges if k in LAYERS},
            **self.legend,
        }

    def cell_at(self, lon: float, lat: float, *, public: bool = True) -> dict[str, Any] | None:
        """The cell holding ``(lon, lat)`` (None outside every cell)."""
        table = self.public_cells if public else self.cells
        hits = table.sindex.query(shapely.Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        rows = self._rows.get(public)
        if rows is None:  # computed once per version (a benign race: both agree)
            rows = _properties(table, CELL_COLUMNS, "cell_id")
            self._rows[public] = rows
        return dict(rows[int(np.min(hits))])

    def cells_in(self, bbox: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
        """Cells intersecting ``bbox`` (west, south, east, north)."""
        hits = self.cells.sindex.query(shapely.box(*bbox), predicate="intersects")
        return self.cells.iloc[np.sort(hits)]

    def registry(self) -> pd.DataFrame | None:
        """The run's household registry (read once, on the first household plan)."""
        with self._registry_lock:
            if not self._registry:
                from povertymap.io.survey import read_registry

                cfg = self.run.config()
                self._registry.append(read_registry(cfg.registry) if cfg.registry else None)
            return self._registry[0]


def _wgs84(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if gdf.crs is None:
        raise RunDirError("a run table has no CRS; re-run `povertymap run` to rewrite it")
    return gdf.to_crs(4326)


def _range(values: np.ndarray, lo_q: float = 2, hi_q: float = 98) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [lo_q, hi_q]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _layers(
    run: RunDirectory, cells: gpd.GeoDataFrame
) -> tuple[MapRaster, dict[str, tuple[float, float]]]:
    """The tile layers: estimate and uncertainty (upper - lower) from ``map.tif``, and the
    poverty headcount rasterised from the cells onto the same grid."""
    from povertymap.predict.rollout import cells_to_raster

    bands = read_map_bands(run.path / "map.tif")
    if "estimate" not in bands.bands:
        raise RunDirError(f"{run.path / 'map.tif'} has no estimate band; re-run `povertymap run`")
    est = bands.bands["estimate"]
    layers = {"estimate": est}
    ranges = {"estimate": _range(est)}
    if "lower" in bands.bands and "upper" in bands.bands:
        width = bands.bands["upper"] - bands.bands["lower"]
        layers["uncertainty"] = width
        ranges["uncertainty"] = (0.0, _range(width)[1])
    if "poverty_rate" in cells and {"ix", "iy"} <= set(cells.columns):
        data, layout = cells_to_raster(cells, ["poverty_rate"], abs(bands.transform.a))
        if data.shape[1:] == est.shape and layout.transform.almost_equals(bands.transform):
            layers["poverty"] = data[0]
            ranges["poverty"] = (0.0, 1.0)
    return MapRaster.build(layers, bands.crs, bands.transform), ranges


def _legend(run: RunDirectory, m: LoadedMap) -> dict[str, Any]:
    """See :attr:`LoadedMap.legend` (from the run's config and metrics)."""
    config = run.config_data()
    metrics = run.metrics() if run.has("metrics.json") else {}
    line = (metrics.get("poverty_line") or {}).get("value")
    level = (metrics.get("estimate") or {}).get("level")
    target = ((config.get("survey") or {}).get("clusters") or {}).get("target")
    return {
        "target": str(target) if target else None,
        "poverty_line": _clean(line),
        "level": _clean(level),
        "household_methods": bool(config.get("registry"))
        and getattr(m.model, "pmt_", None) is not None,
    }


def load_map(path: str | Path, *, tile_cache_size: int = 1024) -> LoadedMap:
    """Read a run directory into a :class:`LoadedMap` (nothing is served from disk later)."""
    run = open_run(path)
    name = str(run.config_data().get("name") or run.run_id)
    cells = run.cells()
    public_cells = (
        read_vector(run.path / "public" / "cells.parquet")
        if run.has("public/cells.parquet")
        else cells[[c for c in CELL_COLUMNS if c in cells] + ["geometry"]]
    )
    if public_cells.index.name != "cell_id" and "cell_id" in public_cells:
        public_cells = public_cells.set_index("cell_id")
    admin = run.admin()
    public_admin = (
        read_vector(run.path / "public" / "admin.gpkg", layer="admin").set_index("admin_id")
        if run.has("public/admin.gpkg")
        else admin
    )
    raster, ranges = _layers(run, cells)
    cells_ll = _wgs84(cells)
    public_ll = _wgs84(public_cells)
    for table in (cells_ll, public_ll):
        table.sindex  # noqa: B018 - built now: building it lazily is not thread-safe
    loaded = LoadedMap(
        name=name,
        run=run,
        version=model_version(run),
        model=run.model(),
        cells=cells_ll,
        public_cells=public_ll,
        admin=feature_collection(_wgs84(admin), ADMIN_COLUMNS, "admin_id"),
        public_admin=feature_collection(_wgs84(public_admin), ADMIN_COLUMNS, "admin_id"),
        raster=raster,
        ranges=ranges,
        bounds=tuple(float(v) for v in cells_ll.total_bounds),  # type: ignore[arg-type]
        loaded_at=time.time(),
        tiles=TileCache(tile_cache_size),
        min_zoom=max(0, raster.native_zoom() - ZOOM_BELOW_NATIVE),
    )
    loaded.legend = _legend(run, loaded)
    loaded._rows[True] = _properties(public_ll, CELL_COLUMNS, "cell_id")
    loaded._rows[False] = _properties(cells_ll, CELL_COLUMNS, "cell_id")
    return loaded


def self_test(m: LoadedMap) -> list[str]:
    """Problems that keep ``m`` from serving (empty when it may be swapped in): files that
    differ from the manifest, a model that gives no finite estimate for its own training
    rows, a cell centre that finds no cell, a map centre that renders no tile."""
    from povertymap.serve.tiles import render_tile, tile_of

    problems = [f"file {p}" for p in m.run.verify()]
    try:
        rows = m.model.training_X_.head(3)
        out = m.model.predict_features(rows)
        if not np.isfinite(out["estimate"].to_numpy(float)).all():
            problems.append("the model gives non-finite estimates for its training rows")
    except Exception as exc:  # the self-test reports every failure as a problem
        problems.append(f"the model cannot predict ({type(exc).__name__})")
    if len(m.cells) == 0:
        problems.append("the map has no cells")
    else:
        centre = m.cells.geometry.iloc[0].representative_point()
        if m.cell_at(centre.x, centre.y, public=False) is None:
            problems.append("a cell's own centre finds no cell")
        z = 8
        x, y = tile_of(centre.x, centre.y, z)
        if render_tile(m, "estimate", z, x, y) is None:
            problems.append("the map renders no tile at its first cell")
    return problems


Loader = Callable[[Path], LoadedMap]


class MapRegistry:
    """The maps served, by name, with atomic reloads (see the module docstring)."""

    def __init__(
        self,
        maps: Iterable[LoadedMap],
        *,
        loader: Loader | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._maps: Mapping[str, LoadedMap] = {}
        by_name: dict[str, LoadedMap] = {}
        for m in maps:
            if m.name in by_name:
                raise RunDirError(
                    f"two runs map the study area {m.name!r}; serve one run per study area"
                )
            by_name[m.name] = m
        self._maps = by_name
        self._loader: Loader = loader or (lambda p: load_map(p))
        self._locks = {name: threading.Lock() for name in by_name}
        self.metrics = metrics
        self.ready = True

    def attach(self, metrics: ServiceMetrics) -> None:
        """Report the served versions to ``metrics``."""
        self.metrics = metrics
        for m in self._maps.values():
            metrics.model_served(m.name, m.version, m.loaded_at)
        metrics.ready.set(1 if self.ready else 0)

    def names(self) -> list[str]:
        """The maps' names, sorted."""
        return sorted(self._maps)

    def all(self) -> list[LoadedMap]:
        """Every map, by name."""
        snapshot = self._maps
        return [snapshot[n] for n in sorted(snapshot)]

    def get(self, name: str) -> LoadedMap:
        """The map ``name`` as it is now; raises :class:`NotFound`."""
        m = self._maps.get(name)
        if m is None:
            raise NotFound("no map of that name is served; GET /v1/maps lists them")
        return m

    def reload(self, name: str, path: Path | None = None) -> tuple[LoadedMap, LoadedMap]:
        """Load ``path`` (default: the map's own run directory again) beside the map
        served, self-test it, and swap it in; returns ``(old, new)``. Raises
        :class:`Conflict` (the old version keeps serving) when it fails."""
        old = self.get(name)
        with self._locks[name]:
            try:
                new = self._loader(path or old.run.path)
            except Exception as exc:
                self._count(name, "failed")
                raise Conflict(
                    "the new version could not be loaded; the current version keeps serving"
                ) from exc
            problems = [] if new.name == name else ["it maps another study area"]
            problems += self_test(new)
            if problems:
                self._count(name, "failed")
                raise Conflict(
                    "the new version failed its self-test; the current version keeps serving"
                )
            self._maps = {**self._maps, name: new}  # one assignment: the swap
            if self.metrics is not None:
                self.metrics.model_served(name, new.version, new.loaded_at)
            self._count(name, "swapped")
            return old, new

    def _count(self, name: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.swaps.labels(name, outcome).inc()
