"""Cross-validation folds that respect space, and out-of-fold predictions.

Random folds put a test cluster next to training clusters that share its neighbourhood,
so they measure interpolation and overstate accuracy where no survey was done. Spatial
blocking (Roberts et al. 2017) assigns whole blocks of ``block_size`` metres to folds and
drops training clusters within ``buffer`` metres of the test fold, so every prediction
is made as it will be on the map: away from the survey. Leave-one-group-out serves
published fold ids, regions or countries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.stats import wasserstein_distance
from sklearn.base import BaseEstimator, clone

from povertymap.config import CVConfig
from povertymap.engine.base import Engine, ProgressCallback, fixed_threads
from povertymap.engine.local import LocalEngine
from povertymap.errors import ConfigError, ModelError

__all__ = [
    "CANDIDATE_BLOCKS_M",
    "Fold",
    "distance_match",
    "fit_predict_fold",
    "group_folds",
    "make_folds",
    "match_block_size",
    "out_of_fold",
    "out_of_fold_moved",
    "random_folds",
    "spatial_folds",
    "test_distances",
]


@dataclass(frozen=True)
class Fold:
    """Row positions of one split; ``dropped`` counts training rows removed by the buffer."""

    train: np.ndarray
    test: np.ndarray
    dropped: int = 0


def spatial_folds(
    xy: np.ndarray, *, n_folds: int, block_size: float, buffer: float, random_state: int = 0
) -> list[Fold]:
    """Spatially blocked folds with a buffer.

    Clusters are grouped into square blocks of ``block_size`` metres; blocks are shuffled and
    dealt to folds largest first, each to the fold with the fewest clusters so far (balanced
    fold sizes). Training clusters within ``buffer`` metres of any test cluster are dropped.
    """
    keys = np.floor(xy / block_size).astype(np.int64)
    _, block = np.unique(keys, axis=0, return_inverse=True)
    block = block.ravel()
    n_blocks = int(block.max()) + 1
    if n_blocks < n_folds:
        raise ModelError(
            f"only {n_blocks} spatial blocks of {block_size / 1000:g} km hold clusters, "
            f"fewer than the {n_folds} folds asked for",
            where="key cv.block_size_m",
            fix="use smaller blocks or fewer folds",
        )
    rng = np.random.default_rng(random_state)
    sizes = np.bincount(block, minlength=n_blocks)
    order = rng.permutation(n_blocks)
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of_block = np.empty(n_blocks, dtype=np.int64)
    load = np.zeros(n_folds)
    for b in order:
        k = int(np.argmin(load))
        fold_of_block[b] = k
        load[k] += sizes[b]
    return _with_buffer(xy, fold_of_block[block], n_folds, buffer)


def group_folds(
    groups: pd.Series, *, xy: np.ndarray | None = None, buffer: float = 0.0
) -> list[Fold]:
    """Leave-one-group-out: one fold per distinct value of ``groups`` (sorted)."""
    if groups.isna().any():
        raise ModelError(
            f"group column {groups.name!r} has {int(groups.isna().sum())} missing values",
            fix="give every cluster a group, or choose another column",
        )
    values = np.sort(groups.astype(str).unique())
    if len(values) < 2:
        raise ModelError(
            f"group column {groups.name!r} has a single value; cross-validation needs two",
            fix="choose a column with several groups (regions, countries, fold ids)",
        )
    fold = np.searchsorted(values, groups.astype(str).to_numpy())
    if xy is None or buffer <= 0:
        return [
            Fold(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(len(values))
        ]
    return _with_buffer(xy, fold, len(values), buffer)


def random_folds(n: int, *, n_folds: int, random_state: int = 0) -> list[Fold]:
    """Plain shuffled K-fold: reported beside spatial CV to show its optimism."""
    fold = np.random.default_rng(random_state).permutation(np.arange(n) % n_folds)
    return [Fold(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(n_folds)]


def _with_buffer(xy: np.ndarray, fold: np.ndarray, n_folds: int, buffer: float) -> list[Fold]:
    tree = cKDTree(xy)
    out = []
    for k in range(n_folds):
        test = np.flatnonzero(fold == k)
        train = np.flatnonzero(fold != k)
        if buffer > 0 and len(test):
            near = np.zeros(len(xy), dtype=bool)
            for hits in tree.query_ball_point(xy[test], r=buffer):
                near[hits] = True
            kept = train[~near[train]]
        else:
            kept = train
        out.append(Fold(kept, test, dropped=len(train) - len(kept)))
    return out


#: Block sizes tried by ``block_size_m: auto`` (metres).
CANDIDATE_BLOCKS_M = (2_000.0, 5_000.0, 10_000.0, 20_000.0, 50_000.0, 100_000.0)


def test_distances(xy: np.ndarray, folds: list[Fold]) -> np.ndarray:
    """Distance from every test cluster to the nearest cluster its model trained on."""
    parts = [cKDTree(xy[f.train]).query(xy[f.test])[0] for f in folds if len(f.train)]
    return np.concatenate(parts) if parts else np.array([])


def distance_match(
    xy: np.ndarray, folds: list[Fold], prediction_xy: np.ndarray, weights: np.ndarray
) -> dict[str, float]:
    """How far CV predicts compared with how far the map predicts (Mila et al. 2022).

    Returns the quantiles of the nearest-survey-cluster distance of map cells (weighted,
    e.g. by population) and of test clusters to their training clusters, and the
    Wasserstein distance between the two distributions (0: the CV mimics the map).
    """
    cv = test_distances(xy, folds)
    pred = cKDTree(xy).query(prediction_xy)[0]
    w = np.asarray(weights, dtype=float)
    order = np.argsort(pred)
    cum = np.cumsum(w[order]) / w.sum()
    out = {"wasserstein_km": float(wasserstein_distance(cv, pred, None, w)) / 1e3}
    for q in (10, 50, 90):
        out[f"map_q{q}_km"] = float(np.interp(q / 100, cum, pred[order])) / 1e3
        out[f"cv_q{q}_km"] = float(np.percentile(cv, q)) / 1e3
    return out


def match_block_size(
    cfg: CVConfig, xy: np.ndarray, prediction_xy: np.ndarray, weights: np.ndarray
) -> tuple[float, list[dict[str, float]]]:
    """The candidate block size (no buffer) whose CV distances best match the map's."""
    tried = []
    for size in CANDIDATE_BLOCKS_M:
        if len(np.unique(np.floor(xy / size), axis=0)) < cfg.folds:
            continue
        folds = spatial_folds(
            xy, n_folds=cfg.folds, block_size=size, buffer=0.0, random_state=cfg.random_state
        )
        tried.append({"block_size_m": size, **distance_match(xy, folds, prediction_xy, weights)})
    if not tried:
        raise ModelError(
            f"the clusters fall in fewer than {cfg.folds} blocks of any candidate size",
            where="key cv.block_size_m",
            fix="use fewer folds or scheme: random",
        )
    best = min(tried, key=lambda t: t["wasserstein_km"])
    return best["block_size_m"], tried


