"""Accuracy of models: metrics overall and by group, and cross-validation of a study area."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, clone

from povertymap.config import CVConfig, ModelConfig
from povertymap.errors import ConfigError, InputWarning, ModelError
from povertymap.features.nightlights import DARK_THRESHOLD
from povertymap.models.classical import (
    make_group_standardized,
    make_model,
    reference_models,
    standardize_within,
)
from povertymap.models.cv import (
    Fold,
    distance_match,
    make_folds,
    match_block_size,
    out_of_fold,
    out_of_fold_moved,
)

if TYPE_CHECKING:
    from povertymap.engine.base import Engine, ProgressCallback
    from povertymap.studyarea import StudyArea

__all__ = [
    "CrossValidation",
    "cross_validate",
    "fit_model",
    "metrics_by_group",
    "regression_metrics",
]

MIN_CLUSTERS = 20  # fewer survey clusters cannot support a cross-validated model
MIN_GROUP = 5  # groups with fewer rows get no metrics (r² of three points means nothing)


def regression_metrics(
    y: np.ndarray, pred: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, float]:
    """r², Spearman and Pearson correlation, RMSE, bias, calibration slope, variance ratio.

    ``r2`` is the coefficient of determination of the predictions themselves
    (1 - SSE/SST), not a squared correlation: shrinkage and bias lower it. ``slope`` is the
    OLS slope of observed on predicted (1: calibrated; above 1: predictions shrunk toward
    the mean) and ``variance_ratio`` the variance of predictions over that of observations.
    With ``weight`` (e.g. population), every sum is weighted, so the metrics describe the
    average person rather than the average row; Spearman stays unweighted.
    """
    y = np.asarray(y, dtype=float)
    pred = np.asarray(pred, dtype=float)
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=float)
    ok = np.isfinite(y) & np.isfinite(pred) & np.isfinite(w) & (w > 0)
    y, pred, w = y[ok], pred[ok], w[ok] / w[ok].sum() if ok.any() else w[ok]
    n = len(y)
    if n < 3:
        return {"n": float(n)}
    my, mp = float(w @ y), float(w @ pred)
    var_y, var_p = float(w @ (y - my) ** 2), float(w @ (pred - mp) ** 2)
    # a constant column's weighted variance is rounding noise, not zero: treat it as zero
    tiny = 1e-12 * max(1.0, my**2, mp**2)
    var_y, var_p = (v if v > tiny else 0.0 for v in (var_y, var_p))
    cov = float(w @ ((y - my) * (pred - mp)))
    resid = y - pred
    nan = float("nan")
    return {
        "n": float(n),
        "r2": 1.0 - float(w @ resid**2) / var_y if var_y > 0 else nan,
        "spearman": float(stats.spearmanr(y, pred).statistic) if var_p > 0 else nan,
        "pearson": cov / np.sqrt(var_y * var_p) if var_p > 0 and var_y > 0 else nan,
        "rmse": float(np.sqrt(w @ resid**2)),
        "bias": mp - my,
        "slope": cov / var_p if var_p > 0 else nan,
        "variance_ratio": var_p / var_y if var_y > 0 else nan,
    }


def metrics_by_group(
    y: np.ndarray, pred: np.ndarray, groups: dict[str, pd.Series]
) -> dict[str, dict[str, Any]]:
    """:func:`regression_metrics` within each value of each grouping (e.g. urban, region)."""
    out: dict[str, dict[str, Any]] = {}
    for name, labels in groups.items():
        values = labels.to_numpy()
        per = {}
        for value in pd.unique(values):
            sel = values == value
            if sel.sum() >= MIN_GROUP:
                per[str(value)] = regression_metrics(np.asarray(y)[sel], np.asarray(pred)[sel])
        out[name] = per
    return out


@dataclass
class CrossValidation:
    """Out-of-fold predictions of the model (and baseline) and their metrics."""

    scheme: str
    folds: list[Fold]
    oof: pd.DataFrame
    """Per cluster: ``y``, ``pred`` (the model), ``fold``, and a column per other model."""
    metrics: dict[str, Any]
    models: dict[str, ModelConfig]
    """Every model scored, by name: ``model`` and the reference and compared models."""


def _groups(area: StudyArea, X: pd.DataFrame) -> dict[str, pd.Series]:
    """Groupings of clusters for metrics: urban/rural, admin-1 region, dark/lit."""
    c = area.clusters
    out: dict[str, pd.Series] = {}
    if "urban" in c:
        out["urban"] = c["urban"].map({True: "urban", False: "rural"})
    if "parent_id" in c:
        out["region"] = c["parent_id"].astype(str)
    if "nl_mean" in X:
        out["lights"] = pd.Series(
            np.where(X["nl_mean"] < DARK_THRESHOLD, "dark", "lit"), index=X.index
        )
    return out


def cross_validate(
    area: StudyArea,
    X: pd.DataFrame,
    *,
    models: dict[str, ModelConfig] | None = None,
    scheme: str | None = None,
    group: str | None = None,
    n_folds: int | None = None,
    compare_random: bool = True,
    references: bool = True,
    prediction: tuple[np.ndarray, np.ndarray] | None = None,
    moved: Sequence[pd.DataFrame] = (),
    progress: ProgressCallback | None = None,
    engine: Engine | None = None,
) -> CrossValidation:
    """Cross-validate the configured model, with its references and ``models``, on one set
    of folds.

    ``references`` adds the nightlights-only and no-imagery models
    (:func:`~povertymap.models.classical.reference_models`); ``models`` adds named models
    to compare (each gets an out-of-fold column in ``oof``). With ``compare_random``, the
    model is also scored on random folds, to show how optimistic random CV is.
    ``prediction`` (the map's cell centres and populations) adds the distance-matching
    diagnostic and resolves ``block_size_m: auto``. ``moved``: the clusters' features
    computed elsewhere (re-displaced locations, aligned with ``X``); each fold model of
    the model also predicts its test rows from every table, in ``oof`` columns
    ``pred_moved_<i>``. ``engine`` runs the folds (default: one after another in this
    process); the numbers are the same whatever the engine.
    """
    cfg = area.config
    cv_cfg = cfg.cv if n_folds is None else cfg.cv.model_copy(update={"folds": n_folds})
    y = area.clusters["target"].to_numpy(dtype=float)
    if len(y) < MIN_CLUSTERS:
        raise ModelError(
            f"{len(y)} survey clusters are too few to fit and cross-validate a model",
            fix=f"use a survey with at least {MIN_CLUSTERS} clusters",
        )
    xy = np.column_stack([area.clusters.geometry.x, area.clusters.geometry.y])
    scheme = scheme or cv_cfg.scheme
    matching: dict[str, Any] = {}
    notes: list[str] = []
    if scheme == "spatial":
        cv_cfg = _fitting_blocks(cv_cfg, xy, prediction, notes)
    if scheme == "spatial" and cv_cfg.block_size_m == "auto":
        if prediction is None:
            raise ConfigError(
                "cv.block_size_m: auto matches distances to the map's cells, and this study "
                "area has no boundaries to make cells of",
                where="key cv.block_size_m",
                fix="give a block size in metres (--block-size 50000), or use --cv group",
            )
        size, tried = match_block_size(cv_cfg, xy, *prediction)
        cv_cfg = cv_cfg.model_copy(update={"block_size_m": size, "buffer_m": 0.0})
        matching["candidates"] = tried
    folds = make_folds(cv_cfg, area.clusters, xy, scheme=scheme, group=group)
    if prediction is not None:
        matching.update(distance_match(xy, folds, *prediction))
    named = {
        "model": cfg.model,
        **(reference_models(cfg.model, X.columns) if references else {}),
        **(models or {}),
    }
    by = cfg.model.target_standardize_by
    labels = _standardize_labels(area, X, by) if by else None
    y_index = y
    if labels is not None:
        # the scored truth: each cluster's target standardised over all clusters of its group
        y = standardize_within(y_index, labels)[0]

    def make(model_cfg: ModelConfig) -> partial[BaseEstimator]:
        if labels is None:
            return partial(make_model, model_cfg)
        return partial(make_group_standardized, model_cfg, labels)

    oof = pd.DataFrame({"y": y}, index=X.index)
    for name, model_cfg in named.items():
        pred, fold_id, at_moved = out_of_fold_moved(
            make(model_cfg),
            X,
            y_index,
            folds,
            moved if name == "model" else (),
            progress=progress,
            label=f"CV {name}",
            engine=engine,
        )
        oof["pred" if name == "model" else name] = pred
        oof["fold"] = fold_id
        for i in range(at_moved.shape[1]):
            oof[f"pred_moved_{i}"] = at_moved[:, i]
    groups = _groups(area, X)
    if labels is not None:
        groups[str(by)] = labels
    if scheme == "group":
        column = group or cv_cfg.group
        if column is not None and column in area.clusters:
            groups[column] = area.clusters[column].astype(str).set_axis(X.index)
    standardized: dict[str, Any] = {}
    if labels is not None:
        oof["y_index"] = y_index
        oof["pred_index"] = _back_to_index(y_index, oof["pred"].to_numpy(), labels, folds)
        standardized = _standardized_metrics(str(by), y_index, oof["pred_index"].to_numpy())
        notes = [*notes, *standardized.pop("notes")]
        if standardized["index"]["n"]:
            standardized["index"]["by_group"] = metrics_by_group(
                y_index, oof["pred_index"].to_numpy(), groups
            )
    metrics: dict[str, Any] = {
        "scheme": scheme,
        "folds": len(folds),
        **standardized,
        **regression_metrics(y, oof["pred"].to_numpy()),
        "by_group": metrics_by_group(y, oof["pred"].to_numpy(), groups),
        "dropped_by_buffer": int(sum(f.dropped for f in folds)),
        **(
            {"block_size_m": cv_cfg.block_size_m, "buffer_m": cv_cfg.buffer_m}
            if scheme == "spatial"
            else {}
        ),
        **({"distance_match": matching} if matching else {}),
        **({"notes": notes} if notes else {}),
        "models": {
            name: {
                **regression_metrics(y, oof[name if name != "model" else "pred"].to_numpy()),
                "by_group": metrics_by_group(
                    y, oof[name if name != "model" else "pred"].to_numpy(), groups
                ),
            }
            for name in named
        },
    }
    if compare_random and scheme != "random":
        rnd = make_folds(cv_cfg, area.clusters, xy, scheme="random")
        pred, _ = out_of_fold(
            make(cfg.model),
            X,
            y_index,
            rnd,
            progress=progress,
            label="CV random folds",
            engine=engine,
        )
        metrics["random_cv"] = regression_metrics(y, pred)
    return CrossValidation(scheme, folds, oof, metrics, named)


def _standardize_labels(area: StudyArea, X: pd.DataFrame, by: str) -> pd.Series:
    """The group of every cluster for ``model.target_standardize_by``, indexed like ``X``."""
    c = area.clusters
    if by not in c.columns or by in ("geometry", "target"):
        raise ConfigError(
            f"model.target_standardize_by: {by!r} is not a column of the survey clusters "
            f"(columns: {', '.join(str(k) for k in c.columns if k != 'geometry')})",
            where="key model.target_standardize_by",
            fix="name a column of the clusters file, e.g. country",
        )
    labels = c[by]
    if labels.isna().any():
        raise ModelError(
            f"column {by!r} has {int(labels.isna().sum())} missing values",
            where="key model.target_standardize_by",
            fix="give every cluster a group, or choose another column",
        )
    return labels.astype(str).set_axis(X.index)


def _back_to_index(
    y_index: np.ndarray, pred: np.ndarray, labels: pd.Series, folds: list[Fold]
) -> np.ndarray:
    """Standardised out-of-fold predictions mapped back to the target's own scale with the
    mean and sd of the test cluster's group among that fold's *training* clusters (the
    model's own back-transform); ``nan`` where the group had no training cluster."""
    out = np.full(len(pred), np.nan)
    values = labels.to_numpy()
    for fold in folds:
        _, stats = standardize_within(y_index[fold.train], values[fold.train])
        test = fold.test
        mean = stats["mean"].reindex(values[test]).to_numpy()
        sd = stats["sd"].reindex(values[test]).to_numpy()
        out[test] = mean + sd * pred[test]
    return out


def _standardized_metrics(by: str, y_index: np.ndarray, pred_index: np.ndarray) -> dict[str, Any]:
    """What the figures of a standardised target are on, and the pooled-index figures."""
    seen = int(np.isfinite(pred_index).sum())
    note = (
        f"model.target_standardize_by: {by}: r2, spearman, rmse, bias and by_group are on the "
        f"target standardised within each {by} (mean 0, sd 1 over that {by}'s clusters), "
        "not on the pooled index. "
    )
    if seen == len(pred_index):
        note += (
            "'index' has the pooled-index figures of the predictions mapped back with each "
            f"{by}'s mean and sd in the training folds."
        )
    elif seen:
        note += (
            f"'index' has pooled-index figures for the {seen} of {len(pred_index)} clusters "
            f"whose {by} was in the training folds."
        )
    else:
        note += (
            f"No test cluster's {by} was in its training folds, so there is no pooled-index "
            f"figure: an unseen {by}'s level is unknown. Cross-validate without "
            "model.target_standardize_by for the pooled-index figure."
        )
    return {
        "target_standardized_by": by,
        "index": regression_metrics(y_index, pred_index) if seen else {"n": 0.0},
        "notes": [note],
    }


def _fitting_blocks(
    cv_cfg: CVConfig,
    xy: np.ndarray,
    prediction: tuple[np.ndarray, np.ndarray] | None,
    notes: list[str],
) -> CVConfig:
    """``cv_cfg`` with a fixed block size that gives every fold a block.

    A study area smaller than ``folds`` blocks of the configured size (an 80 x 60 km country
    with the national-survey default of 50 km) does not fail: with the map's cells the
    block size is matched to them (``auto``), without them the folds are reduced to the
    blocks there are; each change is a warning and a note in the metrics.
    """
    size = cv_cfg.block_size_m
    if size == "auto":
        return cv_cfg
    n_blocks = len(np.unique(np.floor(xy / float(size)), axis=0))
    if n_blocks >= cv_cfg.folds:
        return cv_cfg
    if prediction is not None:
        note = (
            f"the clusters fall in {n_blocks} blocks of {float(size) / 1000:g} km, fewer "
            f"than the {cv_cfg.folds} folds: the block size is matched to the map instead "
            "(block_size_m: auto)"
        )
        update: dict[str, Any] = {"block_size_m": "auto"}
    elif n_blocks >= 2:
        note = (
            f"the clusters fall in {n_blocks} blocks of {float(size) / 1000:g} km, fewer "
            f"than the {cv_cfg.folds} folds: {n_blocks} folds are used"
        )
        update = {"folds": n_blocks}
    else:
        raise ModelError(
            f"the clusters fall in one block of {float(size) / 1000:g} km",
            where="key cv.block_size_m",
            fix="give a smaller block size (e.g. --block-size 10000) or use --cv random",
        )
    warnings.warn(note, InputWarning, stacklevel=3)
    notes.append(note)
    return cv_cfg.model_copy(update=update)


def fit_model(model_cfg: ModelConfig, X: pd.DataFrame, y: np.ndarray) -> BaseEstimator:
    """The model refitted on every cluster, for the map."""
    require_pooled_target(model_cfg)
    return clone(make_model(model_cfg)).fit(X, y)


def require_pooled_target(model_cfg: ModelConfig) -> None:
    """Refuse ``model.target_standardize_by`` where a map is made."""
    if model_cfg.target_standardize_by:
        raise ConfigError(
            f"model.target_standardize_by: {model_cfg.target_standardize_by} scores the target "
            "within groups; a map would need each cell's group level, which is not known",
            where="key model.target_standardize_by",
            fix="use it with `povertymap evaluate` only; remove it to make a map",
        )
