"""Classical models over feature blocks: ridge, LightGBM, and stacks of them.

Every model is an sklearn estimator built from a :class:`~povertymap.config.ModelConfig`,
so cross-validation, stacking and rollout treat them alike. A model sees only the feature
blocks it names: :class:`BlockSelector` keeps the columns whose prefix is a block name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin, clone
from sklearn.ensemble import StackingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from povertymap.config import ModelConfig
from povertymap.errors import ConfigError, ModelError

__all__ = [
    "IMAGERY_BLOCKS",
    "LIGHTGBM_DEFAULTS",
    "BlockSelector",
    "GroupStandardizedRegressor",
    "baseline_config",
    "comparison_models",
    "make_group_standardized",
    "make_model",
    "reference_models",
    "standardize_within",
]

#: LightGBM settings for a few hundred survey clusters: shallow trees, slow learning,
#: row and column subsampling (overridden by ``model.params``).
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "n_estimators": 400,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 10,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "n_jobs": 1,  # a few hundred rows: threads cost more than they save
    "verbose": -1,
}
RIDGE_ALPHAS = np.logspace(-3, 4, 15)


class BlockSelector(TransformerMixin, BaseEstimator):
    """Keep the columns of the named feature blocks (prefix ``<block>_``); all if None.

    Works on DataFrames; with plain arrays there are no names, so ``blocks`` must be None.
    A DataFrame's names and width are checked but its values are not copied into an array:
    the model behind the selector checks what it is given, and converting ~600 columns on
    every fit and predict was a fifth of the time of the out-of-area refits.
    """

    def __init__(self, blocks: list[str] | None = None) -> None:
        self.blocks = blocks

    def fit(self, X: Any, y: Any = None) -> BlockSelector:
        """Remember which columns to keep."""
        _validate(self, X, reset=True)
        if self.blocks is None:
            self.columns_ = list(range(self.n_features_in_))
            return self
        if not isinstance(X, pd.DataFrame):
            raise ModelError(
                "selecting feature blocks needs a DataFrame with named columns",
                fix="pass the feature table as a pandas DataFrame",
            )
        prefixes = tuple(f"{b}_" for b in self.blocks)
        self.columns_ = [i for i, c in enumerate(X.columns) if str(c).startswith(prefixes)]
        if not self.columns_:
            raise ModelError(
                f"no feature column belongs to the blocks {self.blocks}",
                fix="check model.features against the blocks the study area computes",
            )
        return self

    def transform(self, X: Any) -> Any:
        """The selected columns (a DataFrame stays a DataFrame)."""
        check_is_fitted(self, "columns_")
        checked = _validate(self, X, reset=False)
        if isinstance(X, pd.DataFrame):
            return X.iloc[:, self.columns_]
        return checked[:, self.columns_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the kept columns."""
        check_is_fitted(self, "columns_")
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = np.array([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
        return np.asarray(names, dtype=object)[self.columns_]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _validate(selector: BlockSelector, X: Any, *, reset: bool) -> Any:
    """scikit-learn's input checks; for a DataFrame only its names and width."""
    return validate_data(
        selector,
        X,
        ensure_all_finite="allow-nan",
        reset=reset,
        skip_check_array=isinstance(X, pd.DataFrame),
    )


def standardize_within(
    y: Any, groups: Any, stats: pd.DataFrame | None = None
) -> tuple[np.ndarray, pd.DataFrame]:
    """``(y - mean) / sd`` within each group, and the per-group ``mean`` and ``sd``.

    The statistics come from ``y`` itself unless ``stats`` (a frame indexed by group with
    columns ``mean`` and ``sd``) is given; rows of a group missing from ``stats`` get
    ``nan``. ``sd`` is the population standard deviation (ddof 0); a group whose values are
    all equal (or a single row) gets ``sd`` 1, so it is centred but not scaled.
    """
    y = np.asarray(y, dtype=float)
    labels = pd.Series(np.asarray(groups, dtype=object)).astype(str)
    if len(labels) != len(y):
        raise ModelError(f"{len(y)} target values but {len(labels)} group labels")
    if stats is None:
        grouped = pd.Series(y).groupby(labels.to_numpy())
        stats = pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=0)})
        stats["sd"] = stats["sd"].where(stats["sd"] > 1e-12 * (1 + stats["mean"].abs()), 1.0)
    mean = stats["mean"].reindex(labels).to_numpy(dtype=float)
    sd = stats["sd"].reindex(labels).to_numpy(dtype=float)
    return (y - mean) / sd, stats


