"""Saving and loading a fitted mapping model (the ``model/`` folder of a run).

The folder holds ``model.joblib``: the fitted estimators, the fitted feature blocks that
turn a study area into their inputs, the feature columns in order, and the name of the
target. Blocks that own framework models (Keras) save them beside it in their own format
through ``save_state``/``load_state``. Loading a joblib file runs code from it: load only
models you made or trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
from sklearn.base import BaseEstimator

from povertymap import __version__
from povertymap.errors import RunDirError
from povertymap.features.base import FeatureBlock

__all__ = ["SavedModel", "load_model", "save_model"]

MODEL_FILE = "model.joblib"


@dataclass
class SavedModel:
    """Everything needed to map a new study area with a fitted model."""

    model: BaseEstimator
    blocks: list[FeatureBlock]
    columns: list[str]
    target: str
    radii: dict[str, float]
    """Cluster buffer radii the model was trained with (cells are seen through them)."""
    references: dict[str, BaseEstimator] = field(default_factory=dict)
    """Models fitted beside it (``baseline``, ``no_imagery``...), mapped alongside."""
    extra: dict[str, Any] = field(default_factory=dict)
    version: str = __version__


def save_model(saved: SavedModel, folder: Path) -> None:
    """Write ``saved`` into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, block in enumerate(saved.blocks):
        save_state = getattr(block, "save_state", None)
        if save_state is not None:
            save_state(folder / f"block{i}-{block.name}")
    joblib.dump(saved, folder / MODEL_FILE, compress=3)


def load_model(folder: Path) -> SavedModel:
    """Read a model saved by :func:`save_model`."""
    path = folder / MODEL_FILE
    if not path.exists():
        raise RunDirError(f"{folder} holds no {MODEL_FILE}; pass a run directory made by `run`")
    saved: SavedModel = joblib.load(path)
    for i, block in enumerate(saved.blocks):
        load_state = getattr(block, "load_state", None)
        if load_state is not None:
            load_state(folder / f"block{i}-{block.name}")
    return saved
