"""DHS surveys as distributed: the GPS dataset and the household recode, read into the
canonical survey tables.

A DHS survey comes as two downloads: the GPS dataset ``XXGE..FL`` (a point shapefile,
zipped, one row per cluster with ``DHSCLUST``, ``LATNUM``, ``LONGNUM`` and ``URBAN_RURA``
'U'/'R') and the household recode ``XXHR..FL.DTA`` (Stata, one row per household: ``hv001``
cluster number, ``hv005`` household weight x 1e6, ``hv025`` 1 urban / 2 rural, ``hv271``
wealth index factor score x 1e5, ``hv009`` household members). :func:`read_dhs` turns them
into exactly the tables :func:`~povertymap.io.survey.read_clusters` and
:func:`~povertymap.io.survey.read_households` give for CSV files:

- clusters: ``cluster_id`` (text), ``lon``, ``lat``, ``urban``, ``target`` (the weighted
  mean of the households' welfare), ``n_households``, ``weight`` (the mean household
  weight), then the GPS file's other columns (``DHSID``, ``ADM1NAME``...), indexed by the
  GPS row so that messages name the row;
- households: ``cluster_id``, ``household_id`` (``hhid``), ``welfare`` (``hv271 / 1e5``),
  ``weight`` (``hv005 / 1e6``), ``hh_size``, then the recode's other columns.

The cluster target is ``sum(w * welfare) / sum(w)`` over the cluster's households, with
``w = weight x hh_size`` when ``person_weighted`` (a mean per person, the statistic of the
map and of :func:`povertymap.estimate.direct.cluster_noise`), else ``w = weight``.

Invariants: every cluster kept has coordinates and at least one household; every household
kept belongs to a kept cluster. Rows at (0, 0) are DHS's marker for a cluster whose
coordinates are missing; they, GPS rows without households and households without a GPS
row are dropped, each kind counted in one :class:`~povertymap.errors.InputWarning`. A
cluster that is urban in one file and rural in the other means the files come from
different surveys, and is refused. Stata value labels are not applied (codes stay numbers).
"""

from __future__ import annotations

import difflib
import io
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pyogrio.errors

from povertymap.config import DhsConfig, DhsGpsConfig, DhsHouseholdsConfig
from povertymap.errors import InputNotFoundError, InputWarning, SurveyError, VectorError
from povertymap.io.survey import (
    _hint_swapped,
    _numeric,
    _rename,
    _source_name,
    _urban,
    _validate,
    row_label,
    schema,
)

__all__ = ["DhsSurvey", "read_dhs"]


#: ``hv025`` codes.
_HV025 = {1: True, 2: False}
#: Temporary columns: the household's urban flag from ``hv025``; a GPS row at (0, 0).
_URBAN_CODE, _NO_XY = "_urban", "_no_xy"
#: Columns listed in a "missing column" message before "...".
_SHOWN_COLUMNS = 25


@dataclass(frozen=True)
class DhsSurvey:
    """The canonical clusters and households tables of a DHS survey."""

    clusters: pd.DataFrame
    households: pd.DataFrame


def read_dhs(cfg: DhsConfig, *, person_weighted: bool = True) -> DhsSurvey:
    """Read a DHS GPS dataset and household recode into the canonical survey tables.

    ``person_weighted`` weights each household by weight x household size in the cluster
    means (see the module docstring). Raises :class:`~povertymap.errors.SurveyError` (or
    :class:`~povertymap.errors.VectorError` for an unreadable GPS file) naming the file,
    the row or column and the fix.
    """
    gps = _gps_table(cfg.gps)
    households = _household_table(cfg.households)
    gps, households = _link(gps, households, cfg)
    clusters = _cluster_table(gps, households, cfg, person_weighted=person_weighted)
    return DhsSurvey(
        clusters=clusters, households=households.drop(columns=_URBAN_CODE, errors="ignore")
    )


