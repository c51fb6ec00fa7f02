"""From cell embeddings to zone features: the overlap-weighted mean over the cells a zone hits.

A zone (a cluster buffer, or a grid cell itself) gets the mean of the embeddings of the
grid cells its polygon intersects, each weighted by the area of the intersection. Cells
without a valid embedding (imagery missing, cloudy) are left out and the weights of the
others renormalised; a zone with no valid cell gets NaN features (and ``valid`` 0), for the
downstream model's imputer. A grid cell used as a zone is its own single cell.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """``(zone index, ix, iy, area)`` of every (zone, cell) pair with a positive overlap."""
    geometries = np.asarray(geometries)
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
