"""The households of one window of cells: who they are, where they live, what they own.

For a window (a :class:`~povertymap.world.frame.Block`), :func:`simulate_block` redraws the
window's households (same streams as pass 1, so the same welfare and sizes), spreads each
cell's people over its 100 m pixels in proportion to the settlement density (the
population raster), places every dwelling in a pixel drawn from that density, and draws
the households' characteristics. Everything downstream (imagery, registry, survey, truth)
reads the :class:`BlockHouseholds` it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from povertymap.world import households as hh
from povertymap.world.cells import window_admin
from povertymap.world.country import Country
from povertymap.world.frame import Block
from povertymap.world.lights import household_light
from povertymap.world.osm import draw_pois
from povertymap.world.settlements import fine_density

__all__ = [
    "POP_NODATA",
    "BlockHouseholds",
    "Totals",
    "block_pois",
    "household_tables",
    "simulate_block",
]

#: Nodata of the population raster (outside the country).
POP_NODATA = -99999.0


@dataclass(frozen=True)
class BlockHouseholds:
    """Households of one window; per-household arrays are ordered by cell, then rank."""

    rows: np.ndarray  #: cells with households (frame rows), in raster order
    cols: np.ndarray
    cell: np.ndarray  #: index into rows/cols of each household's cell
    household_id: np.ndarray
    ea: np.ndarray  #: EA index (0-based)
    size: np.ndarray  #: int64 members
    log_consumption: np.ndarray  #: true, per capita
    poor: np.ndarray  #: bool, below the poverty line
    x: np.ndarray  #: dwelling position, working CRS
    y: np.ndarray
    admin2: np.ndarray  #: admin-2 index of the dwelling's pixel
    attributes: dict[str, np.ndarray]  #: PMT variables (categoricals as codes)
    dwellings: hh.Dwellings
    cell_people: np.ndarray  #: people per cell of rows/cols
    population: np.ndarray  #: the window of the population raster (float32, nodata outside)

    @property
    def rr(self) -> np.ndarray:
        """Frame row of each household's cell."""
        return self.rows[self.cell]

    @property
    def cc(self) -> np.ndarray:
        """Frame column of each household's cell."""
        return self.cols[self.cell]


def _cell_major(a: np.ndarray, nr: int, nc: int, ppc: int) -> np.ndarray:
    """Pixels of a window regrouped cell by cell: shape (nr * nc, ppc * ppc)."""
    return a.reshape(nr, ppc, nc, ppc).transpose(0, 2, 1, 3).reshape(nr * nc, ppc * ppc)


