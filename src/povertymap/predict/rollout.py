"""Rollout: predictions for every grid cell, and the cells as a raster."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from povertymap.engine.base import Engine, ProgressCallback, fixed_threads
from povertymap.engine.local import LocalEngine
from povertymap.grid import GridLayout

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = [
    "cells_to_raster",
    "map_cells",
    "out_of_area_predictions",
    "predict_cells",
    "predict_table",
]

PREDICT_CHUNK = 100_000  # cells per predict call: bounds memory for national grids


def predict_cells(model: BaseEstimator, X: pd.DataFrame) -> pd.Series:
    """Predictions of ``model`` for every row of ``X`` (chunked), indexed like ``X``."""
    parts = [
        np.asarray(model.predict(X.iloc[i : i + PREDICT_CHUNK]), dtype=float)
        for i in range(0, len(X), PREDICT_CHUNK)
    ]
    return pd.Series(np.concatenate(parts) if parts else [], index=X.index, name="estimate")


def predict_table(
    models: Mapping[str, BaseEstimator], X: pd.DataFrame, *, engine: Engine | None = None
) -> pd.DataFrame:
    """Each model's predictions for every row of ``X``: one column per name, indexed like X.

    On a distributing engine (Spark) the rollout is one job: each chunk of
    :data:`PREDICT_CHUNK` cells is a task that predicts it with every model, and the fitted
    models travel once to each executor (the engine broadcasts the kernel, which carries
    them). On the local engine, or with no engine, each model predicts here, chunk by
    chunk: a prediction is cheap beside shipping fitted models to worker processes. The
    numbers are the same either way: a cell's prediction depends on its own features only.
    """
    names = list(models)
    if engine is None or engine.name == "local" or len(X) == 0:
        return pd.DataFrame({n: predict_cells(models[n], X) for n in names}, index=X.index)
    chunks = [X.iloc[i : i + PREDICT_CHUNK] for i in range(0, len(X), PREDICT_CHUNK)]
    done = engine.map(partial(_predict_chunk, dict(models)), chunks, label="rollout")
    return pd.DataFrame({n: done[n].to_numpy(dtype=float) for n in names}, index=X.index)


def _predict_chunk(models: dict[str, BaseEstimator], X: pd.DataFrame) -> pd.DataFrame:
    """One rollout task: every model's predictions for the cells ``X``, indexed like X."""
    return pd.DataFrame(
        {n: np.asarray(m.predict(X), dtype=float) for n, m in models.items()}, index=X.index
    )


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


def map_cells(area: StudyArea, facts: pd.DataFrame, predictions: pd.DataFrame) -> gpd.GeoDataFrame:
    """Every grid cell with its facts (population, urban, dark), admin units and the
    ``predictions`` (one column per model, indexed by ``cell_id``)."""
    grid = area.grid
    cells = grid[["ix", "iy", "aoi_fraction", "admin_id", "geometry"]].copy()
    admin = area.require_admin()
    if "parent_id" in admin:
        cells["parent_id"] = admin["parent_id"].reindex(cells["admin_id"]).to_numpy()
    return cells.join(facts).join(predictions)


def out_of_area_predictions(
    fit: Callable[[pd.DataFrame, np.ndarray], BaseEstimator],
    X: pd.DataFrame,
    y: np.ndarray,
    cluster_area: np.ndarray,
    features: pd.DataFrame,
    cell_area: np.ndarray,
    *,
    groups: int | None = None,
    engine: Engine | None = None,
    progress: ProgressCallback | None = None,
) -> pd.Series:
    """Each cell predicted by a model refitted without the clusters of its own area.

    Small-area estimation combines an area's survey estimate with the map's; the two must
    have independent errors, and a map fitted on the area's own clusters carries part of
    their sampling error. ``fit(X, y)`` returns a fitted model; it must be picklable for a
    parallel engine (e.g. ``functools.partial(fit_model, cfg)``).

    ``groups`` None refits once per surveyed area. With ``groups`` = K the surveyed areas
    are dealt in the order of their ids into K groups (area i to group i mod K) and each
    group's cells come from one model refitted without all of the group's clusters:
    cross-fitting, whose predictions are as independent of an area's own sampling error
    as one refit per area, from K refits instead of one per area, each on about
    (K - 1) / K of the clusters. The areas without a cluster share one refit on every
    cluster. Each refit is one task of :func:`_refit_without` mapped by ``engine``
    (default: this process, one after another); the predictions are the same whatever
    the engine.
    """
    values = np.full(len(features), np.nan)
    cell_area = np.asarray(cell_area)
    cluster_area = np.asarray(cluster_area)
    known = set(pd.unique(cluster_area).tolist())
    surveyed = sorted(known, key=str)
    if groups is None or groups >= len(surveyed):
        held_out = [[a] for a in surveyed]
    else:
        held_out = [surveyed[k::groups] for k in range(groups)]
    tasks = []
    for leave_out, cells_of in [*((g, g) for g in held_out), ([], list(set(cell_area) - known))]:
        here = np.flatnonzero(np.isin(cell_area, cells_of))
        if len(here):  # a NaN area id matches no cell (NaN != NaN): nothing to predict
            tasks.append((leave_out, here, features.iloc[here]))
    if tasks:
        engine = engine if engine is not None else LocalEngine()
        done = engine.map(
            partial(_refit_without, fit, X, np.asarray(y), cluster_area),
            tasks,
            label="out-of-area refits",
            progress=progress,
        )
        values[done["position"].to_numpy(dtype=np.int64)] = done["pred"].to_numpy(dtype=float)
    return pd.Series(values, index=features.index, name="pred_out_of_area")


def _refit_without(
    fit: Callable[[pd.DataFrame, np.ndarray], BaseEstimator],
    X: pd.DataFrame,
    y: np.ndarray,
    cluster_area: np.ndarray,
    task: tuple[list[object], np.ndarray, pd.DataFrame],
) -> pd.DataFrame:
    """Refit without the clusters of the task's areas; predict the task's cells.

    ``task`` is ``(areas to leave out, cell positions, cell features)``; an empty list
    (the areas without clusters) keeps every cluster. BLAS and OpenMP run on one thread,
    so the numbers are the same in this process and in a worker process.
    """
    leave_out, positions, cells = task
    keep = ~np.isin(cluster_area, np.asarray(leave_out, dtype=object))
    with fixed_threads(1):
        model = fit(X[keep], y[keep])
        pred = predict_cells(model, cells).to_numpy()
    return pd.DataFrame({"position": positions, "pred": pred}, index=cells.index)