def _gps_table(cfg: DhsGpsConfig) -> pd.DataFrame:
    """The GPS dataset's attributes with canonical ``cluster_id``, ``lon``, ``lat`` and
    ``urban``, and ``_no_xy`` true for the rows at (0, 0)."""
    path = cfg.path
    df = _read_attributes(path)
    mapping = {cfg.id: "cluster_id", cfg.lon: "lon", cfg.lat: "lat"}
    if cfg.urban is not None:
        mapping[cfg.urban] = "urban"
    _require(df, mapping, path, "survey.dhs.gps")
    df = _rename(df, mapping, path, "survey.dhs.gps")
    df["cluster_id"] = _ids(df["cluster_id"], path, cfg.id)
    for col in ("lon", "lat"):
        df[col] = _numeric(df[col], col, path, _source_name(mapping, col))
    if "urban" in df:
        df["urban"] = _urban(df["urban"], path, cfg.urban or "urban")
    dup = df["cluster_id"].duplicated(keep=False)
    if dup.any():
        first = df.index[dup][0]
        cid = df.loc[first, "cluster_id"]
        raise SurveyError(
            f"cluster {cid!r} appears {int((df['cluster_id'] == cid).sum())} times "
            f"({int(dup.sum())} rows share a cluster number)",
            path=path,
            where=f"{row_label(path, first)}, column {cfg.id!r}",
            fix="give the GPS dataset of one survey (one row per cluster)",
        )
    df[_NO_XY] = (df["lat"] == 0) & (df["lon"] == 0)
    _hint_swapped(df[~df[_NO_XY]], path, lat=cfg.lat, lon=cfg.lon)
    return df


def _household_table(cfg: DhsHouseholdsConfig) -> pd.DataFrame:
    """The household recode with canonical ``cluster_id``, ``household_id``, ``welfare``
    (target / target_divisor), ``weight`` (weight / weight_divisor), ``hh_size``, the
    temporary ``_urban`` (from ``hv025``) when configured, and the other columns."""
    path = cfg.path
    mapping = {cfg.cluster: "cluster_id", cfg.target: "welfare", cfg.weight: "weight"}
    optional = {cfg.id: "household_id", cfg.size: "hh_size"}
    mapping.update({k: v for k, v in optional.items() if k is not None})
    needed = [*mapping, *([cfg.urban] if cfg.urban is not None else [])]
    keep = None if cfg.columns is None else list(dict.fromkeys([*needed, *cfg.columns]))
    df = _read_stata(path, keep)
    _require(df, dict.fromkeys(needed, ""), path, "survey.dhs.households")
    df = _rename(df, mapping, path, "survey.dhs.households")
    df["cluster_id"] = _ids(df["cluster_id"], path, cfg.cluster)
    if "household_id" in df:
        df["household_id"] = df["household_id"].astype(str).str.strip()
    for col, divisor in (("welfare", cfg.target_divisor), ("weight", cfg.weight_divisor)):
        df[col] = _numeric(df[col], col, path, _source_name(mapping, col)) / divisor
    if "hh_size" in df:
        df["hh_size"] = _numeric(df["hh_size"], "hh_size", path, _source_name(mapping, "hh_size"))
    if cfg.urban is not None:
        code = pd.to_numeric(df[cfg.urban], errors="coerce")
        bad = ~code.isin(list(_HV025))
        if bad.any():
            first = df.index[bad][0]
            raise SurveyError(
                f"value {df.loc[first, cfg.urban]!r} is not an urban/rural code",
                path=path,
                where=f"{row_label(path, first)}, column {cfg.urban!r}",
                fix="DHS codes hv025 as 1 (urban) or 2 (rural); set survey.dhs.households."
                "urban: null to take the flag from the GPS file only",
            )
        df[_URBAN_CODE] = code.map(_HV025).astype(bool)
    return _validate(schema("households"), df, path, mapping)


