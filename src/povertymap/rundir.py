"""Run directories: ``runs/<run_id>/`` written atomically, with a manifest of digests, and
read back through one typed contract (:func:`open_run`).

A run is written into a hidden temporary folder next to its final place and renamed into
place only when every stage has succeeded, so a failed run leaves nothing behind and a
run directory that exists is complete. ``manifest.json`` holds the run's ``kind``
(``run``, ``evaluate`` or ``predict``), the layout's ``schema_version``, every file with
its sha256 and size, and the digests of every input file and of the resolved config, so
a map can be traced to the exact data that made it.

Every path a run stores (inputs in the manifest and ``config.yaml``, the truth folder) is
relative to the run directory, and files are listed relative to it: a run copied or moved
elsewhere still verifies and still predicts, and one moved together with its inputs still
finds them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import geopandas as gpd
import pandas as pd
import yaml

from povertymap import __version__
from povertymap.errors import RunDirError
from povertymap.io.artifacts import (
    copy_tree,
    digest_tree,
    file_sha256,
    read_json,
    read_table,
    read_text,
)
from povertymap.io.geoparquet import write_partitioned_geoparquet
from povertymap.io.vector import read_vector
from povertymap.io.writers import (
    RasterWriter,
    atomic_directory,
    write_json,
    write_table,
    write_text,
    write_vector,
)
from povertymap.predict.rollout import cells_to_raster

if TYPE_CHECKING:
    from povertymap.config import StudyAreaConfig, TargetingSettings
    from povertymap.estimate.stage import EstimateResult
    from povertymap.mapping import MappingModel
    from povertymap.studyarea import StudyArea
    from povertymap.target.stage import TargetingEvaluation

__all__ = [
    "MANIFEST",
    "RUN_SCHEMA_VERSION",
    "RunDirectory",
    "RunKind",
    "new_run_id",
    "open_run",
    "relative_to_run",
    "resolved_config_text",
    "update_run",
    "write_map",
    "write_plan",
    "write_run",
]

MANIFEST = "manifest.json"
#: Version of the run-directory layout; readers refuse a newer one.
RUN_SCHEMA_VERSION = 2
RunKind = Literal["run", "evaluate", "predict"]
#: Files of a targeting evaluation (every method against the truth), by table.
EVALUATION_FILES = {
    "table": "targeting/methods.parquet",
    "curves": "targeting/curves.parquet",
    "gaps": "targeting/parity_gaps.parquet",
}


def new_run_id(name: str, config_text: str, now: datetime | None = None) -> str:
    """``<name>-<UTC timestamp>-<6 hex of the config digest>``: sortable and traceable."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256(config_text.encode()).hexdigest()[:6]
    return f"{name}-{now:%Y%m%dT%H%M%SZ}-{digest}"


def relative_to_run(path: Path, run_dir: Path) -> str:
    """``path`` as a run stores it: relative to the run directory (POSIX, through ``..``
    where needed), so the run can move together with its inputs."""
    return Path(os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())).as_posix()


