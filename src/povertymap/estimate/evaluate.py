"""Scoring an :class:`EstimateResult` against a known truth (the synthetic world).

Coverage is the share of true values inside the intervals (target: the nominal level,
within binomial noise), overall and by urban/rural for cells; calibration is the slope of
the truth on the estimate and the variance ratio estimate/truth across cells; small-area
accuracy compares the Fay-Herriot EBLUP, the direct estimate and the map (synthetic)
estimate with the true area values in sampled areas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from povertymap.errors import InputError
from povertymap.estimate.stage import EstimateResult

__all__ = ["evaluate_against_truth"]


def evaluate_against_truth(
    result: EstimateResult,
    truth_cells: pd.DataFrame,
    truth_admin: pd.DataFrame,
    *,
    truth_admin1: pd.DataFrame | None = None,
    value: str = "mean_log_consumption",
    poverty: str = "poverty_rate",
    admin_key: str | None = None,
    expected: str = "expected_mean_log_consumption",
) -> dict[str, Any]:
    """Coverage, calibration and SAE accuracy figures against the truth.

    ``truth_cells`` is indexed by ``cell_id`` (or has that column) with ``value``,
    ``poverty`` and optionally ``urban``; ``truth_admin`` is indexed by admin-2 id (or
    has an ``admin_key`` / ``admin_id`` / ``admin2_id`` column) with the same columns
    (an admin table with ``headcount`` instead of ``poverty`` is read as such).
    Only populated cells count (``population > 0`` in the result), unweighted and
    population-weighted. Cells are scored against the truth of the intervals' estimand
    (``result.estimator.estimand``: ``value``, the realised mean, or ``expected``, the
    superpopulation one); where the truth has the other too, coverage and calibration
    against it are added (``cell_coverage_expected`` / ``cell_coverage_realized``): the
    gap is what the households of small cells add.
    """
    tc = _indexed(truth_cells, ("cell_id",))
    estimand = result.estimator.estimand
    # the intervals are scored against the truth of their own estimand, the other beside
    own, other = (value, expected) if estimand == "realized" else (expected, value)
    if own not in tc:  # a truth without the expected mean: score on the realised one
        own, other = value, expected
    c = result.cells.join(tc[[k for k in (value, poverty, expected) if k in tc]], rsuffix="_true")
    c = c.assign(_truth=c[own] if own in c and own not in result.cells else c[f"{own}_true"])
    if "urban_true" in c:
        c["urban"] = c["urban_true"]
    pop = c["population"].to_numpy(dtype=float)
    ok = np.isfinite(c["_truth"].to_numpy(dtype=float)) & (pop > 0) & c["estimate"].notna()
    c = c[ok]
    if c.empty:
        raise InputError(
            "no populated cell of the result has a true value; check that truth_cells is "
            "indexed by the same cell_id",
            where="truth_cells",
        )
    out: dict[str, Any] = {
        "n_cells": len(c),
        "level": result.settings.level,
        "estimand": estimand,
        "scored_against": own,
    }
    truth = c["_truth"].to_numpy(dtype=float)
    w = c["population"].to_numpy(dtype=float)
    cover = (c["lower"].to_numpy() <= truth) & (truth <= c["upper"].to_numpy())
    urban = c["urban"].astype(bool).to_numpy()
    out["cell_coverage"] = _by_group(cover, urban)
    out["cell_coverage_pop_weighted"] = float(np.average(cover, weights=w))
    out["cell_width"] = float(np.mean(c["upper"] - c["lower"]))
    out["cell_rmse"] = float(np.sqrt(np.mean((c["estimate"].to_numpy() - truth) ** 2)))
    if poverty in tc and "poverty_lower" in c:
        pt = c[f"{poverty}_true"].to_numpy(dtype=float)
        good = np.isfinite(pt)
        pc = (c["poverty_lower"].to_numpy() <= pt + 1e-12) & (pt <= c["poverty_upper"] + 1e-12)
        out["cell_poverty_coverage"] = _by_group(pc[good], urban[good])
        out["cell_poverty_mae"] = float(
            np.mean(np.abs(c["poverty_rate"].to_numpy()[good] - pt[good]))
        )
    out["calibration"] = {
        "after": _slope_ratio(c["estimate"].to_numpy(dtype=float), truth, w),
        "before": _slope_ratio(c["pred"].to_numpy(dtype=float), truth, w),
    }
    ex = other if other in c and other not in result.cells else f"{other}_true"
    if ex in c:
        et = c[ex].to_numpy(dtype=float)
        good = np.isfinite(et)
        ec = (c["lower"].to_numpy() <= et) & (et <= c["upper"].to_numpy())
        name = "expected" if other == expected else "realized"
        out[f"cell_coverage_{name}"] = _by_group(ec[good], urban[good])
        out["calibration"][f"after_{name}"] = _slope_ratio(
            c["estimate"].to_numpy(dtype=float)[good], et[good], w[good]
        )
    out["admin2"] = _area_scores(result.admin, truth_admin, value, poverty, admin_key)
    if truth_admin1 is not None:
        out["admin1"] = _area_scores(result.admin1, truth_admin1, value, poverty, admin_key)
    return out


def _area_scores(
    table: pd.DataFrame,
    truth: pd.DataFrame,
    value: str,
    poverty: str,
    key: str | None,
) -> dict[str, Any]:
    keys = (key,) if key else ("admin_id", "admin2_id", "parent_id", "admin1_id")
    t = _matching_index(truth, keys, table.index)
    if poverty not in t and "headcount" in t:
        t = t.rename(columns={"headcount": poverty})
    a = table.join(t[[k for k in (value, poverty) if k in t]], rsuffix="_true")
    out: dict[str, Any] = {}
    for name, est, lo, hi, true_col in (
        ("mean", "estimate", "lower", "upper", value),
        ("poverty", "poverty_rate", "poverty_lower", "poverty_upper", poverty),
        ("fh_mean", "fh_mean", "fh_mean_lower", "fh_mean_upper", value),
        ("fh_poverty", "fh_poverty", "fh_poverty_lower", "fh_poverty_upper", poverty),
    ):
        tc = true_col if true_col in a and true_col not in table else f"{true_col}_true"
        if not {est, lo, hi, tc} <= set(a.columns):
            continue
        tv = a[tc].to_numpy(dtype=float)
        e = a[est].to_numpy(dtype=float)
        ok = np.isfinite(tv) & np.isfinite(e)
        if not ok.any():
            continue
        cov = (a[lo].to_numpy()[ok] <= tv[ok]) & (tv[ok] <= a[hi].to_numpy()[ok])
        out[name] = {
            "coverage": float(cov.mean()),
            "n": int(ok.sum()),
            "rmse": float(np.sqrt(np.mean((e[ok] - tv[ok]) ** 2))),
            "mean_width": float(np.mean(a[hi].to_numpy()[ok] - a[lo].to_numpy()[ok])),
        }
    for target, direct, var, fh, mse, synth in (
        ("mean", "direct", "direct_var", "fh_mean", "fh_mean_mse", "estimate"),
        (
            "poverty",
            "direct_poverty",
            "direct_poverty_var",
            "fh_poverty",
            "fh_poverty_mse",
            "poverty_rate",
        ),
    ):
        true_col = value if target == "mean" else poverty
        tc = true_col if true_col in a and true_col not in table else f"{true_col}_true"
        if direct not in a or fh not in a or tc not in a:
            continue
        tv = a[tc].to_numpy(dtype=float)
        d = a[direct].to_numpy(dtype=float)
        f = a[fh].to_numpy(dtype=float)
        sy = a[synth].to_numpy(dtype=float)
        sampled = np.isfinite(d) & np.isfinite(tv) & np.isfinite(f)
        if not sampled.any():
            continue
        v = a[var].to_numpy(dtype=float)
        m = a[mse].to_numpy(dtype=float)
        both = sampled & np.isfinite(v)
        vd = a["vardir" if target == "mean" else "poverty_vardir"].to_numpy(dtype=float)
        out[f"sae_{target}"] = {
            "n_sampled": int(sampled.sum()),
            "rmse_direct": _rmse(d[sampled], tv[sampled]),
            "rmse_fh": _rmse(f[sampled], tv[sampled]),
            "rmse_synthetic": _rmse(sy[sampled], tv[sampled]),
            "share_fh_closer": float(np.mean(np.abs(f - tv)[sampled] < np.abs(d - tv)[sampled])),
            "share_mse_below_design_var": float(np.mean(m[both] < v[both]))
            if both.any()
            else float("nan"),
            "share_mse_below_vardir": float(np.mean(m[sampled] < vd[sampled])),
            "rmse_fh_unsampled": _rmse(
                f[~sampled & np.isfinite(f) & np.isfinite(tv)],
                tv[~sampled & np.isfinite(f) & np.isfinite(tv)],
            ),
        }
    return out


def _slope_ratio(est: np.ndarray, truth: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """Slope of truth on estimate and variance ratio, unweighted and population-weighted."""
    ok = np.isfinite(est) & np.isfinite(truth)
    e, t, ww = est[ok], truth[ok], w[ok]
    out: dict[str, float] = {}
    for tag, wt in (("", np.ones_like(ww)), ("_pop", ww)):
        me, mt = np.average(e, weights=wt), np.average(t, weights=wt)
        ve = np.average((e - me) ** 2, weights=wt)
        vt = np.average((t - mt) ** 2, weights=wt)
        cv = np.average((e - me) * (t - mt), weights=wt)
        out[f"slope{tag}"] = float(cv / ve) if ve > 0 else float("nan")
        out[f"var_ratio{tag}"] = float(ve / vt) if vt > 0 else float("nan")
        out[f"r2{tag}"] = float(cv**2 / (ve * vt)) if ve > 0 and vt > 0 else float("nan")
    return out


def _by_group(hit: np.ndarray, urban: np.ndarray) -> dict[str, float]:
    return {
        "overall": float(hit.mean()),
        "urban": float(hit[urban].mean()) if urban.any() else float("nan"),
        "rural": float(hit[~urban].mean()) if (~urban).any() else float("nan"),
        "n_urban": int(urban.sum()),
        "n_rural": int((~urban).sum()),
    }


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else float("nan")


def _matching_index(df: pd.DataFrame, keys: tuple[str, ...], target: pd.Index) -> pd.DataFrame:
    """``df`` indexed by whichever of its index or ``keys`` columns matches ``target``."""
    if df.index.isin(target).any():
        return df
    for k in keys:
        if k in df.columns and df[k].isin(target).any():
            return df.set_index(k)
    raise InputError(
        f"no truth row matches the result's area ids (e.g. {list(target[:3])}); index the "
        "truth table by the same admin ids",
        where="truth_admin",
    )


def _indexed(df: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    for k in keys:
        if k in df.columns:
            return df.set_index(k)
    return df
