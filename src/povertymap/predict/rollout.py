"""Rollout: predictions for every grid cell, and the cells as a raster."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from povertymap.predict.grid import GridLayout

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["cells_to_raster", "map_cells", "out_of_area_predictions", "predict_cells"]

PREDICT_CHUNK = 100_000  # cells per predict call: bounds memory for national grids


def predict_cells(model: BaseEstimator, X: pd.DataFrame) -> pd.Series:
    """Predictions of ``model`` for every row of ``X`` (chunked), indexed like ``X``."""
    parts = [
        np.asarray(model.predict(X.iloc[i : i + PREDICT_CHUNK]), dtype=float)
        for i in range(0, len(X), PREDICT_CHUNK)
    ]
    return pd.Series(np.concatenate(parts) if parts else [], index=X.index, name="estimate")


def cells_to_raster(
    cells: gpd.GeoDataFrame | pd.DataFrame, columns: Sequence[str], cell_size: float
) -> tuple[np.ndarray, GridLayout]:
    """A (bands, rows, cols) float32 array with one pixel per cell; NaN where no cell."""
    ix, iy = cells["ix"].to_numpy(), cells["iy"].to_numpy()
    layout = GridLayout.of(ix, iy, cell_size)
    out = np.full((len(columns), layout.height, layout.width), np.nan, dtype=np.float32)
    rows, cols = layout.pixel(ix, iy)
    for b, column in enumerate(columns):
        out[b, rows, cols] = cells[column].to_numpy(dtype=np.float32)
    return out, layout


def map_cells(
    area: StudyArea,
    facts: pd.DataFrame,
    features: pd.DataFrame,
    models: dict[str, BaseEstimator],
) -> gpd.GeoDataFrame:
    """Every grid cell with its facts (population, urban, dark), admin units and the
    predictions of each model: ``estimate`` for the one named ``model``, else its name."""
    grid = area.grid
    cells = grid[["ix", "iy", "aoi_fraction", "admin_id", "geometry"]].copy()
    admin = area.require_admin()
    if "parent_id" in admin:
        cells["parent_id"] = admin["parent_id"].reindex(cells["admin_id"]).to_numpy()
    cells = cells.join(facts)
    for name, model in models.items():
        cells["estimate" if name == "model" else name] = predict_cells(model, features)
    return cells


def out_of_area_predictions(
    fit: Callable[[pd.DataFrame, np.ndarray], BaseEstimator],
    X: pd.DataFrame,
    y: np.ndarray,
    cluster_area: np.ndarray,
    features: pd.DataFrame,
    cell_area: np.ndarray,
) -> pd.Series:
    """Each cell predicted by a model refitted without the clusters of its own area.

    Small-area estimation combines an area's survey estimate with the map's; the two must
    have independent errors, and a map fitted on the area's own clusters carries part of
    their sampling error. ``fit(X, y)`` returns a fitted model.
    """
    out = pd.Series(np.nan, index=features.index, name="pred_out_of_area")
    for area_id in pd.unique(cell_area):
        keep = cluster_area != area_id
        here = cell_area == area_id
        model = fit(X[keep], y[keep])
        out[here] = predict_cells(model, features[here]).to_numpy()
    return out
