"""The jobs, each a short composition of the stages: ``run``, ``evaluate``, ``predict``,
``target``.

:func:`run` fits a :class:`~povertymap.mapping.MappingModel` on a study area, maps it,
adds the area estimates (Fay-Herriot on out-of-area refits), the plan and, for a
synthetic country, the check against the truth, and publishes ``runs/<run_id>/``.
:func:`evaluate` cross-validates alone; :func:`predict` maps a new area with a saved
model; :func:`target` replans a finished run. The CLI, and later the service and the DVC
stages, call these and nothing below them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from povertymap.config import StudyAreaConfig, TargetingSettings
from povertymap.engine.base import Engine, ProgressCallback, engine_for
from povertymap.errors import ConfigError
from povertymap.estimate.stage import EstimateResult, estimate_areas
from povertymap.features.build import cell_facts, compute_features
from povertymap.features.imagery import imagery_coverage
from povertymap.io.survey import read_registry
from povertymap.io.writers import write_json, write_table
from povertymap.mapping import (
    MappingModel,
    Training,
    estimation_admin,
    estimation_cells,
    estimation_clusters,
    map_locations,
)
from povertymap.mlops.card import write_model_card
from povertymap.models.evaluate import cross_validate, fit_model
from povertymap.models.sensitivity import displacement_sensitivity
from povertymap.predict.rollout import out_of_area_predictions
from povertymap.report import describe_sources, render_report
from povertymap.rundir import (
    RunDirectory,
    new_run_id,
    open_run,
    relative_to_run,
    update_run,
    write_map,
    write_plan,
    write_run,
)
from povertymap.runplan import plan_run, survey_households
from povertymap.studyarea import StudyArea, load_study_area
from povertymap.target.stage import evaluate_plan, make_plan, plan_summary
from povertymap.timing import Timer
from povertymap.truth import read_truth, score_map

__all__ = [
    "RunResult",
    "evaluate",
    "map_accuracy",
    "map_and_estimate",
    "predict",
    "run",
    "target",
]


@dataclass(frozen=True)
class RunResult:
    """Where a job wrote its outputs and its headline metrics."""

    path: Path
    metrics: dict[str, Any]


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

    ``compare`` adds the comparison models (tabular, random features, transfer CNN,
    stacked), cross-validated on the same folds and mapped beside the model. ``truth`` (a
    synthetic country's ``truth/`` folder) is read only after every estimate is made.
    """
    timer = Timer()
    run_id = run_id or new_run_id(cfg.name, cfg.model_dump_json())
    engine = engine_for(cfg.features)
    with timer.stage("load"):
        area = load_study_area(cfg, progress=progress)
        stages = plan_run(area, truth=truth is not None)
        stages.check()
        stages.warn()
        registry = read_registry(cfg.registry) if cfg.registry is not None else None
    extra = {"truth": relative_to_run(truth, Path(runs) / run_id) if truth else None}
    with write_run(runs, run_id, kind="run", cfg=cfg, extra=extra) as folder:
        model = MappingModel.from_config(cfg).fit(
            area,
            engine=engine,
            compare=compare,
            registry=registry,
            progress=progress,
            timer=timer,
            cache_dir=Path(runs) / ".cache",
            log_dir=folder / "logs",
        )
        t = model.training_
        cells, estimates, metrics = map_and_estimate(
            model, area, t, engine=engine, progress=progress, timer=timer
        )
        plan = evaluation = None
        if "poverty_rate" in cells or cfg.targeting.rank_by == "estimate":
            with timer.stage("targeting"):
                plan = make_plan(cells, cfg.targeting, registry=registry, pmt=model.pmt_)
                metrics["targeting"] = plan_summary(plan, cfg.targeting)
        if truth is not None:
            with timer.stage("truth"):
                known = read_truth(truth)
                references = tuple(n for n in model.estimators_ if n != "model")
                metrics["truth"] = score_map(cells, estimates, known, references)
                if plan is not None and registry is not None:
                    evaluation = evaluate_plan(
                        plan, cells, registry, model.pmt_, known, cfg.targeting, engine=engine
                    )
                    metrics["truth"]["targeting"] = evaluation.headline
        with timer.stage("write"):
            write_map(folder, cells, area, estimates, oof=t.oof, partitioned=engine.name == "spark")
            if plan is not None:
                write_plan(folder, plan, evaluation)
            model.save(folder / "model")
            write_json(metrics, folder / "metrics.json")
        with timer.stage("report"):
            render_report(RunDirectory(folder, {}), evaluation)
        metrics["timings_s"] = timer.seconds
        write_json(metrics, folder / "metrics.json")
        write_model_card(RunDirectory(folder, {"run_id": run_id, "kind": "run"}))
    return RunResult(Path(runs) / run_id, metrics)


