"""From cell embeddings to zone features: the overlap-weighted mean over the cells a zone hits.

A zone (a cluster buffer, or a grid cell itself) gets the mean of the embeddings of the
grid cells its polygon intersects, each weighted by the area of the intersection. Cells
without a valid embedding (imagery missing, cloudy) are left out and the weights of the
others renormalised; a zone with no valid cell gets NaN features (and ``valid`` 0), for the
downstream model's imputer. A grid cell used as a zone is its own single cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely

from povertymap.features.base import ZoneChunk
from povertymap.models.deep.store import EmbeddingStore

__all__ = [
    "ZoneEmbeddingKernel",
    "cell_context_zones",
    "cells_touched",
    "overlap_weights",
    "zone_means",
]


def _cell_ranges(
    geometries: np.ndarray, cell_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    b = shapely.bounds(geometries)
    eps = 1e-9 * cell_size  # a zone ending exactly on a cell edge does not reach the next cell
    ix0 = np.floor((b[:, 0] + eps) / cell_size).astype(np.int64)
    iy0 = np.floor((b[:, 1] + eps) / cell_size).astype(np.int64)
    ix1 = np.floor((b[:, 2] - eps) / cell_size).astype(np.int64)
    iy1 = np.floor((b[:, 3] - eps) / cell_size).astype(np.int64)
    return ix0, iy0, np.maximum(ix1, ix0), np.maximum(iy1, iy0)


def overlap_weights(
    geometries: np.ndarray, cell_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(zone index, ix, iy, area)`` of every (zone, cell) pair with a positive overlap.

    Pairs come zone by zone, and within a zone row by row (``iy`` then ``ix``). A map's
    neighbourhoods (64-sided disks centred on cell centres, see
    :func:`povertymap.features.build.neighbourhoods`) are read off one kernel per radius:
    the overlaps depend only on the radius and the cell offset, so there is no polygon
    intersection per zone (equal to the polygon path up to the rounding of translated
    coordinates, about 1e-14 relative). Other zones (cluster buffers) are intersected
    with the cells one by one.
    """
    geometries = np.asarray(geometries)
    radius = centred_disk_radius(geometries, cell_size)
    fast = np.isfinite(radius)
    zones, ixs, iys, areas = [], [], [], []
    if (~fast).any():
        slow = np.flatnonzero(~fast)
        z, ix, iy, a = _polygon_overlaps(geometries[slow], cell_size)
        zones.append(slow[z])
        ixs.append(ix)
        iys.append(iy)
        areas.append(a)
    if fast.any():
        centre = shapely.get_coordinates(shapely.centroid(geometries[fast]))
        cix = np.floor(centre[:, 0] / cell_size).astype(np.int64)
        ciy = np.floor(centre[:, 1] / cell_size).astype(np.int64)
        members_all = np.flatnonzero(fast)
        for r in np.unique(radius[fast]):
            dx, dy, a = _disk_offsets(float(r), float(cell_size))
            pick = radius[fast] == r
            zones.append(np.repeat(members_all[pick], dx.size))
            ixs.append(np.add.outer(cix[pick], dx).ravel())
            iys.append(np.add.outer(ciy[pick], dy).ravel())
            areas.append(np.tile(a, int(pick.sum())))
    if not zones:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0)
    zone = np.concatenate(zones)
    order = np.argsort(zone, kind="stable")  # each zone's pairs come from one part
    return (
        zone[order],
        np.concatenate(ixs)[order],
        np.concatenate(iys)[order],
        np.concatenate(areas)[order],
    )


