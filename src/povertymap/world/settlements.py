"""Settlements and the population surface.

People live in cities, towns, villages and hamlets. Each settlement is one or more
Gaussian blobs of people whose width follows from a peak density per kind
(``sigma = sqrt(people / (2 pi D_kind))``), so a city is a wide dense sprawl of several
blobs and a hamlet a speck. Settlements are placed where the land is suitable (rain,
rivers, lake shore) with central-place spacing for cities and towns. Integrating the blobs
over cells gives the expected population per cell; over 100 m pixels (with a hashed
texture) the dasymetric surface that spreads each cell's people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from scipy.special import ndtri

from povertymap.world.cells import CellLayer
from povertymap.world.frame import Frame
from povertymap.world.geography import Geography, place_names
from povertymap.world.kernels import splat
from povertymap.world.randomness import Streams, gaussian_field, hash_uniform
from povertymap.world.spec import WorldSpec

__all__ = [
    "KINDS",
    "Blobs",
    "Settlements",
    "expected_population",
    "fine_density",
    "make_settlements",
]

#: Settlement kinds, in the order of their codes.
KINDS = ("city", "town", "village", "hamlet")
#: Peak density of one blob (people per km²) by kind.
_PEAK_DENSITY = np.array([9000.0, 3500.0, 1500.0, 800.0])
#: Mean household size by urban flag, used to turn expected people into households.
MEAN_HH_SIZE = {False: 5.0, True: 4.3}


@dataclass(frozen=True)
class Blobs:
    """Gaussian blobs of people (working-CRS metres)."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    people: np.ndarray
    kind: np.ndarray  #: code into KINDS

    def select(self, mask: np.ndarray) -> Blobs:
        """The blobs where ``mask`` is true."""
        return Blobs(
            self.x[mask], self.y[mask], self.sigma[mask], self.people[mask], self.kind[mask]
        )


@dataclass(frozen=True)
class Settlements:
    """Named settlements (cities, towns, villages) and all blobs including hamlets."""

    table: pd.DataFrame  #: settlement_id, name, kind, x, y, population
    blobs: Blobs
    suitability: np.ndarray  #: cell-grid placement weight
    dispersed: np.ndarray  #: cell-grid expected people in scattered homesteads


def _suitability(geo: Geography, cells: CellLayer, rng: np.random.Generator) -> np.ndarray:
    """Where people settle: rain-fed farming, rivers and the lake shore, some randomness."""
    c = geo.climate
    noise = gaussian_field(rng, geo.frame.shape, 3.0)
    s = np.exp(
        2.0 * c.agro
        + 0.8 * np.exp(-c.dist_river_km / 2.0)
        + 0.5 * np.exp(-c.dist_lake_km / 4.0)
        + 0.5 * noise
    )
    return s * cells.habitable / cells.ppc**2


