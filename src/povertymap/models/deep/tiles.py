"""Image tiles cut around grid cells, read block by block, with validity masks and band stats.

One tile per grid cell: the imagery pixels covering the cell square, widened by an
optional margin on every side. Tiles are cut from the pixel grid of the reader (the raster's
own grid, or the WarpedVRT grid when the raster is in another CRS), never resampled: a tile
starts at the pixel edge nearest the corner of its (widened) cell and has a fixed size of
``round(extent / pixel size)`` pixels, so when the pixel size divides the cell and the grid
is aligned, a tile's pixels are exactly the raster's pixels inside the cell.

Tiles are read by *blocks* of ``block_cells x block_cells`` aligned cells: one window read
per block, so memory holds one block at a time (32 x 32 cells of 1 km at 20 m and 4 bands is
10 MB) however large the country. A pixel is *valid* when no band is nodata and it is not
cloud (see :func:`cloud_mask`); tiles whose valid fraction is below a threshold are not
used (callers give them NaN embeddings).

Only numpy here: the tensorflow pipeline (:mod:`povertymap.models.deep.data`) and the
random features (:mod:`povertymap.models.deep.random_features`) both build on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window

from povertymap.errors import ConfigError, InputWarning, RasterError
from povertymap.io.raster import WindowReader, radiometry

__all__ = [
    "CLOUD_MIN",
    "BandStats",
    "TileBatch",
    "TileGrid",
    "band_stats",
    "cell_blocks",
    "check_cloud_min",
    "cloud_mask",
    "iter_tile_blocks",
    "normalise_tiles",
    "read_tiles",
    "rescale_pixels",
    "sample_tiles",
    "warn_if_mostly_invalid",
]


def _round_half_up(x: np.ndarray | float) -> np.ndarray:
    """Round to the nearest integer, halves up (``np.round`` rounds halves to even)."""
    return np.floor(np.asarray(x, dtype=float) + 0.5).astype(np.int64)


@dataclass(frozen=True)
class TileGrid:
    """Where the tile of cell ``(ix, iy)`` lies in a north-up pixel grid.

    ``transform`` is the pixel grid read from (``WindowReader.transform``), ``cell_size``
    the grid cell edge and ``margin_m`` the context added on every side, both in metres of
    the working CRS.
    """

    transform: Affine
    cell_size: float
    margin_m: float = 0.0

    def __post_init__(self) -> None:
        t = self.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise RasterError(
                f"imagery grid is not north-up (transform {tuple(t)[:6]})",
                fix="warp the imagery to a north-up grid (gdalwarp) before using it",
            )
        if self.margin_m < 0:
            raise ValueError(f"margin_m must be >= 0, got {self.margin_m}")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of every tile."""
        extent = self.cell_size + 2 * self.margin_m
        rows = int(_round_half_up(extent / -self.transform.e))
        cols = int(_round_half_up(extent / self.transform.a))
        return max(rows, 1), max(cols, 1)

    def origin(self, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row0, col0) of the top-left pixel of the tiles of cells ``(ix, iy)``."""
        t = self.transform
        x0 = np.asarray(ix, dtype=float) * self.cell_size - self.margin_m
        y1 = (np.asarray(iy, dtype=float) + 1) * self.cell_size + self.margin_m
        return _round_half_up((y1 - t.f) / t.e), _round_half_up((x0 - t.c) / t.a)


@dataclass(frozen=True)
class TileBatch:
    """Tiles of cells ``(ix, iy)``: ``pixels (n, rows, cols, bands)``, ``valid (n, rows, cols)``."""

    ix: np.ndarray
    iy: np.ndarray
    pixels: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.ix)

    @property
    def valid_fraction(self) -> np.ndarray:
        """Share of valid pixels in each tile."""
        if len(self) == 0:
            return np.zeros(0)
        return np.asarray(self.valid.reshape(len(self), -1).mean(axis=1))

    def subset(self, keep: np.ndarray) -> TileBatch:
        """The tiles selected by a boolean or integer index."""
        return TileBatch(self.ix[keep], self.iy[keep], self.pixels[keep], self.valid[keep])


#: Default cloud threshold, a reflectance: thick clouds are brighter than this in red, green
#: and blue at once, while the brightest clear surfaces (metal and concrete roofs, sand) stay
#: below it in at least one of them. For 8-bit imagery read as DN / 255 (the uint8 default)
#: it flags DN >= 150, the 8-bit threshold of earlier versions.
CLOUD_MIN = 0.585


def check_cloud_min(cloud_min: float | None, where: str) -> None:
    """Refuse a ``cloud_min`` that cannot be a reflectance (an 8-bit DN such as 150)."""
    if cloud_min is not None and not -1.0 <= cloud_min <= 2.0:
        raise ConfigError(
            f"cloud_min={cloud_min!r} is not a reflectance",
            where=where,
            fix="cloud_min is compared with reflectance (DN * scale + offset, see the imagery "
            f"raster's scale), not DN: use e.g. {CLOUD_MIN} (the default), or None",
        )


def cloud_mask(
    pixels: np.ndarray,
    cloud_min: float | None,
    visible: int = 3,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
) -> np.ndarray:
    """Cloud pixels: bright *and* white, i.e. every visible band at or above ``cloud_min``.

    ``pixels`` is ``(..., bands)`` raw DN with the visible bands first (red, green, blue);
    ``cloud_min`` is a reflectance, compared with ``DN * scale + offset``. Bright roofs and
    sand are rarely that bright in all three bands at once; thick clouds are. None disables
    the test (imagery cloud-masked by its mask or nodata).
    """
    if cloud_min is None:
        return np.zeros(pixels.shape[:-1], dtype=bool)
    check_cloud_min(cloud_min, "cloud_min")
    k = min(visible, pixels.shape[-1])
    reflectance = np.asarray(pixels[..., :k], dtype=np.float64) * scale + offset
    return np.asarray(np.all(reflectance >= cloud_min, axis=-1))


def read_tiles(
    reader: WindowReader,
    grid: TileGrid,
    ix: np.ndarray,
    iy: np.ndarray,
    *,
    cloud_min: float | None = None,
) -> TileBatch:
    """Tiles of cells ``(ix, iy)`` from one window read covering all of them.

    Call it with spatially compact groups of cells (see :func:`cell_blocks`): the window
    spans their bounding box. Pixels outside the raster, nodata in any band, or cloud are
    invalid and set to 0 in ``pixels``.
    """
    ix = np.asarray(ix, dtype=np.int64)
    iy = np.asarray(iy, dtype=np.int64)
    rows, cols = grid.shape
    n = len(ix)
    bands = reader.source.count
    if n == 0:
        return TileBatch(
            ix,
            iy,
            np.zeros((0, rows, cols, bands), dtype=reader.source.dtype),
            np.zeros((0, rows, cols), dtype=bool),
        )
    row0, col0 = grid.origin(ix, iy)
    r_min, c_min = int(row0.min()), int(col0.min())
    height = int(row0.max()) - r_min + rows
    width = int(col0.max()) - c_min + cols
    window = reader.read_pixels(Window(c_min, r_min, width, height))
    data = np.moveaxis(np.ma.getdata(window.data), 0, -1)  # (rows, cols, bands)
    invalid = np.ma.getmaskarray(window.data).any(axis=0)
    scale, offset = radiometry(reader.source)
    invalid |= cloud_mask(data, cloud_min, scale=scale, offset=offset)
    # Gather all tiles at once: index arrays (n, rows, cols).
    rr = (row0 - r_min)[:, None, None] + np.arange(rows)[None, :, None]
    cc = (col0 - c_min)[:, None, None] + np.arange(cols)[None, None, :]
    pixels = data[rr, cc]
    valid = ~invalid[rr, cc]
    pixels[~valid] = 0
    return TileBatch(ix, iy, pixels, valid)


def cell_blocks(ix: np.ndarray, iy: np.ndarray, block_cells: int) -> list[np.ndarray]:
    """Indices of cells grouped by aligned blocks of ``block_cells`` cells, north to south.

    Blocks are ordered row by row from the north-west (raster order), cells within a block
    keep their input order.
    """
    bx = np.floor_divide(np.asarray(ix, dtype=np.int64), block_cells)
    by = np.floor_divide(np.asarray(iy, dtype=np.int64), block_cells)
    if len(bx) == 0:
        return []
    order = np.lexsort((bx, -by))
    keys = np.stack([bx[order], by[order]], axis=1)
    breaks = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
    return [np.sort(part) for part in np.split(order, breaks)]


def iter_tile_blocks(
    reader: WindowReader,
    grid: TileGrid,
    ix: np.ndarray,
    iy: np.ndarray,
    *,
    block_cells: int = 32,
    cloud_min: float | None = None,
) -> Iterator[tuple[np.ndarray, TileBatch]]:
    """Yield ``(indices into ix/iy, tiles)`` block by block: one window read each."""
    ix = np.asarray(ix, dtype=np.int64)
    iy = np.asarray(iy, dtype=np.int64)
    for idx in cell_blocks(ix, iy, block_cells):
        yield idx, read_tiles(reader, grid, ix[idx], iy[idx], cloud_min=cloud_min)


def sample_tiles(
    reader: WindowReader,
    grid: TileGrid,
    ix: np.ndarray,
    iy: np.ndarray,
    n: int,
    *,
    random_state: int = 0,
    cloud_min: float | None = None,
) -> TileBatch:
    """Tiles of ``n`` cells drawn at random (without replacement) from ``(ix, iy)``.

    Each tile is its own small window read, in raster order so that GDAL's block cache
    serves neighbours: reading a sample costs the sample, not the whole raster.
    """
    ix = np.asarray(ix, dtype=np.int64)
    iy = np.asarray(iy, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    pick = rng.choice(len(ix), size=min(n, len(ix)), replace=False)
    pick = pick[np.lexsort((ix[pick], -iy[pick]))]
    parts = [
        read_tiles(reader, grid, ix[i : i + 1], iy[i : i + 1], cloud_min=cloud_min) for i in pick
    ]
    if not parts:
        return read_tiles(reader, grid, ix[:0], iy[:0], cloud_min=cloud_min)
    return TileBatch(
        np.concatenate([p.ix for p in parts]),
        np.concatenate([p.iy for p in parts]),
        np.concatenate([p.pixels for p in parts]),
        np.concatenate([p.valid for p in parts]),
    )


def warn_if_mostly_invalid(batch: TileBatch, cloud_min: float | None, what: str) -> float:
    """Warn when most sampled pixels are invalid; return the valid share.

    Says how many sampled tiles have no valid pixel at all (imagery that covers only part
    of the area) and, with a brightness test, that a ``cloud_min`` or radiometry on the
    wrong scale flags every bright pixel as cloud, instead of silently dropping imagery.
    """
    share = float(batch.valid.mean()) if len(batch) else 0.0
    if share < 0.5:
        empty = float((batch.valid_fraction == 0).mean()) if len(batch) else 1.0
        hint = f"; {empty:.0%} of the sampled tiles have no valid pixel (no imagery there)"
        if cloud_min is not None:
            hint += (
                f"; cloud_min={cloud_min:g} flags pixels whose red, green and blue "
                "reflectance are all >= it: check the imagery's scale and offset, or set "
                "cloud_min to None"
            )
        warnings.warn(
            f"{what}: only {share:.0%} of the sampled imagery pixels are valid{hint}",
            InputWarning,
            stacklevel=3,
        )
    return share


def rescale_pixels(
    batch: TileBatch, source: tuple[float, float], target: tuple[float, float] | None
) -> TileBatch:
    """``batch`` with pixels in the DN units of radiometry ``target`` (``(scale, offset)``).

    A model fitted on imagery of one radiometry holds band statistics in its DN; tiles of
    imagery with another (``source``) are converted to float32 ``(DN * s + o - o_t) / s_t``
    so the same ground gives the same input. Unchanged (the very array) when the two are
    equal or ``target`` is None (a model fitted before radiometry was recorded).
    """
    if target is None or (float(source[0]), float(source[1])) == (
        float(target[0]),
        float(target[1]),
    ):
        return batch
    reflectance = batch.pixels.astype(np.float64) * source[0] + source[1]
    pixels = ((reflectance - target[1]) / target[0]).astype(np.float32)
    pixels[~batch.valid] = 0.0
    return TileBatch(batch.ix, batch.iy, pixels, batch.valid)


@dataclass(frozen=True)
class BandStats:
    """Per-band mean and standard deviation of valid pixels (stored with the model)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-able form."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> BandStats:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))


