"""Cell estimates: calibrated values, conformal intervals and headcounts of every map cell.

:class:`CellEstimator` is fitted once on a run's out-of-fold cluster predictions, its
training cells and the survey (steps 1-5 of :mod:`.stage`), and then applied to any set of
cells, the training area's or another's (steps 2 and 6 per cell): the fitted state is a
calibrator, the shift that benchmarks the training area to the survey's national mean, a
Mondrian conformal model, the within-cluster standard deviations, the survey's household
sizes and the spatial error model, nothing tied to the cells it was fitted on. Applying
it to the training cells gives exactly the run's map, so a saved model maps again what it
mapped.

Columns it reads from cells: ``pred`` (the raw model prediction), ``population``,
``urban``, and optionally ``households`` (counted households per cell).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from povertymap.config.estimate import EstimationSettings
from povertymap.errors import ModelError
from povertymap.estimate.calibrate import LinearCalibrator
from povertymap.estimate.conformal import MondrianConformal
from povertymap.estimate.direct import (
    cluster_noise,
    direct_estimates,
    household_size,
    realized_mean_factor,
    within_sd,
)
from povertymap.estimate.headcount import (
    expected_headcount,
    headcount_interval,
    realized_headcount_interval,
)
from povertymap.estimate.spatial import (
    ExponentialCovariance,
    _infer_cell_size,
    between_unit_variance,
    empirical_variogram,
    fit_exponential,
    fit_nested,
    implied_between_unit_variance,
    nested_variogram,
)

__all__ = ["CellEstimates", "CellEstimator", "HouseholdSizes"]

#: Columns :meth:`CellEstimator.predict` writes.
ESTIMATE_COLUMNS = (
    "estimate",
    "lower",
    "upper",
    "sigma",
    "poverty_rate",
    "poverty_lower",
    "poverty_upper",
)


@dataclass(frozen=True)
class HouseholdSizes:
    """The survey's household sizes and design weights (no ids, no welfare).

    What the finite-population term needs of the survey (:func:`household_size`,
    :func:`realized_mean_factor`), kept so cells can be estimated without the survey.
    """

    table: pd.DataFrame
    """``hh_size`` (when the survey has it) and ``weight`` (when it has it), per household."""

    @classmethod
    def of(cls, households: pd.DataFrame) -> HouseholdSizes:
        """The sizes and weights of ``households``."""
        cols = [c for c in ("hh_size", "weight") if c in households]
        return cls(households[cols].reset_index(drop=True).copy())


@dataclass(frozen=True)
class CellEstimates:
    """Estimates of a set of cells and the per-cell terms the area simulation reuses."""

    table: pd.DataFrame
    """``estimate, lower, upper, sigma`` (and ``poverty_rate, poverty_lower,
    poverty_upper`` with a poverty line and households), indexed like the cells."""
    within_sd: np.ndarray | None
    """Within-cell sd of welfare per cell (None without households)."""
    fp_factor: np.ndarray | None
    """Finite-population factor per cell (None unless the target is the realised mean)."""


@dataclass
class CellEstimator:
    """Calibration, intervals and headcounts of cells, fitted on out-of-fold predictions.

    Parameters follow :class:`EstimationSettings` and the poverty line (in the target's
    units). Fitted attributes: ``calibrator_``, ``conformal_``, ``within_sd_``
    (``{True: urban, False: rural}``, empty without households), ``sizes_``
    (:class:`HouseholdSizes` or None), ``covariance_`` (the spatial error model or None),
    ``noise_var_`` (per OOF cluster), ``residuals_`` (calibrated OOF residuals) and
    ``metrics_`` (everything reported in ``metrics.json["estimate"]`` by these steps).
    """

    settings: EstimationSettings = field(default_factory=EstimationSettings)
    poverty_line: float | None = None

    #: The benchmark shift of every cell estimate and its sampling variance
    #: (:meth:`_fit_benchmark`); an estimator pickled before it existed has none.
    offset_ = 0.0
    offset_var_ = 0.0

    def fit(
        self,
        oof: pd.DataFrame,
        cells: pd.DataFrame,
        households: pd.DataFrame | None,
        clusters: pd.DataFrame | None,
    ) -> CellEstimator:
        """Fit on out-of-fold predictions ``oof`` (``y, pred, urban``, ``easting,
        northing``...) and the training ``cells``; see :func:`.stage.estimate_map`."""
        s = self.settings
        warnings: list[str] = []
        self.metrics_: dict[str, Any] = {"level": s.level, "warnings": warnings}
        noise_var, sw = self._fit_noise(oof, households, clusters, warnings)
        self.within_sd_ = sw
        self.sizes_ = HouseholdSizes.of(households) if households is not None else None
        self.noise_var_ = noise_var
        self._finite_population(cells, report=True, warnings=warnings)
        self._fit_calibration(oof, cells, noise_var, warnings)
        self._fit_benchmark(cells, households, clusters, warnings)
        self._fit_conformal(oof, cells, noise_var, warnings)
        self._fit_covariance(oof, warnings)
        self.metrics_["estimand"] = self.estimand
        if self.poverty_line is not None and not sw:
            warnings.append("poverty line given but no households: headcounts are skipped")
        return self

    # -- fitting steps -------------------------------------------------------------------
    def _fit_noise(
        self,
        oof: pd.DataFrame,
        households: pd.DataFrame | None,
        clusters: pd.DataFrame | None,
        warnings: list[str],
    ) -> tuple[pd.Series, dict[bool, float]]:
        """Step 1: sampling noise of each cluster mean, and the within-cluster sd."""
        s = self.settings
        noise_var = pd.Series(0.0, index=oof.index)
        sw: dict[bool, float] = {}
        if households is None:
            return self._declared_noise(oof, clusters, warnings), sw
        noise = cluster_noise(households, clusters, person_weighted=s.person_weighted)
        noise_var = noise["noise_var"].reindex(oof.index)
        if noise_var.isna().any():
            warnings.append(
                f"{int(noise_var.isna().sum())} OOF clusters have no households; their "
                "sampling noise is set to the median"
            )
            noise_var = noise_var.fillna(float(noise["noise_var"].median()))
        if clusters is not None:
            sw = within_sd(
                households,
                clusters,
                person_weighted=s.person_weighted,
                measurement_error_sd=s.measurement_error_sd,
            )
        self.metrics_["noise"] = {
            "mean_noise_var": float(noise_var.mean()),
            "within_sd": {"urban": sw.get(True), "rural": sw.get(False)},
        }
        if "y" in oof:
            gap = (noise["mean"].reindex(oof.index) - oof["y"]).abs()
            self.metrics_["noise"]["max_gap_y_vs_household_mean"] = float(gap.max())
        return noise_var, sw

    def _declared_noise(
        self, oof: pd.DataFrame, clusters: pd.DataFrame | None, warnings: list[str]
    ) -> pd.Series:
        """Step 1 without households: ``within_sd² / n`` per cluster mean, from the
        ``within_sd`` setting and the clusters' household counts; zero without them."""
        declared = self.settings.within_sd
        counts = None
        if clusters is not None and "n_households" in clusters:
            counts = clusters.set_index("cluster_id")["n_households"].reindex(oof.index)
        if declared is None or counts is None or counts.isna().all():
            warnings.append(
                "no households: the sampling noise of the cluster means stays in the "
                "residuals, so intervals lean wide; give estimate.within_sd and the "
                "clusters' household counts (survey.clusters.households) to remove it"
            )
            return pd.Series(0.0, index=oof.index)
        sd = np.where(oof["urban"].astype(bool), declared.urban, declared.rural)
        noise_var = pd.Series(sd**2, index=oof.index) / counts.fillna(counts.median())
        self.metrics_["noise"] = {
            "mean_noise_var": float(noise_var.mean()),
            "source": "estimate.within_sd and the clusters' household counts",
        }
        return noise_var

    def _finite_population(
        self, cells: pd.DataFrame, *, report: bool = False, warnings: list[str] | None = None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Step 2: households per cell and the variance of the realised cell mean.

        Returns ``(fp_var, fp_factor)`` per cell, or ``(None, None)`` when the target is
        the expected mean or the survey gave no households.
        """
        s = self.settings
        if not (self.within_sd_ and s.cell_target == "realized" and self.sizes_ is not None):
            if s.cell_target == "realized" and warnings is not None:
                warnings.append(
                    "no households: cell intervals cover the expected cell mean, not the "
                    "realised one"
                )
            return None, None
        sizes = self.sizes_.table
        mean_size, kish = household_size(sizes)
        pop = cells["population"].to_numpy(dtype=float)
        populated = np.isfinite(pop) & (pop > 0)
        n_hh_cell = self._households_per_cell(cells)
        fp_factor = realized_mean_factor(sizes, n_hh_cell)
        fp_var = self._cell_within_sd(cells) ** 2 * fp_factor
        if report:
            self.metrics_["finite_population"] = {
                "mean_household_size": mean_size,
                "kish": kish,
                "households_from": "cells.households"
                if "households" in cells
                else "population / mean household size",
                "median_households": float(np.median(n_hh_cell[populated]))
                if populated.any()
                else float("nan"),
                "pop_weighted_var": float(np.average(fp_var[populated], weights=pop[populated]))
                if populated.any()
                else float("nan"),
            }
        return fp_var, fp_factor

    def _fit_calibration(
        self, oof: pd.DataFrame, cells: pd.DataFrame, noise_var: pd.Series, warnings: list[str]
    ) -> None:
        """Step 3: calibration on OOF predictions, aiming at the realised cells' spread."""
        s = self.settings
        fp_w = self.metrics_.get("finite_population", {}).get("pop_weighted_var", 0.0)
        moved = _moved_predictions(oof)
        added = 0.0
        if moved.shape[1]:
            # what re-displacing the clusters adds to the spread of their predictions
            pred = oof["pred"].to_numpy(dtype=float)
            added = max(float(np.mean(np.nanvar(moved, axis=0)) - np.nanvar(pred)), 0.0)
        cal = LinearCalibrator(method=s.calibration).fit(
            oof["pred"],
            oof["y"],
            noise_var,
            target_extra_var=fp_w if np.isfinite(fp_w) else 0.0,
            pred_noise_var=added,
        )
        self.calibrator_ = cal
        est = cal.predict(cells["pred"].to_numpy())
        self.metrics_["calibration"] = {
            "method": s.calibration,
            "slope": cal.slope_,
            "intercept": cal.intercept_,
            "pred_position_var": added,
            **cal.report_,
            "cell_var_ratio": _cell_var_ratio(est, cells, cal.var_true_),
            **_cell_vs_cluster_predictions(cells, oof),
        }
        vr = self.metrics_["calibration"]["cell_pred_var_ratio"]
        if np.isfinite(vr) and not 0.67 <= vr <= 1.5:
            warnings.append(
                f"cell predictions (population-weighted) have {vr:.2f} x the variance of the "
                "out-of-fold cluster predictions; clusters are drawn with probability "
                "proportional to population, so the two should agree. Compute cell features "
                "like cluster features (same buffer averaging), or calibration and intervals "
                "fitted on clusters will not hold on cells"
            )

    def _fit_benchmark(
        self,
        cells: pd.DataFrame,
        households: pd.DataFrame | None,
        clusters: pd.DataFrame | None,
        warnings: list[str],
    ) -> None:
        """Step 3b: the shift that gives the cells the survey's mean (``map_benchmark``).

        A difference benchmark: the survey's design-based direct estimate of the national
        mean (:func:`direct_estimates`: weights, household sizes and strata, so a mean over
        people like the map's) minus the population-weighted mean of the calibrated cell
        predictions. The calibration centres the clusters' residuals, not the cells':
        cells are featurised at their own place and scale, clusters in buffers around
        displaced points, and the cells' mean drifts. The shift's variance is the direct
        estimate's. Without households there is no person-level direct estimate and
        nothing is shifted.
        """
        s = self.settings
        if s.map_benchmark == "none":
            return
        if households is None or clusters is None:
            warnings.append(
                "no households: the map is not benchmarked to the survey's direct national "
                "mean (estimate.map_benchmark)"
            )
            return
        cl = clusters.set_index("cluster_id") if "cluster_id" in clusters.columns else clusters
        national = direct_estimates(
            households,
            cl.assign(_national="all"),
            by="_national",
            person_weighted=s.person_weighted,
            strata=s.design_strata,
        ).iloc[0]
        pop = cells["population"].to_numpy(dtype=float)
        est = self.calibrator_.predict(cells["pred"].to_numpy(dtype=float))
        mapped = np.isfinite(est) & np.isfinite(pop) & (pop > 0)
        if not mapped.any() or not np.isfinite(national["direct"]):
            return
        map_mean = float(np.average(est[mapped], weights=pop[mapped]))
        self.offset_ = float(national["direct"]) - map_mean
        self.offset_var_ = float(np.nan_to_num(national["direct_var"]))
        self.metrics_["map_benchmark"] = {
            "survey_mean": float(national["direct"]),
            "map_mean": map_mean,
            "shift": self.offset_,
            "shift_sd": float(np.sqrt(self.offset_var_)),
        }

    def calibrated(self, pred: np.ndarray) -> np.ndarray:
        """Cell estimates of raw predictions ``pred``: calibrated, then benchmarked."""
        return self.calibrator_.predict(np.asarray(pred, dtype=float)) + self.offset_

    def _fit_conformal(
        self, oof: pd.DataFrame, cells: pd.DataFrame, noise_var: pd.Series, warnings: list[str]
    ) -> None:
        """Step 4: Mondrian conformal scores of the calibrated OOF residuals."""
        s = self.settings
        cal = self.calibrator_
        self.residuals_ = oof["y"].to_numpy(dtype=float) - cal.predict(oof["pred"].to_numpy())
        at_cell = _cell_at_clusters(oof, cells)
        g_oof = None
        if s.mondrian:
            g_oof = oof["urban"].astype(bool).to_numpy()
            if s.mondrian_groups == "map":
                # one taxonomy for calibration and test points: the map's urban flag
                urban_cells = cells["urban"].astype(bool).to_numpy()
                found = at_cell >= 0
                g_oof = np.where(found, urban_cells[np.maximum(at_cell, 0)], g_oof)
                if not found.all():
                    warnings.append(
                        f"{int((~found).sum())} clusters lie outside every map cell; they "
                        "keep their survey urban flag as conformal group"
                    )
        self.position_var_, position = _position_variance(
            oof, self.residuals_, cal, g_oof, s.min_group_size
        )
        if position:
            self.metrics_["position"] = position
        self.conformal_ = MondrianConformal(
            level=s.level,
            noise_correction=s.noise_correction,
            min_group_size=s.min_group_size,
        ).fit(
            self.residuals_,
            g_oof,
            noise_var.to_numpy() + self.position_var_ if s.noise_correction == "scale" else None,
        )
        self.metrics_["cell_vs_cluster"] = _cell_vs_cluster_gap(oof, cells, at_cell, cal)
        self.metrics_["conformal"] = self.conformal_.summary()

    def _fit_covariance(self, oof: pd.DataFrame, warnings: list[str]) -> None:
        """Step 5: the spatial error model from the OOF residual variogram."""
        s = self.settings
        self.covariance_: ExponentialCovariance | None = None
        if s.correlation != "variogram":
            self.metrics_["spatial"] = {
                "shared_share": 0.0,
                "note": "independent errors (too narrow)",
            }
            return
        cov, note = _error_covariance(
            oof, self.residuals_, self.noise_var_.to_numpy(), self.conformal_, s,
            position_var=float(np.mean(self.position_var_)),
        )  # fmt: skip
        if note:
            warnings.append(note)
        cov, shared = (
            _measured_unit_effects(cov, oof, self.residuals_) if s.area_effects else (cov, {})
        )
        self.covariance_ = cov
        self.metrics_["spatial"] = {
            **shared,
            "nugget": cov.nugget,
            "partial_sill": cov.partial_sill,
            "range_m": cov.range_m,
            "long_sill": cov.long_sill,
            "long_range_m": cov.long_range_m,
            "shared_share": cov.shared_share,
            "long_share": cov.long_share,
            "admin2_sill": cov.admin2_sill,
            "admin1_sill": cov.admin1_sill,
        }

    # -- applying ------------------------------------------------------------------------
    @property
    def estimand(self) -> str:
        """What the cell intervals are for: ``"realized"`` (the mean over the cell's
        actual households; needs the survey's households) or ``"expected"`` (the
        superpopulation mean of a cell like it)."""
        realized = self.settings.cell_target == "realized" and bool(self.within_sd_)
        return "realized" if realized and self.sizes_ is not None else "expected"

    @property
    def does_poverty(self) -> bool:
        """Whether headcounts are made (a poverty line and the survey's households)."""
        return self.poverty_line is not None and bool(self.within_sd_)

    def _groups(self, cells: pd.DataFrame) -> np.ndarray | None:
        return cells["urban"].astype(bool).to_numpy() if self.settings.mondrian else None

    def _cell_within_sd(self, cells: pd.DataFrame) -> np.ndarray:
        urban = cells["urban"].astype(bool).to_numpy()
        return np.where(urban, self.within_sd_[True], self.within_sd_[False])

    def predict(self, cells: pd.DataFrame, *, rng: np.random.Generator) -> CellEstimates:
        """Calibrated estimates, intervals and headcounts of ``cells`` (steps 2, 4 and 6).

        ``rng`` drives the simulated intervals of realised headcounts: the same generator
        state gives the same intervals.
        """
        s = self.settings
        fp_var, fp_factor = self._finite_population(cells)
        est = self.calibrated(cells["pred"].to_numpy())
        g = self._groups(cells)
        lower, upper = self.conformal_.predict_interval(est, g, fp_var)
        sigma = self.conformal_.sigma(g, len(cells))
        out = pd.DataFrame(
            {"estimate": est, "lower": lower, "upper": upper, "sigma": sigma}, index=cells.index
        )
        if not self.does_poverty or self.poverty_line is None:
            return CellEstimates(out, None, fp_factor)
        line = self.poverty_line
        cell_sw = self._cell_within_sd(cells)
        half = self.conformal_.halfwidth(g, len(cells))
        out["poverty_rate"] = expected_headcount(est, cell_sw, sigma, line)
        if fp_factor is not None:
            n_hh = self._households_per_cell(cells)
            plo, phi = realized_headcount_interval(
                est, half, cell_sw, n_hh, line, level=s.level, rng=rng
            )
        else:
            plo, phi = headcount_interval(est - half, est + half, cell_sw, line)
        out["poverty_lower"] = plo
        out["poverty_upper"] = phi
        return CellEstimates(out, cell_sw, fp_factor)

    def _households_per_cell(self, cells: pd.DataFrame) -> np.ndarray:
        """Households per cell: counted ones (census, registry) where ``cells`` has
        them, else people over the mean household size; at least one where people live."""
        assert self.sizes_ is not None  # only called with households
        mean_size, _ = household_size(self.sizes_.table)
        pop = cells["population"].to_numpy(dtype=float)
        populated = np.isfinite(pop) & (pop > 0)
        guess = pop / mean_size
        if "households" in cells:
            counted = cells["households"].to_numpy(dtype=float)
            guess = np.where(np.isfinite(counted), counted, guess)
        return np.where(populated, np.maximum(guess, 1.0), 0.0)

    def headcount(self, pred: np.ndarray, cells: pd.DataFrame) -> np.ndarray:
        """Expected headcount of raw predictions ``pred`` of ``cells``, calibrated and
        with this model's error sd (used for out-of-area and reference maps)."""
        if not self.does_poverty or self.poverty_line is None:
            raise ModelError(
                "this estimator makes no headcounts",
                fix="give a poverty line and survey households with welfare",
            )
        est = self.calibrated(pred)
        sigma = self.conformal_.sigma(self._groups(cells), len(cells))
        return np.asarray(
            expected_headcount(est, self._cell_within_sd(cells), sigma, self.poverty_line)
        )


# --------------------------------------------------------------------------- helpers


def _moved_predictions(oof: pd.DataFrame) -> np.ndarray:
    """The OOF predictions at re-displaced cluster locations, (clusters, draws)."""
    columns = [c for c in oof.columns if str(c).startswith("pred_moved_")]
    return oof[columns].to_numpy(dtype=float).reshape(len(oof), len(columns))


def _position_variance(
    oof: pd.DataFrame,
    resid: np.ndarray,
    cal: LinearCalibrator,
    groups: np.ndarray | None,
    min_group_size: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per cluster, the error variance its displaced coordinates add, and its figures.

    The clusters' published locations are displaced; the map's cells are not. Each fold
    model also predicted its clusters from features at locations displaced once more
    (``oof`` columns ``pred_moved_<i>``, from
    :func:`~povertymap.models.sensitivity.redisplaced_features`).
    Offsets add in variance, so the second displacement doubles the first's; the rise of
    the mean squared residual from one to two is the share of one displacement, and
    extrapolating to none (SIMEX: Cook & Stefanski 1994, linear in the offset variance)
    removes it once: ``delta_g = mean_g(r_moved^2) - mean_g(r^2)``, per Mondrian group
    (pooled for a small group), at least 0. A linear extrapolation errs on the small
    side where the error grows slower than the offset variance (rough fields: by the
    distance, not its square); it errs on the large side where the fold models predict
    moved clusters worse than one more displacement explains (a ridge on point-sensitive
    features: docs/methods.md), which is why ``position_draws`` defaults to 0.
    """
    n = len(resid)
    moved = cal.predict(_moved_predictions(oof))
    if not moved.shape[1]:
        return np.zeros(n), {}
    rise = np.mean((oof["y"].to_numpy(dtype=float)[:, None] - moved) ** 2, axis=1) - resid**2
    ok = np.isfinite(rise)
    pooled = max(float(np.mean(rise[ok])), 0.0) if ok.any() else 0.0
    out = np.full(n, pooled)
    figures: dict[str, Any] = {"draws": moved.shape[1], "pooled": pooled}
    if groups is not None:
        for key, name in ((True, "urban"), (False, "rural")):
            m = groups == key
            if (m & ok).sum() >= min_group_size:
                out[m] = max(float(np.mean(rise[m & ok])), 0.0)
            if m.any():
                figures[name] = float(out[m][0])
    figures["share_of_residual"] = float(np.mean(out) / np.mean(resid**2)) if n else 0.0
    return out, figures


def _error_covariance(
    oof: pd.DataFrame,
    resid: np.ndarray,
    noise_var: np.ndarray,
    conf: MondrianConformal,
    s: EstimationSettings,
    position_var: float = 0.0,
) -> tuple[ExponentialCovariance, str | None]:
    """Covariance of model errors from the OOF residual variogram.

    With ``area_effects`` and admin ids on the clusters, the variogram is split by
    whether pairs share their admin-2/admin-1 unit and admin effects are fitted beside
    the exponential field (:func:`fit_nested`). ``position_var``, the error variance the
    clusters' displaced coordinates add (:func:`_position_variance`), is in the
    residuals' variogram as a local error: it comes out of the nugget, so that the cells'
    error variance is the conformal one and the shared (area) part is what the residuals
    showed.
    """
    total = float(conf.sigma_["__pooled__"] ** 2)
    if position_var > 0:
        cov, note = _error_covariance(oof, resid, noise_var, conf, s)
        scaled = cov.scaled((total + position_var) / total if total > 0 else 0.0)
        local = replace(scaled, nugget=max(scaled.nugget - position_var, 0.0))
        return local.scaled(total / local.sill if local.sill > 0 else 0.0), note
    if not {"easting", "northing"} <= set(oof.columns):
        return (
            ExponentialCovariance(0.0, total, 10 * s.variogram_max_m),
            "oof has no easting/northing: errors taken as fully shared within "
            "10 x variogram_max_m (conservative)",
        )
    nv = noise_var if s.noise_correction == "scale" else None
    note = None
    f = None
    if s.area_effects and "admin_id" in oof:
        try:
            f = fit_nested(
                nested_variogram(
                    oof["easting"],
                    oof["northing"],
                    resid,
                    nv,
                    oof["admin_id"].astype(str).to_numpy(),
                    oof["parent_id"].astype(str).to_numpy() if "parent_id" in oof else None,
                    max_dist=s.variogram_max_m,
                    n_bins=s.variogram_bins,
                )
            )
        except ModelError as exc:
            note = f"admin effects not fitted ({exc}); isotropic variogram used"
    try:
        if f is None:
            vg = empirical_variogram(
                oof["easting"],
                oof["northing"],
                resid,
                nv,
                max_dist=s.variogram_max_m,
                n_bins=s.variogram_bins,
            )
            f = fit_exponential(vg)
        # the variogram gives the shape (shares, range); its own sill (the plateau, which
        # also holds non-stationary regional differences) is rescaled to the conformal
        # error variance. Anchoring the sill at the zero-lag variance instead loses
        # the regional part and under-covers area means (measured: 0.85 vs 0.91).
        return f.scaled(total / f.sill if f.sill > 0 else 0.0), note
    except ModelError as exc:
        return (
            ExponentialCovariance(0.0, total, 10 * s.variogram_max_m),
            f"variogram not fitted ({exc}); errors taken as fully shared (conservative)",
        )


def _measured_unit_effects(
    cov: ExponentialCovariance, oof: pd.DataFrame, resid: np.ndarray
) -> tuple[ExponentialCovariance, dict[str, Any]]:
    """``cov`` with its admin-2 effect raised to what the units' mean residuals show.

    The variogram fit splits the error variance between a nugget, a field and admin
    effects from pair semivariances; with a few hundred clusters it often puts nearly all
    of it in the nugget (on the base robustness world: an admin-2 sill of 0 and area
    intervals covering 0.75). The admin-2 units' mean out-of-fold residuals measure the
    shared part directly (:func:`between_unit_variance`). Where that exceeds the model's
    own expectation of the same estimator at the same clusters
    (:func:`implied_between_unit_variance`), the difference moves from the nugget to the
    admin-2 effect: a cell's error variance is unchanged and an area mean's is what the
    units showed. Where it is lower the model is kept (one survey's estimate is noisy:
    intervals are never narrowed on it).
    """
    if not {"admin_id", "easting", "northing"} <= set(oof.columns):
        return cov, {}
    units = oof["admin_id"].to_numpy()
    measured = between_unit_variance(resid, units)
    implied = implied_between_unit_variance(
        cov,
        oof["easting"],
        oof["northing"],
        units,
        oof["parent_id"].to_numpy() if "parent_id" in oof else None,
    )
    if not (np.isfinite(measured) and np.isfinite(implied)):
        return cov, {}
    added = float(np.clip(measured - implied, 0.0, cov.nugget))
    lifted = replace(cov, nugget=cov.nugget - added, admin2_sill=cov.admin2_sill + added)
    return lifted, {"unit_shared": {"measured": measured, "model": implied, "added": added}}


def _cell_at_clusters(oof: pd.DataFrame, cells: pd.DataFrame) -> np.ndarray:
    """Row of the map cell holding each cluster's (published) location; -1 if none.

    The nearest cell centre within 0.75 cell sizes (the half-diagonal is 0.71), so
    clusters outside the grid find none.
    """
    out = np.full(len(oof), -1, dtype=np.int64)
    if not {"easting", "northing"} <= set(oof.columns) or len(cells) == 0:
        return out
    cx = cells["easting"].to_numpy(dtype=float)
    cy = cells["northing"].to_numpy(dtype=float)
    px = oof["easting"].to_numpy(dtype=float)
    py = oof["northing"].to_numpy(dtype=float)
    ok = np.isfinite(px) & np.isfinite(py)
    good = np.isfinite(cx) & np.isfinite(cy)
    if not ok.any() or not good.any():
        return out
    size = _infer_cell_size(cx[good], cy[good])
    d, idx = cKDTree(np.column_stack([cx[good], cy[good]])).query(np.column_stack([px[ok], py[ok]]))
    rows = np.flatnonzero(good)[idx]
    out[np.flatnonzero(ok)] = np.where(d <= 0.75 * size, rows, -1)
    return out


def _cell_vs_cluster_gap(
    oof: pd.DataFrame,
    cells: pd.DataFrame,
    at_cell: np.ndarray,
    cal: LinearCalibrator,
) -> dict[str, Any]:
    """How the map's prediction at each cluster's cell differs from its OOF prediction.

    Reported (calibrated units) by survey and map urban flag. Clusters and cells are
    featurised by one urban rule (:mod:`povertymap.features.urban`), so a class's mean gap
    is what refitting on that class's own clusters learnt (survey-urban clusters the rule
    calls rural, say, pull the map up where they are), not a difference of features.
    """
    found = at_cell >= 0
    out: dict[str, Any] = {"n_found": int(found.sum()), "groups": {}}
    if not found.any():
        return out
    gap = cal.predict(cells["pred"].to_numpy(dtype=float)[at_cell[found]]) - cal.predict(
        oof["pred"].to_numpy(dtype=float)[found]
    )
    survey = oof["urban"].astype(bool).to_numpy()[found]
    mapped = cells["urban"].astype(bool).to_numpy()[at_cell[found]]
    name = {True: "urban", False: "rural"}
    for su in (False, True):
        for mu in (False, True):
            sel = (survey == su) & (mapped == mu) & np.isfinite(gap)
            n = int(sel.sum())
            if n == 0:
                continue
            out["groups"][f"survey_{name[su]}_map_{name[mu]}"] = {
                "n": n,
                "mean_gap": float(gap[sel].mean()),
                "sd_gap": float(gap[sel].std(ddof=1)) if n > 1 else float("nan"),
            }
    return out


def _cell_var_ratio(est: np.ndarray, cells: pd.DataFrame, var_true: float) -> float:
    """Population-weighted variance of cell estimates over the clusters' true variance.

    Clusters are drawn with probability proportional to population, so their spread
    estimates the population-weighted spread of cells; a ratio far from the cluster one
    warns that cell features differ from cluster (buffer) features.
    """
    w = cells["population"].to_numpy(dtype=float)
    ok = np.isfinite(est) & np.isfinite(w) & (w > 0)
    if not ok.any() or var_true <= 0:
        return float("nan")
    m = np.average(est[ok], weights=w[ok])
    return float(np.average((est[ok] - m) ** 2, weights=w[ok]) / var_true)


def _cell_vs_cluster_predictions(cells: pd.DataFrame, oof: pd.DataFrame) -> dict[str, float]:
    """Population-weighted moments of cell predictions against the OOF predictions."""
    p = cells["pred"].to_numpy(dtype=float)
    w = cells["population"].to_numpy(dtype=float)
    ok = np.isfinite(p) & np.isfinite(w) & (w > 0)
    q = oof["pred"].to_numpy(dtype=float)
    q = q[np.isfinite(q)]
    if not ok.any() or q.size < 2 or np.var(q) <= 0:
        return {"cell_pred_var_ratio": float("nan"), "cell_pred_mean_shift_sd": float("nan")}
    m = np.average(p[ok], weights=w[ok])
    v = np.average((p[ok] - m) ** 2, weights=w[ok])
    return {
        "cell_pred_var_ratio": float(v / np.var(q)),
        "cell_pred_mean_shift_sd": float((m - q.mean()) / np.sqrt(np.var(q))),
    }
