"""Simple imagery statistics: colour, vegetation and texture of daytime imagery.

These hand-made summaries (band means, NDVI, brightness texture) are the cheap end of the
imagery signal; the CNN and random convolutional features in ``features.embeddings``
learn richer ones from the same raster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from povertymap.features.zonal import RasterFeatureBlock, ZonalSpec, ratio
from povertymap.io.raster import RasterSource

__all__ = ["ImageryFeatures"]

_VISIBLE = ("red", "green", "blue")


@dataclass
class ImageryFeatures(RasterFeatureBlock):
    """Band means, brightness spread and edge density, NDVI mean and spread per zone.

    Columns: ``img_<band>_mean`` per band, ``img_bright_std`` (texture), ``img_edge_mean``
    (mean gradient of brightness: roofs, roads and field borders make edges),
    ``img_ndvi_mean``, ``img_ndvi_std`` (when bands ``red`` and ``nir`` exist).
    """

    name: ClassVar[str] = "img"
    description: ClassVar[str] = "imagery band means, NDVI mean/std, brightness texture"
    raster: ClassVar[str] = "imagery"

    def spec(self, source: RasterSource) -> ZonalSpec:
        """Per-band values, brightness and its square, gradient, NDVI and its square."""
        index = {name: i for i, name in enumerate(source.band_names)}
        visible = [index[b] for b in _VISIBLE if b in index] or list(index.values())
        ndvi_bands = (index["red"], index["nir"]) if "red" in index and "nir" in index else None

        def layers(data: np.ma.MaskedArray) -> dict[str, np.ndarray]:
            valid = ~np.ma.getmaskarray(data).any(axis=0)
            filled = np.ma.filled(data.astype(np.float64), np.nan)
            out = {f"b_{name}": np.where(valid, filled[i], np.nan) for name, i in index.items()}
            bright = np.where(valid, filled[visible].mean(axis=0), np.nan)
            fill = float(np.nanmean(bright)) if valid.any() else 0.0
            gy, gx = np.gradient(np.nan_to_num(bright, nan=fill))
            out.update(
                bright=bright, bright_sq=bright**2, edge=np.where(valid, np.hypot(gx, gy), np.nan)
            )
            if ndvi_bands is not None:
                red, nir = filled[ndvi_bands[0]], filled[ndvi_bands[1]]
                with np.errstate(invalid="ignore", divide="ignore"):
                    ndvi = (nir - red) / (nir + red)
                ndvi = np.where(valid & np.isfinite(ndvi), ndvi, np.nan)
                out.update(ndvi=ndvi, ndvi_sq=ndvi**2)
            return out

        return ZonalSpec(layers=layers)

    def finish(self, sums: pd.DataFrame, km2: np.ndarray) -> pd.DataFrame:
        """Means and spreads from the zone sums."""
        out = pd.DataFrame(index=sums.index)
        for col in sums.columns:
            if col.startswith("b_") and col.endswith("_sum"):
                band = col[2:-4]
                out[f"img_{band}_mean"] = ratio(sums[col], sums[f"b_{band}_count"])
        bright = ratio(sums["bright_sum"], sums["bright_count"])
        out["img_bright_std"] = np.sqrt(
            np.clip(ratio(sums["bright_sq_sum"], sums["bright_count"]) - bright**2, 0.0, None)
        )
        out["img_edge_mean"] = ratio(sums["edge_sum"], sums["edge_count"])
        if "ndvi_sum" in sums:
            ndvi = ratio(sums["ndvi_sum"], sums["ndvi_count"])
            out["img_ndvi_mean"] = ndvi
            out["img_ndvi_std"] = np.sqrt(
                np.clip(ratio(sums["ndvi_sq_sum"], sums["ndvi_count"]) - ndvi**2, 0.0, None)
            )
        return out
