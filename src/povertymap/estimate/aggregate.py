"""Area estimates from cell estimates, with intervals honest under aggregation.

An area's estimate is the population-weighted mean of its cells. Its uncertainty is that of
a weighted sum of *correlated* cell errors: neither the mean of the cell bounds (which
assumes perfectly correlated errors and is too wide) nor independent errors (far too
narrow once an area has hundreds of cells). Draws of the whole error field
(:mod:`povertymap.estimate.spatial`) are pushed through the aggregation, and through the
non-linear headcount, and the interval is read off the draws' quantiles.

The per-cell error sd is the deconvolved model-error sd of the conformal step (by
urban/rural); the shared share and range come from the OOF residual variogram. Errors are
drawn Gaussian: an area mean of many cells is close to Gaussian whatever the cell-level
tails.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import sparse
from scipy.special import ndtr

from povertymap.errors import ModelError
from povertymap.estimate.spatial import ExponentialCovariance, GridFieldSampler

__all__ = ["BATCH_ELEMENTS", "draw_batch", "simulate_area_intervals", "weighted_area_means"]


def weighted_area_means(values: ArrayLike, weights: ArrayLike, areas: ArrayLike) -> pd.Series:
    """Weighted mean of ``values`` per area label (NaN where the weights sum to zero).

    Cells with a missing value or weight count with weight zero.
    """
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    ok = np.isfinite(v) & np.isfinite(w)
    v, w = np.where(ok, v, 0.0), np.where(ok, w, 0.0)
    df = pd.DataFrame({"a": np.asarray(areas), "wv": w * v, "w": w})
    g = df.groupby("a", sort=True)[["wv", "w"]].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (g["wv"] / g["w"]).where(g["w"] > 0)


#: Most cell draws held at once per array (``cells x draws``): 5x10^6 doubles, 40 MB. The
#: simulation holds a handful of such arrays (errors, means, headcounts, field samples).
BATCH_ELEMENTS = 5_000_000


def draw_batch(n_cells: int) -> int:
    """Draws simulated together for ``n_cells`` cells: 100, or fewer where ``cells x
    draws`` would pass :data:`BATCH_ELEMENTS` (10 for 5x10^5 cells)."""
    return max(1, min(100, BATCH_ELEMENTS // max(n_cells, 1)))


def simulate_area_intervals(
    estimate: ArrayLike,
    sigma: ArrayLike,
    weights: ArrayLike,
    levels: Mapping[str, ArrayLike],
    *,
    x: ArrayLike,
    y: ArrayLike,
    covariance: ExponentialCovariance | None,
    n_sims: int,
    rng: np.random.Generator,
    level: float = 0.9,
    poverty_line: float | None = None,
    within_sd: ArrayLike | None = None,
    n_households: ArrayLike | None = None,
    kish: float = 1.0,
    fp_factor: ArrayLike | None = None,
    area_effects: Mapping[str, tuple[ArrayLike, float]] | None = None,
    cell_size: float | None = None,
    batch: int | None = None,
) -> dict[str, pd.DataFrame]:
    """Simulated intervals of area means (and headcounts) at several admin levels.

    Parameters
    ----------
    estimate, sigma, weights:
        Per cell: estimate of mean welfare, model-error sd, population.
    levels:
        Name -> area label per cell, e.g. ``{"admin2": ..., "admin1": ...}``.
    x, y:
        Cell centres (m), on a regular grid.
    covariance:
        The error covariance (only its shares and ranges are used: cell sds come from
        ``sigma``); None gives independent errors.
    poverty_line, within_sd:
        When given, each draw of cell means is also turned into cell headcounts
        ``Phi((z - mu) / within_sd)`` and aggregated.
    n_households, kish:
        When given (with ``within_sd``), the targets are the means and headcounts
        *realised* by the cells' ``n_households`` households: each draw adds the
        independent finite-population deviations, normal with variances
        ``within_sd^2 kish / H`` (mean) and ``P (1 - P) kish / H`` (headcount).
    fp_factor:
        Per cell, the factor replacing ``kish / H`` (e.g.
        :func:`~povertymap.estimate.direct.realized_mean_factor`, exact for small
        ``H``); needs ``within_sd``.
    area_effects:
        Name -> (area label per cell, share): errors shared by every cell of an area
        (e.g. admin-2 and admin-1 effects the model cannot see), each a unit normal per
        area and draw with that share of the cell error variance. The shares of
        ``covariance`` and of these effects must not exceed 1 together; the rest is
        independent.
    batch:
        Draws simulated together (default: :func:`draw_batch`, so that memory stays
        bounded whatever the country's size).

    Returns
    -------
    One frame per level, indexed by area, with ``sim_mean``, ``sd``, ``lower``, ``upper``
    and, with a poverty line, ``poverty_sim_mean``, ``poverty_sd``, ``poverty_lower``,
    ``poverty_upper``.
    """
    mu = np.asarray(estimate, dtype=float)
    sd = np.asarray(sigma, dtype=float)
    w = np.asarray(weights, dtype=float)
    n = mu.size
    batch = batch or draw_batch(n)
    if not (sd.size == n and w.size == n):
        raise ModelError("estimate, sigma and weights must have one value per cell")
    if poverty_line is not None and within_sd is None:
        raise ModelError("a poverty line needs within_sd (dispersion of welfare within cells)")
    sw = None if within_sd is None else np.broadcast_to(np.asarray(within_sd, float), (n,))
    fp = None  # finite-population factor kish / H per cell
    if fp_factor is not None:
        if sw is None:
            raise ModelError("realised targets (fp_factor) need within_sd")
        f = np.broadcast_to(np.asarray(fp_factor, float), (n,))
        fp = np.where(np.isfinite(f) & (f > 0), f, 0.0)
    elif n_households is not None:
        if sw is None:
            raise ModelError("realised targets (n_households) need within_sd")
        hh = np.broadcast_to(np.asarray(n_households, float), (n,))
        with np.errstate(divide="ignore"):
            fp = np.where(np.isfinite(hh) & (hh >= 1), kish / np.maximum(hh, 1.0), 0.0)
    mats: dict[str, tuple[pd.Index, sparse.csr_matrix]] = {}
    for name, labels in levels.items():
        mats[name] = _aggregator(np.asarray(labels), w)
    # unit-variance components: (amplitude, sampler); the rest is independent
    parts: list[tuple[float, GridFieldSampler]] = []
    a_id = 1.0
    if covariance is not None and covariance.sill > 0:
        short = covariance.partial_sill / covariance.sill
        long_ = covariance.long_share
        if short > 0:
            parts.append(
                (np.sqrt(short), GridFieldSampler(x, y, covariance.range_m, cell_size=cell_size))
            )
        if long_ > 0 and covariance.long_range_m:
            parts.append(
                (
                    np.sqrt(long_),
                    GridFieldSampler(x, y, covariance.long_range_m, cell_size=cell_size),
                )
            )
        a_id = np.sqrt(max(0.0, 1.0 - short - long_))
    effects: list[tuple[float, np.ndarray, int]] = []  # (amplitude, codes, n_areas)
    for labels, share in (area_effects or {}).values():
        if share <= 0:
            continue
        codes, uniques = pd.factorize(np.asarray(labels), sort=True)
        if codes.size != n:
            raise ModelError("area_effects labels must have one value per cell")
        effects.append((float(np.sqrt(share)), codes, len(uniques)))
    taken = 1.0 - a_id**2 + sum(a**2 for a, _, _ in effects)
    if taken > 1.0 + 1e-9:
        raise ModelError(
            f"error shares add up to {taken:.3f} > 1 (spatial field plus area effects); "
            "their sum must not exceed the cell error variance"
        )
    a_id = float(np.sqrt(max(0.0, 1.0 - taken)))
    draws: dict[str, list[np.ndarray]] = {k: [] for k in mats}
    pdraws: dict[str, list[np.ndarray]] = {k: [] for k in mats}
    done = 0
    while done < n_sims:
        b = min(batch, n_sims - done)
        z = a_id * rng.standard_normal((n, b))
        for amp, sampler in parts:
            z += amp * sampler.sample(b, rng)
        for amp, codes, n_areas in effects:
            u = rng.standard_normal((n_areas + 1, b))
            u[-1] = 0.0  # cells without an area label share nothing
            z += amp * u[codes]
        m = mu[:, None] + sd[:, None] * z
        m_real = m
        if fp is not None and sw is not None:
            m_real = m + (sw * np.sqrt(fp))[:, None] * rng.standard_normal((n, b))
        for name, (_, mat) in mats.items():
            draws[name].append(np.asarray(mat @ m_real))
        if poverty_line is not None and sw is not None:
            p = ndtr((poverty_line - m) / sw[:, None])
            if fp is not None:
                p = p + np.sqrt(p * (1 - p) * fp[:, None]) * rng.standard_normal((n, b))
            for name, (_, mat) in mats.items():
                pdraws[name].append(np.asarray(mat @ p))
        done += b
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    out: dict[str, pd.DataFrame] = {}
    for name, (index, _) in mats.items():
        d = np.concatenate(draws[name], axis=1)
        frame = pd.DataFrame(
            {
                "sim_mean": d.mean(axis=1),
                "sd": d.std(axis=1, ddof=1),
                "lower": np.quantile(d, lo_q, axis=1),
                "upper": np.quantile(d, hi_q, axis=1),
            },
            index=index,
        )
        if poverty_line is not None:
            pdm = np.concatenate(pdraws[name], axis=1)
            frame["poverty_sim_mean"] = pdm.mean(axis=1)
            frame["poverty_sd"] = pdm.std(axis=1, ddof=1)
            frame["poverty_lower"] = np.quantile(pdm, lo_q, axis=1)
            frame["poverty_upper"] = np.quantile(pdm, hi_q, axis=1)
        empty = np.asarray(mats[name][1].sum(axis=1)).ravel() == 0
        frame.loc[empty, :] = np.nan
        out[name] = frame
    return out


def _aggregator(labels: np.ndarray, w: np.ndarray) -> tuple[pd.Index, sparse.csr_matrix]:
    """Sparse (areas x cells) matrix of normalised weights."""
    codes, uniques = pd.factorize(labels, sort=True)
    ok = codes >= 0
    tot = np.bincount(codes[ok], weights=w[ok], minlength=len(uniques))
    with np.errstate(invalid="ignore", divide="ignore"):
        vals = np.where(tot[codes[ok]] > 0, w[ok] / tot[codes[ok]], 0.0)
    mat = sparse.csr_matrix(
        (vals, (codes[ok], np.flatnonzero(ok))), shape=(len(uniques), labels.size)
    )
    return pd.Index(uniques), mat
