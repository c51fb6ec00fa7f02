"""Training the transfer CNN on the nightlights proxy task, and embedding cells with it.

The proxy task (Jean et al. 2016) has a label for every grid cell: its mean nightlight
radiance. Two forms are offered (``CNNSettings.task``):

``"classes"`` (default)
    dark / dim / bright by terciles of cell radiance (all unlit cells are "dark" when the
    terciles tie, see :func:`~povertymap.models.deep.labels.light_classes`), softmax
    cross-entropy with class-balanced sample weights so the few bright cells count as much
    as the many dark ones. This is Jean et al.'s choice.
``"regression"``
    ``log1p`` of the cell radiance, mean squared error.

Validation is spatial: cells are grouped in square blocks of ``val_block_cells`` cells and
whole blocks are held out (``val_fraction`` of the cells), so early stopping measures how
the network does on ground it has not seen, not on the neighbours of its training tiles.

Determinism: :func:`train_transfer_cnn` seeds python, numpy and tensorflow
(``keras.utils.set_random_seed``), the initialisers, dropout, shuffling and augmentation,
and tf.data keeps element order. On CPU the result is then reproducible run to run up to
floating-point summation order in multi-threaded kernels (oneDNN convolutions split work by
thread count), which can change the last bits of weights and, through early stopping, the
epoch kept; on GPU cuDNN kernels add their own non-determinism (enable
``tf.config.experimental.enable_op_determinism`` for bitwise runs, at a cost in speed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pyproj import CRS

from povertymap.engine.base import ProgressCallback
from povertymap.errors import ModelError
from povertymap.io.raster import RasterSource, radiometry
from povertymap.io.tiles import temporary_tile_dir
from povertymap.models.deep.device import choose_precision, visible_gpus
from povertymap.models.deep.labels import LightClasses, light_classes
from povertymap.models.deep.tiles import (
    CLOUD_MIN,
    TileGrid,
    band_stats,
    check_cloud_min,
    iter_tile_blocks,
    rescale_pixels,
    sample_tiles,
    warn_if_mostly_invalid,
)

if TYPE_CHECKING:
    import keras

__all__ = [
    "CNNSettings",
    "TrainResult",
    "embed_cells",
    "proxy_targets",
    "spatial_holdout",
    "train_transfer_cnn",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CNNSettings:
    """Hyperparameters of the transfer CNN and its training (demo: ~50 s on 2 CPU cores).

    Model: ``width`` filters in the stem (doubling per stage up to 8x), ``depth`` stages,
    ``embedding_dim`` features per tile, ``dropout`` before the head. Task: ``task``
    (``"classes"`` or ``"regression"``, see the module docstring). Training: ``epochs`` at
    most, ``batch_size``, Adam ``learning_rate``, early stopping after ``patience`` epochs
    without improvement of the spatial validation loss (``val_fraction`` of the cells in
    blocks of ``val_block_cells``), random flips/rotations if ``augment``, at most
    ``max_train_cells`` cells (a random sample beyond). Data: band statistics from
    ``stats_tiles`` random tiles; tiles with less than ``min_valid`` valid pixels are not
    used; ``tile_margin_m`` of context around each cell; pixels whose visible bands all
    reach the reflectance ``cloud_min`` (``DN * scale + offset`` with the imagery's
    radiometry) are cloud (None: no brightness test, e.g. when a cloud mask is given; the
    default 0.585 flags thick cloud in 8-bit imagery read as DN / 255, where it is the
    former 8-bit threshold of DN 150, as in Sentinel-2 or Landsat reflectance);
    ``block_cells`` cells per read block. ``precision``: ``"auto"`` (mixed float16 on
    tensor-core GPUs, else float32), ``"float32"`` or ``"mixed_float16"``.
    """

    task: Literal["classes", "regression"] = "classes"
    width: int = 16
    depth: int = 3
    embedding_dim: int = 64
    dropout: float = 0.2
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    patience: int = 3
    val_fraction: float = 0.2
    val_block_cells: int = 8
    augment: bool = True
    max_train_cells: int = 20_000
    stats_tiles: int = 512
    min_valid: float = 0.5
    tile_margin_m: float = 0.0
    cloud_min: float | None = CLOUD_MIN
    block_cells: int = 32
    precision: Literal["auto", "float32", "mixed_float16"] = "auto"

    def __post_init__(self) -> None:
        check_cloud_min(self.cloud_min, "key features.params.cnn.cloud_min")


@dataclass
class TrainResult:
    """A trained model and what happened: history per epoch, timings, class thresholds."""

    model: keras.Model
    history: dict[str, list[float]]
    seconds: float
    n_train: int
    n_val: int
    precision: str
    classes: LightClasses | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def spatial_holdout(
    ix: np.ndarray,
    iy: np.ndarray,
    *,
    block_cells: int,
    fraction: float,
    random_state: int = 0,
) -> np.ndarray:
    """Boolean mask of validation cells: whole random blocks, about ``fraction`` of the cells.

    Blocks are ``block_cells`` cells square and aligned to the grid; they are taken in a
    random order until adding the next one would overshoot the target count.
    """
    ix = np.asarray(ix, dtype=np.int64)
    iy = np.asarray(iy, dtype=np.int64)
    n = len(ix)
    if not 0 < fraction < 1 or n == 0:
        return np.zeros(n, bool)
    keys = np.floor_divide(ix, block_cells) * 1_000_003 + np.floor_divide(iy, block_cells)
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(uniq))
    target = fraction * n
    chosen = np.zeros(len(uniq), bool)
    total = 0
    for b in order:
        if total + counts[b] > target and total > 0:
            continue
        chosen[b] = True
        total += counts[b]
        if total >= target:
            break
    if chosen.all():  # a single block: keep something to train on
        chosen[:] = False
    return chosen[inverse]


def proxy_targets(
    radiance: np.ndarray, train: np.ndarray, task: str
) -> tuple[np.ndarray, np.ndarray, int, LightClasses | None]:
    """``(targets, sample weights, n_outputs, classes)`` of the proxy task.

    Class thresholds and balancing weights (``n / (3 n_c)``) come from the training cells.
    """
    r = np.asarray(radiance, dtype=float)
    if task == "classes":
        classes = light_classes(r[train])
        y = classes.classify(r)
        counts = np.bincount(y[train & (y >= 0)], minlength=3).astype(float)
        present = counts > 0
        w_class = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
        weights = np.where(y >= 0, w_class[np.maximum(y, 0)], 0.0)
        return y, weights.astype(np.float32), 3, classes
    if task == "regression":
        y = np.log1p(np.maximum(r, 0.0)).astype(np.float32)
        return y, np.isfinite(y).astype(np.float32), 1, None
    raise ValueError(f"task must be 'classes' or 'regression', got {task!r}")


def train_transfer_cnn(
    source: RasterSource,
    crs: CRS | None,
    grid: TileGrid,
    ix: np.ndarray,
    iy: np.ndarray,
    radiance: np.ndarray,
    settings: CNNSettings,
    *,
    random_state: int = 0,
    log_dir: Path | None = None,
    cache_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train the transfer CNN to predict nightlights of cells ``(ix, iy)`` from their tiles.

    ``radiance`` is each cell's mean nightlight radiance (NaN: no label, not used).
    TensorBoard logs go to ``log_dir`` when given; the training tiles are cached in a file
    under ``cache_dir`` when given (else in the system's temporary folder) and deleted after.
    """
    from povertymap._options import require

    require("tensorflow")
    import keras

    from povertymap.models.deep.cnn import build_cnn
    from povertymap.models.deep.data import tile_pipeline, write_tile_file

    start = time.perf_counter()
    keras.utils.set_random_seed(random_state)
    ix = np.asarray(ix, dtype=np.int64)
    iy = np.asarray(iy, dtype=np.int64)
    radiance = np.asarray(radiance, dtype=float)
    labelled = np.flatnonzero(np.isfinite(radiance))
    if len(labelled) > settings.max_train_cells:
        rng = np.random.default_rng(random_state)
        labelled = np.sort(rng.choice(labelled, settings.max_train_cells, replace=False))
    if len(labelled) < 10:
        raise ModelError(
            f"only {len(labelled)} cells have a nightlight value; the transfer CNN needs more",
            fix="check that the nightlights raster covers the study area",
        )
    ix, iy, radiance = ix[labelled], iy[labelled], radiance[labelled]
    val = spatial_holdout(
        ix,
        iy,
        block_cells=settings.val_block_cells,
        fraction=settings.val_fraction,
        random_state=random_state,
    )
    train = ~val
    targets, weights, n_outputs, classes = proxy_targets(radiance, train, settings.task)

    with source.reader(crs=crs) as reader:
        sample = sample_tiles(
            reader,
            grid,
            ix[train],
            iy[train],
            settings.stats_tiles,
            random_state=random_state,
            cloud_min=settings.cloud_min,
        )
    warn_if_mostly_invalid(sample, settings.cloud_min, "transfer CNN")
    stats = band_stats([sample])
    precision = choose_precision(settings.precision, visible_gpus())
    model = build_cnn(
        grid.shape,
        list(stats.mean),
        list(stats.std),
        width=settings.width,
        depth=settings.depth,
        embedding_dim=settings.embedding_dim,
        n_outputs=n_outputs,
        dropout=settings.dropout,
        dtype_policy=precision,
        seed=random_state,
    )
    optimizer: Any = keras.optimizers.Adam(settings.learning_rate)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    if settings.task == "classes":
        loss: Any = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics: list[Any] = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        loss = keras.losses.MeanSquaredError()
        metrics = []
    model.compile(optimizer=optimizer, loss=loss, weighted_metrics=metrics)

    callbacks: list[Any] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss" if val.any() else "loss",
            patience=settings.patience,
            restore_best_weights=True,
        )
    ]
    if log_dir is not None:
        from povertymap.io.keras import tensorboard_callback

        callbacks.append(tensorboard_callback(log_dir))
    if progress is not None:
        callbacks.append(_progress_callback(progress, settings.epochs))
    with temporary_tile_dir(cache_dir) as tmp:
        tiles, kept = write_tile_file(
            source,
            crs,
            grid,
            ix,
            iy,
            tmp / "tiles.u8",
            block_cells=settings.block_cells,
            cloud_min=settings.cloud_min,
            min_valid=settings.min_valid,
        )
        rows_train = np.flatnonzero(train[kept])
        rows_val = np.flatnonzero(val[kept])
        if len(rows_train) < 2:
            raise ModelError(
                f"only {len(rows_train)} training tiles have at least {settings.min_valid:.0%} "
                "valid pixels",
                fix="check the imagery's coverage, nodata and cloud_min settings",
            )
        train_ds = tile_pipeline(
            tiles,
            rows_train,
            targets[kept][rows_train],
            weights[kept][rows_train],
            batch_size=settings.batch_size,
            random_state=random_state,
            shuffle=True,
            augment=settings.augment,
        )
        val_ds = None
        if len(rows_val):
            val_ds = tile_pipeline(
                tiles,
                rows_val,
                targets[kept][rows_val],
                weights[kept][rows_val],
                batch_size=max(settings.batch_size, 256),
                shuffle=False,
                augment=False,
            )
        else:
            callbacks[0].monitor = "loss"
        hist = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=settings.epochs,
            callbacks=callbacks,
            shuffle=False,  # the pipeline shuffles (seeded); Keras cannot shuffle a dataset
            verbose=0,
        )
        n_train, n_val = len(rows_train), len(rows_val)
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    log.info("transfer CNN trained in %.1f s (%d epochs)", seconds, len(history.get("loss", [])))
    return TrainResult(
        model=model,
        history=history,
        seconds=seconds,
        n_train=n_train,
        n_val=n_val,
        precision=precision,
        classes=classes,
        meta={
            "band_stats": stats.to_dict(),
            "settings": asdict(settings),
            "radiometry": list(radiometry(source)),
        },
    )


