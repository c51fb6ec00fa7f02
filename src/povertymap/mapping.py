"""The fitted map-maker: :class:`MappingModel`, the object a run saves, a server loads and
a registry versions.

``fit(area)`` learns everything a map needs from one study area: the feature blocks (the
CNN and the imagery band statistics among them), the model and its references, each
cross-validated on one set of folds, and the cell estimator (calibration, conformal
quantiles, within-cell dispersion, household sizes, the spatial error model) fitted on the
out-of-fold predictions. ``predict(area)`` maps any study area with it:
features through the same neighbourhoods, raw predictions, then calibrated estimates,
intervals and headcounts. The run writes ``map_cells`` of its own training features, and
``predict`` computes the same features again and calls the same function, so predicting
the training area gives exactly the run's map.

Saved state (``save``/``load``, a ``model/`` folder): the pickled model (no absolute or
run-directory paths inside), ``model.json`` (schema version, target, feature columns),
the training feature table and its per-feature reference statistics (the drift baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sklearn.base import BaseEstimator

from povertymap import __version__
from povertymap.config import EstimationSettings, FeaturesConfig, ModelConfig, StudyAreaConfig
from povertymap.engine.base import Engine, ProgressCallback
from povertymap.errors import InputError, RunDirError
from povertymap.estimate.cells import CellEstimates, CellEstimator
from povertymap.estimate.headcount import relative_line
from povertymap.features.base import FeatureBlock
from povertymap.features.build import (
    FeatureSet,
    build_cell_features,
    cell_facts,
    compute_features,
)
from povertymap.features.imagery import has_imagery
from povertymap.features.urban import UrbanRule
from povertymap.io.artifacts import read_json, read_pickle, write_pickle
from povertymap.io.writers import write_json, write_table
from povertymap.models.classical import comparison_models
from povertymap.models.evaluate import CrossValidation, cross_validate, fit_model
from povertymap.models.sensitivity import redisplaced_features
from povertymap.predict import rollout
from povertymap.runplan import survey_households
from povertymap.target.stage import FittedPMT, fit_pmt
from povertymap.timing import Timer

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = [
    "SCHEMA_VERSION",
    "MappingModel",
    "Training",
    "estimation_admin",
    "estimation_cells",
    "estimation_clusters",
    "feature_statistics",
    "map_locations",
]

#: Version of the saved ``model/`` layout; :meth:`MappingModel.load` refuses others.
SCHEMA_VERSION = 2  # 2: the fitted urban rule (urban_rule_)
MODEL_FILE = "model.joblib"
MODEL_META = "model.json"
TRAINING_FEATURES = "training_features.parquet"
FEATURE_STATS = "feature_stats.parquet"


@dataclass(frozen=True)
class Training:
    """What fitting computed besides the model (kept in memory for the run, never saved)."""

    features: FeatureSet
    cv: CrossValidation
    oof: pd.DataFrame
    """Out-of-fold predictions with the clusters' ``urban, admin_id, parent_id, easting,
    northing``: the estimator's training data."""


def feature_statistics(X: pd.DataFrame) -> pd.DataFrame:
    """Per-feature reference statistics of a feature table (the drift baseline).

    One row per feature: ``mean, sd, min, q05, q25, q50, q75, q95, max, missing``
    (share of missing values).
    """
    q = X.quantile([0.05, 0.25, 0.5, 0.75, 0.95])
    return pd.DataFrame(
        {
            "mean": X.mean(),
            "sd": X.std(ddof=1),
            "min": X.min(),
            "q05": q.loc[0.05],
            "q25": q.loc[0.25],
            "q50": q.loc[0.5],
            "q75": q.loc[0.75],
            "q95": q.loc[0.95],
            "max": X.max(),
            "missing": X.isna().mean(),
        }
    ).rename_axis("feature")


