"""The grid of cells the map is made of.

Cells are squares of ``cell_size`` metres in the working CRS, aligned to multiples of the
cell size, so the same CRS and size always give the same cells and ``cell_id`` values,
whatever the study area. Cell ``(ix, iy)`` covers ``[ix*s, (ix+1)*s) x [iy*s, (iy+1)*s)``
and its id is ``"{ix}_{iy}"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from pyproj import CRS

__all__ = ["GridLayout", "cell_ids", "cell_index", "make_grid"]


def cell_index(x: np.ndarray, y: np.ndarray, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer cell indices ``(ix, iy)`` of points with coordinates ``x, y``."""
    ix = np.floor(np.asarray(x, dtype=float) / cell_size).astype(np.int64)
    iy = np.floor(np.asarray(y, dtype=float) / cell_size).astype(np.int64)
    return ix, iy


def cell_ids(ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Stable string ids ``"{ix}_{iy}"`` of cells."""
    ix = np.asarray(ix, dtype=np.int64)
    iy = np.asarray(iy, dtype=np.int64)
    return np.char.add(np.char.add(ix.astype(str), "_"), iy.astype(str)).astype(object)


def make_grid(aoi: shapely.Geometry, crs: CRS, cell_size: float) -> gpd.GeoDataFrame:
    """Every cell of the aligned grid that overlaps ``aoi`` (touching only an edge is not enough).

    Returns a GeoDataFrame indexed by ``cell_id`` with columns ``ix``, ``iy``,
    ``aoi_fraction`` (share of the cell inside the AOI) and the cell square as geometry,
    ordered row by row from the north-west corner (raster order).
    """
    xmin, ymin, xmax, ymax = aoi.bounds
    ix0, iy0 = (int(v) for v in np.floor(np.array([xmin, ymin]) / cell_size))
    ix1, iy1 = (int(v) for v in np.ceil(np.array([xmax, ymax]) / cell_size))
    iys, ixs = np.meshgrid(np.arange(iy1 - 1, iy0 - 1, -1), np.arange(ix0, ix1), indexing="ij")
    ix, iy = ixs.ravel(), iys.ravel()
    boxes = shapely.box(ix * cell_size, iy * cell_size, (ix + 1) * cell_size, (iy + 1) * cell_size)
    shapely.prepare(aoi)
    touch = shapely.intersects(aoi, boxes)
    ix, iy, boxes = ix[touch], iy[touch], boxes[touch]
    # cells wholly inside are the bulk of a country: no intersection with its outline
    inside = np.ones(len(boxes))
    border = np.flatnonzero(~shapely.contains_properly(aoi, boxes))
    inside[border] = shapely.area(shapely.intersection(boxes[border], aoi)) / cell_size**2
    keep = inside > 0
    ix, iy, boxes, inside = ix[keep], iy[keep], boxes[keep], inside[keep]
    return gpd.GeoDataFrame(
        {"ix": ix, "iy": iy, "aoi_fraction": np.clip(inside, 0.0, 1.0)},
        geometry=boxes,
        index=pd.Index(cell_ids(ix, iy), name="cell_id"),
        crs=crs,
    )


@dataclass(frozen=True)
class GridLayout:
    """The raster layout of a set of cells: one cell per pixel, north-up."""

    ix0: int
    iy_top: int
    width: int
    height: int
    cell_size: float

    @classmethod
    def of(cls, ix: np.ndarray, iy: np.ndarray, cell_size: float) -> GridLayout:
        """The smallest layout holding cells ``(ix, iy)``."""
        ix0, ix1 = int(np.min(ix)), int(np.max(ix))
        iy0, iy1 = int(np.min(iy)), int(np.max(iy))
        return cls(ix0, iy1, ix1 - ix0 + 1, iy1 - iy0 + 1, float(cell_size))

    @property
    def transform(self) -> Affine:
        """Affine transform from pixel (col, row) to working-CRS coordinates."""
        return Affine(
            self.cell_size,
            0.0,
            self.ix0 * self.cell_size,
            0.0,
            -self.cell_size,
            (self.iy_top + 1) * self.cell_size,
        )

    def pixel(self, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of cells ``(ix, iy)`` in this layout."""
        return self.iy_top - np.asarray(iy), np.asarray(ix) - self.ix0
