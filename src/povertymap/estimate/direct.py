"""What the survey alone says: cluster sampling noise, within-cluster dispersion, and
design-based direct estimates per area with their variances.

Clusters are the primary sampling units (PSUs). Area means are Hájek ratio estimators
``sum(w y) / sum(w)`` and their variances the with-replacement PSU linearisation
(Wolter 2007, ch. 6; Cochran 1977, 11.x)::

    z_i = w_i (y_i - ybar_d) / W_d,    t_k = sum_{i in k} z_i,
    v_d = n_d / (n_d - 1) * sum_k (t_k - tbar_d)^2          (n_d clusters in area d)

Strata are ignored (a conservative simplification) and there is no finite-population
correction. An area with a single cluster has no design variance; its variance comes from a
design-effect generalised variance function (:func:`gvf_variances`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from povertymap.errors import ModelError, SurveyError

__all__ = [
    "cluster_noise",
    "direct_estimates",
    "gvf_variances",
    "household_size",
    "household_weights",
    "realized_mean_factor",
    "within_sd",
]


def household_weights(
    households: pd.DataFrame,
    clusters: pd.DataFrame | None = None,
    *,
    person_weighted: bool = True,
) -> pd.Series:
    """Analysis weight per household: design weight (x household size for people).

    The household ``weight`` column is used when present, else the cluster's ``weight``,
    else 1. Household size multiplies it when ``person_weighted`` (headcounts and mean log
    consumption *per person*).
    """
    _require(households, ["cluster_id", "welfare"], "households")
    if "weight" in households:
        w = households["weight"].astype(float)
    elif clusters is not None and "weight" in _cluster_frame(clusters):
        cw = _cluster_frame(clusters)["weight"].astype(float)
        w = households["cluster_id"].map(cw).astype(float)
    else:
        w = pd.Series(1.0, index=households.index)
    if person_weighted and "hh_size" in households:
        w = w * households["hh_size"].astype(float)
    bad = (~np.isfinite(w.to_numpy()) | (w.to_numpy() <= 0)).astype(bool)
    if bad.any():
        row = households.index[np.flatnonzero(bad)[0]]
        raise SurveyError(
            f"{int(bad.sum())} household weight(s) are missing or not positive "
            f"(first at row {row!r}: {w.loc[row]!r})",
            where="households.weight",
            fix="give every household a positive design weight and household size",
        )
    return w.rename("w")


def cluster_noise(
    households: pd.DataFrame,
    clusters: pd.DataFrame | None = None,
    *,
    person_weighted: bool = True,
) -> pd.DataFrame:
    """Sampling noise of each cluster mean, from its households.

    Returns a frame indexed by ``cluster_id`` with ``n_households``, ``mean`` (weighted
    cluster mean of welfare), ``element_var`` (weighted within-cluster variance),
    ``noise_var_direct`` (the cluster's own linearised variance of its mean, NaN with one
    household) and ``noise_var``: the smoothed variance ``s2_g * sum(w^2) / sum(w)^2``
    with ``s2_g`` the within-cluster variance pooled over the cluster's urban/rural group
    (when ``clusters`` gives ``urban``) or over all clusters. The pooled form is what
    downstream steps use: 25 households give a per-cluster variance with a relative error
    near 30 %, which would add noise to every normalised conformal score.
    """
    w = household_weights(households, clusters, person_weighted=person_weighted)
    df = pd.DataFrame(
        {"cluster_id": households["cluster_id"].to_numpy(), "y": households["welfare"], "w": w}
    )
    if not np.isfinite(df["y"].to_numpy(dtype=float)).all():
        raise SurveyError(
            "household welfare has missing or infinite values",
            where="households.welfare",
            fix="drop households without measured consumption before estimation",
        )
    g = df.groupby("cluster_id", sort=True)
    sw = g["w"].sum()
    sw2 = (df["w"] ** 2).groupby(df["cluster_id"]).sum()
    mean = (df["w"] * df["y"]).groupby(df["cluster_id"]).sum() / sw
    dev = df["y"] - df["cluster_id"].map(mean)
    n = g.size().astype(float)
    wss = (df["w"] * dev**2).groupby(df["cluster_id"]).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        element_var = (wss / sw) * n / (n - 1.0)
        direct = n / (n - 1.0) * ((df["w"] ** 2) * dev**2).groupby(df["cluster_id"]).sum() / sw**2
    element_var = element_var.where(n > 1)
    direct = direct.where(n > 1)
    out = pd.DataFrame(
        {
            "n_households": n.astype(int),
            "mean": mean,
            "element_var": element_var,
            "noise_var_direct": direct,
        }
    )
    groups = _urban_of(out.index, clusters)
    pooled = _pooled_var(out["element_var"], out["n_households"], groups)
    kish = sw2 / sw**2
    out["noise_var"] = pooled.to_numpy() * kish.to_numpy()
    out.index.name = "cluster_id"
    return out


def within_sd(
    households: pd.DataFrame,
    clusters: pd.DataFrame,
    *,
    person_weighted: bool = True,
    measurement_error_sd: float = 0.0,
) -> dict[bool, float]:
    """Within-cluster standard deviation of welfare by urban (True) / rural (False).

    The pooled within-cluster variance of measured log consumption, less the known
    measurement-error variance. It stands in for the within-cell dispersion of true log
    consumption in the headcount formula (:mod:`povertymap.estimate.headcount`); an
    enumeration area is more homogeneous than a 1 km cell, measurement error makes it
    less so, and the two biases partly cancel.
    """
    noise = cluster_noise(households, clusters, person_weighted=person_weighted)
    urban = _urban_of(noise.index, clusters)
    out: dict[bool, float] = {}
    me2 = measurement_error_sd**2
    for flag in (True, False):
        mask = (urban == flag).to_numpy() & noise["element_var"].notna().to_numpy()
        if not mask.any():
            continue
        n = noise["n_households"].to_numpy()[mask]
        v = noise["element_var"].to_numpy()[mask]
        pooled = float(np.sum((n - 1) * v) / np.sum(n - 1))
        if pooled <= me2:
            raise ModelError(
                f"measurement_error_sd={measurement_error_sd} implies an error variance "
                f"{me2:.4f} at least as large as the within-cluster variance {pooled:.4f} "
                f"({'urban' if flag else 'rural'} clusters)",
            )
        out[flag] = float(np.sqrt(pooled - me2))
    if not out:
        raise ModelError(
            "no cluster has two or more households, so the within-cluster dispersion of "
            "welfare cannot be estimated; pass households with their cluster_id"
        )
    for flag in (True, False):  # a group absent from the survey borrows the other's value
        out.setdefault(flag, out[not flag])
    return out


def household_size(households: pd.DataFrame) -> tuple[float, float]:
    """Mean household size and the Kish factor ``E[m^2] / E[m]^2`` (design-weighted).

    A person-weighted mean over ``H`` households of sizes ``m_i`` has variance
    ``s^2 sum(m_i^2) / sum(m_i)^2 ~ s^2 K / H``; ``population / mean size`` estimates the
    number of households of a cell. Without ``hh_size`` every household counts as one
    person (``(1.0, 1.0)``).
    """
    if "hh_size" not in households:
        return 1.0, 1.0
    m = households["hh_size"].to_numpy(dtype=float)
    w = households["weight"].to_numpy(dtype=float) if "weight" in households else np.ones_like(m)
    ok = np.isfinite(m) & (m > 0) & np.isfinite(w) & (w > 0)
    if not ok.any():
        return 1.0, 1.0
    mean = float(np.average(m[ok], weights=w[ok]))
    return mean, float(np.average(m[ok] ** 2, weights=w[ok]) / mean**2)


def realized_mean_factor(
    households: pd.DataFrame,
    n_households: np.ndarray,
    *,
    exact_up_to: int = 64,
    draws: int = 4000,
    seed: int = 0,
) -> np.ndarray:
    """``E[sum m_i^2 / (sum m_i)^2]`` for a cell of ``H`` households (per cell).

    The person-weighted mean of ``H`` households deviates from the cell's expected mean
    with variance ``s^2 sum m_i^2 / (sum m_i)^2`` (sizes ``m_i``). For large ``H`` that is
    ``s^2 K / H`` (:func:`household_size`), but a cell of one household has factor
    exactly 1, not ``K`` (about 1.2): the expectation is taken by drawing ``H`` sizes
    from the survey's (design-weighted) size distribution for ``H <= exact_up_to``
    (linear in ``H`` between integers; a fixed seed keeps it reproducible) and is
    ``K / H`` beyond. Cells with ``H < 1`` get 0 (no households: nothing is realised).
    """
    n_hh = np.asarray(n_households, dtype=float)
    _, kish = household_size(households)
    out = np.zeros(n_hh.shape)
    ok = np.isfinite(n_hh) & (n_hh >= 1)
    if "hh_size" not in households:
        out[ok] = 1.0 / n_hh[ok]
        return out
    m = households["hh_size"].to_numpy(dtype=float)
    w = households["weight"].to_numpy(dtype=float) if "weight" in households else np.ones_like(m)
    good = np.isfinite(m) & (m > 0) & np.isfinite(w) & (w > 0)
    m, w = m[good], w[good]
    if m.size == 0:
        out[ok] = 1.0 / n_hh[ok]
        return out
    rng = np.random.default_rng(seed)
    table = np.empty(exact_up_to + 2)
    table[0] = 0.0
    for h in range(1, exact_up_to + 2):
        sizes = rng.choice(m, size=(draws, h), p=w / w.sum())
        table[h] = float(np.mean((sizes**2).sum(axis=1) / sizes.sum(axis=1) ** 2))
    small = ok & (n_hh <= exact_up_to)
    lo = np.floor(n_hh[small]).astype(np.int64)
    frac = n_hh[small] - lo
    out[small] = (1 - frac) * table[lo] + frac * table[lo + 1]
    big = ok & (n_hh > exact_up_to)
    out[big] = kish / n_hh[big]
    return out


def direct_estimates(
    households: pd.DataFrame,
    clusters: pd.DataFrame,
    *,
    by: str = "admin_id",
    poverty_line: float | None = None,
    person_weighted: bool = True,
    strata: Sequence[str] = (),
) -> pd.DataFrame:
    """Design-based direct estimates per domain (``by`` is a column of ``clusters``).

    Columns: ``n_clusters``, ``n_households``, ``direct`` (weighted mean welfare),
    ``direct_var`` (PSU-linearised variance, NaN with one cluster), ``element_var``
    (weighted within-domain variance of welfare), and with a poverty line
    ``direct_poverty``, ``direct_poverty_var``, ``poverty_element_var``. Pass
    ``by=None``-like national estimates by adding a constant column to ``clusters``.

    ``strata`` names cluster columns whose combinations are the design strata (e.g.
    ``("parent_id", "urban")``): PSU totals then vary only around their stratum's mean.
    A stratum with one PSU in a domain is collapsed with the domain's other singletons,
    or with its largest stratum (Wolter 2007, 2.5).

    First-stage sampling fractions: when ``clusters`` has ``pi`` (the EA's first-stage
    inclusion probability) or ``ea_households`` (households listed in the EA, from which
    ``pi = ea_households / (household weight x households sampled)``), the variance is
    the two-stage one (Cochran 1977, 11.x; Särndal et al. 1992, 4.3)::

        v = sum_h n_h/(n_h - 1) sum_k (1 - pi_k)(t_k - tbar_h)^2
            + sum_k pi_k m_k (1 - m_k / H_k) s2_z,k

    (``s2_z,k``: variance of the households' ``z_i`` within PSU ``k``; ``H_k`` unknown
    drops the second-stage correction). Without them ``pi = 0``: the with-replacement
    estimator, conservative where a large share of the EAs is surveyed.
    """
    cl = _cluster_frame(clusters)
    if by not in cl:
        raise SurveyError(
            f"clusters have no column {by!r} (columns: {', '.join(map(str, cl.columns))})",
            where="clusters",
            fix=f"add the {by!r} of each cluster (the admin unit holding it)",
        )
    missing = ~households["cluster_id"].isin(cl.index)
    if missing.any():
        first = households["cluster_id"][missing].iloc[0]
        raise SurveyError(
            f"{int(missing.sum())} household(s) belong to clusters absent from the cluster "
            f"table (first cluster_id {first!r})",
            where="households.cluster_id",
            fix="pass the cluster table of the same survey",
        )
    w = household_weights(households, clusters, person_weighted=person_weighted)
    df = pd.DataFrame(
        {
            "psu": households["cluster_id"].to_numpy(),
            "dom": households["cluster_id"].map(cl[by]).to_numpy(),
            "w": w.to_numpy(),
            "y": households["welfare"].to_numpy(dtype=float),
        }
    )
    design = _psu_design(households, cl, strata)
    out = _ratio_by(df, "y", design)
    out = out.rename(columns={"mean": "direct", "var": "direct_var"})
    if poverty_line is not None:
        df["p"] = (df["y"] < poverty_line).astype(float)
        pov = _ratio_by(df, "p", design)
        out["direct_poverty"] = pov["mean"]
        out["direct_poverty_var"] = pov["var"]
        out["poverty_element_var"] = pov["element_var"]
    out.index.name = by
    return out


def gvf_variances(
    direct_var: np.ndarray,
    element_var: np.ndarray,
    n_households: np.ndarray,
    n_clusters: np.ndarray,
    *,
    element_var_model: np.ndarray | None = None,
    mode: str = "gvf",
    min_clusters: int = 2,
) -> tuple[np.ndarray, float]:
    """Smoothed sampling variances from a design-effect generalised variance function.

    The GVF is ``psi_d = deff * S2_d / n_d`` (Wolter 2007, ch. 7): a common design effect
    of cluster sampling times the simple-random-sampling variance. ``deff`` is the ratio
    of sums ``sum_d v_d / sum_d (S2_d / n_d)`` over areas with at least ``min_clusters``
    clusters and a positive element variance. ``S2_d`` in the prediction is
    ``element_var_model`` when given (e.g. ``p(1 - p)`` from the map's headcount, so
    an area whose sampled households are all poor, or none, still gets a positive
    variance) else ``element_var``. ``mode='direct'`` keeps the design variance of areas
    with enough clusters and uses the GVF only for the rest.

    Returns ``(psi, deff)``; ``psi`` is NaN for areas without households.
    """
    v = np.asarray(direct_var, dtype=float)
    s2 = np.asarray(element_var, dtype=float)
    n = np.asarray(n_households, dtype=float)
    k = np.asarray(n_clusters, dtype=float)
    ok = (k >= min_clusters) & np.isfinite(v) & (v > 0) & np.isfinite(s2) & (s2 > 0) & (n > 0)
    if ok.sum() < 3:
        raise ModelError(
            f"only {int(ok.sum())} area(s) have >= {min_clusters} clusters and a positive "
            "design variance, too few to fit the generalised variance function; survey "
            "more clusters per area or estimate at a coarser admin level"
        )
    deff = float(v[ok].sum() / (s2[ok] / n[ok]).sum())
    s2_pred = s2 if element_var_model is None else np.asarray(element_var_model, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        psi = np.where(n > 0, deff * s2_pred / n, np.nan)
    if mode == "direct":
        psi = np.where(ok, v, psi)
    elif mode != "gvf":
        raise ModelError(f"variance smoothing mode {mode!r} is unknown; use 'gvf' or 'direct'")
    return psi, deff


# --------------------------------------------------------------------------- helpers


def _psu_design(households: pd.DataFrame, cl: pd.DataFrame, strata: Sequence[str]) -> pd.DataFrame:
    """Per PSU: stratum label, first-stage inclusion probability ``pi`` (0 when unknown)
    and second-stage sampling fraction ``f2`` (0 when unknown)."""
    psu = pd.Index(pd.unique(households["cluster_id"]))
    cols = [c for c in strata if c in cl.columns]
    if cols:
        parts = [cl[c].reindex(psu).astype(str).to_numpy() for c in cols]
        stratum = np.array(["|".join(v) for v in zip(*parts, strict=True)], dtype=object)
    else:
        stratum = np.full(len(psu), "__all__", dtype=object)
    m = households.groupby("cluster_id").size().reindex(psu).to_numpy(dtype=float)
    pi = np.zeros(len(psu))
    f2 = np.zeros(len(psu))
    listed = None
    if "ea_households" in cl:
        listed = pd.to_numeric(cl["ea_households"], errors="coerce").reindex(psu).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            f2 = np.where(np.isfinite(listed) & (listed > 0), m / listed, 0.0)
    if "pi" in cl:
        pi = pd.to_numeric(cl["pi"], errors="coerce").reindex(psu).to_numpy(dtype=float)
    elif listed is not None:
        if "weight" in households:
            dw = households.groupby("cluster_id")["weight"].mean().reindex(psu).to_numpy(float)
        elif "weight" in cl:
            dw = pd.to_numeric(cl["weight"], errors="coerce").reindex(psu).to_numpy(float)
        else:
            dw = np.full(len(psu), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            pi = listed / (dw * m)
    pi = np.clip(np.where(np.isfinite(pi), pi, 0.0), 0.0, 1.0)
    f2 = np.clip(np.where(np.isfinite(f2), f2, 0.0), 0.0, 1.0)
    return pd.DataFrame({"stratum": stratum, "pi": pi, "f2": f2}, index=psu)


def _ratio_by(df: pd.DataFrame, col: str, design: pd.DataFrame | None = None) -> pd.DataFrame:
    """Hájek mean, PSU-linearised variance and element variance of ``col`` by ``dom``.

    ``design`` (from :func:`_psu_design`) gives strata and sampling fractions per PSU;
    None is one stratum, with replacement.
    """
    g = df.groupby("dom", sort=True)
    sw = g["w"].sum()
    mean = (df["w"] * df[col]).groupby(df["dom"]).sum() / sw
    dev = df[col] - df["dom"].map(mean)
    z = df["w"] * dev / df["dom"].map(sw)
    zz = pd.DataFrame({"dom": df["dom"].to_numpy(), "psu": df["psu"].to_numpy(), "z": z})
    by_psu = zz.groupby(["dom", "psu"], sort=True)["z"]
    t = by_psu.sum().rename("t").reset_index()
    t["m"] = by_psu.size().to_numpy(dtype=float)
    t["s2z"] = by_psu.var(ddof=1).fillna(0.0).to_numpy()
    if design is None:
        t["stratum"], t["pi"], t["f2"] = "__all__", 0.0, 0.0
    else:
        d = design.reindex(t["psu"].to_numpy())
        t["stratum"] = d["stratum"].fillna("__none__").to_numpy()
        t["pi"] = d["pi"].fillna(0.0).to_numpy()
        t["f2"] = d["f2"].fillna(0.0).to_numpy()
    t["stratum"] = _collapse_singletons(t)
    n_psu = t.groupby("dom").size().astype(float)
    a = 1.0 - t["pi"]
    key = [t["dom"], t["stratum"]]
    n_h = t.groupby(key)["t"].transform("size").astype(float)
    sa = a.groupby(key).transform("sum")
    with np.errstate(invalid="ignore", divide="ignore"):
        tbar = ((a * t["t"]).groupby(key).transform("sum") / sa).where(
            sa > 0, t.groupby(key)["t"].transform("mean")
        )
        v1 = (n_h / (n_h - 1.0) * a * (t["t"] - tbar) ** 2).where(n_h > 1, 0.0)
    v2 = t["pi"] * t["m"] * (1.0 - t["f2"]) * t["s2z"]
    var = (v1 + v2).groupby(t["dom"]).sum().where(n_psu > 1)
    n_hh = g.size().astype(float)
    wss = (df["w"] * dev**2).groupby(df["dom"]).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        element_var = (wss / sw * n_hh / (n_hh - 1.0)).where(n_hh > 1)
    return pd.DataFrame(
        {
            "n_clusters": n_psu.astype(int),
            "n_households": n_hh.astype(int),
            "mean": mean,
            "var": var,
            "element_var": element_var,
        }
    )


def _collapse_singletons(t: pd.DataFrame) -> pd.Series:
    """Stratum labels with strata of one PSU (within a domain) collapsed.

    The singletons of a domain are pooled; a pool of one joins the domain's largest
    stratum. A domain with a single PSU keeps it (its variance is undefined anyway).
    """
    out = t["stratum"].astype(object).copy()
    counts = t.groupby(["dom", "stratum"])["t"].transform("size")
    single = counts == 1
    if not single.any():
        return out
    for dom, idx in t.index[single].to_series().groupby(t.loc[single, "dom"].to_numpy()):
        rows = idx.to_numpy()
        if len(rows) > 1:
            out.loc[rows] = "__collapsed__"
            continue
        others = t[(t["dom"] == dom) & ~single]
        if len(others):
            out.loc[rows] = others["stratum"].value_counts().index[0]
    return out


def _pooled_var(element_var: pd.Series, n: pd.Series, groups: pd.Series) -> pd.Series:
    """Within-cluster variance pooled by group (degrees-of-freedom weighted)."""
    ok = element_var.notna()
    if not ok.any():
        raise ModelError(
            "no cluster has two or more households, so sampling noise cannot be "
            "estimated; pass the household table with several households per cluster"
        )
    dof = (n - 1).where(ok, 0).astype(float)
    num = (dof * element_var.fillna(0)).groupby(groups).sum()
    den = dof.groupby(groups).sum()
    overall = float(num.sum() / den.sum())
    pooled = (num / den).where(den > 0, overall)
    return groups.map(pooled).fillna(overall).astype(float)


def _urban_of(index: pd.Index, clusters: pd.DataFrame | None) -> pd.Series:
    if clusters is None:
        return pd.Series(True, index=index)
    cl = _cluster_frame(clusters)
    if "urban" not in cl:
        return pd.Series(True, index=index)
    flags = cl["urban"].astype(bool).to_dict()
    return pd.Series([bool(flags.get(k, False)) for k in index], index=index, dtype=bool)


def _cluster_frame(clusters: pd.DataFrame) -> pd.DataFrame:
    """The cluster table indexed by ``cluster_id`` (accepts it as index or column)."""
    if "cluster_id" in clusters.columns:
        return clusters.set_index("cluster_id")
    return clusters


def _require(df: pd.DataFrame, cols: list[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SurveyError(
            f"{name} lack column(s) {', '.join(missing)} (have: {', '.join(map(str, df.columns))})",
            where=name,
            fix=f"pass a {name} table with {', '.join(cols)}",
        )
