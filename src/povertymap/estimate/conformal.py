"""Cell intervals by Mondrian split conformal prediction on spatially held-out residuals.

Split conformal prediction (Vovk et al. 2005; Lei et al. 2018) turns held-out residuals
into intervals with finite-sample coverage: with scores ``s_1..s_n`` exchangeable with
the test score, ``P(s_test <= s_(k)) >= level`` for ``k = ceil((n + 1) level)``. Here the
held-out residuals are the out-of-fold residuals of spatially blocked cross-validation,
used with the model refitted on all clusters (the "CV" variant of Barber et al. 2021,
whose CV+ refinement needs each fold model's prediction at every cell, which the pipeline
does not keep; the refitted model is at least as accurate as the fold models, so the
OOF residuals err on the wide side). Mondrian conformal prediction (Vovk et al. 2005,
ch. 4) calibrates each category apart, here urban and rural, so that coverage holds
within both and not only on average.

**Noisy calibration targets.** The OOF residual of cluster ``k`` is
``r_k = (m_k - p_k) + e_k``: model error plus the sampling/measurement noise ``e_k`` of
a 25-household mean (variance ``v_k`` = within-cluster variance / n, known from the
households). A cell interval must cover the true cell mean, whose error ``m - p`` has no
``e``. Plain conformal on ``|r_k|`` therefore over-covers the truth. The correction
("scale") normalises the scores (the locally weighted scores of Lei et al. 2018, with a
known scale)::

    sigma2_g = mean_g(r_k^2) - mean_g(v_k)        (deconvolved model-error variance)
    s_k      = |r_k| / sqrt(sigma2_g + v_k)
    interval = p +/- q_g * sigma_g                  (q_g: conformal quantile of s in g)

If model errors and noise are Gaussian, ``s_k`` and ``|m - p| / sigma_g`` have the same
distribution, so the intervals keep the conformal level against the truth; with heavier
tails the normalisation keeps the tail shape of the residuals and only removes the noise
scale. The displaced cluster locations make cluster predictions worse than cell
predictions, so residual-based intervals lean wide; with ``estimate.position_draws``
the estimation stage measures that positional error by re-displacing the clusters and
passes it in ``noise_var`` with the sampling noise (:mod:`povertymap.estimate.cells`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator

from povertymap.errors import ModelError

__all__ = ["MondrianConformal", "conformal_quantile"]

_POOLED = "__pooled__"


def conformal_quantile(scores: ArrayLike, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest score (Lei et al. 2018); inf if beyond n."""
    s = np.sort(np.asarray(scores, dtype=float))
    n = s.size
    k = math.ceil((n + 1) * level)
    if k > n:
        return math.inf
    return float(s[k - 1])