class GroupStandardizedRegressor(RegressorMixin, BaseEstimator):
    """Fit ``estimator`` on the target standardised within groups; predict on that scale.

    ``groups`` labels every row a model may see (a Series indexed by row id, e.g. the
    country of each survey cluster); ``fit`` and ``predict`` look up the rows of ``X`` (a
    DataFrame) by its index, so the labels never enter the features. The mean and sd of
    each group are those of the *training* rows (``stats_``): no test label shapes the
    fit. ``predict`` returns the standardised scale; :meth:`predict_index` maps it back
    to the target's own scale for rows whose group was in training (``nan`` otherwise:
    a group never seen has no known level). Without ``groups``, every row is one group
    (plain standardisation of the target).
    """

    def __init__(self, estimator: Any = None, groups: pd.Series | None = None) -> None:
        self.estimator = estimator
        self.groups = groups

    def _labels(self, X: Any) -> np.ndarray:
        if self.groups is None:
            return np.zeros(_num_samples(X), dtype=object)
        if not isinstance(X, pd.DataFrame):
            raise ModelError(
                "standardising the target by group needs a DataFrame indexed by row id",
                fix="pass the feature table as a pandas DataFrame",
            )
        labels = self.groups.reindex(X.index)
        if labels.isna().any():
            raise ModelError(
                f"{int(labels.isna().sum())} rows have no group label "
                f"(e.g. {labels.index[labels.isna()][0]!r})",
                fix="give every survey cluster a value in model.target_standardize_by's column",
            )
        return labels.to_numpy(dtype=object)

    def fit(self, X: Any, y: Any) -> GroupStandardizedRegressor:
        """Standardise ``y`` within the training rows' groups and fit the estimator on it."""
        _, y = validate_data(self, X, y, ensure_all_finite="allow-nan", y_numeric=True)
        z, self.stats_ = standardize_within(y, self._labels(X))
        base = self.estimator if self.estimator is not None else make_model(ModelConfig())
        self.estimator_ = clone(base).fit(X, z)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions on the within-group standardised scale."""
        check_is_fitted(self, "estimator_")
        validate_data(self, X, ensure_all_finite="allow-nan", reset=False)
        return np.asarray(self.estimator_.predict(X), dtype=float)

    def predict_index(self, X: Any) -> np.ndarray:
        """Predictions on the target's scale: ``mean + sd * z`` of the row's training group."""
        z = self.predict(X)
        stats = self.stats_
        labels = pd.Series(self._labels(X)).astype(str)
        return stats["mean"].reindex(labels).to_numpy() + stats["sd"].reindex(labels).to_numpy() * z

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def make_group_standardized(cfg: ModelConfig, groups: pd.Series) -> GroupStandardizedRegressor:
    """``make_model(cfg)`` fitted on the target standardised within ``groups``."""
    return GroupStandardizedRegressor(make_model(cfg), groups)


def make_model(cfg: ModelConfig) -> BaseEstimator:
    """An unfitted sklearn regressor for ``cfg`` (ridge, LightGBM or stack)."""
    select = ("select", BlockSelector(cfg.features))
    if cfg.name == "ridge":
        alphas = cfg.params.get("alphas", RIDGE_ALPHAS)
        return Pipeline(
            [
                select,
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("ridge", RidgeCV(alphas=alphas)),
            ]
        )
    if cfg.name == "lightgbm":
        from lightgbm import LGBMRegressor

        params = {**LIGHTGBM_DEFAULTS, "random_state": cfg.random_state, **cfg.params}
        return Pipeline([select, ("lightgbm", LGBMRegressor(**params))])
    if cfg.name == "stack":
        if not cfg.estimators:
            raise ConfigError(
                "model name: stack needs a list of estimators",
                where="key model.estimators",
                fix="list the models to combine, e.g. [{name: ridge, features: [cnn]}, "
                "{name: lightgbm}]",
            )
        members = [
            (f"{i}_{m.name}", make_model(_inherit(m, cfg))) for i, m in enumerate(cfg.estimators)
        ]
        # Inner folds are random: the outer cross-validation that reports accuracy is the
        # spatial one, and the meta-model only weighs a handful of member predictions.
        return Pipeline(
            [
                select,
                (
                    "stack",
                    StackingRegressor(
                        estimators=members,
                        final_estimator=LinearRegression(positive=True),
                        cv=KFold(5, shuffle=True, random_state=cfg.random_state),
                    ),
                ),
            ]
        )
    raise ConfigError(f"unknown model {cfg.name!r}", fix="use ridge, lightgbm or stack")


def _inherit(member: ModelConfig, parent: ModelConfig) -> ModelConfig:
    """A stack member keeps its own settings and the parent's seed."""
    return member.model_copy(update={"random_state": parent.random_state})