def _out_of_area(
    model: MappingModel,
    area: StudyArea,
    t: Training,
    cells: pd.DataFrame,
    engine: Engine,
    progress: ProgressCallback | None,
) -> pd.Series:
    """Each cell predicted by a model refitted without its admin-2's clusters."""
    assert t.features.cells is not None
    return out_of_area_predictions(
        partial(fit_model, t.cv.models["model"]),
        model.training_X_,
        model.training_y_.to_numpy(),
        area.clusters["admin_id"].reindex(model.training_X_.index).to_numpy(),
        t.features.cells,
        cells["admin_id"].to_numpy(),
        groups=area.config.estimate.out_of_area_refits,
        engine=engine,
        progress=progress,
    )


def map_and_estimate(
    model: MappingModel,
    area: StudyArea,
    t: Training,
    *,
    engine: Engine,
    progress: ProgressCallback | None = None,
    timer: Timer | None = None,
) -> tuple[gpd.GeoDataFrame, EstimateResult, dict[str, Any]]:
    """The map of a fitted model's training area, its area estimates and the run's
    metrics (before targeting and truth): the steps after fitting that ``run`` and the
    DVC pipeline's estimate stage share."""
    timer = timer or Timer()
    assert t.features.cells is not None and t.features.cell_facts is not None  # for_map
    rng = model.rng()
    with timer.stage("rollout"):
        cells, cell_estimates = model.map_cells(
            area, t.features.cell_facts, t.features.cells, rng=rng, engine=engine
        )
    households = survey_households(area)
    if households is not None:  # small-area estimation needs independent maps
        with timer.stage("out_of_area"):
            cells["pred_out_of_area"] = _out_of_area(model, area, t, cells, engine, progress)
    with timer.stage("estimate"):
        estimates = estimate_areas(
            estimation_cells(cells, "raw_estimate"),
            cell_estimates,
            model.cell_estimator_,
            households,
            estimation_clusters(area).reset_index(),
            estimation_admin(area),
            rng=rng,
        )
    cfg = area.config
    metrics: dict[str, Any] = {
        "cv": {**t.cv.metrics, **map_accuracy(estimates.metrics)},
        "target": cfg.survey.target,
        "n_clusters": len(t.oof),
        "n_cells": len(cells),
        "population": float(cells["population"].sum()),
        "estimate": estimates.metrics,
        "urban_cells": t.features.urban_rule.summary() if t.features.urban_rule else None,
        "poverty_line": {"value": model.line_, "given": cfg.poverty_line},
        "imagery": imagery_coverage(t.features.cells),
        "sources": describe_sources(area),
    }
    return cells, estimates, metrics