class MondrianConformal(BaseEstimator):
    """Mondrian split-conformal intervals with sampling-noise deconvolution.

    Parameters
    ----------
    level:
        Nominal coverage (0.9).
    noise_correction:
        ``scale`` (deconvolve the noise of the calibration targets, see the module
        docstring) or ``none`` (plain conformal on ``|r|``).
    min_group_size:
        Groups with fewer residuals use the pooled quantile and sd.
    variance_floor:
        Lower bound of the deconvolved model-error variance, as a share of
        ``mean(r^2)``; hit when the noise estimate exceeds the residual variance.

    Attributes
    ----------
    quantile_, sigma_, halfwidth_, n_, noise_share_:
        Per group (and ``"__pooled__"``): normalised conformal quantile, model-error sd,
        interval half-width, number of residuals, share of ``mean(r^2)`` that is noise.
    pooled_groups_:
        Groups that fell back to the pooled values.
    floored_:
        Groups whose deconvolved variance hit the floor.
    """

    def __init__(
        self,
        level: float = 0.9,
        noise_correction: str = "scale",
        min_group_size: int = 30,
        variance_floor: float = 0.05,
    ) -> None:
        self.level = level
        self.noise_correction = noise_correction
        self.min_group_size = min_group_size
        self.variance_floor = variance_floor

    def fit(
        self,
        residual: ArrayLike,
        groups: ArrayLike | None = None,
        noise_var: ArrayLike | None = None,
    ) -> MondrianConformal:
        """Calibrate on held-out residuals ``y - pred`` (after any calibration)."""
        if not 0 < self.level < 1:
            raise ModelError(f"level={self.level} must lie strictly between 0 and 1")
        if self.noise_correction not in ("scale", "none"):
            raise ModelError(
                f"noise_correction={self.noise_correction!r} is unknown; use 'scale' or 'none'"
            )
        r = np.asarray(residual, dtype=float).ravel()
        g = _groups(groups, r.size)
        v = (
            np.zeros_like(r)
            if noise_var is None
            else np.broadcast_to(np.asarray(noise_var, dtype=float), r.shape).copy()
        )
        ok = np.isfinite(r) & np.isfinite(v)
        r, g, v = r[ok], g[ok], v[ok]
        need = math.ceil(1 / (1 - self.level)) - 1
        if r.size < max(need, 2):
            raise ModelError(
                f"{r.size} held-out residuals are too few for {self.level:.0%} conformal "
                f"intervals (need at least {need}); lower the level or survey more clusters"
            )
        self.quantile_: dict[Hashable, float] = {}
        self.sigma_: dict[Hashable, float] = {}
        self.halfwidth_: dict[Hashable, float] = {}
        self.n_: dict[Hashable, int] = {}
        self.noise_share_: dict[Hashable, float] = {}
        self.floored_: list[Hashable] = []
        self.pooled_groups_: list[Hashable] = []
        self._calibrate(_POOLED, r, v)
        for key in sorted(set(g.tolist()) - {_POOLED}, key=str):
            mask = g == key
            if mask.sum() < max(self.min_group_size, need):
                self.pooled_groups_.append(key)
                for attr in ("quantile_", "sigma_", "halfwidth_", "noise_share_"):
                    getattr(self, attr)[key] = getattr(self, attr)[_POOLED]
                self.n_[key] = int(mask.sum())
                continue
            self._calibrate(key, r[mask], v[mask])
        return self

    def _calibrate(self, key: Hashable, r: np.ndarray, v: np.ndarray) -> None:
        ms = float(np.mean(r**2))
        mv = float(np.mean(v))
        if self.noise_correction == "scale":
            s2 = ms - mv
            if s2 < self.variance_floor * ms:
                s2 = self.variance_floor * ms
                self.floored_.append(key)
            scores = np.abs(r) / np.sqrt(s2 + v)
            q = conformal_quantile(scores, self.level)
            sigma = math.sqrt(s2)
            half = q * sigma
        else:
            q = conformal_quantile(np.abs(r), self.level)
            sigma = math.sqrt(ms)
            half = q
        self.quantile_[key] = q
        self.sigma_[key] = sigma
        self.halfwidth_[key] = half
        self.n_[key] = int(r.size)
        self.noise_share_[key] = mv / ms if ms > 0 else float("nan")

    def halfwidth(
        self, groups: ArrayLike | None, n: int, extra_var: ArrayLike | None = None
    ) -> np.ndarray:
        """Interval half-width per row (pooled for groups unseen in calibration).

        ``extra_var`` is a known, independent error variance of the target beyond the
        model error (e.g. the finite-population deviation of a cell's realised mean from
        its expected value): the half-width becomes ``q_g sqrt(sigma_g^2 + extra_var)``,
        the normalised-score interval for a target of that total variance.
        """
        if extra_var is None or self.noise_correction != "scale":
            return self._lookup(self.halfwidth_, groups, n)
        q = self._lookup(self.quantile_, groups, n)
        s = self._lookup(self.sigma_, groups, n)
        ev = np.broadcast_to(np.asarray(extra_var, dtype=float), (n,))
        return q * np.sqrt(s**2 + np.where(np.isfinite(ev), ev, 0.0))

    def sigma(self, groups: ArrayLike | None, n: int) -> np.ndarray:
        """Model-error sd per row: the deconvolved sd of true value minus prediction."""
        return self._lookup(self.sigma_, groups, n)

    def predict_interval(
        self,
        pred: ArrayLike,
        groups: ArrayLike | None = None,
        extra_var: ArrayLike | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)`` around predictions ``pred`` (calibrated like the residuals).

        See :meth:`halfwidth` for ``extra_var``.
        """
        p = np.asarray(pred, dtype=float).ravel()
        h = self.halfwidth(groups, p.size, extra_var)
        return p - h, p + h

    def summary(self) -> dict[str, Any]:
        """Plain-typed figures for the metrics file."""

        def name(k: Hashable) -> str:
            if k is True:
                return "urban"
            if k is False:
                return "rural"
            return "pooled" if k == _POOLED else str(k)

        return {
            "level": self.level,
            "noise_correction": self.noise_correction,
            "quantile": {name(k): v for k, v in self.quantile_.items()},
            "sigma": {name(k): v for k, v in self.sigma_.items()},
            "halfwidth": {name(k): v for k, v in self.halfwidth_.items()},
            "n": {name(k): v for k, v in self.n_.items()},
            "noise_share": {name(k): v for k, v in self.noise_share_.items()},
            "pooled_groups": [name(k) for k in self.pooled_groups_],
            "floored": [name(k) for k in self.floored_],
        }

    def _lookup(self, table: dict[Hashable, float], groups: ArrayLike | None, n: int) -> np.ndarray:
        g = _groups(groups, n)
        pooled = table[_POOLED]
        return np.array([table.get(k, pooled) for k in g.tolist()], dtype=float)


def _groups(groups: ArrayLike | None, n: int) -> np.ndarray:
    if groups is None:
        return np.full(n, _POOLED, dtype=object)
    g = np.asarray(groups).ravel()
    if g.size != n:
        raise ModelError(f"groups has {g.size} values for {n} rows; pass one group per row")
    if g.dtype == bool:
        return g.astype(object)
    return g
