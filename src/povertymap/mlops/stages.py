"""The stages of the DVC pipeline (:mod:`.dvcpipe`): a ``povertymap run`` cut at its seams.

Each stage is a function ``stage(study, workdir, *, params, truth)`` that reads the study
config with the sections of ``params.yaml`` put over it (:func:`stage_config`), reads what
the stages before it wrote under ``workdir`` and writes its own outputs there:

========  ===========================================  =========================================
stage     reads                                         writes
========  ===========================================  =========================================
validate  the inputs                                    ``plan.json`` (the run plan's steps)
features  the inputs                                    ``features.joblib`` (the FeatureSet, with
                                                        its fitted blocks)
train     the inputs, ``features.joblib``               ``model/`` (the MappingModel),
                                                        ``training.joblib`` (CV and OOF)
estimate  the inputs, features, model, training         ``cells.parquet``, ``admin.csv``,
                                                        ``estimate.joblib``, ``metrics.json``
target    the inputs, model, ``estimate.joblib``        ``targeting.csv``, ``targeting.joblib``,
                                                        ``targeting.json``
report    everything above                              ``run/`` (a run directory, as ``run``)
========  ===========================================  =========================================

The stages call the same library functions as :func:`povertymap.pipeline.run`, in the
same order and with the same generator, so the pipeline's figures are the run's figures.
Run one with ``python -m povertymap.mlops.stages NAME STUDY.yaml --workdir .povertymap``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from povertymap.config import StudyAreaConfig
from povertymap.config.study import config_from_dict

__all__ = ["PARAM_SECTIONS", "STAGES", "main", "run_stage", "stage_config"]

#: The config sections ``params.yaml`` holds (and that override the study's).
PARAM_SECTIONS = ("features", "model", "cv", "estimate", "targeting")

PLAN = "plan.json"
FEATURES = "features.joblib"
MODEL = "model"
TRAINING = "training.joblib"
CELLS = "cells.parquet"
ADMIN = "admin.csv"
ESTIMATE = "estimate.joblib"
METRICS = "metrics.json"
PLAN_TABLE = "targeting.csv"
PLAN_STATE = "targeting.joblib"
PLAN_METRICS = "targeting.json"
RUN = "run"


def stage_config(study: Path, params: Path | None = None) -> StudyAreaConfig:
    """The study config with ``params``' sections (:data:`PARAM_SECTIONS`) over it."""
    from povertymap.io.mlops_files import is_file, read_yaml

    study = Path(study).resolve()
    data = read_yaml(study)
    if params is not None and is_file(params):
        values = read_yaml(params)
        data.update({k: values[k] for k in PARAM_SECTIONS if k in values})
    return config_from_dict(data, base_dir=study.parent, source=study)


def _area(cfg: StudyAreaConfig) -> Any:
    from povertymap.studyarea import load_study_area

    return load_study_area(cfg)


def _engine(cfg: StudyAreaConfig) -> Any:
    from povertymap.engine.base import engine_for

    return engine_for(cfg.features)


def validate(cfg: StudyAreaConfig, workdir: Path, truth: Path | None) -> None:
    """Load the study area and check its run plan: ``plan.json``."""
    from povertymap.io.writers import write_json
    from povertymap.runplan import plan_run

    plan = plan_run(_area(cfg), truth=truth is not None)
    plan.check()
    plan.warn()
    steps = [dataclasses.asdict(s) for s in plan.steps]
    write_json({"study": cfg.name, "steps": steps}, workdir / PLAN)


def features(cfg: StudyAreaConfig, workdir: Path, truth: Path | None) -> None:
    """Fit the feature blocks and build the cluster and cell tables: ``features.joblib``."""
    from povertymap.features.build import compute_features
    from povertymap.io.artifacts import write_pickle

    fs = compute_features(
        _area(cfg),
        for_map=True,
        engine=_engine(cfg),
        cache_dir=workdir / ".cache",
        log_dir=workdir / "logs",
    )
    write_pickle(fs, workdir / FEATURES)


def train(cfg: StudyAreaConfig, workdir: Path, truth: Path | None) -> None:
    """The MappingModel fitted from the saved features: ``model/``, ``training.joblib``."""
    from povertymap.io.artifacts import read_pickle, write_pickle
    from povertymap.io.survey import read_registry
    from povertymap.mapping import MappingModel

    registry = read_registry(cfg.registry) if cfg.registry is not None else None
    model = MappingModel.from_config(cfg).fit(
        _area(cfg),
        engine=_engine(cfg),
        registry=registry,
        features=read_pickle(workdir / FEATURES),
    )
    model.save(workdir / MODEL)
    t = model.training_
    write_pickle({"cv": t.cv, "oof": t.oof}, workdir / TRAINING)


def estimate(cfg: StudyAreaConfig, workdir: Path, truth: Path | None) -> None:
    """Map, out-of-area predictions and area estimates: cells, admin, ``metrics.json``."""
    import pandas as pd

    from povertymap.io.artifacts import read_pickle, write_pickle
    from povertymap.io.writers import write_json, write_table, write_vector
    from povertymap.mapping import (
        MappingModel,
        Training,
    )
    from povertymap.pipeline import map_and_estimate
    from povertymap.truth import read_truth, score_map

    area = _area(cfg)
    fs = read_pickle(workdir / FEATURES)
    saved = read_pickle(workdir / TRAINING)
    model = MappingModel.load(workdir / MODEL)
    t = Training(fs, saved["cv"], saved["oof"])
    cells, estimates, metrics = map_and_estimate(model, area, t, engine=_engine(cfg))
    if truth is not None:
        references = tuple(n for n in model.estimators_ if n != "model")
        metrics["truth"] = score_map(cells, estimates, read_truth(truth), references)
    write_vector(cells, workdir / CELLS)
    write_table(pd.DataFrame(estimates.admin).reset_index(), workdir / ADMIN)
    write_pickle({"cells": cells, "estimates": estimates}, workdir / ESTIMATE)
    write_json(metrics, workdir / METRICS)


