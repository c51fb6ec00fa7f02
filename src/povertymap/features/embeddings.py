"""Imagery embeddings as feature blocks: the transfer CNN (``cnn``) and random features (``rcf``).

Both blocks turn every grid cell's image tile into a vector (see
:mod:`povertymap.models.deep`) and give a zone the overlap-weighted mean of the vectors of
the cells its polygon intersects, so a 5 km cluster buffer averages about 80 cells and a
grid cell is its own tile. The pipeline calls ``fit(area)`` once (the CNN trains on the
nightlights of every cell, the random features draw their filters: neither sees the survey
target, so fitting outside cross-validation leaks nothing), then ``transform`` for the
cluster buffers and for the grid.

Cell vectors are computed once and kept on disk (``cache_dir``, or a temporary folder that
lives as long as the block), keyed by the digest of the imagery (and nightlights), the
grid and every hyperparameter, so transforming the grid after the buffers, or a second run,
reuses them; with a ``cache_dir`` the trained CNN itself is cached too and ``fit`` loads it
instead of training again. The files are read and written by :mod:`povertymap.io.embeddings`.

``cache_dir`` and ``log_dir`` are runtime options, not part of the fitted state: pickling a
block drops them (a saved model holds no path of the run that made it, so it still works
once moved), and a loaded block computes the vectors it needs again in a private temporary
folder unless it is given a ``cache_dir``.

Imagery as it comes: the imagery is read with its radiometry and mask
(:func:`~povertymap.features.imagery.imagery_of`): pixels masked by nodata, the class mask
(e.g. Sentinel-2 SCL cloud classes) or the valid range are invalid, and ``cloud_min`` is a
reflectance (``DN * scale + offset``), so the default works on 8-bit imagery (DN / 255) as
on 16-bit reflectance. Tiles stay in the raster's DN (the models standardise them); a
fitted block meeting imagery of another radiometry converts it to the DN it was fitted on.

Missing imagery: a cell whose tile has less than ``min_valid`` valid pixels (outside the
image, nodata, masked, cloud) gets no vector and is left out of zone means, with weights
renormalised; a zone without any valid cell gets NaN features (downstream models impute).
The extra column ``<name>_valid`` is the share of the zone's area whose cells had a valid
vector (0: no imagery for the zone).

Importing this module does not import tensorflow: the CNN loads it in ``fit``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import geopandas as gpd
import numpy as np
import pandas as pd

import povertymap
from povertymap.engine.base import Engine, ProgressCallback
from povertymap.errors import ModelError
from povertymap.features.base import FeatureBlock, chunk_zones
from povertymap.features.imagery import imagery_of
from povertymap.io.embeddings import (
    DigestMemo,
    cached_model,
    file_digest,
    private_temp_dir,
    write_cached_model,
)
from povertymap.io.raster import radiometry
from povertymap.models.deep.random_features import (
    RandomFilters,
    random_conv_features,
    sample_random_filters,
)
from povertymap.models.deep.store import EmbeddingStore, cache_key
from povertymap.models.deep.tiles import (
    CLOUD_MIN,
    BandStats,
    TileGrid,
    band_stats,
    check_cloud_min,
    iter_tile_blocks,
    normalise_tiles,
    rescale_pixels,
    sample_tiles,
    warn_if_mostly_invalid,
)
from povertymap.models.deep.train import CNNSettings
from povertymap.models.deep.zones import ZoneEmbeddingKernel, cells_touched

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["RandomConvFeatures", "TransferCNNFeatures"]

#: Bumped when the embedding computation changes, so caches of older code are not read.
CACHE_FORMAT = 2

_D = CNNSettings()


#: Fields that are options of this process, not fitted state: not pickled.
_RUNTIME_FIELDS = ("cache_dir", "log_dir")
#: Private per-instance working state: not pickled either.
_PRIVATE_FIELDS = ("_tmp", "_digests")


@dataclass(eq=False)
class _ImageryEmbeddings(FeatureBlock):
    """Shared machinery: cache folders, the cell store, and zone means through the engine."""

    cache_dir: Path | None = None
    log_dir: Path | None = None
    random_state: int = 0

    _tmp: Path | None = field(default=None, init=False, repr=False)
    #: Digests of the inputs, memoised per instance (an input is hashed once per block).
    _digests: DigestMemo = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_cloud_min(getattr(self, "cloud_min", None), f"key features.params.{self.name}")

    # -- to implement --------------------------------------------------------------------
    def _hyperparameters(self) -> dict[str, Any]:
        skip = {*_RUNTIME_FIELDS, *_PRIVATE_FIELDS}
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.init and f.name not in skip
        }

    def _inputs(self) -> tuple[str, ...]:
        return ("imagery",)

    @property
    def _dim(self) -> int:
        raise NotImplementedError

    def _embed_missing(
        self,
        area: StudyArea,
        ix: np.ndarray,
        iy: np.ndarray,
        store: EmbeddingStore,
        progress: ProgressCallback | None,
    ) -> None:
        raise NotImplementedError

    def _fitted_key(self) -> str:
        key = getattr(self, "key_", None)
        if key is None:
            raise ModelError(
                f"the {self.name!r} feature block is not fitted",
                fix="call fit(area) before transform",
            )
        return str(key)

    # -- shared --------------------------------------------------------------------------
    def is_available(self, area: StudyArea) -> bool:
        """Whether the area has the rasters this block needs."""
        return all(name in area.rasters for name in self._inputs())

    def _key(self, area: StudyArea) -> str:
        imagery = imagery_of(area)
        inputs = {n: file_digest(area.rasters[n].path, self._digests) for n in self._inputs()}
        if imagery.mask is not None and imagery.mask.source is not None:
            inputs["imagery_mask"] = file_digest(imagery.mask.source.path, self._digests)
        parts = {
            "format": CACHE_FORMAT,
            "version": povertymap.__version__,
            "block": self.name,
            "inputs": inputs,
            "imagery": imagery.describe(),
            "crs": area.crs.to_wkt(),
            "cell_size": area.cell_size,
            "grid": _grid_hash(area),
            "hyperparameters": self._hyperparameters(),
        }
        return cache_key(parts)

    def _root(self, key: str) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir) / f"{self.name}-{key}"
        if self._tmp is None:
            self._tmp = private_temp_dir(self, prefix=f"povertymap-{self.name}-")
        return self._tmp / f"{self.name}-{key}"

    def _store(self) -> EmbeddingStore:
        return EmbeddingStore(
            self._root(self._fitted_key()) / "cells", self._dim, self._block_cells()
        )

    def _block_cells(self) -> int:
        return int(getattr(self, "block_cells", 32))

    def transform(
        self,
        area: StudyArea,
        zones: gpd.GeoDataFrame,
        *,
        engine: Engine,
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Overlap-weighted mean cell embeddings of ``zones``.

        Columns ``<name>_<k>`` (one per dimension) and ``<name>_valid``; index of ``zones``.
        """
        self._fitted_key()
        if zones.crs is not None and area.crs is not None and zones.crs != area.crs:
            zones = zones.to_crs(area.crs)
        store = self._store()
        ix, iy = cells_touched(np.asarray(zones.geometry.values), area.cell_size)
        missing = store.missing(ix, iy)
        if missing.any():
            self._embed_missing(area, ix[missing], iy[missing], store, progress)
        kernel = ZoneEmbeddingKernel(
            store.root, self._dim, self._block_cells(), area.cell_size, self.name
        )
        if len(zones) == 0:
            return pd.DataFrame(columns=kernel.columns(), index=zones.index, dtype=float)
        out = engine.map(
            kernel, chunk_zones(zones), label=f"{self.name} features", progress=progress
        )
        out = out.reindex(zones.index)
        out.index.name = zones.index.name
        return out

    def _tile_grid(self, transform: Any, area: StudyArea) -> TileGrid:
        return TileGrid(transform, area.cell_size, float(getattr(self, "tile_margin_m", 0.0)))

    def __getstate__(self) -> dict[str, Any]:
        """The fitted state, without the runtime options (``cache_dir``, ``log_dir``)."""
        state = dict(self.__dict__)
        for name in (*_RUNTIME_FIELDS, *_PRIVATE_FIELDS):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A loaded block has no cache or log folder (set ``cache_dir`` to give it one)."""
        self.__dict__.update(state)
        self.cache_dir = None
        self.log_dir = None
        self._tmp = None
        self._digests = {}


def _grid_hash(area: StudyArea) -> str:
    """Digest of the grid's cells: the CNN trains on all of them."""
    grid = area.grid
    xy = np.stack([grid["ix"].to_numpy(np.int64), grid["iy"].to_numpy(np.int64)])
    return hashlib.sha256(np.ascontiguousarray(xy).tobytes()).hexdigest()[:16]


