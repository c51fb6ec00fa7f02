"""The estimation stage: from model predictions to published cell and area estimates.

:func:`estimate_map` composes the steps of this package in order; a fitted
:class:`~.cells.CellEstimator` holds steps 1-6 (what a saved model needs to estimate
any cells), :mod:`.areas` steps 7-9:

1. sampling noise of each cluster mean from its households (:mod:`.direct`);
2. households per cell and the finite-population deviation of realised cell means;
3. calibration of predictions on out-of-fold predictions, aiming at the spread of the
   realised cell means (:mod:`.calibrate`);
4. Mondrian conformal intervals per cell, deconvolving that noise, with clusters grouped
   by the map's own urban flag at their location (:mod:`.conformal`), and the check that
   the map predicts surveyed places like the out-of-fold model (``cell_vs_cluster``);
5. a spatial error model (exponential field plus admin-2/admin-1 effects) from the OOF
   residual variogram (:mod:`.spatial`);
6. poverty headcounts per cell (:mod:`.headcount`);
7. simulated area intervals for admin-2 and admin-1 (:mod:`.aggregate`);
8. design-based direct estimates (stratified; two-stage with first-stage fractions when
   the clusters give them) and Fay-Herriot EBLUPs per admin-2 for mean welfare and the
   headcount (:mod:`.sae`), on out-of-area synthetic estimates when ``cells`` has
   ``pred_out_of_area``;
9. the disclosure gate on the area tables (:mod:`.disclosure`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from povertymap.config.estimate import EstimationSettings
from povertymap.errors import InputError
from povertymap.estimate.areas import (
    ADMIN_DIRECT_COLUMNS,
    area_tables,
    publish,
    small_area_estimates,
)
from povertymap.estimate.calibrate import LinearCalibrator
from povertymap.estimate.cells import CellEstimates, CellEstimator
from povertymap.estimate.conformal import MondrianConformal
from povertymap.estimate.disclosure import public_table, strip_private
from povertymap.estimate.sae import FayHerriot
from povertymap.estimate.spatial import ExponentialCovariance

__all__ = [
    "ADMIN_DIRECT_COLUMNS",
    "ADMIN_VALUE_COLUMNS",
    "EstimateResult",
    "estimate_areas",
    "estimate_map",
]

#: Estimates blanked in the public admin table when an area is suppressed.
ADMIN_VALUE_COLUMNS = (
    "estimate",
    "lower",
    "upper",
    "estimate_sd",
    "poverty_rate",
    "poverty_lower",
    "poverty_upper",
    "poverty_sd",
    "synthetic",
    "synthetic_poverty",
    "fh_mean",
    "fh_mean_mse",
    "fh_mean_cv",
    "fh_mean_lower",
    "fh_mean_upper",
    "fh_poverty",
    "fh_poverty_mse",
    "fh_poverty_cv",
    "fh_poverty_lower",
    "fh_poverty_upper",
)
_OOF_COLUMNS = ("y", "pred", "urban")
_CELL_COLUMNS = ("pred", "population", "urban", "admin_id", "easting", "northing")


@dataclass
class EstimateResult:
    """Everything the estimation stage produced.

    ``cells``: the input cells plus ``estimate, lower, upper, sigma`` and, with a poverty
    line, ``poverty_rate, poverty_lower, poverty_upper``. ``admin``/``admin1``: area
    tables (see :func:`estimate_map`) including ``publish`` and ``reason``. Use
    :meth:`public` for what may be published.
    """

    cells: pd.DataFrame
    admin: pd.DataFrame
    admin1: pd.DataFrame
    metrics: dict[str, Any]
    settings: EstimationSettings
    estimator: CellEstimator
    """The fitted cell estimator (steps 1-6): applies to any cells, e.g. a new area's."""
    fh_mean: FayHerriot | None = None
    fh_poverty: FayHerriot | None = None

    @property
    def calibrator(self) -> LinearCalibrator:
        """The calibration of predictions (step 3)."""
        return self.estimator.calibrator_

    @property
    def conformal(self) -> MondrianConformal:
        """The conformal interval model (step 4)."""
        return self.estimator.conformal_

    @property
    def covariance(self) -> ExponentialCovariance | None:
        """The spatial error model (step 5)."""
        return self.estimator.covariance_

    @property
    def within_sd(self) -> dict[bool, float]:
        """Within-cluster sd of welfare, urban (True) and rural (False)."""
        return self.estimator.within_sd_

    def public(self) -> dict[str, pd.DataFrame]:
        """Publishable tables: gated, suppressed values blanked, private columns dropped."""
        d = self.settings.disclosure
        cell_cols = [
            c
            for c in (
                "admin_id",
                "parent_id",
                "urban",
                "population",
                "easting",
                "northing",
                "estimate",
                "lower",
                "upper",
                "poverty_rate",
                "poverty_lower",
                "poverty_upper",
            )
            if c in self.cells
        ]
        return {
            "cells": strip_private(self.cells[cell_cols]),
            "admin": public_table(
                self.admin,
                d,
                value_columns=ADMIN_VALUE_COLUMNS,
                direct_columns=ADMIN_DIRECT_COLUMNS,
            ),
            "admin1": public_table(
                self.admin1,
                d,
                value_columns=ADMIN_VALUE_COLUMNS,
                direct_columns=ADMIN_DIRECT_COLUMNS,
            ),
        }


