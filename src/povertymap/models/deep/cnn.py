"""The transfer CNN: a small Keras 3 functional network from an image tile to nightlights.

Input: a tile ``(rows, cols, bands + 1)`` of raw pixel values whose last channel is the
validity mask (1 valid, 0 nodata/cloud). :class:`MaskedStandardize` standardises the bands
with statistics computed from the imagery (stored in the layer's config, so the ``.keras``
file is self-contained) and zeroes invalid pixels, keeping the mask as a channel so the
network can tell "cloud" from "average".

Body: a stem convolution with stride 2 (20 m pixels become 40 m features: single pixels
matter less than texture at this resolution, and it quarters the cost), then ``depth``
stages of [3x3 conv, batch norm, ReLU, 2x2 max pool] doubling the width from ``width``,
global average pooling (the tile size can change between areas), a linear bottleneck of
``embedding_dim`` units with batch normalisation named ``"embedding"`` (the features used
downstream, taken before the ReLU that follows: a ReLU output has units that are 0 on every
tile, which carry nothing), then dropout and the head (``"proxy"``), which predicts the
nightlight class logits (or log radiance) and always computes in float32, also under mixed
precision.

This module imports keras at import time: import it lazily (the feature blocks do).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
from keras import layers, ops

__all__ = [
    "EMBEDDING_LAYER",
    "MaskedStandardize",
    "build_cnn",
    "cnn_flops",
    "cnn_from_bytes",
    "embedding_model",
    "load_cnn",
]

EMBEDDING_LAYER = "embedding"
OUTPUT_LAYER = "proxy"


@keras.saving.register_keras_serializable(package="povertymap")
class MaskedStandardize(layers.Layer):
    """``(x - mean) / std`` on the bands, 0 where invalid; the mask is passed on as a channel.

    The input's last channel is the validity mask. Statistics are constants of the layer
    (not weights): they come from the imagery, not from training.
    """

    def __init__(self, mean: list[float], std: list[float], **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} bands but std has {len(std)}")
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]

    def call(self, inputs: Any) -> Any:
        """Standardise the bands, zero invalid pixels, append the mask."""
        x = ops.cast(inputs, "float32")
        bands, valid = x[..., :-1], x[..., -1:]
        mean = ops.convert_to_tensor(self.mean, dtype="float32")
        std = ops.convert_to_tensor(self.std, dtype="float32")
        z = (bands - mean) / std * valid
        return ops.concatenate([z, valid], axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Same shape as the input."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """Config with the band statistics (serialised in the ``.keras`` file)."""
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def build_cnn(
    tile_shape: tuple[int, int],
    mean: list[float],
    std: list[float],
    *,
    width: int = 16,
    depth: int = 3,
    embedding_dim: int = 64,
    n_outputs: int = 3,
    dropout: float = 0.2,
    dtype_policy: str = "float32",
    seed: int = 0,
) -> keras.Model:
    """The functional model ``tile -> proxy output`` (see the module docstring).

    ``n_outputs`` is the number of classes (logits), or 1 for regression. ``dtype_policy``
    is ``"float32"`` or ``"mixed_float16"``: it applies to every layer but the input
    standardisation and the output head, which stay float32.
    """
    bands = len(mean)
    inputs = keras.Input(shape=(*tile_shape, bands + 1), name="tile")
    x = MaskedStandardize(mean, std, name="standardize")(inputs)
    init = keras.initializers.HeNormal
    x = layers.Conv2D(
        width,
        5,
        strides=2,
        padding="same",
        use_bias=False,
        kernel_initializer=init(seed),
        dtype=dtype_policy,
        name="stem_conv",
    )(x)
    x = layers.BatchNormalization(dtype=dtype_policy, name="stem_bn")(x)
    x = layers.ReLU(dtype=dtype_policy, name="stem_relu")(x)
    for i in range(depth):
        filters = width * 2 ** min(i + 1, 3)
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer=init(seed + 1 + i),
            dtype=dtype_policy,
            name=f"conv{i + 1}",
        )(x)
        x = layers.BatchNormalization(dtype=dtype_policy, name=f"bn{i + 1}")(x)
        x = layers.ReLU(dtype=dtype_policy, name=f"relu{i + 1}")(x)
        if i < depth - 1:
            x = layers.MaxPooling2D(2, padding="same", dtype=dtype_policy, name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(dtype=dtype_policy, name="gap")(x)
    x = layers.Dense(
        embedding_dim,
        use_bias=False,
        kernel_initializer=init(seed + 100),
        dtype=dtype_policy,
        name="bottleneck",
    )(x)
    x = layers.BatchNormalization(dtype=dtype_policy, name=EMBEDDING_LAYER)(x)
    x = layers.ReLU(dtype=dtype_policy, name="embedding_relu")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, seed=seed, dtype=dtype_policy, name="dropout")(x)
    outputs = layers.Dense(
        n_outputs,
        kernel_initializer=keras.initializers.GlorotUniform(seed + 200),
        dtype="float32",
        name=OUTPUT_LAYER,
    )(x)
    return keras.Model(inputs, outputs, name="transfer_cnn")


def load_cnn(path: str | os.PathLike[str]) -> keras.Model:
    """Load a model saved as ``.keras`` (:mod:`povertymap.io.keras`), without its optimizer.

    Loading through this module guarantees :class:`MaskedStandardize` is registered.
    """
    from povertymap.io.keras import load_keras_model

    return load_keras_model(path)


def cnn_from_bytes(blob: bytes) -> keras.Model:
    """Load a model from the bytes of its ``.keras`` file, like :func:`load_cnn`."""
    from povertymap.io.keras import keras_model_from_bytes

    return keras_model_from_bytes(blob)


def embedding_model(model: keras.Model) -> keras.Model:
    """The sub-model ``tile -> embedding`` (shares weights with ``model``), float32 output."""
    emb = model.get_layer(EMBEDDING_LAYER).output
    return keras.Model(model.inputs, ops.cast(emb, "float32"), name="transfer_cnn_embedding")


def cnn_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of one forward pass of one tile, counted from the layer shapes.

    Counts convolutions and dense layers (the rest is < 2% of the total).
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            out = layer.output.shape  # (None, h, w, c_out)
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += 2 * int(out[1]) * int(out[2]) * int(out[3]) * kh * kw * int(c_in)
        elif isinstance(layer, layers.Dense):
            total += 2 * int(layer.input.shape[-1]) * int(layer.units)
    return total
