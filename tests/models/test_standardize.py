"""Standardising the target within groups (``model.target_standardize_by``): the
transform, the estimator that fits on it, and cross-validation that scores on it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LinearRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from povertymap.config import ModelConfig
from povertymap.errors import ConfigError, ModelError
from povertymap.io.configfile import read_config
from povertymap.models.classical import (
    GroupStandardizedRegressor,
    make_model,
    standardize_within,
)
from povertymap.models.evaluate import fit_model
from povertymap.pipeline import evaluate


def test_standardize_within_known_values() -> None:
    y = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 5.0, 5.0])
    groups = ["a", "a", "a", "b", "b", "b", "c", "c"]
    z, stats = standardize_within(y, groups)
    r = math.sqrt(1.5)  # (x - mean) / population sd for 1, 2, 3: -sqrt(3/2), 0, sqrt(3/2)
    assert z == pytest.approx([-r, 0.0, r, -r, 0.0, r, 0.0, 0.0])
    assert stats.loc["a", "mean"] == pytest.approx(2.0)
    assert stats.loc["b", "sd"] == pytest.approx(10 * math.sqrt(2 / 3))
    assert stats.loc["c", "sd"] == 1.0  # a constant group is centred, not scaled
    # with given statistics: a group they lack gets nan
    z2, same = standardize_within(np.array([4.0, 40.0, 1.0]), ["a", "b", "d"], stats)
    assert same is stats
    assert z2[:2] == pytest.approx([2 / math.sqrt(2 / 3), 20 / (10 * math.sqrt(2 / 3))])
    assert math.isnan(z2[2])
    with pytest.raises(ModelError, match="3 target values but 2 group labels"):
        standardize_within(y[:3], ["a", "b"])


def _two_countries() -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    x = np.tile([-1.0, 0.0, 1.0, 2.0], 2)
    X = pd.DataFrame({"f": x}, index=[f"c{i}" for i in range(8)])
    y = np.where(np.arange(8) < 4, 10 + 2 * x, -5 + 0.5 * x)
    groups = pd.Series(["a"] * 4 + ["b"] * 4, index=X.index)
    return X, y, groups


def test_regressor_fits_the_standardised_target_and_maps_back() -> None:
    X, y, groups = _two_countries()
    model = GroupStandardizedRegressor(LinearRegression(), groups).fit(X, y)
    # both groups have the same standardised target, an exact linear function of f
    z = (X["f"].to_numpy() - 0.5) / math.sqrt(1.25)
    assert model.predict(X) == pytest.approx(z)
    assert model.predict_index(X) == pytest.approx(y)
    assert model.stats_.loc["a", "mean"] == pytest.approx(11.0)
    assert model.stats_.loc["b", "mean"] == pytest.approx(-4.75)
    assert model.n_features_in_ == 1


def test_regressor_uses_training_rows_only_and_has_no_level_for_unseen_groups() -> None:
    X, y, groups = _two_countries()
    train = X.index[:4]  # group a only
    model = GroupStandardizedRegressor(LinearRegression(), groups).fit(X.loc[train], y[:4])
    assert list(model.stats_.index) == ["a"]
    assert np.isfinite(model.predict(X)).all()  # the standardised scale needs no level
    back = model.predict_index(X)
    assert back[:4] == pytest.approx(y[:4])
    assert np.isnan(back[4:]).all()


def test_regressor_refuses_rows_without_a_group() -> None:
    X, y, groups = _two_countries()
    model = GroupStandardizedRegressor(LinearRegression(), groups.iloc[:6])
    with pytest.raises(ModelError, match="2 rows have no group label"):
        model.fit(X, y)
    with pytest.raises(ModelError, match="needs a DataFrame"):
        GroupStandardizedRegressor(LinearRegression(), groups).fit(X.to_numpy(), y)


@parametrize_with_checks(
    [GroupStandardizedRegressor(make_model(ModelConfig(name="ridge")))],
    expected_failed_checks=lambda est: {
        "check_estimators_nan_inf": "NaN is accepted by design (imputed by the ridge pipeline)"
    },
)
def test_sklearn_contract(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def _pooled_study(root: Path, by: str | None = "country") -> Path:
    """Three countries whose levels (0, +10, -10) no feature carries; within a country
    the target is 2 f1 + noise. Each country is spread over the three ``fold`` ids."""
    rng = np.random.default_rng(3)
    n = 90
    country = np.repeat(["x", "y", "z"], n // 3)
    level = np.repeat([0.0, 10.0, -10.0], n // 3)
    f1 = rng.normal(size=n)
    clusters = pd.DataFrame(
        {
            "cluster_id": np.arange(n),
            "lon": rng.uniform(30, 31, n),
            "lat": rng.uniform(-1, 0, n),
            "country": country,
            "fold": np.tile(["A", "B", "C"], n // 3),
            "y": level + 2 * f1 + 0.1 * rng.normal(size=n),
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    clusters.to_csv(root / "clusters.csv", index=False)
    features = pd.DataFrame({"cluster_id": clusters["cluster_id"], "f1": f1})
    features.to_csv(root / "features.csv", index=False)
    model = {"name": "ridge", **({"target_standardize_by": by} if by else {})}
    config = {
        "name": "pooled",
        "survey": {"clusters": {"path": "clusters.csv", "target": "y"}},
        "tables": [{"path": "features.csv", "key": "cluster_id"}],
        "model": model,
    }
    (root / "study.yaml").write_text(yaml.safe_dump(config))
    return root / "study.yaml"


def test_leave_one_country_out_scores_the_standardised_index(tmp_path: Path) -> None:
    study = _pooled_study(tmp_path / "s")
    raw = evaluate(
        read_config(_pooled_study(tmp_path / "raw", by=None)),
        out=tmp_path / "e0",
        scheme="group",
        group="country",
    ).metrics["cv"]
    assert raw["r2"] < 0  # the held-out country's level is unknown
    assert "target_standardized_by" not in raw
    cv = evaluate(read_config(study), out=tmp_path / "e1", scheme="group", group="country").metrics[
        "cv"
    ]
    assert cv["target_standardized_by"] == "country"
    # within a country f1 carries all but the noise; the held-out country's f1 has its own
    # mean and sd, so its standardised target is a slightly different line in f1
    assert 0.95 < cv["r2"] < 0.999
    assert set(cv["by_group"]["country"]) == {"x", "y", "z"}
    assert cv["index"] == {"n": 0.0}  # no pooled-index figure for unseen countries
    assert any("standardised within each country" in n for n in cv["notes"])
    assert any("no pooled-index figure" in n for n in cv["notes"])
    oof = pd.read_csv(tmp_path / "e1" / "oof.csv")
    by_country = oof.groupby(np.repeat(["x", "y", "z"], 30))["y"]
    assert by_country.mean().abs().max() < 1e-12
    assert by_country.std(ddof=0).to_numpy() == pytest.approx([1.0, 1.0, 1.0])
    assert oof["pred_index"].isna().all()


def test_folds_across_countries_also_give_the_pooled_index(tmp_path: Path) -> None:
    study = _pooled_study(tmp_path / "s")
    cv = evaluate(read_config(study), out=tmp_path / "e", scheme="group", group="fold").metrics[
        "cv"
    ]
    # below the noise-only 0.997: the fit standardises with the training folds' mean and
    # sd, the scored truth with all of the country's clusters
    assert cv["r2"] > 0.97
    assert cv["index"]["n"] == 90
    assert cv["index"]["r2"] > 0.99  # the levels are known from the training folds
    assert abs(cv["index"]["bias"]) < 0.05
    assert set(cv["index"]["by_group"]["country"]) == {"x", "y", "z"}
    oof = pd.read_csv(tmp_path / "e" / "oof.csv")
    assert np.isfinite(oof["pred_index"]).all()
    # the pooled-index column is the oof form of the 'index' figures
    resid = oof["pred_index"] - oof["y_index"]
    assert float(np.sqrt((resid**2).mean())) == pytest.approx(cv["index"]["rmse"])


def test_unknown_column_and_maps_are_refused(tmp_path: Path) -> None:
    study = _pooled_study(tmp_path / "s", by="nation")
    with pytest.raises(ConfigError, match="'nation' is not a column of the survey clusters"):
        evaluate(read_config(study), out=tmp_path / "e", scheme="group", group="fold")
    X, y, _ = _two_countries()
    with pytest.raises(ConfigError, match="a map would need"):
        fit_model(ModelConfig(name="ridge", target_standardize_by="country"), X, y)
