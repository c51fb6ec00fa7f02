"""Daytime multispectral imagery (red, green, blue, near-infrared) at ~20 m.

Each pixel is a linear mixture of surface reflectances (the way a real sensor integrates a
pixel), then seen through clouds, haze, the sensor's blur and noise, and quantised to 8-bit
digital numbers (``DN = 320 * reflectance``; 255 saturates) or, in the ``sentinel2``
format, to 16-bit Sentinel-2 L2A-like numbers (``DN = 10000 * reflectance + 1000``) with a
scene classification (SCL) raster marking clouds and their shadows::

    rho = f_road rho_road + sum_k f_k rho_k + (1 - f_road - sum_k f_k) rho_ground

Ground is natural vegetation (greenness from rainfall and season, patchy forest, green
river banks) or, near people, rectangular field parcels (green crop, tilled soil, fallow)
on rotated plot grids. ``f_k`` are the sub-pixel fractions of every household's dwelling
(its footprint in the pixel holding it) by roof material (thatch, new or rusted metal,
tiles), with its shadow and swept compound; towns add non-residential concrete and a
street grid. The wealth signal is therefore spatial and physical (roof colour and
brightness, building size and density, paved roads, field patterns) and never a band
holding a number. Clouds are thresholded fractal noise covering ``cloud_share`` of the
area, with their shadows.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from scipy.ndimage import gaussian_filter

from povertymap.world.frame import Block, Frame
from povertymap.world.households import Dwellings
from povertymap.world.randomness import hash_uniform, value_noise, value_noise_grid
from povertymap.world.roads import ROAD_CLASSES

__all__ = [
    "BANDS",
    "DN_PER_REFLECTANCE",
    "IMAGERY_FORMATS",
    "S2_DN_PER_REFLECTANCE",
    "S2_OFFSET_DN",
    "SCL",
    "SCL_MASKED",
    "ImageryContext",
    "cloud_threshold",
    "render_block",
    "render_block_s2",
]

BANDS = ("red", "green", "blue", "nir")
DN_PER_REFLECTANCE = 320.0
#: How the imagery is written: ``uint8`` (``DN = 320 * reflectance``, the default) or
#: ``sentinel2`` (16-bit L2A-like reflectance with an SCL scene classification raster).
IMAGERY_FORMATS = ("uint8", "sentinel2")
#: Sentinel-2 L2A quantification: ``DN = 10000 * reflectance + 1000`` (processing baseline
#: 04.00 on, i.e. ``scale: 1.0e-4, offset: -0.1`` in the study config).
S2_DN_PER_REFLECTANCE = 10_000.0
S2_OFFSET_DN = 1000
#: Sentinel-2 scene classification (SCL) values written by the ``sentinel2`` format.
SCL = {
    "no_data": 0,
    "cloud_shadow": 3,
    "vegetation": 4,
    "not_vegetated": 5,
    "water": 6,
    "cloud_medium": 8,
    "cloud_high": 9,
}
#: The SCL classes a study masks: cloud shadow, cloud (medium, high), thin cirrus.
SCL_MASKED = (3, 8, 9, 10)

#: Surface reflectance (red, green, blue, nir) of every material.
RHO: dict[str, tuple[float, float, float, float]] = {
    "green_vegetation": (0.04, 0.09, 0.035, 0.42),
    "forest": (0.03, 0.06, 0.03, 0.33),
    "dry_grass": (0.17, 0.15, 0.10, 0.26),
    "bare_soil": (0.22, 0.16, 0.11, 0.27),
    "tilled_soil": (0.15, 0.11, 0.08, 0.19),
    "green_crop": (0.05, 0.11, 0.04, 0.46),
    "fallow": (0.14, 0.14, 0.09, 0.27),
    "lake": (0.02, 0.04, 0.05, 0.01),
    "river": (0.07, 0.08, 0.06, 0.03),
    "paved": (0.09, 0.09, 0.10, 0.11),
    "unpaved": (0.27, 0.19, 0.13, 0.29),
    "thatch": (0.12, 0.10, 0.07, 0.16),
    "metal": (0.48, 0.50, 0.52, 0.46),
    "metal_rusty": (0.24, 0.16, 0.11, 0.25),
    "tiles": (0.36, 0.17, 0.11, 0.31),
    "concrete": (0.33, 0.33, 0.32, 0.33),
    "compound": (0.28, 0.22, 0.16, 0.30),
    "shadow": (0.02, 0.02, 0.03, 0.03),
    "cloud": (0.78, 0.79, 0.81, 0.78),
}
_HAZE = np.array([0.015, 0.02, 0.03, 0.008])
_CLOUD_SCALE_M = 3000.0


def _rho(name: str) -> np.ndarray:
    return np.asarray(RHO[name], dtype=np.float32)[:, None, None]


@dataclass(frozen=True)
class ImageryContext:
    """Everything the renderer needs that does not change from window to window."""

    frame: Frame
    res: float
    season: str
    veg: np.ndarray  #: cell-grid base greenness in [0, 1]
    cultivation: np.ndarray  #: cell-grid share of land under fields
    urban_density: np.ndarray  #: cell-grid people/km² in towns and cities (0 elsewhere)
    rainfall: np.ndarray
    lake: shapely.Geometry
    rivers: list[shapely.Geometry]  #: river polygons (buffered lines)
    riparian: list[shapely.Geometry]
    roads: gpd.GeoDataFrame
    keys: dict[str, int]
    cloud_threshold: float


def cloud_threshold(frame: Frame, share: float, key: int, rng: np.random.Generator) -> float:
    """The cloud-noise level exceeded on ``share`` of the frame (from 40,000 random points)."""
    if share <= 0:
        return np.inf
    xmin, ymin, xmax, ymax = frame.bounds
    x = rng.uniform(xmin, xmax, 40000)
    y = rng.uniform(ymin, ymax, 40000)
    return float(np.quantile(_cloud_noise(x, y, key), 1.0 - share))


def _cloud_noise(x: np.ndarray, y: np.ndarray, key: int) -> np.ndarray:
    return value_noise(x, y, _CLOUD_SCALE_M, key, octaves=4)


def _interp_axis(
    coord: np.ndarray, origin: float, step: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the left grid node and weight of the right one for linear interpolation
    at ``coord`` on nodes ``origin + k * step`` (k < n), clamped at the edges."""
    f = np.clip((np.asarray(coord, dtype=np.float64) - origin) / step, 0, n - 1)
    i = np.minimum(np.floor(f).astype(np.int64), max(n - 2, 0))
    return i, (f - i).astype(np.float32)


