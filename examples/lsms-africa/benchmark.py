"""Measure the LSMS Africa recipe with plain scikit-learn and LightGBM; print JSON.

What it measures, on the features of ``prepare.py`` (computed in memory, nothing written):

- three cross-validation schemes: ``fold`` (the published spatially separated in-country
  folds A-E, each held out once), ``country`` (leave one country out: train on four,
  test on the fifth) and ``random`` (shuffled 5-fold, for contrast: it puts neighbours and
  other survey rounds of the same village on both sides of the split, so it flatters);
- three models, as ``povertymap evaluate`` defines them: ``ridge`` (StandardScaler +
  RidgeCV), ``lightgbm`` (LGBMRegressor with the config params) and ``stack`` (ridge and
  LightGBM out-of-fold predictions inside the training set, the inner splits mirroring the
  outer scheme, combined by a non-negative linear regression with intercept; both base
  models are then refitted on the whole training set);
- ``lightgbm_nested``: the honest figure for the hyperparameter choice. The small grid
  below (fixed before this script was first run) is re-chosen inside every training set
  by inner CV over the training set's own groups (the other four folds; the other four
  countries), refitted and scored on the held-out group. ``grid_all_folds`` is the same
  grid scored by plain fold CV on all the data: its best point is what ``prepare.py``
  writes into ``study.yaml``, and that non-nested figure is slightly optimistic;
- with ``--ablations``: the same CV on other feature sets (raw histograms, no country or
  year, country and year alone), to show where the skill comes from.

Every figure is a pooled out-of-fold score over all 3,020 villages (each village is
predicted exactly once, by a model that never saw it), with r^2, Spearman rho and RMSE,
overall and per country (with the mean error, ``bias``). Models run single-threaded and
outer splits run in ``--workers`` processes, so the figures do not depend on it.

Run from the repository root (about 4 minutes on 2 shared cores, 6 with ``--ablations``)::

    python examples/lsms-africa/benchmark.py > examples/lsms-africa/build/benchmark.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from joblib import Parallel, delayed
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare import DEFAULT_DATA, LGBM_PARAMS, RIDGE_PARAMS, build_tables, load_raw

Array = npt.NDArray[np.float64]
Idx = npt.NDArray[np.intp]
Splits = list[tuple[Idx, Idx]]

#: Fixed LightGBM settings shared by every grid point.
GRID_BASE: dict[str, Any] = {
    "learning_rate": 0.05,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "random_state": 0,
    "verbose": -1,
}
#: The pre-declared grid (8 points). n_estimators is scored from one fit of the largest
#: value via ``predict(num_iteration=...)``, which equals a fit with fewer trees.
GRID_AXES: dict[str, tuple[Any, ...]] = {
    "num_leaves": (7, 15),
    "colsample_bytree": (0.3, 0.6),
    "n_estimators": (150, 300),
}
RANDOM_SEED = 0


def grid_points() -> list[dict[str, Any]]:
    """Every point of the pre-declared grid as full LGBMRegressor kwargs."""
    keys = list(GRID_AXES)
    return [
        {**GRID_BASE, **dict(zip(keys, values, strict=True))}
        for values in itertools.product(*GRID_AXES.values())
    ]


def make_lightgbm(params: dict[str, Any]) -> lgb.LGBMRegressor:
    """LGBMRegressor with the given kwargs, single-threaded (parallelism is over splits)."""
    return lgb.LGBMRegressor(**params, n_jobs=1)


def make_ridge() -> Pipeline:
    """StandardScaler + RidgeCV with the config's alphas (alpha chosen by efficient LOO)."""
    return make_pipeline(StandardScaler(), RidgeCV(**RIDGE_PARAMS))


def group_splits(groups: npt.NDArray[Any]) -> Splits:
    """Leave-one-group-out splits, groups in sorted order."""
    return [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in np.unique(groups)]


def random_splits(n: int, seed: int = RANDOM_SEED) -> Splits:
    """Shuffled 5-fold splits."""
    kf = KFold(n_splits=5, shuffle=True, random_state=seed)
    return [(tr.astype(np.intp), te.astype(np.intp)) for tr, te in kf.split(np.zeros(n))]