def _sample_points(
    weight: np.ndarray | _CellSampler,
    n: int,
    frame: Frame,
    cells: CellLayer,
    geo: Geography,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n`` points: a cell drawn with probability ``weight``, then uniform inside the country."""
    sampler = weight if isinstance(weight, _CellSampler) else _CellSampler(weight)
    out = np.empty((0, 2))
    xmin, _, _, ymax = frame.bounds
    cs = frame.cell_size
    shapely.prepare(geo.outline)
    while len(out) < n:
        m = max(n - len(out), 16)
        idx = sampler.draw(m, rng)
        r, cidx = np.divmod(idx, frame.nx)
        px = xmin + (cidx + rng.uniform(size=m)) * cs
        py = ymax - (r + rng.uniform(size=m)) * cs
        ok = shapely.contains_xy(geo.outline, px, py)
        out = np.vstack([out, np.c_[px, py][ok]])
    return out[:n]


class _CellSampler:
    """Draws cell indices with probability proportional to a weight grid (CDF built once)."""

    def __init__(self, weight: np.ndarray) -> None:
        cdf = np.cumsum(weight.ravel(), dtype=np.float64)
        self.cdf = cdf / cdf[-1]

    def draw(self, m: int, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, rng.random(m), side="right"), self.cdf.size - 1)


def _best_candidates(
    weight: np.ndarray,
    n: int,
    existing: np.ndarray,
    frame: Frame,
    cells: CellLayer,
    geo: Geography,
    rng: np.random.Generator,
    k: int = 24,
) -> np.ndarray:
    """``n`` points, each the most isolated of ``k`` suitable candidates (central places)."""
    pts = existing.copy()
    new = []
    sampler = _CellSampler(weight)
    for _ in range(n):
        cand = _sample_points(sampler, k, frame, cells, geo, rng)
        if len(pts):
            d = np.min(
                np.hypot(cand[:, None, 0] - pts[None, :, 0], cand[:, None, 1] - pts[None, :, 1]),
                axis=1,
            )
        else:
            cx = (frame.bounds[0] + frame.bounds[2]) / 2
            cy = (frame.bounds[1] + frame.bounds[3]) / 2
            d = 1.0 / (1.0 + np.hypot(cand[:, 0] - cx, cand[:, 1] - cy))
        best = cand[np.argmax(d)]
        new.append(best)
        pts = np.vstack([pts, best]) if len(pts) else best[None, :]
    return np.array(new).reshape(-1, 2)


def _split(total: float, n: int, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` people into ``n`` lognormal shares."""
    if n == 0:
        return np.zeros(0)
    s = rng.lognormal(0.0, sd, size=n)
    return total * s / s.sum()


def _blob_sigma(people: np.ndarray, kind: int) -> np.ndarray:
    return 1000.0 * np.sqrt(people / (2 * np.pi * _PEAK_DENSITY[kind]))


def make_settlements(
    spec: WorldSpec, geo: Geography, cells: CellLayer, streams: Streams
) -> Settlements:
    """Place cities, towns, villages and hamlets and build their blobs."""
    rng = streams.get("settlements")
    frame = geo.frame
    suit = _suitability(geo, cells, rng)
    land_km2 = geo.outline.area / 1e6
    total = spec.population_density * land_km2
    urban = spec.urban_share * total
    ranks = np.arange(1, spec.n_cities + 1)
    city_pop = spec.city_share * urban * (1 / ranks) / np.sum(1 / ranks)
    town_pop = np.sort(_split((1 - spec.city_share) * urban, spec.n_towns, 0.5, rng))[::-1]
    village_pop = _split(spec.village_share * total, spec.n_villages, 0.6, rng)
    dispersed_total = spec.dispersed_share * total
    hamlet_total = total - urban - spec.village_share * total - dispersed_total
    n_hamlets = max(1, round(hamlet_total / spec.hamlet_size))
    hamlet_pop = _split(hamlet_total, n_hamlets, 0.7, rng)

    city_xy = _best_candidates(suit, spec.n_cities, np.empty((0, 2)), frame, cells, geo, rng)
    town_xy = _best_candidates(suit, spec.n_towns, city_xy, frame, cells, geo, rng)
    village_xy = _sample_points(suit, spec.n_villages, frame, cells, geo, rng)
    hamlet_xy = _sample_points(suit**0.7, n_hamlets, frame, cells, geo, rng)

    xs, ys, sig, ppl, kinds = [], [], [], [], []
    # cities: a dense core plus satellite blobs; towns: one or two blobs
    for kind, coords, pops in ((0, city_xy, city_pop), (1, town_xy, town_pop)):
        for (x, y), p in zip(coords, pops, strict=True):
            nb = (
                1
                + (kind == 0) * int(min(7, 2 + p // 30000))
                + (kind == 1) * int(rng.random() < 0.4)
            )
            share = np.r_[0.4, rng.dirichlet(np.ones(nb - 1)) * 0.6] if nb > 1 else np.ones(1)
            radius = 1000.0 * np.sqrt(p / (np.pi * 0.6 * _PEAK_DENSITY[kind]))
            ang = rng.uniform(0, 2 * np.pi, nb)
            dist = np.r_[0.0, rng.uniform(0.3, 0.9, nb - 1)] * radius
            bp = p * share
            xs.append(x + dist * np.cos(ang))
            ys.append(y + dist * np.sin(ang))
            sig.append(_blob_sigma(bp, kind))
            ppl.append(bp)
            kinds.append(np.full(nb, kind))
    for kind, coords, pops in ((2, village_xy, village_pop), (3, hamlet_xy, hamlet_pop)):
        xs.append(coords[:, 0])
        ys.append(coords[:, 1])
        sig.append(_blob_sigma(pops, kind))
        ppl.append(pops)
        kinds.append(np.full(len(pops), kind))
    blobs = Blobs(
        np.concatenate(xs),
        np.concatenate(ys),
        np.concatenate(sig),
        np.concatenate(ppl),
        np.concatenate(kinds).astype(np.int8),
    )
    names = place_names(
        spec.n_cities + spec.n_towns + spec.n_villages, streams.get("settlement-names")
    )
    labels = np.repeat(["city", "town", "village"], [spec.n_cities, spec.n_towns, spec.n_villages])
    coords = np.vstack([city_xy, town_xy, village_xy])
    table = pd.DataFrame(
        {
            "settlement_id": np.arange(1, len(labels) + 1),
            "name": names,
            "kind": labels,
            "x": coords[:, 0],
            "y": coords[:, 1],
            "population": np.concatenate([city_pop, town_pop, village_pop]),
        }
    )
    dispersed = dispersed_total * suit / suit.sum()
    return Settlements(table, blobs, suit, dispersed)


def expected_population(frame: Frame, settlements: Settlements, cells: CellLayer) -> np.ndarray:
    """Expected people per cell: blobs integrated over cells on habitable land, plus the
    scattered homesteads."""
    blobs = settlements.blobs
    xmin, _, _, ymax = frame.bounds
    pop = splat(
        blobs.x,
        blobs.y,
        blobs.sigma,
        blobs.people,
        x0=xmin,
        y_top=ymax,
        res=frame.cell_size,
        shape=frame.shape,
    )
    pop = pop * cells.habitable / cells.ppc**2
    total = blobs.people.sum()
    pop = pop * (total / pop.sum()) if pop.sum() > 0 else pop
    return pop + settlements.dispersed


def fine_density(
    frame: Frame,
    settlements: Settlements,
    row0: int,
    col0: int,
    shape: tuple[int, int],
    res: float,
    key: int,
) -> np.ndarray:
    """Relative population density on a window of a fine pixel grid (not masked).

    ``row0, col0`` are the window's first pixel in the grid of resolution ``res`` that
    starts at the frame's north-west corner (may be negative: halos). Blobs are integrated
    over the pixels, the cell's scattered homesteads spread evenly over its pixels, and the
    sum multiplied by a lognormal texture hashed on pixel coordinates; a small floor lets
    every habitable pixel hold a homestead.
    """
    blobs = settlements.blobs
    xmin, _, _, ymax = frame.bounds
    x0 = xmin + col0 * res
    y_top = ymax - row0 * res
    d = splat(blobs.x, blobs.y, blobs.sigma, blobs.people, x0=x0, y_top=y_top, res=res, shape=shape)
    gi = np.arange(col0, col0 + shape[1])[None, :]
    gj = np.arange(row0, row0 + shape[0])[:, None]
    per_cell = round(frame.cell_size / res)
    cr, cc = gj // per_cell, gi // per_cell
    inside = (cr >= 0) & (cr < frame.ny) & (cc >= 0) & (cc < frame.nx)
    spread = settlements.dispersed[np.clip(cr, 0, frame.ny - 1), np.clip(cc, 0, frame.nx - 1)]
    d = d + np.where(inside, spread / per_cell**2, 0.0)
    u = hash_uniform(gi, gj, key)
    texture = np.exp(0.45 * ndtri(np.clip(u, 1e-9, 1 - 1e-9)))
    floor = 0.3 * (res / 1000.0) ** 2  # people/km² equivalent
    return d * texture + floor
