"""Input checks shared by the targeting modules (missing columns, bad values)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from povertymap.errors import InputError


def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise InputError naming every column of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{what} lacks column(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(map(repr, map(str, df.columns)))}",
            fix=f"add or rename the column(s) {', '.join(missing)}",
        )


def finite_column(
    df: pd.DataFrame,
    column: str,
    what: str,
    *,
    lower: float | None = None,
    upper: float | None = None,
) -> np.ndarray:
    """``df[column]`` as float64, refusing NaN/inf and values outside [lower, upper]."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if lower is not None:
        bad |= values < lower
    if upper is not None:
        bad |= values > upper
    if bad.any():
        first = df.index[np.flatnonzero(bad)[:3]].tolist()
        bounds = f" in [{lower}, {upper}]" if lower is not None or upper is not None else ""
        shown = df[column].to_numpy()[np.flatnonzero(bad)[:3]].tolist()
        raise InputError(
            f"{what} column {column!r} has {int(bad.sum())} value(s) that are not finite"
            f"{bounds}: {shown} at {first}",
            fix=f"give every row a finite {column}{bounds}, or drop those rows",
        )
    return values


def sort_key_order(index: pd.Index) -> np.ndarray:
    """Positions that sort ``index`` ascending, deterministically for mixed or string ids."""
    try:
        return np.argsort(index.to_numpy(), kind="stable")
    except TypeError:  # mixed types: compare their string forms
        return np.argsort(index.astype(str).to_numpy(), kind="stable")
