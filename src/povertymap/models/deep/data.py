"""``tf.data`` pipelines of image tiles, fed from a tile file streamed out of the raster.

Training tiles are cut from the imagery block by block
(:func:`~povertymap.models.deep.tiles.iter_tile_blocks`, one window read per block) and
written to a flat on-disk array (:class:`~povertymap.io.tiles.TileFile`, a numpy memmap in
the cache folder, read and written by :mod:`povertymap.io.tiles`):
memory holds one block at a time, the raster is read once however many epochs run, and
the pipeline can draw a true random permutation of all tiles every epoch. Tiles are stored
raw (uint8 imagery stays uint8, 4x smaller than float32) as ``(rows, cols, bands + 1)``, the
last channel being the validity mask; standardisation happens inside the model
(:class:`~povertymap.models.deep.cnn.MaskedStandardize`).

All raster reading happens in the calling thread. tf.data runs Python generators and
``numpy_function`` on its own threads, and rasterio (its GDAL environment) and pyproj (CRS
objects compared across threads crash the process) must stay on the thread that made
them, so only numpy runs inside the pipeline.

Augmentation: each training tile gets one of the 8 symmetries of the square (90-degree
rotations times a flip; flips only for non-square tiles) drawn from a seed that
``tf.data.Dataset.random(random_state)`` gives each batch, so the batch sequence is
reproducible.

This module imports tensorflow at import time: import it lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import tensorflow as tf
from pyproj import CRS

from povertymap.io.raster import RasterSource
from povertymap.io.tiles import TileFile, TileFileWriter
from povertymap.models.deep.tiles import TileBatch, TileGrid, iter_tile_blocks

__all__ = ["TileFile", "augment_batch", "model_input", "tile_pipeline", "write_tile_file"]

_TF_DTYPES = {"uint8", "uint16", "int16", "int32", "float32"}


def model_input(batch: TileBatch) -> np.ndarray:
    """Tiles with the validity mask appended as a last channel, in the pixels' dtype."""
    dtype = batch.pixels.dtype if str(batch.pixels.dtype) in _TF_DTYPES else np.float32
    valid = batch.valid[..., None].astype(dtype)
    return np.concatenate([batch.pixels.astype(dtype, copy=False), valid], axis=-1)


def reader_crs(source: RasterSource, crs: CRS | None) -> CRS | None:
    """``crs`` if reading ``source`` in it needs warping, else None (read in its own grid)."""
    if crs is None or CRS.from_user_input(crs) == source.crs:
        return None
    return CRS.from_user_input(crs)


def write_tile_file(
    source: RasterSource,
    crs: CRS | None,
    grid: TileGrid,
    ix: np.ndarray,
    iy: np.ndarray,
    path: Path,
    *,
    block_cells: int = 32,
    cloud_min: float | None = None,
    min_valid: float = 0.5,
) -> tuple[TileFile, np.ndarray]:
    """Stream the tiles of cells ``(ix, iy)`` into ``path``; return it and the kept cells.

    Tiles with a valid fraction below ``min_valid`` are not written. The second value holds
    the indices (into ``ix``) of the tiles written, in file order.
    """
    ix = np.asarray(ix, dtype=np.int64)
    iy = np.asarray(iy, dtype=np.int64)
    rows, cols = grid.shape
    channels = source.count + 1
    dtype = source.dtype if source.dtype in _TF_DTYPES else "float32"
    kept: list[np.ndarray] = []
    with (
        TileFileWriter(path, (rows, cols, channels), dtype) as out,
        source.reader(crs=reader_crs(source, crs)) as reader,
    ):
        for idx, batch in iter_tile_blocks(
            reader, grid, ix, iy, block_cells=block_cells, cloud_min=cloud_min
        ):
            keep = np.flatnonzero(batch.valid_fraction >= min_valid)
            if len(keep) == 0:
                continue
            out.append(model_input(batch.subset(keep)))
            kept.append(idx[keep])
    order = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return out.tiles, order


def augment_batch(x: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Each tile of ``x (n, rows, cols, channels)`` under a random symmetry of the square."""
    rng = np.random.default_rng(np.asarray(seed, dtype=np.int64).view(np.uint64))
    square = x.shape[1] == x.shape[2]
    out = np.empty_like(x)
    for i in range(len(x)):
        t = x[i]
        if square:
            t = np.rot90(t, int(rng.integers(4)), axes=(0, 1))
            if rng.integers(2):
                t = t[:, ::-1]
        else:
            if rng.integers(2):
                t = t[::-1]
            if rng.integers(2):
                t = t[:, ::-1]
        out[i] = t
    return out


def tile_pipeline(
    tiles: TileFile,
    rows: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    *,
    batch_size: int,
    random_state: int = 0,
    shuffle: bool = True,
    augment: bool = True,
) -> tf.data.Dataset:
    """Batches ``(float32 tiles, targets, weights)`` of the tiles ``rows`` of ``tiles``.

    ``targets`` and ``weights`` are aligned with ``rows``. With ``shuffle`` every epoch is
    a new random permutation (seeded); ``augment`` applies :func:`augment_batch`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    targets = np.asarray(targets)
    weights = np.asarray(weights, dtype=np.float32)
    y_dtype = np.int64 if targets.dtype.kind in "iu" else np.float32
    targets = targets.astype(y_dtype)
    memmap: list[np.ndarray] = []

    def load(pos: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not memmap:
            memmap.append(tiles.memmap())
        order = np.argsort(rows[pos], kind="stable")  # sorted reads of the file
        pos = pos[order]
        x = np.asarray(memmap[0][rows[pos]])
        if augment:
            x = augment_batch(x, seed)
        return x, targets[pos], weights[pos]

    ds = tf.data.Dataset.range(len(rows))
    if shuffle:
        ds = ds.shuffle(max(len(rows), 1), seed=random_state, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    seeds = tf.data.Dataset.random(seed=random_state, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds))
    x_dtype = tf.as_dtype(tiles.dtype)
    y_tf = tf.as_dtype(y_dtype)

    def tf_load(pos: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        x, y, w = tf.numpy_function(load, [pos, seed], [x_dtype, y_tf, tf.float32])
        x.set_shape((None, *tiles.shape))
        y.set_shape((None,))
        w.set_shape((None,))
        return tf.cast(x, tf.float32), y, w

    ds = ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