@dataclass(eq=False)
class TransferCNNFeatures(_ImageryEmbeddings):
    """Penultimate-layer features of a CNN trained to predict nightlights from imagery.

    Fields are :class:`~povertymap.models.deep.train.CNNSettings` (documented there) plus
    ``cache_dir`` (cached model and cell embeddings; None: a temporary folder),
    ``log_dir`` (TensorBoard logs; None: none) and ``random_state``; ``cache_dir`` and
    ``log_dir`` are not pickled (see the module docstring). Needs an ``imagery``
    and a ``nightlights`` raster. Fitted attributes: ``model_`` (the Keras model),
    ``history_`` (loss per epoch), ``train_seconds_``, ``from_cache_``, ``key_``,
    ``pixel_units_`` (the ``(scale, offset)`` of the imagery it was trained on).
    """

    name: ClassVar[str] = "cnn"
    description: ClassVar[str] = (
        "imagery features of a CNN trained to predict nightlights (Jean et al. 2016)"
    )

    task: Literal["classes", "regression"] = _D.task
    width: int = _D.width
    depth: int = _D.depth
    embedding_dim: int = _D.embedding_dim
    dropout: float = _D.dropout
    epochs: int = _D.epochs
    batch_size: int = _D.batch_size
    learning_rate: float = _D.learning_rate
    patience: int = _D.patience
    val_fraction: float = _D.val_fraction
    val_block_cells: int = _D.val_block_cells
    augment: bool = _D.augment
    max_train_cells: int = _D.max_train_cells
    stats_tiles: int = _D.stats_tiles
    min_valid: float = _D.min_valid
    tile_margin_m: float = _D.tile_margin_m
    cloud_min: float | None = _D.cloud_min
    block_cells: int = _D.block_cells
    precision: Literal["auto", "float32", "mixed_float16"] = _D.precision

    def _inputs(self) -> tuple[str, ...]:
        return ("imagery", "nightlights")

    def _hyperparameters(self) -> dict[str, Any]:
        hp = super()._hyperparameters()
        hp.pop("precision", None)  # same model whatever the device, up to rounding
        return hp

    @property
    def settings(self) -> CNNSettings:
        """The hyperparameters as :class:`CNNSettings`."""
        names = {f.name for f in fields(CNNSettings)}
        return CNNSettings(**{k: v for k, v in asdict(self).items() if k in names})

    @property
    def _dim(self) -> int:
        return self.embedding_dim

    def fit(
        self, area: StudyArea, *, engine: Engine, progress: ProgressCallback | None = None
    ) -> TransferCNNFeatures:
        """Train on every cell's nightlights (or load the model cached for these inputs)."""
        from povertymap._options import require

        require("tensorflow")
        from povertymap.models.deep.cnn import load_cnn
        from povertymap.models.deep.labels import cell_means
        from povertymap.models.deep.train import train_transfer_cnn

        key = self._key(area)
        root = self._root(key)
        imagery = imagery_of(area)
        self.pixel_units_ = radiometry(imagery)
        cached = cached_model(root)
        if cached is not None:
            model_path, meta = cached
            self.model_ = load_cnn(model_path)
            self.history_ = meta["history"]
            self.train_seconds_ = 0.0
            self.from_cache_ = True
            self.key_ = key
            return self
        grid = area.grid
        ix = grid["ix"].to_numpy(np.int64)
        iy = grid["iy"].to_numpy(np.int64)
        with area.rasters["nightlights"].reader(crs=area.crs) as r:
            radiance = cell_means(r, area.cell_size, ix, iy, block_cells=self.block_cells)
        with imagery.reader(crs=area.crs) as r:
            tile_grid = self._tile_grid(r.transform, area)
        result = train_transfer_cnn(
            imagery,
            area.crs,
            tile_grid,
            ix,
            iy,
            radiance,
            self.settings,
            random_state=self.random_state,
            log_dir=self.log_dir,
            cache_dir=root / "tmp" if self.cache_dir is not None else None,
            progress=progress,
        )
        self.model_ = result.model
        self.history_ = result.history
        self.train_seconds_ = result.seconds
        self.from_cache_ = False
        self.key_ = key
        meta = {
            "history": result.history,
            "seconds": result.seconds,
            "n_train": result.n_train,
            "n_val": result.n_val,
            "precision": result.precision,
            "classes": asdict(result.classes) if result.classes else None,
            **result.meta,
        }
        write_cached_model(root, result.model, meta)
        return self

    def _embed_missing(
        self,
        area: StudyArea,
        ix: np.ndarray,
        iy: np.ndarray,
        store: EmbeddingStore,
        progress: ProgressCallback | None,
    ) -> None:
        from povertymap.models.deep.cnn import embedding_model
        from povertymap.models.deep.tiles import cell_blocks
        from povertymap.models.deep.train import embed_cells

        imagery = imagery_of(area)
        with imagery.reader(crs=area.crs) as r:
            tile_grid = self._tile_grid(r.transform, area)
        emb_model = embedding_model(self.model_)
        total = len(cell_blocks(ix, iy, self.block_cells))
        for done, (idx, emb) in enumerate(
            embed_cells(
                emb_model,
                imagery,
                area.crs,
                tile_grid,
                ix,
                iy,
                block_cells=self.block_cells,
                cloud_min=self.cloud_min,
                min_valid=self.min_valid,
                pixel_units=getattr(self, "pixel_units_", None),
            ),
            start=1,
        ):
            store.put(ix[idx], iy[idx], emb)
            if progress is not None:
                progress("cnn embeddings", done, total)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable: the Keras model travels as the bytes of its ``.keras`` file."""
        from povertymap.io.keras import keras_model_bytes

        state = super().__getstate__()
        model = state.pop("model_", None)
        if model is not None:
            state["_model_bytes"] = keras_model_bytes(model)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`__getstate__` (loads keras only when a model is present)."""
        blob = state.pop("_model_bytes", None)
        super().__setstate__(state)
        if blob is not None:
            from povertymap.models.deep.cnn import cnn_from_bytes

            self.model_ = cnn_from_bytes(blob)


