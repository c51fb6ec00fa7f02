"""Poverty headcounts from predicted mean log consumption.

Within a cell, log consumption per person is taken as normal (consumption log-normal, the
classic model of Aitchison & Brown 1957 used in poverty mapping since Elbers, Lanjouw &
Lanjouw 2003) around the cell mean ``mu`` with the within-area sd ``s`` estimated from the
survey households (pooled within-cluster sd by urban/rural). The cell's headcount at the
poverty line ``z`` is::

    P(mu) = Phi((z - mu) / s)

The map knows ``mu`` only up to its model error ``mu = mu_hat + u``, ``u ~ N(0, sigma²)``,
so the *expected* headcount integrates over it, which for normal errors is closed-form::

    E[P] = Phi((z - mu_hat) / sqrt(s² + sigma²))

Ignoring ``sigma`` would make headcounts too extreme (0 in rich cells, 1 in poor ones).
The interval of the cell headcount is the image of the interval of ``mu`` under the
decreasing map ``P``: ``[P(upper), P(lower)]``, so it keeps the coverage of the ``mu``
interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import ndtr, ndtri

from povertymap.errors import InputError, ModelError
from povertymap.estimate.direct import household_weights

__all__ = [
    "expected_headcount",
    "headcount",
    "headcount_interval",
    "realized_headcount_interval",
    "relative_line",
]


def headcount(mu: ArrayLike, within_sd: ArrayLike, poverty_line: float) -> np.ndarray:
    """Share below ``poverty_line`` of a normal with mean ``mu`` and sd ``within_sd``."""
    s = _positive(within_sd, "within_sd")
    return np.asarray(ndtr((poverty_line - np.asarray(mu, dtype=float)) / s))


def expected_headcount(
    mu_hat: ArrayLike, within_sd: ArrayLike, pred_sd: ArrayLike, poverty_line: float
) -> np.ndarray:
    """Headcount averaged over a normal predictive distribution of the cell mean."""
    s = _positive(within_sd, "within_sd")
    e = np.asarray(pred_sd, dtype=float)
    if (e < 0).any():
        raise ModelError("pred_sd must not be negative")
    return np.asarray(ndtr((poverty_line - np.asarray(mu_hat, dtype=float)) / np.sqrt(s**2 + e**2)))


def headcount_interval(
    lower: ArrayLike, upper: ArrayLike, within_sd: ArrayLike, poverty_line: float
) -> tuple[np.ndarray, np.ndarray]:
    """Headcount interval from an interval ``[lower, upper]`` of the cell mean."""
    return headcount(upper, within_sd, poverty_line), headcount(lower, within_sd, poverty_line)


def realized_headcount_interval(
    mu_hat: ArrayLike,
    halfwidth: ArrayLike,
    within_sd: ArrayLike,
    n_households: ArrayLike,
    poverty_line: float,
    *,
    level: float,
    rng: np.random.Generator,
    n_draws: int = 400,
    chunk: int = 20_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the headcount *realised* by the few households of a cell.

    A cell of ``H`` households has a realised headcount ``k / H``, ``k ~ Binomial(H, P(mu))``
    around its expected one; with ``H`` of 5 the realised value is 0, 0.2, ... 1 and the
    interval of the expected headcount would miss it often. The cell mean is drawn from a
    normal whose central ``level`` interval is ``mu_hat +/- halfwidth`` (the conformal
    interval of the expected mean), then ``k`` from the binomial; the interval is the
    draws' ``(1 - level)/2`` and ``(1 + level)/2`` quantiles (inverted CDF, so a
    discrete distribution is covered at least at ``level``). Household shares stand in
    for person shares. Cells without households (``H < 1``) get the expected-headcount
    interval.
    """
    mu = np.asarray(mu_hat, dtype=float).ravel()
    n = mu.size
    h = np.broadcast_to(np.asarray(halfwidth, dtype=float), (n,))
    s = np.broadcast_to(_positive(within_sd, "within_sd"), (n,))
    hh = np.broadcast_to(np.asarray(n_households, dtype=float), (n,))
    z = float(ndtri(0.5 + level / 2))
    a = (1 - level) / 2
    lo, hi = headcount_interval(mu - h, mu + h, s, poverty_line)
    lo, hi = lo.astype(float).copy(), hi.astype(float).copy()
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        H = np.rint(hh[sl])
        ok = np.isfinite(H) & (H >= 1) & np.isfinite(mu[sl])
        if not ok.any():
            continue
        m = mu[sl][ok, None] + (h[sl][ok, None] / z) * rng.standard_normal((ok.sum(), n_draws))
        p = ndtr((poverty_line - m) / s[sl][ok, None])
        Hk = H[ok][:, None].astype(np.int64)
        share = rng.binomial(np.broadcast_to(Hk, p.shape), p) / Hk
        idx = np.flatnonzero(ok) + start
        lo[idx] = np.quantile(share, a, axis=1, method="inverted_cdf")
        hi[idx] = -np.quantile(-share, a, axis=1, method="inverted_cdf")
    return lo, hi


def _positive(values: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if not (np.isfinite(a) & (a > 0)).all():
        raise ModelError(f"{name} must be positive and finite, got {a.ravel()[:5]!r}...")
    return a


def relative_line(households: pd.DataFrame, share: float, *, person_weighted: bool = True) -> float:
    """The welfare below which ``share`` of the surveyed people live (weighted quantile).

    Households weigh by their design weight (times their size with ``person_weighted``,
    see :func:`~povertymap.estimate.direct.household_weights`); the line is the smallest
    welfare whose cumulative weight reaches ``share``.
    """
    if not 0 < share < 1:
        raise InputError(
            f"a relative poverty line of {share:.0%} is not a share between 0 and 100%",
            where="key poverty_line",
            fix="give e.g. poverty_line: 40%",
        )
    w = household_weights(households, person_weighted=person_weighted).to_numpy(dtype=float)
    y = households["welfare"].to_numpy(dtype=float)
    order = np.argsort(y, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    return float(y[order][np.searchsorted(cum, share)])
