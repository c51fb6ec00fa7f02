"""The predictive distribution of an area's headcount, for uncertainty-aware targeting.

A map gives each area a point headcount and, often, an interval (``poverty_lower``,
``poverty_upper``) or a standard deviation (``poverty_sd``). Two areas with the same point
estimate are not equally good bets: the one whose interval reaches far above the point has
more poor people *in expectation*, and the one with a tight interval is more surely above a
threshold. To use this we give each area a distribution of its headcount ``h``:

* a **two-piece logit-normal**: ``logit(h)`` has median ``logit(point)`` and a normal
  scale ``s_lo`` below the median and ``s_hi`` above it, so asymmetric intervals (as from
  conformal prediction or from mapping a consumption interval through the poverty line)
  keep their shape, and ``h`` stays inside (0, 1);
* from an interval, ``s_lo = (logit(point) - logit(lower)) / z`` and
  ``s_hi = (logit(upper) - logit(point)) / z`` with ``z`` the normal quantile of the
  interval's level (central 90% by default);
* from a standard deviation on the headcount scale, ``s_lo = s_hi = sd / (p (1 - p))``
  (delta method).

The point estimate is taken as the *median*: a plug-in headcount (the share below the line
at the predicted consumption) is a monotone transform of the predicted median, not a mean.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit
from scipy.stats import norm

from povertymap.errors import InputError

__all__ = ["expected_headcount", "logit_scales", "probability_above"]

_EPS = 1e-4
_GRID = norm.ppf((np.arange(200) + 0.5) / 200)  # equal-probability normal quantiles


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)


def logit_scales(
    rate: np.ndarray,
    *,
    sd: np.ndarray | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    level: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """Scales ``(s_lo, s_hi)`` of logit(headcount) below and above the median.

    Give either ``lower`` and ``upper`` (a central ``level`` interval) or ``sd``.
    """
    if not 0 < level < 1:
        raise InputError(f"interval level {level!r} is not in (0, 1)", fix="give e.g. 0.9")
    p = _clip(rate)
    if lower is not None and upper is not None:
        lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        rate_arr = np.asarray(rate, dtype=float)
        tol = 1e-9
        outside = (lo > rate_arr + tol) | (hi < rate_arr - tol)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise InputError(
                f"{int(outside.sum())} unit(s) have poverty_rate outside "
                f"[poverty_lower, poverty_upper], first: {rate_arr[i]} not in [{lo[i]}, {hi[i]}]",
                fix="give intervals that contain the point estimate",
            )
        z = float(norm.ppf(0.5 + level / 2))
        s_lo = (logit(p) - logit(_clip(np.minimum(lo, rate_arr)))) / z
        s_hi = (logit(_clip(np.maximum(hi, rate_arr))) - logit(p)) / z
        return np.maximum(s_lo, 0.0), np.maximum(s_hi, 0.0)
    if sd is not None:
        s = np.asarray(sd, dtype=float) / (p * (1 - p))
        if (s < 0).any():
            raise InputError("poverty_sd has negative values", fix="give standard deviations >= 0")
        return s, s
    raise InputError(
        "no uncertainty given for the predictive distribution",
        fix="give poverty_lower and poverty_upper, or poverty_sd",
    )


def expected_headcount(rate: np.ndarray, s_lo: np.ndarray, s_hi: np.ndarray) -> np.ndarray:
    """E[h] under the two-piece logit-normal with median ``rate`` and scales ``s_lo``, ``s_hi``."""
    m = logit(_clip(rate))[:, None]
    lo, hi = np.asarray(s_lo, dtype=float)[:, None], np.asarray(s_hi, dtype=float)[:, None]
    below = _GRID[None, :] < 0
    out = np.empty(len(m))
    step = 20000  # rows per chunk: bounded memory for country-size grids
    for start in range(0, len(m), step):
        sl = slice(start, start + step)
        scale = np.where(below, lo[sl], hi[sl])
        out[sl] = expit(m[sl] + scale * _GRID[None, :]).mean(axis=1)
    exact = (np.asarray(s_lo) == 0) & (np.asarray(s_hi) == 0)
    out[exact] = np.asarray(rate, dtype=float)[exact]
    return out


def probability_above(
    rate: np.ndarray, s_lo: np.ndarray, s_hi: np.ndarray, threshold: float
) -> np.ndarray:
    """P(h > threshold) under the two-piece logit-normal (1/0 where the scale is 0)."""
    if not 0 < threshold < 1:
        raise InputError(
            f"headcount threshold {threshold!r} is not in (0, 1)",
            fix="give a headcount threshold such as 0.4",
        )
    rate = np.asarray(rate, dtype=float)
    d = float(logit(threshold)) - logit(_clip(rate))
    scale = np.where(d > 0, s_hi, s_lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = norm.sf(d / scale)
    point = rate > threshold
    return np.where(scale > 0, prob, point.astype(float))