def _resample(
    stack: np.ndarray,
    x_nodes: tuple[float, float],
    y_nodes: tuple[float, float],
    xs: np.ndarray,
    ys: np.ndarray,
) -> np.ndarray:
    """Linear interpolation of a stack of grids ``(k, rows, cols)`` at pixel centres.

    Node ``(r, c)`` sits at ``(x0 + c dx, y0 + r dy)`` with ``x_nodes = (x0, dx)`` and
    ``y_nodes = (y0, dy)``. Separable: the rows the window needs are interpolated along
    x, then blended, a few operations per output pixel and layer.
    """
    _, nr, nc = stack.shape
    c0, wc = _interp_axis(xs, x_nodes[0], x_nodes[1], nc)
    r0, wr = _interp_axis(ys, y_nodes[0], y_nodes[1], nr)
    rlo, rhi = int(r0.min()), min(int(r0.max()) + 2, nr)
    sub = stack[:, rlo:rhi].astype(np.float32)
    if nc > 1:
        sub = sub[:, :, c0] * (1 - wc) + sub[:, :, np.minimum(c0 + 1, nc - 1)] * wc
    else:
        sub = np.repeat(sub, xs.size, axis=2)
    if nr > 1:
        i = r0 - rlo
        return (
            sub[:, i] * (1 - wr)[:, None]
            + sub[:, np.minimum(i + 1, sub.shape[1] - 1)] * wr[:, None]
        )
    return np.repeat(sub, ys.size, axis=1)