#: Feature blocks made from daytime imagery.
IMAGERY_BLOCKS = ("img", "cnn", "rcf")


def _restricted(cfg: ModelConfig, blocks: list[str]) -> ModelConfig:
    """The same learner (LightGBM for a stack) on ``blocks`` only."""
    name = "lightgbm" if cfg.name == "stack" else cfg.name
    params = {} if cfg.name == "stack" else cfg.params
    return ModelConfig(name=name, features=blocks, params=params, random_state=cfg.random_state)


def baseline_config(cfg: ModelConfig) -> ModelConfig:
    """The nightlights-only baseline fitted beside every model: same learner, ``nl`` only."""
    return _restricted(cfg, ["nl"])


def comparison_models(cfg: ModelConfig, columns: Iterable[str]) -> dict[str, ModelConfig]:
    """Models compared by ``povertymap run --compare`` on the same folds as ``cfg``:
    one per kind of evidence (tabular, random features, transfer CNN) and a stack of them,
    for the blocks the feature table has (the nightlights-only and no-imagery references
    are always fitted)."""
    blocks = sorted({str(c).split("_", 1)[0] for c in columns})
    tabular = [b for b in blocks if b not in IMAGERY_BLOCKS and b != "table"] + (
        ["img"] if "img" in blocks else []
    )
    seed = cfg.random_state
    out: dict[str, ModelConfig] = {}
    if tabular:
        out["tabular"] = ModelConfig(name="lightgbm", features=tabular, random_state=seed)
    for block, label in (("rcf", "random features"), ("cnn", "transfer CNN")):
        if block in blocks:
            out[label] = ModelConfig(name="ridge", features=[block], random_state=seed)
    if len(out) > 1:
        out["stacked"] = ModelConfig(name="stack", estimators=list(out.values()), random_state=seed)
    return out


def reference_models(cfg: ModelConfig, columns: Iterable[str]) -> dict[str, ModelConfig]:
    """Models fitted beside ``cfg`` on the same folds, to show what each source adds:
    ``baseline`` (nightlights only) and ``no_imagery`` (every block but imagery), when the
    feature table allows them."""
    blocks = sorted({str(c).split("_", 1)[0] for c in columns})
    used = cfg.features or blocks
    out = {}
    if "nl" in blocks:
        out["baseline"] = baseline_config(cfg)
    plain = [b for b in used if b not in IMAGERY_BLOCKS]
    if plain and len(plain) < len(used):
        out["no_imagery"] = _restricted(cfg, plain)
    return out
