"""The model registry: versions of a named map-maker, an alias ``champion``, a way back.

- :func:`register`: the pyfunc model of a run directory's MLflow run (logged first if the
  run was not tracked) becomes a new version of ``name``. The version carries the model
  card (``model_card`` tag: the Markdown; ``model_card.json``: the JSON) and the run's
  input and config digests as tags, so a published number traces to its inputs.
- :func:`promote`: move an alias (``champion``) to a version; the previous holder is
  pushed onto the model's alias history (a registered-model tag).
- :func:`rollback`: give the alias back to the previous holder (and pop the history).
- :func:`list_models`: every registered model, version, alias and headline figure.
- :func:`model_folder`: the ``model/`` folder of ``NAME@ALIAS`` or ``NAME/VERSION``,
  downloaded from the store, for :meth:`MappingModel.load` (the champion in ``retrain``).
- :func:`served_run`: the run directory of ``NAME@ALIAS``, which the service serves (the
  map, its tiles and its model come from the run that made the version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from povertymap.errors import InputError
from povertymap.mlops.tracking import RUN_TAG, find_mlflow_run, log_run, run_tags, use_store
from povertymap.rundir import MANIFEST, open_run

__all__ = [
    "ModelVersionInfo",
    "alias_history",
    "list_models",
    "model_folder",
    "promote",
    "register",
    "rollback",
    "served_run",
]

HISTORY_TAG = "povertymap.alias_history"
#: Version tag: the absolute path of the run directory the version was registered from.
RUN_DIR_TAG = "povertymap.run_dir"


class RegistryError(InputError):
    """A registry request names a model, version or alias the store does not hold."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """One version of a registered model."""

    name: str
    version: str
    run_id: str
    mlflow_run_id: str
    aliases: tuple[str, ...]
    tags: dict[str, str]

    @property
    def cv_r2(self) -> float | None:
        value = self.tags.get("povertymap.cv_r2")
        return float(value) if value not in (None, "") else None


def _info(version: Any) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=str(version.name),
        version=str(version.version),
        run_id=str(version.tags.get(RUN_TAG, "")),
        mlflow_run_id=str(version.run_id or ""),
        aliases=tuple(getattr(version, "aliases", ()) or ()),
        tags=dict(version.tags),
    )


def register(run_dir: Path, name: str, *, uri: str) -> ModelVersionInfo:
    """Register the model of ``run_dir`` as a new version of ``name`` (see module doc)."""
    from povertymap.mlops.card import card_markdown, model_card

    run = open_run(run_dir)
    if not run.has("model/model.json"):
        raise RegistryError(
            f"{run.path} holds no model (a {run.kind} run directory)",
            fix="register a run directory made by `povertymap run`",
        )
    mlflow_run = find_mlflow_run(run.run_id, uri) or log_run(run, uri=uri)
    card = model_card(run)
    cv = card["evaluation"]["overall"]
    tags = {
        **run_tags(run),
        RUN_DIR_TAG: str(run.path.resolve()),
        "model_card": card_markdown(card),
        "model_card.json": json.dumps(card, default=str),
        "povertymap.cv_r2": "" if cv["r2"] is None else f"{cv['r2']:.6g}",
        "povertymap.cv_scheme": str(card["evaluation"]["cv_scheme"]),
    }
    with use_store(uri) as mlflow:
        client = mlflow.MlflowClient()
        try:
            client.get_registered_model(name)
        except mlflow.exceptions.MlflowException:
            client.create_registered_model(name, description="povertymap MappingModel")
        version = client.create_model_version(
            name,
            source=f"runs:/{mlflow_run}/model",
            run_id=mlflow_run,
            tags=tags,
            description=f"run {run.run_id}: {card['model_details']['name']}, "
            f"{card['evaluation']['cv_scheme']} CV r2 {tags['povertymap.cv_r2']}",
        )
        return _info(client.get_model_version(name, version.version))


def _client(mlflow: Any, name: str) -> Any:
    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        raise RegistryError(
            f"no registered model {name!r}",
            fix="register one with `povertymap models register RUN_DIR --name NAME`",
        ) from None
    return client


def alias_history(name: str, alias: str = "champion", *, uri: str) -> list[str]:
    """Versions that held ``alias`` before its current holder, oldest first."""
    with use_store(uri) as mlflow:
        model = _client(mlflow, name).get_registered_model(name)
        data = json.loads(model.tags.get(HISTORY_TAG, "{}"))
        return [str(v) for v in data.get(alias, [])]


def _holder(client: Any, name: str, alias: str) -> str | None:
    model = client.get_registered_model(name)
    aliases = getattr(model, "aliases", {}) or {}
    return str(aliases[alias]) if alias in aliases else None


def promote(
    name: str, version: str | int, *, alias: str = "champion", uri: str
) -> ModelVersionInfo:
    """Give ``alias`` to ``version``; the previous holder joins the alias history."""
    version = str(version)
    with use_store(uri) as mlflow:
        client = _client(mlflow, name)
        try:
            client.get_model_version(name, version)
        except mlflow.exceptions.MlflowException:
            raise RegistryError(
                f"model {name!r} has no version {version}", fix="see `povertymap models list`"
            ) from None
        previous = _holder(client, name, alias)
        if previous is not None and previous != version:
            model = client.get_registered_model(name)
            data = json.loads(model.tags.get(HISTORY_TAG, "{}"))
            data.setdefault(alias, []).append(previous)
            client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(data))
        client.set_registered_model_alias(name, alias, version)
        return _info(client.get_model_version(name, version))


def rollback(name: str, *, alias: str = "champion", uri: str) -> ModelVersionInfo:
    """Give ``alias`` back to the version that held it before (refused without one)."""
    with use_store(uri) as mlflow:
        client = _client(mlflow, name)
        model = client.get_registered_model(name)
        data = json.loads(model.tags.get(HISTORY_TAG, "{}"))
        history = data.get(alias, [])
        if not history:
            raise RegistryError(
                f"model {name!r} has no earlier {alias} to roll back to",
                fix=f"promote a version with `povertymap models promote {name} VERSION`",
            )
        previous = str(history.pop())
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(data))
        client.set_registered_model_alias(name, alias, previous)
        return _info(client.get_model_version(name, previous))


def list_models(*, uri: str) -> list[ModelVersionInfo]:
    """Every version of every registered model, newest version first within a model."""
    with use_store(uri) as mlflow:
        client = mlflow.MlflowClient()
        out: list[ModelVersionInfo] = []
        for model in client.search_registered_models():
            aliases = getattr(model, "aliases", {}) or {}
            versions = client.search_model_versions(f"name = '{model.name}'")
            for v in sorted(versions, key=lambda v: -int(v.version)):
                info = _info(v)
                held = tuple(a for a, ver in aliases.items() if str(ver) == info.version)
                out.append(
                    ModelVersionInfo(
                        info.name, info.version, info.run_id, info.mlflow_run_id, held, info.tags
                    )
                )
        return out


def get_version(ref: str, *, uri: str) -> ModelVersionInfo:
    """``NAME@ALIAS`` or ``NAME/VERSION`` as a version."""
    with use_store(uri) as mlflow:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            client = _client(mlflow, name)
            try:
                return _info(client.get_model_version_by_alias(name, alias))
            except mlflow.exceptions.MlflowException:
                raise RegistryError(
                    f"model {name!r} has no alias {alias!r}",
                    fix=f"promote a version: `povertymap models promote {name} VERSION`",
                ) from None
        name, _, version = ref.partition("/")
        client = _client(mlflow, name)
        return _info(client.get_model_version(name, version))


def model_folder(ref: str, *, uri: str, dst: Path) -> Path:
    """Download the MappingModel folder of ``NAME@ALIAS`` / ``NAME/VERSION`` under ``dst``."""
    version = get_version(ref, uri=uri)
    with use_store(uri) as mlflow:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{version.name}/{version.version}", dst_path=str(dst)
        )
    from povertymap.io.mlops_files import is_file

    root = Path(local)
    if not is_file(root / "MLmodel"):  # some stores download into <dst>/<artifact path>
        root = root / "model"
    return root / "artifacts" / "model"


def served_run(ref: str, *, uri: str, runs: Path | None = None) -> tuple[ModelVersionInfo, Path]:
    """The version ``ref`` (``NAME@ALIAS`` or ``NAME/VERSION``) and its run directory.

    The run directory is looked up by the version's run id under ``runs`` first (the
    runs folder the service is given: a shared volume in a deployment, where the path
    the version was registered from may not exist), then at the registered path.
    Raises :class:`RegistryError` when neither holds that run.
    """
    version = get_version(ref, uri=uri)
    candidates = [Path(runs) / version.run_id] if runs is not None and version.run_id else []
    if version.tags.get(RUN_DIR_TAG):
        candidates.append(Path(version.tags[RUN_DIR_TAG]))
    from povertymap.io.mlops_files import is_file

    for path in candidates:
        if is_file(path / MANIFEST) and open_run(path).run_id == version.run_id:
            return version, path
    raise RegistryError(
        f"version {version.version} of {version.name!r} comes from run {version.run_id!r}, "
        "which is in neither the runs folder nor the path it was registered from",
        fix="serve with --runs set to the folder that holds that run directory",
    )