def _burn(
    shapes: list[tuple[shapely.Geometry, int]],
    shape: tuple[int, int],
    transform: Affine,
    all_touched: bool = False,
) -> np.ndarray:
    if not shapes:
        return np.zeros(shape, np.uint8)
    return rasterize(
        shapes, out_shape=shape, transform=transform, dtype="uint8", all_touched=all_touched
    )


#: Materials mixed in a pixel, in the order of the rows of the fraction stack.
_MATERIALS = (
    "green_vegetation",
    "forest",
    "dry_grass",
    "bare_soil",
    "green_crop",
    "tilled_soil",
    "fallow",
    "paved",
    "unpaved",
    "thatch",
    "metal",
    "metal_rusty",
    "tiles",
    "shadow",
    "compound",
    "concrete",
)
_RHO_MATRIX = np.array([RHO[m] for m in _MATERIALS], dtype=np.float32).T  # (4, n_materials)


def render_block(
    ctx: ImageryContext,
    block: Block,
    hx: np.ndarray,
    hy: np.ndarray,
    dwell: Dwellings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one window: ``(uint8 bands (4, h, w), uint8 cloud mask (h, w))``.

    ``hx, hy`` and ``dwell`` describe the households located in the window.
    """
    scene = _render_scene(ctx, block, hx, hy, dwell)
    rho = scene.rho
    # sensor noise: uniform on -2..2 DN (sd 1.4 DN, about 0.004 reflectance)
    rho *= np.float32(DN_PER_REFLECTANCE)
    rho += rng.integers(-2, 3, size=rho.shape, dtype=np.int8)
    dn = np.clip(np.rint(rho), 1, 255).astype(np.uint8)
    return dn, (scene.alpha >= 0.5).astype(np.uint8)


def render_block_s2(
    ctx: ImageryContext,
    block: Block,
    hx: np.ndarray,
    hy: np.ndarray,
    dwell: Dwellings,
    rng: np.random.Generator,
    covered: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one window as Sentinel-2 L2A: ``(uint16 DN (4, h, w), uint8 SCL (h, w),
    uint8 cloud mask (h, w))``.

    ``DN = 10000 * reflectance + 1000`` (the offset of processing baseline 04.00 on;
    reflectance = DN * 1e-4 - 0.1), with Gaussian sensor noise of 0.004 reflectance; 0 is
    no data. The SCL layer classifies every pixel (:data:`SCL`): cloud of high (9) or
    medium (8) probability by cloud opacity, cloud shadow (3), water (6), vegetation (4)
    or not vegetated (5). ``covered`` ``(h, w)`` bool: pixels outside it are no data (DN
    0, SCL 0), for imagery that covers only part of the country.
    """
    scene = _render_scene(ctx, block, hx, hy, dwell)
    rho = scene.rho + rng.normal(0.0, 0.004, size=scene.rho.shape).astype(np.float32)
    dn = np.clip(np.rint(rho * np.float32(S2_DN_PER_REFLECTANCE)) + S2_OFFSET_DN, 1, 65535)
    red, nir = rho[0], rho[3]
    ndvi = (nir - red) / np.maximum(nir + red, np.float32(1e-6))
    scl = np.where(ndvi > 0.4, SCL["vegetation"], SCL["not_vegetated"]).astype(np.uint8)
    scl[scene.water > 0] = SCL["water"]
    scl[(scene.shade >= 0.5) & (scene.alpha < 0.2)] = SCL["cloud_shadow"]
    scl[scene.alpha >= 0.2] = SCL["cloud_medium"]
    scl[scene.alpha >= 0.5] = SCL["cloud_high"]
    dn = dn.astype(np.uint16)
    if covered is not None:
        dn[:, ~covered] = 0
        scl[~covered] = SCL["no_data"]
    return dn, scl, (scene.alpha >= 0.5).astype(np.uint8)


@dataclass(frozen=True)
class _Scene:
    """Reflectance at the sensor (after haze and blur, before noise) and the atmosphere."""

    rho: np.ndarray  #: (4, h, w) float32
    alpha: np.ndarray  #: cloud opacity (h, w)
    shade: np.ndarray  #: cloud-shadow strength (h, w)
    water: np.ndarray  #: 1 lake, 2 river, 0 land (h, w)


def _render_scene(
    ctx: ImageryContext,
    block: Block,
    hx: np.ndarray,
    hy: np.ndarray,
    dwell: Dwellings,
) -> _Scene:
    """The window's reflectance seen through the atmosphere and the sensor's blur."""
    frame, res = ctx.frame, ctx.res
    ipc = round(frame.cell_size / res)
    h, w = (block.r1 - block.r0) * ipc, (block.c1 - block.c0) * ipc
    xmin, _, _, ymax = frame.bounds
    wx0 = xmin + block.c0 * frame.cell_size
    wy1 = ymax - block.r0 * frame.cell_size
    transform = Affine(res, 0.0, wx0, 0.0, -res, wy1)
    xs = wx0 + (np.arange(w) + 0.5) * res
    ys = wy1 - (np.arange(h) + 0.5) * res
    keys = ctx.keys
    bbox = shapely.box(wx0, wy1 - h * res, wx0 + w * res, wy1)
    f32 = np.float32

    # smooth fields at 100 m (cell fields interpolated, fractal noises), then one
    # separable interpolation of the whole stack to the pixels
    step = 100.0
    cxs = np.arange(wx0 - step / 2, wx0 + w * res + step, step)
    cys = np.arange(wy1 + step / 2, wy1 - h * res - step, -step)
    cs = frame.cell_size
    rr0, rr1 = max(block.r0 - 2, 0), min(block.r1 + 2, frame.ny)
    cc0, cc1 = max(block.c0 - 2, 0), min(block.c1 + 2, frame.nx)
    near = (slice(rr0, rr1), slice(cc0, cc1))
    fields = np.stack(
        [ctx.veg[near], ctx.rainfall[near], ctx.cultivation[near], ctx.urban_density[near]]
    )
    base = _resample(
        fields, (xmin + (cc0 + 0.5) * cs, cs), (ymax - (rr0 + 0.5) * cs, -cs), cxs, cys
    )
    veg_c, rain_c, cult_c, dens_c = base
    # forest where a patchy noise exceeds a level that falls with rain (none below 900 mm)
    forest_level = 0.55 - 0.25 * np.clip((rain_c - 1000.0) / 600.0, 0.0, 1.0)
    forest_margin = np.where(
        rain_c > 900.0, value_noise_grid(cxs, cys, 900.0, keys["forest"], 2) - forest_level, -1.0
    )
    layers = [
        veg_c + 0.14 * value_noise_grid(cxs, cys, 600.0, keys["veg"], 2),
        forest_margin,
        np.clip(0.5 + 0.5 * value_noise_grid(cxs, cys, 600.0, keys["soil"], 2), 0.0, 1.0),
        cult_c,
        dens_c,
    ]
    clouds = [
        _cloud_grid(cxs, cys, keys["cloud"]),
        _cloud_grid(cxs + 500.0, cys - 400.0, keys["cloud"]),
    ]
    cloudy = max(float(c.max()) for c in clouds) > ctx.cloud_threshold - 0.05
    coarse = np.stack(layers + clouds if cloudy else layers).astype(f32)
    smooth = _resample(coarse, (cxs[0], step), (cys[0], -step), xs, ys)
    veg, forest_margin, soil, cult, dens = smooth[:5]

    # natural ground: greenness from rain and season, patchy forest, green river banks
    riparian = _burn([(g, 1) for g in ctx.riparian if g.intersects(bbox)], (h, w), transform)
    veg = np.clip(veg + f32(0.25) * riparian, 0.02, 0.97)
    forest = (forest_margin > 0).astype(f32)

    # fields: rotated plot grids near people, each plot green crop, tilled soil or fallow
    tile = 2000.0
    ti = np.floor(xs / tile).astype(np.int64)
    tj = np.floor(ys / tile).astype(np.int64)
    ui, uj = np.unique(ti), np.unique(tj)
    theta_t = (hash_uniform(ui[None, :], uj[:, None], keys["plot_angle"]) * np.pi).astype(f32)
    size_t = (50.0 + 70.0 * hash_uniform(ui[None, :], uj[:, None], keys["plot_size"])).astype(f32)
    sel = np.ix_(np.searchsorted(uj, tj), np.searchsorted(ui, ti))
    cos_t, sin_t, plot = np.cos(theta_t)[sel], np.sin(theta_t)[sel], size_t[sel]
    dx = (xs - ti * tile).astype(f32)[None, :]  # metres from the tile's corner
    dy = (ys - tj * tile).astype(f32)[:, None]
    pi_ = np.floor((dx * cos_t + dy * sin_t) / plot).astype(np.int64) + (ti[None, :] << 8)
    pj = np.floor((dy * cos_t - dx * sin_t) / (plot * f32(1.6))).astype(np.int64) + (
        tj[:, None] << 8
    )
    hplot = hash_uniform(pi_, pj, keys["plot_use"]).astype(f32)
    del pi_, pj, cos_t, sin_t, plot
    is_field = (hplot < cult).astype(f32) * (1 - forest)
    state = (hplot * f32(4096.0)) % f32(1.0)  # low bits of the same hash: independent of use
    wet = ctx.season == "wet"
    crop_cut, till_cut = (0.55, 0.8) if wet else (0.1, 0.7)

    # dwellings: sub-pixel fractions by roof material, with shadow and compound
    col = np.floor((hx - wx0) / res).astype(np.int64)
    row = np.floor((wy1 - hy) / res).astype(np.int64)
    ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    flat = (row * w + col)[ok]
    area = dwell.footprint_m2[ok] / (res * res)
    roof = dwell.roof[ok]
    rusty = dwell.rusty[ok]

    yard = dwell.yard_m2[ok] / (res * res)

    def frac(mask: np.ndarray, scale: float = 1.0, of: np.ndarray = area) -> np.ndarray:
        return (
            np.bincount(flat[mask], weights=of[mask] * scale, minlength=h * w)
            .reshape(h, w)
            .astype(f32)
        )

    every = np.ones(flat.size, bool)
    parts = {
        "thatch": frac(roof == 0),
        "metal": frac((roof == 1) & ~rusty),
        "metal_rusty": frac((roof == 1) & rusty),
        "tiles": frac(roof == 2),
        "shadow": frac(every, 0.3),
        "compound": frac(every, of=yard) * (dens < 1500.0),
        "concrete": np.zeros((h, w), f32),
    }
    if dens.max() > 1500.0:
        # non-residential buildings in towns: 60 m blocks of concrete, metal or tile roofs
        hb = hash_uniform(
            np.floor(xs / 60.0).astype(np.int64)[None, :],
            np.floor(ys / 60.0).astype(np.int64)[:, None],
            keys["urban_blocks"],
        ).astype(f32)
        nonres = (hb < np.clip((dens - 1500.0) / 20000.0, 0.0, 0.6)) * f32(0.7)
        kind = (hb * f32(4096.0)) % f32(1.0)
        parts["concrete"] += nonres * (kind < 0.5)
        parts["metal"] += nonres * ((kind >= 0.5) & (kind < 0.8))
        parts["tiles"] += nonres * (kind >= 0.8)
    built = sum(parts.values())
    shrink = np.where(built > 0.9, 0.9 / np.maximum(built, 1e-6), 1.0).astype(f32)
    built = built * shrink

    # roads: the true network, width as a share of the pixel; street grids in towns
    roads = ctx.roads
    hit = roads.sindex.query(bbox, predicate="intersects")
    shapes: list[tuple[shapely.Geometry, int]] = []
    width = np.zeros(5, f32)
    classes = roads["highway"].to_numpy()[hit]
    geoms = roads.geometry.to_numpy()[hit]
    for code, cls in enumerate(("track", "tertiary", "secondary", "primary"), start=1):
        shapes += [(g, code) for g in geoms[classes == cls]]
        width[code] = ROAD_CLASSES[cls][1]
    road_code = _burn(shapes, (h, w), transform)
    f_road = np.minimum(width[road_code] / f32(res), 1.0)
    grid_x = ((xs % 110.0) < 15.0)[None, :]
    grid_y = ((ys % 110.0) < 15.0)[:, None]
    streets = (dens > 1500.0) & (grid_x | grid_y) & (road_code == 0)
    f_road = np.where(streets, f32(0.45), f_road)
    f_road = np.minimum(f_road, 1.0 - built)
    paved = (road_code >= 3) | (streets & (dens > 6000.0))

    # the fraction stack, one row per material, and one matrix product to reflectance
    ground = 1.0 - f_road - built
    natural = ground * (1 - is_field)
    fields = ground * is_field
    bush = natural * (1 - forest)
    stack = np.empty((len(_MATERIALS), h, w), f32)
    stack[0] = bush * veg
    stack[1] = natural * forest
    stack[2] = bush * (1 - veg) * soil
    stack[3] = bush * (1 - veg) * (1 - soil)
    stack[4] = fields * (state < crop_cut)
    stack[5] = fields * ((state >= crop_cut) & (state < till_cut))
    stack[6] = fields * (state >= till_cut)
    stack[7] = f_road * paved
    stack[8] = f_road * ~paved
    for i, name in enumerate(_MATERIALS[9:], start=9):
        stack[i] = parts[name] * shrink
    rho = (_RHO_MATRIX @ stack.reshape(len(_MATERIALS), -1)).reshape(4, h, w)
    del stack

    # water
    water = np.zeros((h, w), np.uint8)
    if ctx.lake.intersects(bbox):
        water = _burn([(ctx.lake, 1)], (h, w), transform)
    river = [(g, 2) for g in ctx.rivers if g.intersects(bbox)]
    if river:
        water = np.maximum(water, _burn(river, (h, w), transform))
    if water.any():
        rho = np.where(water == 1, _rho("lake"), np.where(water == 2, _rho("river"), rho))

    # atmosphere: cloud shadows, clouds, haze; then sensor blur (noise and quantisation
    # are the sensor's: see render_block and render_block_s2)
    alpha = np.zeros((h, w), f32)
    shade = np.zeros((h, w), f32)
    if cloudy:
        thr = ctx.cloud_threshold
        alpha = np.clip((smooth[5] - thr) / 0.04 + 0.5, 0.0, 1.0)
        shade = np.clip((smooth[6] - thr) / 0.04 + 0.5, 0.0, 1.0)
        rho = rho * (1.0 - 0.5 * shade * (1.0 - alpha)) + alpha * (_rho("cloud") - rho)
    rho = rho + _HAZE[:, None, None].astype(f32)
    for b in range(4):
        rho[b] = gaussian_filter(rho[b], 0.5, mode="nearest", truncate=2.0)
    return _Scene(rho=rho, alpha=alpha, shade=shade, water=water)


def _cloud_grid(xs: np.ndarray, ys: np.ndarray, key: int) -> np.ndarray:
    return value_noise_grid(xs, ys, _CLOUD_SCALE_M, key, octaves=4)
