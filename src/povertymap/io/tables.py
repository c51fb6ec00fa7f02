"""Precomputed feature tables, joined to clusters or cells by a key column."""

from __future__ import annotations

import pandas as pd

from povertymap.config import TableConfig
from povertymap.errors import InputError
from povertymap.io.survey import read_tabular, row_label

__all__ = ["read_feature_table"]


def read_feature_table(cfg: TableConfig) -> pd.DataFrame:
    """A table of numeric features indexed by ``cfg.key`` (cluster or cell ids).

    Keys must be unique and every other column numeric: text columns are refused rather
    than dropped, so no feature disappears without the user knowing.
    """
    df = read_tabular(cfg.path)
    if cfg.key not in df.columns:
        raise InputError(
            f"key column {cfg.key!r} is missing (columns: {', '.join(map(str, df.columns))})",
            path=cfg.path,
            where=f"column {cfg.key!r}",
            fix="set tables[].key to the column holding the cluster or cell ids",
        )
    df[cfg.key] = df[cfg.key].astype(str)
    dup = df[cfg.key].duplicated()
    if dup.any():
        first = df.index[dup][0]
        raise InputError(
            f"key {df.loc[first, cfg.key]!r} appears more than once",
            path=cfg.path,
            where=f"{row_label(cfg.path, first)}, column {cfg.key!r}",
            fix="keep one row per unit",
        )
    df = df.set_index(cfg.key)
    for col in df.columns:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            raise InputError(
                f"column {col!r} holds a non-numeric value ({df[col][bad].iloc[0]!r})",
                path=cfg.path,
                where=f"column {col!r}",
                fix="feature tables hold numbers only: encode or remove text columns",
            )
        df[col] = values.astype(float)
    return df
