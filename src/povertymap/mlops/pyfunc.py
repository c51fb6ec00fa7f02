"""The :class:`~povertymap.mapping.MappingModel` as an MLflow pyfunc model.

``mlflow.pyfunc.load_model(uri).predict(feature_frame)`` returns exactly
``MappingModel.predict_features(feature_frame)`` (raw estimate, calibrated estimate,
interval, headcount): the saved ``model/`` folder travels as the pyfunc's artifact and is
loaded with :meth:`MappingModel.load`. This module imports MLflow at import time; only
:mod:`.tracking` imports it, lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema, TensorSpec

if TYPE_CHECKING:
    from povertymap.mapping import MappingModel

__all__ = ["MappingPyfunc", "signature"]


class MappingPyfunc(PythonModel):
    """Serves a saved MappingModel (artifact ``model``) through ``predict_features``."""

    def load_context(self, context: Any) -> None:
        from pathlib import Path

        from povertymap.mapping import MappingModel

        self.model_ = MappingModel.load(Path(context.artifacts["model"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return self.model_.predict_features(pd.DataFrame(model_input))


def signature(model: MappingModel) -> ModelSignature:
    """Inputs: the feature columns (doubles, missing allowed) and optional ``population``
    and ``urban``; outputs: the columns ``predict_features`` returns, from one example."""
    specs: list[ColSpec | TensorSpec] = [ColSpec("double", c) for c in model.columns_]
    specs.append(ColSpec("double", "population", required=False))
    specs.append(ColSpec("boolean", "urban", required=False))
    inputs = Schema(specs)
    example = model.training_X_.head(3) if hasattr(model, "training_X_") else None
    if example is None:
        raise ValueError("the model has no training features to take an output example from")
    out = model.predict_features(example)
    outputs = Schema([ColSpec("double", str(c)) for c in out.columns])
    return ModelSignature(inputs=inputs, outputs=outputs)