def inner_splits(scheme: str, groups: npt.NDArray[Any], n: int) -> Splits:
    """Splits of a training set for inner CV, mirroring the outer scheme."""
    return random_splits(n, RANDOM_SEED + 1) if scheme == "random" else group_splits(groups)


def oof_predict(
    fit_predict: Callable[[Array, Array, Array], Array], x: Array, y: Array, splits: Splits
) -> Array:
    """Out-of-fold predictions: each test index predicted once by a model fitted without it."""
    pred = np.full(len(y), np.nan)
    for tr, te in splits:
        pred[te] = fit_predict(x[tr], y[tr], x[te])
    if np.isnan(pred).any():
        raise RuntimeError("splits do not cover every row")
    return pred


def lightgbm_fit_predict(x_tr: Array, y_tr: Array, x_te: Array) -> Array:
    """Fit LightGBM with the config params (one thread) and predict."""
    return np.asarray(make_lightgbm(LGBM_PARAMS).fit(x_tr, y_tr).predict(x_te))


def ridge_fit_predict(x_tr: Array, y_tr: Array, x_te: Array) -> Array:
    """Fit the ridge pipeline and predict."""
    return np.asarray(make_ridge().fit(x_tr, y_tr).predict(x_te))


def grid_predict(x_tr: Array, y_tr: Array, x_te: Array) -> dict[int, Array]:
    """Predictions of every grid point (key: index into ``grid_points()``) for one split.

    Points that differ only in ``n_estimators`` share one fit of the largest value.
    """
    points = grid_points()
    n_max = max(GRID_AXES["n_estimators"])
    shared: dict[tuple[Any, ...], list[int]] = {}
    for i, p in enumerate(points):
        key = tuple(sorted((k, v) for k, v in p.items() if k != "n_estimators"))
        shared.setdefault(key, []).append(i)
    out: dict[int, Array] = {}
    for members in shared.values():
        model = make_lightgbm({**points[members[0]], "n_estimators": n_max}).fit(x_tr, y_tr)
        for i in members:
            out[i] = np.asarray(model.predict(x_te, num_iteration=points[i]["n_estimators"]))
    return out


def grid_oof(x: Array, y: Array, splits: Splits) -> dict[int, Array]:
    """Out-of-fold predictions for every grid point."""
    out = {i: np.full(len(y), np.nan) for i in range(len(grid_points()))}
    for tr, te in splits:
        for i, pred in grid_predict(x[tr], y[tr], x[te]).items():
            out[i][te] = pred
    return out


def nested_one(
    x: Array, y: Array, tr: Idx, te: Idx, scheme: str, groups: npt.NDArray[Any]
) -> tuple[Array, dict[str, Any]]:
    """One outer split of nested CV: pick the grid point by inner CV on ``tr``, test on ``te``."""
    points = grid_points()
    inner = inner_splits(scheme, groups[tr], len(tr))
    inner_r2 = {i: r2_score(y[tr], p) for i, p in grid_oof(x[tr], y[tr], inner).items()}
    best = max(inner_r2, key=lambda i: (inner_r2[i], -i))
    pred = make_lightgbm(points[best]).fit(x[tr], y[tr]).predict(x[te])
    info = {k: points[best][k] for k in GRID_AXES} | {"inner_r2": round(inner_r2[best], 4)}
    return np.asarray(pred), info


def stack_one(
    x: Array, y: Array, tr: Idx, te: Idx, scheme: str, groups: npt.NDArray[Any]
) -> tuple[Array, dict[str, Any]]:
    """One outer split of the ``stack`` model.

    Ridge and LightGBM out-of-fold predictions on ``tr`` (inner splits mirror the outer
    scheme) train a non-negative linear meta-model with intercept; both base models are
    then refitted on all of ``tr`` and their predictions on ``te`` blended.
    """
    inner = inner_splits(scheme, groups[tr], len(tr))
    z = np.column_stack(
        [
            oof_predict(ridge_fit_predict, x[tr], y[tr], inner),
            oof_predict(lightgbm_fit_predict, x[tr], y[tr], inner),
        ]
    )
    meta = LinearRegression(positive=True).fit(z, y[tr])
    z_te = np.column_stack(
        [ridge_fit_predict(x[tr], y[tr], x[te]), lightgbm_fit_predict(x[tr], y[tr], x[te])]
    )
    weights = {
        "ridge": round(float(meta.coef_[0]), 4),
        "lightgbm": round(float(meta.coef_[1]), 4),
        "intercept": round(float(meta.intercept_), 4),
    }
    return np.asarray(meta.predict(z_te)), weights


