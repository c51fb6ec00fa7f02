"""The estimation stage: from model predictions to published cell and area estimates.

:func:`estimate_map` composes the steps of this package in order:

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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.stats import norm

from povertymap.errors import InputError, ModelError
from povertymap.estimate.aggregate import simulate_area_intervals, weighted_area_means
from povertymap.estimate.calibrate import LinearCalibrator
from povertymap.estimate.conformal import MondrianConformal
from povertymap.estimate.direct import (
    cluster_noise,
    direct_estimates,
    gvf_variances,
    household_size,
    realized_mean_factor,
    within_sd,
)
from povertymap.estimate.disclosure import gate, public_table, strip_private
from povertymap.estimate.headcount import (
    expected_headcount,
    headcount_interval,
    realized_headcount_interval,
)
from povertymap.estimate.sae import FayHerriot, benchmark
from povertymap.estimate.settings import EstimationSettings
from povertymap.estimate.spatial import (
    ExponentialCovariance,
    _infer_cell_size,
    empirical_variogram,
    fit_exponential,
    fit_nested,
    nested_variogram,
)

__all__ = [
    "ADMIN_DIRECT_COLUMNS",
    "ADMIN_VALUE_COLUMNS",
    "EstimateResult",
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
#: Direct (survey-only) estimates, withheld for areas under ``min_households``.
ADMIN_DIRECT_COLUMNS = (
    "direct",
    "direct_var",
    "direct_poverty",
    "direct_poverty_var",
    "vardir",
    "poverty_vardir",
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
    calibrator: LinearCalibrator
    conformal: MondrianConformal
    covariance: ExponentialCovariance | None = None
    fh_mean: FayHerriot | None = None
    fh_poverty: FayHerriot | None = None
    poverty_line: float | None = None
    within_sd: dict[bool, float] = field(default_factory=dict)

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
    adm = _admin_frame(admin)
    warnings: list[str] = []
    metrics: dict[str, Any] = {"level": s.level, "warnings": warnings}

    # 1. sampling noise of cluster means ------------------------------------------------
    noise_var = pd.Series(0.0, index=oof.index)
    sw: dict[bool, float] = {}
    if households is not None:
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
        metrics["noise"] = {
            "mean_noise_var": float(noise_var.mean()),
            "within_sd": {"urban": sw.get(True), "rural": sw.get(False)},
        }
        if "y" in oof:
            gap = (noise["mean"].reindex(oof.index) - oof["y"]).abs()
            metrics["noise"]["max_gap_y_vs_household_mean"] = float(gap.max())
    else:
        warnings.append("no households: cluster means are treated as noise-free")

    # 2. finite population: households per cell and the deviation of the realised mean
    n_hh_cell = None
    fp_var = None
    fp_factor = None
    if sw and s.cell_target == "realized" and households is not None:
        mean_size, kish = household_size(households)
        pop = cells["population"].to_numpy(dtype=float)
        populated = np.isfinite(pop) & (pop > 0)
        if "households" in cells:
            # counted households (census, registry) where given
            counted = cells["households"].to_numpy(dtype=float)
            guess = np.where(np.isfinite(counted), counted, pop / mean_size)
            source = "cells.households"
        else:
            guess = pop / mean_size
            source = "population / mean household size"
        # a populated cell holds at least one household, however few its people
        n_hh_cell = np.where(populated, np.maximum(guess, 1.0), 0.0)
        fp_factor = realized_mean_factor(households, n_hh_cell)
        cell_s = np.where(cells["urban"].astype(bool).to_numpy(), sw[True], sw[False])
        fp_var = cell_s**2 * fp_factor
        metrics["finite_population"] = {
            "mean_household_size": mean_size,
            "kish": kish,
            "households_from": source,
            "median_households": float(np.median(n_hh_cell[populated]))
            if populated.any()
            else float("nan"),
            "pop_weighted_var": float(np.average(fp_var[populated], weights=pop[populated]))
            if populated.any()
            else float("nan"),
        }
    elif s.cell_target == "realized":
        warnings.append(
            "no households: cell intervals cover the expected cell mean, not the realised one"
        )

    # 3. calibration -------------------------------------------------------------------
    fp_w = metrics.get("finite_population", {}).get("pop_weighted_var", 0.0)
    cal = LinearCalibrator(method=s.calibration).fit(
        oof["pred"], oof["y"], noise_var, target_extra_var=fp_w if np.isfinite(fp_w) else 0.0
    )
    oof_cal = cal.predict(oof["pred"].to_numpy())
    est = cal.predict(cells["pred"].to_numpy())
    metrics["calibration"] = {
        "method": s.calibration,
        "slope": cal.slope_,
        "intercept": cal.intercept_,
        **cal.report_,
        "cell_var_ratio": _cell_var_ratio(est, cells, cal.var_true_),
        **_cell_vs_cluster_predictions(cells, oof),
    }
    vr = metrics["calibration"]["cell_pred_var_ratio"]
    if np.isfinite(vr) and not 0.67 <= vr <= 1.5:
        warnings.append(
            f"cell predictions (population-weighted) have {vr:.2f} x the variance of the "
            "out-of-fold cluster predictions; clusters are drawn with probability "
            "proportional to population, so the two should agree. Compute cell features "
            "like cluster features (same buffer averaging), or calibration and intervals "
            "fitted on clusters will not hold on cells"
        )

    # 4. conformal intervals -----------------------------------------------------------
    resid = oof["y"].to_numpy(dtype=float) - oof_cal
    urban_cells = cells["urban"].astype(bool).to_numpy()
    at_cell = _cell_at_clusters(oof, cells)
    g_oof = g_cell = None
    if s.mondrian:
        g_cell = urban_cells
        g_oof = oof["urban"].astype(bool).to_numpy()
        if s.mondrian_groups == "map":
            # one taxonomy for calibration and test points: the map's urban flag
            found = at_cell >= 0
            g_oof = np.where(found, urban_cells[np.maximum(at_cell, 0)], g_oof)
            if not found.all():
                warnings.append(
                    f"{int((~found).sum())} clusters lie outside every map cell; they keep "
                    "their survey urban flag as conformal group"
                )
    conf = MondrianConformal(
        level=s.level,
        noise_correction=s.noise_correction,
        min_group_size=s.min_group_size,
    ).fit(resid, g_oof, noise_var.to_numpy() if s.noise_correction == "scale" else None)
    metrics["cell_vs_cluster"] = _cell_vs_cluster_gap(
        oof, cells, at_cell, cal, float(conf.sigma_["__pooled__"])
    )
    for note in metrics["cell_vs_cluster"].pop("warnings"):
        warnings.append(note)
    lower, upper = conf.predict_interval(est, g_cell, fp_var)
    sigma = conf.sigma(g_cell, len(cells))
    metrics["conformal"] = conf.summary()
    out_cells = cells.copy()
    out_cells["estimate"] = est
    out_cells["lower"] = lower
    out_cells["upper"] = upper
    out_cells["sigma"] = sigma

    # 5. spatial error model -----------------------------------------------------------
    cov = None
    if s.correlation == "variogram":
        cov, note = _error_covariance(oof, resid, noise_var.to_numpy(), conf, s)
        if note:
            warnings.append(note)
        metrics["spatial"] = {
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
    else:
        metrics["spatial"] = {"shared_share": 0.0, "note": "independent errors (too narrow)"}

    # 6. headcount per cell ------------------------------------------------------------
    do_poverty = poverty_line is not None and bool(sw)
    if poverty_line is not None and not sw:
        warnings.append("poverty line given but no households: headcounts are skipped")
    cell_sw = None
    if do_poverty and poverty_line is not None:
        cell_sw = np.where(urban_cells, sw[True], sw[False])
        out_cells["poverty_rate"] = expected_headcount(est, cell_sw, sigma, poverty_line)
        if n_hh_cell is not None:
            plo, phi = realized_headcount_interval(
                est,
                conf.halfwidth(g_cell, len(cells)),
                cell_sw,
                n_hh_cell,
                poverty_line,
                level=s.level,
                rng=rng,
            )
        else:
            plo, phi = headcount_interval(
                est - conf.halfwidth(g_cell, len(cells)),
                est + conf.halfwidth(g_cell, len(cells)),
                cell_sw,
                poverty_line,
            )
        out_cells["poverty_lower"] = plo
        out_cells["poverty_upper"] = phi

    # 7. area aggregates by simulation -------------------------------------------------
    parent = cells["parent_id"] if "parent_id" in cells else cells["admin_id"].map(adm["parent_id"])
    weights = _census_weights(cells, adm)
    weights = np.where(np.isfinite(est), weights, 0.0)
    ok = np.isfinite(est)
    sims = simulate_area_intervals(
        est[ok],
        sigma[ok],
        weights[ok],
        {"admin2": cells["admin_id"].to_numpy()[ok], "admin1": parent.to_numpy()[ok]},
        x=cells["easting"].to_numpy()[ok],
        y=cells["northing"].to_numpy()[ok],
        covariance=cov,
        n_sims=s.n_simulations,
        rng=rng,
        level=s.level,
        poverty_line=poverty_line if do_poverty else None,
        within_sd=None if cell_sw is None else cell_sw[ok],
        fp_factor=None if fp_factor is None else fp_factor[ok],
        area_effects=None
        if cov is None
        else {
            "admin2": (cells["admin_id"].astype(str).to_numpy()[ok], cov.area_share("admin2")),
            "admin1": (parent.astype(str).to_numpy()[ok], cov.area_share("admin1")),
        },
    )
    tables: dict[str, pd.DataFrame] = {}
    for lvl, area in (("admin2", cells["admin_id"]), ("admin1", parent)):
        t = pd.DataFrame(index=sims[lvl].index)
        t["map_population"] = cells["population"].groupby(area.to_numpy()).sum()
        t["n_cells"] = area.value_counts()
        t["estimate"] = weighted_area_means(est, weights, area)
        t["lower"] = sims[lvl]["lower"]
        t["upper"] = sims[lvl]["upper"]
        t["estimate_sd"] = sims[lvl]["sd"]
        if do_poverty:
            t["poverty_rate"] = weighted_area_means(out_cells["poverty_rate"], weights, area)
            t["poverty_lower"] = sims[lvl]["poverty_lower"]
            t["poverty_upper"] = sims[lvl]["poverty_upper"]
            t["poverty_sd"] = sims[lvl]["poverty_sd"]
        tables[lvl] = t
    a2 = adm[["parent_id"]].join(tables["admin2"], how="outer")
    a2["parent_id"] = a2["parent_id"].fillna(a2.index.to_series().map(_first_parent(cells)))
    a2["population"] = adm["population"] if "population" in adm else a2["map_population"]
    a2["population"] = a2["population"].fillna(a2["map_population"])
    a1 = tables["admin1"].copy()
    a1["population"] = a2.groupby("parent_id")["population"].sum()
    a2.index.name, a1.index.name = "admin_id", "parent_id"

    # 8. direct estimates and Fay-Herriot ----------------------------------------------
    fh_mean = fh_pov = None
    if households is not None and clusters is not None:
        cl = clusters.set_index("cluster_id") if "cluster_id" in clusters.columns else clusters
        cl = cl.copy()
        if "parent_id" not in cl:
            cl["parent_id"] = cl["admin_id"].map(adm["parent_id"])
        cl["national"] = "all"
        for lvl_table, by in ((a2, "admin_id"), (a1, "parent_id")):
            d = direct_estimates(
                households,
                cl,
                by=by,
                poverty_line=poverty_line if do_poverty else None,
                person_weighted=s.person_weighted,
                strata=s.design_strata,
            )
            for col in d.columns:
                lvl_table[col] = d[col]
            lvl_table["n_clusters"] = lvl_table["n_clusters"].fillna(0).astype(int)
            lvl_table["n_households"] = lvl_table["n_households"].fillna(0).astype(int)
        national = direct_estimates(
            households,
            cl,
            by="national",
            poverty_line=poverty_line if do_poverty else None,
            person_weighted=s.person_weighted,
            strata=s.design_strata,
        ).iloc[0]
        metrics["national_direct"] = {k: float(v) for k, v in national.items()}
        # the synthetic estimate (FH covariate): out-of-area predictions when given, as
        # Fay-Herriot needs it independent of the area's direct estimate; else the map's
        a2["synthetic"] = a2["estimate"]
        if do_poverty:
            a2["synthetic_poverty"] = a2["poverty_rate"]
        if "pred_out_of_area" in cells:
            est_oa = cal.predict(cells["pred_out_of_area"].to_numpy(dtype=float))
            est_oa = np.where(np.isfinite(est_oa), est_oa, est)
            a2["synthetic"] = weighted_area_means(est_oa, weights, cells["admin_id"])
            if do_poverty and cell_sw is not None and poverty_line is not None:
                p_oa = expected_headcount(est_oa, cell_sw, sigma, poverty_line)
                a2["synthetic_poverty"] = weighted_area_means(p_oa, weights, cells["admin_id"])
            metrics["fh_synthetic"] = "out-of-area predictions (pred_out_of_area)"
        else:
            metrics["fh_synthetic"] = "map estimate (model fitted on every cluster)"
            warnings.append(
                "Fay-Herriot uses the map as synthetic estimate, but the map's model was "
                "fitted on the same clusters, so it carries part of each area's sampling "
                "error: the model's assumption of independent synthetic and direct errors "
                "fails, the area variance is underestimated and the MSE too small. Pass "
                "pred_out_of_area (cell predictions of models fitted without the cell's "
                "admin-2 clusters)"
            )
        fh_mean, fh_metrics = _fay_herriot(
            a2, "direct", "direct_var", "element_var", "synthetic", "vardir", "fh_mean", s, None
        )
        metrics["fh_mean"] = fh_metrics
        if do_poverty:
            syn_pov = "synthetic_poverty"
            p_model = a2[syn_pov].clip(0.01, 0.99)
            fh_pov, fh_pmetrics = _fay_herriot(
                a2,
                "direct_poverty",
                "direct_poverty_var",
                "poverty_element_var",
                syn_pov,
                "poverty_vardir",
                "fh_poverty",
                s,
                (p_model * (1 - p_model)).to_numpy(),
            )
            metrics["fh_poverty"] = fh_pmetrics
        if s.benchmark != "none":
            w = a2["population"].to_numpy(dtype=float)
            if fh_mean is not None:
                a2["fh_mean"] = benchmark(
                    a2["fh_mean"], w, float(national["direct"]), method="difference"
                )
            if fh_pov is not None:
                a2["fh_poverty"] = benchmark(
                    a2["fh_poverty"], w, float(national["direct_poverty"]), method=s.benchmark
                )
                a2["fh_poverty"] = a2["fh_poverty"].clip(0, 1)
        z = float(norm.ppf(0.5 + s.level / 2))
        for pre in ("fh_mean", "fh_poverty"):
            if pre in a2:
                se = np.sqrt(a2[f"{pre}_mse"])
                a2[f"{pre}_cv"] = se / a2[pre].abs()
                a2[f"{pre}_lower"] = a2[pre] - z * se
                a2[f"{pre}_upper"] = a2[pre] + z * se
        if "fh_poverty" in a2:
            a2["fh_poverty_lower"] = a2["fh_poverty_lower"].clip(0, 1)
            a2["fh_poverty_upper"] = a2["fh_poverty_upper"].clip(0, 1)
    for t in (a2, a1):
        for col in ("n_clusters", "n_households"):
            t[col] = t[col].fillna(0).astype(int) if col in t else 0

    # 9. precision and the disclosure gate ---------------------------------------------
    a2["cv"] = _area_cv(a2, prefer_fh=True)
    a1["cv"] = _area_cv(a1, prefer_fh=False, min_households=s.disclosure.min_households)
    a2 = gate(a2, s.disclosure, direct_columns=ADMIN_DIRECT_COLUMNS)
    a1 = gate(a1, s.disclosure, direct_columns=ADMIN_DIRECT_COLUMNS)
    metrics["publish"] = {
        "admin2": a2["publish"].value_counts().to_dict(),
        "admin1": a1["publish"].value_counts().to_dict(),
    }
    return EstimateResult(
        cells=out_cells,
        admin=a2,
        admin1=a1,
        metrics=metrics,
        settings=s,
        calibrator=cal,
        conformal=conf,
        covariance=cov,
        fh_mean=fh_mean,
        fh_poverty=fh_pov,
        poverty_line=poverty_line,
        within_sd=sw,
    )


# --------------------------------------------------------------------------- helpers


def _fay_herriot(
    a2: pd.DataFrame,
    direct: str,
    direct_var: str,
    element_var: str,
    synthetic: str,
    vardir_col: str,
    out: str,
    s: EstimationSettings,
    element_var_model: np.ndarray | None,
) -> tuple[FayHerriot | None, dict[str, Any]]:
    """Fit FH on the sampled admin-2 areas of ``a2`` and write ``out``, ``out_mse``."""
    if direct not in a2 or synthetic not in a2:
        return None, {"skipped": "no direct or synthetic estimates"}
    try:
        psi, deff = gvf_variances(
            a2[direct_var].to_numpy(dtype=float),
            a2[element_var].to_numpy(dtype=float),
            a2["n_households"].fillna(0).to_numpy(dtype=float),
            a2["n_clusters"].fillna(0).to_numpy(dtype=float),
            element_var_model=element_var_model,
            mode=s.variance_smoothing,
        )
        a2[vardir_col] = np.where(a2[direct].notna(), psi, np.nan)
        X = np.column_stack([np.ones(len(a2)), a2[synthetic].to_numpy(dtype=float)])
        has_x = np.isfinite(X).all(axis=1)
        y = a2[direct].to_numpy(dtype=float)
        v = a2[vardir_col].to_numpy(dtype=float)
        fh = FayHerriot(method=s.fh_method).fit(X[has_x], y[has_x], v[has_x])
    except ModelError as exc:
        return None, {"skipped": str(exc)}
    est = np.full(len(a2), np.nan)
    mse = np.full(len(a2), np.nan)
    est[has_x], mse[has_x] = fh.predict_with_mse(X[has_x], y[has_x], v[has_x])
    a2[out] = est
    a2[f"{out}_mse"] = mse
    sampled = np.isfinite(y) & np.isfinite(v)
    a2["fh_source"] = np.where(sampled, "eblup", np.where(has_x, "synthetic", "none"))
    with np.errstate(invalid="ignore"):
        better = mse[sampled] < v[sampled]
        dv = a2[direct_var].to_numpy(dtype=float)[sampled]
        better_design = (mse[sampled] < dv)[np.isfinite(dv)]
    return fh, {
        "method": s.fh_method,
        "beta": [float(b) for b in fh.beta_],
        "sigma2_v": fh.sigma2_v_,
        "n_areas": fh.n_areas_,
        "converged": fh.converged_,
        "deff": deff,
        "mean_gamma": float(np.mean(fh.gamma(v[sampled]))),
        "share_mse_below_vardir": float(np.mean(better)) if better.size else float("nan"),
        "share_mse_below_design_var": float(np.mean(better_design))
        if better_design.size
        else float("nan"),
    }


def _error_covariance(
    oof: pd.DataFrame,
    resid: np.ndarray,
    noise_var: np.ndarray,
    conf: MondrianConformal,
    s: EstimationSettings,
) -> tuple[ExponentialCovariance, str | None]:
    """Covariance of model errors from the OOF residual variogram.

    With ``area_effects`` and admin ids on the clusters, the variogram is split by
    whether pairs share their admin-2/admin-1 unit and admin effects are fitted beside
    the exponential field (:func:`fit_nested`).
    """
    total = float(conf.sigma_["__pooled__"] ** 2)
    for col in ("easting", "northing"):
        if col not in oof:
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


def _cell_at_clusters(oof: pd.DataFrame, cells: pd.DataFrame) -> np.ndarray:
    """Row of the map cell holding each cluster's (published) location; -1 if none.

    The nearest cell centre within 0.75 cell sizes (the half-diagonal is 0.71), so
    clusters outside the grid find none.
    """
    if not {"easting", "northing"} <= set(oof.columns) or len(cells) == 0:
        return np.full(len(oof), -1, dtype=np.int64)
    cx = cells["easting"].to_numpy(dtype=float)
    cy = cells["northing"].to_numpy(dtype=float)
    px = oof["easting"].to_numpy(dtype=float)
    py = oof["northing"].to_numpy(dtype=float)
    ok = np.isfinite(px) & np.isfinite(py)
    out = np.full(len(oof), -1, dtype=np.int64)
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
    sigma: float,
) -> dict[str, Any]:
    """How the map's prediction at each cluster's cell differs from its OOF prediction.

    Conformal intervals assume a cell's error is like a cluster's held-out error. Where
    cell features are computed differently from cluster features (another buffer
    radius, another urban definition), the map's prediction at a surveyed place differs
    systematically from the out-of-fold prediction there, and no held-out residual shows
    that error. The gap (calibrated units) is reported by survey and map urban flag;
    a class whose mean gap exceeds half the model-error sd is warned about. The refitted
    model has seen the cluster, so only the systematic part (the mean) is meaningful.
    """
    found = at_cell >= 0
    out: dict[str, Any] = {"n_found": int(found.sum()), "groups": {}, "warnings": []}
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
            mean = float(gap[sel].mean())
            sd = float(gap[sel].std(ddof=1)) if n > 1 else float("nan")
            key = f"survey_{name[su]}_map_{name[mu]}"
            out["groups"][key] = {"n": n, "mean_gap": mean, "sd_gap": sd}
            se = sd / np.sqrt(n) if n > 1 else float("inf")
            if n >= 5 and abs(mean) > 0.5 * sigma and abs(mean) > 3 * se:
                out["warnings"].append(
                    f"at {n} {name[su]} clusters in {name[mu]} map cells the map predicts "
                    f"{mean:+.3f} from their out-of-fold prediction ({abs(mean) / sigma:.1f} "
                    "model-error sd): cell features are not computed like cluster features "
                    "there (e.g. a buffer radius chosen by another urban definition), so "
                    "such cells are biased and their intervals, fitted on cluster "
                    "residuals, will not cover them. Featurise cells and clusters by one rule"
                )
    return out


def _area_cv(t: pd.DataFrame, *, prefer_fh: bool, min_households: int = 0) -> pd.Series:
    """CV of the published headcount: FH where fitted, else direct or map-based."""
    cv = pd.Series(np.nan, index=t.index)
    if "poverty_sd" in t:
        with np.errstate(invalid="ignore", divide="ignore"):
            cv = t["poverty_sd"] / t["poverty_rate"]
    elif "estimate_sd" in t:
        with np.errstate(invalid="ignore", divide="ignore"):
            cv = t["estimate_sd"] / t["estimate"].abs()
    if prefer_fh and "fh_poverty_cv" in t:
        cv = t["fh_poverty_cv"].where(t["fh_poverty_cv"].notna(), cv)
    elif not prefer_fh and "direct_poverty_var" in t:
        with np.errstate(invalid="ignore", divide="ignore"):
            dcv = np.sqrt(t["direct_poverty_var"]) / t["direct_poverty"]
        ok = dcv.notna() & (t["n_households"] >= min_households)
        cv = dcv.where(ok, cv)
    return cv.astype(float)


def _census_weights(cells: pd.DataFrame, adm: pd.DataFrame) -> np.ndarray:
    """Cell population rescaled so each admin-2 sums to its census population."""
    pop = cells["population"].to_numpy(dtype=float)
    pop = np.where(np.isfinite(pop) & (pop > 0), pop, 0.0)
    if "population" not in adm:
        return pop
    tot = pd.Series(pop, index=cells.index).groupby(cells["admin_id"].to_numpy()).sum()
    census = adm["population"].astype(float)
    factor = (census / tot).replace([np.inf, -np.inf], np.nan)
    f = cells["admin_id"].map(factor).to_numpy(dtype=float)
    return np.where(np.isfinite(f), pop * f, pop)


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


def _first_parent(cells: pd.DataFrame) -> pd.Series:
    if "parent_id" not in cells:
        return pd.Series(dtype=object)
    return cells.groupby("admin_id")["parent_id"].first()


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
