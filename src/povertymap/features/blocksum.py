"""Exact-coverage sums of raster layers over axis-aligned rectangles, without polygons.

Grid cells are axis-aligned squares in the working CRS; when a raster is in the same CRS
and north-up, the share of a pixel inside a rectangle is the product of the pixel's
overlap with the rectangle along x and along y. So the coverage-weighted sum over a
rectangle is ``Ay @ V @ Ax.T``, with ``Ay``/``Ax`` the (sparse) per-axis overlap fractions:
a block reduction of the raster, linear in its pixels, exact at partly covered pixels
(cells misaligned with, or finer than, the raster), and equal to exactextract's ``sum``,
``count`` (coverage of valid pixels) and ``max`` (over pixels with positive coverage)
up to floating-point rounding (tests/features/test_blocksum.py: 1e-9 relative).

:func:`rectangle_mask` picks the zones this applies to (a polygon whose area is its
bounding box's); :func:`povertymap.features.zonal.zonal_chunk` sends them here and the
other zones (reprojected cells, cluster buffers) to exactextract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import shapely
from affine import Affine
from scipy import sparse

from povertymap.errors import RasterError

__all__ = ["axis_fractions", "rectangle_mask", "rectangle_sums"]

#: Relative tolerance of "area equals bounding-box area" (a rectangle up to rounding).
RECT_RTOL = 1e-12


def rectangle_mask(geometries: np.ndarray) -> np.ndarray:
    """Which polygons are axis-aligned rectangles (their area equals their bounding box's).

    A polygon inside its bounding box that fills it is the box up to a set of zero area,
    so its exact-coverage statistics are the box's.
    """
    geoms = np.asarray(geometries)
    if geoms.size == 0:
        return np.zeros(0, dtype=bool)
    b = shapely.bounds(geoms)
    box_area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    area = shapely.area(geoms)
    kind = shapely.get_type_id(geoms)
    polygon = (kind == 3) | ((kind == 6) & (shapely.get_num_geometries(geoms) == 1))
    with np.errstate(invalid="ignore"):
        return polygon & (box_area > 0) & (np.abs(area - box_area) <= RECT_RTOL * box_area)


def axis_fractions(lo: np.ndarray, hi: np.ndarray, n: int) -> sparse.csr_matrix:
    """``(len(lo), n)`` share of each of ``n`` unit pixels ``[c, c+1)`` inside ``[lo, hi]``.

    ``lo`` and ``hi`` are in pixel units along one axis (``lo <= hi``); pixels outside
    ``[0, n)`` are dropped (the caller's window covers every rectangle).
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if np.any(hi < lo):
        raise ValueError("axis_fractions: an interval ends before it starts")
    first = np.floor(lo).astype(np.int64)
    last = np.maximum(np.ceil(hi).astype(np.int64), first + 1)  # exclusive
    counts = last - first
    row = np.repeat(np.arange(len(lo)), counts)
    offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    col = first[row] + offset
    share = np.minimum(hi[row], col + 1.0) - np.maximum(lo[row], col.astype(np.float64))
    keep = (share > 0) & (col >= 0) & (col < n)
    return sparse.csr_matrix((share[keep], (row[keep], col[keep])), shape=(len(lo), n))


def _unique_intervals(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pairs, inverse = np.unique(np.column_stack([lo, hi]), axis=0, return_inverse=True)
    return pairs[:, 0], pairs[:, 1], inverse.ravel()


def _ranges(fractions: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last pixel with positive share, per row (0, 0 when none)."""
    indptr, indices = fractions.indptr, fractions.indices
    empty = indptr[1:] == indptr[:-1]
    start = np.where(empty, 0, indices[np.minimum(indptr[:-1], max(len(indices) - 1, 0))])
    stop = np.where(empty, 0, indices[np.maximum(indptr[1:] - 1, 0)] + 1)
    return start, stop


def _range_max(values: np.ndarray, start: np.ndarray, stop: np.ndarray, axis: int) -> np.ndarray:
    """NaN-ignoring maxima of ``values`` over ``[start, stop)`` along ``axis``, per range."""
    shape = list(values.shape)
    shape[axis] = len(start)
    out = np.full(shape, np.nan)
    for k, (a, b) in enumerate(zip(start, stop, strict=True)):
        if b > a:
            part = values[a:b] if axis == 0 else values[:, a:b]
            reduced = np.fmax.reduce(part, axis=axis)
            if axis == 0:
                out[k] = reduced
            else:
                out[:, k] = reduced
    return out


def rectangle_sums(
    layers: Mapping[str, np.ndarray],
    transform: Affine,
    boxes: np.ndarray,
    *,
    max_layers: Sequence[str] = (),
    index: pd.Index | None = None,
) -> pd.DataFrame:
    """Coverage-weighted ``<layer>_sum`` and ``<layer>_count`` (and ``<layer>_max``) of
    each layer over each rectangle.

    ``layers`` are ``(rows, cols)`` float arrays on the pixel grid of ``transform``
    (north-up), NaN where there is no data; ``boxes`` is ``(n, 4)`` ``xmin, ymin, xmax,
    ymax`` in the transform's CRS, inside the window. A pixel's coverage is the share of
    its area inside the box; ``count`` adds the coverage of valid pixels; ``max`` is over
    the valid pixels with positive coverage (NaN when none), as exactextract defines them.
    """
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise RasterError(
            f"block sums need a north-up pixel grid, got transform {tuple(transform)[:6]}",
            fix="use exactextract for rotated or south-up rasters (zonal_chunk does)",
        )
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    names = list(layers)
    shape = next(iter(layers.values())).shape if names else (0, 0)
    rows, cols = int(shape[0]), int(shape[1])
    rx, ry = transform.a, -transform.e
    x0, y_top = transform.c, transform.f
    ux_lo, ux_hi, ux_of = _unique_intervals((boxes[:, 0] - x0) / rx, (boxes[:, 2] - x0) / rx)
    uy_lo, uy_hi, uy_of = _unique_intervals((y_top - boxes[:, 3]) / ry, (y_top - boxes[:, 1]) / ry)
    ax = axis_fractions(ux_lo, ux_hi, cols)  # (n_ux, cols)
    ay = axis_fractions(uy_lo, uy_hi, rows)  # (n_uy, rows)
    out: dict[str, np.ndarray] = {}
    counted: dict[str, np.ndarray] = {}  # exactextract's order: every sum, then every count
    for name in names:
        values = np.asarray(layers[name], dtype=np.float64)
        if values.shape != (rows, cols):
            raise ValueError(f"layer {name!r} has shape {values.shape}, expected {(rows, cols)}")
        valid = np.isfinite(values)
        filled = np.where(valid, values, 0.0)
        sums = np.asarray((ax @ (ay @ filled).T).T)  # (n_uy, n_ux)
        counts = np.asarray((ax @ (ay @ valid.astype(np.float64)).T).T)
        out[f"{name}_sum"] = sums[uy_of, ux_of]
        counted[f"{name}_count"] = counts[uy_of, ux_of]
    out.update(counted)
    if max_layers:
        y_start, y_stop = _ranges(ay)
        x_start, x_stop = _ranges(ax)
        for name in max_layers:
            values = np.asarray(layers[name], dtype=np.float64)
            by_row = _range_max(values, y_start, y_stop, axis=0)  # (n_uy, cols)
            both = _range_max(by_row, x_start, x_stop, axis=1)  # (n_uy, n_ux)
            out[f"{name}_max"] = both[uy_of, ux_of]
    return pd.DataFrame(out, index=index)