def simulate_block(
    country: Country,
    b: Block,
    poverty_line: float,
    texture_key: int,
    admin_polygons: np.ndarray,
) -> BlockHouseholds:
    """Households, dwellings and the population raster of window ``b``.

    ``admin_polygons`` are the admin-2 polygons (working CRS, prepared): a dwelling in a
    cell cut by a boundary stays inside the unit its pixel belongs to.
    """
    frame, cells, streams = country.frame, country.cells, country.streams
    ppc = cells.ppc
    res = frame.cell_size / ppc
    nr, nc = b.shape
    admin_px = window_admin(cells, b.r0, b.r1, b.c0, b.c1)
    d = fine_density(
        frame, country.settlements, b.r0 * ppc, b.c0 * ppc, (nr * ppc, nc * ppc), res,
        texture_key,
    )  # fmt: skip
    d = np.where(admin_px >= 0, d, 0.0)
    d_cells = _cell_major(d, nr, nc, ppc)
    a_cells = _cell_major(admin_px, nr, nc, ppc)
    rows, cols = country.block_cells(b)
    local = (rows - b.r0) * nc + (cols - b.c0)
    draw = country.welfare(b, rows, cols)
    hc = draw.cell
    rr, cc = rows[hc], cols[hc]
    size = draw.size.astype(np.int64)
    logc = draw.log_consumption
    cell_people = np.bincount(hc, weights=size, minlength=rows.size)

    # the population raster: each cell's people spread like the settlement density
    pop = np.zeros((nr * nc, ppc * ppc), np.float32)
    share = np.zeros((rows.size, ppc * ppc))
    if rows.size:
        dl = d_cells[local]
        share = dl / dl.sum(axis=1, keepdims=True)
        pop[local] = (share * cell_people[:, None]).astype(np.float32)
    pop_px = pop.reshape(nr, nc, ppc, ppc).transpose(0, 2, 1, 3).reshape(nr * ppc, nc * ppc)
    pop_px = np.where(admin_px >= 0, pop_px, np.float32(POP_NODATA))

    # dwellings: a pixel drawn from the density, a uniform position inside it
    rng = streams.get("location", b.index)
    cum = np.cumsum(share, axis=1)
    if rows.size:
        cum[:, -1] = 1.0
    flat_cum = (np.arange(rows.size)[:, None] + cum).ravel()
    target = hc + rng.random(hc.size) * (1 - 1e-12)
    pix = np.clip(
        np.searchsorted(flat_cum, target, side="right") - hc * ppc * ppc, 0, ppc * ppc - 1
    )
    pr, pc = np.divmod(pix, ppc)
    x0 = frame.bounds[0] + cc * frame.cell_size
    y1 = frame.bounds[3] - rr * frame.cell_size
    hx = x0 + (pc + rng.random(hc.size)) * res
    hy = y1 - (pr + rng.random(hc.size)) * res
    mixed = np.flatnonzero(cells.mixed_row[rr, cc] >= 0)
    if mixed.size:  # in cells cut by a boundary, keep each dwelling in its pixel's unit
        unit = a_cells[local[hc[mixed]], pix[mixed]]
        out = mixed[~shapely.contains_xy(admin_polygons[unit], hx[mixed], hy[mixed])]
        hx[out] = x0[out] + (pc[out] + 0.5) * res
        hy[out] = y1[out] - (pr[out] + 0.5) * res
    order = np.lexsort((hx, hc))  # positions sorted by x within each cell: EAs are strips
    hx, hy, pix = hx[order], hy[order], pix[order]

    attrs, dwell = hh.household_attributes(
        logc,
        size,
        country.urban[rr, cc],
        country.electrified[rr, cc],
        country.roof_preference[country.admin1[rr, cc]],
        country.town_access[rr, cc],
        country.mu[rr, cc],
        streams.get("attributes", b.index),
    )
    return BlockHouseholds(
        rows=rows,
        cols=cols,
        cell=hc,
        household_id=country.household_id(rr, cc, draw.rank),
        ea=country.ea_id(rr, cc, draw.rank),
        size=size,
        log_consumption=logc,
        poor=logc < poverty_line,
        x=hx,
        y=hy,
        admin2=a_cells[local[hc], pix].astype(np.int64),
        attributes=attrs,
        dwellings=dwell,
        cell_people=cell_people,
        population=pop_px,
    )