def _progress_callback(progress: ProgressCallback, epochs: int) -> Any:
    import keras

    class _Cb(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            progress("training transfer CNN", epoch + 1, epochs)

    return _Cb()


def embed_cells(
    model: keras.Model,
    source: RasterSource,
    crs: CRS | None,
    grid: TileGrid,
    ix: np.ndarray,
    iy: np.ndarray,
    *,
    block_cells: int = 32,
    cloud_min: float | None = None,
    min_valid: float = 0.5,
    batch_size: int = 256,
    pixel_units: tuple[float, float] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices into ix/iy, embeddings)`` block by block.

    ``model`` is the embedding model (tile -> features). Tiles with less than
    ``min_valid`` valid pixels get NaN rows (they are not fed to the network).
    ``pixel_units``: the ``(scale, offset)`` of the imagery the model was trained on;
    tiles of imagery with another radiometry are converted to its DN first
    (:func:`~povertymap.models.deep.tiles.rescale_pixels`).
    """
    import tensorflow as tf

    from povertymap.models.deep.data import model_input, reader_crs

    dim = int(model.outputs[0].shape[-1])
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)

    @tf.function(input_signature=[spec], autograph=False)
    def forward(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    with source.reader(crs=reader_crs(source, crs)) as reader:
        for idx, batch in iter_tile_blocks(
            reader, grid, ix, iy, block_cells=block_cells, cloud_min=cloud_min
        ):
            keep = np.flatnonzero(batch.valid_fraction >= min_valid)
            out = np.full((len(idx), dim), np.nan, np.float32)
            if len(keep):
                kept = rescale_pixels(batch.subset(keep), radiometry(source), pixel_units)
                x = model_input(kept)
                for s in range(0, len(keep), batch_size):
                    xb = tf.convert_to_tensor(x[s : s + batch_size], dtype=tf.float32)
                    out[keep[s : s + batch_size]] = forward(xb).numpy()
            yield idx, out
