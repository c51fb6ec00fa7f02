"""Fay-Herriot area-level small-area estimation: EBLUP, Prasad-Rao MSE, benchmarking.

The basic area-level model (Fay & Herriot 1979; Rao & Molina 2015, ch. 6)::

    direct_d = x_d' beta + v_d + e_d,   v_d ~ N(0, sigma2_v),   e_d ~ N(0, psi_d known)

combines each area's survey direct estimate (unbiased, noisy: variance ``psi_d``) with a
synthetic regression estimate ``x_d' beta`` (here ``x_d = (1, map estimate of area d)``).
The EBLUP shrinks the direct estimate toward the synthetic one by the estimated share of
noise::

    theta_d = gamma_d direct_d + (1 - gamma_d) x_d' beta,   gamma_d = sigma2_v / (sigma2_v + psi_d)

``sigma2_v`` is estimated by REML, ML (Fisher scoring, as R ``sae::eblupFH``) or the
Fay-Herriot moment method. The MSE is the second-order approximation of Prasad & Rao
(1990) with the bias corrections of Datta & Lahiri (2000) for ML and Datta, Rao & Smith
(2005) for FH::

    mse_d = g1 + g2 + 2 g3 [- b(sigma2_v) (1 - gamma_d)^2]
    g1 = gamma_d psi_d,   g2 = (1 - gamma_d)^2 x_d' (X' V^-1 X)^-1 x_d,
    g3 = psi_d^2 / (sigma2_v + psi_d)^3 * Vbar(sigma2_v)

Areas without a direct estimate get the synthetic estimate with
``mse = sigma2_v + x_d' (X' V^-1 X)^-1 x_d``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize
from sklearn.base import BaseEstimator

from povertymap.errors import ModelError

__all__ = ["FayHerriot", "benchmark"]


class FayHerriot(BaseEstimator):
    """Fay-Herriot model fitted on areas with a direct estimate.

    Parameters
    ----------
    method:
        ``REML`` (default), ``ML`` or ``FH``.
    max_iter, tol:
        Fisher-scoring iterations and convergence tolerance on ``sigma2_v``.

    Attributes
    ----------
    beta_, beta_cov_:
        Regression coefficients and their covariance ``(X' V^-1 X)^-1``.
    sigma2_v_:
        Variance of the area random effects (0 when the estimate is truncated).
    n_iter_, converged_:
        Iterations used and whether ``tol`` was reached.
    loglike_:
        Log-likelihood (restricted for REML) at the estimate.
    n_areas_:
        Areas used in the fit.
    """

    def __init__(self, method: str = "REML", max_iter: int = 100, tol: float = 1e-10) -> None:
        self.method = method
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: ArrayLike, y: ArrayLike, vardir: ArrayLike) -> FayHerriot:
        """Fit on areas with direct estimates ``y`` of sampling variances ``vardir``.

        ``X`` must include the intercept column if one is wanted. Rows with a missing
        ``y`` or ``vardir`` are ignored (they are the out-of-sample areas).
        """
        if self.method not in ("REML", "ML", "FH"):
            raise ModelError(f"Fay-Herriot method {self.method!r} is unknown; use REML, ML or FH")
        Xa, ya, psi = _arrays(X, y, vardir)
        ok = np.isfinite(ya) & np.isfinite(psi) & np.isfinite(Xa).all(axis=1)
        Xa, ya, psi = Xa[ok], ya[ok], psi[ok]
        m, p = Xa.shape
        if m <= p + 1:
            raise ModelError(
                f"{m} areas with direct estimates cannot fit a Fay-Herriot model with {p} "
                "coefficients; survey more areas or estimate at a coarser level"
            )
        if (psi <= 0).any():
            raise ModelError(
                f"{int((psi <= 0).sum())} sampling variance(s) are not positive; smooth them "
                "with a generalised variance function (variance_smoothing='gvf')"
            )
        if np.linalg.matrix_rank(Xa) < p:
            raise ModelError(
                "the Fay-Herriot covariates are collinear (e.g. a map estimate that is the "
                "same in every area); check the synthetic estimates"
            )
        s2, n_iter, converged = self._estimate_sigma2(Xa, ya, psi)
        self.sigma2_v_ = float(s2)
        self.n_iter_ = n_iter
        self.converged_ = converged
        vi = 1.0 / (s2 + psi)
        xtvx = Xa.T @ (vi[:, None] * Xa)
        self.beta_cov_ = np.linalg.inv(xtvx)
        self.beta_ = self.beta_cov_ @ (Xa.T @ (vi * ya))
        self.n_areas_ = int(m)
        self.loglike_ = _loglike(Xa, ya, psi, s2, self.beta_, reml=self.method == "REML")
        self._fit_psi = psi
        self._fit_X = Xa
        return self

    # ---------------------------------------------------------------- estimation

    def _estimate_sigma2(
        self, X: np.ndarray, y: np.ndarray, psi: np.ndarray
    ) -> tuple[float, int, bool]:
        if self.method == "FH":
            return self._fh_moment(X, y, psi)
        s2 = float(np.median(psi))  # R sae's starting value
        for it in range(1, self.max_iter + 1):
            vi = 1.0 / (s2 + psi)
            xtvx_inv = np.linalg.inv(X.T @ (vi[:, None] * X))
            if self.method == "ML":
                beta = xtvx_inv @ (X.T @ (vi * y))
                res = y - X @ beta
                score = float(-0.5 * vi.sum() + 0.5 * np.sum(vi**2 * res**2))
                info = float(0.5 * np.sum(vi**2))
            else:  # REML: P = V^-1 - V^-1 X (X'V^-1X)^-1 X' V^-1
                vx = vi[:, None] * X
                P = np.diag(vi) - vx @ xtvx_inv @ vx.T
                Py = P @ y
                score = float(-0.5 * np.trace(P) + 0.5 * float(Py @ Py))
                info = 0.5 * float(np.sum(P * P))
            new = max(s2 + score / info, 0.0)
            if abs(new - s2) < self.tol:
                return new, it, True
            s2 = new
        return s2, self.max_iter, False

    def _fh_moment(self, X: np.ndarray, y: np.ndarray, psi: np.ndarray) -> tuple[float, int, bool]:
        m, p = X.shape

        def h(s2: float) -> float:
            vi = 1.0 / (s2 + psi)
            beta = np.linalg.solve(X.T @ (vi[:, None] * X), X.T @ (vi * y))
            return float(np.sum(vi * (y - X @ beta) ** 2) - (m - p))

        if h(0.0) <= 0:
            return 0.0, 1, True
        hi = max(float(np.var(y)), float(psi.max()), 1e-12)
        while h(hi) > 0:
            hi *= 4.0
            if hi > 1e12:
                raise ModelError("the Fay-Herriot moment equation has no root; check the data")
        root, res = optimize.brentq(h, 0.0, hi, xtol=self.tol, full_output=True)
        return float(root), int(res.iterations), bool(res.converged)

    # ---------------------------------------------------------------- prediction

    def predict(
        self, X: ArrayLike, y: ArrayLike | None = None, vardir: ArrayLike | None = None
    ) -> np.ndarray:
        """EBLUP where ``y`` and ``vardir`` are given and finite, synthetic elsewhere."""
        est, _ = self.predict_with_mse(X, y, vardir)
        return est

    def predict_with_mse(
        self, X: ArrayLike, y: ArrayLike | None = None, vardir: ArrayLike | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(estimate, mse)`` per row of ``X`` (see the module docstring)."""
        Xa = np.atleast_2d(np.asarray(X, dtype=float))
        n = Xa.shape[0]
        ya = np.full(n, np.nan) if y is None else np.asarray(y, dtype=float).ravel()
        psi = np.full(n, np.nan) if vardir is None else np.asarray(vardir, dtype=float).ravel()
        s2 = self.sigma2_v_
        synth = Xa @ self.beta_
        g2_base = np.einsum("ij,jk,ik->i", Xa, self.beta_cov_, Xa)
        sampled = np.isfinite(ya) & np.isfinite(psi)
        with np.errstate(invalid="ignore", divide="ignore"):
            gamma = np.where(sampled, s2 / (s2 + psi), 0.0)
        est = np.where(sampled, gamma * np.nan_to_num(ya) + (1 - gamma) * synth, synth)
        fit_psi = self._fit_psi
        vi_fit = 1.0 / (s2 + fit_psi)
        m = fit_psi.size
        if self.method == "FH":
            vbar = 2.0 * m / np.sum(vi_fit) ** 2
            sum1, sum2 = np.sum(vi_fit), np.sum(vi_fit**2)
            bias = 2.0 * (m * sum2 - sum1**2) / sum1**3
        else:
            vbar = 2.0 / np.sum(vi_fit**2)
            if self.method == "ML":
                Xf = self._fit_X
                trace = np.trace(self.beta_cov_ @ (Xf.T @ ((vi_fit**2)[:, None] * Xf)))
                bias = -trace / np.sum(vi_fit**2)
            else:
                bias = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            b = np.where(sampled, psi / (s2 + psi), 1.0)  # 1 - gamma
            g1 = np.where(sampled, gamma * psi, 0.0)
            g2 = b**2 * g2_base
            g3 = np.where(sampled, psi**2 / (s2 + psi) ** 3 * vbar, 0.0)
            mse_in = g1 + g2 + 2 * g3 - bias * b**2
        mse_out = s2 + g2_base
        mse = np.where(sampled, mse_in, mse_out)
        return est, mse

    def gamma(self, vardir: ArrayLike) -> np.ndarray:
        """Shrinkage weights ``sigma2_v / (sigma2_v + psi)`` on the direct estimates."""
        psi = np.asarray(vardir, dtype=float)
        return self.sigma2_v_ / (self.sigma2_v_ + psi)


def benchmark(
    estimates: ArrayLike,
    weights: ArrayLike,
    target: float,
    *,
    method: str = "ratio",
) -> np.ndarray:
    """Adjust ``estimates`` so that their ``weights``-weighted mean equals ``target``.

    ``ratio`` multiplies every estimate by one factor (suits rates and positive means),
    ``difference`` adds one constant (suits log means). Simple benchmarking, as in Pfeffermann
    (2013) and Rao & Molina (2015, 6.3): it fixes coherence with the national figure at
    the cost of a small bias in areas far from the average.
    """
    e = np.asarray(estimates, dtype=float)
    w = np.asarray(weights, dtype=float)
    ok = np.isfinite(e) & np.isfinite(w) & (w > 0)
    current = float(np.sum(w[ok] * e[ok]) / np.sum(w[ok]))
    if method == "ratio":
        if current == 0:
            raise ModelError("ratio benchmarking is undefined when the weighted mean is 0")
        return e * (target / current)
    if method == "difference":
        return e + (target - current)
    raise ModelError(f"benchmark method {method!r} is unknown; use 'ratio' or 'difference'")


# --------------------------------------------------------------------------- helpers


def _arrays(X: ArrayLike, y: ArrayLike, vardir: ArrayLike) -> tuple[np.ndarray, ...]:
    Xa = np.atleast_2d(np.asarray(X, dtype=float))
    ya = np.asarray(y, dtype=float).ravel()
    psi = np.asarray(vardir, dtype=float).ravel()
    if Xa.shape[0] != ya.size or psi.size != ya.size:
        raise ModelError(
            f"X has {Xa.shape[0]} rows, y {ya.size} and vardir {psi.size}; pass one row per area"
        )
    return Xa, ya, psi


def _loglike(
    X: np.ndarray, y: np.ndarray, psi: np.ndarray, s2: float, beta: np.ndarray, *, reml: bool
) -> float:
    v = s2 + psi
    res = y - X @ beta
    ll = -0.5 * (np.sum(np.log(2 * math.pi * v)) + np.sum(res**2 / v))
    if reml:
        xtvx = X.T @ ((1.0 / v)[:, None] * X)
        ll -= 0.5 * float(np.linalg.slogdet(xtvx)[1])
        ll += 0.5 * X.shape[1] * math.log(2 * math.pi)
    return float(ll)
