"""The main job, composed from the stages: features, cross-validation, rollout, aggregation.

:func:`run` turns a study-area config into a run directory (DESIGN.md): features for the
survey clusters (over buffers) and every grid cell, the model and a nightlights-only
baseline measured by cross-validation, the model refitted on all clusters and applied to
every cell, population-weighted admin estimates, and a report. :func:`evaluate` runs the
cross-validation alone (configs with only a survey and feature tables), and
:func:`predict` maps a new study area with a saved model. The CLI only calls these.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import yaml

from povertymap import __version__
from povertymap.config import StudyAreaConfig
from povertymap.engine.base import Engine, ProgressCallback, get_engine
from povertymap.errors import ConfigError
from povertymap.estimate import (
    EstimateResult,
    displace_clusters,
    estimate_map,
    evaluate_against_truth,
)
from povertymap.features.base import FeatureBlock
from povertymap.features.build import build_features, cell_facts, compute_features, neighbourhoods
from povertymap.io.configfile import read_config
from povertymap.io.survey import read_registry
from povertymap.io.vector import read_vector
from povertymap.io.writers import RasterWriter, write_json, write_table, write_vector
from povertymap.models.classical import comparison_models
from povertymap.models.evaluate import CrossValidation, cross_validate, fit_model
from povertymap.models.store import SavedModel, load_model, save_model
from povertymap.predict.aggregate import weighted_by_area
from povertymap.predict.rollout import cells_to_raster, map_cells, out_of_area_predictions
from povertymap.report import (
    Report,
    Section,
    accuracy_section,
    add_section,
    admin_map,
    calibration_section,
    cell_map,
    coverage_section,
    groups_section,
    para,
    small_area_section,
    sources_table,
    targeting_section,
    truth_section,
    uncertainty_section,
)
from povertymap.rundir import RunDirectory, new_run_id, update_run, write_run
from povertymap.studyarea import StudyArea, cluster_buffers, load_study_area
from povertymap.target.baselines import FixedPlan
from povertymap.target.settings import TargetingSettings
from povertymap.target.stage import (
    TargetingEvaluation,
    evaluate_methods,
    make_plan,
    map_headcounts,
    plan_summary,
    targeting_methods,
)
from povertymap.truth import read_truth, score_cells

__all__ = [
    "RunResult",
    "Timer",
    "evaluate",
    "predict",
    "resolved_config_text",
    "run",
    "target",
]

log = logging.getLogger(__name__)

#: Bands of ``map.tif``, in order, when the cells carry them.
MAP_BANDS = ("estimate", "lower", "upper")
#: Columns the estimation stage adds to cells (calibrated estimate, interval, headcount).
ESTIMATE_COLUMNS = (
    "estimate",
    "lower",
    "upper",
    "sigma",
    "poverty_rate",
    "poverty_lower",
    "poverty_upper",
)


@dataclass
class Timer:
    """Wall-clock seconds per stage, for ``metrics.json`` and benchmarks."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as stage ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 3)


@dataclass(frozen=True)
class RunResult:
    """Where a job wrote its outputs and its headline metrics."""

    path: Path
    metrics: dict[str, Any]


def resolved_config_text(cfg: StudyAreaConfig) -> str:
    """The config with every default filled in and absolute paths, as YAML."""
    data = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)


