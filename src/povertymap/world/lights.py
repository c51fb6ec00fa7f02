"""Electrification and a VIIRS-like nighttime lights composite.

A cell is on the grid with probability
``logistic(-2.2 + 2.2 (mu_c - m0) + 2.5 U_c + 0.6 log(D_c / 100) - d_grid / 4 km + G_c)``
(richer, denser, urban places near the main roads' power lines; G a patchy field). Only
connected households emit: a household contributes ``size * exp(0.9 (log c_h - m0))``
"lit-person equivalents", urban cells add street lighting, and the emission is spread over
the cell's 100 m pixels like its people. The sensor blurs it (60 % Gaussian of 350 m, 40 %
of 1 km: blooming), samples it on a 15 arc-second WGS84 grid, scales it to nW/cm²/sr, adds
multiplicative and additive noise, zeroes what falls below the detection floor (as the
masked annual composites do) and clips at the saturation level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import Transformer
from scipy.ndimage import gaussian_filter, map_coordinates

from povertymap.world.cells import CellLayer, window_admin
from povertymap.world.frame import Frame
from povertymap.world.settlements import Settlements, fine_density
from povertymap.world.spec import WorldSpec
from povertymap.world.welfare import M0

__all__ = ["LightsGrid", "electrification", "lights_grid", "render_lights"]

#: nW/cm²/sr per lit-person equivalent per km² (after blur).
RADIANCE_PER_DENSITY = 0.0065


def electrification(
    mu: np.ndarray,
    urban: np.ndarray,
    density: np.ndarray,
    grid_km: np.ndarray,
    patch: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Whether each cell is on the power grid (bool array)."""
    logit = (
        -2.2
        + 2.2 * (mu - M0)
        + 2.5 * urban
        + 0.6 * np.log(np.maximum(density, 1.0) / 100.0)
        - grid_km / 4.0
        + patch
    )
    return rng.random(mu.shape) < 1.0 / (1.0 + np.exp(-logit))


def household_light(
    log_consumption: np.ndarray, size: np.ndarray, connected: np.ndarray
) -> np.ndarray:
    """Lit-person equivalents emitted by households."""
    return np.where(connected, size * np.exp(0.9 * (log_consumption - M0)), 0.0)


def street_light(
    urban: np.ndarray, people: np.ndarray, density: np.ndarray, electrified: np.ndarray
) -> np.ndarray:
    """Lit-person equivalents of public and commercial lighting in urban cells."""
    return np.where(
        urban & electrified, 0.6 * people * np.sqrt(np.maximum(density, 0.0) / 5000.0), 0.0
    )


@dataclass(frozen=True)
class LightsGrid:
    """The WGS84 grid of the composite and its pixel centres in the working CRS."""

    transform: Affine
    width: int
    height: int
    x: np.ndarray  #: (height, width) working-CRS x of pixel centres
    y: np.ndarray


def lights_grid(frame: Frame, res_deg: float) -> LightsGrid:
    """A grid aligned to multiples of ``res_deg`` covering the frame in WGS84."""
    to_ll = Transformer.from_crs(frame.crs, "EPSG:4326", always_xy=True)
    xmin, ymin, xmax, ymax = frame.bounds
    xs = np.r_[
        np.linspace(xmin, xmax, 50),
        np.full(50, xmax),
        np.linspace(xmax, xmin, 50),
        np.full(50, xmin),
    ]
    ys = np.r_[
        np.full(50, ymin),
        np.linspace(ymin, ymax, 50),
        np.full(50, ymax),
        np.linspace(ymax, ymin, 50),
    ]
    lon, lat = to_ll.transform(xs, ys)
    k = 1.0 / res_deg
    lon0, lon1 = np.floor(np.min(lon) * k) / k, np.ceil(np.max(lon) * k) / k
    lat0, lat1 = np.floor(np.min(lat) * k) / k, np.ceil(np.max(lat) * k) / k
    width = round((lon1 - lon0) * k)
    height = round((lat1 - lat0) * k)
    transform = Affine(res_deg, 0.0, lon0, 0.0, -res_deg, lat1)
    clon = lon0 + (np.arange(width) + 0.5) * res_deg
    clat = lat1 - (np.arange(height) + 0.5) * res_deg
    glon, glat = np.meshgrid(clon, clat)
    to_xy = Transformer.from_crs("EPSG:4326", frame.crs, always_xy=True)
    x, y = to_xy.transform(glon, glat)
    return LightsGrid(transform, width, height, np.asarray(x), np.asarray(y))


def render_lights(
    spec: WorldSpec,
    frame: Frame,
    cells: CellLayer,
    settlements: Settlements,
    light: np.ndarray,
    grid: LightsGrid,
    texture_key: int,
    rng: np.random.Generator,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The radiance composite (float32, ``(height, width)``) from per-cell emission."""
    ppc = cells.ppc
    res = frame.cell_size / ppc
    halo = int(np.ceil(3000.0 / frame.cell_size))
    xmin, _, _, ymax = frame.bounds
    col_f = (grid.x - xmin) / frame.cell_size
    row_f = (ymax - grid.y) / frame.cell_size
    radiance = np.zeros((grid.height, grid.width))
    total = frame.n_blocks(spec.block_cells)
    for b in frame.blocks(spec.block_cells):
        if progress is not None:
            progress(b.index, total)
        here = (row_f >= b.r0) & (row_f < b.r1) & (col_f >= b.c0) & (col_f < b.c1)
        r0, r1, c0, c1 = b.r0 - halo, b.r1 + halo, b.c0 - halo, b.c1 + halo
        sub = np.zeros((r1 - r0, c1 - c0))
        rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, frame.ny), max(c0, 0), min(c1, frame.nx)
        sub[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = light[rr0:rr1, cc0:cc1]
        if not here.any() or sub.max() <= 0:
            continue
        d = fine_density(
            frame,
            settlements,
            r0 * ppc,
            c0 * ppc,
            ((r1 - r0) * ppc, (c1 - c0) * ppc),
            res,
            texture_key,
        )
        d = np.where(window_admin(cells, r0, r1, c0, c1) >= 0, d, 0.0)
        nr, nc = r1 - r0, c1 - c0
        per_cell = d.reshape(nr, ppc, nc, ppc).sum(axis=(1, 3))
        scale = np.divide(sub, per_cell, out=np.zeros_like(sub), where=per_cell > 0)
        emis = d * np.repeat(np.repeat(scale, ppc, axis=0), ppc, axis=1)
        emis_km2 = emis / (res / 1000.0) ** 2
        blurred = 0.6 * gaussian_filter(
            emis_km2, 350.0 / res, mode="constant"
        ) + 0.4 * gaussian_filter(emis_km2, 1000.0 / res, mode="constant")
        pr = (row_f[here] - r0) * ppc - 0.5
        pc = (col_f[here] - c0) * ppc - 0.5
        radiance[here] = map_coordinates(blurred, [pr, pc], order=1, mode="constant")
    if progress is not None:
        progress(total, total)
    obs = RADIANCE_PER_DENSITY * radiance * np.exp(rng.normal(0, 0.12, radiance.shape))
    obs = obs + rng.normal(0, 0.15, radiance.shape)
    obs = np.where(obs < spec.lights_floor, 0.0, np.minimum(obs, spec.lights_saturation))
    return obs.astype(np.float32)
