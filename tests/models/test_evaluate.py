"""Accuracy metrics against known answers; metrics by group; the refitted map model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from povertymap.config import ModelConfig
from povertymap.models.evaluate import (
    MIN_GROUP,
    fit_model,
    metrics_by_group,
    regression_metrics,
)

Y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, population variance 2, mean of y² 11


def test_perfect_prediction() -> None:
    m = regression_metrics(Y, Y.copy())
    assert m["n"] == 5
    assert m["r2"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert m["bias"] == pytest.approx(0.0, abs=1e-12)
    assert m["slope"] == pytest.approx(1.0)
    assert m["variance_ratio"] == pytest.approx(1.0)
    assert m["pearson"] == pytest.approx(1.0)
    assert m["spearman"] == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_constant_prediction_at_the_mean() -> None:
    m = regression_metrics(Y, np.full(5, 3.0))
    assert m["r2"] == pytest.approx(0.0, abs=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(2.0))  # the sd of y
    assert m["bias"] == pytest.approx(0.0, abs=1e-12)
    assert m["variance_ratio"] == pytest.approx(0.0)
    assert math.isnan(m["spearman"])
    # a constant that averages exactly in floating point: no slope, no correlation
    m = regression_metrics(Y, np.full(5, 2.0))
    assert m["r2"] == pytest.approx(1 - 3 / 2)  # SSE/n = 2 + 1 = 3
    assert m["bias"] == pytest.approx(-1.0)
    assert math.isnan(m["slope"]) and math.isnan(m["pearson"]) and math.isnan(m["spearman"])


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@pytest.mark.parametrize(("n", "value"), [(5, 3.0), (10, 0.1)])
def test_constant_prediction_has_no_slope(n: int, value: float) -> None:
    m = regression_metrics(np.arange(1.0, n + 1), np.full(n, value))
    assert math.isnan(m["slope"])
    assert math.isnan(m["pearson"])


def test_half_prediction_is_shrunk() -> None:
    m = regression_metrics(Y, 0.5 * Y)
    assert m["slope"] == pytest.approx(2.0)  # cov(y, y/2) / var(y/2) = (1/2) / (1/4)
    assert m["variance_ratio"] == pytest.approx(0.25)
    assert m["pearson"] == pytest.approx(1.0)
    assert m["spearman"] == pytest.approx(1.0)
    assert m["bias"] == pytest.approx(1.5 - 3.0)
    # SSE/n = mean((y/2)²) = 11/4; r² = 1 - (11/4)/2 (r², not a squared correlation)
    assert m["rmse"] == pytest.approx(math.sqrt(11 / 4))
    assert m["r2"] == pytest.approx(1 - 11 / 8)


def test_spearman_by_rank_differences() -> None:
    # ranks 2,1,4,3,5 against 1..5: Σd² = 4, ρ = 1 - 6·4 / (5·24) = 0.8
    m = regression_metrics(Y, np.array([2.0, 1.0, 4.0, 3.0, 5.0]))
    assert m["spearman"] == pytest.approx(0.8)


def test_weights_follow_the_hand_formula() -> None:
    y = np.array([0.0, 1.0, 2.0, 3.0])
    p = np.array([0.5, 1.0, 1.5, 4.0])
    w = np.array([1.0, 2.0, 3.0, 4.0])
    # ȳw = (0 + 2 + 6 + 12)/10 = 2; SST = 1·4 + 2·1 + 0 + 4·1 = 10
    # SSE = 1·.25 + 0 + 3·.25 + 4·1 = 5; r² = 1 - 5/10; rmse = sqrt(5/10)
    # p̄w = (.5 + 2 + 4.5 + 16)/10 = 2.3; bias .3
    weighted = regression_metrics(y, p, w)
    assert weighted["r2"] == pytest.approx(0.5)
    assert weighted["rmse"] == pytest.approx(math.sqrt(0.5))
    assert weighted["bias"] == pytest.approx(0.3)
    # var_p = Σw(p - 2.3)² / 10; cov = Σw(y - 2)(p - 2.3) / 10
    var_p = (3.24 + 2 * 1.69 + 3 * 0.64 + 4 * 2.89) / 10
    cov = (1 * -2 * -1.8 + 2 * -1 * -1.3 + 0 + 4 * 1 * 1.7) / 10
    assert weighted["slope"] == pytest.approx(cov / var_p)
    assert weighted["variance_ratio"] == pytest.approx(var_p / 1.0)
    assert weighted["pearson"] == pytest.approx(cov / math.sqrt(var_p))
    # unweighted the same rows give another answer: ȳ = 1.5, SST = 5, SSE = 1.5/4·4
    plain = regression_metrics(y, p)
    assert plain["r2"] == pytest.approx(1 - (0.25 + 0 + 0.25 + 1) / 5)
    assert plain["r2"] != pytest.approx(weighted["r2"])
    # Spearman stays unweighted
    assert weighted["spearman"] == pytest.approx(plain["spearman"])


def test_integer_weights_equal_repeated_rows() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=8)
    p = y + rng.normal(scale=0.5, size=8)
    w = np.array([1, 3, 2, 1, 4, 1, 2, 5])
    weighted = regression_metrics(y, p, w)
    repeated = regression_metrics(np.repeat(y, w), np.repeat(p, w))
    for key in ("r2", "pearson", "rmse", "bias", "slope", "variance_ratio"):
        assert weighted[key] == pytest.approx(repeated[key]), key
    # weights are relative: scaling them changes nothing
    scaled = regression_metrics(y, p, 7.5 * w)
    for key in ("r2", "rmse", "bias", "slope"):
        assert scaled[key] == pytest.approx(weighted[key]), key


def test_non_finite_rows_and_non_positive_weights_are_dropped() -> None:
    y = np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0, 9.0, 7.0])
    p = np.array([1.0, 2.0, np.inf, 3.0, 4.0, 5.0, 0.0, 8.0])
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, np.nan])
    m = regression_metrics(y, p, w)
    clean = regression_metrics([1.0, 3.0, 4.0, 5.0], [1.0, 3.0, 4.0, 5.0])
    assert m == clean
    assert m["n"] == 4
    assert m["r2"] == pytest.approx(1.0)
    # without weights only the NaN/inf rows go
    assert regression_metrics(y, p)["n"] == 6


def test_fewer_than_three_rows_give_only_n() -> None:
    assert regression_metrics([1.0, 2.0], [1.0, 3.0]) == {"n": 2.0}
    assert regression_metrics([], []) == {"n": 0.0}
    assert regression_metrics([1.0, 2.0, np.nan], [1.0, 2.0, 3.0]) == {"n": 2.0}
    assert regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == {"n": 0.0}


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_constant_truth_has_no_r2() -> None:
    m = regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert math.isnan(m["r2"]) and math.isnan(m["variance_ratio"]) and math.isnan(m["pearson"])
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert m["bias"] == pytest.approx(0.0)


def test_metrics_by_group_skips_small_groups() -> None:
    assert MIN_GROUP == 5
    y = np.arange(12, dtype=float)
    pred = np.where(np.arange(12) % 2 == 0, y + 1.0, y - 1.0)
    labels = np.array(["a"] * 6 + ["b"] * 4 + ["c"] * 2)
    urban = np.array([True] * 5 + [False] * 7)
    out = metrics_by_group(
        y,
        pred,
        {
            "region": pd.Series(labels, index=np.arange(100, 112)),  # index is ignored
            "urban": pd.Series(urban),
        },
    )
    assert set(out) == {"region", "urban"}
    assert set(out["region"]) == {"a"}  # b (4 rows) and c (2 rows) are below MIN_GROUP
    assert set(out["urban"]) == {"True", "False"}  # 5 and 7 rows; labels become text
    # group a: y 0..5, every residual ±1 → rmse 1, SST = 17.5, r² = 1 - 6/17.5
    a = out["region"]["a"]
    assert a["n"] == 6
    assert a["rmse"] == pytest.approx(1.0)
    assert a["r2"] == pytest.approx(1 - 6 / 17.5)
    assert a["bias"] == pytest.approx(0.0)
    assert out["urban"]["False"] == regression_metrics(y[5:], pred[5:])
    assert out["urban"]["True"]["n"] == 5


def test_metrics_by_group_empty_when_every_group_is_small() -> None:
    y = np.arange(8, dtype=float)
    out = metrics_by_group(y, y, {"g": pd.Series(list("aaaabbbb"))})
    assert out == {"g": {}}
    assert metrics_by_group(y, y, {}) == {}


def _linear_table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "nl_mean": rng.normal(size=n),
            "nl_sq": rng.normal(size=n),
            "img_red_mean": rng.normal(size=n),
        }
    )
    y = 1.0 + 2.0 * X["nl_mean"] - 3.0 * X["nl_sq"] + 0.5 * X["img_red_mean"]
    return X, y.to_numpy()


def test_fit_model_returns_a_fitted_model_that_predicts() -> None:
    X, y = _linear_table(60, seed=0)
    X_new, y_new = _linear_table(10, seed=1)
    cfg = ModelConfig(name="ridge", params={"alphas": [1e-8]})
    model = fit_model(cfg, X, y)
    # noiseless linear data, (almost) no penalty: the fitted model is the true plane
    assert model.predict(X_new) == pytest.approx(y_new, abs=1e-6)
    assert model.named_steps["ridge"].alpha_ == pytest.approx(1e-8)
    # a fresh, independent estimator each call
    again = fit_model(cfg, X.iloc[:30], y[:30] + 10.0)
    assert again is not model
    assert model.predict(X_new) == pytest.approx(y_new, abs=1e-6)
    assert again.predict(X_new) == pytest.approx(y_new + 10.0, abs=1e-6)


def test_fit_model_uses_only_the_configured_blocks() -> None:
    X, y = _linear_table(60, seed=2)
    model = fit_model(ModelConfig(name="ridge", features=["nl"], params={"alphas": [1e-8]}), X, y)
    # the same fit by least squares on the nl_ columns alone
    A = np.column_stack([np.ones(len(X)), X[["nl_mean", "nl_sq"]].to_numpy()])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    X_new, _ = _linear_table(10, seed=3)
    expected = np.column_stack([np.ones(10), X_new[["nl_mean", "nl_sq"]].to_numpy()]) @ coef
    assert model.predict(X_new) == pytest.approx(expected, abs=1e-6)
    # the imagery column has no influence on the predictions
    shifted = X_new.assign(img_red_mean=X_new["img_red_mean"] + 100.0)
    assert model.predict(shifted) == pytest.approx(expected, abs=1e-6)
