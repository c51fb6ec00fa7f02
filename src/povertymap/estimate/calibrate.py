"""De-shrinking predictions: a linear calibration fitted on out-of-fold predictions.

A model trained for squared error predicts ``E[y | x]``, whose spread is smaller than the
truth's: ``Var(pred) = r² Var(true)`` for a well-calibrated predictor with correlation
``r``. A map of such predictions understates inequality (rich places look poorer, poor
places richer). No linear map fixes both the slope and the spread unless ``r = 1``:

* ``regression`` (``y ~ pred`` by OLS): slope of truth on the estimate 1, but the variance
  ratio estimate/truth is ``r²``;
* ``variance`` (match the spread of the truth): variance ratio 1, but slope ``r``;
* ``balanced``: the geometric middle, spread ratio ``sqrt(r)``: slope ``sqrt(r)`` and
  variance ratio ``r``.

For an estimate with sd ratio ``k = sd(est)/sd(true)``: ``slope = r / k`` and variance
ratio ``k²``. Both targets ``slope >= 0.9`` and ``ratio >= 0.8`` hold for some ``k`` only
when ``r >= 0.9 * sqrt(0.8) = 0.805`` (``r² >= 0.65``); ``balanced`` meets both from
``r >= 0.81``.

The observed cluster means ``y`` carry sampling and measurement noise ``e`` (variance
``v_k`` = within-cluster variance / n, from the households) that the true cell means do
not. Noise in ``y`` does not bias ``Cov(y, pred)`` but inflates ``Var(y)``, so the true
variance is deconvolved as ``Var(true) = Var(y) - mean(v_k)`` and ``r`` is the
disattenuated correlation ``Cov(y, pred) / sqrt(Var(pred) Var(true))`` (Spearman's
correction for attenuation).

Noise in ``pred`` that the map's own predictions do not have (``pred_noise_var``: the
positional error of predictions made at displaced cluster locations, measured by
re-displacing them) is the opposite case: it inflates ``Var(pred)`` and attenuates the
slope of ``y`` on ``pred`` (regression dilution), so a calibration fitted on it would
over-shrink the map. ``Var(pred) - pred_noise_var`` is used in its place (the errors-in-
variables correction, Fuller 1987).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator

from povertymap.errors import ModelError

__all__ = ["LinearCalibrator", "calibration_report"]

_METHODS = ("balanced", "regression", "variance", "none")


class LinearCalibrator(BaseEstimator):
    """Linear de-shrinking of predictions, ``calibrated = intercept_ + slope_ * pred``.

    Parameters
    ----------
    method:
        ``balanced`` (default), ``regression``, ``variance`` or ``none`` (see the module
        docstring for what each guarantees).

    Attributes
    ----------
    slope_, intercept_:
        The fitted map.
    r_:
        Disattenuated correlation of the truth with the prediction.
    var_true_:
        ``Var(y) - mean(noise_var)``, the estimated variance of the true cluster means.
    report_:
        Slope of truth on prediction and variance ratio before and after, ``r²`` observed
        and disattenuated, the noise share of ``Var(y)`` and whether the targets are
        attainable (see :func:`calibration_report`).
    """

    def __init__(self, method: str = "balanced") -> None:
        self.method = method

    def fit(
        self,
        pred: ArrayLike,
        y: ArrayLike,
        noise_var: ArrayLike | None = None,
        target_extra_var: float = 0.0,
        pred_noise_var: float = 0.0,
    ) -> LinearCalibrator:
        """Fit on out-of-fold predictions ``pred`` of noisy cluster means ``y``.

        ``noise_var`` is each cluster mean's sampling variance (scalar or per cluster);
        without it ``y`` is taken as noise-free. ``target_extra_var`` is variance that
        the values the map is judged against have beyond the true cluster means and that
        no prediction can follow, e.g. the finite-population deviation of the mean
        realised by a cell's few households (population-weighted mean of
        ``s^2 sum m^2 / (sum m)^2``): ``balanced`` and ``variance`` then aim at the
        spread of that target, ``Var(true) + target_extra_var``, and ``r`` is the
        correlation with it. ``pred_noise_var`` is the variance of an error in ``pred``
        that the predictions to calibrate do not have (module docstring), at most half
        of ``Var(pred)``.
        """
        if self.method not in _METHODS:
            raise ModelError(
                f"calibration method {self.method!r} is unknown; use one of {', '.join(_METHODS)}"
            )
        p, t = _clean(pred, y)
        nv = 0.0 if noise_var is None else float(np.nanmean(np.asarray(noise_var, dtype=float)))
        var_p = float(np.var(p)) - min(max(float(pred_noise_var), 0.0), 0.5 * float(np.var(p)))
        var_y = float(np.var(t))
        cov = float(np.mean((p - p.mean()) * (t - t.mean())))
        if var_p <= 0:
            raise ModelError(
                "out-of-fold predictions are constant, so no calibration can be fitted; "
                "check the model (it may have predicted the mean everywhere)"
            )
        var_true = var_y - nv
        if var_true <= 0.05 * var_y:
            raise ModelError(
                f"the variance of the cluster means ({var_y:.4g}) is not above their "
                f"sampling-noise variance ({nv:.4g}); the survey cannot tell true "
                "differences between clusters from noise. Use more households per cluster "
                "or calibration='none'"
            )
        extra = max(float(target_extra_var), 0.0)
        var_target = var_true + extra
        r = cov / np.sqrt(var_p * var_target)
        if r <= 0 and self.method in ("balanced", "variance"):
            raise ModelError(
                f"out-of-fold predictions do not correlate positively with the survey "
                f"(r = {r:.3f}); a map from this model is not usable. Improve the features "
                "or the model before estimating"
            )
        r = float(min(r, 1.0))
        if self.method == "regression":
            slope = cov / var_p
        elif self.method == "none":
            slope = 1.0
        else:  # spread ratio k = sd(calibrated) / sd(true)
            k = 1.0 if self.method == "variance" else float(np.sqrt(r))
            slope = k * np.sqrt(var_target / var_p)
        self.slope_ = float(slope)
        self.intercept_ = float(t.mean() - slope * p.mean()) if self.method != "none" else 0.0
        self.r_ = r
        self.var_true_ = var_true
        self.var_target_ = var_target
        self.report_ = calibration_report(
            p, t, self.predict(p), noise_var=nv, target_extra_var=extra
        )
        return self

    def predict(self, pred: ArrayLike) -> np.ndarray:
        """Calibrated predictions."""
        return self.intercept_ + self.slope_ * np.asarray(pred, dtype=float)


def calibration_report(
    pred: ArrayLike,
    y: ArrayLike,
    calibrated: ArrayLike,
    *,
    noise_var: float = 0.0,
    target_extra_var: float = 0.0,
) -> dict[str, Any]:
    """Slope of truth on the estimate and variance ratio estimate/truth, before and after.

    ``y`` may be noisy (cluster means); ``noise_var`` (mean sampling variance) is removed
    from ``Var(y)`` so the figures estimate those against the noise-free truth. Slopes
    are unaffected by noise in ``y``. ``attainable`` says whether a linear calibration can
    reach slope >= 0.9 and variance ratio >= 0.8 together (``r >= 0.805``) against the
    target, whose variance is ``Var(true) + target_extra_var`` (see
    :meth:`LinearCalibrator.fit`); the ``*_target`` figures are against that target,
    the others against the true cluster means.
    """
    p, t = _clean(pred, y)
    c = np.asarray(calibrated, dtype=float)
    var_y = float(np.var(t))
    var_true = var_y - noise_var
    var_target = var_true + max(float(target_extra_var), 0.0)

    def slope(x: np.ndarray) -> float:
        vx = float(np.var(x))
        return float(np.mean((x - x.mean()) * (t - t.mean())) / vx) if vx > 0 else float("nan")

    cov = float(np.mean((p - p.mean()) * (t - t.mean())))
    r_obs = cov / np.sqrt(np.var(p) * var_y) if np.var(p) > 0 else float("nan")
    r_true = cov / np.sqrt(np.var(p) * var_true) if var_true > 0 and np.var(p) > 0 else float("nan")
    r_target = (
        cov / np.sqrt(np.var(p) * var_target) if var_target > 0 and np.var(p) > 0 else float("nan")
    )
    return {
        "slope_before": slope(p),
        "var_ratio_before": float(np.var(p) / var_true) if var_true > 0 else float("nan"),
        "slope_after": slope(c),
        "var_ratio_after": float(np.var(c) / var_true) if var_true > 0 else float("nan"),
        "r2_observed": float(r_obs**2),
        "r2_true": float(min(r_true, 1.0) ** 2) if np.isfinite(r_true) else float("nan"),
        "noise_share": float(noise_var / var_y) if var_y > 0 else float("nan"),
        "target_extra_var": float(var_target - var_true),
        "var_ratio_after_target": float(np.var(c) / var_target) if var_target > 0 else float("nan"),
        "r2_target": float(min(r_target, 1.0) ** 2) if np.isfinite(r_target) else float("nan"),
        "attainable": bool(np.isfinite(r_target) and r_target >= 0.9 * np.sqrt(0.8)),
        "n": int(p.size),
    }


def _clean(pred: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=float).ravel()
    t = np.asarray(y, dtype=float).ravel()
    if p.shape != t.shape:
        raise ModelError(f"pred has {p.size} values but y has {t.size}; pass aligned arrays")
    ok = np.isfinite(p) & np.isfinite(t)
    if ok.sum() < 10:
        raise ModelError(
            f"only {int(ok.sum())} clusters have both a prediction and an observed value; "
            "calibration needs at least 10"
        )
    return p[ok], t[ok]
