"""Simple imagery statistics: colour, vegetation and texture of daytime imagery.

These hand-made summaries (band means, NDVI, brightness texture) are the cheap end of the
imagery signal; the CNN and random convolutional features in ``features.embeddings``
learn richer ones from the same raster.

Units: every statistic is computed on reflectance, ``DN * scale + offset`` with the
raster's radiometry (:func:`~povertymap.io.raster.open_imagery`: the config's ``scale`` and
``offset``, or the defaults of the data type), so 8-bit, 16-bit and float imagery of the
same ground give the same features, and every threshold (``cloud_min``,
``roof_contrast``, ``texture_min``) is a reflectance. Pixels masked by the imagery's nodata,
its class mask (e.g. Sentinel-2 SCL cloud classes) or its valid range are left out.

Partial coverage: a zone without any valid pixel (outside the imagery, all cloud) gets NaN
features, and ``img_valid``, the share of its pixels that are valid, is 0; the models
impute NaN (LightGBM natively, ridge with the median) so such zones still get an estimate
from the other blocks. :func:`imagery_coverage` counts them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from povertymap.errors import ConfigError
from povertymap.features.zonal import RasterFeatureBlock, ZonalSpec, ratio
from povertymap.io.raster import ImagerySource, RasterSource, open_imagery, radiometry

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = [
    "IMAGERY_VALID_COLUMNS",
    "ImageryFeatures",
    "has_imagery",
    "imagery_coverage",
    "imagery_of",
]

_VISIBLE = ("red", "green", "blue")
#: Columns holding each zone's share of valid imagery, by imagery block.
IMAGERY_VALID_COLUMNS = ("img_valid", "cnn_valid", "rcf_valid")
#: NDVI levels of the cumulative histogram the NDVI quantiles are read from.
NDVI_LEVELS = (-0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: NDVI quantiles reported with ``pixel_stats``.
NDVI_QUANTILES = (0.1, 0.5, 0.9)
_CACHE_KEY = "imagery-source"


def imagery_of(area: StudyArea) -> ImagerySource:
    """The study area's ``imagery`` raster with the radiometry and mask of its config.

    Opened once per study area (the mask raster, if any, is checked then) and kept in
    ``area.cache``; a study area whose loader already made it an
    :class:`~povertymap.io.raster.ImagerySource` is used as it is.
    """
    source = area.rasters["imagery"]
    if isinstance(source, ImagerySource):
        return source
    cfg = area.config.rasters.get("imagery")
    key = (str(source.path), None if cfg is None else cfg.model_dump_json())
    cached = area.cache.get(_CACHE_KEY)
    if cached is not None and cached[0] == key:
        found: ImagerySource = cached[1]
        return found
    imagery = open_imagery(source, cfg)
    area.cache[_CACHE_KEY] = (key, imagery)
    return imagery


def cloud_pixels(
    reflectance: np.ndarray, visible: list[int], cloud_min: float | None
) -> np.ndarray:
    """Pixels of ``reflectance (bands, rows, cols)`` whose visible bands are all ``>=
    cloud_min`` (bright and white: thick cloud); none when ``cloud_min`` is None."""
    if cloud_min is None:
        return np.zeros(reflectance.shape[1:], dtype=bool)
    return np.asarray(np.all(reflectance[visible] >= cloud_min, axis=0))


def _neighbours(values: np.ndarray) -> list[np.ndarray]:
    """The 9 values of each pixel's 3 x 3 neighbourhood as shifted copies (NaN beyond the
    edge), centre included at position 4."""
    rows, cols = values.shape
    padded = np.full((rows + 2, cols + 2), np.nan)
    padded[1:-1, 1:-1] = values
    return [padded[i : i + rows, j : j + cols] for i in range(3) for j in range(3)]


def local_std(values: np.ndarray) -> np.ndarray:
    """Standard deviation of each pixel's 3 x 3 neighbourhood (NaN unless all 9 are finite).

    Computed from shifted copies, so a pixel's value depends on its neighbourhood alone
    (not on where the window read around it starts): cell sums stay the same however the
    zones are chunked.
    """
    shifts = _neighbours(values)
    mean = sum(shifts) / 9.0
    var = sum((s - mean) ** 2 for s in shifts) / 9.0
    return np.asarray(np.sqrt(var))


def local_contrast(values: np.ndarray) -> np.ndarray:
    """Each pixel minus the mean of its 8 neighbours (NaN unless all 9 are finite)."""
    shifts = _neighbours(values)
    around = sum(s for k, s in enumerate(shifts) if k != 4) / 8.0
    return np.asarray(values - around)


@dataclass
class ImageryFeatures(RasterFeatureBlock):
    """Band means, brightness spread and edge density, NDVI mean and spread per zone.

    Columns: ``img_<band>_mean`` per band (reflectance), ``img_bright_std`` (spread of
    brightness, the mean of the visible bands), ``img_edge_mean`` (mean gradient of
    brightness: roofs, roads and field borders make edges), ``img_ndvi_mean``,
    ``img_ndvi_std`` (when bands ``red`` and ``nir`` exist), ``img_valid`` (share of the
    zone's pixels inside the raster that are valid imagery, i.e. not nodata, masked or
    cloud; 0 for a zone with no valid pixel, e.g. beyond the imagery's edge. A buffer
    reaching past the edge of a raster that covers the whole country is not missing
    imagery, so the part beyond the edge does not count).

    ``cloud_min``: pixels whose visible bands all reach this reflectance are cloud and left
    out (None, the default: no brightness test; a mask in the config still applies).

    ``pixel_stats`` adds pixel-level signal, each pixel seen with its 3 x 3 neighbourhood
    (a 5 km buffer mean of the bands blurs a village's roofs into its fields):
    ``img_roof_share`` (share of bright-roof pixels: brighter than the mean of their 8
    neighbours by ``roof_contrast`` reflectance or more, with NDVI below ``roof_ndvi_max``;
    at 10-20 m a metal or concrete roof is a bright spot, bare soil is not),
    ``img_texture_mean`` and ``img_texture_std`` (mean and spread over pixels of the 3 x 3
    standard deviation of brightness: built-up texture), ``img_built_share`` (share of
    pixels whose texture reaches ``texture_min``), ``img_ndvi_texture`` (mean 3 x 3
    standard deviation of NDVI: houses and plots in vegetation) and ``img_ndvi_q10``,
    ``img_ndvi_q50``, ``img_ndvi_q90`` (NDVI quantiles, interpolated in a cumulative
    histogram at :data:`NDVI_LEVELS`). Off by default: it changes the figures of every
    study; the measured gain is in docs/deep.md.
    """

    name: ClassVar[str] = "img"
    description: ClassVar[str] = "imagery band means, NDVI mean/std, brightness texture"
    raster: ClassVar[str] = "imagery"

    cloud_min: float | None = None
    pixel_stats: bool = False
    roof_contrast: float = 0.04
    roof_ndvi_max: float = 0.3
    texture_min: float = 0.01

    def __post_init__(self) -> None:
        for key in ("cloud_min", "roof_contrast", "texture_min"):
            value = getattr(self, key)
            if value is not None and not -1.0 <= value <= 2.0:
                raise ConfigError(
                    f"img {key}={value!r} is not a reflectance",
                    where=f"key features.params.img.{key}",
                    fix="thresholds are reflectance (0-1 after the raster's scale and "
                    "offset), not DN: e.g. 0.585 for cloud",
                )

    def spec(self, source: RasterSource) -> ZonalSpec:
        """Per-band reflectance, brightness and its square, gradient, NDVI and its square
        (plus roofs, texture and the NDVI histogram with ``pixel_stats``)."""
        index = {name: i for i, name in enumerate(source.band_names)}
        visible = [index[b] for b in _VISIBLE if b in index] or list(index.values())
        ndvi_bands = (index["red"], index["nir"]) if "red" in index and "nir" in index else None
        scale, offset = radiometry(source)
        cloud_min, pixel_stats = self.cloud_min, self.pixel_stats
        roof_contrast, roof_ndvi_max = self.roof_contrast, self.roof_ndvi_max
        texture_min = self.texture_min

        def layers(data: np.ma.MaskedArray) -> dict[str, np.ndarray]:
            if data.shape[0] > len(index):  # the extent band (see ``transform``)
                inside = np.ma.getdata(data)[-1] == 1
                data = data[: len(index)]
            else:
                inside = np.ones(data.shape[1:], dtype=bool)
            filled = np.ma.getdata(data).astype(np.float64) * scale + offset
            valid = ~np.ma.getmaskarray(data).any(axis=0)
            valid &= ~cloud_pixels(filled, visible, cloud_min)
            filled[:, ~valid] = np.nan
            out = {f"b_{name}": filled[i] for name, i in index.items()}
            bright = filled[visible].mean(axis=0)
            fill = float(np.nanmean(bright)) if valid.any() else 0.0
            gy, gx = np.gradient(np.nan_to_num(bright, nan=fill))
            out.update(
                bright=bright, bright_sq=bright**2, edge=np.where(valid, np.hypot(gx, gy), np.nan)
            )
            ndvi = None
            if ndvi_bands is not None:
                red, nir = filled[ndvi_bands[0]], filled[ndvi_bands[1]]
                with np.errstate(invalid="ignore", divide="ignore"):
                    ndvi = (nir - red) / (nir + red)
                ndvi = np.where(valid & np.isfinite(ndvi), ndvi, np.nan)
                out.update(ndvi=ndvi, ndvi_sq=ndvi**2)
            out["inside"] = np.where(inside, 1.0, np.nan)
            if pixel_stats:
                contrast = local_contrast(bright)
                tex = local_std(bright)
                known = np.isfinite(tex)  # the pixel and its 8 neighbours are valid
                with np.errstate(invalid="ignore"):
                    roof = contrast >= roof_contrast
                    if ndvi is not None:
                        roof &= ndvi < roof_ndvi_max
                    built = tex >= texture_min
                out["roof"] = np.where(known, roof.astype(np.float64), np.nan)
                out.update(tex=tex, tex_sq=tex**2)
                out["built"] = np.where(known, built.astype(np.float64), np.nan)
                if ndvi is not None:
                    out["ndvi_tex"] = local_std(ndvi)
                    known = np.isfinite(ndvi)
                    for k, level in enumerate(NDVI_LEVELS):
                        below = (ndvi <= level).astype(np.float64)
                        out[f"ndvi_le{k}"] = np.where(known, below, np.nan)
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
        out["img_bright_std"] = _spread(sums, "bright", bright)
        out["img_edge_mean"] = ratio(sums["edge_sum"], sums["edge_count"])
        if "ndvi_sum" in sums:
            ndvi = ratio(sums["ndvi_sum"], sums["ndvi_count"])
            out["img_ndvi_mean"] = ndvi
            out["img_ndvi_std"] = _spread(sums, "ndvi", ndvi)
        total = sums["inside_count"].to_numpy(dtype=float)
        share = ratio(sums["bright_count"], sums["inside_count"])
        out["img_valid"] = np.where(total > 0, np.nan_to_num(share, nan=0.0), 0.0)
        if self.pixel_stats:
            out["img_roof_share"] = ratio(sums["roof_sum"], sums["roof_count"])
            texture = ratio(sums["tex_sum"], sums["tex_count"])
            out["img_texture_mean"] = texture
            out["img_texture_std"] = _spread(sums, "tex", texture)
            out["img_built_share"] = ratio(sums["built_sum"], sums["built_count"])
            if "ndvi_le0_sum" in sums:
                out["img_ndvi_texture"] = ratio(sums["ndvi_tex_sum"], sums["ndvi_tex_count"])
                quantiles = ndvi_quantiles(sums, NDVI_QUANTILES)
                for q, values in zip(NDVI_QUANTILES, quantiles.T, strict=True):
                    out[f"img_ndvi_q{round(q * 100):02d}"] = values
        return out

    def source(self, area: StudyArea) -> RasterSource:
        """The imagery with its radiometry, and the band of its extent."""
        return dataclasses.replace(imagery_of(area), extent_band=True)

    def cache_key(self) -> str:
        """Key of the cell sums in ``area.cache``: one per set of parameters."""
        params: dict[str, Any] = {
            "cloud_min": self.cloud_min,
            "pixel_stats": self.pixel_stats,
            "roof_contrast": self.roof_contrast,
            "roof_ndvi_max": self.roof_ndvi_max,
            "texture_min": self.texture_min,
        }
        return f"cell-sums:{self.name}:" + ",".join(f"{k}={v}" for k, v in params.items())


def _spread(sums: pd.DataFrame, layer: str, mean: np.ndarray) -> np.ndarray:
    """Standard deviation from a layer's sum of squares and its mean."""
    square = ratio(sums[f"{layer}_sq_sum"], sums[f"{layer}_count"])
    return np.asarray(np.sqrt(np.clip(square - mean**2, 0.0, None)))


def ndvi_quantiles(sums: pd.DataFrame, quantiles: tuple[float, ...]) -> np.ndarray:
    """``(zones, len(quantiles))`` NDVI quantiles from the cumulative histogram sums.

    The zone's cumulative distribution is known at :data:`NDVI_LEVELS` (and is 0 at -1, 1
    at 1); a quantile is interpolated linearly between the two levels around it. NaN for
    zones without NDVI.
    """
    count = sums["ndvi_count"].to_numpy(dtype=float)
    levels = np.array([-1.0, *NDVI_LEVELS, 1.0])
    cdf = np.column_stack(
        [np.zeros(len(sums))]
        + [ratio(sums[f"ndvi_le{k}_sum"], sums["ndvi_count"]) for k in range(len(NDVI_LEVELS))]
        + [np.ones(len(sums))]
    )
    cdf = np.maximum.accumulate(np.nan_to_num(cdf, nan=0.0), axis=1)
    out = np.full((len(sums), len(quantiles)), np.nan)
    rows = np.arange(len(sums))
    for j, q in enumerate(quantiles):
        k = np.clip(np.argmax(cdf >= q, axis=1), 1, len(levels) - 1)
        lo, hi = cdf[rows, k - 1], cdf[rows, k]
        t = np.where(hi > lo, (q - lo) / np.where(hi > lo, hi - lo, 1.0), 1.0)
        out[:, j] = levels[k - 1] + np.clip(t, 0.0, 1.0) * (levels[k] - levels[k - 1])
    out[count <= 0] = np.nan
    return out


def _best_valid(features: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Per zone, the largest valid share any imagery block saw (0 where none did)."""
    return features[columns].fillna(0.0).max(axis=1).to_numpy(dtype=float)


def has_imagery(features: pd.DataFrame) -> pd.Series | None:
    """Which zones some imagery block saw a valid pixel of (None: no imagery block ran)."""
    columns = [c for c in IMAGERY_VALID_COLUMNS if c in features.columns]
    if not columns:
        return None
    return pd.Series(_best_valid(features, columns) > 0, index=features.index, name="imagery")


def imagery_coverage(features: pd.DataFrame, *, threshold: float = 0.0) -> dict[str, Any]:
    """How many zones (e.g. map cells) have no imagery, from their ``*_valid`` columns.

    A zone lacks imagery when every imagery block that ran gives it a valid share of at
    most ``threshold`` (0: no valid pixel at all; its imagery features are NaN). Returns
    ``{"zones", "without_imagery", "partial", "share_without", "columns"}`` (``partial``:
    some but not all of the zone is valid); ``{}`` when no imagery block ran.
    """
    columns = [c for c in IMAGERY_VALID_COLUMNS if c in features.columns]
    if not columns:
        return {}
    best = _best_valid(features, columns)
    n = len(features)
    without = int((best <= threshold).sum())
    return {
        "zones": n,
        "without_imagery": without,
        "partial": int(((best > threshold) & (best < 1.0 - 1e-9)).sum()),
        "share_without": without / n if n else 0.0,
        "columns": columns,
    }