def resolved_config_text(cfg: StudyAreaConfig, relative_to: Path) -> str:
    """The config with every default filled in, its paths relative to ``relative_to``
    (the run directory), as YAML: ``read_config`` of the run's copy finds the inputs."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (relative_to_run(Path(v), relative_to) if k == "path" and v else walk(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    data = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("base_dir", None)
    return yaml.safe_dump(walk(data), sort_keys=False)


@contextmanager
def write_run(
    root: Path,
    run_id: str,
    *,
    kind: RunKind,
    cfg: StudyAreaConfig,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[Path]:
    """Yield a temporary folder to write a run into; publish it as ``root/run_id`` on success.

    On success the manifest is written and the folder renamed atomically. On any exception
    the temporary folder is removed and the exception propagates. ``extra`` is stored in the
    manifest as is (e.g. the run the model came from); paths in it must be relative.
    """
    final = Path(root) / run_id
    if final.exists():
        raise RunDirError(f"run directory {final} already exists; choose another run id")
    config_text = resolved_config_text(cfg, final)
    with atomic_directory(final) as tmp:
        write_text(config_text, tmp / "config.yaml")
        yield tmp
        manifest = {
            "run_id": run_id,
            "kind": kind,
            "schema_version": RUN_SCHEMA_VERSION,
            "version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
            "inputs": {
                key: {
                    "path": relative_to_run(p, final),
                    "sha256": file_sha256(p),
                    "bytes": p.stat().st_size,
                }
                for key, p in sorted(cfg.files().items())
            },
            "files": digest_tree(tmp, skip=MANIFEST),
            **(dict(extra) if extra else {}),
        }
        write_json(manifest, tmp / MANIFEST)


@contextmanager
def update_run(path: Path) -> Iterator[Path]:
    """Yield a copy of the run directory to change; swap it in with a fresh manifest.

    The run directory is replaced atomically on success and untouched on failure, so a
    run stays complete and its manifest true (used by ``povertymap target``).
    """
    run = open_run(path)
    with atomic_directory(run.path, overwrite=True) as tmp:
        copy_tree(run.path, tmp)
        yield tmp
        manifest = {
            **run.manifest,
            "files": digest_tree(tmp, skip=MANIFEST),
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(manifest, tmp / MANIFEST)


#: Bands of ``map.tif``, in order.
MAP_BANDS = ("estimate", "lower", "upper")


def write_map(
    folder: Path,
    cells: gpd.GeoDataFrame,
    area: StudyArea,
    estimates: EstimateResult,
    *,
    oof: pd.DataFrame | None = None,
    partitioned: bool = False,
) -> None:
    """The map files of a run: ``cells.parquet``, ``map.tif``, ``admin.gpkg``, ``public/``
    (what the disclosure gate lets out) and, given, ``oof.csv`` (without coordinates).

    ``partitioned`` (the Spark engine's default) adds ``cells/``: the same cells as a
    GeoParquet dataset partitioned by :func:`cells_partition_key`, for readers that load
    one region at a time."""
    write_vector(cells, folder / "cells.parquet")
    if partitioned:
        keyed, key = cells_partition_key(cells)
        write_partitioned_geoparquet(keyed, folder / "cells", by=key)
    bands = [b for b in MAP_BANDS if b in cells]
    data, layout = cells_to_raster(cells, bands, area.cell_size)
    with RasterWriter(
        folder / "map.tif",
        width=layout.width,
        height=layout.height,
        count=len(bands),
        dtype="float32",
        crs=area.crs,
        transform=layout.transform,
        nodata=float("nan"),
        band_names=bands,
        tags=map_tags(estimates),
    ) as out:
        out.write(data, (0, 0))
    boundaries = area.require_admin()
    units = boundaries[[c for c in ("admin_name", "geometry") if c in boundaries]]
    admin = units.join(estimates.admin.drop(columns=["parent_id"], errors="ignore"), how="right")
    write_vector(admin.reset_index(), folder / "admin.gpkg", layer="admin")
    public = estimates.public()
    write_vector(
        area.grid[["geometry"]].join(public["cells"], how="inner"), folder / "public/cells.parquet"
    )
    write_vector(
        units.join(public["admin"], how="inner").reset_index(),
        folder / "public" / "admin.gpkg",
        layer="admin",
    )
    if oof is not None:
        private = [c for c in ("easting", "northing") if c in oof]
        write_table(oof.drop(columns=private).reset_index(names="cluster_id"), folder / "oof.csv")


#: Edge, in cells, of the raster windows that partition a grid without admin-1 areas.
PARTITION_WINDOW_CELLS = 256


def cells_partition_key(cells: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, str]:
    """``(cells, column)`` to partition a map's cells by: the admin-1 id (``parent_id``)
    where the boundaries give one, else a raster window of
    :data:`PARTITION_WINDOW_CELLS` cells a side (column ``window``, ``"<wx>_<wy>"``)."""
    if "parent_id" in cells and cells["parent_id"].notna().any():
        return cells, "parent_id"
    wx = cells["ix"].to_numpy() // PARTITION_WINDOW_CELLS
    wy = cells["iy"].to_numpy() // PARTITION_WINDOW_CELLS
    return cells.assign(window=[f"{x}_{y}" for x, y in zip(wx, wy, strict=True)]), "window"


def map_tags(estimates: EstimateResult) -> dict[str, str]:
    """``map.tif``'s metadata: what the interval bands are for."""
    estimand = estimates.estimator.estimand
    return {
        "interval_level": f"{estimates.settings.level:g}",
        "interval_estimand": estimand,
        "interval_meaning": (
            f"lower and upper hold the {estimand} mean of the cell with probability "
            f"{estimates.settings.level:g}"
            + (" (the mean over its actual households)" if estimand == "realized" else "")
        ),
    }


def write_plan(
    folder: Path, plan: pd.DataFrame, evaluation: TargetingEvaluation | None = None
) -> None:
    """``targeting.csv`` and, with an evaluation, its tables under ``targeting/``."""
    write_table(plan.reset_index(), folder / "targeting.csv")
    if evaluation is not None:
        for key, rel in EVALUATION_FILES.items():
            table: pd.DataFrame = getattr(evaluation, key)
            mixed = table.select_dtypes("object").columns  # e.g. groups True/False and names
            write_table(table.astype(dict.fromkeys(mixed, str)), folder / rel)


@dataclass(frozen=True)
class RunDirectory:
    """A finished run directory: its manifest and typed readers of its files."""

    path: Path
    manifest: dict[str, Any]

    @property
    def run_id(self) -> str:
        """The run's id."""
        return str(self.manifest.get("run_id", self.path.name))

    @property
    def kind(self) -> RunKind:
        """``run``, ``evaluate`` or ``predict``."""
        kind: RunKind = self.manifest.get("kind", "run")
        return kind

    def has(self, name: str) -> bool:
        """Whether the run holds the file ``name`` (relative path)."""
        return (self.path / name).is_file()

    def verify(self) -> list[str]:
        """Files that are missing or whose sha256 differs from the manifest (empty if intact)."""
        bad = []
        for rel, meta in self.manifest.get("files", {}).items():
            p = self.path / rel
            if not p.exists():
                bad.append(f"{rel} (missing)")
            elif file_sha256(p) != meta["sha256"]:
                bad.append(f"{rel} (changed)")
        return bad

    def _file(self, name: str) -> Path:
        if not self.has(name):
            raise RunDirError(
                f"{self.path} has no {name} (a {self.kind} run directory); pass a run "
                "directory made by `povertymap run`"
            )
        return self.path / name

    def metrics(self) -> dict[str, Any]:
        """``metrics.json``."""
        return read_json(self._file("metrics.json"))

    def cells(self) -> gpd.GeoDataFrame:
        """``cells.parquet``: every cell with its estimates, indexed by ``cell_id``."""
        return read_vector(self._file("cells.parquet"))

    def admin(self) -> gpd.GeoDataFrame:
        """``admin.gpkg``: the admin-2 table, indexed by ``admin_id``."""
        return read_vector(self._file("admin.gpkg"), layer="admin").set_index("admin_id")

    def oof(self) -> pd.DataFrame:
        """``oof.csv``: out-of-fold predictions per survey cluster, by ``cluster_id``."""
        return read_table(self._file("oof.csv")).set_index("cluster_id")

    def plan(self) -> pd.DataFrame | None:
        """``targeting.csv`` (None when the run made no plan)."""
        return read_table(self.path / "targeting.csv") if self.has("targeting.csv") else None

    def model(self) -> MappingModel:
        """The fitted :class:`~povertymap.mapping.MappingModel` in ``model/``."""
        from povertymap.mapping import MODEL_META, MappingModel

        self._file(f"model/{MODEL_META}")
        return MappingModel.load(self.path / "model")

    def config(self) -> StudyAreaConfig:
        """The resolved study-area config (inputs found relative to the run directory)."""
        from povertymap.io.configfile import read_config

        return read_config(self._file("config.yaml"))

    def config_data(self) -> dict[str, Any]:
        """The resolved config as parsed YAML (no input is opened or checked)."""
        data: dict[str, Any] = yaml.safe_load(read_text(self._file("config.yaml")))
        return data

    def targeting_settings(self) -> TargetingSettings:
        """The run's targeting settings (``targeting:`` of its config)."""
        from povertymap.config import TargetingSettings

        return TargetingSettings.model_validate(self.config_data().get("targeting", {}))

    def targeting_evaluation(self) -> TargetingEvaluation | None:
        """The plan and its alternatives scored against the truth (None without truth)."""
        from povertymap.target.stage import TargetingEvaluation

        if not self.has(EVALUATION_FILES["table"]):
            return None
        tables = {k: read_table(self.path / v) for k, v in EVALUATION_FILES.items()}
        headline = self.metrics()["truth"]["targeting"]
        return TargetingEvaluation(headline=headline, **tables)

    @property
    def truth(self) -> Path | None:
        """The synthetic country's truth folder the run was scored against, if any."""
        rel = self.manifest.get("truth")
        return (self.path / rel).resolve() if rel else None


def open_run(path: str | Path) -> RunDirectory:
    """Open a finished run directory; refuses a folder without a readable manifest or of
    a newer layout than this version reads."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path} is not a directory; pass a run directory (runs/<run_id>)")
    if not (path / MANIFEST).exists():
        raise RunDirError(
            f"{path} has no {MANIFEST}: it is not a finished run directory "
            "(runs are published only when complete)"
        )
    manifest = read_json(path / MANIFEST)
    version = manifest.get("schema_version", 1)
    if not isinstance(version, int) or version > RUN_SCHEMA_VERSION:
        raise RunDirError(
            f"{path} is a run directory of layout version {version!r}; this povertymap "
            f"reads up to {RUN_SCHEMA_VERSION}: upgrade povertymap"
        )
    return RunDirectory(path, manifest)