def make_folds(
    cfg: CVConfig,
    clusters: pd.DataFrame,
    xy: np.ndarray,
    scheme: str | None = None,
    group: str | None = None,
) -> list[Fold]:
    """Folds for ``clusters`` from the CV config (``scheme``/``group`` override it)."""
    scheme = scheme or cfg.scheme
    if scheme == "spatial":
        if cfg.block_size_m == "auto":
            raise ConfigError(
                "block_size_m: auto needs the map's cells to match distances to",
                where="key cv.block_size_m",
                fix="resolve it with match_block_size first, or give a size in metres",
            )
        return spatial_folds(
            xy,
            n_folds=cfg.folds,
            block_size=cfg.block_size_m,
            buffer=cfg.buffer_m,
            random_state=cfg.random_state,
        )
    if scheme == "random":
        return random_folds(len(clusters), n_folds=cfg.folds, random_state=cfg.random_state)
    if scheme == "group":
        column = group or cfg.group
        if column is None or column not in clusters.columns:
            raise ConfigError(
                f"group column {column!r} is not a column of the survey clusters "
                f"(columns: {', '.join(map(str, clusters.columns))})",
                where="key cv.group",
                fix="name a column of the clusters file, e.g. a region",
            )
        return group_folds(clusters[column])
    raise ConfigError(f"unknown CV scheme {scheme!r}", fix="use spatial, random or group")


