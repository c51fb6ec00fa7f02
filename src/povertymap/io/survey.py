"""Survey tables: clusters and households, read from CSV or Parquet and validated.

Columns named in the config are renamed to canonical names (``cluster_id``, ``lon``,
``lat``, ``urban``, ``target``, ``n_households``, ``weight`` for clusters; ``household_id``,
``cluster_id``, ``welfare``, ``weight``, ``hh_size`` for households); every other column is
kept (it may be a grouping for cross-validation, such as a region or a published fold).
Values are checked with pandera schemas; each failure is reported with its file row.
A DHS survey (GPS shapefile and Stata household recode) is read into the same tables by
:mod:`povertymap.io.dhs`.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from povertymap.config import ClustersConfig, HouseholdsConfig, RegistryConfig
from povertymap.errors import InputNotFoundError, SurveyError

if TYPE_CHECKING:
    import pandera.pandas as pa

__all__ = ["read_clusters", "read_households", "read_registry", "read_tabular", "row_label"]

_URBAN = {
    "u": True,
    "urban": True,
    "1": True,
    "true": True,
    "t": True,
    "yes": True,
    "y": True,
    "r": False,
    "rural": False,
    "0": False,
    "false": False,
    "f": False,
    "no": False,
    "n": False,
}


@cache
def schema(table: Literal["clusters", "households", "registry"]) -> pa.DataFrameSchema:
    """The pandera schema of a survey ``table`` (``clusters``, ``households`` or
    ``registry``), built on first use: importing pandera imports pyspark when that is
    installed (seconds, and it sets ``SPARK_LOCAL_IP``), which ``import povertymap`` and a
    run that reads no survey must not pay."""
    import pandera.pandas as pa

    if table == "clusters":
        return pa.DataFrameSchema(
            {
                "cluster_id": pa.Column(str, unique=True, nullable=False),
                "lat": pa.Column(float, pa.Check.in_range(-90, 90), nullable=False),
                "lon": pa.Column(float, pa.Check.in_range(-180, 180), nullable=False),
                "target": pa.Column(
                    float, pa.Check(np.isfinite, element_wise=True), nullable=False
                ),
                "urban": pa.Column(bool, required=False),
                "n_households": pa.Column(float, pa.Check.gt(0), required=False, nullable=False),
                "weight": pa.Column(float, pa.Check.gt(0), required=False, nullable=False),
            },
            checks=[
                pa.Check(
                    lambda df: ~((df["lat"] == 0) & (df["lon"] == 0)),
                    name="not_null_island",
                    error="location (0, 0) is the DHS marker for an unverified location",
                )
            ],
        )
    if table == "households":
        return pa.DataFrameSchema(
            {
                "household_id": pa.Column(str, unique=True, required=False),
                "cluster_id": pa.Column(str, nullable=False),
                "welfare": pa.Column(
                    float, pa.Check(np.isfinite, element_wise=True), required=False
                ),
                "weight": pa.Column(float, pa.Check.gt(0), required=False, nullable=False),
                "hh_size": pa.Column(float, pa.Check.gt(0), required=False, nullable=False),
            }
        )
    assert table == "registry", table
    return pa.DataFrameSchema(
        {
            "household_id": pa.Column(str, unique=True, nullable=False),
            "hh_size": pa.Column(float, pa.Check.gt(0), nullable=False),
            "weight": pa.Column(float, pa.Check.gt(0), required=False, nullable=False),
        }
    )


_FIXES = {
    "lat": "latitudes must be WGS84 degrees in [-90, 90]",
    "lon": "longitudes must be WGS84 degrees in [-180, 180]",
    "target": "give every cluster a finite numeric value, or remove the cluster",
    "n_households": "household counts must be positive",
    "weight": "survey weights must be positive",
    "hh_size": "household sizes must be positive",
    "welfare": "give every household a finite numeric value, or remove it",
}


def read_tabular(path: str | Path) -> pd.DataFrame:
    """Read a CSV (strict UTF-8) or Parquet table; every error names the file."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("file does not exist", path=path, fix="correct the path")
    if path.suffix.lower() in {".parquet", ".pq"}:
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise SurveyError(
                f"cannot be read as Parquet ({str(exc)[:160]})",
                path=path,
                fix="re-export the table",
            ) from exc
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SurveyError(
            f"byte 0x{raw[exc.start]:02x} at offset {exc.start} is not UTF-8",
            path=path,
            where=f"line {line}",
            fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SurveyError(
            f"cannot be parsed as CSV ({str(exc).strip()[:160]})",
            path=path,
            fix="check the delimiter (comma) and quoting",
        ) from exc


def row_label(path: Path, index: object) -> str:
    """How a user finds a row: the line number for CSV (header is line 1), the observation
    number for Stata (numbered from 1, as Stata's browser shows it), else the index."""
    if path.suffix.lower() == ".csv" and isinstance(index, int | np.integer):
        return f"line {int(index) + 2}"
    if path.suffix.lower() == ".dta" and isinstance(index, int | np.integer):
        return f"observation {int(index) + 1}"
    return f"row {index}"


def read_clusters(cfg: ClustersConfig) -> pd.DataFrame:
    """Read and validate survey clusters; returns canonical columns plus every other column."""
    df = read_tabular(cfg.path)
    mapping = {
        cfg.id: "cluster_id",
        cfg.lon: "lon",
        cfg.lat: "lat",
        cfg.target: "target",
    }
    optional = {cfg.urban: "urban", cfg.households: "n_households", cfg.weight: "weight"}
    mapping.update({k: v for k, v in optional.items() if k is not None})
    df = _rename(df, mapping, cfg.path, "survey.clusters")
    df["cluster_id"] = df["cluster_id"].astype(str)
    for col in ("lon", "lat", "target", "n_households", "weight"):
        if col in df:
            df[col] = _numeric(df[col], col, cfg.path, _source_name(mapping, col))
    if "urban" in df:
        df["urban"] = _urban(df["urban"], cfg.path, cfg.urban or "urban")
    _hint_swapped(df, cfg.path, lat=cfg.lat, lon=cfg.lon)
    df = _validate(schema("clusters"), df, cfg.path, mapping)
    df = _infer_numbers(df, set(mapping.values()))
    df.attrs["target_name"] = cfg.target
    return df


def read_households(cfg: HouseholdsConfig, cluster_ids: pd.Index | None = None) -> pd.DataFrame:
    """Read and validate survey households; ``cluster_ids`` checks every link resolves."""
    df = read_tabular(cfg.path)
    mapping = {cfg.cluster: "cluster_id"}
    optional = {
        cfg.id: "household_id",
        cfg.welfare: "welfare",
        cfg.weight: "weight",
        cfg.size: "hh_size",
    }
    mapping.update({k: v for k, v in optional.items() if k is not None})
    df = _rename(df, mapping, cfg.path, "survey.households")
    df["cluster_id"] = df["cluster_id"].astype(str)
    if "household_id" in df:
        df["household_id"] = df["household_id"].astype(str)
    for col in ("welfare", "weight", "hh_size"):
        if col in df:
            df[col] = _numeric(df[col], col, cfg.path, _source_name(mapping, col))
    df = _validate(schema("households"), df, cfg.path, mapping)
    df = _infer_numbers(df, set(mapping.values()))
    if cluster_ids is not None:
        unknown = ~df["cluster_id"].isin(cluster_ids)
        if unknown.any():
            first = df.index[unknown][0]
            raise SurveyError(
                f"{int(unknown.sum())} household(s) name a cluster that is not in the clusters "
                f"file (first: {df.loc[first, 'cluster_id']!r})",
                path=cfg.path,
                where=f"{row_label(cfg.path, first)}, column {cfg.cluster!r}",
                fix="check that both files come from the same survey round",
            )
    return df


def read_registry(cfg: RegistryConfig) -> pd.DataFrame:
    """Read and validate a household registry: canonical ``household_id``, ``hh_size``,
    ``cell_id`` and ``admin_id`` (when configured), ``weight``, plus its PMT columns."""
    df = read_tabular(cfg.path)
    mapping = {cfg.id: "household_id", cfg.size: "hh_size"}
    optional = {cfg.cell: "cell_id", cfg.admin: "admin_id", cfg.weight: "weight"}
    mapping.update({k: v for k, v in optional.items() if k is not None})
    df = _rename(df, mapping, cfg.path, "registry")
    df["household_id"] = df["household_id"].astype(str)
    for col in ("cell_id", "admin_id"):
        if col in df:
            df[col] = df[col].astype(str)
    for col in ("hh_size", "weight"):
        if col in df:
            df[col] = _numeric(df[col], col, cfg.path, _source_name(mapping, col))
    return _infer_numbers(
        _validate(schema("registry"), df, cfg.path, mapping), set(mapping.values())
    )


def _infer_numbers(df: pd.DataFrame, canonical: set[str]) -> pd.DataFrame:
    """Make every other column that holds only numbers (read as text from CSV) numeric.

    Canonical columns are already typed; ids stay text, so "007" keeps its zeros.
    """
    for col in df.columns:
        if col in canonical or df[col].dtype != object:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        if values.notna().sum() == df[col].notna().sum():
            df[col] = values
    return df


def _rename(df: pd.DataFrame, mapping: dict[str, str], path: Path, key: str) -> pd.DataFrame:
    missing = [src for src in mapping if src not in df.columns]
    if missing:
        raise SurveyError(
            f"missing column {missing[0]!r} (columns found: {', '.join(map(str, df.columns))})",
            path=path,
            where=f"column {missing[0]!r}",
            fix=f"rename the column in the file or set its name under {key} in the config",
        )
    clash = [c for c in mapping.values() if c in df.columns and c not in mapping]
    if clash:
        raise SurveyError(
            f"column {clash[0]!r} exists but the config maps another column to it",
            path=path,
            where=f"column {clash[0]!r}",
            fix=f"rename one of them or point the config at {clash[0]!r}",
        )
    return df.rename(columns=mapping)


def _source_name(mapping: dict[str, str], canonical: str) -> str:
    return next((src for src, dst in mapping.items() if dst == canonical), canonical)


def _numeric(col: pd.Series, name: str, path: Path, source: str) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() & col.notna()
    if bad.any():
        first = col.index[bad][0]
        raise SurveyError(
            f"value {col[first]!r} is not a number",
            path=path,
            where=f"{row_label(path, first)}, column {source!r}",
            fix=_FIXES.get(name, "use plain numbers (dot as decimal separator)"),
        )
    return values.astype(float)


def _urban(col: pd.Series, path: Path, source: str) -> pd.Series:
    norm = col.astype(str).str.strip().str.lower()
    bad = ~norm.isin(list(_URBAN))
    if bad.any():
        first = col.index[bad][0]
        raise SurveyError(
            f"value {col[first]!r} is not an urban/rural flag",
            path=path,
            where=f"{row_label(path, first)}, column {source!r}",
            fix="use U/R, urban/rural, 1/0 or true/false",
        )
    return norm.map(_URBAN).astype(bool)


def _hint_swapped(df: pd.DataFrame, path: Path, *, lat: str, lon: str) -> None:
    """Refuse latitudes beyond +-90 with a hint when the two columns look swapped.

    ``lat`` and ``lon`` are the file's names of the two columns."""
    out = df["lat"].abs() > 90
    if out.any():
        first = df.index[out][0]
        swapped = bool((df["lon"].abs() <= 90).all())
        raise SurveyError(
            f"latitude {df.loc[first, 'lat']:g} is outside [-90, 90]",
            path=path,
            where=f"{row_label(path, first)}, column {lat!r}",
            fix=(
                f"the columns look swapped: set lat: {lon} and lon: {lat} in the config"
                if swapped
                else "latitudes must be WGS84 degrees"
            ),
        )


def _validate(
    table_schema: pa.DataFrameSchema, df: pd.DataFrame, path: Path, mapping: dict[str, str]
) -> pd.DataFrame:
    from pandera.errors import SchemaErrors

    try:
        return table_schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        first = cases.iloc[0]
        canonical = first["column"] if isinstance(first["column"], str) else None
        source = _source_name(mapping, canonical) if canonical else None
        index = first["index"]
        value = first["failure_case"]
        check = str(first["check"])
        if "unique" in check or "duplicated" in check:
            n = int((cases["check"].astype(str).str.contains("unique|duplicated")).sum())
            problem = f"id {value!r} appears more than once ({n} duplicated rows)"
            fix = "ids must be unique: remove or renumber the duplicates"
        elif "null_island" in check:
            problem = "location (0, 0) is the DHS marker for an unverified location"
            fix = "remove the cluster or give it its real coordinates"
        elif "not_nullable" in check or "null" in check:
            problem = "value is missing"
            fix = _FIXES.get(canonical or "", "fill in the value or remove the row")
        else:
            problem = f"value {value!r} fails the check {check}"
            fix = _FIXES.get(canonical or "", "correct the value")
        where = []
        if index is not None and not (isinstance(index, float) and np.isnan(index)):
            where.append(row_label(path, index))
        if source:
            where.append(f"column {source!r}")
        raise SurveyError(problem, path=path, where=", ".join(where) or None, fix=fix) from None
