"""Engines: results in item order and the same numbers whatever the number of workers.

The local engine is run in this process (``n_jobs=1``) and in two worker processes; the
cross-validation folds and out-of-area refits mapped over it must give the same
predictions, to the bit, as a plain loop that fits and predicts directly.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from povertymap.config import FeaturesConfig, ModelConfig
from povertymap.engine import Engine, LocalEngine, get_engine
from povertymap.errors import ConfigError
from povertymap.models.classical import make_model
from povertymap.models.cv import out_of_fold, out_of_fold_moved, random_folds
from povertymap.models.evaluate import fit_model
from povertymap.predict.rollout import out_of_area_predictions

SERIAL = LocalEngine(n_jobs=1)
PARALLEL = LocalEngine(n_jobs=2)
MODELS = {
    "ridge": ModelConfig(name="ridge"),
    "lightgbm": ModelConfig(name="lightgbm", params={"n_estimators": 50}, random_state=3),
}


def _square(offset: int, item: int) -> pd.DataFrame:
    """A kernel whose early items finish last, so a pool completes them out of order."""
    time.sleep(0.02 * (5 - item % 5))
    return pd.DataFrame({"item": [item], "value": [item**2 + offset]}, index=[f"u{item}"])


def _problem(n: int = 150, p: int = 8, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        rng.normal(size=(n, p)),
        columns=[f"nl_{i}" for i in range(p)],
        index=pd.Index([f"c{i}" for i in range(n)], name="cluster_id"),
    )
    X.iloc[rng.integers(0, n, 10), 1] = np.nan  # the models impute or route missing values
    y = X["nl_0"].to_numpy() - 0.5 * X["nl_2"].to_numpy() ** 2 + rng.normal(0, 0.3, n)
    return X, y


@pytest.mark.parametrize("engine", [SERIAL, PARALLEL], ids=["n_jobs=1", "n_jobs=2"])
def test_local_engine_keeps_item_order_and_reports_progress(engine: LocalEngine) -> None:
    calls: list[tuple[str, int, int]] = []
    items = list(range(7))
    out = engine.map(
        partial(_square, 10), items, label="squares", progress=lambda *a: calls.append(a)
    )
    assert out.index.tolist() == [f"u{i}" for i in items]
    assert out["value"].tolist() == [i**2 + 10 for i in items]
    assert calls == [("squares", i, 7) for i in range(1, 8)]


def test_local_engine_results_do_not_depend_on_n_jobs() -> None:
    items = list(range(6))
    pd.testing.assert_frame_equal(
        SERIAL.map(partial(_square, 1), items), PARALLEL.map(partial(_square, 1), items)
    )
    assert PARALLEL.map(partial(_square, 1), []).empty


def test_get_engine() -> None:
    engine: Engine = get_engine("local", n_jobs=3)
    assert isinstance(engine, LocalEngine) and engine.n_jobs == 3
    assert get_engine("local").n_jobs == 1  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="unknown engine 'dask'.*use one of local, spark"):
        get_engine("dask")
    with pytest.raises(ConfigError, match="n_jobs must be"):
        LocalEngine(n_jobs=0)


def test_features_config_n_jobs() -> None:
    assert FeaturesConfig().n_jobs == 1
    assert FeaturesConfig(n_jobs=4).n_jobs == 4
    with pytest.raises(ValueError, match="n_jobs"):
        FeaturesConfig(n_jobs=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_out_of_fold_is_the_same_whatever_n_jobs(name: str) -> None:
    X, y = _problem()
    folds = random_folds(len(y), n_folds=5, random_state=2)
    make = partial(make_model, MODELS[name])
    calls: list[tuple[str, int, int]] = []
    serial, fold_serial = out_of_fold(make, X, y, folds, engine=SERIAL)
    parallel, fold_parallel = out_of_fold(
        make, X, y, folds, progress=lambda *a: calls.append(a), label="cv", engine=PARALLEL
    )
    default, _ = out_of_fold(make, X, y, folds)
    # the plain loop the folds stand for: fit on the training rows, predict the test rows
    expected = np.full(len(y), np.nan)
    for fold in folds:
        model = clone(make()).fit(X.iloc[fold.train], y[fold.train])
        expected[fold.test] = model.predict(X.iloc[fold.test])
    assert np.array_equal(serial, expected) and np.array_equal(parallel, expected)
    assert np.array_equal(default, expected)
    assert np.array_equal(fold_serial, fold_parallel)
    assert sorted(set(fold_serial.tolist())) == [0, 1, 2, 3, 4]
    assert calls == [("cv", k, 5) for k in range(1, 6)]
    assert np.corrcoef(serial, y)[0, 1] > 0.3  # the model learned something


@pytest.mark.parametrize("name", list(MODELS))
def test_fold_models_also_predict_moved_features(name: str) -> None:
    X, y = _problem()
    folds = random_folds(len(y), n_folds=5, random_state=2)
    make = partial(make_model, MODELS[name])
    shifted = X + np.random.default_rng(3).normal(0.0, 0.3, X.shape)
    pred, fold_id = out_of_fold(make, X, y, folds, engine=SERIAL)
    again, fold_again, moved = out_of_fold_moved(make, X, y, folds, [X, shifted], engine=PARALLEL)
    assert np.array_equal(again, pred) and np.array_equal(fold_again, fold_id)
    assert moved.shape == (len(y), 2)
    assert np.array_equal(moved[:, 0], pred)  # the same rows: the same predictions
    for fold in folds:  # each fold's model, from its own test rows of the moved table
        model = clone(make()).fit(X.iloc[fold.train], y[fold.train])
        assert np.array_equal(moved[fold.test, 1], model.predict(shifted.iloc[fold.test]))
    assert not np.allclose(moved[:, 1], pred)


@pytest.mark.parametrize("name", list(MODELS))
def test_out_of_area_predictions_are_the_same_whatever_n_jobs(name: str) -> None:
    X, y = _problem(seed=1)
    rng = np.random.default_rng(5)
    cluster_area = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), len(y))
    cells, _ = _problem(n=400, seed=2)
    cells.index = pd.RangeIndex(100, 500, name="cell_id")
    # "e" and "f" hold cells but no cluster
    cell_area = rng.choice(
        np.array(["a", "b", "c", "d", "e", "f", np.nan], dtype=object), len(cells)
    )
    fit = partial(fit_model, MODELS[name])
    serial = out_of_area_predictions(fit, X, y, cluster_area, cells, cell_area, engine=SERIAL)
    parallel = out_of_area_predictions(fit, X, y, cluster_area, cells, cell_area, engine=PARALLEL)
    pd.testing.assert_series_equal(serial, parallel, check_exact=True)
    assert serial.name == "pred_out_of_area" and serial.index.equals(cells.index)
    for area in "abcd":  # each area's cells come from a model that never saw its clusters
        here = cell_area == area
        model = fit(X[cluster_area != area], y[cluster_area != area])
        assert np.array_equal(serial[here].to_numpy(), model.predict(cells[here]))
    assert serial[pd.isna(cell_area)].isna().all()  # as before: a NaN area is never refitted
    unsurveyed = np.isin(cell_area, ["e", "f"])
    # the model of every cluster (to the last bits: a masked copy of X sums in its own order)
    everyone = fit(X, y).predict(cells[unsurveyed])
    np.testing.assert_allclose(serial[unsurveyed].to_numpy(), everyone, rtol=0, atol=1e-12)
    fits: list[int] = []

    def counted(X: pd.DataFrame, y: np.ndarray) -> Any:
        fits.append(len(y))
        return fit(X, y)

    again = out_of_area_predictions(counted, X, y, cluster_area, cells, cell_area, engine=SERIAL)
    pd.testing.assert_series_equal(again, serial, check_exact=True)
    assert sorted(fits) == sorted([int((cluster_area != a).sum()) for a in "abcd"] + [len(y)])
    # cross-fitting: a and c left out together, b and d together, then the unsurveyed areas
    fits.clear()
    paired = out_of_area_predictions(
        counted, X, y, cluster_area, cells, cell_area, groups=2, engine=SERIAL
    )
    assert len(fits) == 3
    for pair in (["a", "c"], ["b", "d"]):
        here = np.isin(cell_area, pair)
        model = fit(X[~np.isin(cluster_area, pair)], y[~np.isin(cluster_area, pair)])
        assert np.array_equal(paired[here].to_numpy(), model.predict(cells[here]))
    assert np.array_equal(paired[unsurveyed].to_numpy(), serial[unsurveyed].to_numpy())
    assert paired[pd.isna(cell_area)].isna().all()