def household_tables(
    country: Country, bh: BlockHouseholds, survey_ids: np.ndarray, b: Block
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The window's rows of the registry, of the household truth, and of the survey.

    The registry keeps every household, or a uniform ``registry_fraction`` sample of them;
    the truth keeps the registry's households plus every surveyed one.
    """
    spec = country.spec
    ix, iy = country.frame.ix_iy()
    rr, cc = bh.rr, bh.cc
    cell_id = np.char.add(np.char.add(ix[rr, cc].astype(str), "_"), iy[rr, cc].astype(str))
    admin2_ids = country.geo.admin2["admin2_id"].to_numpy()
    base = {
        "household_id": bh.household_id,
        "admin2_id": admin2_ids[bh.admin2],
        "admin1_id": country.admin1_codes[country.admin1_of_admin2[bh.admin2]],
        "cell_id": cell_id.astype(object),
        "urban": country.urban[rr, cc],
    }
    decoded = hh.decode(bh.attributes)
    keep = np.ones(bh.household_id.size, bool)
    if spec.registry_fraction < 1:
        draw = country.streams.get("registry", b.index).random(keep.size)
        keep = draw < spec.registry_fraction
    in_survey = np.isin(bh.household_id, survey_ids, assume_unique=True)
    reg = pd.DataFrame({**base, **{k: decoded[k] for k in hh.PMT_COLUMNS}})
    reg["registry_weight"] = 1.0 / spec.registry_fraction
    truth = pd.DataFrame(
        {
            "household_id": bh.household_id,
            "cell_id": base["cell_id"],
            "admin2_id": base["admin2_id"],
            "ea_id": bh.ea + 1,
            "x": bh.x,
            "y": bh.y,
            "hh_size": bh.size,
            "log_consumption": bh.log_consumption,
            "poor": bh.poor,
            "in_registry": keep,
        }
    )
    survey = reg[in_survey].copy()
    survey["ea_id"] = bh.ea[in_survey]
    survey["true_log_consumption"] = bh.log_consumption[in_survey]
    return reg[keep], truth[keep | in_survey], survey


def block_pois(country: Country, bh: BlockHouseholds, b: Block) -> pd.DataFrame:
    """True points of interest of the window, each at a dwelling of its cell (+- 15 m)."""
    rng = country.streams.get("pois", b.index)
    rows, cols = bh.rows, bh.cols
    paved = country.access.road_speed[rows, cols] >= 60.0
    cell, code = draw_pois(
        bh.cell_people, country.mu[rows, cols], country.urban[rows, cols], paved, rng
    )
    n = country.n_households[rows, cols]
    at = (np.cumsum(n) - n)[cell] + rng.integers(0, n[cell])
    return pd.DataFrame(
        {
            "x": bh.x[at] + rng.normal(0, 15.0, at.size),
            "y": bh.y[at] + rng.normal(0, 15.0, at.size),
            "code": code,
            "row": rows[cell],
            "col": cols[cell],
        }
    )


class Totals:
    """Running sums over windows: per cell, per admin-2 unit and per EA."""

    def __init__(self, country: Country) -> None:
        shape = country.frame.shape
        n2 = len(country.geo.admin2)
        n_ea = country.ea.households.size
        self.people = np.zeros(shape, np.int64)
        self.wsum = np.zeros(shape)  #: sum of size * log consumption
        self.poor = np.zeros(shape, np.int64)  #: people below the line
        self.connected = np.zeros(shape, np.int64)  #: people with electricity
        self.light = np.zeros(shape)  #: lit-person equivalents of households
        self.cloud = np.full(shape, np.nan)  #: cloud share of the cell's image
        self.admin_people = np.zeros(n2, np.int64)
        self.admin_households = np.zeros(n2, np.int64)
        self.admin_wsum = np.zeros(n2)
        self.admin_poor = np.zeros(n2, np.int64)
        self.ea_x = np.zeros(n_ea)
        self.ea_y = np.zeros(n_ea)
        self.ea_n = np.zeros(n_ea, np.int64)
        self.ea_wsum = np.zeros(n_ea)

    def add(self, bh: BlockHouseholds) -> None:
        """Add a window's households."""
        rows, cols, hc = bh.rows, bh.cols, bh.cell
        n = rows.size
        size, logc = bh.size, bh.log_consumption
        conn = bh.attributes["electricity"].astype(bool)
        self.people[rows, cols] = bh.cell_people
        self.wsum[rows, cols] = np.bincount(hc, weights=size * logc, minlength=n)
        self.poor[rows, cols] = np.bincount(hc, weights=size * bh.poor, minlength=n)
        self.connected[rows, cols] = np.bincount(hc, weights=size * conn, minlength=n)
        self.light[rows, cols] = np.bincount(
            hc, weights=household_light(logc, size, conn), minlength=n
        )
        n2 = self.admin_people.size
        a = bh.admin2
        self.admin_people += np.bincount(a, weights=size, minlength=n2).astype(np.int64)
        self.admin_households += np.bincount(a, minlength=n2)
        self.admin_wsum += np.bincount(a, weights=size * logc, minlength=n2)
        self.admin_poor += np.bincount(a, weights=size * bh.poor, minlength=n2).astype(np.int64)
        m = self.ea_n.size
        self.ea_x += np.bincount(bh.ea, weights=bh.x, minlength=m)
        self.ea_y += np.bincount(bh.ea, weights=bh.y, minlength=m)
        self.ea_n += np.bincount(bh.ea, minlength=m)
        self.ea_wsum += np.bincount(bh.ea, weights=size * logc, minlength=m)