def _link(
    gps: pd.DataFrame, households: pd.DataFrame, cfg: DhsConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep clusters with coordinates and households, and the households of kept clusters;
    each kind of row dropped is counted in one warning."""
    no_xy = gps[_NO_XY].to_numpy()
    if no_xy.any():
        ids = gps.loc[no_xy, "cluster_id"]
        lost = households["cluster_id"].isin(ids)
        shown = ", ".join(map(str, ids.head(5))) + (", ..." if len(ids) > 5 else "")
        _warn(
            f"{cfg.gps.path}: dropped {len(ids)} cluster(s) at (0, 0), DHS's marker for "
            f"missing coordinates (cluster(s) {shown}), and their {int(lost.sum())} "
            f"household(s) in {cfg.households.path.name}"
        )
        households = households[~lost.to_numpy()]
    gps = gps[~no_xy].drop(columns=_NO_XY)
    surveyed = gps["cluster_id"].isin(households["cluster_id"])
    if not surveyed.all():
        ids = gps.loc[~surveyed, "cluster_id"]
        _warn(
            f"{cfg.gps.path}: dropped {len(ids)} cluster(s) without households in "
            f"{cfg.households.path.name} (first: {ids.iloc[0]!r})"
        )
        gps = gps[surveyed]
    located = households["cluster_id"].isin(gps["cluster_id"])
    if not located.any():
        raise SurveyError(
            "no household belongs to a cluster of the GPS dataset (with coordinates)",
            path=cfg.households.path,
            where=f"column {cfg.households.cluster!r}",
            fix=f"check that {cfg.gps.path.name} and {cfg.households.path.name} are the same "
            "survey (same country and phase, e.g. XXGE81FL with XXHR81FL)",
        )
    if not located.all():
        lost = households.loc[~located, "cluster_id"]
        _warn(
            f"{cfg.households.path}: dropped {len(lost)} household(s) of "
            f"{lost.nunique()} cluster(s) that have no row in {cfg.gps.path.name} "
            f"(first: cluster {lost.iloc[0]!r})"
        )
        households = households[located]
    return gps, households


def _cluster_table(
    gps: pd.DataFrame, households: pd.DataFrame, cfg: DhsConfig, *, person_weighted: bool
) -> pd.DataFrame:
    h = households
    w = h["weight"] * h["hh_size"] if person_weighted and "hh_size" in h else h["weight"]
    g = pd.DataFrame({"cluster_id": h["cluster_id"], "w": w, "wy": w * h["welfare"]})
    sums = g.groupby("cluster_id", sort=False)[["w", "wy"]].sum()
    by_cluster = h.groupby("cluster_id", sort=False)
    ids = gps["cluster_id"]
    out = gps[["cluster_id", "lon", "lat"]].copy()
    if _URBAN_CODE in h:
        hh_urban = by_cluster[_URBAN_CODE].agg(["min", "max"])
        if "urban" in gps:
            gps_urban = gps.set_index("cluster_id")["urban"]
            clash = (hh_urban["min"] != hh_urban["max"]) | (
                hh_urban["max"] != gps_urban.reindex(hh_urban.index)
            )
            if clash.any():
                cid = clash.index[clash][0]
                raise SurveyError(
                    f"cluster {cid!r} is {'urban' if gps_urban[cid] else 'rural'} in the GPS "
                    f"file but has households coded otherwise in column "
                    f"{cfg.households.urban!r}",
                    path=cfg.households.path,
                    where=f"column {cfg.households.urban!r}",
                    fix="use the GPS dataset and household recode of the same survey, or set "
                    "survey.dhs.households.urban: null",
                )
        else:
            out["urban"] = hh_urban["max"].reindex(ids).to_numpy()
    if "urban" in gps:
        out["urban"] = gps["urban"]
    out["target"] = (sums["wy"] / sums["w"]).reindex(ids).to_numpy()
    out["n_households"] = by_cluster.size().reindex(ids).to_numpy().astype(float)
    out["weight"] = by_cluster["weight"].mean().reindex(ids).to_numpy()
    others = gps.drop(columns=[c for c in out.columns if c in gps.columns])
    out = pd.concat([out, others], axis=1)
    mapping = {cfg.gps.id: "cluster_id", cfg.gps.lon: "lon", cfg.gps.lat: "lat"}
    out = _validate(schema("clusters"), out, cfg.gps.path, mapping)
    out.attrs["target_name"] = cfg.households.target
    return out


# -- files -------------------------------------------------------------------------------


def _read_attributes(path: Path) -> pd.DataFrame:
    """The attribute table of the GPS shapefile (a .shp/.dbf, its folder or its .zip)."""
    if not path.exists():
        raise InputNotFoundError("file does not exist", path=path, fix="correct the path")
    source = _shapefile_in(path)
    try:
        df = pyogrio.read_dataframe(source, read_geometry=False)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise VectorError(
            f"cannot be read as the DHS GPS shapefile ({str(exc).strip()[:160]})",
            path=path,
            fix="give the GPS dataset as downloaded: the XXGE..FL .zip, its unzipped folder "
            "or the .shp (with its .dbf beside it)",
        ) from exc
    return pd.DataFrame(df)


def _shapefile_in(path: Path) -> str:
    """What GDAL opens for ``path``: the file itself, the shapefile inside a folder, or a
    ``/vsizip/`` path to the shapefile inside a zip."""
    if path.is_dir():
        shps = sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".shp")
        named = [s for s in shps if Path(s).stem == path.name]
        return str(path / _one(named or shps, path, "folder"))
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.lower().endswith(".shp")]
        except zipfile.BadZipFile as exc:
            raise VectorError(
                "is not a valid zip file", path=path, fix="download the GPS dataset again"
            ) from exc
        return f"/vsizip/{path}/{_one(names, path, 'zip file')}"
    if path.suffix.lower() not in (".shp", ".dbf"):
        raise VectorError(
            f"unexpected file type {path.suffix!r} for the DHS GPS dataset",
            path=path,
            fix="give the XXGE..FL shapefile (.shp), its folder or the .zip as downloaded",
        )
    return str(path)


def _one(names: list[str], path: Path, what: str) -> str:
    if len(names) != 1:
        found = f"found {', '.join(names)}" if names else "found none"
        raise VectorError(
            f"the {what} must hold exactly one shapefile ({found})",
            path=path,
            fix="point survey.dhs.gps at the .shp itself",
        )
    return names[0]


def _read_stata(path: Path, columns: list[str] | None) -> pd.DataFrame:
    """A Stata file (or the one .DTA inside a zip), codes as numbers, missing as NaN."""
    if not path.exists():
        raise InputNotFoundError("file does not exist", path=path, fix="correct the path")
    suffix = path.suffix.lower()
    if suffix not in (".dta", ".zip"):
        raise SurveyError(
            f"unexpected file type {suffix!r} for the DHS household recode",
            path=path,
            fix="download the Stata version of the recode (XXHR..DT.zip) and give its .DTA",
        )
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.lower().endswith(".dta")]
                if len(names) != 1:
                    found = f"found {', '.join(names)}" if names else "found none"
                    raise SurveyError(
                        f"the zip file must hold exactly one .DTA file ({found})",
                        path=path,
                        fix="point survey.dhs.households at the .DTA itself",
                    )
                data = io.BytesIO(z.read(names[0]))
            frame = _stata_frame(data, columns)
        else:
            frame = _stata_frame(path, columns)
    except zipfile.BadZipFile as exc:
        raise SurveyError(
            "is not a valid zip file", path=path, fix="download the recode again"
        ) from exc
    except ValueError as exc:  # pandas raises ValueError for non-Stata bytes, bad columns
        if isinstance(exc, SurveyError):
            raise
        raise SurveyError(
            f"cannot be read as a Stata file ({str(exc).strip()[:160]})",
            path=path,
            fix="give the .DTA of the household recode as downloaded (Stata format), or check "
            "survey.dhs.households.columns",
        ) from exc
    return frame


def _stata_frame(source: Path | io.BytesIO, columns: list[str] | None) -> pd.DataFrame:
    frame = pd.read_stata(
        source,
        convert_categoricals=False,  # DHS value labels are often not unique; keep codes
        convert_dates=False,
        columns=columns,
    )
    return frame.reset_index(drop=True)


# -- helpers -----------------------------------------------------------------------------


def _require(df: pd.DataFrame, mapping: dict[str, str], path: Path, key: str) -> None:
    """Refuse a missing column, naming it, the closest column found and the config key."""
    missing = [c for c in mapping if c not in df.columns]
    if not missing:
        return
    col = missing[0]
    columns = [str(c) for c in df.columns]
    close = difflib.get_close_matches(col, columns, n=1)
    shown = ", ".join(columns[:_SHOWN_COLUMNS]) + (", ..." if len(columns) > _SHOWN_COLUMNS else "")
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise SurveyError(
        f"missing column {col!r} ({len(columns)} columns found: {shown})",
        path=path,
        where=f"column {col!r}",
        fix=f"set its name under {key} in the config{hint}",
    )


def _ids(col: pd.Series, path: Path, source: str) -> pd.Series:
    """Cluster numbers as text: 12.0 (a shapefile's double) and 12 (Stata's int) give "12"."""
    values = pd.to_numeric(col, errors="coerce")
    missing = col.isna()
    if missing.any():
        first = col.index[missing][0]
        raise SurveyError(
            "cluster number is missing",
            path=path,
            where=f"{row_label(path, first)}, column {source!r}",
            fix="give every row its cluster number, or remove the row",
        )
    if values.notna().all() and bool((values == np.round(values)).all()):
        return values.astype(np.int64).astype(str)
    return col.astype(str).str.strip()


def _warn(message: str) -> None:
    warnings.warn(message, InputWarning, stacklevel=4)