def map_locations(area: StudyArea, facts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Where the map predicts, for distance-matched CV: cell centres and their people."""
    centres = shapely.get_coordinates(shapely.centroid(area.grid.geometry.values))
    return centres, facts["population"].reindex(area.grid.index).to_numpy(dtype=float)


def estimation_clusters(area: StudyArea) -> pd.DataFrame:
    """The survey clusters as the estimation stage reads them: no geometry, an ``urban``
    flag (False when the survey has none), ``easting``/``northing`` in the working CRS."""
    clusters = pd.DataFrame(area.clusters.drop(columns="geometry"))
    if "urban" not in clusters:
        clusters["urban"] = False
    clusters["easting"] = area.clusters.geometry.x.to_numpy()
    clusters["northing"] = area.clusters.geometry.y.to_numpy()
    return clusters


def estimation_admin(area: StudyArea) -> pd.DataFrame:
    """The admin-2 units as the area step reads them: ``parent_id`` and names, with the
    census ``population`` (the area weights) where the study area has a census."""
    admin = pd.DataFrame(area.require_admin().drop(columns="geometry"))
    if area.census is not None:
        admin["population"] = area.census["population"].reindex(admin.index)
    return admin


def estimation_cells(cells: pd.DataFrame, column: str = "estimate") -> pd.DataFrame:
    """Cells as the cell estimator reads them: ``pred`` (the raw prediction in
    ``column``) and the cell centre's ``easting``/``northing``."""
    centres = shapely.get_coordinates(shapely.centroid(np.asarray(cells.geometry.values)))
    out = pd.DataFrame(cells.drop(columns="geometry")).assign(pred=cells[column].to_numpy())
    out["easting"], out["northing"] = centres[:, 0], centres[:, 1]
    return out


@dataclass
class MappingModel:
    """Features, model, references and cell estimator of one study area, fitted together.

    Construct with :meth:`from_config`; parameters are the config sections they come
    from. Fitted attributes: ``blocks_``, ``columns_``, ``estimators_`` (``model`` and the
    reference models by name), ``cell_estimator_``, ``reference_estimators_`` (one cell
    estimator per reference, so reference maps get the same calibration and headcounts),
    ``pmt_`` (the proxy means test, with a registry and survey welfare), ``line_`` (the
    poverty line in the target's units, None without one), ``training_X_``,
    ``training_y_`` and ``training_`` (:class:`Training`, not saved).
    """

    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    estimate: EstimationSettings = field(default_factory=EstimationSettings)
    target: str = "target"
    poverty_line: float | str | None = None
    """In the target's units, or a share of people (``"40%"``) resolved on the survey."""
    random_state: int = 0

    @classmethod
    def from_config(cls, cfg: StudyAreaConfig) -> MappingModel:
        """An unfitted model with the config's feature, model and estimation settings."""
        return cls(
            features=cfg.features,
            model=cfg.model,
            estimate=cfg.estimate,
            target=cfg.survey.target,
            poverty_line=cfg.poverty_line,
            random_state=cfg.model.random_state,
        )

    # -- fitting -------------------------------------------------------------------------
    def fit(
        self,
        area: StudyArea,
        *,
        engine: Engine,
        compare: bool = False,
        registry: pd.DataFrame | None = None,
        progress: ProgressCallback | None = None,
        timer: Timer | None = None,
        features: FeatureSet | None = None,
        **block_options: Any,
    ) -> MappingModel:
        """Fit on ``area``: features, cross-validation, models, cell estimators, PMT.

        ``compare`` adds the comparison models (tabular, random features, transfer CNN,
        stack) as references. ``block_options`` (``cache_dir``, ``log_dir``) go to the
        blocks that take them and are not saved. ``timer`` records the seconds of the
        ``features``, ``cross_validation`` and ``fit`` stages. ``features``: a map's
        feature set computed before (``compute_features(area, for_map=True)``, e.g. by the
        DVC pipeline's features stage), used as is instead of computing it again.
        """
        timer = timer or Timer()
        if features is None:
            with timer.stage("features"):
                features = compute_features(
                    area, for_map=True, engine=engine, progress=progress, **block_options
                )
        elif features.cells is None or features.cell_facts is None:
            raise InputError(
                "the precomputed feature set has no cell features",
                where="features",
                fix="compute it with compute_features(area, for_map=True)",
            )
        assert features.cells is not None and features.cell_facts is not None  # for_map
        X, y = features.clusters, area.clusters["target"].to_numpy(dtype=float)
        with timer.stage("cross_validation"):
            moved = redisplaced_features(
                area,
                features.blocks,
                self.estimate.position_draws,
                engine=engine,
                urban_cells=features.cell_facts["urban"] if features.urban_rule else None,
            )
            cv = cross_validate(
                area,
                X,
                models=comparison_models(self.model, X.columns) if compare else None,
                prediction=map_locations(area, features.cell_facts),
                moved=moved,
                progress=progress,
                engine=engine,
            )
        self.blocks_: list[FeatureBlock] = features.blocks
        self.columns_: list[str] = list(X.columns)
        self.urban_rule_: UrbanRule | None = features.urban_rule
        with timer.stage("fit"):
            self.estimators_: dict[str, BaseEstimator] = {
                name: fit_model(m, X, y) for name, m in cv.models.items()
            }
        self.training_X_, self.training_y_ = X, pd.Series(y, index=X.index, name=self.target)
        clusters = estimation_clusters(area)
        oof = cv.oof.join(clusters[["urban", "admin_id", "parent_id", "easting", "northing"]])
        raw = self.raw_predictions(features.cells)
        cells = estimation_cells(rollout.map_cells(area, features.cell_facts, raw))
        households = survey_households(area)
        self.line_ = self._resolve_line(households)
        self._fit_estimators(oof, cells, households, clusters.reset_index())
        self.pmt_: FittedPMT | None = None
        if registry is not None and households is not None:
            self.pmt_ = fit_pmt(households, registry)
        self.training_ = Training(features, cv, oof)
        return self

    def _resolve_line(self, households: pd.DataFrame | None) -> float | None:
        """The poverty line in the target's units (a share is resolved on the survey)."""
        if not isinstance(self.poverty_line, str):
            return self.poverty_line
        if households is None:
            raise InputError(
                f"poverty_line {self.poverty_line} is a share of people, and the survey has "
                "no households with welfare to take it from",
                where="key poverty_line",
                fix="add survey households, or give the line in the target's units",
            )
        share = float(self.poverty_line.rstrip("%")) / 100
        return relative_line(households, share, person_weighted=self.estimate.person_weighted)

    def _fit_estimators(
        self,
        oof: pd.DataFrame,
        cells: pd.DataFrame,
        households: pd.DataFrame | None,
        clusters: pd.DataFrame,
    ) -> None:
        """The cell estimator on the model's OOF predictions, and one per reference on that
        reference's OOF predictions (its headcounts; the no-imagery one also maps the cells
        the imagery does not cover)."""

        def fitted(column: str) -> CellEstimator:
            return CellEstimator(settings=self.estimate, poverty_line=self.line_).fit(
                oof.assign(pred=oof[column]), cells.assign(pred=cells[column]), households, clusters
            )

        self.cell_estimator_ = fitted("pred")
        self.reference_estimators_ = {
            name: fitted(name) for name in self.estimators_ if name != "model"
        }

    # -- predicting ----------------------------------------------------------------------
    def rng(self) -> np.random.Generator:
        """A fresh generator of the estimation's simulations (same seed, same intervals)."""
        return np.random.default_rng(self.random_state)

    def raw_predictions(self, X: pd.DataFrame, *, engine: Engine | None = None) -> pd.DataFrame:
        """Every estimator's raw prediction for feature rows ``X`` (``estimate`` for the
        model, the reference's name for each reference); on ``engine`` when it distributes
        (Spark: the fitted estimators broadcast, chunks of cells as tasks)."""
        X = self._aligned(X)
        models = {("estimate" if n == "model" else n): e for n, e in self.estimators_.items()}
        return rollout.predict_table(models, X, engine=engine)

    def estimate_cells(
        self, cells: gpd.GeoDataFrame, rng: np.random.Generator
    ) -> tuple[gpd.GeoDataFrame, CellEstimates]:
        """Calibrated estimates, intervals and headcounts of raw-predicted ``cells``.

        ``estimate`` becomes ``raw_estimate``; ``<reference>_poverty`` is each
        reference map's headcount by its own calibration. Returns the cells and the
        :class:`CellEstimates` the area step reuses.
        """
        inputs = estimation_cells(cells)
        estimates = self.cell_estimator_.predict(inputs, rng=rng)
        out = cells.rename(columns={"estimate": "raw_estimate"})
        if "imagery" in cells and not cells["imagery"].all() and "no_imagery" in self.estimators_:
            estimates = self._without_imagery(inputs, estimates, ~cells["imagery"].to_numpy(bool))
        for column in estimates.table:
            out[column] = estimates.table[column]
        if self.cell_estimator_.does_poverty:
            for name, estimator in self.reference_estimators_.items():
                out[f"{name}_poverty"] = estimator.headcount(cells[name].to_numpy(), inputs)
        return out, estimates

    def _without_imagery(
        self, inputs: pd.DataFrame, estimates: CellEstimates, missing: np.ndarray
    ) -> CellEstimates:
        """``estimates`` with the cells the imagery misses mapped by the no-imagery model.

        The model's intervals come from clusters that all had imagery, so they say nothing
        of a cell without it; the no-imagery model, cross-validated on the same folds and
        calibrated on its own out-of-fold errors, gives those cells an estimate from the
        other features and the (wider) interval its errors earn. Its simulations draw from
        their own generator, so covered cells keep their numbers.
        """
        fallback = self.reference_estimators_["no_imagery"].predict(
            inputs.assign(pred=inputs["no_imagery"]),
            rng=np.random.default_rng([self.random_state, 1]),
        )
        table = estimates.table.copy()
        table.loc[missing, table.columns] = fallback.table.loc[missing, table.columns]
        return CellEstimates(table, estimates.within_sd, estimates.fp_factor)

    def map_cells(
        self,
        area: StudyArea,
        facts: pd.DataFrame,
        X: pd.DataFrame,
        *,
        rng: np.random.Generator | None = None,
        engine: Engine | None = None,
    ) -> tuple[gpd.GeoDataFrame, CellEstimates]:
        """The map of ``area``'s grid from its cell facts and cell features ``X``.

        ``imagery`` marks the cells with imagery when the model uses it; the others are
        mapped by the no-imagery model. ``rng`` (default: :meth:`rng`) is left where the
        area step continues it. ``engine`` runs the predictions (see
        :meth:`raw_predictions`).
        """
        cells = rollout.map_cells(area, facts, self.raw_predictions(X, engine=engine))
        imagery = has_imagery(X)
        if imagery is not None:
            cells["imagery"] = imagery.reindex(cells.index).fillna(False).astype(bool)
        return self.estimate_cells(cells, rng if rng is not None else self.rng())

    def cell_features(
        self, area: StudyArea, *, engine: Engine, progress: ProgressCallback | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(facts, X)`` of ``area``'s grid cells, through the fitted blocks and the
        training buffer radii and urban rule."""
        facts = cell_facts(area, engine=engine, progress=progress, rule=self.urban_rule_)
        radii = self.features.buffer_m.model_dump()
        X = build_cell_features(
            self.blocks_, area, facts["urban"], radii, engine=engine, progress=progress
        )
        return facts, self._aligned(X)

    def predict(
        self, area: StudyArea, *, engine: Engine, progress: ProgressCallback | None = None
    ) -> gpd.GeoDataFrame:
        """Map ``area``: every grid cell with estimate, interval and headcount."""
        facts, X = self.cell_features(area, engine=engine, progress=progress)
        return self.map_cells(area, facts, X)[0]

    def predict_features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Estimates for a feature table a client sends (one row per place).

        ``frame`` holds the model's feature columns (missing values allowed; unknown
        columns are ignored) and optionally ``population`` and ``urban`` (default: 0
        people, rural). Returns ``raw_estimate``, ``estimate``, ``lower``, ``upper``,
        ``sigma`` (and the headcount columns) indexed like ``frame``.
        """
        raw = self.raw_predictions(frame)
        cells = pd.DataFrame(index=frame.index)
        cells["population"] = frame["population"].to_numpy(float) if "population" in frame else 0.0
        cells["urban"] = frame["urban"].to_numpy(bool) if "urban" in frame else False
        cells["pred"] = raw["estimate"].to_numpy()
        table = self.cell_estimator_.predict(cells, rng=self.rng()).table
        return table.assign(raw_estimate=raw["estimate"].to_numpy())[
            ["raw_estimate", *table.columns]
        ]

    def _aligned(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` with the training columns in order; refuses a table that lacks them all."""
        known = [c for c in self.columns_ if c in X.columns]
        if not known:
            raise InputError(
                f"the feature table has none of the model's {len(self.columns_)} feature "
                f"columns (first expected: {', '.join(self.columns_[:3])})",
                where="features",
                fix="send the columns listed in the model's model.json",
            )
        return X.reindex(columns=self.columns_).astype("float64")

    # -- saving --------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the fitted model into ``folder`` (see the module docstring)."""
        state = {k: v for k, v in self.__dict__.items() if k != "training_"}
        write_pickle(state, folder / MODEL_FILE)
        write_json(self.describe(), folder / MODEL_META)
        training = self.training_X_.assign(**{self.target: self.training_y_})
        write_table(training.reset_index(), folder / TRAINING_FEATURES)
        write_table(feature_statistics(self.training_X_).reset_index(), folder / FEATURE_STATS)
        return folder

    def describe(self) -> dict[str, Any]:
        """The saved model's card in brief (``model.json``)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "povertymap_version": __version__,
            "target": self.target,
            "model": self.model.model_dump(mode="json"),
            "blocks": [b.name for b in self.blocks_],
            "columns": self.columns_,
            "references": [n for n in self.estimators_ if n != "model"],
            "buffer_m": self.features.buffer_m.model_dump(),
            "urban_rule": self.urban_rule_.summary() if self.urban_rule_ else None,
            "poverty_line": self.line_,
            "poverty_line_given": self.poverty_line,
            "n_training_clusters": len(self.training_X_),
            "headcounts": self.cell_estimator_.does_poverty,
            "pmt": self.pmt_.columns if self.pmt_ is not None else None,
        }

    @classmethod
    def load(cls, folder: Path) -> MappingModel:
        """Read a model saved by :meth:`save`; refuses another schema version."""
        meta = read_json(folder / MODEL_META)
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise RunDirError(
                f"{folder} holds a model of schema version {meta.get('schema_version')!r}; "
                f"this povertymap reads version {SCHEMA_VERSION}: refit it with "
                "`povertymap run`"
            )
        model = cls.__new__(cls)
        model.__dict__.update(read_pickle(folder / MODEL_FILE))
        return model
