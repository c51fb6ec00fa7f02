"""The DVC pipeline of a study: ``dvc.yaml`` and ``params.yaml`` beside its config.

:func:`write_pipeline` writes six stages, each a call of :mod:`.stages` through
``python -m povertymap.mlops.stages NAME STUDY.yaml --workdir .povertymap``:

``validate -> features -> train -> estimate -> target -> report``

Every stage depends on the study config and the input files it names (track those with
``dvc add``), on the outputs of the stages it reads, and on the ``params.yaml`` sections it
uses, so a changed parameter reruns exactly the stages downstream of it: a ``model`` or
``cv`` change reruns train, estimate, target and report, never validate or features; a
``targeting`` change reruns only target and report. ``params.yaml`` holds the study's
``features``, ``model``, ``cv``, ``estimate`` and ``targeting`` sections with every default
written out (what ``dvc params diff`` compares); the stages read them from there, over the
study's own values. ``metrics.json`` (the run's CV, estimate and, given ``truth``, truth
figures) and ``targeting.json`` are DVC metrics (``dvc metrics show``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from povertymap.errors import ConfigError
from povertymap.mlops import stages as st

__all__ = ["DvcPipeline", "pipeline_documents", "write_pipeline"]

WORKDIR = ".povertymap"
DVC_FILE = "dvc.yaml"
PARAMS_FILE = "params.yaml"

#: Which ``params.yaml`` sections each stage reads.
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "validate": ("features",),
    "features": ("features",),
    "train": ("features", "model", "cv", "estimate"),
    "estimate": ("estimate",),
    "target": ("targeting",),
    "report": ("targeting",),
}


@dataclass(frozen=True)
class DvcPipeline:
    """Where :func:`write_pipeline` wrote the two files, and the stages' names."""

    dvc_yaml: Path
    params_yaml: Path
    stages: list[str]


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form (DVC paths are relative to dvc.yaml)."""
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def pipeline_documents(
    study: Path, *, truth: Path | None = None, workdir: str = WORKDIR
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(dvc.yaml, params.yaml)`` of ``study`` as mappings (nothing written)."""
    from povertymap.io.configfile import read_config

    study = Path(study).resolve()
    base = study.parent
    cfg = read_config(study)
    params = {s: getattr(cfg, s).model_dump(mode="json") for s in st.PARAM_SECTIONS}
    name = study.name
    inputs = sorted({_rel(p, base) for p in cfg.files().values()})
    truth_rel = _rel(truth, base) if truth is not None else None
    w = workdir.rstrip("/")

    def out(rel: str) -> str:
        return f"{w}/{rel}"

    def cmd(stage: str, with_truth: bool = False) -> str:
        parts = [f"python -m povertymap.mlops.stages {stage} {name}"]
        parts.append(f"--workdir {w} --params {PARAMS_FILE}")
        if with_truth and truth_rel is not None:
            parts.append(f"--truth {truth_rel}")
        return " ".join(parts)

    truth_deps = [truth_rel] if truth_rel is not None else []
    reads: dict[str, list[str]] = {
        "validate": [],
        "features": [out(st.PLAN)],
        "train": [out(st.FEATURES)],
        "estimate": [out(st.FEATURES), out(st.MODEL), out(st.TRAINING), *truth_deps],
        "target": [out(st.MODEL), out(st.ESTIMATE), *truth_deps],
        "report": [
            out(st.MODEL),
            out(st.TRAINING),
            out(st.ESTIMATE),
            out(st.METRICS),
            out(st.PLAN_STATE),
            out(st.PLAN_METRICS),
        ],
    }
    writes: dict[str, list[str]] = {
        "validate": [out(st.PLAN)],
        "features": [out(st.FEATURES)],
        "train": [out(st.MODEL), out(st.TRAINING)],
        "estimate": [out(st.CELLS), out(st.ADMIN), out(st.ESTIMATE)],
        "target": [out(st.PLAN_TABLE), out(st.PLAN_STATE)],
        "report": [out(st.RUN)],
    }
    metrics = {"estimate": [out(st.METRICS)], "target": [out(st.PLAN_METRICS)]}
    with_truth = {"validate", "estimate", "target", "report"}
    stages: dict[str, Any] = {}
    for stage in st.STAGES:
        entry: dict[str, Any] = {
            "cmd": cmd(stage, stage in with_truth),
            "deps": [name, *inputs, *reads[stage]],
            "params": list(STAGE_PARAMS[stage]),
            "outs": writes[stage],
        }
        if stage in metrics:
            entry["metrics"] = [{m: {"cache": False}} for m in metrics[stage]]
        stages[stage] = entry
    return {"stages": stages}, params


def write_pipeline(study: Path, *, truth: Path | None = None, force: bool = False) -> DvcPipeline:
    """Write ``dvc.yaml`` and ``params.yaml`` beside ``study``.

    Refuses to replace existing files (edited parameters would be lost) unless ``force``.
    """
    from povertymap.io.mlops_files import is_file
    from povertymap.io.writers import write_yaml

    study = Path(study).resolve()
    dvc_yaml, params_yaml = study.parent / DVC_FILE, study.parent / PARAMS_FILE
    if not force:
        for path in (dvc_yaml, params_yaml):
            if is_file(path):
                raise ConfigError(
                    f"{path} exists already",
                    fix="edit it, or pass --force to write the pipeline again",
                )
    pipeline, params = pipeline_documents(study, truth=truth)
    write_yaml(params, params_yaml)
    write_yaml(pipeline, dvc_yaml)
    return DvcPipeline(dvc_yaml, params_yaml, list(pipeline["stages"]))
