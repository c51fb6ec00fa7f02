"""The raster frame of a synthetic country: its bounding box of grid cells and pixel grids.

Everything the simulator computes per cell lives on one array of shape ``(ny, nx)`` in
raster order (row 0 is the northern edge), covering the bounding box of the country in
whole cells aligned to multiples of the cell size, exactly as
:func:`povertymap.grid.make_grid` aligns them. Finer rasters (population, imagery)
share the same origin, so every cell is an exact block of pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer

__all__ = ["Block", "Frame"]


@dataclass(frozen=True)
class Block:
    """A processing window of whole cells: rows ``r0:r1`` and columns ``c0:c1`` of cells."""

    index: int
    bi: int
    bj: int
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of cells."""
        return self.r1 - self.r0, self.c1 - self.c0


@dataclass(frozen=True)
class Frame:
    """Bounding box of the country in cells, and the pixel grids derived from it."""

    crs: CRS
    cell_size: float
    ix0: int
    iy_top: int
    nx: int
    ny: int

    @classmethod
    def around(
        cls, crs: CRS, cell_size: float, lon: float, lat: float, width_m: float, height_m: float
    ) -> Frame:
        """The frame of whole cells covering a ``width_m`` x ``height_m`` box centred on lon/lat."""
        to_xy = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        xc, yc = to_xy.transform(lon, lat)
        ix0 = int(np.floor((xc - width_m / 2) / cell_size))
        ix1 = int(np.ceil((xc + width_m / 2) / cell_size))
        iy0 = int(np.floor((yc - height_m / 2) / cell_size))
        iy1 = int(np.ceil((yc + height_m / 2) / cell_size))
        return cls(crs, float(cell_size), ix0, iy1 - 1, ix1 - ix0, iy1 - iy0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in the working CRS."""
        s = self.cell_size
        return (
            self.ix0 * s,
            (self.iy_top + 1 - self.ny) * s,
            (self.ix0 + self.nx) * s,
            (self.iy_top + 1) * s,
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return self.ny, self.nx

    def transform(self, res: float | None = None) -> Affine:
        """Affine transform of a pixel grid of resolution ``res`` (default: the cells)."""
        res = self.cell_size if res is None else res
        xmin, _, _, ymax = self.bounds
        return Affine(res, 0.0, xmin, 0.0, -res, ymax)

    def centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre coordinates, arrays of shape ``(ny, nx)``."""
        xmin, _, _, ymax = self.bounds
        s = self.cell_size
        x = xmin + (np.arange(self.nx) + 0.5) * s
        y = ymax - (np.arange(self.ny) + 0.5) * s
        return np.meshgrid(x, y)

    def ix_iy(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid indices (ix, iy) of every cell, arrays of shape ``(ny, nx)``."""
        return np.meshgrid(self.ix0 + np.arange(self.nx), self.iy_top - np.arange(self.ny))

    def row_col(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the cells holding points x, y (may fall outside the frame)."""
        xmin, _, _, ymax = self.bounds
        col = np.floor((np.asarray(x) - xmin) / self.cell_size).astype(np.int64)
        row = np.floor((ymax - np.asarray(y)) / self.cell_size).astype(np.int64)
        return row, col

    def blocks(self, size: int) -> Iterator[Block]:
        """Windows of ``size`` x ``size`` cells in raster order (edge windows smaller)."""
        k = 0
        for bi, r0 in enumerate(range(0, self.ny, size)):
            for bj, c0 in enumerate(range(0, self.nx, size)):
                yield Block(k, bi, bj, r0, min(r0 + size, self.ny), c0, min(c0 + size, self.nx))
                k += 1

    def n_blocks(self, size: int) -> int:
        """Number of windows of ``size`` cells."""
        return -(-self.ny // size) * -(-self.nx // size)
