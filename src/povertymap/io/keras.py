"""Keras on disk: ``.keras`` model files, their bytes for pickling, TensorBoard logs.

Keras is imported inside the functions (``import povertymap.io.keras`` is light). Custom
layers must be registered before loading: load through
:func:`povertymap.models.deep.cnn.load_cnn`, which imports the module that registers them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

__all__ = [
    "keras_model_bytes",
    "keras_model_from_bytes",
    "load_keras_model",
    "save_keras_model",
    "tensorboard_callback",
]


def save_keras_model(model: keras.Model, path: Path) -> Path:
    """Save ``model`` as a ``.keras`` file at ``path``, atomically (temp name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{os.getpid()}.keras"
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_keras_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a ``.keras`` file without its optimizer (``compile=False``)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras.saving.load_model(path, compile=False)


def keras_model_bytes(model: keras.Model) -> bytes:
    """The bytes of ``model``'s ``.keras`` file (written to a private temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="povertymap-keras-") as d:
        path = Path(d) / "model.keras"
        model.save(path)
        return path.read_bytes()


def keras_model_from_bytes(blob: bytes) -> keras.Model:
    """Inverse of :func:`keras_model_bytes` (``compile=False``)."""
    with tempfile.TemporaryDirectory(prefix="povertymap-keras-") as d:
        path = Path(d) / "model.keras"
        path.write_bytes(blob)
        return load_keras_model(path)


def tensorboard_callback(log_dir: Path) -> keras.callbacks.Callback:
    """A callback that writes TensorBoard logs (no graph) under ``log_dir``."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)
