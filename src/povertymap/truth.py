"""Scoring a run against ground truth, where truth exists (the synthetic country).

The pipeline never reads truth. After a run, :func:`score_run` compares its cell and admin
estimates with the simulator's ``truth/`` files, so accuracy claims about the demo are
measured against what the map is meant to show, not against the noisy survey.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from povertymap.estimate.evaluate import evaluate_against_truth
from povertymap.estimate.stage import EstimateResult
from povertymap.io.survey import read_tabular
from povertymap.models.evaluate import regression_metrics

__all__ = ["read_truth", "score_cells", "score_map"]

#: Columns of the truth files that estimates are compared with.
TRUE_MEAN = "mean_log_consumption"


def read_truth(folder: Path) -> dict[str, pd.DataFrame]:
    """The truth tables: ``cells`` (indexed by ``cell_id``), ``admin`` (by admin-2 id) and
    ``households`` (every household's true log consumption and poverty)."""
    cells = read_tabular(folder / "cells.parquet").set_index("cell_id")
    households = read_tabular(folder / "households.parquet")
    admin = read_tabular(folder / "admin2.csv")
    admin = admin.set_index(admin.columns[0])
    for col in admin.columns:
        converted = pd.to_numeric(admin[col], errors="coerce")
        if converted.notna().sum() == admin[col].notna().sum():  # blanks become NaN
            admin[col] = converted
    return {"cells": cells, "admin": admin, "households": households}


def score_cells(
    cells: pd.DataFrame, truth: pd.DataFrame, columns: tuple[str, ...] = ("estimate", "baseline")
) -> dict[str, Any]:
    """Metrics of each estimate column against the true cell means, on populated cells.

    ``all`` weighs cells by their true population: the survey samples people (clusters
    drawn proportionally to population), so this is what cross-validation estimates.
    ``cells`` weighs every populated cell alike (sparse hamlets count as much as towns).
    ``dark`` is the population-weighted figure among cells below the nightlight floor,
    where lights cannot rank wealth.
    """
    true = truth[[TRUE_MEAN, "population"]].rename(columns={"population": "population_true"})
    joined = cells.drop(columns=[TRUE_MEAN], errors="ignore").join(true, how="inner")
    populated = joined[joined["population_true"] > 0]
    out: dict[str, Any] = {"n_cells": len(populated)}
    for column in columns:
        if column not in populated:
            continue
        y, pred = populated[TRUE_MEAN].to_numpy(), populated[column].to_numpy()
        people = populated["population_true"].to_numpy(dtype=float)
        entry: dict[str, Any] = {
            "all": regression_metrics(y, pred, people),
            "cells": regression_metrics(y, pred),
        }
        if "dark" in populated:
            dark = populated["dark"].to_numpy(bool)
            entry["dark"] = regression_metrics(y[dark], pred[dark], people[dark])
            entry["dark_share"] = float(np.average(dark, weights=people))
        out[column] = entry
    return out


def score_map(
    cells: pd.DataFrame,
    estimates: EstimateResult,
    truth: dict[str, pd.DataFrame],
    references: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A run's map against the truth: cell accuracy of the estimate and of each reference
    map, and the coverage of cell and area intervals (``truth["estimate"]``)."""
    scores = score_cells(cells, truth["cells"], ("estimate", *references))
    scores["estimate"].update(evaluate_against_truth(estimates, truth["cells"], truth["admin"]))
    return scores