def band_stats(batches: list[TileBatch] | Iterator[TileBatch]) -> BandStats:
    """Mean and standard deviation per band over the valid pixels of the tiles given.

    Sums are accumulated in float64 batch by batch, so any number of tiles can stream
    through. A band with zero variance gets std 1 (normalisation then only centres it).
    """
    count = 0.0
    s1 = s2 = np.zeros(0)
    for b in batches:
        v = b.valid.reshape(-1)
        px = b.pixels.reshape(-1, b.pixels.shape[-1])[v].astype(np.float64)
        if count == 0:
            s1, s2 = np.zeros(px.shape[1]), np.zeros(px.shape[1])
        count += px.shape[0]
        s1 = s1 + px.sum(axis=0)
        s2 = s2 + np.square(px).sum(axis=0)
    if count == 0:
        raise RasterError(
            "no valid imagery pixels in the tiles sampled for band statistics",
            fix="check that the imagery covers the study area and its nodata/cloud settings",
        )
    mean = s1 / count
    var = np.maximum(s2 / count - mean**2, 0.0)
    std = np.sqrt(var)
    std[std <= 1e-12 * np.maximum(np.abs(mean), 1.0)] = 1.0
    return BandStats(tuple(float(m) for m in mean), tuple(float(s) for s in std))


def normalise_tiles(batch: TileBatch, stats: BandStats) -> np.ndarray:
    """Standardised float32 pixels ``(n, rows, cols, bands)``, 0 where invalid."""
    mean = np.asarray(stats.mean, dtype=np.float32)
    std = np.asarray(stats.std, dtype=np.float32)
    out = (batch.pixels.astype(np.float32) - mean) / std
    out[~batch.valid] = 0.0
    return out
