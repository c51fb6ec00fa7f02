"""Spatial correlation of model errors: variogram, exponential covariance, field simulation.

Errors of neighbouring cells are correlated (the model misses the same local conditions
over a stretch of land), so an area mean of cell estimates is less precise than
independent errors would suggest, and averaging cell bounds (perfect correlation) is too
wide. The error of cell ``c`` is modelled as::

    err_c = sigma_c * ( sqrt(rho) * Z(s_c) + sqrt(1 - rho) * eps_c )

with ``Z`` a unit Gaussian field of exponential correlation ``exp(-h / range)`` and
``eps`` independent. ``rho`` (the shared share) and ``range`` come from the empirical
semivariogram of out-of-fold residuals (Matheron 1962; Cressie 1993, 2.4), after
removing the known sampling noise of each cluster mean from every pair::

    gamma(h) = mean over pairs at lag h of [ (r_i - r_j)^2 / 2 - (v_i + v_j) / 2 ]
             = tau2 + sill * (1 - exp(-h / range))

fitted by weighted least squares with Cressie's (1985) weights ``N_h / gamma(h)^2``.
Fields are drawn on the cell grid by circulant embedding (Dietrich & Newsam 1997;
Wood & Chan 1994), exact for a stationary covariance on a regular grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import fft, optimize
from scipy.spatial import cKDTree

from povertymap.errors import ModelError

__all__ = [
    "ExponentialCovariance",
    "GridFieldSampler",
    "between_unit_variance",
    "empirical_variogram",
    "fit_exponential",
    "fit_nested",
    "implied_between_unit_variance",
    "nested_variogram",
]


@dataclass(frozen=True)
class ExponentialCovariance:
    """Covariance of model errors: a nugget plus one or two exponential components.

    ``C(h) = nugget [h = 0] + partial_sill exp(-h / range_m)
    + long_sill exp(-h / long_range_m)``; the optional long-range ("regional") component
    carries the errors a model makes over whole regions (a missed regional effect, the
    shrinkage of regional means), which dominate the error of area means. It is not
    fitted (one survey identifies it poorly; see docs/methods.md) but may be set by hand.
    """

    nugget: float
    partial_sill: float
    range_m: float
    long_sill: float = 0.0
    long_range_m: float | None = None
    admin2_sill: float = 0.0
    admin1_sill: float = 0.0

    @property
    def sill(self) -> float:
        """Total variance."""
        return (
            self.nugget + self.partial_sill + self.long_sill + self.admin2_sill + self.admin1_sill
        )

    @property
    def shared_share(self) -> float:
        """Share of the error variance that is shared between cells (field or area)."""
        shared = self.partial_sill + self.long_sill + self.admin2_sill + self.admin1_sill
        return shared / self.sill if self.sill > 0 else 0.0

    def area_share(self, level: str) -> float:
        """Share of the error variance in the ``admin2`` or ``admin1`` effect."""
        v = {"admin2": self.admin2_sill, "admin1": self.admin1_sill}[level]
        return v / self.sill if self.sill > 0 else 0.0

    def scaled(self, factor: float) -> ExponentialCovariance:
        """The same shape with every variance multiplied by ``factor``."""
        return ExponentialCovariance(
            nugget=self.nugget * factor,
            partial_sill=self.partial_sill * factor,
            range_m=self.range_m,
            long_sill=self.long_sill * factor,
            long_range_m=self.long_range_m,
            admin2_sill=self.admin2_sill * factor,
            admin1_sill=self.admin1_sill * factor,
        )

    @property
    def long_share(self) -> float:
        """Share of the error variance in the long-range component."""
        return self.long_sill / self.sill if self.sill > 0 else 0.0

    def semivariance(
        self,
        h: ArrayLike,
        other_admin2: ArrayLike | None = None,
        other_admin1: ArrayLike | None = None,
    ) -> np.ndarray:
        """Model semivariogram at lags ``h`` (m), ``h > 0``.

        ``other_admin2``/``other_admin1`` (0/1 per lag) say whether the pair lies in
        different admin-2/admin-1 units; omitted, the pair is taken to be in different
        units (the semivariance between far-apart places).
        """
        hh = np.asarray(h, dtype=float)
        g = self.nugget + self.partial_sill * (1.0 - np.exp(-hh / self.range_m))
        if self.long_sill > 0 and self.long_range_m:
            g = g + self.long_sill * (1.0 - np.exp(-hh / self.long_range_m))
        d2 = np.ones_like(hh) if other_admin2 is None else np.asarray(other_admin2, float)
        d1 = np.ones_like(hh) if other_admin1 is None else np.asarray(other_admin1, float)
        return np.asarray(g + self.admin2_sill * d2 + self.admin1_sill * d1)


def empirical_variogram(
    x: ArrayLike,
    y: ArrayLike,
    values: ArrayLike,
    noise_var: ArrayLike | None = None,
    *,
    max_dist: float,
    n_bins: int = 12,
) -> pd.DataFrame:
    """Binned semivariogram of ``values`` at points ``(x, y)`` (metres).

    ``noise_var`` (known variance of each value's own noise, e.g. the sampling variance
    of a cluster mean) is subtracted pair by pair, so the result describes the noise-free
    field. Returns ``lag`` (mean distance in the bin), ``gamma``, ``n_pairs``.
    """
    _, _, d, sv = _pair_semivariances(x, y, values, noise_var, max_dist, n_bins)
    edges = np.linspace(0.0, max_dist, n_bins + 1)
    b = np.clip(np.digitize(d, edges) - 1, 0, n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.bincount(b, sv, minlength=n_bins) / n
        lag = np.bincount(b, d, minlength=n_bins) / n
    keep = n > 0
    return pd.DataFrame({"lag": lag[keep], "gamma": gamma[keep], "n_pairs": n[keep]})


def fit_exponential(
    variogram: pd.DataFrame, *, total_var: float | None = None, min_pairs: int = 30
) -> ExponentialCovariance:
    """Weighted least-squares fit of an exponential semivariogram with a nugget.

    ``total_var`` (the error variance at zero lag) anchors the sill when given: the fit
    then only splits it into nugget and partial sill and chooses the range. The range is
    bounded to [half the first lag, 2 x the largest lag]: beyond the variogram window it
    is not identified.
    """
    vg = variogram[variogram["n_pairs"] >= min_pairs]
    if len(vg) < 3:
        raise ModelError(
            f"the variogram has {len(vg)} lag bins with >= {min_pairs} pairs; at least 3 "
            "are needed to fit a covariance; widen variogram_max_m"
        )
    h = vg["lag"].to_numpy()
    g = vg["gamma"].to_numpy()
    n = vg["n_pairs"].to_numpy().astype(float)
    lo_r, hi_r = 0.5 * h.min(), 2.0 * h.max()
    scale = max(float(np.nanmax(np.abs(g))), 1e-12)

    def unpack(theta: np.ndarray) -> ExponentialCovariance:
        # theta = (sill, shared fraction, range); the sill is fixed when anchored
        sill = total_var if total_var is not None else float(theta[0])
        return ExponentialCovariance(
            nugget=float(sill * (1 - theta[1])),
            partial_sill=float(sill * theta[1]),
            range_m=float(theta[2]),
        )

    def resid(theta: np.ndarray) -> np.ndarray:
        m = unpack(theta).semivariance(h)
        w = np.sqrt(n) / np.maximum(np.abs(m), 1e-3 * scale)
        return np.asarray(w * (g - m))

    lower = [1e-3 * scale, 0.0, lo_r]
    upper = [3.0 * scale, 1.0, hi_r]
    x0 = np.array([scale, 0.6, np.sqrt(lo_r * hi_r)])
    sol = optimize.least_squares(resid, x0, bounds=(lower, upper), x_scale="jac")
    return unpack(sol.x)


def nested_variogram(
    x: ArrayLike,
    y: ArrayLike,
    values: ArrayLike,
    noise_var: ArrayLike | None,
    admin2: ArrayLike,
    admin1: ArrayLike | None = None,
    *,
    max_dist: float,
    n_bins: int = 12,
) -> pd.DataFrame:
    """Semivariogram binned by lag *and* by whether a pair shares its admin units.

    Like :func:`empirical_variogram` (known noise removed pair by pair), with pairs in
    three classes: same admin-2 unit, different admin-2 in the same admin-1, different
    admin-1. An error shared by every place of an administrative unit (a district effect
    the features cannot see: policy, history, prices) raises the semivariance of pairs
    across a boundary above that of pairs at the same distance within a unit; an
    isotropic variogram averages the two and misses it. Returns ``lag, gamma, n_pairs,
    other_admin2, other_admin1``.
    """
    i, j, d, sv = _pair_semivariances(x, y, values, noise_var, max_dist, n_bins)
    a2 = np.asarray(admin2)
    a1 = np.zeros(len(np.asarray(values))) if admin1 is None else np.asarray(admin1)
    o1 = (a1[i] != a1[j]).astype(int)
    o2 = np.maximum((a2[i] != a2[j]).astype(int), o1)
    cls = o2 + o1  # 0 same admin-2, 1 other admin-2 same admin-1, 2 other admin-1
    edges = np.linspace(0.0, max_dist, n_bins + 1)
    b = np.clip(np.digitize(d, edges) - 1, 0, n_bins - 1)
    key = b * 3 + cls
    n = np.bincount(key, minlength=3 * n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.bincount(key, sv, minlength=3 * n_bins) / n
        lag = np.bincount(key, d, minlength=3 * n_bins) / n
    k = np.arange(3 * n_bins) % 3
    keep = n > 0
    return pd.DataFrame(
        {
            "lag": lag[keep],
            "gamma": gamma[keep],
            "n_pairs": n[keep],
            "other_admin2": (k >= 1).astype(int)[keep],
            "other_admin1": (k == 2).astype(int)[keep],
        }
    )


def fit_nested(variogram: pd.DataFrame, *, min_pairs: int = 30) -> ExponentialCovariance:
    """Weighted least-squares fit of a nugget, an exponential field and admin effects.

    ``gamma(h, o2, o1) = nugget + partial_sill (1 - exp(-h / range)) + admin2_sill o2 +
    admin1_sill o1`` on a :func:`nested_variogram`, with Cressie's weights as in
    :func:`fit_exponential`. The admin sills are the variances of errors shared by every
    place of a unit: the area effects of nested error models (Battese, Harter & Fuller
    1988), whose omission made ELL poverty-map intervals too narrow (Tarozzi & Deaton
    2009; Molina & Rao 2010).
    """
    vg = variogram[variogram["n_pairs"] >= min_pairs]
    if len(vg) < 5:
        raise ModelError(
            f"the nested variogram has {len(vg)} classes with >= {min_pairs} pairs; at "
            "least 5 are needed; widen variogram_max_m"
        )
    h = vg["lag"].to_numpy()
    g = vg["gamma"].to_numpy()
    n = vg["n_pairs"].to_numpy().astype(float)
    o2 = vg["other_admin2"].to_numpy().astype(float)
    o1 = vg["other_admin1"].to_numpy().astype(float)
    lo_r, hi_r = 0.5 * h.min(), 2.0 * h.max()
    scale = max(float(np.nanmax(np.abs(g))), 1e-12)

    def unpack(t: np.ndarray) -> ExponentialCovariance:
        return ExponentialCovariance(
            nugget=float(t[0]),
            partial_sill=float(t[1]),
            range_m=float(t[2]),
            admin2_sill=float(t[3]),
            admin1_sill=float(t[4]),
        )

    def resid(t: np.ndarray) -> np.ndarray:
        m = unpack(t).semivariance(h, o2, o1)
        w = np.sqrt(n) / np.maximum(np.abs(m), 1e-3 * scale)
        return np.asarray(w * (g - m))

    lower = [0.0, 0.0, lo_r, 0.0, 0.0]
    upper = [3.0 * scale, 3.0 * scale, hi_r, 3.0 * scale, 3.0 * scale]
    x0 = np.array([0.5 * scale, 0.25 * scale, np.sqrt(lo_r * hi_r), 0.1 * scale, 0.1 * scale])
    sol = optimize.least_squares(resid, x0, bounds=(lower, upper), x_scale="jac")
    return unpack(sol.x)


def between_unit_variance(values: ArrayLike, units: ArrayLike) -> float:
    """Variance of an error shared within units, by one-way random-effects ANOVA.

    The method-of-moments (Henderson method I) estimator for unbalanced groups::

        tau2 = (SSB - (k - 1) MSW) / (N - sum m_a^2 / N)

    over the ``k`` units with at least two values (``m_a`` values each, ``N`` in all).
    It measures the part of ``values`` (out-of-fold residuals) that every member of a
    unit shares, whatever its cause (an exponential field, admin effects, a regional
    bias), against the grand mean, so an error common to the whole country is not in
    it. Unbiased, and negative when the units differ less than their members do;
    nan with fewer than two such units.
    """
    z = np.asarray(values, dtype=float)
    u = pd.Series(np.asarray(units), dtype="object")
    ok = np.isfinite(z) & u.notna().to_numpy()
    frame = pd.DataFrame({"z": z[ok], "u": u[ok].astype(str).to_numpy()})
    sizes = frame.groupby("u")["z"].transform("size")
    frame = frame[sizes.to_numpy() >= 2]
    groups = frame.groupby("u")["z"]
    m, means = groups.size().to_numpy(float), groups.mean().to_numpy()
    k, n = m.size, m.sum()
    if k < 2:
        return float("nan")
    ssw = float(((frame["z"] - groups.transform("mean")) ** 2).sum())
    ssb = float(np.sum(m * (means - frame["z"].mean()) ** 2))
    return (ssb - (k - 1) * ssw / (n - k)) / (n - np.sum(m**2) / n)


def implied_between_unit_variance(
    cov: ExponentialCovariance,
    x: ArrayLike,
    y: ArrayLike,
    units: ArrayLike,
    parents: ArrayLike | None = None,
    *,
    block: int | None = None,
) -> float:
    """The expectation of :func:`between_unit_variance` under the error model ``cov``.

    For the values at ``(x, y)`` in ``units`` (admin-2; ``parents`` their admin-1), the
    ANOVA estimator is a ratio of quadratic forms ``z'Az`` and ``z'Bz`` whose expectations
    are ``tr(A Sigma)`` and ``tr(B Sigma)`` (``Sigma`` the model's covariance), so the
    model's own between-unit variance is computed exactly, with the same units and
    cluster locations as the data's: the two are comparable. The nugget cancels.
    ``block`` rows of the covariance are formed at a time (default: about two million
    entries).
    """
    xx, yy = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    u = pd.Series(np.asarray(units), dtype="object")
    ok = u.notna().to_numpy() & np.isfinite(xx) & np.isfinite(yy)
    u = u[ok].astype(str)
    keep = (u.groupby(u).transform("size") >= 2).to_numpy()
    xx, yy, labels = xx[ok][keep], yy[ok][keep], u.to_numpy()[keep]
    p = (
        np.zeros(labels.size, dtype=object)
        if parents is None
        else pd.Series(np.asarray(parents), dtype="object")[ok].astype(str).to_numpy()[keep]
    )
    _, codes = np.unique(labels, return_inverse=True)
    m = np.bincount(codes).astype(float)
    k, n = m.size, m.sum()
    if k < 2:
        return float("nan")
    # tr(P_G Sigma) and the sum of Sigma, a block of rows at a time: memory stays at
    # ``block`` x N whatever the survey's size (30,000 clusters would be 7 GB at once)
    n_rows = labels.size
    step = block or max(1, 2_000_000 // n_rows)
    within = total = 0.0
    for lo in range(0, n_rows, step):
        rows = np.arange(lo, min(lo + step, n_rows))
        d = np.hypot(xx[rows, None] - xx[None, :], yy[rows, None] - yy[None, :])
        other2 = labels[rows, None] != labels[None, :]
        other1 = p[rows, None] != p[None, :]
        sigma = cov.sill - cov.semivariance(d, other2 | other1, other1.astype(float))
        sigma[np.arange(rows.size), rows] = cov.sill  # a cluster with itself
        within += float(np.sum(np.where(other2, 0.0, sigma) / m[codes[rows]][:, None]))
        total += float(sigma.sum())
    tr_a = within - total / n
    tr_b = n_rows * cov.sill - within
    return (tr_a - (k - 1) * tr_b / (n - k)) / (n - np.sum(m**2) / n)


class GridFieldSampler:
    """Unit-variance Gaussian fields with correlation ``exp(-h / range_m)`` at grid cells.

    Cells are given by their centre coordinates on a regular grid of ``cell_size`` metres
    (inferred when omitted). Sampling uses circulant embedding on a padded torus; negative
    embedding eigenvalues (rare for the exponential model) are set to zero and the field
    rescaled to unit variance; their share is kept in ``negative_share``.
    """

    def __init__(
        self,
        x: ArrayLike,
        y: ArrayLike,
        range_m: float,
        *,
        cell_size: float | None = None,
        max_grid: int = 4096,
    ) -> None:
        xx = np.asarray(x, dtype=float)
        yy = np.asarray(y, dtype=float)
        size = cell_size if cell_size is not None else _infer_cell_size(xx, yy)
        ix = np.rint((xx - xx.min()) / size).astype(np.int64)
        iy = np.rint((yy - yy.min()) / size).astype(np.int64)
        nx, ny = int(ix.max()) + 1, int(iy.max()) + 1
        # pad by three ranges where that is small; beyond twice the grid, padding buys
        # little (the few negative eigenvalues are clipped and reported)
        pad_x = min(int(np.ceil(3.0 * range_m / size)), nx)
        pad_y = min(int(np.ceil(3.0 * range_m / size)), ny)
        mx = fft.next_fast_len(max(2 * nx, nx + pad_x))
        my = fft.next_fast_len(max(2 * ny, ny + pad_y))
        if max(mx, my) > max_grid:
            raise ModelError(
                f"the error field needs a {mx} x {my} embedding grid (cells of {size:.0f} m, "
                f"range {range_m:.0f} m), above max_grid={max_grid}; estimate per admin-1 "
                "region or coarsen the grid"
            )
        dx = np.minimum(np.arange(mx), mx - np.arange(mx)) * size
        dy = np.minimum(np.arange(my), my - np.arange(my)) * size
        c = np.exp(-np.hypot(dx[:, None], dy[None, :]) / range_m)
        lam = fft.fft2(c).real
        self.negative_share = float(np.sum(-lam[lam < 0]) / np.sum(np.abs(lam)))
        lam = np.clip(lam, 0.0, None)
        self._sqrt_lam = np.sqrt(lam / (mx * my))
        # variance of the clipped field at a point, to rescale it to one
        self._var = float(lam.sum() / (mx * my))
        self._ix, self._iy = ix, iy
        self.shape = (mx, my)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent fields at the cells, shape ``(n_cells, n)``."""
        out = np.empty((n, self._ix.size))
        mx, my = self.shape
        per = max(1, min((n + 1) // 2, 4_000_000 // (mx * my)))  # complex fields per FFT
        k = 0
        while k < n:
            b = min(per, (n - k + 1) // 2)
            z = rng.standard_normal((b, mx, my)) + 1j * rng.standard_normal((b, mx, my))
            f = fft.fft2(self._sqrt_lam[None] * z, axes=(1, 2))[:, self._ix, self._iy]
            both = np.concatenate([f.real, f.imag], axis=0)  # real and imaginary parts
            take = min(2 * b, n - k)
            out[k : k + take] = both[:take]
            k += take
        return out.T / np.sqrt(self._var)


def _infer_cell_size(x: np.ndarray, y: np.ndarray) -> float:
    steps = np.concatenate([np.diff(np.unique(x)), np.diff(np.unique(y))])
    steps = steps[steps > 1e-6]
    if steps.size == 0:
        return 1.0
    return float(steps.min())


def _pair_semivariances(
    x: ArrayLike,
    y: ArrayLike,
    values: ArrayLike,
    noise_var: ArrayLike | None,
    max_dist: float,
    n_bins: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs closer than ``max_dist``: indices, distances and noise-free semivariances."""
    xx = np.asarray(x, dtype=float)
    yy = np.asarray(y, dtype=float)
    z = np.asarray(values, dtype=float)
    v = np.zeros_like(z) if noise_var is None else np.broadcast_to(noise_var, z.shape)
    pairs = cKDTree(np.column_stack([xx, yy])).query_pairs(max_dist, output_type="ndarray")
    if len(pairs) < n_bins * 10:
        raise ModelError(
            f"only {len(pairs)} cluster pairs lie within {max_dist:.0f} m, too few for a "
            f"{n_bins}-bin variogram; raise variogram_max_m or lower variogram_bins"
        )
    i, j = pairs[:, 0], pairs[:, 1]
    d = np.hypot(xx[i] - xx[j], yy[i] - yy[j])
    sv = 0.5 * (z[i] - z[j]) ** 2 - 0.5 * (v[i] + v[j])
    return i, j, d, sv