def _polygon_overlaps(
    geometries: np.ndarray, cell_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`overlap_weights` by intersecting every zone with every cell of its bounds."""
    ix0, iy0, ix1, iy1 = _cell_ranges(geometries, cell_size)
    nx, ny = ix1 - ix0 + 1, iy1 - iy0 + 1
    counts = nx * ny
    zone = np.repeat(np.arange(len(geometries)), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    ix = ix0[zone] + k % nx[zone]
    iy = iy0[zone] + k // nx[zone]
    boxes = shapely.box(ix * cell_size, iy * cell_size, (ix + 1) * cell_size, (iy + 1) * cell_size)
    area = shapely.area(shapely.intersection(geometries[zone], boxes))
    keep = area > 1e-9 * cell_size**2
    return zone[keep], ix[keep], iy[keep], area[keep]


#: Segments per quarter circle of the neighbourhood disks (``shapely.buffer`` default).
DISK_QUAD_SEGS = 16


def centred_disk_radius(geometries: np.ndarray, cell_size: float) -> np.ndarray:
    """Radius of each zone that is a 64-sided disk centred on a cell centre; NaN otherwise.

    Recognised by shape: 65 coordinates, a square bounding box of side ``2 r`` centred on a
    cell centre, and the area of ``shapely.buffer(point, r, quad_segs=16)``.
    """
    geometries = np.asarray(geometries)
    out = np.full(len(geometries), np.nan)
    if len(geometries) == 0:
        return out
    b = shapely.bounds(geometries)
    r = np.round((b[:, 2] - b[:, 0]) / 2, 6)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    gx, gy = cx / cell_size - 0.5, cy / cell_size - 0.5
    tol = 1e-6
    candidate = (
        (shapely.get_type_id(geometries) == 3)
        & (shapely.get_num_coordinates(geometries) == 4 * DISK_QUAD_SEGS + 1)
        & (np.abs((b[:, 3] - b[:, 1]) / 2 - r) < tol * cell_size)
        & (np.abs(gx - np.round(gx)) < tol)
        & (np.abs(gy - np.round(gy)) < tol)
        & (r > 0)
    )
    if candidate.any():
        n = 4 * DISK_QUAD_SEGS  # a regular n-gon of circumradius r: n/2 r^2 sin(2 pi / n)
        area = shapely.area(geometries[candidate])
        expected = n / 2 * np.sin(2 * np.pi / n) * r[candidate] ** 2
        ok = np.abs(area - expected) <= 1e-9 * expected
        out[np.flatnonzero(candidate)[ok]] = r[candidate][ok]
    return out


@lru_cache(maxsize=32)
def _disk_offsets(radius: float, cell_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell offsets (row by row) and overlap areas (m²) of a disk centred on a cell centre."""
    m = int(np.ceil(radius / cell_size)) + 1
    dx, dy = (a.ravel() for a in np.meshgrid(np.arange(-m, m + 1), np.arange(-m, m + 1)))
    disk = shapely.buffer(
        shapely.Point(0.5 * cell_size, 0.5 * cell_size), radius, quad_segs=DISK_QUAD_SEGS
    )
    boxes = shapely.box(dx * cell_size, dy * cell_size, (dx + 1) * cell_size, (dy + 1) * cell_size)
    area = shapely.area(shapely.intersection(disk, boxes))
    keep = area > 1e-9 * cell_size**2
    out = (dx[keep], dy[keep], area[keep])
    for a in out:  # cached: shared by every call
        a.setflags(write=False)
    return out


def cells_touched(geometries: np.ndarray, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``(ix, iy)`` of the cells the zones overlap."""
    _, ix, iy, _ = overlap_weights(geometries, cell_size)
    if len(ix) == 0:
        return ix, iy
    pairs = np.unique(np.stack([ix, iy], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def zone_means(
    n_zones: int,
    zone: np.ndarray,
    weight: np.ndarray,
    cell_embeddings: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Overlap-weighted means of the valid (finite) cell embeddings per zone.

    ``zone``, ``weight`` and the rows of ``cell_embeddings`` describe the same (zone, cell)
    pairs. Returns ``(means (n_zones, dim), valid share of each zone's overlap)``; zones
    with no valid cell get NaN means.
    """
    emb = np.asarray(cell_embeddings, dtype=np.float64)
    ok = np.all(np.isfinite(emb), axis=1)
    w_all = np.bincount(zone, weights=weight, minlength=n_zones)
    w = np.where(ok, weight, 0.0)
    w_ok = np.bincount(zone, weights=w, minlength=n_zones)
    m = sp.csr_matrix((w, (zone, np.arange(len(zone)))), shape=(n_zones, len(zone)))
    sums = m @ np.where(ok[:, None], emb, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / w_ok[:, None]
        share = np.where(w_all > 0, w_ok / w_all, 0.0)
    means[w_ok <= 0] = np.nan
    return means, share


@dataclass(frozen=True)
class ZoneEmbeddingKernel:
    """Engine kernel: features of one :class:`ZoneChunk` from the embeddings on disk.

    Holds only paths and numbers, so it pickles to Spark executors; the embeddings of every
    cell the chunk touches must already be in the store.
    """

    store_root: Path
    dim: int
    block_cells: int
    cell_size: float
    prefix: str

    def columns(self) -> list[str]:
        """Output column names: ``<prefix>_<k>`` for each dimension, then ``<prefix>_valid``."""
        width = len(str(self.dim - 1))
        return [f"{self.prefix}_{k:0{width}d}" for k in range(self.dim)] + [f"{self.prefix}_valid"]

    def __call__(self, chunk: ZoneChunk) -> pd.DataFrame:
        """One row per zone of the chunk, indexed by its ids."""
        store = EmbeddingStore(self.store_root, self.dim, self.block_cells)
        zone, ix, iy, area = overlap_weights(chunk.geometries, self.cell_size)
        emb, _ = store.get(ix, iy)
        means, share = zone_means(len(chunk), zone, area, emb)
        values = np.concatenate([means, share[:, None]], axis=1)
        return pd.DataFrame(values, index=pd.Index(chunk.ids), columns=self.columns())


def cell_context_zones(cells: gpd.GeoDataFrame, radius_m: float) -> gpd.GeoDataFrame:
    """Each cell's square widened by ``radius_m`` on every side, same index and CRS.

    Features of a cell over these zones average the ``(1 + 2 r / s)^2`` cells around it,
    like the features of a cluster buffer of radius ``r``: use them at rollout when the
    model was trained on buffers, so training and prediction features have the same scale
    of smoothing (a single 1 km tile is much noisier than a 5 km buffer's mean).
    """
    geoms = shapely.buffer(cells.geometry.values, radius_m, cap_style="square", join_style="mitre")
    return gpd.GeoDataFrame(index=cells.index.copy(), geometry=geoms, crs=cells.crs)
