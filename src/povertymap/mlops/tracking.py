"""A run directory logged as an MLflow run.

:func:`log_run` records, from the finished run directory alone: the resolved config as
params (flattened, ``model.name``, ``cv.folds``, ...), the cross-validation, coverage,
targeting and (on synthetic countries) truth figures as metrics (flattened numeric leaves
of ``metrics.json``), the input and config digests and the code version as tags, the
report, ``metrics.json``, the manifest and the model card as artefacts, and, for a
``run``, the :class:`~povertymap.mapping.MappingModel` as a pyfunc model with a signature
(:mod:`.pyfunc`): ``mlflow.pyfunc.load_model(uri).predict(frame)`` equals
``predict_features(frame)``.

The store is ``sqlite:///<runs folder>/mlflow.db`` unless ``POVERTYMAP_TRACKING_URI`` or
``MLFLOW_TRACKING_URI`` says otherwise (no file store: it is deprecated); artefacts of the
default store go to ``<runs folder>/.mlflow/``. MLflow is imported only here, lazily, with
its telemetry off.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from povertymap import __version__
from povertymap.rundir import RunDirectory, open_run

__all__ = [
    "RUN_TAG",
    "find_mlflow_run",
    "flatten_metrics",
    "flatten_params",
    "import_mlflow",
    "log_run",
    "tracking_uri",
    "use_store",
]

#: Tag holding the run directory's id on its MLflow run.
RUN_TAG = "povertymap.run_id"
#: Metrics sections of ``metrics.json`` that are logged (timings too, for comparison).
METRIC_SECTIONS = ("cv", "estimate", "truth", "targeting", "imagery", "displacement", "timings_s")
#: Keys whose subtrees are lists of candidates or diagnostics, not figures.
SKIP_KEYS = {"candidates", "sources", "beta"}
DB_NAME = "mlflow.db"


def import_mlflow() -> ModuleType:
    """MLflow, imported with its telemetry off (``MLFLOW_DISABLE_TELEMETRY``)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from povertymap._options import require

    mlflow = require("mlflow")
    import logging

    # schema migrations of a new store print at INFO; pyfunc warns of pickling
    levels = {"mlflow": logging.WARNING, "alembic": logging.WARNING, "mlflow.pyfunc": logging.ERROR}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    return mlflow


