"""Aggregation of cell values to admin areas, weighted by population.

Each cell belongs to the admin unit that covers most of it, so admin populations sum to
the national total exactly. Population weighting makes an area's value the average
person's, not the average square kilometre's (empty land would otherwise dilute towns).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["weighted_by_area"]


def weighted_by_area(
    cells: pd.DataFrame, by: str, columns: Sequence[str], weight: str = "population"
) -> pd.DataFrame:
    """Population-weighted means of ``columns`` per value of ``by``, plus totals.

    Returns one row per area with ``population`` (sum of ``weight``), ``n_cells`` and the
    weighted mean of each column. An area without people gets the unweighted cell mean,
    so it still has a value (flagged by ``population == 0``).
    """
    w = cells[weight].to_numpy(dtype=float)
    groups = cells[by]
    out = pd.DataFrame(
        {
            weight: pd.Series(w, index=cells.index).groupby(groups).sum(),
            "n_cells": groups.groupby(groups).size(),
        }
    )
    for column in columns:
        v = cells[column].to_numpy(dtype=float)
        ok = np.isfinite(v)
        num = pd.Series(np.where(ok, v * w, 0.0), index=cells.index).groupby(groups).sum()
        den = pd.Series(np.where(ok, w, 0.0), index=cells.index).groupby(groups).sum()
        plain = pd.Series(v, index=cells.index).groupby(groups).mean()
        out[column] = np.where(den > 0, num / den.where(den > 0, 1.0), plain)
    out.index.name = by
    return out
