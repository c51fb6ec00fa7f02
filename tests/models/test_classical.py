"""Models over feature blocks: the sklearn contract, block selection, stacking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from povertymap.config import ModelConfig
from povertymap.errors import ConfigError, ModelError
from povertymap.models.classical import BlockSelector, baseline_config, make_model

PIPELINE_IN_PLACE = {
    # sklearn's Pipeline fits its steps in place, which these two checks forbid
    "check_estimators_overwrite_params": "Pipeline fits its steps in place",
    "check_dont_overwrite_parameters": "Pipeline fits its steps in place",
    # missing feature values are imputed (ridge) or handled natively (LightGBM)
    "check_estimators_nan_inf": "NaN is accepted by design",
}


@parametrize_with_checks(
    [
        BlockSelector(),
        make_model(ModelConfig(name="ridge")),
        make_model(ModelConfig(name="lightgbm")),
    ],
    expected_failed_checks=lambda est: {} if isinstance(est, BlockSelector) else PIPELINE_IN_PLACE,
)
def test_sklearn_contract(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def _table(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "nl_mean": rng.normal(size=n),
            "pop_density": rng.normal(size=n),
            "img_red_mean": rng.normal(size=n),
            "cnn_000": rng.normal(size=n),
        }
    )
    y = 2 * X["nl_mean"] + X["img_red_mean"] + 0.1 * rng.normal(size=n)
    return X, y.to_numpy()


def test_block_selector_keeps_named_blocks() -> None:
    X, _ = _table()
    sel = BlockSelector(["nl", "img"]).fit(X)
    assert list(sel.transform(X).columns) == ["nl_mean", "img_red_mean"]
    assert list(sel.get_feature_names_out()) == ["nl_mean", "img_red_mean"]
    with pytest.raises(ModelError, match="no feature column"):
        BlockSelector(["osm"]).fit(X)
    with pytest.raises(ModelError, match="DataFrame"):
        BlockSelector(["nl"]).fit(X.to_numpy())


def test_ridge_on_selected_blocks_recovers_the_signal() -> None:
    X, y = _table()
    full = make_model(ModelConfig(name="ridge")).fit(X, y)
    lights = make_model(ModelConfig(name="ridge", features=["nl"])).fit(X, y)
    assert full.score(X, y) > 0.99
    assert 0.7 < lights.score(X, y) < 0.9  # nl explains 4/5 of the variance


def test_stack_combines_members_with_nonnegative_weights() -> None:
    X, y = _table()
    cfg = ModelConfig(
        name="stack",
        estimators=[
            ModelConfig(name="ridge", features=["nl"]),
            ModelConfig(name="ridge", features=["img"]),
        ],
    )
    model = make_model(cfg).fit(X, y)
    weights = model.named_steps["stack"].final_estimator_.coef_
    assert (weights >= 0).all() and model.score(X, y) > 0.95
    with pytest.raises(ConfigError, match="needs a list of estimators"):
        make_model(ModelConfig(name="stack"))


def test_lightgbm_params_and_seed_come_from_the_config() -> None:
    model = make_model(ModelConfig(name="lightgbm", params={"n_estimators": 7}, random_state=3))
    lgbm = model.named_steps["lightgbm"]
    assert lgbm.n_estimators == 7 and lgbm.random_state == 3


def test_baseline_is_nightlights_only() -> None:
    base = baseline_config(ModelConfig(name="ridge", params={"alphas": [1.0]}))
    assert base.features == ["nl"] and base.name == "ridge" and base.params == {"alphas": [1.0]}
    assert baseline_config(ModelConfig(name="stack", estimators=[])).name == "lightgbm"