@dataclass(eq=False)
class RandomConvFeatures(_ImageryEmbeddings):
    """Random convolutional features (MOSAIKS, Rolf et al. 2021): ``2 x n_filters`` per cell.

    ``n_filters`` random ``patch x patch`` filters (all bands), ZCA-whitened with
    ``whiten_eps``; features are means of ``ReLU(z - bias)`` and ``ReLU(-z - bias)`` over
    every ``stride``-th position of the tile.
    Band statistics, whitening and filters come from ``sample_tiles`` random cells. Tiles
    with less than ``min_valid`` valid pixels get no vector; ``tile_margin_m``,
    ``cloud_min`` and ``block_cells`` as for the CNN. ``cache_dir``: cached cell features
    (None: a temporary folder; not pickled); ``log_dir`` is unused (nothing is trained).
    Needs only an ``imagery`` raster and no tensorflow. Fitted: ``filters_``, ``stats_``,
    ``key_``, ``pixel_units_`` (the ``(scale, offset)`` of the imagery it was fitted on).
    """

    name: ClassVar[str] = "rcf"
    description: ClassVar[str] = "random convolutional features of imagery (MOSAIKS)"

    n_filters: int = 256
    patch: int = 3
    stride: int = 2
    bias: float = 0.0
    whiten_eps: float = 1e-2
    sample_tiles: int = 256
    min_valid: float = 0.5
    tile_margin_m: float = 0.0
    cloud_min: float | None = CLOUD_MIN
    block_cells: int = 32

    @property
    def _dim(self) -> int:
        return 2 * self.n_filters

    def fit(
        self, area: StudyArea, *, engine: Engine, progress: ProgressCallback | None = None
    ) -> RandomConvFeatures:
        """Band statistics, whitening and filters from a random sample of cell tiles."""
        start = time.perf_counter()
        grid = area.grid
        ix = grid["ix"].to_numpy(np.int64)
        iy = grid["iy"].to_numpy(np.int64)
        imagery = imagery_of(area)
        self.pixel_units_ = radiometry(imagery)
        with imagery.reader(crs=area.crs) as r:
            tile_grid = self._tile_grid(r.transform, area)
            sample = sample_tiles(
                r,
                tile_grid,
                ix,
                iy,
                self.sample_tiles,
                random_state=self.random_state,
                cloud_min=self.cloud_min,
            )
        warn_if_mostly_invalid(sample, self.cloud_min, "random features")
        sample = sample.subset(sample.valid_fraction >= self.min_valid)
        self.stats_: BandStats = band_stats([sample])
        tiles = normalise_tiles(sample, self.stats_)
        self.filters_: RandomFilters = sample_random_filters(
            tiles,
            sample.valid,
            n_filters=self.n_filters,
            patch=self.patch,
            eps=self.whiten_eps,
            bias=self.bias,
            random_state=self.random_state,
        )
        self.key_ = self._key(area)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def embed_tiles(self, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Features ``(n, 2K)`` of raw tiles ``(n, rows, cols, bands)`` with validity masks."""
        from povertymap.models.deep.tiles import TileBatch

        n = len(pixels)
        batch = TileBatch(np.zeros(n, np.int64), np.zeros(n, np.int64), pixels, valid)
        tiles = normalise_tiles(batch, self.stats_)
        return random_conv_features(tiles, valid, self.filters_, stride=self.stride)

    def _embed_missing(
        self,
        area: StudyArea,
        ix: np.ndarray,
        iy: np.ndarray,
        store: EmbeddingStore,
        progress: ProgressCallback | None,
    ) -> None:
        from povertymap.models.deep.tiles import cell_blocks

        total = len(cell_blocks(ix, iy, self.block_cells))
        imagery = imagery_of(area)
        units = getattr(self, "pixel_units_", None)
        with imagery.reader(crs=area.crs) as r:
            tile_grid = self._tile_grid(r.transform, area)
            blocks = iter_tile_blocks(
                r, tile_grid, ix, iy, block_cells=self.block_cells, cloud_min=self.cloud_min
            )
            for done, (idx, batch) in enumerate(blocks, start=1):
                emb = np.full((len(idx), self._dim), np.nan, np.float32)
                keep = np.flatnonzero(batch.valid_fraction >= self.min_valid)
                if len(keep):
                    kept = rescale_pixels(batch.subset(keep), radiometry(imagery), units)
                    emb[keep] = self.embed_tiles(kept.pixels, kept.valid)
                store.put(ix[idx], iy[idx], emb)
                if progress is not None:
                    progress("rcf embeddings", done, total)