def tracking_uri(runs: Path | None = None) -> str:
    """``POVERTYMAP_TRACKING_URI``, else ``MLFLOW_TRACKING_URI``, else the sqlite store in
    the runs folder (``runs`` default: ``runs``)."""
    for var in ("POVERTYMAP_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        if os.environ.get(var):
            return os.environ[var]
    folder = Path(runs if runs is not None else "runs").resolve()
    return f"sqlite:///{folder / DB_NAME}"


def _default_store(uri: str) -> Path | None:
    """The runs folder of a default store URI (None for any other store)."""
    if uri.startswith("sqlite:///") and uri.endswith("/" + DB_NAME):
        return Path(uri.removeprefix("sqlite:///")).parent
    return None


@contextmanager
def use_store(uri: str) -> Iterator[ModuleType]:
    """MLflow pointed at ``uri`` (tracking and registry) for the block; restored after."""
    mlflow = import_mlflow()
    folder = _default_store(uri)
    if folder is not None:
        from povertymap.io.mlops_files import ensure_folder

        ensure_folder(folder)
    # set_tracking_uri also sets MLFLOW_TRACKING_URI: restore the environment after, so
    # the next default store is resolved from the user's settings, not from this call
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield mlflow
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if saved["MLFLOW_TRACKING_URI"]:
            mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
            os.environ["MLFLOW_TRACKING_URI"] = saved["MLFLOW_TRACKING_URI"]


def _key(name: str) -> str:
    """An MLflow-safe metric or param name (letters, digits, ``_-. /``)."""
    return re.sub(r"[^\w\-. /]", "_", name)[:250]


def flatten_metrics(node: Any, prefix: str = "") -> dict[str, float]:
    """Every finite numeric leaf of ``node`` as ``a.b.c -> float`` (bools as 0/1)."""
    out: dict[str, float] = {}
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k in SKIP_KEYS:
                continue
            out.update(flatten_metrics(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(node, bool) or (isinstance(node, int | float) and math.isfinite(float(node))):
        out[_key(prefix)] = float(node)
    return out


def flatten_params(node: Any, prefix: str = "") -> dict[str, str]:
    """The config as ``section.key -> str`` (lists as their YAML-like text)."""
    out: dict[str, str] = {}
    if isinstance(node, Mapping):
        for k, v in node.items():
            out.update(flatten_params(v, f"{prefix}.{k}" if prefix else str(k)))
    elif prefix:
        out[_key(prefix)] = str(node)[:6000]
    return out


def _code_version() -> dict[str, str]:
    """povertymap's version and, from a source checkout, its git commit."""
    tags = {"povertymap.version": __version__}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if re.fullmatch(r"[0-9a-f]{40}", commit):
        tags["povertymap.git_commit"] = commit
    return tags


def run_tags(run: RunDirectory) -> dict[str, str]:
    """Tags of a run: its id and kind, the config and input digests, the code version."""
    m = run.manifest
    tags = {
        RUN_TAG: run.run_id,
        "povertymap.kind": run.kind,
        "povertymap.config_sha256": str(m.get("config_sha256", "")),
        "povertymap.created": str(m.get("created", "")),
        **_code_version(),
    }
    for key, meta in m.get("inputs", {}).items():
        tags[f"povertymap.input.{_key(key)}.sha256"] = str(meta.get("sha256", ""))
    if m.get("model_run"):
        tags["povertymap.model_run"] = str(m["model_run"])
    return tags


def _experiment(mlflow: ModuleType, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (artefacts beside the default store) if new."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    folder = _default_store(uri)
    location = (folder / ".mlflow" / "artifacts" / name).as_uri() if folder else None
    return str(mlflow.create_experiment(name, artifact_location=location))


def find_mlflow_run(run_id: str, uri: str) -> str | None:
    """The MLflow run id of the run directory ``run_id`` in the store (latest first)."""
    with use_store(uri) as mlflow:
        client = mlflow.MlflowClient()
        ids = [e.experiment_id for e in client.search_experiments()]
        if not ids:
            return None
        found = client.search_runs(
            ids, filter_string=f"tags.`{RUN_TAG}` = '{run_id}'", order_by=["start_time DESC"]
        )
        return found[0].info.run_id if found else None


def log_run(
    run_dir: Path | RunDirectory,
    *,
    uri: str | None = None,
    experiment: str | None = None,
    log_model: bool = True,
) -> str:
    """Log the run directory as an MLflow run (see the module docstring); its MLflow run id.

    ``uri`` default: :func:`tracking_uri` of the run's parent folder. ``experiment``
    default: the study's name.
    """
    from povertymap.mlops.card import card_markdown, model_card

    run = run_dir if isinstance(run_dir, RunDirectory) else open_run(run_dir)
    uri = uri or tracking_uri(run.path.parent)
    config = run.config_data() if run.has("config.yaml") else {}
    metrics = run.metrics() if run.has("metrics.json") else {}
    name = experiment or str(config.get("name", "povertymap"))
    with use_store(uri) as mlflow:
        exp = _experiment(mlflow, name, uri)
        with mlflow.start_run(experiment_id=exp, run_name=run.run_id) as active:
            params = flatten_params(config)
            items = list(params.items())
            for i in range(0, len(items), 100):
                mlflow.log_params(dict(items[i : i + 100]))
            figures: dict[str, float] = {}
            for section in METRIC_SECTIONS:
                if section in metrics:
                    figures.update(flatten_metrics(metrics[section], section))
            for key in ("n_clusters", "n_cells", "population"):
                figures.update(flatten_metrics(metrics.get(key), key))
            pairs = list(figures.items())
            for i in range(0, len(pairs), 500):
                mlflow.log_metrics(dict(pairs[i : i + 500]))
            mlflow.set_tags(run_tags(run))
            for rel in ("report.html", "metrics.json", "manifest.json", "config.yaml"):
                if run.has(rel):
                    mlflow.log_artifact(str(run.path / rel))
            card = model_card(run)
            mlflow.log_dict(card, "model_card.json")
            mlflow.log_text(card_markdown(card), "model_card.md")
            if log_model and run.has("model/model.json"):
                _log_model(mlflow, run)
            return str(active.info.run_id)


def _log_model(mlflow: ModuleType, run: RunDirectory) -> None:
    """The run's MappingModel as the pyfunc model ``model`` of the active run."""
    from povertymap.mlops.pyfunc import MappingPyfunc, signature

    model = run.model()
    # the signature is given, so MLflow's advice about an input example and about
    # pickled python models is noise on a user's terminal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.log_model(
            name="model",
            python_model=MappingPyfunc(),
            artifacts={"model": str(run.path / "model")},
            signature=signature(model),
            pip_requirements=[f"povertymap=={__version__}"],
            tags={RUN_TAG: run.run_id},
        )
