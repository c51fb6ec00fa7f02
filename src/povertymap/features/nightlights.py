"""Nightlight features: brightness, its spread and distribution, and how much is dark.

Nightlights are the classic proxy for economic activity (Henderson et al. 2012), but they
saturate in city cores and are dark over most poor rural land (Jean et al. 2016), so the
share of dark pixels and the distribution's quantiles are kept beside the mean.
Quantiles come from a cumulative histogram (shares of pixels below fixed radiances), which
adds up across cells like every other layer, so a zone's quantiles are exact up to the
interpolation between histogram edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from povertymap.features.zonal import RasterFeatureBlock, ZonalSpec, ratio
from povertymap.io.raster import RasterSource

__all__ = ["DARK_THRESHOLD", "HISTOGRAM_EDGES", "NightlightFeatures", "histogram_quantile"]

#: Radiance (nW/cm²/sr) below which a VIIRS pixel counts as dark: about the sensor's
#: practical detection floor after background noise removal (Elvidge et al. 2017).
DARK_THRESHOLD = 0.5
#: Radiance edges of the cumulative histogram used for quantiles (doubling steps).
HISTOGRAM_EDGES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)


def histogram_quantile(cdf: np.ndarray, q: float, edges: tuple[float, ...]) -> np.ndarray:
    """Quantile ``q`` per row of ``cdf`` (share of pixels <= each edge), interpolated.

    The CDF is taken as 0 at radiance 0 and linear between edges; rows whose CDF never
    reaches ``q`` get the last edge (the value is at least that bright).
    """
    x = np.concatenate([[0.0], np.asarray(edges)])
    cdf = np.asarray(cdf, dtype=float).reshape(len(cdf), -1)
    f = np.column_stack([np.zeros(len(cdf)), np.maximum.accumulate(cdf, axis=1)])
    out = np.full(len(cdf), np.nan)
    ok = np.all(np.isfinite(f), axis=1)
    f = f[ok]
    # rows are non-decreasing: the first edge reaching q is the count of values below it
    k = np.sum(f < q, axis=1)
    beyond = k >= len(x)
    kk = np.minimum(k, len(x) - 1)
    prev = np.maximum(kk - 1, 0)
    rows = np.arange(len(f))
    lo, hi = f[rows, prev], f[rows, kk]
    flat = (kk == 0) | (hi == lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = x[prev] + (q - lo) / (hi - lo) * (x[kk] - x[prev])
    out[ok] = np.where(beyond, x[-1], np.where(flat, x[kk], between))
    return out


@dataclass
class NightlightFeatures(RasterFeatureBlock):
    """Statistics of the ``nightlights`` raster over each zone.

    Columns: ``nl_mean, nl_max, nl_std, nl_sum`` (mean radiance x km²), ``nl_q10, nl_q50,
    nl_q90``, ``nl_dark_share`` (share of pixels below ``dark_threshold``),
    ``nl_log1p_mean``.
    """

    name: ClassVar[str] = "nl"
    description: ClassVar[str] = "nightlight radiance: mean, max, spread, quantiles, dark share"
    raster: ClassVar[str] = "nightlights"
    dark_threshold: float = DARK_THRESHOLD

    def spec(self, source: RasterSource) -> ZonalSpec:
        """Radiance, its square, the dark indicator and the cumulative histogram."""
        threshold = self.dark_threshold

        def layers(data: np.ma.MaskedArray) -> dict[str, np.ndarray]:
            value = np.clip(np.ma.filled(data[0].astype(np.float64), np.nan), 0.0, None)
            valid = np.isfinite(value)

            def indicator(mask: np.ndarray) -> np.ndarray:
                return np.where(valid, mask.astype(np.float64), np.nan)

            out = {"value": value, "sq": value**2, "dark": indicator(value < threshold)}
            for k, edge in enumerate(HISTOGRAM_EDGES):
                out[f"le{k}"] = indicator(value <= edge)
            return out

        return ZonalSpec(layers=layers, bands=(1,), max_layers=("value",))

    def finish(self, sums: pd.DataFrame, km2: np.ndarray) -> pd.DataFrame:
        """Mean, spread, quantiles and dark share from the zone sums."""
        n = sums["value_count"]
        mean = ratio(sums["value_sum"], n)
        var = np.clip(ratio(sums["sq_sum"], n) - mean**2, 0.0, None)
        cdf = np.column_stack(
            [ratio(sums[f"le{k}_sum"], sums[f"le{k}_count"]) for k in range(len(HISTOGRAM_EDGES))]
        )
        out = pd.DataFrame(index=sums.index)
        out["nl_mean"] = mean
        out["nl_max"] = sums["value_max"].to_numpy()
        out["nl_std"] = np.sqrt(var)
        out["nl_sum"] = mean * km2
        for q in (10, 50, 90):
            out[f"nl_q{q}"] = histogram_quantile(cdf, q / 100, HISTOGRAM_EDGES)
        out["nl_dark_share"] = ratio(sums["dark_sum"], sums["dark_count"])
        out["nl_log1p_mean"] = np.log1p(mean)
        return out