def run(
    cfg: StudyAreaConfig,
    *,
    runs: Path,
    compare: bool = False,
    truth: Path | None = None,
    run_id: str | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """The main job: map the study area and write ``runs/<run_id>/`` (published atomically).

    ``compare`` adds the :func:`~povertymap.models.classical.comparison_models`
    (tabular, random features, transfer CNN, stacked), cross-validated on the same folds as
    the main model and mapped beside it. ``truth`` (a synthetic country's ``truth/``
    folder) adds a check of the finished map against the truth to the metrics and report;
    it is read only after every estimate is made.
    """
    timer = Timer()
    config_text = resolved_config_text(cfg)
    run_id = run_id or new_run_id(cfg.name, config_text)
    engine = get_engine(cfg.features.engine)
    with timer.stage("load"):
        area = load_study_area(cfg, progress=progress)
        area.require_admin()
    extra = {"version": __version__, "truth": str(truth) if truth else None}
    with write_run(
        runs, run_id, config_text=config_text, inputs=cfg.files(), extra=extra
    ) as folder:
        with timer.stage("features"):
            features = compute_features(
                area,
                for_map=True,
                engine=engine,
                progress=progress,
                cache_dir=runs / ".cache",
                log_dir=folder / "logs",
            )
        assert features.cells is not None and features.cell_facts is not None  # for_map
        X, y = features.clusters, area.clusters["target"].to_numpy(dtype=float)
        with timer.stage("cross_validation"):
            centres = shapely.get_coordinates(shapely.centroid(area.grid.geometry.values))
            people = features.cell_facts["population"].to_numpy(dtype=float)
            compared = comparison_models(cfg.model, X.columns) if compare else None
            cv = cross_validate(
                area, X, models=compared, prediction=(centres, people), progress=progress
            )
        with timer.stage("fit"):
            fitted = {name: fit_model(m, X, y) for name, m in cv.models.items()}
        references = {k: v for k, v in fitted.items() if k != "model"}
        with timer.stage("rollout"):
            cells = map_cells(area, features.cell_facts, features.cells, fitted)
        if area.households is not None:  # small-area estimation needs independent maps
            with timer.stage("out_of_area"):
                cells["pred_out_of_area"] = out_of_area_predictions(
                    partial(fit_model, cv.models["model"]),
                    X,
                    y,
                    area.clusters["admin_id"].reindex(X.index).to_numpy(),
                    features.cells,
                    cells["admin_id"].to_numpy(),
                )
        with timer.stage("estimate"):
            estimates = estimate_cells(area, cv.oof, cells)
            cells = cells.rename(columns={"estimate": "raw_estimate"}).join(
                estimates.cells[[c for c in ESTIMATE_COLUMNS if c in estimates.cells]]
            )
            admin = area.require_admin()[["geometry"]].join(
                estimates.admin.drop(columns=["parent_id"], errors="ignore"), how="right"
            )
        metrics: dict[str, Any] = {
            "cv": cv.metrics,
            "target": cfg.survey.clusters.target,
            "n_clusters": len(y),
            "n_cells": len(cells),
            "population": float(cells["population"].sum()),
            "estimate": estimates.metrics,
            "urban_cells": features.cell_facts.attrs.get("urban_rule"),
        }
        registry = read_registry(cfg.registry) if cfg.registry is not None else None
        plan = None
        if cfg.poverty_line is not None and "poverty_rate" in cells:
            with timer.stage("targeting"):
                for name in references:
                    cells[f"{name}_poverty"] = map_headcounts(
                        cells, name, estimates.within_sd, cfg.poverty_line
                    )
                plan = make_plan(cells, cfg.targeting, registry=registry, survey=area.households)
                metrics["targeting"] = plan_summary(plan, cfg.targeting)
        with timer.stage("write"):
            write_table(cv.oof.reset_index(names="cluster_id"), folder / "oof.csv")
            write_vector(cells, folder / "cells.parquet")
            _write_map(cells, area.cell_size, area.crs, folder / "map.tif")
            write_vector(admin.reset_index(), folder / "admin.gpkg", layer="admin")
            _write_public(area, estimates, folder / "public")
            if plan is not None:
                write_table(plan.reset_index(), folder / "targeting.csv")
            save_model(
                SavedModel(
                    model=fitted["model"],
                    blocks=features.blocks,
                    columns=list(X.columns),
                    target=cfg.survey.clusters.target,
                    radii=cfg.features.buffer_m.model_dump(),
                    references=references,
                ),
                folder / "model",
            )
        evaluation = None
        if truth is not None:
            with timer.stage("truth"):
                known = read_truth(truth)
                metrics["truth"] = score_cells(cells, known["cells"], ("estimate", *references))
                metrics["truth"]["estimate"].update(
                    evaluate_against_truth(estimates, known["cells"], known["admin"])
                )
                if plan is not None and registry is not None:
                    evaluation = _evaluate_targeting(plan, cells, registry, area, known, cfg)
                    metrics["truth"]["targeting"] = evaluation.headline
        with timer.stage("report"):
            report = _run_report(area, cells, admin, cv.oof, estimates, metrics)
            if plan is not None:
                report.add(
                    targeting_section(plan, cells, area.cell_size, cfg.targeting, evaluation)
                )
            report.write(folder)
        metrics["timings_s"] = timer.seconds
        write_json(metrics, folder / "metrics.json")
    return RunResult(runs / run_id, metrics)


#: Maps compared in targeting, by label: the headcount column of each.
TARGETING_MAPS = {
    "map (this run)": "poverty_rate",
    "nightlights-only map": "baseline_poverty",
    "map without imagery": "no_imagery_poverty",
}


def _evaluate_targeting(
    plan: pd.DataFrame,
    cells: pd.DataFrame,
    registry: pd.DataFrame,
    area: StudyArea,
    known: dict[str, pd.DataFrame],
    cfg: StudyAreaConfig,
) -> TargetingEvaluation:
    """This plan and every alternative against the true consumption of every household."""
    people = known["households"].assign(household_id=lambda d: d["household_id"].astype(str))
    households = registry.merge(
        people[["household_id", "log_consumption", "poor"]], on="household_id", how="inner"
    )
    households["consumption"] = np.exp(households["log_consumption"])
    if "parent_id" in cells and "admin1_id" not in households:
        households["admin1_id"] = cells["parent_id"].reindex(households["cell_id"]).to_numpy()
    unit_col = {"cell_id": "cell_id", "admin_id": "admin_id"}.get(str(plan.index.name))
    methods = {
        "this plan": FixedPlan(plan, unit_col),
        **targeting_methods(
            cells,
            TARGETING_MAPS,
            registry=registry,
            survey=area.households,
            true_cells=known["cells"],
        ),
    }
    return evaluate_methods(methods, households, cfg.targeting.budget, rho=cfg.targeting.rho)


def _run_report(
    area: StudyArea,
    cells: gpd.GeoDataFrame,
    admin: gpd.GeoDataFrame,
    oof: pd.DataFrame,
    estimates: EstimateResult,
    metrics: dict[str, Any],
) -> Report:
    """The run's report: maps, accuracy, uncertainty, admin estimates, truth, sources."""
    target = metrics["target"]
    report = Report(f"Poverty map of {area.name}")
    figures = {
        "map": cell_map(cells, "estimate", area.cell_size, f"Estimated {target}"),
        "admin": admin_map(admin, "estimate", f"Estimated {target}, population-weighted"),
    }
    if "poverty_rate" in cells:
        figures["poverty"] = cell_map(
            cells,
            "poverty_rate",
            area.cell_size,
            "Estimated poverty headcount",
            cmap="RdYlBu_r",
            label="share of people below the poverty line",
        )
    report.add(
        Section(
            "Map",
            para(
                f"Estimated {target} for {len(cells):,} cells of {area.cell_size / 1000:g} km "
                f"({metrics['population']:,.0f} people), its population-weighted mean per admin "
                "unit" + (", and the poverty headcount." if "poverty_rate" in cells else ".")
            ),
            figures,
        )
    )
    report.add(accuracy_section(metrics, oof, target))
    regions = area.clusters.get("parent_id", None)
    report.add(groups_section(metrics, oof, regions))
    calibrator = estimates.calibrator
    report.add(calibration_section(oof, metrics, calibrator.predict))
    report.add(uncertainty_section(cells, area.cell_size, metrics, target))
    report.add(small_area_section(admin, metrics))
    if "truth" in metrics:
        report.add(truth_section(metrics["truth"], metrics["cv"]))
        report.add(coverage_section(metrics["truth"]))
    report.add(Section("Data sources", sources_table(area)))
    return report


def evaluate(
    cfg: StudyAreaConfig,
    *,
    out: Path,
    scheme: str | None = None,
    group: str | None = None,
    n_folds: int | None = None,
    redisplace: int = 0,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Cross-validation only: ``metrics.json`` and ``oof.csv`` in a new folder ``out``.

    Works on configs with just survey clusters and feature tables (no rasters, no
    boundaries): the way to benchmark a feature set. ``redisplace`` > 0 adds the
    displacement sensitivity (:func:`displacement_sensitivity`) with that many draws.
    """
    timer = Timer()
    engine = get_engine(cfg.features.engine)
    with timer.stage("load"):
        area = load_study_area(cfg, progress=progress)
    with timer.stage("features"):
        features = compute_features(area, for_map=False, engine=engine, progress=progress)
    with timer.stage("cross_validation"):
        cv = cross_validate(
            area, features.clusters, scheme=scheme, group=group, n_folds=n_folds, progress=progress
        )
    metrics = {
        "cv": cv.metrics,
        "target": cfg.survey.clusters.target,
        "n_clusters": len(cv.oof),
        "timings_s": timer.seconds,
    }
    if redisplace > 0:
        with timer.stage("displacement"):
            metrics["displacement"] = displacement_sensitivity(
                area,
                features.blocks,
                cv,
                draws=redisplace,
                engine=engine,
                progress=progress,
                scheme=scheme,
                group=group,
                n_folds=n_folds,
            )
    with write_run(
        out.parent,
        out.name,
        config_text=resolved_config_text(cfg),
        inputs=cfg.files(),
        extra={"version": __version__},
    ) as folder:
        write_table(cv.oof.reset_index(names="cluster_id"), folder / "oof.csv")
        write_json(metrics, folder / "metrics.json")
    return RunResult(out, metrics)


def displacement_sensitivity(
    area: StudyArea,
    blocks: list[FeatureBlock],
    cv: CrossValidation,
    *,
    draws: int,
    engine: Engine,
    progress: ProgressCallback | None = None,
    **cv_options: Any,
) -> dict[str, Any]:
    """How cross-validated r² moves when the clusters are displaced once more.

    Survey coordinates are already displaced (DHS: urban up to 2 km, rural up to 5 km, 1%
    of rural up to 10 km, inside the admin-2 unit). Each draw displaces them again by the
    same rules, recomputes the cluster features and reruns the cross-validation on the
    same folds. A small spread means buffer-averaged features absorb the displacement.
    """
    admin = area.require_admin()
    clusters = pd.DataFrame(area.clusters.drop(columns="geometry"))
    clusters["easting"], clusters["northing"] = area.clusters.geometry.x, area.clusters.geometry.y
    if "urban" not in clusters:
        clusters["urban"] = False
    radii = area.config.features.buffer_m.model_dump()
    rng = np.random.default_rng(area.config.model.random_state)
    r2 = []
    for k in range(draws):
        moved = displace_clusters(clusters, rng, admin=admin)
        points = area.clusters.set_geometry(
            gpd.points_from_xy(moved["easting"], moved["northing"], crs=area.crs)
        )
        X = build_features(blocks, area, cluster_buffers(points, radii), engine=engine)
        again = cross_validate(area, X, compare_random=False, references=False, **cv_options)
        r2.append(float(again.metrics["r2"]))
        if progress is not None:
            progress("re-displacement", k + 1, draws)
    change = np.asarray(r2) - cv.metrics["r2"]
    return {
        "draws": draws,
        "r2": cv.metrics["r2"],
        "r2_redisplaced": r2,
        "mean_change": float(change.mean()),
        "sd": float(np.std(r2, ddof=1)) if draws > 1 else 0.0,
        "max_abs_change": float(np.abs(change).max()),
    }


def predict(
    run_dir: Path,
    cfg: StudyAreaConfig,
    *,
    runs: Path,
    run_id: str | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Map a new study area with the model saved in ``run_dir`` (no survey needed to fit).

    The new area's features are computed by the saved (fitted) feature blocks through the
    same cell neighbourhoods, so they mean what they meant in training. The estimates are
    the model's raw predictions: calibration and intervals need the new area's survey.
    """
    source = RunDirectory.open(run_dir)
    saved = load_model(source.path / "model")
    timer = Timer()
    config_text = resolved_config_text(cfg)
    run_id = run_id or new_run_id(f"{cfg.name}-predict", config_text)
    engine = get_engine(cfg.features.engine)
    with timer.stage("load"):
        area = load_study_area(cfg, progress=progress)
        admin_units = area.require_admin()
    extra = {"version": __version__, "model_run": source.run_id}
    with write_run(
        runs, run_id, config_text=config_text, inputs=cfg.files(), extra=extra
    ) as folder:
        with timer.stage("features"):
            facts = cell_facts(area, engine=engine, progress=progress)
            zones = neighbourhoods(area.grid, facts["urban"], saved.radii)
            X = build_features(saved.blocks, area, zones, engine=engine, progress=progress)
            X = X.reindex(columns=saved.columns)
        with timer.stage("rollout"):
            cells = map_cells(area, facts, X, {"model": saved.model, **saved.references})
        columns = [c for c in ("estimate", *saved.references) if c in cells]
        admin = admin_units[["geometry"]].join(weighted_by_area(cells, "admin_id", columns))
        write_vector(cells, folder / "cells.parquet")
        _write_map(cells, area.cell_size, area.crs, folder / "map.tif")
        write_vector(admin.reset_index(), folder / "admin.gpkg", layer="admin")
        metrics = {
            "model_run": source.run_id,
            "n_cells": len(cells),
            "population": float(cells["population"].sum()),
            "timings_s": timer.seconds,
        }
        write_json(metrics, folder / "metrics.json")
    return RunResult(runs / run_id, metrics)


def target(
    run_dir: Path,
    settings: TargetingSettings,
    *,
    budget: str | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """A new targeting plan for a finished run: ``targeting.csv`` and the report's
    targeting section are replaced, the manifest updated, the rest left as it was."""
    source = RunDirectory.open(run_dir)
    cfg = read_config(source.path / "config.yaml")
    cells = read_vector(source.path / "cells.parquet")
    if "poverty_rate" not in cells:
        raise ConfigError(
            "this run has no poverty headcounts to target with",
            where="key poverty_line",
            fix="set poverty_line in the study-area config and run again",
        )
    registry = read_registry(cfg.registry) if cfg.registry is not None else None
    area = (
        load_study_area(cfg, progress=progress)
        if settings.method != "geographic" or source.manifest.get("truth")
        else None
    )
    survey = area.households if area is not None else None
    plan = make_plan(cells, settings, budget=budget, registry=registry, survey=survey)
    summary = plan_summary(plan, settings)
    evaluation = None
    truth = source.manifest.get("truth")
    if truth and registry is not None and area is not None:
        chosen = cfg.model_copy(
            update={"targeting": settings.model_copy(update={"budget": budget or settings.budget})}
        )
        evaluation = _evaluate_targeting(
            plan, cells, registry, area, read_truth(Path(truth)), chosen
        )
    with update_run(source.path) as folder:
        write_table(plan.reset_index(), folder / "targeting.csv")
        metrics = source.json("metrics.json")
        metrics["targeting"] = summary
        if evaluation is not None:
            metrics.setdefault("truth", {})["targeting"] = evaluation.headline
        write_json(metrics, folder / "metrics.json")
        cell_size = cfg.grid.cell_size_m
        add_section(folder, targeting_section(plan, cells, cell_size, settings, evaluation))
    return RunResult(source.path, metrics)


def estimate_cells(area: StudyArea, oof: pd.DataFrame, cells: gpd.GeoDataFrame) -> EstimateResult:
    """The estimation stage on a run's out-of-fold and cell predictions (see ``estimate``)."""
    clusters = pd.DataFrame(area.clusters.drop(columns="geometry"))
    if "urban" not in clusters:
        clusters["urban"] = False
    oof = oof.join(clusters[["urban", "admin_id", "parent_id"]].reindex(oof.index))
    oof["easting"], oof["northing"] = area.clusters.geometry.x, area.clusters.geometry.y
    centres = cells.geometry.centroid
    cell_in = pd.DataFrame(cells.drop(columns="geometry")).rename(columns={"estimate": "pred"})
    cell_in["easting"], cell_in["northing"] = centres.x, centres.y
    admin = pd.DataFrame(area.require_admin().drop(columns="geometry"))
    if area.census is not None:
        admin["population"] = area.census["population"].reindex(admin.index)
    return estimate_map(
        oof,
        cell_in,
        area.households,
        clusters.reset_index(),
        admin,
        poverty_line=area.config.poverty_line,
        settings=area.config.estimate,
        rng=np.random.default_rng(area.config.model.random_state),
    )


def _write_public(area: StudyArea, estimates: EstimateResult, folder: Path) -> None:
    """The gated tables that may be published: no survey locations, no suppressed values."""
    public = estimates.public()
    grid = area.grid
    write_vector(grid[["geometry"]].join(public["cells"], how="inner"), folder / "cells.parquet")
    admin = area.require_admin()
    write_vector(
        admin[["geometry"]].join(public["admin"], how="inner").reset_index(),
        folder / "admin.gpkg",
        layer="admin",
    )


def _write_map(cells: Any, cell_size: float, crs: Any, path: Path) -> None:
    """``map.tif``: one pixel per cell, a band per estimate column, NaN outside the AOI."""
    bands = [b for b in MAP_BANDS if b in cells]
    data, layout = cells_to_raster(cells, bands, cell_size)
    with RasterWriter(
        path,
        width=layout.width,
        height=layout.height,
        count=len(bands),
        dtype="float32",
        crs=crs,
        transform=layout.transform,
        nodata=float("nan"),
        band_names=bands,
    ) as out:
        out.write(data, (0, 0))
