"""Which grid cells belong to the country, and which admin unit holds each pixel.

The grid is the pipeline's: :func:`povertymap.grid.make_grid` applied to the union
of the admin polygons after the same WGS84 round trip the pipeline makes when it reads
``admin.geojson`` into the working CRS, so ``truth/cells.parquet`` joins the pipeline's
cells exactly. A population pixel is *habitable* when its centre lies inside the country;
its admin-2 unit is the one holding its centre. Cells wholly inside one unit are resolved
at once; only the pixels of cells that straddle a boundary are tested one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from povertymap.grid import make_grid
from povertymap.world.frame import Frame

__all__ = ["CellLayer", "make_cell_layer"]


@dataclass(frozen=True)
class CellLayer:
    """Per-cell membership arrays of shape ``frame.shape`` and per-pixel admin of edge cells."""

    in_grid: np.ndarray  #: bool, the cell is one of make_grid's cells
    aoi_fraction: np.ndarray  #: float, share of the cell inside the country
    admin2: np.ndarray  #: int16, index into the admin-2 table (majority of pixels), -1 outside
    mixed_row: np.ndarray  #: int32, row in ``mixed_pixels`` for straddling cells, else -1
    mixed_pixels: np.ndarray  #: int16 (n_mixed, ppc*ppc): admin-2 index per pixel, -1 outside
    habitable: np.ndarray  #: int32, number of habitable population pixels in the cell
    ppc: int  #: population pixels per cell edge

    def pixel_admin(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Admin-2 index of every pixel of the given cells, shape (n, ppc*ppc)."""
        rows, cols = np.asarray(rows), np.asarray(cols)
        out = np.repeat(self.admin2[rows, cols][:, None], self.ppc * self.ppc, axis=1)
        mixed = self.mixed_row[rows, cols]
        sel = mixed >= 0
        out[sel] = self.mixed_pixels[mixed[sel]]
        return out


def country_aoi(admin2: gpd.GeoDataFrame) -> shapely.Geometry:
    """The area of interest as the pipeline sees it: the union of the admin polygons read
    back from WGS84 into the working CRS."""
    crs = admin2.crs
    return admin2.to_crs("EPSG:4326").to_crs(crs).union_all()


def make_cell_layer(frame: Frame, admin2: gpd.GeoDataFrame, ppc: int, block: int) -> CellLayer:
    """Compute grid membership, admin units and habitable pixels of every cell."""
    ny, nx = frame.shape
    aoi = country_aoi(admin2)
    shapely.prepare(aoi)
    in_grid = np.zeros((ny, nx), bool)
    aoi_fraction = np.zeros((ny, nx))
    cs = frame.cell_size
    for b in frame.blocks(block):
        xmin = (frame.ix0 + b.c0) * cs
        xmax = (frame.ix0 + b.c1) * cs
        ymax = (frame.iy_top + 1 - b.r0) * cs
        ymin = (frame.iy_top + 1 - b.r1) * cs
        part = shapely.intersection(aoi, shapely.box(xmin, ymin, xmax, ymax))
        if part.is_empty or part.area == 0:
            continue
        g = make_grid(part, frame.crs, cs)
        row = frame.iy_top - g["iy"].to_numpy()
        col = g["ix"].to_numpy() - frame.ix0
        in_grid[row, col] = True
        aoi_fraction[row, col] = g["aoi_fraction"].to_numpy()

    polys = admin2.geometry.to_numpy()
    tree = shapely.STRtree(polys)
    rows, cols = np.nonzero(in_grid)
    x0 = frame.bounds[0] + cols * cs
    y1 = frame.bounds[3] - rows * cs
    boxes = shapely.box(x0, y1 - cs, x0 + cs, y1)
    admin = np.full((ny, nx), -1, np.int16)
    pure = np.zeros(rows.size, bool)
    inp, unit = tree.query(boxes, predicate="within")
    admin[rows[inp], cols[inp]] = unit
    pure[inp] = True

    mixed = np.flatnonzero(~pure)
    mixed_row = np.full((ny, nx), -1, np.int32)
    mixed_row[rows[mixed], cols[mixed]] = np.arange(mixed.size)
    res = cs / ppc
    off = (np.arange(ppc) + 0.5) * res
    px = np.broadcast_to(x0[mixed][:, None, None] + off[None, None, :], (mixed.size, ppc, ppc))
    py = np.broadcast_to(y1[mixed][:, None, None] - off[None, :, None], (mixed.size, ppc, ppc))
    px = px.reshape(mixed.size, ppc * ppc)
    py = py.reshape(mixed.size, ppc * ppc)
    mixed_pixels = np.full((mixed.size, ppc * ppc), -1, np.int16)
    # test each unit only against the pixels of the straddling cells it touches
    cell_i, unit_i = tree.query(boxes[mixed], predicate="intersects")
    for u in np.unique(unit_i):
        sel = cell_i[unit_i == u]
        inside = shapely.contains_xy(polys[u], px[sel], py[sel])
        mixed_pixels[sel] = np.where(inside, u, mixed_pixels[sel])
    habitable = np.zeros((ny, nx), np.int32)
    habitable[rows[pure], cols[pure]] = ppc * ppc
    habitable[rows[mixed], cols[mixed]] = (mixed_pixels >= 0).sum(axis=1)
    # majority unit of a straddling cell; cells without a habitable pixel take the unit
    # holding most of their area
    for k, m in enumerate(mixed):
        vals = mixed_pixels[k][mixed_pixels[k] >= 0]
        if vals.size:
            admin[rows[m], cols[m]] = np.bincount(vals).argmax()
        else:
            cand = tree.query(boxes[m], predicate="intersects")
            areas = shapely.area(shapely.intersection(polys[cand], boxes[m]))
            admin[rows[m], cols[m]] = cand[np.argmax(areas)] if cand.size else -1
    return CellLayer(in_grid, aoi_fraction, admin, mixed_row, mixed_pixels, habitable, ppc)


def window_admin(cells: CellLayer, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Admin-2 index of every population pixel of cell rows ``r0:r1``, cols ``c0:c1``.

    The window may extend beyond the frame (halos); pixels there, outside the country or
    in no unit are -1. Shape ``((r1 - r0) * ppc, (c1 - c0) * ppc)``.
    """
    ppc = cells.ppc
    ny, nx = cells.in_grid.shape
    nr, nc = r1 - r0, c1 - c0
    out = np.full((nr, nc, ppc, ppc), -1, np.int16)
    rr0, rr1 = max(r0, 0), min(r1, ny)
    cc0, cc1 = max(c0, 0), min(c1, nx)
    if rr0 < rr1 and cc0 < cc1:
        rows, cols = np.meshgrid(np.arange(rr0, rr1), np.arange(cc0, cc1), indexing="ij")
        inside = cells.in_grid[rows, cols]
        vals = np.full((rows.size, ppc * ppc), -1, np.int16)
        sel = inside.ravel()
        vals[sel] = cells.pixel_admin(rows.ravel()[sel], cols.ravel()[sel])
        out[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = vals.reshape(rr1 - rr0, cc1 - cc0, ppc, ppc)
    return out.transpose(0, 2, 1, 3).reshape(nr * ppc, nc * ppc)