def estimate_map(
    oof: pd.DataFrame,
    cells: pd.DataFrame,
    households: pd.DataFrame | None,
    clusters: pd.DataFrame | None,
    admin: pd.DataFrame,
    *,
    poverty_line: float | None = None,
    settings: EstimationSettings | None = None,
    rng: np.random.Generator | None = None,
) -> EstimateResult:
    """Calibrated cell estimates with intervals, area estimates, SAE and the disclosure gate.

    Parameters
    ----------
    oof:
        Out-of-fold cluster predictions indexed by ``cluster_id``: ``y``, ``pred``,
        ``urban``, ``easting``, ``northing`` (and ``fold``, ``admin_id``...).
    cells:
        Cell predictions indexed by ``cell_id``: ``pred`` (refitted model), ``population``,
        ``urban``, ``admin_id``, ``easting``, ``northing`` (``parent_id`` optional).
        Optional: ``households`` (counted households per cell, for the finite-population
        term) and ``pred_out_of_area`` (per cell, the prediction of the model refitted
        without the clusters of the cell's admin-2: the Fay-Herriot synthetic estimate).
    households, clusters:
        Survey households (``cluster_id, welfare, weight, hh_size``) and clusters
        (``cluster_id, admin_id, urban, n_households, weight``; optional ``pi`` or
        ``ea_households`` for the first-stage finite-population correction). Without
        households there is no noise correction, no direct estimate, no Fay-Herriot and
        no headcount.
    admin:
        Admin-2 units indexed by ``admin_id`` (or with that column) with ``parent_id``;
        an optional ``population`` column is census population, used as area weights.
    poverty_line:
        In the units of the target (log consumption); enables headcounts.
    settings:
        :class:`EstimationSettings` (defaults when None).
    rng:
        Generator of the simulations (default: from ``settings.seed``).

    Returns
    -------
    EstimateResult
        ``admin`` columns: ``parent_id, population, map_population, n_cells, estimate,
        lower, upper, estimate_sd, poverty_rate, poverty_lower, poverty_upper,
        poverty_sd, n_clusters, n_households, direct, direct_var, direct_poverty,
        direct_poverty_var, vardir, poverty_vardir, synthetic, synthetic_poverty,
        fh_mean, fh_mean_mse, fh_mean_cv,
        fh_mean_lower, fh_mean_upper, fh_poverty, fh_poverty_mse, fh_poverty_cv,
        fh_poverty_lower, fh_poverty_upper, fh_source, cv, publish, reason``.
    """
    s = settings or EstimationSettings()
    rng = rng if rng is not None else np.random.default_rng(s.seed)
    _check(oof, _OOF_COLUMNS, "oof")
    _check(cells, _CELL_COLUMNS, "cells")
    _admin_frame(admin)  # refused before any fitting
    estimator = CellEstimator(settings=s, poverty_line=poverty_line).fit(
        oof, cells, households, clusters
    )
    estimates = estimator.predict(cells, rng=rng)
    return estimate_areas(cells, estimates, estimator, households, clusters, admin, rng=rng)


def estimate_areas(
    cells: pd.DataFrame,
    estimates: CellEstimates,
    estimator: CellEstimator,
    households: pd.DataFrame | None,
    clusters: pd.DataFrame | None,
    admin: pd.DataFrame,
    *,
    rng: np.random.Generator,
) -> EstimateResult:
    """Steps 7-9 on cells a fitted ``estimator`` has estimated (``estimates``).

    ``rng`` continues the generator that estimated the cells, so a run that fits the
    estimator apart (:class:`~povertymap.mapping.MappingModel`) gets the numbers
    :func:`estimate_map` gives. Arguments as for :func:`estimate_map`.
    """
    _check(cells, _CELL_COLUMNS, "cells")
    adm = _admin_frame(admin)
    s = estimator.settings
    metrics = {**estimator.metrics_, "warnings": list(estimator.metrics_["warnings"])}
    a2, a1 = area_tables(cells, estimates, estimator, adm, rng=rng)
    fh_mean = fh_pov = None
    if households is not None and clusters is not None:
        fh_mean, fh_pov = small_area_estimates(
            a2, a1, cells, estimates, estimator, households, clusters, adm, metrics
        )
    a2, a1, metrics["publish"] = publish(a2, a1, s)
    return EstimateResult(
        cells=cells.assign(**{str(c): estimates.table[c] for c in estimates.table}),
        admin=a2,
        admin1=a1,
        metrics=metrics,
        settings=s,
        estimator=estimator,
        fh_mean=fh_mean,
        fh_poverty=fh_pov,
    )


# --------------------------------------------------------------------------- helpers


def _admin_frame(admin: pd.DataFrame) -> pd.DataFrame:
    adm = admin.set_index("admin_id") if "admin_id" in admin.columns else admin
    if "parent_id" not in adm:
        raise InputError(
            f"admin table lacks a parent_id column (columns: {', '.join(map(str, adm.columns))})",
            where="admin",
            fix="pass admin-2 units with the admin-1 id of each as parent_id",
        )
    if adm.index.has_duplicates:
        dup = adm.index[adm.index.duplicated()][0]
        raise InputError(f"admin id {dup!r} appears twice", where="admin", fix="deduplicate")
    cols = ["parent_id"] + [c for c in ("population", "name") if c in adm]
    return pd.DataFrame(adm[cols])


def _check(df: pd.DataFrame, cols: tuple[str, ...], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(
            f"{name} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})",
            where=name,
            fix=f"pass {name} with {', '.join(cols)}",
        )
