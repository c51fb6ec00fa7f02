"""Area estimates: simulated admin intervals, direct estimates, Fay-Herriot, the gate.

Steps 7-9 of :mod:`.stage`, applied to the cell estimates of a fitted
:class:`~povertymap.estimate.cells.CellEstimator`:

- :func:`area_tables`: population-weighted (census-benchmarked) means per admin-2 and
  admin-1 area, with intervals simulated from the spatial error model;
- :func:`small_area_estimates`: design-based direct estimates and Fay-Herriot EBLUPs of
  mean welfare and the headcount per admin-2, on out-of-area synthetic estimates when the
  cells carry ``pred_out_of_area``;
- :func:`publish`: the CV of what is published and the disclosure gate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from povertymap.config.estimate import EstimationSettings
from povertymap.errors import ModelError
from povertymap.estimate.aggregate import simulate_area_intervals, weighted_area_means
from povertymap.estimate.cells import CellEstimates, CellEstimator
from povertymap.estimate.direct import direct_estimates, gvf_variances
from povertymap.estimate.disclosure import gate
from povertymap.estimate.headcount import expected_headcount
from povertymap.estimate.sae import FayHerriot, benchmark

__all__ = ["ADMIN_DIRECT_COLUMNS", "area_tables", "publish", "small_area_estimates"]

#: Direct (survey-only) estimates, withheld for areas under ``min_households``.
ADMIN_DIRECT_COLUMNS = (
    "direct",
    "direct_var",
    "direct_poverty",
    "direct_poverty_var",
    "vardir",
    "poverty_vardir",
)


def area_tables(
    cells: pd.DataFrame,
    estimates: CellEstimates,
    estimator: CellEstimator,
    adm: pd.DataFrame,
    *,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Step 7: admin-2 and admin-1 tables of map estimates with simulated intervals.

    ``cells`` has ``population, admin_id, easting, northing`` (``parent_id`` optional);
    ``adm`` is the admin-2 frame (``parent_id``, optional census ``population``).
    """
    s = estimator.settings
    cov = estimator.covariance_
    est = estimates.table["estimate"].to_numpy()
    sigma = estimates.table["sigma"].to_numpy()
    do_poverty = "poverty_rate" in estimates.table
    parent = cells["parent_id"] if "parent_id" in cells else cells["admin_id"].map(adm["parent_id"])
    ok = np.isfinite(est)
    weights = np.where(ok, _census_weights(cells, adm), 0.0)
    cell_sw, fp_factor = estimates.within_sd, estimates.fp_factor
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
        poverty_line=estimator.poverty_line if do_poverty else None,
        within_sd=None if cell_sw is None else cell_sw[ok],
        fp_factor=None if fp_factor is None else fp_factor[ok],
        area_effects=None
        if cov is None
        else {
            "admin2": (cells["admin_id"].astype(str).to_numpy()[ok], cov.area_share("admin2")),
            "admin1": (parent.astype(str).to_numpy()[ok], cov.area_share("admin1")),
            # the benchmark shift's sampling error, the same in every cell
            "benchmark": (np.zeros(int(ok.sum())), _benchmark_share(estimator, sigma[ok])),
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
            rate = estimates.table["poverty_rate"]
            t["poverty_rate"] = weighted_area_means(rate, weights, area)
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
    return a2, a1


def _benchmark_share(estimator: CellEstimator, sigma: np.ndarray) -> float:
    """The benchmark shift's variance as a share of the mean cell error variance, taken
    from the independent part (the nugget's share, which it cannot exceed)."""
    mean_var = float(np.mean(sigma**2)) if sigma.size else 0.0
    free = 1.0 - estimator.covariance_.shared_share if estimator.covariance_ else 0.0
    return min(estimator.offset_var_ / mean_var, free) if mean_var > 0 else 0.0


def small_area_estimates(
    a2: pd.DataFrame,
    a1: pd.DataFrame,
    cells: pd.DataFrame,
    estimates: CellEstimates,
    estimator: CellEstimator,
    households: pd.DataFrame,
    clusters: pd.DataFrame,
    adm: pd.DataFrame,
    metrics: dict[str, Any],
) -> tuple[FayHerriot | None, FayHerriot | None]:
    """Step 8: direct estimates per area and Fay-Herriot EBLUPs per admin-2 (in place).

    Adds the direct and Fay-Herriot columns to ``a2``/``a1`` and their figures to
    ``metrics``; returns the fitted models of mean welfare and of the headcount.
    """
    s = estimator.settings
    line = estimator.poverty_line if estimator.does_poverty else None
    cl = clusters.set_index("cluster_id") if "cluster_id" in clusters.columns else clusters
    cl = cl.copy()
    if "parent_id" not in cl:
        cl["parent_id"] = cl["admin_id"].map(adm["parent_id"])
    cl["national"] = "all"

    def direct(by: str) -> pd.DataFrame:
        return direct_estimates(
            households,
            cl,
            by=by,
            poverty_line=line,
            person_weighted=s.person_weighted,
            strata=s.design_strata,
        )

    for table, by in ((a2, "admin_id"), (a1, "parent_id")):
        d = direct(by)
        for col in d.columns:
            table[col] = d[col]
        table["n_clusters"] = table["n_clusters"].fillna(0).astype(int)
        table["n_households"] = table["n_households"].fillna(0).astype(int)
    national = direct("national").iloc[0]
    metrics["national_direct"] = {k: float(v) for k, v in national.items()}
    _synthetic(a2, cells, estimates, estimator, adm, metrics)
    fh_mean, metrics["fh_mean"] = _fay_herriot(
        a2, "direct", "direct_var", "element_var", "synthetic", "vardir", "fh_mean", s, None
    )
    fh_pov = None
    if line is not None:
        p_model = a2["synthetic_poverty"].clip(0.01, 0.99)
        fh_pov, metrics["fh_poverty"] = _fay_herriot(
            a2,
            "direct_poverty",
            "direct_poverty_var",
            "poverty_element_var",
            "synthetic_poverty",
            "poverty_vardir",
            "fh_poverty",
            s,
            (p_model * (1 - p_model)).to_numpy(),
        )
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
    return fh_mean, fh_pov


def _synthetic(
    a2: pd.DataFrame,
    cells: pd.DataFrame,
    estimates: CellEstimates,
    estimator: CellEstimator,
    adm: pd.DataFrame,
    metrics: dict[str, Any],
) -> None:
    """The Fay-Herriot covariate per admin-2: out-of-area predictions when the cells have
    them (FH needs it independent of the area's direct estimate), else the map's."""
    a2["synthetic"] = a2["estimate"]
    line = estimator.poverty_line if estimator.does_poverty else None
    if line is not None:
        a2["synthetic_poverty"] = a2["poverty_rate"]
    if "pred_out_of_area" not in cells:
        metrics["fh_synthetic"] = "map estimate (model fitted on every cluster)"
        metrics["warnings"].append(
            "Fay-Herriot uses the map as synthetic estimate, but the map's model was "
            "fitted on the same clusters, so it carries part of each area's sampling "
            "error: the model's assumption of independent synthetic and direct errors "
            "fails, the area variance is underestimated and the MSE too small. Pass "
            "pred_out_of_area (cell predictions of models fitted without the cell's "
            "admin-2 clusters)"
        )
        return
    est = estimates.table["estimate"].to_numpy()
    weights = np.where(np.isfinite(est), _census_weights(cells, adm), 0.0)
    est_oa = estimator.calibrated(cells["pred_out_of_area"].to_numpy(dtype=float))
    est_oa = np.where(np.isfinite(est_oa), est_oa, est)
    a2["synthetic"] = weighted_area_means(est_oa, weights, cells["admin_id"])
    if line is not None and estimates.within_sd is not None:
        sigma = estimates.table["sigma"].to_numpy()
        p_oa = expected_headcount(est_oa, estimates.within_sd, sigma, line)
        a2["synthetic_poverty"] = weighted_area_means(p_oa, weights, cells["admin_id"])
    metrics["fh_synthetic"] = "out-of-area predictions (pred_out_of_area)"


def publish(
    a2: pd.DataFrame, a1: pd.DataFrame, s: EstimationSettings
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Step 9: the CV of each area's published headcount and the disclosure gate."""
    for t in (a2, a1):
        for col in ("n_clusters", "n_households"):
            t[col] = t[col].fillna(0).astype(int) if col in t else 0
    a2["cv"] = _area_cv(a2, prefer_fh=True)
    a1["cv"] = _area_cv(a1, prefer_fh=False, min_households=s.disclosure.min_households)
    a2 = gate(a2, s.disclosure, direct_columns=ADMIN_DIRECT_COLUMNS)
    a1 = gate(a1, s.disclosure, direct_columns=ADMIN_DIRECT_COLUMNS)
    counts = {
        "admin2": a2["publish"].value_counts().to_dict(),
        "admin1": a1["publish"].value_counts().to_dict(),
    }
    return a2, a1, counts


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


def _first_parent(cells: pd.DataFrame) -> pd.Series:
    if "parent_id" not in cells:
        return pd.Series(dtype=object)
    return cells.groupby("admin_id")["parent_id"].first()
