"""Partitioned GeoParquet: a run's cells as one folder per admin-1 area or raster window.

A national grid of 10^5-10^6 cells in one file is read whole by every consumer. A
Hive-partitioned dataset (``cells/parent_id=R01/part-0.parquet``, ...) lets Spark,
DuckDB, pyarrow, geopandas and the service read only the regions they need, and lets a
cluster job write or replace one region at a time. Each part is a complete GeoParquet
file (``geo`` metadata, CRS, the named index kept as a column); the partition column
lives in the folder name only, as the Hive layout wants, and readers add it back
(``gpd.read_parquet(folder)``, ``spark.read.parquet(folder)``).

Invariants: the folder is written atomically (built beside its target and renamed in);
parts hold their rows in the input order; folder and file names are deterministic
(values URI-escaped as pyarrow's Hive partitioning expects, missing values in
``__HIVE_DEFAULT_PARTITION__``), so identical cells give identical bytes and the run
manifest's digests are reproducible.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import geopandas as gpd
import numpy as np
import pandas as pd

from povertymap.errors import InputError
from povertymap.io.writers import atomic_directory, write_vector

__all__ = ["NULL_PARTITION", "write_partitioned_geoparquet"]

#: The folder of rows whose partition value is missing (Hive's, Spark's and pyarrow's name).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


def _segment(column: str, value: object) -> str:
    """The folder name ``column=value`` of one partition, the value URI-escaped."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return f"{column}={NULL_PARTITION}"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)  # 3.0 and 3 name the same partition
    return f"{column}={quote(str(value), safe='')}"


def write_partitioned_geoparquet(gdf: gpd.GeoDataFrame, folder: Path, *, by: str) -> Path:
    """Write ``gdf`` as a GeoParquet dataset partitioned by column ``by``; returns ``folder``.

    One sub-folder ``<by>=<value>`` per distinct value, in sorted order, each with one
    ``part-0.parquet`` holding that value's rows (the column itself dropped, as in every
    Hive-partitioned dataset). ``folder`` is replaced if it exists. Refuses a GeoDataFrame
    without a CRS or without the column ``by``.
    """
    folder = Path(folder)
    if by not in gdf.columns:
        raise InputError(
            f"cannot partition by {by!r}: no such column (columns: {list(gdf.columns)})",
            path=folder,
            fix="add the partition column (e.g. an admin-1 id or a raster window key) first",
        )
    if gdf.crs is None:
        raise InputError(
            "GeoDataFrame has no CRS", path=folder, fix="set one with gdf.set_crs(...) first"
        )
    segments = np.array([_segment(by, v) for v in gdf[by].to_numpy()], dtype=object)
    rest = gdf.drop(columns=[by])
    with atomic_directory(folder, overwrite=True) as tmp:
        for segment in sorted(set(segments.tolist())):
            part = rest[segments == segment]
            write_vector(part, tmp / segment / "part-0.parquet")
    return folder