def plain_one(x: Array, y: Array, tr: Idx, te: Idx, model: str) -> tuple[Array, dict[str, Any]]:
    """One split of a plain model.

    ``model`` is ``ridge``, ``lightgbm`` (config params) or ``lightgbm_default``
    (LGBMRegressor defaults, the reference baseline of the shared data's README).
    """
    if model == "ridge":
        return ridge_fit_predict(x[tr], y[tr], x[te]), {}
    if model == "lightgbm":
        return lightgbm_fit_predict(x[tr], y[tr], x[te]), {}
    default = make_lightgbm({"random_state": 0, "verbose": -1}).fit(x[tr], y[tr])
    return np.asarray(default.predict(x[te])), {}


def ablation_inputs(
    feats: pd.DataFrame, hists: npt.NDArray[np.integer[Any]]
) -> dict[str, tuple[Array, str]]:
    """Feature sets (and the model for each) that show where the skill comes from.

    - ``raw_hists``: the 8 x 102 normalised histograms, LightGBM defaults (the reference);
    - ``raw_hists_country_year``: the same plus country one-hot and year;
    - ``no_country_year``: the recipe's features without country one-hot and year;
    - ``country_year_only``: country one-hot and year alone (the between-country level).
    """
    counts = hists.astype(np.float64)
    raw = (counts / counts.sum(axis=2, keepdims=True)).reshape(len(counts), -1)
    meta_cols = [c for c in feats.columns if c.startswith("country_") or c == "year"]
    image_cols = [c for c in feats.columns if c not in meta_cols and c != "cluster_id"]
    meta = feats[meta_cols].to_numpy(dtype=np.float64)
    return {
        "raw_hists": (raw, "lightgbm_default"),
        "raw_hists_country_year": (np.hstack([raw, meta]), "lightgbm_default"),
        "no_country_year": (feats[image_cols].to_numpy(dtype=np.float64), "lightgbm"),
        "country_year_only": (meta, "lightgbm"),
    }


def over_splits(
    one: Callable[..., tuple[Array, dict[str, Any]]],
    x: Array,
    y: Array,
    splits: Splits,
    workers: int,
    *args: Any,
) -> tuple[Array, list[dict[str, Any]]]:
    """Run ``one(x, y, tr, te, *args)`` for every outer split (in ``workers`` processes).

    Returns the pooled out-of-fold predictions (rows in data order; extra columns when
    ``one`` returns several predictions per row) and the per-split info, in split order.
    Every model runs single-threaded, so the result does not depend on ``workers``.
    """
    jobs = (delayed(one)(x, y, tr, te, *args) for tr, te in splits)
    results = Parallel(n_jobs=workers)(jobs)
    pred = np.full((len(y), *results[0][0].shape[1:]), np.nan)
    infos: list[dict[str, Any]] = []
    for (_, te), (p, info) in zip(splits, results, strict=True):
        pred[te] = p
        infos.append(info)
    if np.isnan(pred).any():
        raise RuntimeError("splits do not cover every row")
    return pred, infos


def grid_one(x: Array, y: Array, tr: Idx, te: Idx) -> tuple[Array, dict[str, Any]]:
    """One split of the grid on all folds; predictions stacked as columns."""
    preds = grid_predict(x[tr], y[tr], x[te])
    return np.column_stack([preds[i] for i in range(len(preds))]), {}


def scores(y: Array, pred: Array, country: npt.NDArray[Any]) -> dict[str, Any]:
    """Pooled r^2, Spearman rho and RMSE, and the same per country (with mean error)."""

    def one(a: Array, b: Array) -> dict[str, float]:
        return {
            "r2": round(float(r2_score(a, b)), 4),
            "spearman": round(float(spearmanr(a, b).statistic), 4),
            "rmse": round(float(np.sqrt(mean_squared_error(a, b))), 4),
        }

    by_country: dict[str, Any] = {}
    for c in np.unique(country):
        m = country == c
        by_country[str(c)] = one(y[m], pred[m]) | {
            "n": int(m.sum()),
            "bias": round(float(np.mean(pred[m] - y[m])), 4),
        }
    return one(y, pred) | {"n": len(y), "by_country": by_country}