def fit_predict_fold(
    make: Callable[[], BaseEstimator],
    X: pd.DataFrame,
    y: np.ndarray,
    task: tuple[int, Fold],
    moved: Sequence[pd.DataFrame] = (),
) -> pd.DataFrame:
    """Fit ``make()`` on fold ``k``'s training rows and predict its test rows.

    ``task`` is ``(k, fold)``. Returns one row per test row, indexed by its id, with its
    ``position`` in ``X``, ``pred`` and ``fold``, and ``moved_<i>``: the same model's
    prediction from the test rows of ``moved[i]`` (the rows of ``X`` featurised
    elsewhere, e.g. at re-displaced cluster locations). BLAS and OpenMP run on one
    thread (the model is built first, so the OpenMP runtime LightGBM loads is pinned
    too): the numbers are the same in this process, in a worker process, and on any
    machine.
    """
    k, fold = task
    model = clone(make())
    with fixed_threads(1):
        model.fit(X.iloc[fold.train], y[fold.train])
        pred = np.asarray(model.predict(X.iloc[fold.test]), dtype=float)
        out = pd.DataFrame(
            {"position": fold.test, "pred": pred, "fold": k}, index=X.index[fold.test]
        )
        for i, other in enumerate(moved):
            out[f"moved_{i}"] = np.asarray(model.predict(other.iloc[fold.test]), dtype=float)
    return out


def out_of_fold(
    make: Callable[[], BaseEstimator],
    X: pd.DataFrame,
    y: np.ndarray,
    folds: list[Fold],
    progress: ProgressCallback | None = None,
    label: str = "cross-validation",
    *,
    engine: Engine | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions and the fold id of each row (each row is tested once).

    Each fold is one task of :func:`fit_predict_fold` mapped by ``engine`` (default: this
    process, one fold after another); the predictions are the same whatever the engine.
    ``make`` must be picklable for a parallel engine (a module-level function or a
    ``functools.partial``).
    Rows in no test fold keep ``nan`` and fold ``-1``.
    """
    pred, fold_id, _ = out_of_fold_moved(
        make, X, y, folds, (), progress=progress, label=label, engine=engine
    )
    return pred, fold_id


def out_of_fold_moved(
    make: Callable[[], BaseEstimator],
    X: pd.DataFrame,
    y: np.ndarray,
    folds: list[Fold],
    moved: Sequence[pd.DataFrame],
    progress: ProgressCallback | None = None,
    label: str = "cross-validation",
    *,
    engine: Engine | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`out_of_fold`, and each fold model's predictions from the rows of every
    table of ``moved`` (aligned with ``X``) that the fold tests: shape (rows, moved)."""
    for k, fold in enumerate(folds):
        if len(fold.train) < 10:
            raise ModelError(
                f"fold {k} leaves {len(fold.train)} training clusters after the buffer",
                where="key cv",
                fix="use a smaller cv.buffer_m or fewer, larger folds",
            )
    y = np.asarray(y)
    engine = engine if engine is not None else LocalEngine()
    done = engine.map(
        partial(fit_predict_fold, make, X, y, moved=tuple(moved)),
        list(enumerate(folds)),
        label=label,
        progress=progress,
    )
    pred = np.full(len(y), np.nan)
    fold_id = np.full(len(y), -1)
    at_moved = np.full((len(y), len(moved)), np.nan)
    if len(done):
        at = done["position"].to_numpy(dtype=np.int64)
        pred[at] = done["pred"].to_numpy(dtype=float)
        fold_id[at] = done["fold"].to_numpy()
        for i in range(len(moved)):
            at_moved[at, i] = done[f"moved_{i}"].to_numpy(dtype=float)
    return pred, fold_id, at_moved