def target(cfg: StudyAreaConfig, workdir: Path, truth: Path | None) -> None:
    """The targeting plan of the map: ``targeting.csv`` and its summary."""
    from povertymap.io.artifacts import read_pickle, write_pickle
    from povertymap.io.survey import read_registry
    from povertymap.io.writers import write_json
    from povertymap.mapping import MappingModel
    from povertymap.rundir import write_plan
    from povertymap.target.stage import evaluate_plan, make_plan, plan_summary
    from povertymap.truth import read_truth

    cells = read_pickle(workdir / ESTIMATE)["cells"]
    model = MappingModel.load(workdir / MODEL)
    registry = read_registry(cfg.registry) if cfg.registry is not None else None
    plan = evaluation = None
    summary: dict[str, Any] = {}
    if "poverty_rate" in cells or cfg.targeting.rank_by == "estimate":
        plan = make_plan(cells, cfg.targeting, registry=registry, pmt=model.pmt_)
        summary["targeting"] = plan_summary(plan, cfg.targeting)
        if truth is not None and registry is not None:
            evaluation = evaluate_plan(
                plan, cells, registry, model.pmt_, read_truth(truth), cfg.targeting
            )
            summary["truth"] = {"targeting": evaluation.headline}
    if plan is not None:
        write_plan(workdir, plan)
    else:  # no headcounts: an empty plan keeps the stage's outputs
        import pandas as pd

        write_plan(workdir, pd.DataFrame(index=pd.Index([], name="cell_id")))
    write_pickle({"plan": plan, "evaluation": evaluation}, workdir / PLAN_STATE)
    write_json(summary, workdir / PLAN_METRICS)


def report(cfg: StudyAreaConfig, workdir: Path, truth: Path | None) -> None:
    """The run directory ``run/`` with the map files, plan, model, metrics and report."""
    from povertymap.io.artifacts import copy_tree, read_json, read_pickle
    from povertymap.io.writers import write_json
    from povertymap.mlops.card import write_model_card
    from povertymap.report import render_report
    from povertymap.rundir import RunDirectory, relative_to_run, write_map, write_plan, write_run

    area = _area(cfg)
    saved = read_pickle(workdir / ESTIMATE)
    planned = read_pickle(workdir / PLAN_STATE)
    oof = read_pickle(workdir / TRAINING)["oof"]
    metrics = read_json(workdir / METRICS)
    targeting = read_json(workdir / PLAN_METRICS)
    if "targeting" in targeting:
        metrics["targeting"] = targeting["targeting"]
    if "truth" in targeting:
        metrics.setdefault("truth", {}).update(targeting["truth"])
    final = workdir / RUN
    extra = {"truth": relative_to_run(truth, final) if truth else None, "pipeline": "dvc"}
    with write_run(workdir, RUN, kind="run", cfg=cfg, extra=extra) as folder:
        write_map(folder, saved["cells"], area, saved["estimates"], oof=oof)
        if planned["plan"] is not None:
            write_plan(folder, planned["plan"], planned["evaluation"])
        copy_tree(workdir / MODEL, folder / "model")
        write_json(metrics, folder / "metrics.json")
        render_report(RunDirectory(folder, {}), planned["evaluation"])
        write_model_card(RunDirectory(folder, {"run_id": RUN, "kind": "run"}))


Stage = Callable[[StudyAreaConfig, Path, "Path | None"], None]

#: The stages in pipeline order.
STAGES: dict[str, Stage] = {
    "validate": validate,
    "features": features,
    "train": train,
    "estimate": estimate,
    "target": target,
    "report": report,
}


def run_stage(
    name: str,
    study: Path,
    *,
    workdir: Path,
    params: Path | None = None,
    truth: Path | None = None,
) -> Path:
    """Run the stage ``name`` of ``study``'s pipeline into ``workdir``; returns ``workdir``."""
    from povertymap.errors import ConfigError
    from povertymap.io.mlops_files import ensure_folder

    if name not in STAGES:
        raise ConfigError(f"no pipeline stage {name!r}", fix=f"use one of {', '.join(STAGES)}")
    cfg = stage_config(study, params)
    workdir = ensure_folder(Path(workdir))
    STAGES[name](cfg, workdir, Path(truth).resolve() if truth is not None else None)
    return workdir


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m povertymap.mlops.stages NAME STUDY.yaml --workdir DIR [--params P]``."""
    from povertymap.errors import PovertyMapError

    parser = argparse.ArgumentParser(prog="python -m povertymap.mlops.stages")
    parser.add_argument("name", choices=list(STAGES))
    parser.add_argument("study", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path(".povertymap"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--truth", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        run_stage(args.name, args.study, workdir=args.workdir, params=args.params, truth=args.truth)
    except PovertyMapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