@contextmanager
def timer(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the wall time of the ``with`` block under ``key`` (seconds)."""
    start = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - start, 1)


def run_benchmark(
    data_dir: Path, workers: int, schemes: Sequence[str], with_ablations: bool = False
) -> dict[str, Any]:
    """Every measurement, as a JSON-ready dict."""
    t0 = time.perf_counter()
    villages, arrays = load_raw(data_dir)
    clusters, feats = build_tables(villages, arrays)
    x = feats.drop(columns="cluster_id").to_numpy(dtype=np.float64)
    y = clusters["asset_index"].to_numpy(dtype=np.float64)
    country = clusters["country"].to_numpy()
    group_of = {"fold": clusters["fold"].to_numpy(), "country": country}
    timings: dict[str, float] = {"prepare": round(time.perf_counter() - t0, 1)}

    result: dict[str, Any] = {
        "data": {"villages": len(y), "features": x.shape[1], "countries": sorted(set(country))},
        "lightgbm_params": LGBM_PARAMS,
        "ridge_params": RIDGE_PARAMS,
        "grid": {"base": GRID_BASE, "axes": GRID_AXES},
        "schemes": {},
    }
    if "fold" in schemes:
        with timer(timings, "grid_all_folds"):
            preds, _ = over_splits(grid_one, x, y, group_splits(group_of["fold"]), workers)
        result["grid_all_folds"] = [
            {k: p[k] for k in GRID_AXES} | {"r2": round(float(r2_score(y, preds[:, i])), 4)}
            for i, p in enumerate(grid_points())
        ]
    for scheme in schemes:
        groups = group_of.get(scheme, np.zeros(len(y)))
        splits = random_splits(len(y)) if scheme == "random" else group_splits(groups)
        out: dict[str, Any] = {}
        for model in ("ridge", "lightgbm"):
            with timer(timings, f"{scheme}/{model}"):
                pred, _ = over_splits(plain_one, x, y, splits, workers, model)
                out[model] = scores(y, pred, country)
        with timer(timings, f"{scheme}/stack"):
            pred, weights = over_splits(stack_one, x, y, splits, workers, scheme, groups)
            out["stack"] = scores(y, pred, country) | {"meta_weights": weights}
        if scheme != "random" and with_ablations:
            ablations = ablation_inputs(feats, arrays["hists"])
            if scheme == "country":  # raw histograms transfer no better; keep the run short
                ablations = {k: v for k, v in ablations.items() if not k.startswith("raw")}
            out["ablations"] = {}
            with timer(timings, f"{scheme}/ablations"):
                for name, (x_abl, model) in ablations.items():
                    pred, _ = over_splits(plain_one, x_abl, y, splits, workers, model)
                    out["ablations"][name] = {"model": model} | scores(y, pred, country)
        if scheme != "random":
            with timer(timings, f"{scheme}/lightgbm_nested"):
                pred, chosen = over_splits(nested_one, x, y, splits, workers, scheme, groups)
                out["lightgbm_nested"] = scores(y, pred, country) | {"chosen": chosen}
        result["schemes"][scheme] = out
    timings["total"] = round(time.perf_counter() - t0, 1)
    result["timings_s"] = timings
    return result


def _json_default(value: Any) -> Any:
    """JSON for numpy scalars (the grid and scores hold a few)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python examples/lsms-africa/benchmark.py [--data DIR] [--workers N]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes running outer splits in parallel (default 2; results do not change)",
    )
    parser.add_argument(
        "--schemes",
        nargs="+",
        choices=("fold", "country", "random"),
        default=["fold", "country", "random"],
        help="CV schemes to run (default: all three)",
    )
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="also score the ablation feature sets (adds about 2 minutes)",
    )
    args = parser.parse_args(argv)
    result = run_benchmark(args.data, args.workers, args.schemes, args.ablations)
    json.dump(result, sys.stdout, indent=1, default=_json_default)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