def map_accuracy(estimate_metrics: dict[str, Any]) -> dict[str, Any]:
    """The map's accuracy as cross-validation predicts it: ``r2_noise_removed``.

    Out-of-fold r² is scored against cluster means of a few households, whose sampling
    noise no model can predict, so it understates how well the map follows the true
    cell means. With the survey's households the noise variance is known and removed
    from the clusters' variance (:func:`povertymap.estimate.calibrate.calibration_report`:
    the squared correlation with the true cluster means, after the map's linear
    calibration); without them, ``estimate.within_sd`` and the clusters' household counts
    declare it. Without either it equals the observed figure and says so.
    """
    cal = estimate_metrics.get("calibration", {})
    noise = cal.get("noise_share", 0.0)
    source = estimate_metrics.get("noise", {}).get("source", "the survey's households")
    return {
        "r2_noise_removed": cal.get("r2_true", float("nan")),
        "noise_share": noise,
        "r2_noise_removed_basis": f"cluster sampling noise from {source}"
        if noise > 0
        else "no households: the observed cluster means (noise not removed)",
    }


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
    displacement sensitivity with that many draws.
    """
    timer = Timer()
    engine = engine_for(cfg.features)
    with timer.stage("load"):
        area = load_study_area(cfg, progress=progress)
    with timer.stage("features"):
        features = compute_features(area, for_map=False, engine=engine, progress=progress)
    options: dict[str, Any] = {"scheme": scheme, "group": group, "n_folds": n_folds}
    with timer.stage("cross_validation"):
        prediction = None
        if area.admin is not None and (scheme or cfg.cv.scheme) == "spatial":
            facts = features.cell_facts
            if facts is None:
                facts = cell_facts(area, engine=engine, progress=progress)
            prediction = map_locations(area, facts)
        cv = cross_validate(
            area,
            features.clusters,
            prediction=prediction,
            progress=progress,
            engine=engine,
            **options,
        )
    metrics: dict[str, Any] = {
        "cv": cv.metrics,
        "target": cfg.survey.target,
        "n_clusters": len(cv.oof),
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
                urban_cells=(
                    features.cell_facts["urban"]
                    if features.cell_facts is not None and features.urban_rule
                    else None
                ),
                prediction=prediction,
                **options,
            )
    metrics["timings_s"] = timer.seconds
    with write_run(out.parent, out.name, kind="evaluate", cfg=cfg) as folder:
        write_table(cv.oof.reset_index(names="cluster_id"), folder / "oof.csv")
        write_json(metrics, folder / "metrics.json")
    return RunResult(out, metrics)


def predict(
    run_dir: Path,
    cfg: StudyAreaConfig,
    *,
    runs: Path,
    run_id: str | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Map a new study area with the model saved in ``run_dir`` (no survey needed).

    The new area's features come from the saved (fitted) feature blocks through the
    training buffer radii, so they mean what they meant in training; the estimates,
    intervals and headcounts from the saved cell estimator, and the area means and
    their intervals from the same aggregation as ``run`` (no survey: no Fay-Herriot).
    """
    source = open_run(run_dir)
    model = source.model()
    timer = Timer()
    run_id = run_id or new_run_id(f"{cfg.name}-predict", cfg.model_dump_json())
    engine = engine_for(cfg.features)
    with timer.stage("load"):
        area = load_study_area(cfg, progress=progress)
        area.require_admin()
    extra = {"model_run": source.run_id}
    with write_run(runs, run_id, kind="predict", cfg=cfg, extra=extra) as folder:
        with timer.stage("features"):
            facts, X = model.cell_features(area, engine=engine, progress=progress)
        with timer.stage("rollout"):
            rng = model.rng()
            cells, cell_estimates = model.map_cells(area, facts, X, rng=rng, engine=engine)
            estimates = estimate_areas(
                estimation_cells(cells, "raw_estimate"),
                cell_estimates,
                model.cell_estimator_,
                None,
                None,
                estimation_admin(area),
                rng=rng,
            )
        write_map(folder, cells, area, estimates, partitioned=engine.name == "spark")
        metrics = {
            "model_run": source.run_id,
            "n_cells": len(cells),
            "population": float(cells["population"].sum()),
            "timings_s": timer.seconds,
        }
        write_json(metrics, folder / "metrics.json")
    return RunResult(Path(runs) / run_id, metrics)


def target(
    run_dir: Path,
    settings: TargetingSettings,
    *,
    budget: str | None = None,
) -> RunResult:
    """A new targeting plan for a finished run: ``targeting.csv``, the metrics and the
    report are replaced and the manifest updated; nothing else is recomputed.

    The plan needs the run's cells and, for household methods, its proxy means test and
    the registry (found through the run's config); the study area is not reloaded.
    """
    source = open_run(run_dir)
    cells = source.cells()
    if "poverty_rate" not in cells and settings.rank_by != "estimate":
        raise ConfigError(
            "this run has no poverty headcounts to target with",
            where="key poverty_line",
            fix="rank by the estimate alone (--rank-by estimate), or set poverty_line "
            "(a value, or a share of people such as 40%) and run again",
        )
    truth = source.truth
    registry = None
    if settings.method != "geographic" or truth is not None:
        cfg = source.config()
        registry = read_registry(cfg.registry) if cfg.registry is not None else None
    pmt = source.model().pmt_ if registry is not None else None
    plan = make_plan(cells, settings, budget=budget, registry=registry, pmt=pmt)
    evaluation = None
    if truth is not None and registry is not None:
        evaluation = evaluate_plan(plan, cells, registry, pmt, read_truth(truth), settings, budget)
    metrics = source.metrics()
    metrics["targeting"] = plan_summary(plan, settings)
    if evaluation is not None:
        metrics.setdefault("truth", {})["targeting"] = evaluation.headline
    with update_run(source.path) as folder:
        write_plan(folder, plan, evaluation)
        write_json(metrics, folder / "metrics.json")
        render_report(RunDirectory(folder, {}), evaluation, settings)
    return RunResult(source.path, metrics)
