"""Proxy labels: mean nightlight radiance per grid cell, and intensity classes from it.

The transfer CNN learns from labels that exist for every cell for free: the mean
nightlight radiance over the cell. Nightlights are read through the study area's reader
warped to the working CRS (``RasterSource.reader(crs=area.crs)``), block by block, and
averaged over each cell by area (see :func:`cell_means`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from povertymap.io.raster import WindowReader
from povertymap.models.deep.tiles import cell_blocks

__all__ = ["LightClasses", "cell_means", "light_classes"]


def cell_means(
    reader: WindowReader,
    cell_size: float,
    ix: np.ndarray,
    iy: np.ndarray,
    *,
    block_cells: int = 32,
) -> np.ndarray:
    """Area-weighted mean of the first band over each cell (NaN where nothing is valid).

    The cell is sampled on a regular ``k x k`` lattice of points (``k`` about twice the
    number of pixels across a cell, 2 to 16) and the values of the pixels holding them are
    averaged: the exact area-weighted mean up to the lattice step, whether pixels are
    smaller than cells (VIIRS 460 m in 1 km cells) or larger. Masked pixels are left out.
    """
    ix = np.asarray(ix, dtype=np.int64)
    iy = np.asarray(iy, dtype=np.int64)
    out = np.full(len(ix), np.nan)
    for idx in cell_blocks(ix, iy, block_cells):
        bix, biy = ix[idx], iy[idx]
        bounds = (
            float(bix.min() * cell_size),
            float(biy.min() * cell_size),
            float((bix.max() + 1) * cell_size),
            float((biy.max() + 1) * cell_size),
        )
        win = reader.read(bounds, bands=[1])
        band = win.data[0]
        t = win.transform  # north-up: GDAL warps to north-up grids
        k = int(np.clip(np.ceil(2 * cell_size / min(abs(t.a), abs(t.e))), 2, 16))
        offsets = (np.arange(k) + 0.5) / k * cell_size
        px = bix[:, None, None] * cell_size + offsets[None, None, :]  # (n, 1, k)
        py = (biy[:, None, None] + 1) * cell_size - offsets[None, :, None]  # (n, k, 1)
        col = np.floor((px - t.c) / t.a).astype(np.int64)
        row = np.floor((py - t.f) / t.e).astype(np.int64)
        col, row = np.broadcast_arrays(col, row)
        rows, cols = band.shape
        inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
        r, c = np.clip(row, 0, rows - 1), np.clip(col, 0, cols - 1)
        ok = inside & ~np.ma.getmaskarray(band)[r, c]
        values = np.where(ok, np.ma.getdata(band)[r, c], 0.0).astype(np.float64)
        n_ok = ok.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[idx] = np.where(n_ok > 0, values.sum(axis=(1, 2)) / np.maximum(n_ok, 1), np.nan)
    return out


@dataclass(frozen=True)
class LightClasses:
    """Nightlight classes: dark (0) <= ``dark_max`` < dim (1) <= ``dim_max`` < bright (2)."""

    dark_max: float
    dim_max: float

    def classify(self, radiance: np.ndarray) -> np.ndarray:
        """Class of each radiance (int64; NaN radiance gets -1)."""
        r = np.asarray(radiance, dtype=float)
        out = np.where(r <= self.dark_max, 0, np.where(r <= self.dim_max, 1, 2)).astype(np.int64)
        out[~np.isfinite(r)] = -1
        return out


def light_classes(radiance: np.ndarray) -> LightClasses:
    """Tercile thresholds of cell radiance, robust to the mass of unlit cells.

    Most cells of a poor country are below the detection floor and share one value, so
    the terciles tie: then ``dark`` is every cell at that value and the lit cells are split
    at their median into ``dim`` and ``bright``.
    """
    r = np.asarray(radiance, dtype=float)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return LightClasses(0.0, 0.0)
    t1, t2 = (float(v) for v in np.quantile(r, [1 / 3, 2 / 3]))
    if t2 <= t1:
        lit = r[r > t1]
        t2 = float(np.median(lit)) if len(lit) else t1
    return LightClasses(t1, t2)
